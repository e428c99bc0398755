"""Content digests of files: a file's bytes, an image's decoded pixels (so metadata such as Blender's render time
does not count), an ordered folder of frames, a folder of ``.flo`` files. The job identity (``job.identity``) and the
shared looks (``job.looks``) are made of them."""

import fnmatch
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import StylizeError
from .frames import decode, regular_file
from .jobdir import FLOW_GLOB

CHUNK = 1 << 20


def file_digest(path):
    """SHA-1 (hex) of a file's bytes, read in 1 MiB chunks."""
    regular_file(path, "file")
    h = hashlib.sha1()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
    except OSError as e:
        raise StylizeError(f"cannot read {path}: {e.strerror}") from None
    return h.hexdigest()


def _update(h, name, array):
    a = np.ascontiguousarray(array)
    h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
    h.update(a.data)


def image_digest(path, what="frame"):
    """SHA-1 (hex) of an image's decoded pixels: all EXR channels by name, else every channel
    of the PNG/JPEG at its stored bit depth (alpha included: ``frames.decode``). ``what`` names it in errors."""
    h = hashlib.sha1()
    if os.fspath(path).lower().endswith(".exr"):
        from . import exr

        channels = exr.all_channels(path)
        for name in sorted(channels):
            _update(h, name, channels[name])
        return h.hexdigest()
    _update(h, "pixels", decode(path, what))
    return h.hexdigest()


def frames_digest(paths):
    """SHA-1 (hex) of the ordered frames' decoded content (:func:`image_digest`), names excluded."""
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        digests = list(pool.map(image_digest, paths))
    return hashlib.sha1(",".join(digests).encode()).hexdigest()


def flo_digest(folder):
    """SHA-1 (hex) of the names and bytes of ``folder``'s flow files (``jobdir.FLOW_GLOB``), in name order."""
    h = hashlib.sha1()
    for name in sorted(n for n in os.listdir(folder) if fnmatch.fnmatchcase(n, FLOW_GLOB)):
        h.update(f"{name}:{file_digest(os.path.join(folder, name))};".encode())
    return h.hexdigest()
