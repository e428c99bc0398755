"""``python -m stylize_core serve``: a warm engine that runs one CLI command per request, torch and the networks
kept loaded between them (the add-on's Preview Frame: the process start and the imports are about 2 s of a
preview, the networks' build another 0.5-1 s; measured by ``python -m bench preview``).

Protocol, one JSON object per line:
- stdin, a request: ``{"argv": ["preview", INPUT, "--at", "3", ...], "log": PATH}``: the arguments of
  ``python -m stylize_core`` (``stylize`` or ``preview``); the command's text output (stderr) is appended to
  ``log`` if given (else to the server's stderr).
- stdout: the command's own events (``--progress json``), then ``{"event": "served", "code": C}`` with the exit
  code the command would have had as a process (0, 1 an error, 2 a usage error, 130 interrupted).
- SIGINT/SIGTERM during a request interrupt it (code 130) and end the server (exit code 130); between requests
  they end it; end of stdin ends it (exit code 0); a thread still working ahead after a request ends it (exit
  code 1). A request that is not a JSON object with an ``argv`` list (or asks for ``--help``), and a usage
  error: an ``error`` event and code 2, the server goes on. An engine that cannot import: an ``error`` event,
  exit code 1, before ``ready``.
"""

import contextlib
import io
import json
import sys

COMMANDS = ("stylize", "preview")  # what a request may run (``info`` and ``demo`` are for a terminal)


def _event(**fields):
    print(json.dumps(fields), flush=True)


def _request(line):
    """The request's (argv, log path or None), or raise ValueError with the reason."""
    request = json.loads(line)
    if not isinstance(request, dict) or not isinstance(request.get("argv"), list) or not request["argv"]:
        raise ValueError('a request is {"argv": [COMMAND, ...], "log": PATH}')
    argv = [str(a) for a in request["argv"]]
    if argv[0] not in COMMANDS:
        raise ValueError(f"serve runs {' or '.join(COMMANDS)}, not {argv[0]!r}")
    if {"-h", "--help"} & set(argv):
        raise ValueError("--help prints to a terminal: run python -m stylize_core COMMAND --help")
    log = request.get("log")
    if log is not None and not isinstance(log, str):
        raise ValueError('"log" is a path')
    return argv, log


def _run(argv, log):
    """Run one command; its exit code. Its text output goes to ``log``; a usage error is also an ``error`` event.
    Torch's thread count is put back afterwards (a job sets it), and freed memory returned to the device."""
    import gc

    import torch

    from .cli import main

    threads = torch.get_num_threads()
    try:
        with open(log, "a", encoding="utf-8") if log else contextlib.nullcontext(sys.stderr) as out:
            text = io.StringIO()
            try:
                with contextlib.redirect_stderr(Tee(out, text)):
                    return main(argv)
            except SystemExit as e:  # a usage error: argparse printed it and exits 2
                lines = text.getvalue().strip().splitlines()
                _event(event="error", message=lines[-1].removeprefix("error: ") if lines else "usage error")
                return e.code if isinstance(e.code, int) else 2
    except OSError as e:
        _event(event="error", message=f"cannot write the log {log}: {e.strerror or e}")
        return 1
    finally:
        torch.set_num_threads(threads)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class Tee:
    """Text written to both streams."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self):
        for stream in self.streams:
            stream.flush()


def serve(stdin=None):
    """Run requests from ``stdin`` until it ends or a request is interrupted; the exit code."""
    try:
        from . import schedule  # noqa: F401 -- the imports a request would pay for, paid before the first one
    except Exception as e:  # noqa: BLE001 -- a broken installation: one line, as the CLI would say it
        _event(event="error", message=f"the engine cannot start: {type(e).__name__}: {e}")
        return 1
    _event(event="ready")
    try:
        return _loop(stdin or sys.stdin)
    except KeyboardInterrupt:  # SIGINT/SIGTERM between requests
        return 130


def _loop(stdin):
    from . import ahead

    for line in stdin:
        if not line.strip():
            continue
        try:
            argv, log = _request(line)
        except ValueError as e:
            _event(event="error", message=f"bad request: {e}")
            _event(event="served", code=2)
            continue
        code = _run(argv, log)
        settled = ahead.settle()
        _event(event="served", code=code)
        if code == 130 or not settled:  # interrupted (cancel), or a thread still inside torch: start afresh
            return 130 if code == 130 else 1
    return 0
