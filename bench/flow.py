"""Optical flow accuracy and speed: DIS (each preset), DeepFlow and RAFT (when available).

Against the Sintel ground truth (all valid pixels, and non-occluded ones) and against the
exact flow of a Blender-rendered clip (its Vector pass; "reliable" = pixels the engine's
forward-backward check keeps for the exact flows). EPE = mean end-point error in pixels;
">3px" = share of pixels whose error exceeds 3 px. Figure: flow colour codes and error
maps for the first pair.
"""

import time

import numpy as np

from stylize_core.motion.consistency import reliability
from stylize_core.motion.flow import available_methods, estimate

from . import scenes
from .common import Table, flow_to_color, grid, heat_map, labelled, load_pair, print_header, sintel_pairs, write_image

METHODS = [
    ("DIS ultrafast", "dis", "ultrafast"),
    ("DIS fast", "dis", "fast"),
    ("DIS medium", "dis", "medium"),
    ("DeepFlow", "deepflow", "medium"),
    ("RAFT-small", "raft", "fast"),
    ("RAFT-large", "raft", "medium"),
]


def add_arguments(parser):
    parser.add_argument("--scale", type=float, help="Sintel frames scale (default 1, quick 0.25)")
    parser.add_argument("--pairs", help="N: the first N Sintel pairs; A:B: a slice of them (default all, quick 2)")


def methods():
    """The (label, method, preset) rows that can run here, and a note on those that cannot."""
    have = available_methods()
    missing = sorted({m for _, m, _ in METHODS} - set(have))
    note = f"Not available here: {', '.join(missing)}." if missing else None
    return [row for row in METHODS if row[1] in have], note


def errors(flow, gt, masks):
    """(EPE, share > 3 px in %) of ``flow`` against ``gt`` for each mask."""
    epe = np.linalg.norm(flow - gt, axis=2)
    return [
        (float((epe * m).sum() / max(m.sum(), 1)), float(100 * ((epe > 3) * m).sum() / max(m.sum(), 1))) for m in masks
    ]


def evaluate(cases, rows, title, mask_names):
    """Run every method on ``cases`` = [(img_a, img_b, gt, masks)]; returns the table and flows of case 0."""
    table = Table("method", *[f"{k} {m}" for m in mask_names for k in ("EPE", ">3px %")], "s/pair", title=title)
    first = []
    for label, method, preset in rows:
        results, seconds = [], []
        for k, (a, b, gt, masks) in enumerate(cases):
            start = time.perf_counter()
            flow = estimate(a, b, method, preset)
            seconds.append(time.perf_counter() - start)
            results.append([x for pair in errors(flow, gt, masks) for x in pair])
            if k == 0:
                first.append((label, flow))
        table.add(label, *np.mean(results, axis=0).tolist(), float(np.mean(seconds)))
    return table, first


def figure(path, case, flows):
    """GT and estimated flows (colour-coded) over their end-point error maps (0..5 px)."""
    a, _, gt, masks = case
    top = float(np.percentile(np.linalg.norm(gt, axis=2), 99)) or 1.0
    rows = [[labelled(a, "frame t"), labelled(flow_to_color(gt, top), "ground truth")]]
    for label, flow in flows:
        epe = np.linalg.norm(flow - gt, axis=2) * masks[0]
        rows.append([labelled(flow_to_color(flow, top), label), labelled(heat_map(epe, 5.0), "EPE 0..5 px")])
    write_image(path, grid(rows))


def run(args):
    scale = args.scale or (0.25 if args.quick else 1.0)
    select = args.pairs or (2 if args.quick else None)
    print_header("Optical flow against ground truth", args)
    rows, note = methods()

    cases = []
    for folder in sintel_pairs(args.data, select):
        p = load_pair(folder, scale)
        cases.append((p["t"], p["t1"], p["flow"], (p["valid"], p["mask"])))
    h, w = cases[0][0].shape[:2]
    table, first = evaluate(cases, rows, f"Sintel: {len(cases)} pairs at {w}x{h}", ("all", "non-occluded"))
    table.notes += [note] if note else []
    table.print()
    figure(args.out / "flow_sintel.png", cases[0], first)

    size, frames = ((96, 40), 3) if args.quick else ((512, 218), 5)
    folder = scenes.render(
        args.out / f"scene_{size[0]}x{size[1]}_{frames}", frames, *size, samples=8 if args.quick else 32
    )
    images, forward, backward = scenes.load_clip(folder)
    cases = [
        (
            images[t],
            images[t + 1],
            forward[t],
            (np.ones(forward[t].shape[:2], np.float32), reliability(forward[t], backward[t])),
        )
        for t in range(len(forward))
    ]
    table, first = evaluate(
        cases,
        rows,
        f"Blender scene: {len(cases)} pairs at {size[0]}x{size[1]}, against the Vector pass",
        ("all", "reliable"),
    )
    table.print()
    figure(args.out / "flow_scene.png", cases[0], first)
    print(f"Figures: {args.out / 'flow_sintel.png'}, {args.out / 'flow_scene.png'}\n")
