"""Never trust the Vector pass blindly: check it against the rendered frames, pair by pair.

For a consecutive frame pair (a, b = a + 1) with Vector-pass flows ``v_ab``, ``v_ba``
and estimated (DIS) flows ``d_ab``, ``d_ba``, each flow pair is scored in both
directions by

- ``reliable``: the fraction of pixels with reliability weight 1
  (``consistency.reliability``: forward-backward check, motion boundaries, leaving
  the frame), mean of the two directions;
- ``error``: the mean absolute difference, over those reliable pixels, between frame a
  and frame b warped with the flow a->b (``out(p) = b(p + w_ab(p))``), RGB values in
  [0, 1] (sRGB-encoded), mean of the two directions.

The pair **fails** (the Vector pass is not used for it) if

    reliable_vector < 0.5 * reliable_dis        (MIN_RELIABLE_RATIO)
    or error_vector > 2 * error_dis + 0.005      (ERROR_RATIO, ERROR_FLOOR = 1.3/255)

DIS is the yardstick because it sees the same render noise and the same content; the
floor keeps a near-perfect DIS (flat images, error ~0) from rejecting a good pass. The
first condition catches a pass that is wrong in a way that also makes it inconsistent
(its error over an almost empty reliable set says nothing), the second one a pass that
is consistent but wrong. Measured on 96x64 Cycles renders (8 samples, 2 px/frame pan,
``tests/test_vector_check.py``):

- perspective camera (correct pass): vector error 0.0013, reliable 0.96; DIS error
  0.0018, reliable 0.95-0.97: passes with a wide margin (threshold 0.0086);
- moving orthographic camera (Cycles 5.0's false zoom field, up to 17 px off): vector
  reliable 0.00 (the zoom field fails the motion-boundary test everywhere); DIS error
  0.0017, reliable 0.96: fails.

The check runs at the flow-estimation size (``scale`` x the input size), shrunk to at
most ``MAX_SIDE`` = 512 px on the longer side: a broken pass is off by tens of pixels,
and the cost per pair (two DIS flows, four warps and reliability maps) stays bounded:
measured on 2 busy CPU cores, 2.2 s for a 1024x436 pair at full size, 0.55 s at 512x218.
"""

import numpy as np

from .consistency import reliability
from .warp import warp_numpy

MAX_SIDE = 512
MIN_RELIABLE_RATIO = 0.5
ERROR_RATIO = 2.0
ERROR_FLOOR = 0.005


def warp_error(img_a, img_b, flow_ab, flow_ba):
    """``(error, reliable)`` of the flow pair for frame a (see the module docstring)."""
    c = reliability(flow_ab, flow_ba)
    warped, _ = warp_numpy(img_b, flow_ab)
    diff = np.abs(warped - img_a).mean(axis=-1)
    n = float(c.sum())
    return (float((diff * c).sum()) / n if n else 0.0), n / c.size


def check_pair(img_a, img_b, vec_ab, vec_ba, dis_ab, dis_ba):
    """Score the Vector-pass and DIS flows of a pair; ``ok`` False if the Vector pass fails."""
    scores = {}
    for name, fab, fba in (("vector", vec_ab, vec_ba), ("dis", dis_ab, dis_ba)):
        e1, r1 = warp_error(img_a, img_b, fab, fba)
        e2, r2 = warp_error(img_b, img_a, fba, fab)
        scores[f"{name}_error"], scores[f"{name}_reliable"] = (e1 + e2) / 2, (r1 + r2) / 2
    ok = (
        scores["vector_reliable"] >= MIN_RELIABLE_RATIO * scores["dis_reliable"]
        and scores["vector_error"] <= ERROR_RATIO * scores["dis_error"] + ERROR_FLOOR
    )
    return {"ok": bool(ok), **{k: round(v, 5) for k, v in scores.items()}}


def frame_ranges(pairs):
    """``[0, 1, 2, 5]`` (0-based pairs i = frames i+1, i+2) -> ``"1-4, 6-7"`` (1-based frames)."""
    runs = []
    for i in sorted(pairs):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(f"{a + 1}-{b + 2}" for a, b in runs)


def warning(failed, total):
    """The one aggregated warning for the ``failed`` pairs (0-based) of ``total``."""
    return (
        f"Vector pass failed the consistency check for {len(failed)} of {total} frame pairs "
        f"(frames {frame_ranges(failed)}): using estimated optical flow (DIS) there"
    )
