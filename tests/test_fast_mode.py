"""Fast mode through the CLI (``--mode fast``): frames, events, resume, painted keyframes, bad input.

Most tests use the torch backend (``--fast-backend torch``: the GPU path, and no compilation).
"""

import json
import statistics
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import FAST_OPTIMISE, generated_clip, quick_argv, run_cli
from stylize_core.io.frames import read_image, write_png

W, H, N = 64, 48, 6
FAST = FAST_OPTIMISE
ORANGE, BLUE = np.array([1.0, 0.55, 0.0], np.float32), np.array([0.05, 0.2, 0.9], np.float32)


@pytest.fixture
def clip(tmp_path):
    """A 6-frame 64x48 generated clip (panning background, three moving shapes) and a style image."""
    return generated_clip(tmp_path, N, (W, H))


def stylize(clip, capsys, *extra, where=("--out", "out")):
    return run_cli(
        ["stylize", clip / "in", "--style", clip / "style.png", where[0], clip / where[1], *FAST, *extra], capsys
    )


def painting(path, left, right=None, size=(W, H)):
    """A flat painting: ``left`` colour, or ``left`` | ``right`` halves."""
    img = np.empty((size[1], size[0], 3), np.float32)
    img[:] = left
    if right is not None:
        img[:, size[0] // 2 :] = right
    write_png(path, img)
    return path


def mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in sorted(Path(folder).glob("frame_*.png"))}


def test_fast_mode_writes_every_frame_and_resumes(clip, capsys):
    code, events, _ = stylize(clip, capsys)
    out = clip / "out"
    assert code == 0
    start, done = events[0], events[-1]
    assert start["event"] == "start" and start["passes"] == 1 and start["skipped"] == 0
    assert [e["frame"] for e in events if e["event"] == "frame"] == list(range(1, N + 1))
    paths = [str(out / f"frame_{i:05d}.png") for i in range(1, N + 1)]
    assert done["event"] == "done" and done["paths"] == paths
    assert all(read_image(p).shape == (H, W, 3) for p in paths)
    progress = [e for e in events if e["event"] == "progress"]
    # frame 1, the keyframe, is optimised (3 iterations); the others are one synthesis step each
    assert [(e["frame"], e["iteration"], e["iterations"]) for e in progress] == [(1, 1, 3), (1, 2, 3), (1, 3, 3)] + [
        (f, 1, 1) for f in range(1, N + 1)
    ]
    lost = [e["loss"] for e in progress if e["frame"] > 1]
    assert all(0 <= x < 0.9 for x in lost)  # share of pixels whose flow track was lost
    assert set(done["timings"]) == {"flow", "optimise", "synthesis", "io"}
    assert done["timings"]["synthesis"] > 0 and done["timings"]["optimise"] > 0
    manifest = json.loads((out / "job.json").read_text())
    assert manifest["status"] == "done" and manifest["settings"]["mode"] == "fast"
    assert manifest["keyframes"] == [1] and manifest["identity"]["fast"]["backend"] == "torch"
    assert (out / "keyframes" / "frame_00001.npy").is_file()

    first = {p: read_image(p) for p in paths}
    kept = mtimes(out)
    for p in paths[3:]:
        Path(p).unlink()
    code, events, _ = stylize(clip, capsys)
    assert code == 0 and events[0]["skipped"] == 3
    assert [e["frame"] for e in events if e["event"] == "frame"] == [4, 5, 6]
    assert all(e["iterations"] == 1 for e in events if e["event"] == "progress")  # keyframe cached
    now = mtimes(out)
    assert {k: now[k] for k in list(kept)[:3]} == {k: kept[k] for k in list(kept)[:3]}
    for p in paths[3:]:  # the resumed frames are the ones an uninterrupted run wrote
        assert np.abs(read_image(p) - first[p]).max() <= 1 / 255 + 1e-6
    assert leftovers(out) == []


def leftovers(folder):
    return sorted(str(p) for p in Path(folder).rglob("*") if ".tmp" in p.name)


def test_painted_keyframe_is_carried_to_the_next_frames(clip, capsys):
    painted = painting(clip / "painted.png", ORANGE)
    code, events, _ = stylize(clip, capsys, "--keyframe", f"1={painted}", where=("--jobs", "jobs"))
    assert code == 0
    assert all(e["iterations"] == 1 for e in events if e["event"] == "progress")  # nothing optimised
    out = Path(events[0]["out"])
    assert np.abs(read_image(out / "frame_00001.png") - ORANGE).max() <= 1 / 255 + 1e-6
    for i in range(2, N + 1):
        got = read_image(out / f"frame_{i:05d}.png").reshape(-1, 3).mean(0)
        source = read_image(clip / "in" / f"frame_{i:05d}.png").reshape(-1, 3).mean(0)
        assert np.abs(got - ORANGE).max() < 0.02, (i, got)
        assert np.abs(source - ORANGE).max() > 0.3  # the input's colours are far from it

    # halves: the left of the next frames stays orange, the right blue (the shapes move ~1 px a frame)
    split = painting(clip / "split.png", ORANGE, BLUE)
    code, events, _ = stylize(clip, capsys, "--keyframe", f"1={split}", where=("--jobs", "jobs"))
    assert code == 0
    other = Path(events[0]["out"])
    assert other != out and other.parent == out.parent  # another painting: another job
    for i in range(2, N + 1):
        img = read_image(other / f"frame_{i:05d}.png")
        left, right = img[:, : W // 3].reshape(-1, 3), img[:, -W // 3 :].reshape(-1, 3)
        closer = lambda px, a, b: (np.abs(px - a).sum(1) < np.abs(px - b).sum(1)).mean()  # noqa: E731
        assert closer(left, ORANGE, BLUE) > 0.9 and closer(right, BLUE, ORANGE) > 0.9, i


def test_two_paintings_are_two_jobs_and_the_same_painting_resumes(clip, capsys):
    a = painting(clip / "a.png", ORANGE)
    b = painting(clip / "b.png", BLUE)
    ids = []
    for p in (a, b, a):
        code, events, _ = stylize(clip, capsys, "--keyframe", f"3={p}", "--max-frames", "3", where=("--jobs", "jobs"))
        assert code == 0
        ids.append((events[0]["job"], events[0]["skipped"]))
    assert ids[0][0] != ids[1][0] and ids[2] == (ids[0][0], 3)
    assert events[-1]["timings"]["synthesis"] == 0 and [e["event"] for e in events] == ["start", "done"]
    record = json.loads((clip / "jobs" / ids[0][0] / "job.json").read_text())
    assert record["keyframes"] == [1, 3] and record["painted"] == {"3": str(a)}
    # the same pixels in another file (other bytes) are the same painting
    cv2.imwrite(str(clip / "a_again.png"), cv2.imread(str(a)), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert (clip / "a_again.png").read_bytes() != a.read_bytes()
    code, events, _ = stylize(
        clip, capsys, "--keyframe", f"3={clip / 'a_again.png'}", "--max-frames", "3", where=("--jobs", "jobs")
    )
    assert code == 0 and events[0]["job"] == ids[0][0] and events[0]["skipped"] == 3


def assert_user_error(code, events, err, *expected):
    lines = err.strip().splitlines()
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert events and events[-1] == {"event": "error", "message": lines[0][len("error: ") :]}
    for text in expected:
        assert text in lines[0], (text, lines[0])


def test_bad_keyframes_are_one_line_and_nothing_is_written(clip, capsys):
    good = painting(clip / "good.png", ORANGE)
    narrow = painting(clip / "narrow.png", ORANGE, size=(40, 48))
    (clip / "corrupt.png").write_bytes(good.read_bytes()[:60])  # a truncated PNG
    rgba = np.dstack([np.full((48, 64, 3), 128, np.uint8), np.full((48, 64), 255, np.uint8)])
    rgba[:12, :, 3] = 0  # a quarter transparent: its colours there used to be written as the frame
    cv2.imwrite(str(clip / "layer.png"), rgba)
    (clip / "folder.png").mkdir()
    cases = [
        (
            [f"2={clip / 'layer.png'}"],
            "keyframe 2 (layer.png) has transparent pixels (alpha below 1 on 25.0% of it)",
            "flatten it onto an opaque background",
        ),
        ([f"2={clip / 'folder.png'}"], f"keyframe 2: painted image {clip / 'folder.png'} is a folder, not an image"),
        (["2", "2"], "frame 2 is given twice (stylised by the engine and stylised by the engine)"),
        ([f"2={narrow}"], "keyframe 2 (narrow.png) is 40x48 but the frames are 64x48", "aspect ratios differ"),
        ([f"5={good}"], f"--keyframe 5={good}: frame 5 is outside the clip (frames 1-3)"),
        ([f"2={clip / 'corrupt.png'}"], "cannot decode keyframe 2 image corrupt.png: not an image or corrupt"),
        ([f"2={clip / 'missing.png'}"], f"keyframe 2: painted image {clip / 'missing.png'} not found"),
        (["two=good.png"], "--keyframe 'two=good.png': expected FRAME=IMAGE or FRAME with a 1-based frame number"),
        (["9"], "--keyframe 9: frame 9 is outside the clip (frames 1-3)"),
        ([str(good)], "expected FRAME=IMAGE"),
        (["2="], "expected FRAME=IMAGE"),
        ([f"0={good}"], "frame numbers start at 1"),
        ([f"2={good}", f"2={narrow}"], f"frame 2 is given twice ({good} and {narrow})"),
    ]
    for values, *expected in cases:
        args = [a for v in values for a in ("--keyframe", v)]
        for where in (("--jobs", "jobs"), ("--out", "out")):
            code, events, err = stylize(clip, capsys, *args, "--max-frames", "3", where=where)
            assert_user_error(code, events, err, *expected)
            assert not (clip / where[1]).exists(), (values, where)  # nothing recorded, nothing to refuse later
    quality = [
        v for v in FAST if v not in ("--mode", "fast", "--keyframe-method", "optimise", "--fast-backend", "torch")
    ]
    code, events, err = run_cli(
        quick_argv(clip, clip / "out", *quality, "--keyframe", f"2={good}", "--max-frames", "3"), capsys
    )
    assert_user_error(code, events, err, "--keyframe needs --mode fast")
    code, events, err = stylize(clip, capsys, "--keyframe-every", "-1")
    assert_user_error(code, events, err, "--keyframe-every must be in [0, 1000000], got -1")
    # the corrected command runs in the same folder, as a new job (nothing to --restart)
    code, events, _ = stylize(clip, capsys, "--keyframe", f"2={good}", "--max-frames", "3")
    assert code == 0 and events[0]["skipped"] == 0 and events[-1]["event"] == "done"


def test_keyframe_of_the_same_aspect_is_resized_with_a_warning(clip, capsys):
    small = painting(clip / "small.png", ORANGE, BLUE, size=(32, 24))
    code, events, err = stylize(clip, capsys, "--keyframe", f"2={small}", "--max-frames", "3")
    assert code == 0 and "error" not in err
    kinds = [e["event"] for e in events]
    warning = events[kinds.index("warning")]
    assert kinds.index("start") < kinds.index("warning") < kinds.index("frame")
    assert warning["message"] == "keyframe 2 (small.png) is 32x24, resized to the frame size 64x48"
    frame = read_image(clip / "out" / "frame_00002.png")
    assert frame.shape == (H, W, 3)
    edge = 4  # bicubic enlargement (2x) rings within 2 source pixels of the colour edge
    assert np.abs(frame[:, : W // 2 - edge] - ORANGE).max() < 0.01
    assert np.abs(frame[:, W // 2 + edge :] - BLUE).max() < 0.01


def test_disk_full_mid_run_keeps_finished_frames_and_resumes(clip, capsys, monkeypatch):
    from stylize_core.io import frames

    real = frames.os.replace

    def replace(src, dst):
        if str(dst).endswith("frame_00003.png"):
            raise OSError(28, "No space left on device", str(src))
        return real(src, dst)

    monkeypatch.setattr(frames.os, "replace", replace)
    code, events, err = stylize(clip, capsys, "--max-frames", "4")
    assert_user_error(code, events, err, "No space left on device", "frame_00003.png")
    assert sorted(mtimes(clip / "out")) == ["frame_00001.png", "frame_00002.png"] and leftovers(clip / "out") == []
    monkeypatch.setattr(frames.os, "replace", real)
    kept = mtimes(clip / "out")
    code, events, _ = stylize(clip, capsys, "--max-frames", "4")
    assert code == 0 and events[0]["skipped"] == 2 and len(mtimes(clip / "out")) == 4
    assert {k: v for k, v in mtimes(clip / "out").items() if k in kept} == kept


def test_chosen_and_periodic_keyframes_are_optimised_in_order(clip, capsys):
    code, events, _ = stylize(clip, capsys, "--keyframe", "3", "--keyframe-every", "4", "--max-frames", "5")
    assert code == 0
    optimised = [e["frame"] for e in events if e["event"] == "progress" and e["iterations"] == 3]
    assert optimised == [1, 1, 1, 3, 3, 3, 5, 5, 5]  # frames 1 and 5 (every 4), 3 (chosen), in order
    manifest = json.loads((clip / "out" / "job.json").read_text())
    assert manifest["keyframes"] == [1, 3, 5] and manifest["identity"]["fast"]["chosen"] == [3]
    assert sorted(p.name for p in (clip / "out" / "keyframes").iterdir()) == [
        "frame_00001.npy",
        "frame_00003.npy",
        "frame_00005.npy",
    ]
    for k in (1, 3, 5):  # a keyframe's frame is its optimisation (8-bit)
        cached = np.load(clip / "out" / "keyframes" / f"frame_{k:05d}.npy").astype(np.float32)
        assert np.abs(read_image(clip / "out" / f"frame_{k:05d}.png") - cached).max() <= 1 / 255 + 1e-3


def test_numba_backend_without_numba_is_one_line(clip, capsys, monkeypatch):
    from stylize_core.modes.fast import backends

    monkeypatch.setattr(
        backends,
        "backend_error",
        lambda: "fast mode's compiled CPU search needs numba (ModuleNotFoundError); pip install numba",
    )
    code, events, err = stylize(clip, capsys, "--fast-backend", "numba")
    assert_user_error(code, events, err, "needs numba", "pip install numba")
    assert not (clip / "out").exists()
    code, events, _ = stylize(clip, capsys, "--fast-backend", "auto", "--max-frames", "2")  # auto: torch
    assert code == 0 and json.loads((clip / "out" / "job.json").read_text())["identity"]["fast"]["backend"] == "torch"


def test_a_cut_in_the_clip_gets_its_own_keyframe(clip, capsys):
    """Frames 4-6 are another shot (a blue striped scene): the first keyframe cannot show it, so
    the engine optimises frame 4 as a keyframe too and records the cut in the manifest."""
    yy, xx = np.mgrid[0:H, 0:W]
    for k in (4, 5, 6):
        other = np.zeros((H, W, 3), np.float32)
        other[:] = BLUE
        other[((xx + 2 * k) // 4) % 2 == 0] = (0.9, 0.9, 0.2)
        write_png(clip / "in" / f"frame_{k:05d}.png", other)
    assert (
        sorted(p.name for p in (clip / "in").glob("*.png"))[3] == "frame_00004.png"
        and len(list((clip / "in").glob("*.png"))) == 6
    )
    code, events, _ = stylize(clip, capsys)
    assert code == 0
    optimised = sorted({e["frame"] for e in events if e["event"] == "progress" and e["iterations"] == 3})
    assert optimised == [1, 4]
    manifest = json.loads((clip / "out" / "job.json").read_text())
    assert manifest["shot_cuts"] == [4] and manifest["content_changes"] == [] and manifest["keyframes"] == [1, 4]
    warning = [e["message"] for e in events if e["event"] == "warning"]
    assert warning == [
        "fast mode: keyframes added for shot cuts at frame 4 (paint them with --keyframe N=IMAGE "
        "to keep your own look there)"
    ]
    assert sorted(p.name for p in (clip / "out" / "keyframes").iterdir()) == ["frame_00001.npy", "frame_00004.npy"]


OPTIMISED = ["--keyframe-method", "optimise", "--vgg", "random:8", "--iterations", "60", "--tolerance", "0"]


@pytest.mark.parametrize(
    "extra",
    [OPTIMISED, [*OPTIMISED, "--keyframe-every", "6"], ["--keyframe-method", "feedforward", "--keyframe-every", "6"]],
    ids=["one-key", "three", "feedforward"],
)
def test_eta_weighs_keyframes_and_synthesised_frames_by_their_cost(tmp_path, capsys, monkeypatch, extra):
    """The ETA of every progress event of a real fast-mode job against the time the job then took, on a clock
    that advances only with the work (0.1 s an optimiser iteration, 0.5 s a feedforward keyframe, 20 ms a
    synthesis step: the machine's load cannot move it). It used to count every frame as a keyframe: the first
    event said 124x the run, the median 50x."""
    from stylize_core import progress
    from stylize_core.modes.fast import synthesis as fast
    from stylize_core.network import feedforward, optimize

    now = [0.0]
    monkeypatch.setattr(progress, "clock", lambda: now[0])
    monkeypatch.setattr(fast, "time_step", lambda *a, **k: 0.02)  # what the probe measures on this clock
    real_step, real_stylize = fast.Propagator.step, optimize.Stylizer.stylize

    def step(self, *a, **k):
        now[0] += 0.02
        return real_step(self, *a, **k)

    def stylize(self, content, *a, on_step=None, **k):
        def tick(i, n, loss):
            now[0] += 0.1
            on_step(i, n, loss)

        return real_stylize(self, content, *a, on_step=tick if on_step else None, **k)

    real_feed = feedforward.Feedforward.stylize

    def feed(self, *a, **k):
        now[0] += 0.5
        return real_feed(self, *a, **k)

    events = []
    monkeypatch.setattr(fast.Propagator, "step", step)
    monkeypatch.setattr(optimize.Stylizer, "stylize", stylize)
    monkeypatch.setattr(feedforward.Feedforward, "stylize", feed)
    monkeypatch.setattr(progress.JsonProgress, "emit", lambda self, event, **f: events.append((now[0], event, f)))
    clip = generated_clip(tmp_path, 16, (48, 32))
    code, _, err = run_cli(
        quick_argv(clip, clip / "out", *"--progress json --mode fast --fast-backend torch".split(), *extra), capsys
    )
    assert code == 0, err
    end = next(t for t, e, _ in events if e == "done")
    ratios = [f["eta"] / (end - t) for t, e, f in events if e == "progress" and f["eta"] is not None and end - t > 0]
    assert len(ratios) > (60 if "optimise" in extra else 12)
    assert 0.8 < statistics.median(ratios) < 1.25, sorted(ratios)
    assert 0.8 < ratios[0] < 1.25 and max(ratios) < 2, ratios[:5]
