"""Shared test set-up: the repo root on sys.path, the shared data folder, and the engine's CLI on generated clips."""

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The real-window tests (tests/gui) drive Blender in a chroot as root: only ``./dev test-gui VERSION`` runs them
# (it sets STYLIZE_GUI_BLENDER); ``./dev test`` and the bpy runs do not collect them.
collect_ignore = [] if os.environ.get("STYLIZE_GUI_BLENDER") else ["gui"]

# --- shared data (read-only, next to the repo: ../shared/data) ---
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(*parts):
    """Path inside the shared data folder. If it is absent the test fails under CI (``$CI`` set:
    a silently skipped test proves nothing there) and is skipped on a developer's machine."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"shared data not found: {path} (required when CI is set)", pytrace=False)
        pytest.skip(f"shared data not found: {path}")
    return path


# --- the engine's CLI in-process, on a generated clip ---


def run_cli(args, capsys):
    """``python -m stylize_core ARGS`` in this process: (exit code, its JSON events, its stderr)."""
    from stylize_core import cli

    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


def quick_argv(clip, out, *extra, inp=None, style=None):
    """The engine's argv for a job on a generated clip: ``stylize CLIP/in --style CLIP/style.png --out OUT EXTRA``
    (``inp``, ``style``: another input or style image)."""
    return ["stylize", inp or clip / "in", "--style", style or clip / "style.png", "--out", out, *extra]


def engine_cmd(*args):
    """``python -m stylize_core ARGS`` with this interpreter, as a subprocess's command (every item a string)."""
    return [sys.executable, "-m", "stylize_core", *map(str, args)]


def job_at_its_first_frame(clip, iterations_later):
    """A slow job on ``clip`` (``--iterations-later N``, no early stop) in a subprocess from the repo root, to
    interrupt: (the process, once it has reported its first frame; its command)."""
    import subprocess

    quick = f"--vgg random:8 --iterations 4 --iterations-later {iterations_later} --tolerance 0 --progress json"
    cmd = engine_cmd(*quick_argv(clip, clip / "out", *quick.split()))
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if json.loads(line)["event"] == "frame":
            break
    return proc, cmd


# Fast mode on the torch backend (the GPU path, no compilation) with optimised keyframes; and small, quick ones.
FAST_TORCH = "--mode fast --keyframe-method optimise --fast-backend torch".split()
FAST_OPTIMISE = [*FAST_TORCH, *"--vgg random:8 --iterations 3 --progress json".split()]


def run_bench(*args, timeout):
    """``python -m bench ARGS`` in a subprocess without VGG-19 weights (the random VGG path must work):
    the completed process, its output as text."""
    import subprocess

    env = {**os.environ, "STYLIZE_VGG19": ""}
    cmd = [sys.executable, "-m", "bench", *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def texture(h, w, seed):
    """A blocky random texture ``(h, w, 3)`` in [0, 1] (4x4 px blocks): content and style images with strokes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    small = rng.random((h // 4 + 2, w // 4 + 2, 3)).astype(np.float32)
    return np.kron(small, np.ones((4, 4, 1), np.float32))[:h, :w]


def noise_clip(folder, frames, size, seed, style_size):
    """``folder/in/`` ``frames`` frames of random pixels of ``size`` (W, H) and ``folder/style.png`` of
    ``style_size``: returns (the frames' folder, the style image)."""
    import numpy as np

    from stylize_core.demo import make_style
    from stylize_core.io import jobdir
    from stylize_core.io.frames import write_png

    clip = Path(folder) / "in"
    clip.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(frames):
        write_png(clip / jobdir.frame_name(i), rng.random((size[1], size[0], 3)).astype(np.float32))
    make_style(str(Path(folder) / "style.png"), style_size)
    return clip, Path(folder) / "style.png"


def render_with_bpy(tmp_path_factory, name, script, *args):
    """Run ``script`` (a test file that renders when run as a program) with this interpreter's bpy into a new
    temporary folder ``name``: returns the folder. Skipped where bpy is not installed (the main suite has it)."""
    import importlib.util
    import subprocess
    import time

    if importlib.util.find_spec("bpy") is None:
        pytest.skip("bpy is not installed")
    out = tmp_path_factory.mktemp(name)
    t0 = time.time()
    subprocess.run([sys.executable, script, str(out), *args], check=True, capture_output=True, timeout=120)
    print(f"render: {time.time() - t0:.1f} s")
    return out


def contents(folder):
    """``{relative path: bytes}`` of every file under ``folder`` (to show that nothing in it changed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def generated_clip(folder, frames, size):
    """``folder/in/`` a generated clip of ``frames`` frames of ``size`` (W, H), ``folder/style.png``."""
    from stylize_core import demo

    demo.make_clip(folder / "in", frames=frames, size=size)
    demo.make_style(folder / "style.png", size=(48, 48))
    return folder


# --- bpy 4.2 as a Python module: exit without the interpreter's teardown ---
# It crashes (SIGSEGV) while the interpreter shuts down once any property with a Python callback
# (update/get/set) was registered, even after unregistering it: measured with bpy 4.2.0 and
# 4.2.23, not 4.5 or 5.x, and not the Blender binary. Every test has run and been reported by
# then; leave with pytest's own exit status instead of the crash's 139.
_exit_status = None


def pytest_sessionfinish(session, exitstatus):
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    bpy = sys.modules.get("bpy")
    if bpy is not None and bpy.app.version < (4, 3, 0) and _exit_status is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status)
