"""Child processes: the engine worker, the warm engine of the previews (``python -m stylize_core serve``), the
environment probe and pip. No bpy in here.

The engine runs as ``python -m stylize_core stylize ... --progress json``; a reader
thread puts its stdout lines into a queue that the add-on drains on a timer, so
Blender never blocks on the pipe.
"""

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

ENGINE = "stylize_core"
_NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0)  # no console window pops up on Windows


def engine_root():
    """Folder holding the ``stylize_core`` package: vendored in the extension, else the repo root."""
    here = Path(__file__).resolve().parent
    for root in (here / "vendor", here.parent):
        if (root / ENGINE / "__init__.py").is_file():
            return root
    raise FileNotFoundError(f"the {ENGINE} engine is missing next to {here}: reinstall the add-on")


def environment(paths):
    """``os.environ`` with the engine root and ``paths`` in front of PYTHONPATH, unbuffered output."""
    env = dict(os.environ)
    entries = [str(engine_root()), *map(str, paths)]
    if env.get("PYTHONPATH"):
        entries.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(entries)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def engine_command(python, frames, style, jobs, options, command="stylize"):
    """The engine command line, its output in ``jobs/<job id>/`` (no ``--style`` if ``style`` is None:
    regions name theirs); ``options`` maps long option
    names to values: True = a flag, None or False = left out, a list = the option once per item,
    anything else (0 too) = its value. ``command``: ``stylize``, or ``preview`` (with an ``at`` option)."""
    cmd = [python, "-m", ENGINE, command, str(frames), *(["--style", str(style)] if style else []), "--jobs", str(jobs)]
    for name, value in options.items():
        if isinstance(value, list):
            for item in value:
                cmd += [f"--{name}", str(item)]
        elif value is True:
            cmd.append(f"--{name}")
        elif value is not None and value is not False:
            cmd += [f"--{name}", repr(value) if isinstance(value, float) else str(value)]
    return cmd + ["--progress", "json"]


def blender_command(binary, code, module=False):
    """Run Python ``code`` in a background Blender: ``binary -b ...`` for a Blender executable,
    or ``binary -c code`` when Blender is the ``bpy`` module of the Python interpreter ``binary``."""
    if module:
        return [binary, "-c", f"import bpy\n{code}"]
    return [binary, "-b", "--python-exit-code", "1", "--python-expr", code]


def parse_event(line):
    """A JSON progress event (a dict with ``"event"``), or None for any other line."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def wait(process, on_event):
    """One look at a child ``process`` (a ``Process`` or ``ServedRun``) without blocking: ``on_event(event)`` for
    each JSON event among the lines it wrote since the last look; its exit code once it ended and all its output
    was read, else None."""
    for line in process.drain():
        if event := parse_event(line):
            on_event(event)
    return process.returncode


class Process:
    """A child process whose stdout lines a daemon thread queues; stderr goes to a log file."""

    def __init__(self, cmd, env=None, cwd=None, log_path=None, stdin=False):
        self.cmd = [str(c) for c in cmd]
        self.log = open(log_path, "a", encoding="utf-8") if log_path else None
        if self.log:
            self.log.write("$ " + subprocess.list2cmdline(self.cmd) + "\n")
            self.log.flush()
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.log or subprocess.STDOUT,
            env=env,
            cwd=cwd,
            text=True,
            encoding="utf-8",
            errors="replace",
            creationflags=_NO_WINDOW,
        )
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\r\n"))
        self.proc.stdout.close()

    def drain(self):
        """Lines read since the last call."""
        out = []
        while True:
            try:
                out.append(self.lines.get_nowait())
            except queue.Empty:
                return out

    @property
    def returncode(self):
        """Exit code once the process ended and all its output was read, else None."""
        if self.proc.poll() is None or self.reader.is_alive():
            return None
        self._close_log()
        return self.proc.returncode

    def stop(self, timeout=5.0):
        """Terminate (the engine then keeps its finished frames), wait, kill if it hangs."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout)
        self._close_log()

    def _close_log(self):
        if self.log and not self.log.closed:
            self.log.close()


class Server:
    """A warm engine, ``python -m stylize_core serve`` (see the engine's ``serve.py``): one command per request,
    torch and the networks kept loaded between them. Started ahead of need (the add-on's ``job.warm_engine``), so
    that its imports overlap the export; ``run`` sends a command, ``ServedRun`` reads its events."""

    def __init__(self, python, env, log_path):
        self.key = server_key(python, env)
        self.process = Process([python, "-m", ENGINE, "serve"], env=env, log_path=log_path, stdin=True)
        self.busy = False

    @property
    def alive(self):
        return self.process.proc.poll() is None

    def run(self, cmd, log_path):
        """Send the engine command ``cmd`` (``engine_command``'s: run here without its ``python -m stylize_core``);
        a ``ServedRun``. ``log_path``: where its text output goes."""
        self.busy = True
        argv = cmd[cmd.index(ENGINE) + 1 :]
        request = json.dumps({"argv": [str(a) for a in argv], "log": str(log_path)})
        with open(log_path, "a", encoding="utf-8") as log:  # what was asked, as a Process logs its command line
            log.write(f"$ (warm engine, pid {self.process.proc.pid}) {subprocess.list2cmdline(argv)}\n")
        self.process.proc.stdin.write(request + "\n")
        self.process.proc.stdin.flush()
        return ServedRun(self)

    def stop(self):
        self.process.stop()


class ServedRun:
    """One command run by a ``Server``, read like a ``Process``: ``drain`` (its lines), ``returncode`` (None until
    its ``served`` event), ``stop`` (ends the server: a cancelled command leaves nothing warm behind)."""

    def __init__(self, server):
        self.server, self.code, self.pending = server, None, []

    @property
    def pid(self):
        return self.server.process.proc.pid

    def drain(self):
        lines, self.pending = self.pending, []
        if self.code is not None:
            return lines
        for line in self.server.process.drain():
            event = parse_event(line)
            if event and event["event"] == "served":
                self.code, self.server.busy = event["code"], False
                break
            if not (event and event["event"] == "ready"):
                lines.append(line)
        return lines

    @property
    def returncode(self):
        if self.code is None and not self.server.alive:
            self.pending += self.drain()  # what it wrote before it ended: for the next ``drain``
            if self.code is None:
                self.code = self.server.process.returncode
                if self.code is None:
                    return None
                self.code = self.code or 1  # it ended inside a command (a crash): not a success
        return self.code

    def stop(self, timeout=5.0):
        if self.code is None:
            self.server.stop()


_server = None


def server_key(python, env):
    """What a warm engine is started with: another interpreter or environment is another engine."""
    return python, tuple(sorted(env.items()))


def server(python, env, log_path):
    """The warm engine for ``python`` and ``env``: the running one if it has that interpreter and environment and
    is idle, else a new one (the old one stopped)."""
    global _server
    key = server_key(python, env)
    if _server is not None and (_server.key != key or not _server.alive or _server.busy):
        _server.stop()
        _server = None
    if _server is None:
        _server = Server(python, env, log_path)
    return _server


def stop_server():
    """End the warm engine, if any (unregister, Blender's exit, a job that is not a preview, new packages)."""
    global _server
    if _server is not None:
        _server.stop()
        _server = None


# Runs inside the worker's interpreter with the worker's environment: prints one JSON line.

_probes = {}
_probes_lock = threading.Lock()


def probe(python, env, timeout=300):
    """What the worker interpreter offers: torch version, devices, flow methods, weights (a dict).

    ``{"error": ...}`` when the interpreter cannot start or lacks torch or the engine's needs.
    """
    try:
        done = subprocess.run(
            [python, "-m", ENGINE, "info", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            creationflags=_NO_WINDOW,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": f"cannot run {python}: {e}"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    return {"error": f"{python} failed: {tail}"}


def cached_probe(python, env, wait=True):
    """``probe`` once per interpreter; with ``wait=False`` start it in a thread and return None until done."""
    key = (python, env.get("PYTHONPATH", ""))
    with _probes_lock:
        if _probes.get(key) is not None:
            return _probes[key]
        if not wait:
            if key not in _probes:  # not already running
                _probes[key] = None
                threading.Thread(target=_probe_into_cache, args=(key, python, env), daemon=True).start()
            return None
    return _probe_into_cache(key, python, env)


def _probe_into_cache(key, python, env):
    result = probe(python, env)
    with _probes_lock:
        _probes[key] = result
    return result


def forget_probes():
    """Drop cached probe results (after installing packages or changing the interpreter), and end the warm
    engine, which imported the packages as they were."""
    with _probes_lock:
        _probes.clear()
    stop_server()


def is_own_python(python):
    """True if ``python`` is the interpreter running this code (Blender's own)."""
    try:
        return os.path.samefile(python, sys.executable)
    except OSError:
        return False
