"""Frame input/output: movies and frame folders in, atomic PNG frames and movies out; the one image decoder
(:func:`decode`) every reader of a PNG, JPEG or other OpenCV format builds on.

Images are ``(H, W, 3)`` float32 RGB in [0, 1] (see docs/conventions.md). Nothing is
ever written next to an input: a movie is decoded once into ``WORK_DIR/input/``.
"""

import json
import os
import re
import struct
import threading
from collections import OrderedDict

import cv2
import numpy as np

from ..errors import StylizeError
from ..sizes import MIN_SIDE, scaled
from .jobdir import EXTRACTED, INPUT, frame_index, frame_name

if "OPENCV_LOG_LEVEL" not in os.environ:
    cv2.setLogLevel(2)  # errors only: a corrupt file is reported once, as a StylizeError, not also as "[ WARN:0@...]"

MOVIE_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
FRAME_EXTS = (".png", ".jpg", ".jpeg", ".exr")
VIDEO_FOURCC = {".mp4": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}
DEFAULT_FPS = 24.0


class FrameSource:
    """An ordered clip of same-sized frames on disk, read on demand.

    ``len(src)`` frames; ``size`` is ``(W, H)``; ``fps`` is the movie's frame rate or
    None for a folder; ``names`` are the source file names and ``paths`` the files
    read (for EXR folders, the EXR files themselves, which also hold Vector passes).
    """

    CACHED = 4  # decoded frames kept: a frame is read for its content and its flows within a step

    def __init__(self, paths, size, fps=None, names=None):
        self.paths = list(paths)
        self.size = tuple(size)
        self.fps = fps
        self.names = list(names) if names is not None else [os.path.basename(p) for p in self.paths]
        self._cache, self._lock = OrderedDict(), threading.Lock()

    def __len__(self):
        return len(self.paths)

    def read(self, i):
        """Frame ``i`` (0-based) as ``(H, W, 3)`` float32 RGB in [0, 1], read-only.

        The last ``CACHED`` frames read are kept decoded (thread-safe): the schedule reads a
        frame for its content and again for each flow it takes part in, within one step.
        """
        if not 0 <= i < len(self.paths):
            raise IndexError(f"frame index {i} out of range (clip has {len(self.paths)} frames)")
        with self._lock:
            if i in self._cache:
                self._cache.move_to_end(i)
                return self._cache[i]
        img = read_image(self.paths[i], what="frame")
        if (img.shape[1], img.shape[0]) != self.size:
            raise StylizeError(
                f"frame {self.names[i]} is {img.shape[1]}x{img.shape[0]}, "
                f"expected {self.size[0]}x{self.size[1]} like the other frames"
            )
        img.flags.writeable = False  # shared by every caller: a change would leak into the others
        with self._lock:
            self._cache[i] = img
            while len(self._cache) > self.CACHED:
                self._cache.popitem(last=False)
        return img


def check_path(path, what):
    """A path OpenCV and the OS can take: StylizeError for one that is not valid UTF-8 (OpenCV's movie reader and
    writer crashed the process on such names)."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        raise StylizeError(f"{what} {os.fsdecode(path)!r}: the path is not valid UTF-8; rename it") from None


def regular_file(path, what):
    """StylizeError unless ``path`` is a regular file (a pipe would block the job forever, a broken link is
    no file)."""
    if not os.path.isfile(path):
        why = (
            "not found"
            if not os.path.lexists(path)
            else "a broken link"
            if os.path.islink(path) and not os.path.exists(path)
            else "a folder, not a file"
            if os.path.isdir(path)
            else "not a regular file (a pipe or device)"
        )
        raise StylizeError(f"{what} {path}: {why}")
    return path


def is_movie(path):
    """True for an existing file with a movie extension (``MOVIE_EXTS``)."""
    return os.path.isfile(path) and os.fspath(path).lower().endswith(MOVIE_EXTS)


def open_input(path, work_dir, max_frames=None, digest=None):
    """Open a movie file or a folder of frames as a :class:`FrameSource`.

    Folders: ``.png/.jpg/.jpeg/.exr`` files in natural name order (``frame2`` before
    ``frame10``); other and hidden files are ignored; all sizes are checked up front.
    Movies are decoded once into ``work_dir/input/frame_00001.png``... and reused while
    the movie's content is unchanged (``digest``: its ``digest.file_digest``, computed
    here if not given). ``max_frames`` keeps only the first N frames (and stops
    decoding a movie there).
    """
    path = os.fspath(path)
    check_path(path, "input")
    if max_frames is not None and max_frames < 1:
        raise StylizeError(f"max_frames must be at least 1, got {max_frames}")
    if not os.path.exists(path):
        raise StylizeError(f"input not found: {path}")
    if os.path.isdir(path):
        return _open_folder(path, max_frames)
    if path.lower().endswith(MOVIE_EXTS):
        regular_file(path, "input movie")
        return _open_movie(path, os.fspath(work_dir), max_frames, digest)
    raise StylizeError(
        f"{path}: not a supported input; expected a movie "
        f"({'/'.join(MOVIE_EXTS)}) or a folder of frames ({'/'.join(FRAME_EXTS)})"
    )


def natural_key(name):
    """Sort key that orders embedded numbers by value: ``f2 < f10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name.lower())]


def _open_folder(folder, max_frames):
    names = sorted(
        (
            n
            for n in os.listdir(folder)
            if n.lower().endswith(FRAME_EXTS) and not n.startswith(".") and not os.path.isdir(os.path.join(folder, n))
        ),
        key=natural_key,
    )
    for n in names:  # a frame that is a broken link or a pipe is an error, not a frame left out
        regular_file(os.path.join(folder, n), "frame")
    if not names:
        raise StylizeError(f"{folder}: no frames found (expected {'/'.join(FRAME_EXTS)} files)")
    names = names[:max_frames]
    paths = [os.path.join(folder, n) for n in names]
    size = image_size(paths[0])
    for name, p in zip(names[1:], paths[1:]):
        s = image_size(p)
        if s != size:
            raise StylizeError(
                f"frame {name} is {s[0]}x{s[1]} but {names[0]} is "
                f"{size[0]}x{size[1]}: all frames must have the same size"
            )
    return FrameSource(paths, size, None, names)


def image_size(path):
    """``(W, H)`` of a PNG, JPEG or EXR file from its header (other formats: decoded)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(0)
            if head == b"\x89PNG\r\n\x1a\n":
                return _png_size(f)
            if head[:2] == b"\xff\xd8":
                return _jpeg_size(f)
            if head[:4] == b"\x76\x2f\x31\x01":
                return _exr_size(f)
    except OSError as e:
        raise StylizeError(f"cannot read {path}: {e.strerror}") from None
    except (ValueError, IndexError, struct.error):
        raise StylizeError(f"cannot decode frame {os.path.basename(path)}: corrupt header") from None
    img = read_image(path, what="frame")
    return img.shape[1], img.shape[0]


def _png_size(f):
    data = f.read(24)
    if data[12:16] != b"IHDR":
        raise ValueError
    return struct.unpack(">II", data[16:24])


def _jpeg_size(f):
    f.read(2)
    while True:
        marker = f.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            raise ValueError
        while marker[1] == 0xFF:  # fill bytes
            marker = b"\xff" + f.read(1)
        if 0xD0 <= marker[1] <= 0xD9 or marker[1] == 0x01:
            continue  # markers without a length
        (length,) = struct.unpack(">H", f.read(2))
        if 0xC0 <= marker[1] <= 0xCF and marker[1] not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">xHH", f.read(5))
            return w, h
        f.seek(length - 2, 1)


def _exr_size(f):
    f.read(8)  # magic, version/flags
    while True:
        name = _cstr(f)
        kind = _cstr(f)
        if not name:
            raise ValueError  # end of header, no dataWindow
        (n,) = struct.unpack("<i", f.read(4))
        if name == b"dataWindow" and kind == b"box2i":
            x0, y0, x1, y1 = struct.unpack("<4i", f.read(16))
            return x1 - x0 + 1, y1 - y0 + 1
        f.seek(n, 1)


def _cstr(f, limit=256):
    out = bytearray()
    while (c := f.read(1)) not in (b"\0", b""):
        out += c
        if len(out) > limit:
            raise ValueError
    return bytes(out)


def _open_movie(path, work_dir, max_frames, digest=None):
    if os.path.getsize(path) == 0:
        raise StylizeError(f"{path}: movie file is empty (0 bytes)")
    out_dir = os.path.join(work_dir, INPUT)
    if digest is None:
        from .digest import file_digest

        digest = file_digest(path)
    ident = {"sha1": digest}
    info = _read_marker(out_dir)
    if not (
        info
        and {k: info.get(k) for k in ident} == ident
        and (info["complete"] or (max_frames and info["frames"] >= max_frames))
        and os.path.exists(_frame_path(out_dir, info["frames"] - 1))
    ):
        info = dict(ident, **_extract(path, out_dir, max_frames))
        _write_bytes(os.path.join(out_dir, EXTRACTED), json.dumps(info, indent=1).encode())
    n = min(info["frames"], max_frames or info["frames"])
    paths = [_frame_path(out_dir, i) for i in range(n)]
    return FrameSource(paths, (info["width"], info["height"]), info["fps"])


def _frame_path(out_dir, i):
    return os.path.join(out_dir, frame_name(i))


def _read_marker(out_dir):
    try:
        with open(os.path.join(out_dir, EXTRACTED)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _extract(path, out_dir, max_frames):
    """Decode a movie into numbered PNGs; returns frames/fps/width/height/complete.

    Frames are placed by timestamp at a constant frame rate, so a repeated frame that
    the container stores as an empty packet (common in AVI) is written again.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # keep ffmpeg quiet on stderr
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise StylizeError(f"cannot open movie {path}: unreadable or corrupt file")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if np.isfinite(fps) and fps > 0 else None
    os.makedirs(out_dir, exist_ok=True)
    before = (_read_marker(out_dir) or {}).get("frames", 0)  # frames an earlier decode wrote
    for name in os.listdir(out_dir):  # stale marker / temp files of our own names
        tmp = _TEMPORARY.fullmatch(name)
        if name == EXTRACTED or tmp and (tmp.group(1) == EXTRACTED or frame_index(tmp.group(1)) is not None):
            os.remove(os.path.join(out_dir, name))
    n, t0, png, shape = 0, None, None, None
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                complete = True
                break
            t = cap.get(cv2.CAP_PROP_POS_MSEC)
            t0 = t if t0 is None else t0
            target = round((t - t0) * fps / 1000) if fps else n
            while png is not None and n < min(target, max_frames or target):
                _write_bytes(_frame_path(out_dir, n), png)  # repeat the previous frame
                n += 1
            if max_frames is not None and n >= max_frames:
                complete = False
                break
            if shape is not None and frame.shape != shape:
                raise StylizeError(
                    f"{path}: frame {n + 1} is {frame.shape[1]}x{frame.shape[0]}, "
                    f"earlier frames are {shape[1]}x{shape[0]}"
                )
            shape = frame.shape
            png = _encode_png(frame)
            _write_bytes(_frame_path(out_dir, n), png)
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise StylizeError(f"{path}: movie has no frames")
    for name in os.listdir(out_dir):  # frames of an older, longer extraction
        i = frame_index(name)
        if i is not None and n <= i < before:
            os.remove(os.path.join(out_dir, name))
    return {"frames": n, "fps": fps, "width": shape[1], "height": shape[0], "complete": complete}


def decode(path, what="image"):
    """An image file's pixels as stored (PNG 8/16-bit, JPEG, TIFF, WebP, ...; EXR: ``exr``): every channel at its
    bit depth, OpenCV's order (``(H, W)`` grey, ``(H, W, 3)`` BGR, ``(H, W, 4)`` BGRA), a JPEG's EXIF orientation
    not applied. The one image decoder: :func:`read_image`, ``digest.image_digest`` and ``regions`` build on it;
    ``what`` names the file in its errors (``cannot read``, ``cannot decode``, and :func:`regular_file`'s)."""
    path = os.fspath(path)
    regular_file(path, what)
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as e:
        raise StylizeError(f"cannot read {what} {path}: {e.strerror or e}") from None
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise StylizeError(f"cannot decode {what} {os.path.basename(path)}: not an image or corrupt file")
    return img


def read_image(path, what="image", alpha=False):
    """Read PNG (8/16-bit, grey, alpha), JPEG or EXR as ``(H, W, 3)`` float32 RGB in [0, 1].

    EXR holds linear light: ``exr.read_rgb`` applies the sRGB transfer function; other formats are
    :func:`decode`'d (a JPEG's EXIF orientation is not applied) and scaled by their bit depth's maximum.
    Alpha is dropped, or with ``alpha`` returned: ``(rgb, alpha (H, W) in [0, 1] or None if the
    file has none)`` (PNG and other 8/16-bit formats; an EXR's alpha is not read).
    """
    path = os.fspath(path)
    if path.lower().endswith(".exr"):
        regular_file(path, what)
        from . import exr

        rgb = np.clip(exr.read_rgb(path), 0.0, 1.0).astype(np.float32)
        return (rgb, None) if alpha else rgb
    img = decode(path, what)
    scale = np.float32(1.0 / np.iinfo(img.dtype).max if img.dtype.kind == "u" else 1.0)
    if img.ndim == 2:
        img = img[:, :, None]
    a = img[:, :, 3].astype(np.float32) * scale if alpha and img.shape[2] == 4 else None
    img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.shape[2] == 1 else img[:, :, :3]
    rgb = np.ascontiguousarray(img[:, :, ::-1], dtype=np.float32) * scale
    return (rgb, a) if alpha else rgb


def load_style(path, max_side=None):
    """Read a style image as ``(H, W, 3)`` float32 RGB, shrunk so its longer side is <= max_side."""
    if not os.fspath(path).strip():
        raise StylizeError("--style is empty: give a style image file")
    if not os.path.exists(path):
        raise StylizeError(f"style image not found: {path}")
    if os.path.isdir(path):
        raise StylizeError(f"style image {path} is a folder, not an image")
    if not os.path.isfile(path):
        raise StylizeError(f"style image {path} is not a regular file (a pipe or device): give an image file")
    img, alpha = read_image(path, what="style image", alpha=True)
    if alpha is not None and alpha.min() < 1:
        raise StylizeError(
            f"style image {path} has transparent pixels (alpha below 1 on {max(np.mean(alpha < 1), 0.001):.1%} "
            "of it): the colours there are not part of the painting; flatten it onto a background "
            "first"
        )
    if min(img.shape[:2]) < MIN_SIDE:
        raise StylizeError(
            f"style image {path} is {img.shape[1]}x{img.shape[0]} px: too small to carry a style "
            f"(at least {MIN_SIDE} px a side)"
        )
    h, w = img.shape[:2]
    if max_side and max(h, w) > max_side:
        s = max_side / max(h, w)
        img = resize(img, scaled((w, h), s, least=1))
    return img


def resize(img, size):
    """Resize an array to ``size`` = (W, H): area averaging to shrink, bicubic to enlarge.

    Values are not clipped (bicubic may overshoot [0, 1] slightly), so it also suits flows.
    """
    size = tuple(int(v) for v in size)
    if (img.shape[1], img.shape[0]) == size:
        return img
    shrink = size[0] * size[1] < img.shape[0] * img.shape[1]
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def to_uint8_bgr(img):
    """Float RGB [0, 1] -> uint8 BGR (rounded, clipped) for OpenCV."""
    return np.clip(np.asarray(img, np.float32)[:, :, ::-1] * 255.0 + 0.5, 0, 255).astype(np.uint8)


def quantize(img):
    """``img`` as :func:`write_png` stores it and :func:`read_image` reads it back: 8 bits a channel."""
    return np.ascontiguousarray(to_uint8_bgr(img)[:, :, ::-1], dtype=np.float32) * np.float32(1.0 / 255)


def write_png(path, img):
    """Write float RGB [0, 1] as an 8-bit PNG atomically (temporary name, then rename)."""
    _write_bytes(path, _encode_png(to_uint8_bgr(img)))


def write_pngs(items):
    """Write ``[(path, float RGB [0, 1]), ...]`` as 8-bit PNGs (as :func:`write_png`), encoded in parallel threads:
    OpenCV's encoder releases the GIL (a preview's three images, one of them twice as wide)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(len(items), os.cpu_count() or 1))) as pool:
        for done in [pool.submit(write_png, path, img) for path, img in items]:
            done.result()


def _encode_png(bgr):
    ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise StylizeError("cannot encode PNG image")
    return buf.tobytes()


_TEMPORARY = re.compile(r"(.+)\.tmp\d+")  # what _write_bytes writes first: <name>.tmp<process id>


def _write_bytes(path, data):
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_video(frame_paths, out_path, fps=None):
    """Encode image files into a movie: ``.mp4``/``.mov`` (mp4v) or ``.avi`` (MJPG).

    The frame size is the first frame's; ``fps`` None means 24. Written atomically.
    """
    stem, ext = os.path.splitext(out_path)
    fourcc = VIDEO_FOURCC.get(ext.lower())
    if fourcc is None:
        raise StylizeError(f"{out_path}: unsupported video format (use {'/'.join(VIDEO_FOURCC)})")
    if not frame_paths:
        raise StylizeError(f"{out_path}: no frames to encode")
    first = read_image(frame_paths[0], what="frame")
    size = (first.shape[1], first.shape[0])
    tmp = f"{stem}.tmp{os.getpid()}{ext}"
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*fourcc), float(fps or DEFAULT_FPS), size)
    try:
        if not writer.isOpened():
            raise StylizeError(f"cannot write video {out_path}: the {fourcc} encoder failed to open")
        for p in frame_paths:
            img = read_image(p, what="frame")
            if (img.shape[1], img.shape[0]) != size:
                raise StylizeError(
                    f"frame {os.path.basename(p)} is {img.shape[1]}x{img.shape[0]}, expected {size[0]}x{size[1]}"
                )
            writer.write(to_uint8_bgr(img))
        writer.release()
        if not os.path.getsize(tmp):
            raise StylizeError(f"cannot write video {out_path}: the encoder produced no data")
        os.replace(tmp, out_path)
    except BaseException:
        writer.release()
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return out_path
