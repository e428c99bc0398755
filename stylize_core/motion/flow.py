"""Optical flow: estimation (DIS, DeepFlow, RAFT) and flow sources for the scheduler.

Every flow follows ``warp.py``: the flow a->b maps pixel ``p`` of a to
``p + flow(p)`` in b; OpenCV and torchvision return flows in that convention.
A flow source answers ``.flow(a, b)`` for 0-based frame indices, consecutive or
not (long-term consistency asks for offsets like 10, 20, 40).
"""

import functools
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import StylizeError
from ..io import flowio
from ..io.jobdir import cache_key, flow_filename
from ..settings import FLOW_CHOICES
from ..sizes import scaled
from . import vector_check, vector_pass
from .warp import compose

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
# The smallest image side DIS takes, per preset (measured with OpenCV 4.11 over 4..40 x 4..1920 px:
# below it, it fails an assertion, or for long thin images (e.g. 200x10, 48x8) crashes the process).
DIS_MIN_SIDE = {"ultrafast": 32, "fast": 32, "medium": 16}
_MISSING = {
    "deepflow": "DeepFlow needs opencv-contrib-python(-headless): cv2.optflow is missing",
    "raft": "RAFT flow needs torchvision, which is not installed (pip install torchvision)",
}


def _gray(img):
    return cv2.cvtColor(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)


def _dis(a, b, preset):
    if preset not in DIS_PRESETS:
        raise StylizeError(f"unknown DIS preset {preset!r} (choose from {', '.join(DIS_PRESETS)})")
    return cv2.DISOpticalFlow_create(DIS_PRESETS[preset]).calc(_gray(a), _gray(b), None)


def _deepflow(a, b, preset):
    return cv2.optflow.createOptFlow_DeepFlow().calc(_gray(a), _gray(b), None)


@functools.lru_cache(maxsize=2)
def _raft_model(small):
    from torchvision.models import optical_flow as of

    if small:
        return of.raft_small(weights=of.Raft_Small_Weights.DEFAULT).eval()
    return of.raft_large(weights=of.Raft_Large_Weights.DEFAULT).eval()


def _raft(a, b, preset):
    """RAFT-small for the "ultrafast"/"fast" presets, RAFT-large otherwise."""
    h, w = a.shape[:2]

    def prep(img):  # [-1, 1] as the torchvision weights expect; pad to a multiple of 8
        t = torch.from_numpy(np.ascontiguousarray(img, np.float32)).permute(2, 0, 1)[None] * 2 - 1
        return F.pad(t, (0, -w % 8, 0, -h % 8), mode="replicate")

    with torch.no_grad():
        flow = _raft_model(preset in ("ultrafast", "fast"))(prep(a), prep(b))[-1]
    return flow[0, :, :h, :w].permute(1, 2, 0).numpy()


METHODS = {"dis": _dis, "deepflow": _deepflow, "raft": _raft}


@functools.lru_cache(maxsize=1)
def _available():
    methods = ["dis"] + (["deepflow"] if hasattr(cv2, "optflow") else [])
    try:
        import torchvision.models.optical_flow  # noqa: F401

        methods.append("raft")
    except Exception:  # absent or broken install
        pass
    return tuple(methods)


def available_methods():
    """Estimation methods that work in this environment."""
    return list(_available())


def _check_method(method):
    if method not in METHODS:
        raise StylizeError(f"unknown flow method {method!r} (choose from {', '.join(v for v, _, _ in FLOW_CHOICES)})")
    if method not in _available():
        raise StylizeError(_MISSING[method])


def resize_flow(flow, size):
    """Resize a flow field to ``size = (W, H)``, scaling the vectors with it."""
    h, w = flow.shape[:2]
    if (w, h) == tuple(size):
        return flow
    out = cv2.resize(flow, tuple(size), interpolation=cv2.INTER_LINEAR)
    out[..., 0] *= size[0] / w
    out[..., 1] *= size[1] / h
    return out


def estimate(img_a, img_b, method="dis", preset="medium", scale=1.0, size=None):
    """Flow a->b ``(H, W, 2)`` float32 from two ``(H, W, 3)`` float32 RGB images in [0, 1].

    ``scale < 1`` estimates on images resized by ``scale``. The flow is returned at ``size``
    (W, H; default the images' size), its vectors in pixels of that size. DIS estimates on images
    of at least ``DIS_MIN_SIDE`` px a side (smaller ones are enlarged for it: never a crash).
    """
    _check_method(method)
    if not 0 < scale <= 1:
        raise StylizeError(f"flow scale must be in (0, 1], got {scale}")
    h, w = img_a.shape[:2]
    least = DIS_MIN_SIDE.get(preset, max(DIS_MIN_SIDE.values())) if method == "dis" else 8
    scale = max(scale, least / min(w, h))
    if scale != 1:
        small = scaled((w, h), scale, least)
        grow = small[0] * small[1] > w * h
        img_a, img_b = (
            cv2.resize(x, small, interpolation=cv2.INTER_LINEAR if grow else cv2.INTER_AREA) for x in (img_a, img_b)
        )
    flow = np.asarray(METHODS[method](img_a, img_b, preset), np.float32)
    return resize_flow(flow, tuple(size) if size else (w, h))


class EstimatedFlows:
    """Flows estimated from ``get_frame(i)``, returned and cached (``.flo`` in
    ``cache_dir/<cache_key>/``) at ``size`` (W, H: the size they are used at, e.g. the
    processing size; default the frames' size), never at a larger one."""

    def __init__(self, get_frame, method="dis", preset="medium", scale=1.0, cache_dir=None, size=None):
        _check_method(method)
        self.get_frame, self.method, self.preset, self.scale, self.size = get_frame, method, preset, scale, size
        self.folder = Path(cache_dir) / cache_key(method, preset, scale) if cache_dir else None

    def flow(self, a, b):
        path = self.folder / flow_filename(a, b) if self.folder else None
        if path is not None and path.exists():
            try:
                return flowio.read_flo(path, self.size)
            except StylizeError:  # stale (other frame size) or damaged entry: recompute
                pass
        flow = estimate(self.get_frame(a), self.get_frame(b), self.method, self.preset, self.scale, self.size)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            flowio.write_flo(path, flow)
        return flow


class FloFolder:
    """Precomputed ``flow_AAAAA_BBBBB.flo`` files (1-based frame numbers) of ``frame_size``
    (checked), returned at ``size``."""

    def __init__(self, folder, size=None, frame_size=None):
        self.folder, self.size, self.frame_size = Path(folder), size, frame_size or size
        if not self.folder.is_dir():
            raise StylizeError(f"flow folder not found: {self.folder}")

    def flow(self, a, b):
        path = self.folder / flow_filename(a, b)
        if not path.is_file():
            raise StylizeError(f"missing flow file {path} (flow from frame {a + 1} to frame {b + 1})")
        flow = flowio.read_flo(path, self.frame_size)
        return resize_flow(flow, self.size) if self.size else flow


class VectorPassFlows:
    """Flows from Blender Vector passes, one multilayer EXR per frame.

    Consecutive flows come straight from the passes (resized to ``size`` if
    given), except for the pairs that failed :meth:`check`, which take both their
    flows from ``fallback`` (an :class:`EstimatedFlows`); longer flows compose the
    consecutive ones along the way, so the fallback applies to them too.
    """

    def __init__(self, exr_paths, size=None, fallback=None):
        self.paths, self.size, self.fallback = list(exr_paths), size, fallback
        self.rejected = set()  # i: the pair (i, i + 1) uses the fallback
        self._flows = functools.lru_cache(maxsize=8)(self._read)

    def _read(self, i):
        flows = vector_pass.read_flows(self.paths[i])
        for f in flows:
            flowio.check_flow(f, self.paths[i])
        return tuple(resize_flow(f, self.size) for f in flows) if self.size else flows

    def check(self):
        """Check every consecutive pair against the frames (``vector_check.check_pair``) at the
        fallback's estimation size, at most ``MAX_SIDE`` px; failing pairs use the fallback from now on.

        Returns one record per pair: ``frames`` (1-based), ``source`` ("vector" or "dis")
        and the check's scores.
        """
        fb = self.fallback
        records, frame_b = [], None
        for i in range(len(self.paths) - 1):
            frame_a, frame_b = frame_b if frame_b is not None else fb.get_frame(i), fb.get_frame(i + 1)
            h, w = frame_a.shape[:2]
            f = min(fb.scale, vector_check.MAX_SIDE / max(w, h))
            small = scaled((w, h), f, least=8)
            a, b = (
                cv2.resize(x, small, interpolation=cv2.INTER_AREA) if small != (w, h) else x for x in (frame_a, frame_b)
            )
            vec = (resize_flow(self._flows(i)[1], small), resize_flow(self._flows(i + 1)[0], small))
            dis = (estimate(a, b, "dis", fb.preset), estimate(b, a, "dis", fb.preset))
            result = vector_check.check_pair(a, b, *vec, *dis)
            records.append({"frames": [i + 1, i + 2], "source": "vector" if result.pop("ok") else "dis", **result})
        self.use(records)
        return records

    def use(self, records):
        """Take the flow sources of the pairs from ``check``'s records (a resumed job)."""
        self.rejected = {r["frames"][0] - 1 for r in records if r["source"] != "vector"}

    def _step(self, i, step):
        if min(i, i + step) in self.rejected:
            return self.fallback.flow(i, i + step)
        return self._flows(i)[1 if step > 0 else 0]

    def flow(self, a, b):
        if a == b:
            raise ValueError("flow from a frame to itself")
        step = 1 if b > a else -1
        flow = self._step(a, step).copy()  # callers may modify it; the cache must not change
        for i in range(a + step, b, step):
            flow = compose(flow, self._step(i, step))
        return flow


def make_flow_source(
    method, get_frame, size, cache_dir=None, preset="medium", scale=1.0, flow_dir=None, exr_paths=None, frame_size=None
):
    """A flow source for ``method`` in {"dis", "deepflow", "raft", "flo", "vector"} whose flows
    are ``size = (W, H)`` (the size they are used at); ``frame_size``: the frames' (default ``size``),
    which precomputed ``.flo`` files must have; ``scale``: estimation size relative to the frames."""
    if method == "flo":
        if flow_dir is None:
            raise StylizeError("flow method 'flo' needs a folder of .flo files (--flow-dir)")
        return FloFolder(flow_dir, size, frame_size)
    if method == "vector":
        if not exr_paths:
            raise StylizeError("flow method 'vector' needs multilayer EXR frames with a Vector pass")
        return VectorPassFlows(exr_paths, size, EstimatedFlows(get_frame, "dis", preset, scale, cache_dir, size))
    return EstimatedFlows(get_frame, method, preset, scale, cache_dir, size)
