"""Work one step ahead: the next frame's inputs (frames, flows, reliability) are prepared in a
background thread while the caller optimises or synthesises the current one.

OpenCV's flow estimators, numba's compiled search and torch's kernels release the GIL, so on
a GPU the flows of frame i+1 are free (they run while the device works on frame i) and on a
CPU they use the cycles the optimiser leaves between its kernels. The threads are daemons, so a
job stopped by Ctrl-C or an error does not wait for a flow it will not use; but a process must
not *exit* while one of them is inside OpenCV or torch (the C++ runtime's teardown races it:
"terminate called without an active exception", SIGABRT, seen under load in 2 of 12 SIGTERMs),
so the CLI lets them finish first (:func:`settle`; ``__main__`` leaves with ``os._exit`` if one
does not).
"""

import threading
import time

NAME = "stylize-ahead"


class _Task(threading.Thread):
    """``fn(arg)`` in a daemon thread; :meth:`result` waits and returns it or raises its error."""

    def __init__(self, fn, arg):
        super().__init__(daemon=True, name=NAME)
        self.fn, self.arg, self.value, self.error = fn, arg, None, None
        self.start()

    def run(self):
        try:
            self.value = self.fn(self.arg)
        except BaseException as e:  # noqa: BLE001 -- re-raised in the caller by result()
            self.error = e

    def result(self):
        self.join()
        if self.error is not None:
            raise self.error
        return self.value


def ahead(items, fn):
    """Yield ``(item, fn(item))`` for ``items`` in order; ``fn`` of the next item runs in a thread
    while the caller works on the current one (at most one call runs at a time).

    ``fn`` must not depend on what the caller does with earlier items. Exceptions of ``fn`` are
    raised in the caller, at the item they belong to.
    """
    items = list(items)
    task = _Task(fn, items[0]) if items else None
    for k, item in enumerate(items):
        value = task.result()
        task = _Task(fn, items[k + 1]) if k + 1 < len(items) else None
        yield item, value


def settle(timeout=10.0):
    """Wait up to ``timeout`` seconds for the threads still working ahead (a job that was stopped) to
    end; True if none is left. Polled: a thread a Ctrl-C hit inside ``start()`` cannot be joined yet."""
    end = time.monotonic() + timeout
    while any(t.name == NAME for t in threading.enumerate()):
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True
