"""Widened reliability weights on the Sintel pairs: the warping error near the mask edges.

The temporal loss of frame t+1 pulls it towards frame t warped with the estimated flow t+1->t,
weighted by the reliability c (``stylize_core.motion.consistency``). Here the frames themselves stand in
for their stylised versions: e(p) = |I_t+1(p) - warp(I_t, flow t+1->t)(p)|^2 (mean over RGB,
images in [0, 1]) is what the loss would enforce at p. A good mask gives weight where e is small.
For the hard mask (r = 0) and the mask widened by r px (``--reliability-widen``, processing-size
pixels) this reports, per r:

- ``E edge``: sum c e / sum c over the *edge band*, the hard mask's reliable pixels within
  ``--band`` px of an excluded one (where the widening acts);
- ``E all``: the same over the frame;
- ``E removed``: the error of what the widening takes out, sum (c_0 - c_r) e / sum (c_0 - c_r);
- ``kept``: mean c, the share of the frame the temporal loss still constrains.

``E far`` (hard-reliable pixels beyond the band) is the floor set by lighting changes,
resampling and flow error away from edges. No VGG is involved: the numbers are meaningful
without weights. Cost: two DIS flows per pair (~1 s at scale 0.5).

``--stylize`` adds the test on stylised frames (as ``bench consistency``): S_t, then S_t+1
with the temporal loss and DIS weights widened by each r (initialised, like the schedule,
from warped S_t where the weight is positive, the content elsewhere), and the warping error
with the ground-truth flow E = sum M |S_t - warp(S_t+1)|^2 / sum M over the Sintel mask M
(not occluded, valid), near its edges (M pixels within ``--band`` px of an excluded one,
where occlusions and motion boundaries are) and over all of M. With a random VGG (no weights
here) the style is not real, but the temporal term's effect on consistency is measured.
"""

import numpy as np

from stylize_core.motion.consistency import reliability
from stylize_core.motion.flow import estimate
from stylize_core.motion.warp import warp_numpy
from stylize_core.network.optimize import Stylizer
from stylize_core.settings import Settings

from .common import Table, load_pair, load_vgg, print_header, sintel_pairs, style_image

WIDENINGS = (0, 1, 2, 3, 4)


def add_arguments(parser):
    parser.add_argument("--scale", type=float, help="frame scale (default 0.5, quick 1/8)")
    parser.add_argument("--pairs", help="N: the first N pairs; A:B: a slice (default all 17, quick 2)")
    parser.add_argument("--flow-method", default="dis", help="flow estimator (default dis)")
    parser.add_argument("--band", type=float, default=6.0, help="edge band width in px (default 6)")
    parser.add_argument(
        "--stylize",
        action="store_true",
        help="also stylise each pair (slow) and measure the stylised warping error per widening",
    )
    parser.add_argument(
        "--iterations", type=int, default=100, help="--stylize: iterations for S_t (default 100, quick 4)"
    )
    parser.add_argument(
        "--iterations-later", type=int, default=60, help="--stylize: iterations for S_t+1 (default 60, quick 3)"
    )


def distance_to_excluded(c):
    """Euclidean distance (px) of every pixel to the nearest pixel of weight 0."""
    import cv2

    return cv2.distanceTransform((c > 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def measure(pair, method, band, widenings=WIDENINGS):
    """Per widening r: (E edge, E all, E removed, kept), and E far."""
    bwd, fwd = estimate(pair["t1"], pair["t"], method), estimate(pair["t"], pair["t1"], method)
    warped, _ = warp_numpy(pair["t"], bwd)
    e = ((pair["t1"] - warped) ** 2).mean(axis=2)
    hard = reliability(bwd, fwd)
    d = distance_to_excluded(hard)
    edge, far = (hard > 0) & (d <= band), (hard > 0) & (d > band)
    mean = lambda w, m=None: (  # noqa: E731
        float((w * e)[m].sum() / max((w[m] if m is not None else w).sum(), 1e-9))
        if m is not None
        else float((w * e).sum() / max(w.sum(), 1e-9))
    )
    rows = {}
    for r in widenings:
        c = reliability(bwd, fwd, widen=float(r))
        removed = hard - c
        rows[r] = (mean(c, edge), mean(c), mean(removed) if removed.sum() > 0 else float("nan"), float(c.mean()))
    return rows, mean(hard, far)


def stylized_errors(stylizer, pair, method, band, widenings, iterations):
    """Per widening r: (E edge, E all) of S_t+1 against S_t with the ground-truth flow."""
    from .common import warping_error

    bwd, fwd = estimate(pair["t1"], pair["t"], method), estimate(pair["t"], pair["t1"], method)
    s_t = stylizer.stylize(pair["t"], iterations=iterations[0])
    warped, _ = warp_numpy(s_t, bwd)
    edge = pair["mask"] * (distance_to_excluded(pair["mask"]) <= band)
    out = {}
    for r in widenings:
        c = reliability(bwd, fwd, widen=float(r))
        init = np.where(c[..., None] > 0, warped, pair["t1"])
        s_t1 = stylizer.stylize(pair["t1"], init=init, temporal=((warped, c),), iterations=iterations[1])
        out[r] = (warping_error(s_t, s_t1, pair["flow"], edge), warping_error(s_t, s_t1, pair["flow"], pair["mask"]))
    return out


def run(args):
    scale = args.scale or (1 / 8 if args.quick else 0.5)
    print_header("Widened reliability weights on Sintel pairs", args)
    print(f"- flow {args.flow_method}, scale {scale:g}, edge band {args.band:g} px, widening r in px of that size\n")
    per_r, styl = {r: [] for r in WIDENINGS}, {r: [] for r in WIDENINGS}
    floors = []
    if args.stylize:
        vgg, weights_line, _ = load_vgg(args)
        print(f"- --stylize: {weights_line}\n")
        stylizer = Stylizer(vgg, style_image(args), Settings(tolerance=0.0))
        iterations = (4, 3) if args.quick else (args.iterations, args.iterations_later)
    for folder in sintel_pairs(args.data, args.pairs or (2 if args.quick else None)):
        pair = load_pair(folder, scale)
        rows, floor = measure(pair, args.flow_method, args.band)
        floors.append(floor)
        for r, row in rows.items():
            per_r[r].append(row)
        if args.stylize:
            for r, row in stylized_errors(stylizer, pair, args.flow_method, args.band, WIDENINGS, iterations).items():
                styl[r].append(row)
    table = Table(
        "r (px)",
        "E edge",
        "E all",
        "E removed",
        "kept",
        title=f"Reliability widening, mean over {len(floors)} pairs "
        "(E: squared error of the warped frame, weighted by the reliability)",
    )
    for r, rows in per_r.items():
        means = np.array(rows, float)
        cells = [float(np.nanmean(col)) if not np.isnan(col).all() else "-" for col in means.T]
        table.add(r, *cells)
    table.notes.append(
        f"E far (hard mask, beyond the band): {np.mean(floors):.4g}. E removed: the error of "
        "the pixels the widening leaves out (r = 0: none)."
    )
    table.print()
    if args.stylize:
        st = Table(
            "r (px)",
            "E edge",
            "E all",
            title=f"Reliability widening stylised, {len(floors)} pairs "
            "(E: warping error of S_t+1 with GT flow, near mask edges / all)",
        )
        for r, rows in styl.items():
            st.add(r, *np.mean(np.array(rows, float), axis=0).tolist())
        st.print()
