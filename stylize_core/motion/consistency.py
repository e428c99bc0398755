"""Reliability weights for the temporal loss (Ruder et al. 2016, Sec. 3.2 and 3.3).

For frame a, a pixel is unreliable (weight 0) where
- the forward-backward check fails (disocclusion):
  ``|w~ + w|^2 > 0.01 (|w~|^2 + |w|^2) + 0.5`` with ``w = flow_ab(p)`` and
  ``w~ = flow_ba(p + w(p))`` (bilinear);
- it lies on a motion boundary of ``flow_ab``:
  ``|grad u|^2 + |grad v|^2 > 0.01 |w|^2 + 0.002``, gradients by central
  differences (``np.gradient``; one-sided at the image border);
- ``p + w(p)`` leaves frame b.

Widening (``reliability_widen`` = r pixels, Sec. 3.2's checker as the authors ran it widens
and smooths the excluded regions; the amount and the ramp below are ours): with d(p) the
Euclidean distance from p to the nearest excluded pixel,
``c_r(p) = min(c(p), clip((d(p) - r) / r, 0, 1))``: 0 within r px of an excluded region
(which so grows by r px), then a linear ramp to 1 at 2r px. r = 0 is the hard mask.
"""

import cv2
import numpy as np

from .warp import warp_numpy


def reliability(flow_ab, flow_ba, widen=0.0):
    """``(H, W)`` float32 weights for frame a, from the flows a->b and b->a: in {0, 1}, or with
    ``widen`` > 0 px in [0, 1] with the excluded regions grown and smoothed (:func:`widen_mask`)."""
    w = np.asarray(flow_ab, np.float32)
    w_back, inside = warp_numpy(flow_ba, w)
    sq = lambda x: (x**2).sum(axis=-1)  # noqa: E731
    disoccluded = sq(w_back + w) > 0.01 * (sq(w_back) + sq(w)) + 0.5
    grads = np.gradient(w, axis=(0, 1))  # d/dy, d/dx of (u, v)
    boundary = sq(grads[0]) + sq(grads[1]) > 0.01 * sq(w) + 0.002
    return widen_mask((~disoccluded & ~boundary & (inside > 0)).astype(np.float32), widen)


def widen_mask(weights, pixels):
    """``weights`` (H, W) in [0, 1] with the regions of weight 0 grown by ``pixels`` and a linear
    ramp over the next ``pixels``: ``min(c, clip((d - r) / r, 0, 1))``, d the Euclidean distance
    (px) to the nearest pixel of weight 0. ``pixels`` <= 0 or nothing excluded: unchanged."""
    weights = np.asarray(weights, np.float32)
    if pixels <= 0 or (weights > 0).all():
        return weights
    d = cv2.distanceTransform((weights > 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.minimum(weights, np.clip((d - pixels) / pixels, 0, 1)).astype(np.float32)


def long_term_weights(weights_closest_first):
    """Long-term rule: the j-th closest earlier frame keeps ``max(c_j - sum of closer c, 0)``.

    So each pixel is constrained by the closest frame where it is reliable;
    with weights in [0, 1] the result sums to at most 1 per pixel.
    """
    out, closer = [], 0.0
    for c in weights_closest_first:
        out.append(np.maximum(c - closer, 0.0).astype(np.float32))
        closer = closer + c
    return out
