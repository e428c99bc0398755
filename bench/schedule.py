"""Iteration schedules of the quality mode: coarse-to-fine allocations and the later frames' count.

- Coarse-to-fine: one Sintel frame optimised at full size for N iterations (single scale,
  the reference) against pyramids of 3 levels (each half the size of the next) with the
  iterations given per level, coarsest first. An iteration at 1/2^k of the size costs about
  1/4^k of a full-size one. Reported: the loss at full size at the end, the time, and the
  time until the full-size loss first reaches the single-scale run's final loss (the whole
  run if never). No early stop (tolerance 0): every run does its iterations.
- Later frames: the engine's single-pass job (standard preset: long-term temporal loss,
  prevWarped initialisation, DIS) on the Sintel clip with a fixed number of iterations per
  later frame and no early stop; per later frame, the iterations until its loss is within
  1 % and 0.2 % of the loss it ends at, and where the standard early stop (relative change
  < 1e-4 over 10 iterations) would have stopped and how far from the final loss it was.
  The first frame's row is the same for the first-frame count.
"""

import tempfile
import time

import numpy as np

from stylize_core.network.optimize import Stylizer, level_iterations
from stylize_core.progress import Progress
from stylize_core.schedule import Job, pick_device
from stylize_core.settings import Settings

from .common import Table, load_vgg, print_header, random_spec, read_image, style_image


def add_arguments(parser):
    parser.add_argument("--device", default="cpu", help="cpu | cuda | mps (default cpu)")
    parser.add_argument("--width", type=int, help="frame width of both parts (default 256; quick 64)")
    parser.add_argument(
        "--iterations", type=int, help="single-scale iterations N of the coarse-to-fine part (default 200; quick 6)"
    )
    parser.add_argument("--frames", type=int, help="clip length of the later-frames part (default 6; quick 3)")
    parser.add_argument("--later", type=int, help="iterations per later frame in that part (default 300; quick 6)")
    parser.add_argument(
        "--part", choices=["both", "c2f", "later"], default="both", help="which part to run (default both)"
    )


def candidates(n):
    """Per-level iterations (coarsest first) compared with single scale ``[n]``."""
    return [
        ("single scale", [n]),
        ("engine default", level_iterations(n, 3)),
        ("x3, N each (before)", [n, n, n]),
        ("x3, 2N, N, N/2", [2 * n, n, max(n // 2, 1)]),
        ("x3, N, N/2, N/4", [n, max(n // 2, 1), max(n // 4, 1)]),
    ]


def timed(stylizer, content, schedule):
    """Run the Stylizer; returns [(seconds since start, step, loss)] per iteration."""
    log, start = [], time.perf_counter()
    stylizer.stylize(
        content, schedule=schedule, on_step=lambda i, n, loss: log.append((time.perf_counter() - start, i, loss))
    )
    return log


def coarse_to_fine(args, vgg, style, width, n):
    settings = Settings.from_preset("standard", tolerance=0.0)
    size = (width, round(width * 436 / 1024))
    content = read_image(args.data / "sintel_clip" / "frame_0016.png", size)
    stylizer = Stylizer(vgg, style, settings, args.device)
    stylizer.stylize(content, iterations=2)  # warm-up (style Grams, allocator)
    logs = {name: timed(stylizer, content, sched) for name, sched in candidates(n)}
    ref_t, _, ref_loss = logs["single scale"][-1]
    table = Table(
        "schedule (coarsest first)",
        "iterations",
        "seconds",
        "final loss / single",
        "seconds to single's loss",
        "time ratio",
        title=f"Coarse-to-fine at {size[0]}x{size[1]}, N = {n}: loss at full size",
    )
    for name, sched in candidates(n):
        log = logs[name]
        after = sum(sched[:-1])
        t = next((t for t, i, loss in log if i > after and loss <= ref_loss), None)
        table.add(
            f"{name} {sched}",
            sum(sched),
            log[-1][0],
            log[-1][2] / ref_loss,
            "never" if t is None else t,
            "-" if t is None else t / ref_t,
        )
    table.notes.append(
        "time ratio: seconds to reach the single-scale run's final loss / that run's seconds "
        "(< 1: the schedule reaches the same loss sooner)."
    )
    table.print()


class Losses(Progress):
    """Collects every iteration's loss per frame: ``logs[frame] = [(seconds, iteration, loss)]``."""

    def __init__(self):
        super().__init__()
        self.logs, self.t0 = {}, time.perf_counter()

    def emit(self, event, **fields):
        pass

    def step(self, frame, pass_, iteration, iterations, loss):
        self.logs.setdefault(frame, []).append((time.perf_counter() - self.t0, iteration, loss))


def within(log, rel):
    """First iteration whose loss is within ``rel`` (relative) of the run's final loss."""
    final = log[-1][2]
    return next(i for _, i, loss in log if loss <= final * (1 + rel))


def early_stop(log, tolerance=1e-4, window=10):
    """(iteration, loss / final loss) where the standard early stop would end the run (else the end)."""
    losses = [loss for _, _, loss in log]
    for k in range(window, len(losses)):
        if abs(losses[k - window] - losses[k]) < tolerance * abs(losses[k]):
            return k + 1, losses[k] / losses[-1]
    return len(losses), 1.0


def later_frames(args, weights, width, frames, later):
    settings = Settings.from_preset(
        "standard",
        tolerance=0.0,
        scale=width / 1024,
        iterations_later=later,
        iterations=max(later, Settings().iterations),
    )
    losses = Losses()
    with tempfile.TemporaryDirectory() as tmp:
        out, style = f"{tmp}/out", args.style or _style_file(args, tmp)
        Job(
            str(args.data / "sintel_clip"),
            str(style),
            out,
            settings,
            vgg=weights,
            device=args.device,
            progress=losses,
            max_frames=frames,
            allow_download=False,
        ).run()
    table = Table(
        "frame",
        "iterations",
        "to 1 % of final",
        "to 0.2 % of final",
        "early stop at",
        "loss there / final",
        title=f"Later frames (standard preset, long-term, {width} px wide, no early stop)",
    )
    for frame in sorted(losses.logs):
        log = losses.logs[frame]
        stop, gap = early_stop(log)
        table.add(frame + 1, len(log), within(log, 0.01), within(log, 0.002), stop, gap)
    rows = [r for r in table.rows if r[0] > 1]
    if rows:
        table.notes.append(
            f"later frames, median: 1 % after {np.median([r[2] for r in rows]):.0f}, "
            f"0.2 % after {np.median([r[3] for r in rows]):.0f} iterations; the early stop "
            f"after {np.median([r[4] for r in rows]):.0f}."
        )
    table.print()


def _style_file(args, folder):
    from .common import write_image

    return write_image(f"{folder}/style.png", style_image(args))


def run(args):
    args.device = pick_device(args.device)
    vgg, weights_line, weights = load_vgg(args)
    print_header("Iteration schedules", args, weights_line)
    width = args.width or (64 if args.quick else 256)
    if args.part in ("both", "c2f"):
        coarse_to_fine(
            args, vgg.to(args.device), style_image(args), width, args.iterations or (6 if args.quick else 200)
        )
    if args.part in ("both", "later"):
        later_frames(
            args,
            weights or random_spec(args),
            width,
            args.frames or (3 if args.quick else 6),
            args.later or (6 if args.quick else 300),
        )
