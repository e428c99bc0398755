"""A job interrupted and resumed writes the same frames as one run without a stop, bit for bit.

Before: frames after the resume point differed by up to 56/255 (single pass) and 100/255 (3 passes),
because the uninterrupted run carried its float results in memory and the resumed one read the 8-bit
PNGs (float16 arrays) back; and a resume with another CPU thread count differs too (3-5/255 on average).
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import generated_clip
from stylize_core import cli, schedule
from stylize_core.io import frames

COMMON = ["--vgg", "random:8", "--progress", "none", "--tolerance", "0"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return generated_clip(tmp_path_factory.mktemp("resume"), 6, (64, 48))


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def interrupted_at(frame, monkeypatch):
    """Make the run stop (as Ctrl-C would) right after it wrote ``frame_<frame>.png``."""
    real = schedule.write_png

    def write_then_stop(path, img):
        real(path, img)
        if Path(path).name == frames.frame_name(frame - 1):
            raise KeyboardInterrupt

    monkeypatch.setattr(schedule, "write_png", write_then_stop)


@pytest.mark.parametrize(
    "mode",
    [
        ["--iterations", "12", "--iterations-later", "6"],
        ["--passes", "3", "--pass-iterations", "6"],
        ["--mode", "fast", "--keyframe-method", "optimise", "--fast-backend", "torch", "--iterations", "12"],
    ],
    ids=["single", "multi", "fast"],
)
def test_resumed_equals_uninterrupted(clip, monkeypatch, capsys, mode):
    args = ["stylize", str(clip / "in"), "--style", str(clip / "style.png"), *COMMON, *mode]
    name = "-".join(mode)
    assert cli.main([*args, "--out", str(clip / f"once{name}")]) == 0
    with monkeypatch.context() as m:
        interrupted_at(3, m)
        assert cli.main([*args, "--out", str(clip / f"twice{name}")]) == 130
    assert len(list((clip / f"twice{name}").glob("frame_*.png"))) == 3
    assert cli.main([*args, "--out", str(clip / f"twice{name}")]) == 0
    for i in range(6):
        a, b = (frames.read_image(clip / d / frames.frame_name(i)) for d in (f"once{name}", f"twice{name}"))
        assert np.array_equal(a, b), (i + 1, np.abs(a - b).max() * 255)


def test_resume_uses_the_thread_count_the_job_started_with(clip, monkeypatch, capsys, threads):
    args = [
        "stylize",
        str(clip / "in"),
        "--style",
        str(clip / "style.png"),
        *COMMON,
        "--iterations",
        "12",
        "--iterations-later",
        "6",
        "--progress",
        "json",
    ]
    torch.set_num_threads(1)
    assert cli.main([*args, "--out", str(clip / "one")]) == 0
    with monkeypatch.context() as m:
        interrupted_at(2, m)
        assert cli.main([*args, "--out", str(clip / "resumed")]) == 130
    torch.set_num_threads(2)
    capsys.readouterr()
    assert cli.main([*args, "--out", str(clip / "resumed")]) == 0
    assert "resuming with the 1 CPU threads this job started with" in capsys.readouterr().out
    for i in range(6):
        a, b = (frames.read_image(clip / d / frames.frame_name(i)) for d in ("one", "resumed"))
        assert np.array_equal(a, b), (i + 1, np.abs(a - b).max() * 255)
