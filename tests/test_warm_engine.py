"""The add-on's client of the warm engine (``addon/worker.py``: ``server``, ``Server``, ``ServedRun``; no bpy):
previews one after another in one engine process, read like a process of their own; a stop ends the engine."""

import importlib.util
import os
import sys
import time

import pytest

from conftest import ROOT, noise_clip
from stylize_core.io import jobdir

spec = importlib.util.spec_from_file_location("addon_worker", ROOT / "addon" / "worker.py")
worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(worker)  # the module alone: the add-on's package needs bpy


@pytest.fixture
def request_args(tmp_path):
    frames, _ = noise_clip(tmp_path, 3, (48, 32), 1, (32, 32))

    def cmd(at, iterations=2):
        return worker.engine_command(
            sys.executable,
            frames,
            tmp_path / "style.png",
            tmp_path / "jobs",
            {"network": "random:8", "preset": "draft", "iterations": iterations, "at": at},
            "preview",
        )

    yield cmd
    worker.stop_server()


def wait(run, timeout=120):
    lines, end = [], time.monotonic() + timeout
    while run.returncode is None:
        assert time.monotonic() < end, "the served command did not end"
        lines += run.drain()
        time.sleep(0.05)
    return [e for e in map(worker.parse_event, lines + run.drain()) if e]


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def test_previews_share_one_engine_and_read_like_processes(request_args, tmp_path):
    log = tmp_path / "worker.log"
    engine = worker.server(sys.executable, env(), tmp_path / "warm.log")
    first = engine.run(request_args(1), log)
    events = wait(first)
    assert first.returncode == 0 and not engine.busy
    assert [e["event"] for e in events][0] == "start" and events[-1]["event"] == "done"
    assert all(e["event"] not in ("served", "ready") for e in events)  # the protocol's own events stay inside
    assert worker.server(sys.executable, env(), tmp_path / "warm.log") is engine  # idle, same interpreter: reused
    pid = engine.process.proc.pid
    second = engine.run(request_args(2), log)
    assert wait(second)[-1]["paths"][0].endswith(jobdir.frame_name(1))
    assert engine.alive and engine.process.proc.pid == pid and worker.server(sys.executable, env(), log) is engine
    text = log.read_text()
    assert text.count(f"$ (warm engine, pid {first.pid}) preview") == 2 and text.count("preview: ") == 2
    refused = engine.run(request_args(9), log)  # the engine refuses frame 9 of 3: code 1, its error event
    assert any(e["event"] == "error" for e in wait(refused)) and refused.returncode == 1
    other = worker.server(sys.executable, {**env(), "STYLIZE_X": "1"}, tmp_path / "warm.log")
    assert other is not engine and not engine.alive  # another environment: a new engine, the old one ended
    worker.forget_probes()  # after Install PyTorch: the engine imported the old packages
    assert not other.alive and worker.server(sys.executable, env(), log) is not other


def test_stopping_a_served_command_ends_the_engine(request_args, tmp_path):
    engine = worker.server(sys.executable, env(), tmp_path / "warm.log")
    run = engine.run(request_args(1, iterations=100000), tmp_path / "worker.log")
    end = time.monotonic() + 120
    while not any((worker.parse_event(line) or {}).get("event") == "progress" for line in run.drain()):
        assert time.monotonic() < end
        time.sleep(0.05)
    run.stop()
    assert not engine.alive and run.returncode not in (None, 0)
    assert worker.server(sys.executable, env(), tmp_path / "warm.log") is not engine  # the next preview: a new one
