"""Defects found by a probe of ~150 bad inputs after the first round of fixes; each test failed before its fix."""

import json
import os
import signal
import subprocess
import time

import cv2
import numpy as np
import pytest

from conftest import (
    FAST_TORCH,
    ROOT,
    contents,
    engine_cmd,
    generated_clip,
    job_at_its_first_frame,
    quick_argv,
    run_cli,
    shared_data,
)
from stylize_core.io import exr, flowio
from stylize_core.io.frames import read_image, write_png

COMMON = ["--vgg", "random:8", "--iterations", "2", "--progress", "json"]
QUALITY = [*COMMON, "--iterations-later", "2"]


@pytest.fixture
def clip(tmp_path):
    return generated_clip(tmp_path, 3, (48, 32))


def stylize(clip, capsys, *extra, out=None, inp=None, style=None):
    return run_cli(quick_argv(clip, out or clip / "out", *extra, inp=inp, style=style), capsys)


def refused(result, *expected):
    code, events, err = result
    assert code == 1 and len(err.strip().splitlines()) == 1 and events[-1]["event"] == "error", err
    for text in expected:
        assert text in err, (text, err)


def test_restart_keeps_the_users_flows_in_a_folder_of_outdir(clip, capsys):
    """The job's own flow cache is owned by its exact key: --restart used to delete OUT/flow/*/flow_*.flo."""
    out = clip / "out"
    assert stylize(clip, capsys, *QUALITY)[0] == 0
    mine = out / "flow" / "mine"
    mine.mkdir()
    for a, b in ((1, 2), (2, 1), (2, 3), (3, 2)):
        flowio.write_flo(mine / f"flow_{a:05d}_{b:05d}.flo", np.zeros((32, 48, 2), np.float32))
    before = contents(mine)
    refused(
        stylize(clip, capsys, *QUALITY, "--flow", "flo", "--flow-dir", mine, "--restart"),
        f"contains the --flow-dir {mine}",
    )
    assert contents(mine) == before
    frame = clip / "in" / "frame_00001.png"
    img = cv2.imread(str(frame))
    img[0, 0, 0] ^= 1
    cv2.imwrite(str(frame), img)  # another input: the old job's flows are discarded, its own only
    assert stylize(clip, capsys, *QUALITY, "--restart", out=out)[0] == 0
    assert contents(mine) == before


def test_an_outdir_that_is_a_link_to_the_input_is_refused(clip, capsys):
    link = clip / "link"
    link.symlink_to(clip / "in")
    before = contents(clip / "in")
    refused(stylize(clip, capsys, *QUALITY, out=link), "is the input")
    refused(stylize(clip, capsys, *QUALITY, out=clip / "in", inp=link), "is the input")
    assert contents(clip / "in") == before


def test_outdir_is_never_a_folder_the_job_reads(clip, capsys):
    mattes = clip / "mattes"
    mattes.mkdir()
    for i in range(3):
        write_png(mattes / f"m{i}.png", np.full((32, 48, 3), 0.5, np.float32))
    before = contents(mattes)
    refused(
        stylize(clip, capsys, *QUALITY, "--matte", mattes, "--region", "1=keep", out=mattes),
        f"is the --matte folder {mattes}",
    )
    refused(stylize(clip, capsys, *QUALITY, out=clip / "in" / "stylized"), "is inside the input")
    refused(stylize(clip, capsys, *QUALITY, "--video", clip / "in" / "clip.avi"), "is inside the input")
    assert contents(mattes) == before and not (clip / "in" / "stylized").exists()


def test_a_movie_decode_keeps_the_users_files_in_its_folder(tmp_path, capsys):
    tree = shared_data("video", "tree.avi")
    write_png(tmp_path / "style.png", np.full((32, 32, 3), 0.4, np.float32))
    out = tmp_path / "out"
    args = [
        "stylize",
        tree,
        "--style",
        tmp_path / "style.png",
        "--out",
        out,
        *QUALITY,
        "--max-frames",
        "2",
        "--scale",
        "0.25",
    ]
    assert run_cli(args, capsys)[0] == 0
    for name in ("notes.tmp.txt", "draft.tmp", "frame_00099.png"):
        (out / "input" / name).write_text("mine")
    assert run_cli([*args[:-4], "--max-frames", "3", "--scale", "0.25", "--restart"], capsys)[0] == 0
    assert all((out / "input" / n).read_text() == "mine" for n in ("notes.tmp.txt", "draft.tmp", "frame_00099.png"))


def test_a_movie_job_stopped_before_its_first_frame_does_not_lock_its_folder(tmp_path, capsys):
    """The decoded frames are recorded as the job's before they are written: a refusal after the decode used to
    leave an input/ folder that no manifest owned, and every later run was refused."""
    tree = shared_data("video", "tree.avi")
    write_png(tmp_path / "style.png", np.full((32, 32, 3), 0.4, np.float32))
    out = tmp_path / "out"
    args = ["stylize", tree, "--style", tmp_path / "style.png", "--out", out, *QUALITY, "--max-frames", "2"]
    refused(run_cli([*args, "--scale", "0.01"], capsys), "--scale 0.01 makes the 320x240 frames")
    assert json.loads((out / "job.json").read_text())["status"] == "failed"
    assert run_cli([*args, "--scale", "0.25"], capsys)[0] == 0


@pytest.mark.parametrize(
    "edit", [{"frames": "abc"}, {"owns": {"frames": "x"}}, {"owns": {"folders": 5}}, {"identity": []}]
)
def test_a_malformed_manifest_is_refused_in_one_line(clip, capsys, edit):
    out = clip / "out"
    assert stylize(clip, capsys, *QUALITY)[0] == 0
    record = {**json.loads((out / "job.json").read_text()), **edit}
    (out / "job.json").write_text(json.dumps(record))
    before = contents(out)
    refused(stylize(clip, capsys, *QUALITY, "--restart"), "is not a manifest of this engine")
    assert contents(out) == before


def test_odd_inputs_are_one_line(clip, capsys, tmp_path):
    write_png(tmp_path / "thin.png", np.full((8, 4000, 3), 0.5, np.float32))
    refused(stylize(clip, capsys, *QUALITY, style=tmp_path / "thin.png"), "too small to carry a style")
    write_png(tmp_path / "thin2.png", np.full((16, 4000, 3), 0.5, np.float32))
    refused(
        stylize(clip, capsys, *QUALITY, style=tmp_path / "thin2.png"),
        "no --style-scale up to 4 is enough: use a less elongated style image",
    )
    rgba = np.dstack([np.full((40, 40, 3), 128, np.uint8), np.full((40, 40), 128, np.uint8)])
    cv2.imwrite(str(tmp_path / "half.png"), rgba)
    refused(stylize(clip, capsys, *QUALITY, style=tmp_path / "half.png"), "has transparent pixels")
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    refused(stylize(clip, capsys, *QUALITY, style=fifo), "is not a regular file")  # used to hang
    refused(stylize(clip, capsys, *QUALITY, "--flow", "vector", "--flow-dir", clip / "style.png"), "is not a folder")
    refused(stylize(clip, capsys, *QUALITY, "--regions", ""), "--regions is empty")
    refused(stylize(clip, capsys, *QUALITY, "--long-term", "10001"), "got 10001")
    refused(
        stylize(
            clip, capsys, *QUALITY, "--matte", clip / "in", "--region", f"1={clip / 'style.png'}:nan", out=clip / "o2"
        ),
        "the strength after ':' must be a number from 0 to 100",
    )


def test_damaged_exr_frames_are_one_line_and_the_event_stream_stays_json(tmp_path):
    folder = tmp_path / "exr"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        exr.write_exr(folder / f"f{i}.exr", {c: rng.random((32, 48), dtype=np.float32) for c in "RGB"})
    data = (folder / "f1.exr").read_bytes()
    (folder / "f1.exr").write_bytes(data[: len(data) // 2])
    write_png(tmp_path / "style.png", np.full((32, 32, 3), 0.4, np.float32))
    done = subprocess.run(
        engine_cmd("stylize", folder, "--style", tmp_path / "style.png", "--out", tmp_path / "out", *QUALITY),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert all(json.loads(line) for line in done.stdout.splitlines())  # only JSON on stdout
    assert "cannot decode EXR file f1.exr: truncated or corrupt" in done.stderr.strip().splitlines()[-1]


def test_nan_pixels_of_a_render_do_not_poison_the_losses(tmp_path, capsys):
    folder = tmp_path / "exr"
    folder.mkdir()
    for i in range(2):
        px = np.full((32, 48), 0.3, np.float32)
        px[3, 3], px[4, 4] = np.nan, np.inf
        exr.write_exr(folder / f"f{i}.exr", {c: px for c in "RGB"})
    write_png(tmp_path / "style.png", np.full((32, 32, 3), 0.4, np.float32))
    code, _, err = run_cli(
        ["stylize", folder, "--style", tmp_path / "style.png", "--out", tmp_path / "out", *QUALITY], capsys
    )
    assert code == 0, err
    assert np.isfinite(read_image(tmp_path / "out" / "frame_00001.png")).all()


def test_fast_mode_keeps_the_frames_colours_with_preserve_colors(tmp_path, capsys):
    clip = generated_clip(tmp_path, 4, (48, 32))
    code, _, err = run_cli(quick_argv(clip, clip / "out", *COMMON, *FAST_TORCH, "--preserve-colors"), capsys)
    assert code == 0, err
    yiq = np.array([[0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
    for i in range(4):
        name = f"frame_{i + 1:05d}.png"
        chroma = [read_image(f / name) @ yiq.T for f in (clip / "in", clip / "out")]
        assert np.abs(chroma[0] - chroma[1]).mean() < 0.01, i  # synthesised frames drifted frame by frame before


def test_a_region_label_no_frame_has_is_named_in_a_warning(clip, capsys):
    mattes = clip / "mattes"
    mattes.mkdir()
    for i in range(3):
        half = np.ones((32, 48, 3), np.float32)
        half[:, :24] = 0
        write_png(mattes / f"m{i}.png", half)
    code, events, err = stylize(clip, capsys, *QUALITY, "--matte", mattes, "--region", "0=keep", "--region", "7=keep")
    assert code == 0, err
    warning = [e["message"] for e in events if e["event"] == "warning"]
    assert any("no frame has label 7: its style is not used (labels present: 0, 1)" in w for w in warning), warning


def test_the_demo_never_writes_over_files_it_did_not_write(tmp_path, capsys):
    from stylize_core import cli

    (tmp_path / "style.png").write_text("mine")
    code = cli.main(["demo", "--out", str(tmp_path), "--frames", "2", "--vgg", "random:8", "--progress", "none"])
    assert code == 1 and "holds files the demo did not write" in capsys.readouterr().err
    assert (tmp_path / "style.png").read_text() == "mine"


def test_a_second_interrupt_while_the_job_winds_down_is_ignored(clip):
    proc, _ = job_at_its_first_frame(clip, 400)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130
    err = proc.stderr.read()
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert json.loads((clip / "out" / "job.json").read_text())["status"] == "interrupted"


# -- a third probe ---------------------------------------------------------------------------------------------
def test_pipes_broken_links_and_odd_names_are_one_line(clip, capsys, tmp_path):
    fifo = tmp_path / "map.json"
    os.mkfifo(fifo)
    refused(
        stylize(clip, capsys, *QUALITY, "--matte", clip / "in", "--region-map", fifo, out=clip / "o1"),
        "not a regular file",
    )  # used to hang
    flows = tmp_path / "flows"
    flows.mkdir()
    os.mkfifo(flows / "flow_00002_00001.flo")
    refused(
        stylize(clip, capsys, *QUALITY, "--flow", "flo", "--flow-dir", flows, out=clip / "o2"), "not a regular file"
    )  # used to hang
    (clip / "in" / "frame_00009.png").symlink_to(tmp_path / "nowhere.png")
    refused(stylize(clip, capsys, *QUALITY, out=clip / "o3"), "frame_00009.png: a broken link")  # was skipped
    (clip / "in" / "frame_00009.png").unlink()
    bad = os.fsdecode(os.fsencode(str(tmp_path)) + b"/v\xfe.mp4")
    refused(stylize(clip, capsys, *QUALITY, "--video", bad, out=clip / "o4"), "is not valid UTF-8")  # segfault


def test_missing_flo_files_are_found_before_the_first_frame(clip, capsys, tmp_path):
    (tmp_path / "flows").mkdir()
    refused(stylize(clip, capsys, *QUALITY, "--flow", "flo", "--flow-dir", tmp_path / "flows"), "missing flow file")
    assert not list((clip / "out").glob("frame_*"))  # it used to write frame 1 first


@pytest.mark.parametrize(
    "edit",
    [{"owns": {"frames": 3, "folders": ["flow/../../victim"], "videos": []}}, {"threads": "x"}, {"threads": 100000}],
)
def test_a_manifest_that_would_reach_outside_outdir_or_break_torch_is_refused(clip, capsys, tmp_path, edit):
    victim = clip / "victim"
    victim.mkdir()
    (victim / "flow_00001_00002.flo").write_text("mine")
    assert stylize(clip, capsys, *QUALITY)[0] == 0
    record = {**json.loads((clip / "out" / "job.json").read_text()), **edit}
    (clip / "out" / "job.json").write_text(json.dumps(record))
    refused(stylize(clip, capsys, *QUALITY, "--restart"), "is not a manifest of this engine")
    assert (victim / "flow_00001_00002.flo").read_text() == "mine"


def test_an_older_engines_manifest_never_deletes_a_users_flow_folder(clip, capsys):
    out = clip / "out"
    assert stylize(clip, capsys, *QUALITY)[0] == 0
    record = json.loads((out / "job.json").read_text())
    del record["owns"]
    (out / "job.json").write_text(json.dumps(record))
    (out / "flow" / "mine").mkdir()
    (out / "flow" / "mine" / "flow_00001_00002.flo").write_text("mine")
    frame = clip / "in" / "frame_00001.png"
    img = cv2.imread(str(frame))
    img[0, 0, 0] ^= 1
    cv2.imwrite(str(frame), img)  # another input: the old flows go, but only the engine's own cache folders
    assert stylize(clip, capsys, *QUALITY, "--restart")[0] == 0
    assert (out / "flow" / "mine" / "flow_00001_00002.flo").read_text() == "mine"


def test_the_demo_clears_its_own_earlier_clip(tmp_path, capsys):
    from stylize_core import cli

    for frames in ("3", "2"):
        assert (
            cli.main(
                [
                    "demo",
                    "--out",
                    str(tmp_path),
                    "--frames",
                    frames,
                    "--vgg",
                    "random:8",
                    "--progress",
                    "none",
                    "--restart",
                ]
            )
            == 0
        )
    assert sorted(p.name for p in (tmp_path / "input").iterdir()) == ["frame_00001.png", "frame_00002.png"]


@pytest.mark.parametrize(
    "extra, why", [(["--strength", "0"], "--strength is 0"), (["--style-weight", "0"], "--style-weight is 0")]
)
def test_a_job_that_applies_no_style_says_so(clip, capsys, extra, why):
    code, events, err = stylize(clip, capsys, *QUALITY, *extra)
    assert code == 0, err
    assert any(e["event"] == "warning" and f"no style is applied: {why}" in e["message"] for e in events)
