"""The engine never deletes or overwrites a file it did not write (``stylize_core/io/jobdir.py``).

Each case was a loss of the user's files before: ``--restart`` with ``--out`` = the input deleted
every input frame; a fresh job deleted a ``flow/`` folder of the user's in ``--out``.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import contents, generated_clip, run_cli
from stylize_core.io import flowio
from stylize_core.io.frames import write_png

COMMON = ["--vgg", "random:8", "--iterations", "2", "--progress", "json"]
FAST = [*COMMON, "--iterations-later", "2"]


@pytest.fixture
def clip(tmp_path):
    return generated_clip(tmp_path, 3, (48, 32))


def stylize(clip, capsys, out, *extra):
    common = COMMON if "fast" in extra else FAST
    return run_cli(["stylize", clip / "in", "--style", clip / "style.png", "--out", out, *common, *extra], capsys)


def assert_refused(code, events, err, *expected):
    assert code == 1 and len(err.strip().splitlines()) == 1 and events[-1]["event"] == "error", err
    for text in expected:
        assert text in err, (text, err)


@pytest.mark.parametrize("restart", [[], ["--restart"]])
def test_the_input_folder_as_output_is_refused(clip, capsys, restart):
    before = contents(clip / "in")
    code, events, err = stylize(clip, capsys, clip / "in", *restart)
    assert_refused(code, events, err, f"--out {clip / 'in'} is the input", "choose an output folder outside it")
    code, events, err = stylize(clip, capsys, clip, *restart)  # a folder that contains the input
    assert_refused(code, events, err, f"--out {clip} contains the input")
    assert contents(clip / "in") == before and not (clip / "in" / "job.json").exists()


def test_the_users_flow_folder_in_out_is_never_deleted(clip, capsys):
    """The user's precomputed flows in OUT/flow (a fresh job used to delete them): refused while they are an
    input there, and when the job would write its flow cache there; read from outside it."""
    out = clip / "out"
    flows = out / "flow"
    flows.mkdir(parents=True)
    for a in range(1, 3):
        for x, y in ((a, a + 1), (a + 1, a)):
            flowio.write_flo(flows / f"flow_{x:05d}_{y:05d}.flo", np.zeros((32, 48, 2), np.float32))
    mine = contents(flows)
    for extra in ([], ["--restart"]):
        code, events, err = stylize(clip, capsys, out, "--flow", "flo", "--flow-dir", flows, *extra)
        assert_refused(code, events, err, f"--out {out} contains the --flow-dir {flows}")
        code, events, err = stylize(clip, capsys, out, *extra)  # a job that would write its flow cache there
        assert_refused(code, events, err, "holds flow/, which no job of this engine wrote there")
        assert contents(flows) == mine and sorted(os.listdir(out)) == ["flow"]
    code, events, err = stylize(clip, capsys, clip / "elsewhere", "--flow", "flo", "--flow-dir", flows)
    assert code == 0, err
    assert contents(flows) == mine


def test_restart_removes_only_what_the_job_wrote(clip, capsys):
    out = clip / "out"
    assert (
        stylize(clip, capsys, out, "--mode", "fast", "--keyframe-method", "optimise", "--fast-backend", "torch")[0] == 0
    )
    (out / "notes.txt").write_text("mine")
    (out / "keyframes" / "sketch.png").write_bytes(b"mine too")
    (out / "flow" / "README").write_text("and this")
    code, _, err = stylize(clip, capsys, out, "--max-frames", "2", "--strength", "2", "--restart")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine" and (out / "keyframes" / "sketch.png").read_bytes() == b"mine too"
    assert (out / "flow" / "README").read_text() == "and this"
    assert sorted(p.name for p in out.glob("frame_*")) == ["frame_00001.png", "frame_00002.png"]
    assert not list((out / "keyframes").glob("*.npy"))  # the fast job's keyframe: discarded
    owns = json.loads((out / "job.json").read_text())["owns"]
    # the fast job's keyframes/: discarded; preview/ (the previews of a job) is every job's
    assert owns == {"frames": 2, "folders": ["flow/dis-medium-1.0", "preview"], "videos": []}


def test_an_input_where_the_job_writes_is_refused(clip, capsys):
    """A painting made over an earlier result in place (OUT/frame_00002.png) would be deleted by --restart."""
    out = clip / "out"
    fast = ["--mode", "fast", "--keyframe-method", "optimise", "--fast-backend", "torch"]
    assert stylize(clip, capsys, out, *fast)[0] == 0
    painted = out / "frame_00002.png"
    write_png(painted, np.full((32, 48, 3), 0.3, np.float32))
    before = painted.read_bytes()
    code, events, err = stylize(clip, capsys, out, *fast, "--keyframe", f"2={painted}", "--restart")
    assert_refused(
        code,
        events,
        err,
        f"keyframe 2 image {painted} is one of the files this job writes",
        "move it out of the output folder",
    )
    assert painted.read_bytes() == before


def test_a_video_it_did_not_write_is_never_overwritten(clip, capsys, tmp_path):
    movie = tmp_path / "mine.mp4"
    movie.write_bytes(b"the user's movie")
    code, events, err = stylize(clip, capsys, clip / "out", "--video", movie)
    assert_refused(code, events, err, f"--video {movie} exists and was not written by this job")
    assert movie.read_bytes() == b"the user's movie" and not (clip / "out").exists()
    ours = clip / "out" / "clip.mp4"
    assert stylize(clip, capsys, clip / "out", "--video", ours)[0] == 0
    first = ours.stat().st_mtime_ns
    code, _, err = stylize(clip, capsys, clip / "out", "--video", ours, "--strength", "2", "--restart")
    assert code == 0, err  # its own movie: encoded again
    assert ours.stat().st_mtime_ns != first


def test_an_unreadable_or_foreign_manifest_is_left_alone(clip, capsys):
    out = clip / "out"
    out.mkdir()
    for text, expected in (("{not json", "cannot be read"), ('{"tool": "other"}', "is not a manifest of this engine")):
        (out / "job.json").write_text(text)
        for extra in ([], ["--restart"]):
            code, events, err = stylize(clip, capsys, out, *extra)
            assert_refused(code, events, err, expected, "choose another --out")
            assert sorted(os.listdir(out)) == ["job.json"] and (out / "job.json").read_text() == text


def test_a_failed_job_is_recorded_and_does_not_block_a_changed_rerun(clip, capsys):
    out = clip / "out"
    write_png(clip / "thin.png", np.full((8, 48, 3), 0.5, np.float32))  # a style image too small to use
    code, events, err = stylize(clip, capsys, out, "--style", clip / "thin.png", "--style-scale", "0.2")
    assert code == 1
    assert not out.exists()  # refused before anything was written: no manifest to block anything
    (clip / "no_flows").mkdir()
    code, events, err = stylize(
        clip,
        capsys,
        out,
        "--mode",
        "fast",
        "--keyframe-method",
        "optimise",
        "--flow",
        "flo",
        "--flow-dir",
        clip / "no_flows",
    )  # fails once recorded, before its first frame
    assert code == 1 and "missing flow file" in err
    record = json.loads((out / "job.json").read_text())
    assert record["status"] == "failed" and "missing flow file" in record["error"]
    code, events, err = stylize(clip, capsys, out, "--strength", "2")  # another job, no --restart needed
    assert code == 0, err
    assert json.loads((out / "job.json").read_text())["status"] == "done"
    code, events, err = stylize(clip, capsys, out, "--strength", "3")  # a finished job still needs --restart
    assert_refused(code, events, err, "holds another job (differs in: settings.strength); use --restart")


def test_jobs_folder_messages_do_not_name_out(clip, capsys):
    root = clip / "jobs"
    code, events, _ = run_cli(["stylize", clip / "in", "--style", clip / "style.png", "--jobs", root, *FAST], capsys)
    assert code == 0
    folder = root / events[0]["job"]
    (folder / "job.json").write_text("{broken")
    code, events, err = run_cli(["stylize", clip / "in", "--style", clip / "style.png", "--jobs", root, *FAST], capsys)
    assert_refused(code, events, err, "choose another --jobs")
    assert "--out" not in err


def test_a_manifest_of_an_older_engine_owns_its_frames(clip, capsys):
    out = clip / "out"
    assert stylize(clip, capsys, out)[0] == 0
    record = json.loads((out / "job.json").read_text())
    del record["owns"]  # as the engine wrote it before ownership was recorded
    (out / "job.json").write_text(json.dumps(record))
    code, _, err = stylize(clip, capsys, out, "--strength", "2", "--max-frames", "1", "--restart")
    assert code == 0, err
    assert [p.name for p in out.glob("frame_*")] == ["frame_00001.png"]


def test_a_previews_comparison_keeps_small_frames_and_shrinks_wide_ones():
    from stylize_core.io import jobdir

    assert jobdir.compare_size((64, 48)) == (64, 48) and jobdir.compare_size((1280, 720)) == (1280, 720)
    assert jobdir.compare_size((1920, 1080)) == (1280, 720) and jobdir.compare_size((4096, 1716)) == (1280, 536)


def test_the_names_globs_and_patterns_of_the_job_folder_are_the_same_names(tmp_path):
    """A name the engine writes is found by the glob that deletes it and read back by the pattern that counts it;
    nothing else is (the add-on reads these names too)."""
    from fnmatch import fnmatchcase

    from stylize_core.io import jobdir

    for i in (0, 8, 99998, 99999, 123456):
        for ext in (".png", ".npy"):
            name = jobdir.frame_name(i, ext)
            assert jobdir.frame_index(name, ext) == i and fnmatchcase(name, jobdir.frame_glob(ext))
            assert jobdir.frame_index(name, ".png" if ext == ".npy" else ".npy") is None
    assert jobdir.frame_name(0) == "frame_00001.png" and jobdir.frame_name(99999) == "frame_100000.png"
    others = ("frame_0001.png", "frame_00001.png.tmp12", "xframe_00001.png", "frame_0000a.png", "Frame_00001.png")
    for other in others:
        assert jobdir.frame_index(other) is None, other
    assert jobdir.flow_filename(0, 10) == "flow_00001_00011.flo"
    written = {
        jobdir.FLOW: jobdir.flow_filename(2, 1),
        jobdir.KEYFRAMES: jobdir.frame_name(4, ".npy"),
        jobdir.PASSES: jobdir.pass_folder(2).relative_to(jobdir.PASSES) / jobdir.frame_name(4, ".npy"),
        jobdir.PREVIEW: f"compare/{jobdir.frame_name(4)}",
    }
    assert set(written) == set(jobdir.OWN_FILES)
    for folder, rel in written.items():  # the glob discard deletes with finds what the engine writes, not the user's
        for name in (rel, "notes.txt"):
            (tmp_path / folder / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / folder / name).write_text("")
        assert [p.relative_to(tmp_path / folder) for p in (tmp_path / folder).glob(jobdir.OWN_FILES[folder])] == [
            Path(rel)
        ], folder
