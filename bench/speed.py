"""Speed: per iteration and per frame against resolution, stage times, achieved GFLOP/s, memory.

- Iterations: seconds per L-BFGS iteration of the engine's Stylizer (median step time after
  two warm-up steps), and a bare VGG forward+backward (best of 3) whose conv FLOPs are
  counted from the layer shapes (2*Cin*Cout*k*k*H*W per conv forward; the backward pass
  computes input gradients only, since the weights are frozen, which costs the same
  again), against the fp32 matmul GFLOP/s measured just before it.
- Stages per frame: IO (read a frame, write a PNG), flow (DIS, both directions, once per
  temporal offset of the preset), consistency check, optimisation (setup + iterations).
- Host reads: values read back from the device per iteration (``float()``, ``.item()``,
  ``.cpu()`` ... of a tensor, counted by wrapping those methods; on CUDA each is a host-device
  synchronisation that stalls the kernel queue).
- ``--device cpu|cuda|mps``: the iterations, the VGG pass and the matmul rate run there
  (synchronised before each clock read); peak memory on CUDA is ``max_memory_allocated``.
- Memory: the engine CLI on a generated clip at tiny size, 1 iteration per frame, in a
  child process; its peak RSS (ru_maxrss). It must not grow with the clip length.
- prevWarped: frame 2 initialised from the content vs from the warped frame 1, both with
  the temporal loss; coarse-to-fine (3 levels) vs single scale: time until the loss at
  full size reaches the single-scale run's final loss.
"""

import subprocess
import sys
import time

import numpy as np
import torch
from torch import nn

from stylize_core.demo import make_clip, make_style
from stylize_core.motion.consistency import reliability
from stylize_core.motion.flow import estimate
from stylize_core.motion.warp import warp_numpy
from stylize_core.network.optimize import Stylizer
from stylize_core.settings import Settings

from .common import ROOT, Table, bar_chart, load_vgg, print_header, random_spec, read_image, style_image, write_image

CLIP = ("frame_0016.png", "frame_0017.png")


def add_arguments(parser):
    parser.add_argument("--device", default="cpu", help="cpu | cuda | mps: where the iterations run (default cpu)")
    parser.add_argument("--widths", help="comma-separated frame widths (default 256,512,768,1024)")
    parser.add_argument("--steps", type=int, help="iterations timed per width (default 8, the first 2 as warm-up)")
    parser.add_argument("--memory-frames", help="clip lengths for the memory run (default 10,100)")
    parser.add_argument(
        "--convergence-width", type=int, help="width of the prevWarped and coarse-to-fine runs (default 256)"
    )
    parser.add_argument(
        "--convergence-iterations",
        type=int,
        help="iterations of those runs (default: the standard preset's later-frame count)",
    )


def synchronize(device):
    """Wait for the device's queued kernels (no-op on the CPU), so that a clock read is true."""
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.synchronize()
    elif kind == "mps":
        torch.mps.synchronize()


def matmul_gflops(n, repeats, device="cpu"):
    """Best fp32 ``n x n`` matmul rate in GFLOP/s on ``device``."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)
    best = min(_seconds(lambda: torch.mm(a, b), device) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _seconds(fn, device="cpu"):
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


READS = ("__bool__", "__float__", "__int__", "item", "tolist", "numpy", "cpu")


def counting_host_reads(fn):
    """``(fn(), number of tensor values read back to the host during it)``."""
    reads = []
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def wrap(name, original):
        def read(self, *args, **kwargs):
            reads.append(name)
            return original(self, *args, **kwargs)

        return read

    try:
        for name, original in originals.items():
            setattr(torch.Tensor, name, wrap(name, original))
        result = fn()
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
    return result, len(reads)


def loss_layers(vgg):
    """The network's loss layers: its content layer and style layers."""
    return (vgg.content_layer, *vgg.style_layers)


def conv_flops(vgg, height, width):
    """Forward FLOPs of the convolutions that produce the loss layers for one image (from layer shapes)."""
    last = max(vgg.index[name] for name in loss_layers(vgg))
    flops, h, w = 0, height, width
    for module in list(vgg.features)[: last + 1]:
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            flops += 2 * module.in_channels * module.out_channels * k * h * w // module.groups
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            h, w = h // 2, w // 2
    return flops


def vgg_seconds(vgg, height, width, repeats, device="cpu"):
    """Best time of a VGG forward+backward (gradient w.r.t. the image) at height x width."""
    x = torch.rand(1, 3, height, width, device=device, requires_grad=True)

    def step():
        loss = sum(f.square().mean() for f in vgg(x, loss_layers(vgg)).values())
        loss.backward()

    step()
    return min(_seconds(step, device) for _ in range(repeats))


def timed_stylize(stylizer, content, iterations, **kwargs):
    """Run the Stylizer; returns (image, [(seconds since start, step, loss)] per iteration)."""
    log, start = [], time.perf_counter()
    img = stylizer.stylize(
        content,
        iterations=iterations,
        on_step=lambda i, n, loss: log.append((time.perf_counter() - start, i, loss)),
        **kwargs,
    )
    return img, log


def iteration_seconds(log, warmup=2):
    """(median seconds per iteration after ``warmup`` steps, setup seconds before the first)."""
    steps = np.diff([0.0] + [t for t, _, _ in log])
    per_iter = float(np.median(steps[min(warmup, len(steps) - 1) :]))
    return per_iter, max(float(steps[0]) - per_iter, 0.0)


def first_reaching(log, target, after=0):
    """(seconds, iterations) of the first step past ``after`` whose loss <= target, else the last."""
    for t, i, loss in log:
        if i > after and loss <= target * (1 + 1e-9):
            return t, i - after
    return log[-1][0], log[-1][1] - after


def per_resolution(args, vgg, style, settings, widths, steps):
    device = args.device
    speed = Table(
        "size",
        "s/iter",
        "VGG fwd+bwd s",
        "conv GFLOP fwd+bwd",
        "GFLOP/s",
        "matmul GFLOP/s",
        "% of matmul",
        "host reads/iter",
        "peak MB",
        title=f"Per iteration ({device})",
    )
    stages = Table(
        "size",
        "IO s",
        f"flow s (x{len(settings.offsets)})",
        f"check s (x{len(settings.offsets)})",
        f"optimise s first ({settings.iterations} it)",
        f"optimise s later ({settings.iterations_later} it)",
        "s/frame first",
        "s/frame later",
        title="Per frame, by stage (flow and check once per temporal offset of the preset)",
    )
    stylizer = Stylizer(vgg, style, settings, device)
    folder = args.data / "sintel_clip"
    for width in widths:
        height = round(width * 436 / 1024)
        size = (width, height)
        io_start = time.perf_counter()
        a = read_image(folder / CLIP[0], size)
        write_image(args.out / "speed_io.png", a)
        io = time.perf_counter() - io_start
        b = read_image(folder / CLIP[1], size)
        flow_start = time.perf_counter()
        bwd, fwd = (estimate(x, y, settings.flow, settings.flow_preset) for x, y in ((b, a), (a, b)))
        flow = time.perf_counter() - flow_start
        check = _seconds(lambda: reliability(bwd, fwd))
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        (_, log), reads = counting_host_reads(lambda: timed_stylize(stylizer, a, steps))
        per_iter, setup = iteration_seconds(log)
        mem = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else rss_mb()
        peak = matmul_gflops(512 if args.quick else 2048, 3, device)
        vgg_s = vgg_seconds(vgg, height, width, 3, device)
        gflop = 2 * conv_flops(vgg, height, width) / 1e9
        speed.add(
            f"{width}x{height}",
            per_iter,
            vgg_s,
            gflop,
            gflop / vgg_s,
            peak,
            100 * gflop / vgg_s / peak,
            reads / len(log),
            mem,
        )
        opt_first = setup + settings.iterations * per_iter
        opt_later = setup + settings.iterations_later * per_iter
        n = len(settings.offsets)
        stages.add(
            f"{width}x{height}",
            io,
            flow * n,
            check * n,
            opt_first,
            opt_later,
            io + opt_first,
            io + n * (flow + check) + opt_later,
        )
    speed.notes.append(
        "matmul: best fp32 square matmul rate, measured just before the VGG row "
        "(the cores are shared, so both vary together). host reads/iter: tensor values read "
        "back per iteration of the whole stylize call (setup and result included). peak MB: "
        "max_memory_allocated on CUDA, else the process's peak RSS so far."
    )
    speed.print()
    stages.print()
    bar_chart(
        args.out / "speed_per_frame.png",
        "seconds per later frame",
        [row[0] for row in stages.rows],
        [row[-1] for row in stages.rows],
        " s",
    )


def rss_mb():
    """This process's peak resident set size so far, in MB (Linux reports KB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# Measures its child's peak RSS from a small process: a child forked from the (large)
# benchmark process would report the benchmark's own pages in ru_maxrss.
RSS_WRAPPER = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
)


def run_engine(clip, style, out, vgg, iterations, progress, device, what):
    """Run the engine CLI on ``clip`` (``iterations`` for every frame, ``--restart``) under ``RSS_WRAPPER``:
    its output (the last line: the peak RSS in KiB) and the seconds it took; RuntimeError if it fails ``what``."""
    cmd = [sys.executable, "-c", RSS_WRAPPER, sys.executable, "-m", "stylize_core", "stylize", str(clip)]
    cmd += ["--style", str(style), "--out", str(out), "--vgg", vgg, "--iterations", str(iterations)]
    cmd += ["--iterations-later", str(iterations), "--progress", progress, "--restart", "--device", device]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"engine failed {what}: {proc.stderr[-2000:]}")
    return proc.stdout, seconds


def peak_memory(args, frames, vgg_spec):
    """Peak RSS (MB) and seconds of the engine CLI on a generated ``frames``-frame clip."""
    work = args.out / "speed_memory"
    clip, out = work / f"clip_{frames}", work / f"out_{frames}"
    make_clip(clip, frames=frames, size=(64, 36))
    style = make_style(str(work / "style.png"), (64, 64))
    stdout, seconds = run_engine(
        clip, style, out, vgg_spec, iterations=1, progress="none", device="cpu", what="on the memory run"
    )
    return int(stdout.split()[-1]) / 1024, seconds


def memory(args, vgg_spec, lengths):
    table = Table("frames", "peak RSS MB", "seconds", title="Peak memory of a whole clip (engine CLI, 64x36)")
    for frames in lengths:
        table.add(frames, *peak_memory(args, frames, vgg_spec))
    table.notes.append("Flat memory: the peak must not grow with the number of frames.")
    table.print()


def convergence(args, vgg, style, width, iterations):
    """prevWarped init vs content init for frame 2, and coarse-to-fine vs single scale."""
    settings = Settings.from_preset("standard", tolerance=0.0)
    size = (width, round(width * 436 / 1024))
    a, b = (read_image(args.data / "sintel_clip" / name, size) for name in CLIP)
    stylizer = Stylizer(vgg, style, settings, args.device)
    s1, log1 = timed_stylize(stylizer, a, iterations)
    bwd, fwd = (estimate(x, y, settings.flow, settings.flow_preset) for x, y in ((b, a), (a, b)))
    weights = reliability(bwd, fwd)
    warped, _ = warp_numpy(s1, bwd)
    temporal = ((warped, weights),)
    _, log_content = timed_stylize(stylizer, b, iterations, temporal=temporal)
    prev_init = np.where(weights[..., None] > 0, warped, b)
    _, log_prev = timed_stylize(stylizer, b, iterations, init=prev_init, temporal=temporal)
    target = log_content[-1][2]
    table = Table(
        "run",
        "iterations",
        "seconds",
        "final loss",
        "iterations to target",
        "seconds to target",
        title=f"prevWarped initialisation ({size[0]}x{size[1]}; target: final loss of frame 2 with content init)",
    )
    for label, log in (
        ("frame 1, content init", log1),
        ("frame 2, content init + temporal", log_content),
        ("frame 2, prevWarped init + temporal", log_prev),
    ):
        t, i = first_reaching(log, target) if label.startswith("frame 2") else (log[-1][0], log[-1][1])
        table.add(label, log[-1][1], log[-1][0], log[-1][2], i, t)
    table.notes.append(
        "Frame 1 has no temporal term, so its loss is not comparable; its 'to target' columns are its whole run."
    )
    table.print()

    levels = 3
    c2f = Stylizer(vgg, style, Settings.from_preset("standard", tolerance=0.0, coarse_to_fine=levels), args.device)
    _, log_c2f = timed_stylize(c2f, a, iterations)
    after = (levels - 1) * iterations
    table = Table(
        "run",
        "iterations",
        "seconds",
        "final loss",
        "seconds to target",
        title=f"Coarse-to-fine ({levels} levels, {iterations} iterations each, half at full size) vs single scale "
        f"({size[0]}x{size[1]}; target: final loss of the single-scale run)",
    )
    t, _ = first_reaching(log_c2f, log1[-1][2], after)
    table.add("single scale", log1[-1][1], log1[-1][0], log1[-1][2], log1[-1][0])
    table.add(f"coarse-to-fine x{levels}", log_c2f[-1][1], log_c2f[-1][0], log_c2f[-1][2], t)
    table.notes.append("If coarse-to-fine never reaches the target, 'seconds to target' is its whole run.")
    table.print()


def run(args):
    from stylize_core.schedule import pick_device

    args.device = pick_device(args.device)
    vgg, weights_line, weights = load_vgg(args)
    vgg = vgg.to(args.device)
    print_header("Speed and memory", args, weights_line)
    settings = Settings.from_preset("standard", tolerance=0.0)
    widths = [int(w) for w in (args.widths or ("64,96" if args.quick else "256,512,768,1024")).split(",")]
    steps = args.steps or (3 if args.quick else 8)
    style = style_image(args)
    per_resolution(args, vgg, style, settings, widths, steps)
    memory(
        args,
        weights or random_spec(args),
        [int(n) for n in (args.memory_frames or ("4,12" if args.quick else "10,100")).split(",")],
    )
    convergence(
        args,
        vgg,
        style,
        args.convergence_width or (64 if args.quick else 256),
        args.convergence_iterations or (4 if args.quick else settings.iterations_later),
    )
