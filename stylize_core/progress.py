"""Progress reporting: a tqdm bar for terminals, JSON lines for the add-on's worker, or nothing."""
import json
import sys
import time


class Progress:
    """Counts work units (one frame of one pass) and estimates the time left."""

    def __init__(self):
        self.units = self.done_units = 0
        self.t0 = self.unit_t0 = time.monotonic()
        self.frames = self.passes = 0

    def start(self, frames, passes, size, skipped=0, out=None, job=None):
        """``out``: the output folder (absolute); ``job``: the job id (``identity.job_id``)."""
        self.frames, self.passes = frames, passes
        self.units, self.done_units = frames * passes - skipped, 0
        self.t0 = self.unit_t0 = time.monotonic()
        self.emit("start", frames=frames, passes=passes, width=size[0], height=size[1],
                  skipped=skipped, out=None if out is None else str(out), job=job)

    def eta(self, fraction=0.0):
        """Seconds left, from the mean time of finished units (and the current one's progress)."""
        done = self.done_units + fraction
        if done <= 0:
            return None
        return (time.monotonic() - self.t0) / done * (self.units - done)

    def step(self, frame, pass_, iteration, iterations, loss):
        eta = self.eta(iteration / max(iterations, 1))
        self.emit("progress", frame=frame + 1, frames=self.frames, pass_=pass_, passes=self.passes,
                  iteration=iteration, iterations=iterations, loss=loss,
                  seconds=round(time.monotonic() - self.unit_t0, 3),
                  eta=None if eta is None else round(eta, 1))

    def frame(self, frame, path):
        self.done_units += 1
        self.unit_t0 = time.monotonic()
        self.emit("frame", frame=frame + 1, frames=self.frames, path=str(path))

    def done(self, out, timings=None, paths=()):
        """``timings``: seconds spent per stage (flow, consistency, optimise, io);
        ``paths``: the output frame files in frame order."""
        self.emit("done", frames=self.frames, out=str(out), seconds=round(time.monotonic() - self.t0, 2),
                  timings=timings or {}, paths=[str(p) for p in paths])

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
