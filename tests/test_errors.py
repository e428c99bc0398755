"""Errors that used to escape as tracebacks: each is one line on stderr, an ``error`` event, exit 1,
and leaves no half-written file."""

import errno
import json
import os
import stat

import pytest
import torch

from conftest import generated_clip
from stylize_core import cli
from stylize_core.errors import StylizeError
from stylize_core.io import frames
from stylize_core.network import memory, optimize, weights

FAST = ["--vgg", "random:8", "--iterations", "3", "--iterations-later", "2", "--progress", "json"]


@pytest.fixture
def clip(tmp_path):
    return generated_clip(tmp_path, 3, (48, 32))


def stylize(clip, capsys, *extra, out=None):
    """Run the CLI; returns (exit code, the one stderr error line, JSON events)."""
    args = ["stylize", clip / "in", "--style", clip / "style.png", "--out", out or clip / "out", *FAST, *extra]
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.out.splitlines()]
    lines = captured.err.strip().splitlines()
    return code, lines, events


def assert_user_error(code, lines, events, *expected):
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert events and events[-1] == {"event": "error", "message": lines[0][len("error: ") :]}
    for text in expected:
        assert text in lines[0], (text, lines[0])


def leftovers(folder):
    return sorted(str(p) for p in folder.rglob("*") if ".tmp" in p.name)


def test_out_under_a_regular_file(clip, capsys):
    (clip / "afile").write_text("not a folder")
    for out in (clip / "afile", clip / "afile" / "out"):
        code, lines, events = stylize(clip, capsys, out=out)
        assert_user_error(code, lines, events, str(out), "a file, not a folder")
    assert (clip / "afile").read_text() == "not a folder"


@pytest.mark.parametrize("where", ["out", "parent"])
def test_read_only_output_folder(clip, capsys, monkeypatch, where):
    parent = clip / "ro"
    parent.mkdir()
    out = parent / "out" if where == "parent" else parent
    parent.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if os.geteuid() == 0:  # root writes anyway: let os.access answer as it does for other users
        real = os.access
        monkeypatch.setattr(
            os,
            "access",
            lambda p, mode: real(p, mode) and (not mode & os.W_OK or bool(os.stat(p).st_mode & stat.S_IWUSR)),
        )
    try:
        code, lines, events = stylize(clip, capsys, out=out)
    finally:
        parent.chmod(0o755)
    assert_user_error(code, lines, events, str(out), "not writable")
    assert sorted(os.listdir(parent)) == []


def test_video_that_cannot_be_written_is_refused_before_the_run(clip, capsys):
    for video, text in (
        (clip / "missing" / "clip.mp4", "does not exist"),
        (clip / "out" / "clip.gif", "unsupported video format .gif"),
        (clip, "is a folder"),
    ):
        code, lines, events = stylize(clip, capsys, "--video", video)
        assert_user_error(code, lines, events, str(video), text)
        assert not list(clip.rglob("frame_*")) or not (clip / "out").exists()
        assert not any(e["event"] == "frame" for e in events)


def test_disk_full_during_the_run_keeps_finished_frames(clip, capsys, monkeypatch):
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if str(dst).endswith("frame_00003.png"):
            raise OSError(errno.ENOSPC, "No space left on device", str(src))
        return real(src, dst)

    monkeypatch.setattr(frames.os, "replace", replace)
    code, lines, events = stylize(clip, capsys)
    assert_user_error(code, lines, events, "No space left on device", "frame_00003.png")
    assert sorted(p.name for p in (clip / "out").glob("frame_*")) == ["frame_00001.png", "frame_00002.png"]
    assert frames.read_image(clip / "out" / "frame_00002.png").shape == (32, 48, 3)
    assert leftovers(clip / "out") == []


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 9663676416 bytes. Error code 12 (Cannot allocate memory)"
        ),
        MemoryError(),
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    ],
    ids=["cpu-runtimeerror", "memoryerror", "cuda"],
)
def test_out_of_memory_in_the_optimisation(clip, capsys, monkeypatch, error):
    real, calls = optimize.Stylizer.stylize, []

    def stylize_then_fail(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise error
        return real(self, *a, **k)

    monkeypatch.setattr(optimize.Stylizer, "stylize", stylize_then_fail)
    code, lines, events = stylize(clip, capsys)
    assert_user_error(code, lines, events, "out of CPU memory on frame 2 at 48x32", "GB", "lower --scale (e.g. 0.5)")
    assert [p.name for p in (clip / "out").glob("frame_*")] == ["frame_00001.png"]
    assert leftovers(clip / "out") == []


def test_other_errors_and_ctrl_c_are_not_taken_for_out_of_memory(clip, capsys, monkeypatch):
    """A bug is one line too (named as one, the traceback on demand), recorded as failed in the manifest."""

    def boom(self, *a, **k):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(optimize.Stylizer, "stylize", boom)
    code, lines, events = stylize(clip, capsys)
    assert_user_error(
        code, lines, events, "internal error, please report it: RuntimeError: mat1 and mat2 shapes", "STYLIZE_DEBUG=1"
    )
    assert "memory" not in lines[0]
    manifest = json.loads((clip / "out" / "job.json").read_text())
    assert manifest["status"] == "failed" and "mat1 and mat2" in manifest["error"]

    def interrupt(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(optimize.Stylizer, "stylize", interrupt)
    code, lines, events = stylize(clip, capsys, "--restart")
    assert code == 130 and "resume" in lines[-1] and events[-1]["message"] == "interrupted"
    assert json.loads((clip / "out" / "job.json").read_text())["status"] == "interrupted"


def test_non_finite_loss_names_the_frame(clip, capsys, monkeypatch):
    code, lines, events = stylize(clip, capsys, "--style-weight", "inf")  # refused before it runs
    assert_user_error(code, lines, events, "--style-weight must be in [0, 1e+06], got inf")
    assert not (clip / "out").exists()
    from stylize_core.network import losses

    monkeypatch.setattr(optimize, "tv_loss", lambda image: losses.tv_loss(image) * float("inf"))
    code, lines, events = stylize(clip, capsys)
    assert_user_error(code, lines, events, "NaN or infinite on frame 1", "--style-weight", "--optimizer adam")
    assert not list((clip / "out").glob("frame_*"))
    manifest = json.loads((clip / "out" / "job.json").read_text())
    assert manifest["status"] == "failed" and "NaN or infinite on frame 1" in manifest["error"]


def test_run_too_large_for_memory_is_refused_before_anything_is_recorded(clip, capsys, monkeypatch):
    settings = ["--scale", "4", "--temporal", "none"]
    s = cli._settings(cli.build_parser().parse_args(["stylize", "x", "--style", "s", "--out", "o", *FAST, *settings]))
    need = memory.estimate((192, 128), s, "cpu", (48, 32))["total"]
    least = memory.estimate((48, 32), memory._with(s, lbfgs_history=10), "cpu", (48, 32), checkpoint=True)[
        "total"
    ]  # the last fallback: --scale 1 = 4 x 0.25
    monkeypatch.setattr(memory, "available", lambda device: least * 0.99)  # not even the last fallback fits
    code, lines, events = stylize(clip, capsys, *settings)
    assert_user_error(
        code,
        lines,
        events,
        "not enough CPU memory",
        "192x128",
        f"{need / 2**30:.1f} GB",
        "checkpointing and --scale 1;",
        "use --scale ",
    )
    assert not (clip / "out" / "job.json").exists()  # a re-run with the advised scale is not "another job"
    scale = lines[0].split("use --scale ")[1].split()[0]
    assert 0.25 <= float(scale) < 1
    code, _, events = stylize(clip, capsys, "--scale", scale, "--temporal", "none")  # fits with the fallbacks
    assert code == 0 and events[-1]["event"] == "done"


def test_run_too_large_for_memory_uses_a_fallback_and_records_it(clip, capsys, monkeypatch):
    """The plan's change is a ``warning`` event after ``start`` and the manifest's ``memory``; the
    identity keeps the requested settings, so the same command with enough memory resumes the job."""
    settings = [
        "--temporal",
        "none",
        "--iterations",
        "30",
        "--iterations-later",
        "30",
        "--tolerance",
        "0",
        "--lbfgs-history",
        "100",
    ]
    s = cli._settings(cli.build_parser().parse_args(["stylize", "x", "--style", "s", "--out", "o", *FAST, *settings]))
    fits = memory.estimate((48, 32), memory._with(s, lbfgs_history=20), "cpu", (48, 32))["total"]
    monkeypatch.setattr(memory, "available", lambda device: fits)
    code, lines, events = stylize(clip, capsys, *settings)
    assert code == 0, lines
    kinds = [e["event"] for e in events]
    assert kinds.index("start") < kinds.index("warning")
    warning = next(e["message"] for e in events if e["event"] == "warning")
    assert "using --lbfgs-history 20" in warning and "not enough CPU memory" in warning
    manifest = json.loads((clip / "out" / "job.json").read_text())
    assert manifest["settings"]["lbfgs_history"] == 20 and manifest["identity"]["settings"]["lbfgs_history"] == 100
    assert manifest["memory"]["fallbacks"] == ["--lbfgs-history 20"] and manifest["memory"]["estimate"] == fits
    monkeypatch.setattr(memory, "available", lambda device: 10 * fits)
    code, lines, events = stylize(clip, capsys, *settings)  # memory enough: the same job, done
    assert code == 0, lines
    assert next(e for e in events if e["event"] == "start")["skipped"] == 3
    assert "warning" not in [e["event"] for e in events]
    assert json.loads((clip / "out" / "job.json").read_text())["memory"]["fallbacks"] == []


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"hello, I am a text file\n", "neither a zip archive nor a pickle"),
        (b"", "the file is empty"),
        ("truncated", "truncated or corrupt zip archive"),
    ],
)
def test_garbage_weights_file_is_one_line(clip, capsys, content, reason):
    path = clip / "vgg.pth"
    if content == "truncated":
        torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, path)
        content = path.read_bytes()[:200]
    path.write_bytes(content)
    code, lines, events = stylize(clip, capsys, "--vgg", path)
    assert_user_error(code, lines, events)
    assert lines[0].startswith(f"error: cannot load VGG-19 weights from {path}: not a PyTorch weights file ({reason}")
    assert lines[0].endswith(")") and len(lines[0]) < 300


def test_missing_stylize_vgg19_file(clip, capsys, monkeypatch):
    missing = clip / "nowhere" / "vgg19.pth"
    monkeypatch.setenv(weights.ENV, str(missing))
    args = ["stylize", clip / "in", "--style", clip / "style.png", "--out", clip / "out", "--progress", "json"]
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    message = captured.err.strip()[len("error: ") :]
    assert code == 1 and json.loads(captured.out.splitlines()[-1]) == {"event": "error", "message": message}
    assert str(missing) in message and weights.ENV in message and "does not exist" in message
    assert cli.main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["weights"] == "" and info["weights_error"] == message


def test_info_reports_a_garbage_weights_file(tmp_path, capsys, monkeypatch):
    path = tmp_path / "vgg.pth"
    path.write_text("<html>404 Not Found</html>")
    monkeypatch.setenv(weights.ENV, str(path))
    assert cli.main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["weights"] == ""
    assert info["weights_error"].startswith(f"cannot load VGG-19 weights from {path}: not a PyTorch weights file")
    with pytest.raises(StylizeError) as e:
        weights.load_vgg(path)
    assert str(e.value) == info["weights_error"]
