"""Fast mode's keyframe plan: which frames need a keyframe of their own, decided once per job on thumbnails
before any full-size synthesis (``mode.FastMode._planned`` adds them to the given keyframes).

A keyframe's look is carried (``synthesis.py``, after Jamriska et al. 2019) only as far as its patches explain
the frames; three signs, each against the last keyframe, say where that ends: a cut (colour histograms and
flow reliability), a change of view (the keyframe's coordinates carried by the flow stretch beyond
``zoom``) and synthesis drift (a quick synthesis of the thumbnails no longer explains the frame). The thresholds and
what they were measured on are stated with :func:`plan_keyframes`. Images are ``(H, W, 3)`` float32 RGB
in [0, 1]; flows follow ``motion/warp.py``.
"""

import cv2
import numpy as np

from ...motion.flow import estimate
from ..shots import colour_histogram, is_cut
from .synthesis import Propagator

PLAN_WIDTH = 192  # thumbnails of this width track the keyframe's texture (plan_keyframes)


def _change(keep, fb, zoom):
    """Carry ``keep`` (per thumbnail pixel: keyframe x, y and 1 where still tracked, (h, w, 3))
    one frame on with the flow ``fb`` (new -> previous frame); return it and whether the
    texture drifted too far: its median area scale ``det(d(x, y) / dp)`` outside
    ``[1/zoom, zoom]``, or less than half of the frame still tracked."""
    h, w = keep.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    keep = cv2.remap(
        keep, xs + fb[..., 0], ys + fb[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    tracked = keep[..., 2] > 0.5
    if tracked.mean() < 0.5:
        return keep, True
    gx, gy = np.gradient(keep[..., :2], axis=1), np.gradient(keep[..., :2], axis=0)
    det = gx[..., 0] * gy[..., 1] - gx[..., 1] * gy[..., 0]
    area = float(np.median(det[cv2.erode(tracked.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0]))
    return keep, not 1 / zoom <= area <= zoom


DRIFT = 0.03  # mean |synthesis - frame| of the planning pass (RGB in [0, 1]) above which a keyframe is added
DRIFT_GAP = 12  # frames: a drift keyframe comes at least this far after the last keyframe


def plan_keyframes(read, n, flows, zoom=2.0, drift=DRIFT, keys=()):
    """Frames (0-based) that need a keyframe of their own: ``(cuts, changes, drifts)``.

    - ``cuts``: the first frame of a new shot, where nothing before shows its content (``shots.is_cut``: the
      colour histograms differ and the job's ``flows`` are unreliable). Only candidates cost a flow.
    - ``changes`` (``zoom`` > 0): where the look carried from the last keyframe has stretched
      too far: the keyframe's coordinates, carried frame by frame on ``PLAN_WIDTH``-wide
      thumbnails (DIS flow), cover an area scale outside ``[1/zoom, zoom]`` (the camera
      moved in or out by more than sqrt(zoom): the copied strokes would be magnified or
      shrunk), or less than half of the frame is still tracked. Measured (median area scale
      after 60 frames): 0.08 on the cockatoo clip (a push-in), 1.00 on tree.avi, 0.96 over
      the 10 Sintel frames.
    - ``drifts`` (``drift`` > 0): where the synthesis itself fails. A planning pass runs the synthesis
      (:class:`Propagator`) on the thumbnails from the last keyframe (``keys``, the keyframes already
      given, or an added one), the keyframe's own thumbnail standing for its stylisation (the matches do
      not depend on the look); its output is then the keyframe's texture re-arranged to explain the frame,
      and its mean absolute difference from the frame thumbnail (RGB in [0, 1]) is the evidence: small
      where the keyframe's patches still explain the frame, large where the frame shows what the keyframe
      never did or the matches broke down. A keyframe is added where it exceeds ``drift``, at least
      ``DRIFT_GAP`` frames after the last (in fast motion the error rises again within 3 frames of a new
      keyframe: a keyframe that often would flicker like a per-frame stylisation). Measured (this
      error from frame 0): 0.007-0.016 at the first frame after the keyframe; cockatoo (push-in) 0.022 at
      10 frames, 0.033 at 30; cockatoo frames 121-240 0.021 at 10, 0.032 at 30, 0.048 at 60; tree.avi's
      distinct images (it holds each for about 6 of its 15 fps frames) 0.023 at 10-20, 0.031 at 40;
      Sintel's fast motion 0.031 after 5 frames.
    The plan is decided here, on thumbnails, before any full-size synthesis: a fixed list of keyframes.
    """
    cuts, changes, drifts = [], [], []
    if n < 2:
        return cuts, changes, drifts
    first = read(0)
    size = (PLAN_WIDTH, max(8, round(PLAN_WIDTH * first.shape[0] / first.shape[1])))

    def thumb(img):
        return cv2.resize(np.asarray(img, np.float32), size, interpolation=cv2.INTER_AREA)

    def reset():
        ys, xs = np.mgrid[0 : size[1], 0 : size[0]].astype(np.float32)
        return np.stack([xs, ys, np.ones_like(xs)], -1)

    prev, prev_hist, keep = thumb(first), colour_histogram(first), reset()
    given = set(keys)

    def synthesis(key_thumb):
        return Propagator(key_thumb, key_thumb.copy(), backend="auto") if drift > 0 else None

    prop, last = synthesis(prev), 0
    for t in range(1, n):
        img = read(t)
        cur, hist = thumb(img), colour_histogram(img)
        added = None
        fb = estimate(cur, prev, "dis", "medium") if zoom > 0 or drift > 0 else None
        if is_cut(prev_hist, hist, flows, t):
            added = cuts
        else:
            if zoom > 0:
                keep, changed = _change(keep, fb, zoom)
                if changed:
                    added = changes
            if prop is not None and added is None and t not in given:
                out = prop.step(cur, fb, estimate(prev, cur, "dis", "medium"))
                if float(np.abs(out - cur).mean()) > drift and t - last >= DRIFT_GAP:
                    added = drifts
        if added is not None or t in given:
            if added is not None and t not in given:
                added.append(t)
            keep, prop, last = reset(), synthesis(cur), t
        prev, prev_hist = cur, hist
    return cuts, changes, drifts
