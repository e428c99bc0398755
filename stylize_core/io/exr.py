"""OpenEXR input (``OpenEXR`` 3.x API): channel lists, named channels, RGB images.

Blender writes a multilayer EXR as one part holding every channel (4.x) or as
one part per pass (5.x); channels are named ``<view layer>.<pass>.<component>``,
e.g. ``ViewLayer.Combined.R`` or ``ViewLayer.Vector.X``. Both layouts, and plain
``R, G, B`` files, are read the same way here: the channels of all parts are
merged by name.
"""

import os
import sys
from contextlib import contextmanager

import numpy as np
import OpenEXR

from ..errors import STDOUT_LOCK, StylizeError


@contextmanager
def _stdout_to_stderr():
    """OpenEXR prints its warnings about a damaged file on the C++ stdout, where ``--progress json`` writes
    its events: they go to stderr instead (the events wait for ``STDOUT_LOCK`` meanwhile)."""
    with STDOUT_LOCK:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def _open(path, header_only=False):
    try:
        with _stdout_to_stderr():
            f = OpenEXR.File(str(path), separate_channels=True, header_only=header_only)
    except Exception as e:  # the bindings raise RuntimeError/ValueError with terse messages
        raise StylizeError(f"cannot read EXR file {path}: {e}") from None
    if not header_only and (not f.parts or any(not p.channels for p in f.parts)):
        raise StylizeError(
            f"cannot decode EXR file {os.path.basename(path)}: truncated or corrupt (its pixels could not be read)"
        )
    return f


def channel_names(path):
    """Sorted names of all channels in all parts of ``path``."""
    return sorted(c.name for part in _open(path, header_only=True).parts for c in part.header["channels"])


def find_pass(names, pass_name, components):
    """Full channel names of the first layer holding ``pass_name`` with all ``components``.

    Matches ``<layer>.<pass>.<c>`` as well as a bare ``<pass>.<c>``; None if absent.
    """
    suffix = f"{pass_name}.{components[0]}"
    for name in sorted(names):
        if name == suffix or name.endswith("." + suffix):
            prefix = name[: -len(components[0])]
            full = [prefix + c for c in components]
            if all(n in names for n in full):
                return full
    return None


def attributes(path):
    """String attributes of every part's header merged (e.g. Blender's ``cryptomatte/<key>/name``,
    which 5.x writes on the first part only)."""
    found = {}
    for part in _open(path, header_only=True).parts:
        found.update((k, v) for k, v in part.header.items() if isinstance(v, str))
    return found


def all_channels(path):
    """Every channel of every part: ``{name: (H, W) array}`` in the file's pixel type."""
    found = {}
    for part in _open(path).parts:
        found.update((name, c.pixels) for name, c in part.channels.items())
    return found


def read_channels(path, names):
    """Read the named channels as a list of ``(H, W)`` float32 arrays, in order."""
    found = all_channels(path)
    missing = [n for n in names if n not in found]
    if missing:
        raise StylizeError(
            f"{path}: missing EXR channel(s) {', '.join(missing)} (file has: {', '.join(sorted(found)) or 'none'})"
        )
    return [np.asarray(found[n], np.float32) for n in names]


def linear_to_srgb(x):
    """sRGB transfer function (Blender's "Standard" view transform), clipped to [0, 1]; a render's NaN
    pixels become 0 and infinite ones 1 (a single NaN would otherwise make every loss NaN)."""
    x = np.clip(np.nan_to_num(np.asarray(x, np.float32), nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055).astype(np.float32)


def read_rgb(path):
    """A linear EXR (plain or multilayer ``Combined`` pass) as sRGB-encoded ``(H, W, 3)`` in [0, 1]."""
    names = set(channel_names(path))
    rgb = find_pass(names, "Combined", "RGB")
    if rgb is None:
        if not {"R", "G", "B"} <= names:
            raise StylizeError(f"{path}: no RGB image (neither <layer>.Combined.R/G/B nor R, G, B)")
        rgb = ["R", "G", "B"]
    return linear_to_srgb(np.stack(read_channels(path, rgb), axis=-1))


def write_exr(path, channels, attributes=None, parts=None):
    """Write a float32 EXR from ``{name: (H, W) array}`` (used by tests and benchmarks): one part,
    or with ``parts`` = ``{part name: [channel names]}`` one part per entry (as Blender 5.x);
    ``attributes`` (strings) go into the (first) header."""
    data = {n: np.ascontiguousarray(a, np.float32) for n, a in channels.items()}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage, **(attributes or {})}
    if not parts:
        OpenEXR.File(header, data).write(str(path))
        return
    plain = {k: v for k, v in header.items() if k in ("compression", "type")}
    OpenEXR.File(
        [
            OpenEXR.Part(header if i == 0 else dict(plain), {n: data[n] for n in names}, name)
            for i, (name, names) in enumerate(parts.items())
        ]
    ).write(str(path))
