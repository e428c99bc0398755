"""Progress reporting: a tqdm bar for terminals, JSON lines for the add-on's worker, or nothing."""

import json
import sys
import time

from .errors import STDOUT_LOCK

clock = time.monotonic  # the seconds every estimate is measured in (a test runs the model on a clock of its own)


class Progress:
    """Counts the work done and estimates the time left (``eta``, seconds) from a cost model.

    Work comes in kinds, each measured in its own amount: ``optimise`` in L-BFGS/Adam iterations
    (every pyramid level's), ``synthesis`` in fast mode's patch-synthesis steps. ``start`` (or
    ``plan``) gives the amount of each kind still to do; every ``step`` event belongs to a unit of
    one kind (a frame's optimisation of ``iterations``, a synthesised frame of ``amount`` steps),
    and the time since the previous event is that unit's. The time left is

        sum over kinds k of  (amount of k left) x (seconds per amount of k so far)

    where a kind not measured yet takes the rate given with ``prior`` (fast mode measures one
    synthesis step before it optimises its keyframes), else the measured rate of the other kinds.
    So a fast-mode job's first keyframe no longer counts every frame as a keyframe (its first ETA
    was 50x the time the run took, median over a run; up to 146x). ``fraction`` (0..1) is the share of
    the job's time that has passed, ``elapsed / (elapsed + eta)``: what a progress bar shows (the frame
    numbers jump in fast mode, whose keyframes come first).
    """

    def __init__(self):
        self.units = self.done_units = 0
        self.t0 = self.unit_t0 = self.last = clock()
        self.frames = self.passes = 0
        self._left, self._done, self._spent, self._priors = {}, {}, {}, {}
        self.unit = None  # (kind, frame, pass, amount, started) of the step events under way

    def start(self, frames, passes, size, skipped=0, out=None, job=None, work=None):
        """``out``: the output folder (absolute); ``job``: the job id (``identity.job_id``); ``work``:
        ``{kind: amount}`` still to do (the mode's ``work``)."""
        self.frames, self.passes = frames, passes
        self.units, self.done_units = frames * passes - skipped, 0
        self.t0 = self.unit_t0 = self.last = clock()
        self.plan(work or {})
        self.emit(
            "start",
            frames=frames,
            passes=passes,
            width=size[0],
            height=size[1],
            skipped=skipped,
            out=None if out is None else str(out),
            job=job,
        )

    def plan(self, work):
        """``{kind: amount}`` of the work still to do from now on (replaces the earlier plan); the time
        until now was spent planning (no unit's)."""
        self._left = {k: float(v) for k, v in work.items() if v}
        self.last = clock()

    def prior(self, kind, seconds):
        """Seconds an amount of 1 of ``kind`` is expected to take until one is measured (the time it took
        to find out is no unit's)."""
        self._priors[kind] = seconds
        self.last = clock()

    def _close(self):
        if self.unit is not None:
            kind, _, _, amount, started = self.unit
            self._done[kind] = self._done.get(kind, 0.0) + amount
            self._spent[kind] = self._spent.get(kind, 0.0) + self.last - started
            self._left[kind] = max(self._left.get(kind, 0.0) - amount, 0.0)
            self.unit = None

    def _rate(self, kind, extra_done=0.0, extra_spent=0.0):
        done, spent = self._done.get(kind, 0.0) + extra_done, self._spent.get(kind, 0.0) + extra_spent
        if done > 0:
            return spent / done
        if kind in self._priors:
            return self._priors[kind]
        total = sum(self._done.values()) + (extra_done if kind not in self._done else 0)
        return (sum(self._spent.values()) + extra_spent) / total if total > 0 else None

    def eta(self, fraction=0.0):
        """Seconds left (None until something has been measured); ``fraction`` of the current unit is done."""
        now = clock()
        left, current = 0.0, None
        if self.unit is not None:
            kind, _, _, amount, started = self.unit
            current = (kind, amount * fraction, now - started)
        for kind in set(self._left) | ({current[0]} if current else set()):
            part = current if current and current[0] == kind else (kind, 0.0, 0.0)
            rate = self._rate(kind, part[1], part[2])
            remaining = max(self._left.get(kind, 0.0) - part[1], 0.0)
            if remaining and rate is None:
                return None
            left += remaining * (rate or 0.0)
        return left

    def step(self, frame, pass_, iteration, iterations, loss, kind="optimise", amount=None):
        """``iteration`` of ``iterations`` of frame ``frame``'s unit of ``kind`` (0-based frame), which
        amounts to ``amount`` (default ``iterations``) of that kind."""
        now = clock()
        if self.unit is None or self.unit[:3] != (kind, frame, pass_):
            self._close()
            self.unit = (kind, frame, pass_, float(iterations if amount is None else amount), self.last)
        self.last = now
        fraction = iteration / max(iterations, 1)
        eta = self.eta(fraction)
        if fraction >= 1:
            self._close()
        elapsed = now - self.t0
        self.emit(
            "progress",
            frame=frame + 1,
            frames=self.frames,
            pass_=pass_,
            passes=self.passes,
            iteration=iteration,
            iterations=iterations,
            loss=loss,
            kind=kind,
            seconds=round(now - self.unit_t0, 3),
            eta=None if eta is None else round(eta, 1),
            fraction=None if eta is None else round(elapsed / max(elapsed + eta, 1e-9), 4),
        )

    def frame(self, frame, path):
        """Frame ``frame`` (0-based) is written (``path``); with the default plan, one unit is done."""
        self.done_units += 1
        self.unit_t0 = clock()
        self.emit("frame", frame=frame + 1, frames=self.frames, path=str(path))

    def done(self, out, timings=None, paths=()):
        """``timings``: seconds spent per stage (flow, consistency, optimise, io);
        ``paths``: the output frame files in frame order."""
        self.emit(
            "done",
            frames=self.frames,
            out=str(out),
            seconds=round(clock() - self.t0, 2),
            timings=timings or {},
            paths=[str(p) for p in paths],
        )

    def error(self, message):
        self.emit("error", message=message)

    def warning(self, message):
        """Something the user should know that does not stop the job: ``warning: ...`` on stderr
        (a ``warning`` event in JSON mode)."""
        self.emit("warning", message=message)
        print(f"warning: {message}", file=sys.stderr)

    def emit(self, event, **fields):
        pass


class JsonProgress(Progress):
    """One JSON object per line on stdout (``pass_`` is written as ``pass``)."""

    def emit(self, event, **fields):
        if "pass_" in fields:
            fields["pass"] = fields.pop("pass_")
        with STDOUT_LOCK:
            sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
            sys.stdout.flush()

    def warning(self, message):
        self.emit("warning", message=message)


class BarProgress(Progress):
    """A tqdm bar over all frames and passes, on stderr."""

    def __init__(self):
        super().__init__()
        self.bar = None

    def emit(self, event, **f):
        from tqdm import tqdm

        if event == "start":
            self.bar = tqdm(total=self.units, unit="frame", dynamic_ncols=True)
        elif event == "progress" and self.bar is not None:
            label = f"frame {f['frame']}/{f['frames']}"
            if f["passes"] > 1:
                label += f" pass {f['pass_']}/{f['passes']}"
            self.bar.set_description(label, refresh=False)
            self.bar.set_postfix(it=f"{f['iteration']}/{f['iterations']}", loss=f"{f['loss']:.4g}")
        elif event == "frame" and self.bar is not None:
            self.bar.update(1)
        elif event in ("done", "error") and self.bar is not None:
            self.bar.close()
            self.bar = None

    def warning(self, message):
        from tqdm import tqdm

        tqdm.write(f"warning: {message}", file=sys.stderr)  # above the bar, not through it


def make_progress(kind):
    return {"json": JsonProgress, "bar": BarProgress, "none": Progress}[kind]()
