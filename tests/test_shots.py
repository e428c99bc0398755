"""A job in independent pieces (``Job.units``): fast mode's keyframes and segments, quality mode's shots. Each
piece computed on its own, in any order, gives the frames of the whole job's run, pixel for pixel: what a farm
plan's tasks rely on. And quality mode starts every shot from a first frame (no temporal term across a cut)."""

import json

import numpy as np
import pytest

from conftest import FAST_OPTIMISE, generated_clip, quick_argv, run_cli
from stylize_core import cli
from stylize_core.io.frames import read_image, write_png
from stylize_core.modes.shots import shots

W, H, N = 64, 48, 6
QUALITY = "--vgg random:8 --iterations 5 --iterations-later 3 --tolerance 0 --progress json".split()


@pytest.fixture
def two_shots(tmp_path):
    """A 6-frame clip whose frames 4-6 are another shot (a blue striped scene)."""
    clip = generated_clip(tmp_path, N, (W, H))
    yy, xx = np.mgrid[0:H, 0:W]
    for k in (4, 5, 6):
        other = np.zeros((H, W, 3), np.float32)
        other[:] = (0.05, 0.2, 0.9)
        other[((xx + 2 * k) // 4) % 2 == 0] = (0.9, 0.9, 0.2)
        write_png(clip / "in" / f"frame_{k:05d}.png", other)
    return clip


def job(clip, out, *extra):
    args = cli.build_parser().parse_args([str(a) for a in quick_argv(clip, out, *extra)])
    return cli.make_job(args, None)


def frames(folder):
    return [read_image(folder / f"frame_{i:05d}.png") for i in range(1, N + 1)]


def test_shots_cover_the_clip_in_order():
    assert shots(6, [3]) == [(0, 3), (3, 6)]
    assert shots(6, []) == [(0, 6)]
    assert shots(6, [0, 6, 2, 4]) == [(0, 2), (2, 4), (4, 6)]


def test_quality_mode_starts_a_new_shot_from_a_first_frame(two_shots, capsys):
    code, events, _ = run_cli(quick_argv(two_shots, two_shots / "out", *QUALITY), capsys)
    assert code == 0
    first = sorted({e["frame"] for e in events if e["event"] == "progress" and e["iterations"] == 5})
    assert first == [1, 4]  # frame 4 optimised as a first frame (--iterations), not from frame 3
    assert json.loads((two_shots / "out" / "job.json").read_text())["shot_cuts"] == [4]


@pytest.mark.parametrize(
    "extra",
    [
        [*FAST_OPTIMISE, "--keyframe", "3"],
        QUALITY,
        "--vgg random:8 --passes 2 --pass-iterations 2 --tolerance 0 --progress json".split(),
    ],
    ids=["fast", "quality", "quality-multipass"],
)
def test_the_pieces_in_reverse_order_give_the_frames_of_the_whole_run(two_shots, capsys, extra):
    whole = job(two_shots, two_shots / "whole", *extra)
    whole.run()
    pieces = job(two_shots, two_shots / "pieces", *extra)
    units = pieces.units()
    if isinstance(units, tuple):  # fast mode: the keyframes first (each a task of its own), then the segments
        keyframes, parts = units
        assert keyframes == [0, 2, 3] and [p[:2] for p in parts] == [(0, 2), (2, 3), (3, 6)]
        assert [p[2] for p in parts] == [[0, 2], [2, 3], [3]]
        for k in reversed(keyframes):
            pieces.run_keyframe(k)
        parts = [p[:2] for p in parts]
    else:
        parts = units
        assert parts == [(0, 3), (3, 6)]
    for part in reversed(parts):
        pieces.run_part(part)
        assert sorted(p.name for p in (two_shots / "pieces").glob("frame_*.png"))[0] == f"frame_{part[0] + 1:05d}.png"
    for i, (a, b) in enumerate(zip(frames(two_shots / "whole"), frames(two_shots / "pieces"))):
        assert np.array_equal(a, b), f"frame {i + 1} differs by up to {np.abs(a - b).max() * 255:.1f}/255"
    again = {p.name: p.stat().st_mtime_ns for p in (two_shots / "pieces").glob("frame_*.png")}
    pieces.run_part(parts[-1])  # a finished piece is a no-op
    assert again == {p.name: p.stat().st_mtime_ns for p in (two_shots / "pieces").glob("frame_*.png")}
