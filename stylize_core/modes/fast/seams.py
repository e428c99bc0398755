"""Between two keyframes: each pixel's strokes from one synthesis, the seams hidden in the gradient domain.

Fast mode synthesises a frame t between keyframes A < t < B twice (``fast.propagate``): forward from A (image
``a``, per-pixel match cost ``c_a``) and backward from B (``b``, ``c_b``). Averaging the two layers two stroke
patterns that do not line up into a muddle; instead every pixel takes one of them (after Jamriska et al. 2019,
Sec. 4, reimplemented from the paper):

1. **The choice** (:class:`Choice`): pixel p takes B where

       L(c_b)(p) + k (B - t) / (B - A)  <  L(c_a)(p) + k (t - A) / (B - A)

   with L a Gaussian low-pass of ``sigma`` px (so the choice follows regions, not single noisy pixels) and
   ``k`` the weight of the distance to each keyframe, in the cost's units. It is coherent in time: the
   previous frame's choice is carried by the flow into this one and a pixel that took B keeps B (the
   forward pass runs from A to B, so each pixel changes its source at most once in a segment, where B's
   match becomes the better one). A pixel crosses over in ``switch_frames`` frames (``fast.FastSettings``,
   default 3: B's share 1/3, 2/3, 1), so a switch is no single-frame jump: measured on cockatoo frames
   121-240 at 640x360 (7 keyframes, ``python -m bench fast_clips``' metrics), warping error / per-frame
   0.244 switching in one frame, 0.170 in 3, 0.164 in 6, 0.131 with the former blend; style distance to
   the nearest keyframe's stylisation max 0.0082, 0.0111, 0.0115, 0.0126 (blend).

2. **The composite** (:func:`composite`): with C the hard composite (``a`` where A is chosen, ``b`` where B),
   the output O minimises the screened Poisson energy

       sum over neighbour pairs (p, q) of |(O_q - O_p) - g_pq|^2  +  lam sum over p of |O_p - C_p|^2

   where ``g_pq`` is the chosen synthesis' own difference ``s_q - s_p`` when p and q chose the same one, and
   the mean of both syntheses' differences across a seam. Away from the seams O = C up to a smooth
   correction; at a seam the colour step between the two syntheses is spread over about ``1 / sqrt(lam)``
   px (``falloff``) instead of showing as an edge, and no texture is averaged. Solved exactly with the
   discrete cosine transform (Neumann boundaries): ``(lam - Laplacian) D = -div(g - grad C)``, O = C + D.

Images (H, W, 3) float32 RGB in [0, 1]; costs (H, W); choices (H, W) bool (True = B).
"""

import cv2
import numpy as np

SIGMA = 4.0  # px: low-pass of the costs before they are compared
DISTANCE = 0.02  # k: the cost a pixel pays per segment length of distance from its keyframe
FALLOFF = 24.0  # px: how far a seam's colour step is spread (lam = 1 / FALLOFF^2)


def choose(cost_a, cost_b, wa, previous=None, sigma=SIGMA, distance=DISTANCE):
    """The pixels that take B (module doc, step 1): ``wa`` = (B - t) / (B - A) is A's share of the segment
    left; ``previous``: the last frame's choice carried into this one (bool), or None at the segment's start."""
    low_a = cv2.GaussianBlur(np.asarray(cost_a, np.float32), (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    low_b = cv2.GaussianBlur(np.asarray(cost_b, np.float32), (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    take_b = low_b + distance * wa < low_a + distance * (1 - wa)
    return take_b if previous is None else take_b | previous


def carry(values, flow_to_prev):
    """The previous frame's per-pixel ``values`` (a choice, or the frames since a pixel took B) seen from this
    frame: sampled (nearest) at p + flow(p), ``flow_to_prev`` (H, W, 2) the flow from this frame to the
    previous one (``warp.py``'s convention); same dtype."""
    h, w = values.shape
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = xs + flow_to_prev[..., 0], ys + flow_to_prev[..., 1]
    kind = np.uint8 if values.dtype == bool else np.float32
    out = cv2.remap(values.astype(kind), mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    return out > 0 if values.dtype == bool else out.astype(values.dtype)


def composite(a, b, take_b, falloff=FALLOFF, weight=None):
    """``a`` and ``b`` composited by ``take_b`` with the seams hidden (module doc, step 2). ``weight`` (H, W) in
    [0, 1], B's share where ``take_b``: a pixel that has just switched crosses over in a few frames
    (``fast.FastSettings.switch_frames``) instead of in one."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if not take_b.any():
        return a.copy()
    if take_b.all() and (weight is None or weight.min() >= 1):
        return b.copy()
    m = take_b[..., None]
    c = np.where(m, b, a) if weight is None else a + (np.where(take_b, weight, 0.0)[..., None] * (b - a))
    rhs = np.zeros_like(c)
    for axis in (0, 1):  # vertical, then horizontal neighbour pairs (p, p + 1 along axis)
        seam = np.diff(take_b, axis=axis)[..., None]
        if not seam.any():
            continue
        guide = 0.5 * (np.diff(a, axis=axis) + np.diff(b, axis=axis))
        r = np.where(seam, guide - np.diff(c, axis=axis), 0.0).astype(np.float32)  # g - grad C, seams only
        pad = [(0, 0)] * 3
        pad[axis] = (1, 1)
        r = np.pad(r, pad)  # Neumann: no pair beyond the border
        rhs -= np.diff(r, axis=axis)  # -div(r): r_{p} - r_{p-1} per pixel, negated
    return np.clip(c + _screened_solve(rhs, 1.0 / falloff**2), 0, 1).astype(np.float32)


def _screened_solve(rhs, lam):
    """D with (lam - Laplacian) D = rhs, Neumann boundaries (the 5-point graph Laplacian), per channel."""
    h, w = rhs.shape[:2]
    # cv2.dct takes even sizes: an odd axis is extended by its mirror image (twice as long), whose Neumann
    # solution restricted to the first half is this one's (the mirror's boundary is a symmetry line)
    ph, pw = (2 * h if h % 2 else h), (2 * w if w % 2 else w)
    ky = 2 - 2 * np.cos(np.pi * np.arange(ph) / ph)
    kx = 2 - 2 * np.cos(np.pi * np.arange(pw) / pw)
    denom = (lam + ky[:, None] + kx[None, :]).astype(np.float32)
    out = np.empty_like(rhs)
    for ch in range(rhs.shape[2]):
        x = rhs[..., ch]
        if ph != h:
            x = np.concatenate([x, x[::-1]], 0)
        if pw != w:
            x = np.concatenate([x, x[:, ::-1]], 1)
        out[..., ch] = cv2.idct(cv2.dct(np.ascontiguousarray(x)) / denom)[:h, :w]
    return out
