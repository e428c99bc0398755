"""Backward warping with ``grid_sample``: the one flow convention used everywhere.

A flow is a float32 array ``(H, W, 2)`` (or tensor ``(N, 2, H, W)``) of pixel
offsets ``(u, v)``: ``u`` along x (right), ``v`` along y (down). The flow *from
frame a to frame b* maps pixel ``p`` of a to its position ``p + flow(p)`` in b.

``warp(img_b, flow_ab)`` therefore returns an image aligned with frame a:
``out(p) = img_b(p + flow_ab(p))``, sampled bilinearly. Pixel centres are the
integer coordinates 0..W-1 / 0..H-1 (``align_corners=True``). Samples whose
position falls outside the frame read zeros and are reported invalid.
"""

import numpy as np
import torch
import torch.nn.functional as F


def flow_to_tensor(flow, device=None):
    """``(H, W, 2)`` numpy flow -> ``(1, 2, H, W)`` float32 tensor."""
    if isinstance(flow, torch.Tensor):
        return flow.to(device) if device is not None else flow
    flow = np.ascontiguousarray(flow, dtype=np.float32)
    return torch.from_numpy(flow if flow.flags.writeable else flow.copy()).permute(2, 0, 1)[None].to(device)


def sample_positions(flow):
    """Absolute sample positions ``p + flow(p)`` as ``(N, 2, H, W)``."""
    n, _, h, w = flow.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=flow.dtype, device=flow.device),
        torch.arange(w, dtype=flow.dtype, device=flow.device),
        indexing="ij",
    )
    return flow + torch.stack((xs, ys))[None]


def inside_mask(flow):
    """``(N, 1, H, W)`` float mask: 1 where ``p + flow(p)`` lies inside the frame."""
    _, _, h, w = flow.shape
    pos = sample_positions(flow)
    x, y = pos[:, 0:1], pos[:, 1:2]
    return ((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)).to(flow.dtype)


def warp(image, flow):
    """Sample ``image`` (N, C, H, W) at ``p + flow(p)``; returns ``(warped, valid)``.

    ``valid`` is ``(N, 1, H, W)``: 0 where the sample came from outside the frame.
    """
    flow = flow_to_tensor(flow, image.device).to(image.dtype)
    if flow.shape[0] != image.shape[0]:
        flow = flow.expand(image.shape[0], -1, -1, -1)
    _, _, h, w = image.shape
    pos = sample_positions(flow)
    grid = torch.stack((2.0 * pos[:, 0] / max(w - 1, 1) - 1.0, 2.0 * pos[:, 1] / max(h - 1, 1) - 1.0), dim=-1)
    warped = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return warped, inside_mask(flow)


def warp_numpy(image, flow):
    """numpy convenience: ``image`` (H, W, C) float, ``flow`` (H, W, 2) -> (warped, valid (H, W))."""
    img = np.ascontiguousarray(image, dtype=np.float32)
    if not img.flags.writeable:  # a cached, read-only frame: torch warns on read-only memory
        img = img.copy()
    img = torch.from_numpy(img).permute(2, 0, 1)[None]
    out, valid = warp(img, flow)
    return out[0].permute(1, 2, 0).numpy(), valid[0, 0].numpy()


def compose(flow_ab, flow_bc):
    """Flow a->c from a->b and b->c: ``w_ac(p) = w_ab(p) + w_bc(p + w_ab(p))`` (numpy)."""
    wbc, _ = warp_numpy(flow_bc, flow_ab)
    return (flow_ab + wbc).astype(np.float32)
