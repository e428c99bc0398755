"""The engine end to end: CLI, outputs, progress, resume, interruption and bad input."""

import json
import os
import signal
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, generated_clip, job_at_its_first_frame, quick_argv, run_cli, shared_data
from stylize_core import cli, demo
from stylize_core.io import flowio
from stylize_core.io.frames import read_image

FAST = ["--vgg", "random:8", "--iterations", "4", "--iterations-later", "3", "--progress", "json"]


@pytest.fixture
def clip(tmp_path):
    """A 5-frame 48x32 generated clip and a style image."""
    return generated_clip(tmp_path, 5, (48, 32))


def snapshot(folder):
    return {p: p.stat().st_mtime_ns for p in Path(folder).rglob("*")}


def test_stylize_frames_folder(clip, capsys):
    out = clip / "out"
    before = snapshot(clip / "in")
    code, events, _ = run_cli(
        ["stylize", clip / "in", "--style", clip / "style.png", "--out", out, "--video", out / "clip.mp4", *FAST],
        capsys,
    )
    assert code == 0
    frames = sorted(out.glob("frame_*.png"))
    assert [p.name for p in frames] == [f"frame_{i:05d}.png" for i in range(1, 6)]
    assert all(read_image(p).shape == (32, 48, 3) for p in frames)
    assert [e["event"] for e in events][0] == "start" and events[-1]["event"] == "done"
    progress = [e for e in events if e["event"] == "progress"]
    assert {"frame", "pass", "iteration", "loss", "seconds", "eta"} <= progress[0].keys()
    assert [e["frame"] for e in events if e["event"] == "frame"] == [1, 2, 3, 4, 5]
    assert progress[-1]["eta"] == 0.0
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 48
    manifest = json.loads((out / "job.json").read_text())
    assert manifest["status"] == "done" and manifest["frames"] == 5
    assert len(list((out / "flow").rglob("*.flo"))) == 8  # t->t-1 and t-1->t for 4 pairs
    assert snapshot(clip / "in") == before  # input untouched


def test_stylize_real_video_cut(tmp_path, capsys):
    tree = shared_data("video", "tree.avi")
    demo.make_style(tmp_path / "style.png", size=(64, 64))
    code, events, _ = run_cli(
        [
            "stylize",
            tree,
            "--style",
            tmp_path / "style.png",
            "--out",
            tmp_path / "out",
            "--max-frames",
            "3",
            "--scale",
            "0.25",
            *FAST,
        ],
        capsys,
    )
    assert code == 0
    frames = sorted((tmp_path / "out").glob("frame_*.png"))
    assert len(frames) == 3 and read_image(frames[0]).shape == (240, 320, 3)
    assert events[0]["width"] == 320 and events[0]["height"] == 240


def test_resume_skips_finished_frames(clip, capsys):
    args = ["stylize", clip / "in", "--style", clip / "style.png", "--out", clip / "out", *FAST]
    assert run_cli(args, capsys)[0] == 0
    kept = {p: p.stat().st_mtime_ns for p in sorted((clip / "out").glob("frame_*.png"))[:3]}
    for p in sorted((clip / "out").glob("frame_*.png"))[3:]:
        p.unlink()
    code, events, _ = run_cli(args, capsys)
    assert code == 0 and events[0]["skipped"] == 3
    assert [e["frame"] for e in events if e["event"] == "frame"] == [4, 5]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    # another job in the same folder is refused; --restart discards the old one
    code, _, err = run_cli([*args, "--strength", "2"], capsys)
    assert code == 1 and "--restart" in err and "strength" in err
    code, events, _ = run_cli([*args, "--strength", "2", "--restart"], capsys)
    assert code == 0 and events[0]["skipped"] == 0


def test_interrupted_run_keeps_valid_frames_and_resumes(clip):
    proc, cmd = job_at_its_first_frame(clip, 200)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 130
    assert "resume" in proc.stderr.read()
    names = sorted(os.listdir(clip / "out"))
    assert not [n for n in names if ".tmp" in n]
    frames = sorted((clip / "out").glob("frame_*.png"))
    assert 1 <= len(frames) < 5 and all(read_image(p).shape == (32, 48, 3) for p in frames)
    done = subprocess.run(
        cmd[:-6] + ["--iterations-later", "2", "--progress", "none", "--restart"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and len(list((clip / "out").glob("frame_*.png"))) == 5


def test_precomputed_flo_flows(clip, capsys):
    flows = clip / "flows"
    flows.mkdir()
    for a in range(1, 5):
        flowio.write_flo(flows / f"flow_{a:05d}_{a + 1:05d}.flo", np.zeros((32, 48, 2), np.float32))
        flowio.write_flo(flows / f"flow_{a + 1:05d}_{a:05d}.flo", np.zeros((32, 48, 2), np.float32))
    args = quick_argv(clip, clip / "out", "--flow", "flo", "--flow-dir", flows, *FAST)
    assert run_cli(args, capsys)[0] == 0
    flowio.write_flo(flows / "flow_00003_00002.flo", np.zeros((30, 48, 2), np.float32))
    code, events, err = run_cli([*args, "--restart"], capsys)
    assert code == 1 and "flow_00003_00002.flo" in err and "48x30" in err
    assert events[-1]["event"] == "error"
    bad = np.zeros((32, 48, 2), np.float32)
    bad[3, 3, 0] = np.nan
    flowio.write_flo(flows / "flow_00003_00002.flo", bad)
    code, _, err = run_cli([*args, "--restart"], capsys)
    assert code == 1 and "NaN" in err


def bad_input_cases(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notimage.png").write_text("hello")
    mixed = tmp_path / "mixed"
    demo.make_clip(mixed, frames=2, size=(48, 32))
    cv2.imwrite(str(mixed / "frame_00003.png"), np.zeros((20, 20, 3), np.uint8))
    good_in, style = tmp_path / "good", tmp_path / "style.png"
    demo.make_clip(good_in, frames=2, size=(48, 32))
    demo.make_style(style, size=(32, 32))
    return [
        ([tmp_path / "missing", "--style", style], "input not found"),
        ([good_in, "--style", tmp_path / "nostyle.png"], "style image not found"),
        ([good_in, "--style", tmp_path / "notimage.png"], "cannot decode style image"),
        ([tmp_path / "empty", "--style", style], "no frames"),
        ([tmp_path / "empty.mp4", "--style", style], "empty.mp4"),
        ([mixed, "--style", style], "frame_00003.png"),
        ([good_in, "--style", style, "--scale", "0"], "scale"),
        ([good_in, "--style", style, "--vgg", tmp_path / "no.pth"], "weights not found"),
    ]


def test_bad_inputs_give_one_clear_line(tmp_path, capsys):
    for args, expected in bad_input_cases(tmp_path):
        out = tmp_path / "out"
        before = {p for p in tmp_path.iterdir()}
        code = cli.main(
            ["stylize", *map(str, args), "--out", str(out), "--progress", "none", "--vgg", "random:8"]
            if "--vgg" not in map(str, args)
            else ["stylize", *map(str, args), "--out", str(out), "--progress", "none"]
        )
        err = capsys.readouterr().err.strip()
        assert code == 1, args
        assert err.startswith("error: ") and len(err.splitlines()) == 1, err
        assert expected in err, (expected, err)
        assert {p for p in tmp_path.iterdir()} - before <= {out}  # nothing written outside OUTDIR
        assert not list(out.glob("frame_*")) if out.exists() else True


def test_out_of_memory_suggests_a_lower_scale(clip, capsys, monkeypatch):
    import torch

    from stylize_core.network import optimize

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(optimize.Stylizer, "stylize", oom)
    code, events, err = run_cli(
        ["stylize", clip / "in", "--style", clip / "style.png", "--out", clip / "out", *FAST], capsys
    )
    assert code == 1 and "--scale" in err and "frame 1 at 48x32" in err and len(err.splitlines()) == 1
    assert events[-1] == {"event": "error", "message": err.strip()[len("error: ") :]}


def test_help_documents_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["stylize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    options = [
        a
        for a in cli.build_parser()._subparsers._group_actions[0].choices["stylize"]._actions
        if a.option_strings and a.dest != "help"
    ]
    for action in options:
        assert action.option_strings[-1] in text
        assert "default" in (action.help or "") or action.required, action.dest


def test_done_event_reports_stage_timings(clip, capsys):
    code, events, _ = run_cli(
        ["stylize", clip / "in", "--style", clip / "style.png", "--out", clip / "out", *FAST], capsys
    )
    timings = events[-1]["timings"]
    assert code == 0 and set(timings) == {"flow", "consistency", "optimise", "io"}
    assert timings["optimise"] > 0 and timings["flow"] > 0 and timings["io"] > 0
    assert sum(timings.values()) <= events[-1]["seconds"] + 0.05


def test_edited_input_is_another_job(clip, capsys):
    args = ["stylize", clip / "in", "--style", clip / "style.png", "--out", clip / "out", *FAST]
    assert run_cli(args, capsys)[0] == 0
    frame = sorted((clip / "in").iterdir())[2]
    img = cv2.imread(str(frame))
    img[0, 0, 0] ^= 1  # one pixel re-rendered (identical re-exports: tests/test_identity.py)
    cv2.imwrite(str(frame), img)
    code, _, err = run_cli(args, capsys)
    assert code == 1 and "input.content" in err


def test_no_download_never_downloads(clip, capsys, monkeypatch, tmp_path):
    from stylize_core.network import weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    monkeypatch.delenv(weights.ENV, raising=False)
    monkeypatch.setattr(weights, "download", lambda: pytest.fail("tried to download"))
    code, _, err = run_cli(quick_argv(clip, clip / "out", "--no-download", "--progress", "none"), capsys)
    assert code == 1 and "weights not found" in err and str(weights.hub_path()) in err


def test_info_json(capsys):
    assert cli.main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    import torch

    assert info["torch"] == torch.__version__ and "dis" in info["flows"]
    assert info["cuda"] is torch.cuda.is_available() and info["mps"] is torch.backends.mps.is_available()
    assert "weights" in info


def test_frames_without_a_manifest_are_neither_resumed_nor_deleted(clip, capsys):
    """Frame files no manifest records are not the engine's: refused, --restart included (it used to
    delete them), and left as they are."""
    out = clip / "out"
    out.mkdir()
    (out / "frame_00001.png").write_bytes((clip / "style.png").read_bytes())
    args = ["stylize", clip / "in", "--style", clip / "style.png", "--out", out, *FAST]
    for extra in ([], ["--restart"]):
        code, events, err = run_cli([*args, *extra], capsys)
        assert code == 1 and "holds frame_00001.png, which no job of this engine wrote" in err, err
        assert "another job" not in err and events[-1]["event"] == "error"
        assert sorted(os.listdir(out)) == ["frame_00001.png"]
        assert (out / "frame_00001.png").read_bytes() == (clip / "style.png").read_bytes()


def test_flow_cache_is_dropped_when_the_input_changes(clip, capsys):
    args = ["stylize", clip / "in", "--style", clip / "style.png", "--out", clip / "out", *FAST]
    assert run_cli(args, capsys)[0] == 0
    cached = next((clip / "out" / "flow").rglob("*.flo"))
    marker = cached.stat().st_mtime_ns
    assert run_cli([*args, "--restart"], capsys)[0] == 0
    assert cached.stat().st_mtime_ns == marker  # same input: flows reused
    frame = sorted((clip / "in").iterdir())[0]
    img = cv2.imread(str(frame))
    img[0, 0, 0] ^= 1
    cv2.imwrite(str(frame), img)
    assert run_cli([*args, "--restart"], capsys)[0] == 0
    assert cached.stat().st_mtime_ns != marker  # edited input: recomputed


def test_paper_options_reach_the_manifest(clip, capsys):
    """The paper's options as CLI flags: recorded in the manifest's settings; a bad choice is one line."""
    args = quick_argv(
        clip,
        clip / "out",
        *"--vgg random:8 --progress json --preset paper-multipass --flow dis --pass-iterations 2 --passes 3".split(),
        *"--style-match area --reliability-widen 1.5 --tolerance-window 5".split(),
    )
    code, _, err = run_cli(args, capsys)  # the preset's temporal loss from pass 8: never, in 3 passes
    assert code == 1 and "--temporal-from-pass 8 is after the last of the 3 passes" in err
    args += ["--temporal-from-pass", "3"]
    code, events, _ = run_cli(args, capsys)
    assert code == 0 and events[-1]["event"] == "done"
    s = json.loads((clip / "out" / "job.json").read_text())["settings"]
    assert (s["style_match"], s["reliability_widen"], s["tolerance_window"], s["first_pass"]) == (
        "area",
        1.5,
        5,
        "independent",
    )
    assert (s["passes"], s["temporal_from_pass"], s["temporal_weight"]) == (3, 3, 100.0)
    code, _, err = run_cli([*args[:4], "--out", clip / "bad", *FAST, "--style-match", "diagonal"], capsys)
    assert code == 1 and "--style-match must be one of side, area" in err and len(err.strip().splitlines()) == 1
