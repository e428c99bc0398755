"""Reliability weights for the temporal loss (Ruder et al. 2016, Sec. 3.2 and 3.3).

For frame a, a pixel is unreliable (weight 0) where
- the forward-backward check fails (disocclusion):
  ``|w~ + w|^2 > 0.01 (|w~|^2 + |w|^2) + 0.5`` with ``w = flow_ab(p)`` and
  ``w~ = flow_ba(p + w(p))`` (bilinear);
- it lies on a motion boundary of ``flow_ab``:
  ``|grad u|^2 + |grad v|^2 > 0.01 |w|^2 + 0.002``, gradients by central
  differences (``np.gradient``; one-sided at the image border);
- ``p + w(p)`` leaves frame b.
"""
import numpy as np

from .warp import warp_numpy


def reliability(flow_ab, flow_ba):
    """``(H, W)`` float32 weights in {0, 1} for frame a, from the flows a->b and b->a."""
    w = np.asarray(flow_ab, np.float32)
    w_back, inside = warp_numpy(flow_ba, w)
    sq = lambda x: (x ** 2).sum(axis=-1)  # noqa: E731
    disoccluded = sq(w_back + w) > 0.01 * (sq(w_back) + sq(w)) + 0.5
    grads = np.gradient(w, axis=(0, 1))  # d/dy, d/dx of (u, v)
    boundary = sq(grads[0]) + sq(grads[1]) > 0.01 * sq(w) + 0.002
    return (~disoccluded & ~boundary & (inside > 0)).astype(np.float32)


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
