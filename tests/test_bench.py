"""All benchmarks in quick mode, in one child process: finite numbers in every table, figures written."""
import math
import os
import subprocess
import sys

from conftest import ROOT, shared_data

FIGURES = ["flow_sintel.png", "flow_scene.png", "consistency_first_pair.png", "scenes_consistency.png",
           "speed_per_frame.png", "pictures_rendered_clip.png", "consistency_mean_error.png"]
TITLES = ["Optical flow", "Temporal consistency on Sintel", "rendered clip", "Speed and memory", "Pictures"]


def tables(text):
    """Markdown tables of ``text`` as lists of rows (header first, separator dropped)."""
    found, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                current.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif current:
            found.append(current)
            current = []
    return found


def number(cell):
    try:
        return float(cell)
    except ValueError:
        return None


def test_all_benchmarks_quick(tmp_path):
    data = shared_data("sintel_pairs").parent
    env = {**os.environ, "STYLIZE_VGG19": ""}  # no weights: the random VGG path must work
    proc = subprocess.run([sys.executable, "-m", "bench", "all", "--quick", "--out", str(tmp_path),
                           "--data", str(data)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for title in TITLES:
        assert title in out
    assert "VGG-19 weights:" in out
    found = tables(out)
    assert len(found) >= 9, out
    for table in found:
        header, rows = table[0], table[1:]
        assert rows, f"empty table {header}"
        for row in rows:
            assert len(row) == len(header), (header, row)
            values = [v for v in map(number, row) if v is not None]
            assert values, (header, row)
            assert all(math.isfinite(v) for v in values), (header, row)
    for name in FIGURES:
        assert (tmp_path / name).stat().st_size > 0, name
    assert list(tmp_path.glob("pictures_sintel_*.png"))
