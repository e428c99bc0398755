"""Shared pieces of the benchmarks: options, header, markdown tables, timers, data loading."""
import os
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch

from stylize_core.demo import make_style
from stylize_core.errors import StylizeError
from stylize_core.flowio import read_flo
from stylize_core.warp import warp_numpy
from stylize_core.weights import ENV, FILENAME, find_weights, load_vgg as engine_load_vgg

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def add_common_arguments(parser):
    """Options every benchmark takes."""
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results",
                        help="folder for the PNG figures (default bench/results/)")
    parser.add_argument("--vgg", help="VGG-19 weights file (default: the engine's resolution order)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: runs in seconds")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    parser.add_argument("--style", type=Path, help="style image (default: a generated painting)")


def load_vgg(args):
    """The VGG to use, a line saying which, and whether quality numbers mean anything.

    Order: ``--vgg``, then the engine's resolution (``$STYLIZE_VGG19``, the torch hub
    cache; never a download), then ``shared/weights/``; if none holds weights a
    randomly initialised VGG is used (thinner in quick mode) and the line says so.
    """
    shared = args.data.parent / "weights" / FILENAME
    path = args.vgg or find_weights() or (shared if shared.is_file() else None)
    if path:
        return engine_load_vgg(path, allow_download=False), f"VGG-19 weights: {path}", True
    spec = "random:4" if args.quick else "random"
    return (engine_load_vgg(spec),
            f"VGG-19 weights: NONE found (--vgg, ${ENV}, torch hub cache, {shared.parent}) -> "
            f"randomly initialised VGG ({spec}): speed numbers are meaningful, "
            "quality numbers (losses, warping errors) are NOT", False)


def print_header(title, args, weights_line=None):
    """Markdown header: benchmark, mode, machine and, when relevant, which weights are used."""
    print(f"## {title}{' (quick)' if args.quick else ''}\n")
    print(f"- machine: {os.cpu_count()} CPU cores, torch {torch.__version__} "
          f"with {torch.get_num_threads()} threads")
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


def mean_rows(table, label_columns):
    """Append a 'mean' row: the mean of each numeric column over the rows so far."""
    cols = list(zip(*table.rows))
    cells = ["mean"] + [""] * (label_columns - 1)
    cells += [float(np.mean(c)) for c in cols[label_columns:]]
    table.add(*cells)


@contextmanager
def timer(times, key):
    """Add the wall time of the block to ``times[key]``."""
    start = time.perf_counter()
    yield
    times[key] = times.get(key, 0.0) + time.perf_counter() - start


def read_image(path, size=None):
    """PNG -> float32 RGB (H, W, 3) in [0, 1], optionally resized to ``size`` = (W, H)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise StylizeError(f"cannot read image {path}")
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    return resize(img, size) if size else img


def resize(img, size):
    """Resize an image to ``size`` = (W, H) (area filter when shrinking)."""
    if (img.shape[1], img.shape[0]) == tuple(size):
        return img
    shrink = size[0] < img.shape[1]
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def write_image(path, img):
    """float RGB in [0, 1] (or uint8) -> PNG, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path


def scaled_size(width, height, scale):
    return max(16, round(width * scale)), max(16, round(height * scale))


def sintel_pairs(data, count=None):
    """Folders of the Sintel pairs, sorted; the first ``count`` if given."""
    pairs = sorted(p for p in (Path(data) / "sintel_pairs").iterdir() if p.is_dir())
    if not pairs:
        raise StylizeError(f"no Sintel pairs under {data}/sintel_pairs")
    return pairs[:count] if count else pairs


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
    occluded, invalid = (cv2.imread(str(folder / n), cv2.IMREAD_GRAYSCALE) > 127
                         for n in ("occlusion.png", "invalid.png"))
    valid, mask = (~invalid).astype(np.float32), (~(occluded | invalid)).astype(np.float32)
    sx, sy = size[0] / full_w, size[1] / full_h
    if size != (full_w, full_h):
        flow_sq = resize(flow * flow, size)
        flow = resize(flow, size)
        coherent = np.sqrt(np.maximum(flow_sq - flow * flow, 0)).max(axis=2) * max(sx, sy) < 0.5
        valid, mask = (((resize(m, size) > 0.999) & coherent).astype(np.float32) for m in (valid, mask))
    flow = (flow * np.array([sx, sy], np.float32)).astype(np.float32)
    return dict(name=folder.name, t=read_image(folder / "frame_t.png", size),
                t1=read_image(folder / "frame_t1.png", size), flow=flow, valid=valid, mask=mask)


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
    hsv = np.stack([(np.degrees(np.arctan2(-v, -u)) + 180) / 2,
                    np.clip(norm / max_norm, 0, 1) * 255, np.full_like(u, 255)], axis=-1)
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
        cv2.putText(out, text, (4, int(16 * scale) + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale,
                    colour, thick, cv2.LINE_AA)
    return out


def grid(rows):
    """Tile a list of rows (lists of same-sized RGB images) into one image."""
    width = max(len(r) for r in rows)
    blank = np.ones_like(rows[0][0])
    return np.concatenate([np.concatenate(list(r) + [blank] * (width - len(r)), axis=1)
                           for r in rows], axis=0)


def style_image(args, size=256):
    """The style image: ``--style`` or the engine's generated brush-stroke painting."""
    if args.style:
        return read_image(args.style)
    return read_image(make_style(str(args.out / "style.png"), (size, size)))
