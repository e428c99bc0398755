"""``python -m stylize_core serve``: a warm engine that runs one CLI command per request, torch and the networks
kept loaded between them (the add-on's Preview Frame: the process start and the imports are about 2 s of a
preview, the networks' build another 0.5-1 s; measured by ``python -m bench preview``).

Protocol, one JSON object per line:
- stdin, a request: ``{"argv": ["preview", INPUT, "--at", "3", ...], "log": PATH}``: the arguments of
  ``python -m stylize_core`` (``stylize`` or ``preview``); the command's text output (stderr) is appended to
  ``log`` if given (else to the server's stderr).
- stdout: the command's own events (``--progress json``), then ``{"event": "served", "code": C}`` with the exit
  code the command would have had as a process (0, 1 an error, 2 a usage error, 130 interrupted).
- SIGINT/SIGTERM during a request interrupt it (code 130) and end the server; between requests they end it;
  end of stdin ends it (exit code 0). A request that is not a JSON object with an ``argv`` list: an ``error``
  event and code 2, the server goes on.
"""
import contextlib
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
    return argv, request.get("log")


def _run(argv, log):
    from .cli import main
    with contextlib.ExitStack() as stack:
        if log:
            stack.enter_context(contextlib.redirect_stderr(stack.enter_context(open(log, "a", encoding="utf-8"))))
        try:
            return main(argv)
        except SystemExit as e:  # a usage error: argparse printed it (to the log) and exits 2
            return e.code if isinstance(e.code, int) else 2


def serve(stdin=None):
    """Run requests from ``stdin`` until it ends or a request is interrupted; the exit code."""
    from . import schedule  # noqa: F401 -- the imports a request would pay for, paid before the first one
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
