"""Shot cuts: where a clip changes to another shot, so that nothing before shows what the frame shows.

Both modes start again there: fast mode with a keyframe (``fast/plan.py``), quality mode with a first frame (no
temporal term across the cut, ``quality.py``); a farm plan gives every shot its own tasks (``farm/graph.py``).
Images are ``(H, W, 3)`` float32 RGB in [0, 1]; flows follow ``motion/warp.py``.
"""

import cv2
import numpy as np

from .fast.synthesis import reliability_weights

CUT_HISTOGRAM = 0.3  # Bhattacharyya distance of colour histograms: a cut candidate above it
CUT_RELIABLE = 0.5  # ... confirmed when less than this share of the frame has a reliable flow


def colour_histogram(img):
    """Normalised HSV histogram (12 hue x 4 saturation x 4 value bins) of an RGB [0, 1]
    image, computed on a 64-pixel-wide thumbnail."""
    img = np.asarray(img, np.float32)
    h, w = img.shape[:2]
    thumb = cv2.resize(img, (64, max(1, round(64 * h / w))), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(np.clip(thumb * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [12, 4, 4], [0, 180, 0, 256, 0, 256])
    return cv2.normalize(hist, hist, 1, 0, cv2.NORM_L1)


def is_cut(prev_hist, hist, flows, t):
    """Whether frame ``t`` starts a new shot. A cut needs both signs: the colour histograms of ``t - 1`` and
    ``t`` (``prev_hist``, ``hist``) differ (Bhattacharyya distance > ``CUT_HISTOGRAM``; measured on the shared
    clips: <= 0.17 between consecutive frames of a shot, <= 0.43 on Sintel's fastest pairs, >= 0.31 between
    different Sintel scenes) and the job's ``flows`` between them are reliable on less than ``CUT_RELIABLE`` of
    the frame. Only candidates cost a flow."""
    return (
        cv2.compareHist(prev_hist, hist, cv2.HISTCMP_BHATTACHARYYA) > CUT_HISTOGRAM
        and reliability_weights(flows.flow(t, t - 1), flows.flow(t - 1, t)).mean() < CUT_RELIABLE
    )


def shot_cuts(read, n, flows):
    """The 0-based frames of ``read`` (``n`` frames) that start a new shot (:func:`is_cut`), sorted."""
    cuts, prev = [], colour_histogram(read(0)) if n else None
    for t in range(1, n):
        hist = colour_histogram(read(t))
        if is_cut(prev, hist, flows, t):
            cuts.append(t)
        prev = hist
    return cuts


def shots(n, cuts):
    """``[(first, end), ...]``: the shots of ``n`` frames cut at ``cuts`` (``end`` exclusive)."""
    bounds = [0, *sorted(c for c in cuts if 0 < c < n), n]
    return list(zip(bounds, bounds[1:]))
