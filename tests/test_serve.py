"""The warm engine (``python -m stylize_core serve``): commands run one after another in one process, their
events each ended by ``served``; bad requests answered without ending it; an interrupt ends it."""

import io
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import noise_clip
from stylize_core.io import jobdir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def clip(tmp_path):
    return noise_clip(tmp_path, 3, (64, 48), 0, (48, 48))


def start():
    return subprocess.Popen(
        [sys.executable, "-m", "stylize_core", "serve"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def send(server, request):
    """Send one request; its events up to and including ``served``."""
    server.stdin.write((request if isinstance(request, str) else json.dumps(request)) + "\n")
    server.stdin.flush()
    events = []
    while not events or events[-1]["event"] != "served":
        line = server.stdout.readline()
        assert line, f"the server ended: {server.stderr.read()[-2000:]}"
        events.append(json.loads(line))
    return events


def preview_request(frames, style, out, at, log, *extra):
    return {
        "argv": [
            "preview",
            str(frames),
            "--style",
            str(style),
            "--out",
            str(out),
            "--at",
            str(at),
            "--network",
            "random:8",
            "--preset",
            "draft",
            "--iterations",
            "2",
            "--progress",
            "json",
            *extra,
        ],
        "log": str(log),
    }


def test_two_previews_in_one_process_then_bad_requests_then_end_of_input(clip, tmp_path):
    frames, style = clip
    server = start()
    try:
        assert json.loads(server.stdout.readline()) == {"event": "ready"}
        log = tmp_path / "worker.log"
        first = send(server, preview_request(frames, style, tmp_path / "out", 1, log))
        second = send(server, preview_request(frames, style, tmp_path / "out", 3, log))
        for events, at in ((first, 1), (second, 3)):
            assert events[-1] == {"event": "served", "code": 0}
            assert events[0]["event"] == "start"
            done = [e for e in events if e["event"] == "done"]
            assert done and done[0]["paths"] == [str(tmp_path / "out" / jobdir.PREVIEW / jobdir.frame_name(at - 1))]
            assert Path(done[0]["paths"][0]).is_file()
        assert log.read_text().count("preview: ") == 2  # the commands' text output went to the request's log
        # a refusal of the engine: its error event and code 1; the server goes on
        refused = send(server, preview_request(frames, style, tmp_path / "out", 7, log))
        assert refused[-1] == {"event": "served", "code": 1}
        assert any(e["event"] == "error" and "7" in e["message"] for e in refused)
        bad = send(server, "not json")
        assert bad[-1] == {"event": "served", "code": 2} and bad[0]["event"] == "error"
        assert "bad request" in bad[0]["message"]
        other = send(server, {"argv": ["info"]})
        assert other[0]["message"] == "bad request: serve runs stylize or preview, not 'info'"
        before = log.read_text()
        usage = send(server, {"argv": ["preview", str(frames)], "log": str(log)})  # no --at: argparse's usage error
        assert usage[-1] == {"event": "served", "code": 2}
        assert usage[0]["event"] == "error" and "the following arguments are required: --at" in usage[0]["message"]
        assert "required: --at" in log.read_text()[len(before) :]
        helped = send(server, {"argv": ["preview", "--help"]})
        assert helped[-1]["code"] == 2 and "--help prints to a terminal" in helped[0]["message"]
        server.stdin.close()
        assert server.wait(30) == 0
    finally:
        server.kill()
        server.wait()


def test_an_interrupted_command_ends_the_server_and_keeps_the_job_resumable(clip, tmp_path):
    frames, style = clip
    server = start()
    try:
        assert json.loads(server.stdout.readline())["event"] == "ready"
        request = preview_request(frames, style, tmp_path / "out", 1, tmp_path / "log")
        request["argv"][request["argv"].index("2")] = "100000"  # iterations: long enough to be interrupted
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        while json.loads(server.stdout.readline())["event"] != "progress":
            pass
        server.send_signal(signal.SIGTERM)
        events = [json.loads(line) for line in server.stdout]
        assert events[-1] == {"event": "served", "code": 130}
        assert server.wait(30) == 130
        assert json.loads((tmp_path / "out" / jobdir.MANIFEST).read_text())["status"] == "interrupted"
    finally:
        server.kill()
        server.wait()


def test_a_broken_engine_is_one_error_event_before_ready(monkeypatch, capsys):
    """The warm engine imports the engine before it says ``ready`` (the first request does not pay for torch),
    so a broken installation is one ``error`` event and exit code 1, not a ``ready`` server failing every request
    (a lint pass once removed that import as unused)."""
    import stylize_core
    from stylize_core import serve

    monkeypatch.delattr(stylize_core, "schedule", raising=False)
    monkeypatch.setitem(sys.modules, "stylize_core.schedule", None)  # ``from . import schedule`` fails
    assert serve.serve(io.StringIO("")) == 1
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events] == ["error"]
    assert events[0]["message"].startswith("the engine cannot start: ModuleNotFoundError")
