"""HD that fits: the memory plan at 1920x1080 and a real run of the engine at that size.

- Run: the engine CLI (a child process) on a 2-frame clip at ``--size`` (the Sintel frames
  resized), the standard preset with ``--iterations`` L-BFGS iterations on both frames
  (frame 2 with its flows and the temporal loss), a random VGG-19 of the real widths: its
  peak RSS (``ru_maxrss``) against the estimate for those iterations (the history then
  holds ``iterations - 1`` entries) and the plan's estimate for the preset's own iterations,
  and the fallback the plan chose (the ``warning`` event), if any.
- Plans: what ``memory.plan`` chooses at ``--size`` for the devices and free memory of
  ``--plans`` (computed, no device needed: e.g. ``cuda:12`` = a CUDA device with 12 GB free).
``--device`` is where the run happens (cpu here).
"""

import json

from stylize_core.io.frames import write_png
from stylize_core.network import memory
from stylize_core.settings import Settings

from .common import Table, print_header, random_spec, read_image, style_path
from .speed import CLIP, run_engine

GB = 2**30


def add_arguments(parser):
    parser.add_argument("--device", default="cpu", help="cpu | cuda | mps: where the run happens (default cpu)")
    parser.add_argument("--size", default="1920x1080", help="frame size WxH (default 1920x1080)")
    parser.add_argument("--iterations", type=int, default=2, help="L-BFGS iterations per frame (default 2)")
    parser.add_argument(
        "--plans",
        default="cpu:now,cuda:24,cuda:12,cuda:8,cuda:6,cuda:4",
        help="DEVICE:GB (or cpu:now = this machine's free memory) to plan for",
    )
    parser.add_argument("--no-run", action="store_true", help="only the plans")


def plans(size, entries):
    s = Settings()
    table = Table(
        "device",
        "free GB",
        "as asked GB",
        "plan",
        "planned GB",
        title=f"Memory plan at {size[0]}x{size[1]} (standard preset, computed)",
    )
    for entry in entries.split(","):
        device, free = entry.split(":")
        free = memory.available(device) if free == "now" else float(free) * GB
        try:
            p = memory.plan(size, s, device, free)
            table.add(device, free / GB, p.requested / GB, ", ".join(p.changes) or "as asked", p.need / GB)
        except memory.StylizeError as e:
            table.add(device, free / GB, memory.estimate(size, s, device)["total"] / GB, f"refused: {e}", "-")
    table.notes.append(
        "Order: a shorter L-BFGS history (50, 20, 10), then checkpointing, then a lower scale "
        "(memory.py); CPU estimates count glibc's heap growth (3x the history's size)."
    )
    table.print()


def engine_run(args, size):
    work = args.out / "hd"
    clip = work / "clip"
    clip.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(CLIP):
        write_png(clip / f"frame_{i + 1:05d}.png", read_image(args.data / "sintel_clip" / name, tuple(size)))
    stdout, seconds = run_engine(
        clip,
        style_path(args),
        work / "out",
        args.vgg or random_spec(args),
        iterations=args.iterations,
        progress="json",
        device=args.device,
        what=f"at {size}",
    )
    lines = stdout.strip().splitlines()
    events = [json.loads(line) for line in lines[:-1] if line.startswith("{")]
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    manifest = json.loads((work / "out" / "job.json").read_text())
    s = Settings(**{k: tuple(v) if k == "long_term" else v for k, v in manifest["settings"].items()})
    ckpt = manifest["memory"]["checkpoint"]
    run_est = memory.estimate(tuple(size), s, args.device, iterations=args.iterations, checkpoint=ckpt)["total"]
    peak = int(lines[-1]) * 1024
    table = Table(
        "size",
        "device",
        "iterations",
        "fallback",
        "estimate GB (these iterations)",
        "peak RSS GB",
        "peak / estimate",
        "plan GB (preset's iterations)",
        "seconds",
        title="Engine run (2 frames, standard preset, random VGG-19 of the real widths)",
    )
    table.add(
        f"{size[0]}x{size[1]}",
        args.device,
        args.iterations,
        "; ".join(warnings) or "none",
        run_est / GB,
        peak / GB,
        peak / run_est,
        manifest["memory"]["estimate"] / GB,
        seconds,
    )
    table.notes.append(
        "peak RSS: the whole engine process (Python, torch, OpenCV, the flows) from ru_maxrss; "
        f"available at the start: {manifest['memory']['available'] / GB:.1f} GB."
    )
    table.print()


def run(args):
    print_header("HD that fits", args)
    size = [int(v) for v in args.size.lower().split("x")]
    if args.quick:
        size = [96, 54]
    plans(size, args.plans)
    if not args.no_run:
        engine_run(args, size)
