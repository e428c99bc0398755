"""Middlebury ``.flo`` files: float32 magic 202021.25, int32 width, height, interleaved (u, v)."""

import os

import numpy as np

from ..errors import StylizeError

MAGIC = 202021.25


def read_flo(path, expect_size=None):
    """Read a ``.flo`` file as ``(H, W, 2)`` float32; ``expect_size`` is ``(W, H)``."""
    try:
        with open(path, "rb") as f:
            magic = np.fromfile(f, np.float32, 1)
            if magic.size != 1 or magic[0] != MAGIC:
                raise StylizeError(f"{path}: not a .flo file (bad magic number)")
            w, h = (int(x) for x in np.fromfile(f, np.int32, 2))
            data = np.fromfile(f, np.float32, 2 * w * h)
    except OSError as e:
        raise StylizeError(f"cannot read flow file {path}: {e.strerror}") from None
    if w <= 0 or h <= 0 or data.size != 2 * w * h:
        raise StylizeError(f"{path}: truncated .flo file (header says {w}x{h})")
    flow = data.reshape(h, w, 2)
    check_flow(flow, path, expect_size)
    return flow


def write_flo(path, flow):
    """Write ``(H, W, 2)`` flow atomically (temporary name, then rename)."""
    flow = np.asarray(flow, np.float32)
    h, w = flow.shape[:2]
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        np.array([MAGIC], np.float32).tofile(f)
        np.array([w, h], np.int32).tofile(f)
        flow.tofile(f)
    os.replace(tmp, path)


def check_flow(flow, name, expect_size=None):
    """Raise a clear error for a flow of the wrong shape or size, or holding NaN/inf."""
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise StylizeError(f"{name}: flow must have 2 channels, got shape {flow.shape}")
    if expect_size is not None and (flow.shape[1], flow.shape[0]) != tuple(expect_size):
        raise StylizeError(
            f"{name}: flow is {flow.shape[1]}x{flow.shape[0]}, frames are {expect_size[0]}x{expect_size[1]}"
        )
    if not np.isfinite(flow).all():
        raise StylizeError(f"{name}: flow holds NaN or infinite values")
