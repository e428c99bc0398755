"""The one exception type users see, and the one line any failure is reported as."""

import threading

STDOUT_LOCK = threading.RLock()  # held while a line of JSON events is written (and while a library may print)


class StylizeError(Exception):
    """Bad input or an unrecoverable condition, with a message meant for the user."""


def message(e):
    """One line for the user: a StylizeError's own message; a file-system error (a full disk, a folder
    made read-only mid-run...) with its file; out of memory with the fix; anything else by its type."""
    if isinstance(e, StylizeError):
        text = str(e)
    elif isinstance(e, OSError):
        where = f" {e.filename}" if e.filename else ""
        text = f"cannot access{where}: {e.strerror or e}"
    elif isinstance(e, MemoryError):
        text = "out of memory; try a lower --scale"
    else:
        text = f"{type(e).__name__}: {e}"
    return " ".join(text.split())
