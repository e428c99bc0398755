"""Work one step ahead: the next frame's inputs (frames, flows, reliability) are prepared in a
background thread while the caller optimises or synthesises the current one.

OpenCV's flow estimators, numba's compiled search and torch's kernels release the GIL, so on
a GPU the flows of frame i+1 are free (they run while the device works on frame i) and on a
CPU they use the cycles the optimiser leaves between its kernels. The threads are daemons: a
job stopped by Ctrl-C or an error exits at once instead of waiting for a flow it will not use.
"""
import threading


class _Task(threading.Thread):
    """``fn(arg)`` in a daemon thread; :meth:`result` waits and returns it or raises its error."""

    def __init__(self, fn, arg):
        super().__init__(daemon=True, name="stylize-ahead")
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
