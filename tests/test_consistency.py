"""Reliability weights (disocclusion, motion boundaries, leaving the frame) and the long-term rule."""

import cv2
import numpy as np

from conftest import shared_data
from stylize_core.motion import flow
from stylize_core.motion.consistency import long_term_weights, reliability

H, W = 40, 48


def zeros():
    return np.zeros((H, W, 2), np.float32)


def test_moving_square_covers_background():
    """A 10x10 square at rows/cols 15..24 moves 6 px right from a to b over a static background."""
    ab, ba = zeros(), zeros()
    ab[15:25, 15:25] = (6, 0)
    ba[15:25, 21:31] = (-6, 0)
    r = reliability(ab, ba)
    assert r.dtype == np.float32 and set(np.unique(r)) <= {0.0, 1.0}
    covered = np.zeros((H, W), bool)
    covered[15:25, 25:31] = True  # background of a hidden by the square in b
    assert (r[covered] == 0).all()
    assert (r[16:24, 16:24] == 1).all()  # square interior
    ring = np.zeros((H, W), bool)
    ring[15:25, 15:25] = True
    ring[16:24, 16:24] = False
    assert (r[ring] == 0).all()  # motion boundary on the square's edge
    far = np.ones((H, W), bool)
    far[13:27, 13:33] = False
    assert (r[far] == 1).all()


def test_sliding_motion_boundary_without_occlusion():
    """Left half moves down, right half up: consistent flows, zeros only along the shear line."""
    ab = zeros()
    ab[:, :24, 1], ab[:, 24:, 1] = 2, -2
    r = reliability(ab, -ab)
    inner = r[3:-3]  # rows whose samples stay inside the frame
    assert (inner[:, 23:25] == 0).all()
    assert (np.delete(inner, [23, 24], axis=1) == 1).all()


def test_smooth_zoom_is_reliable():
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    p = np.stack((xs - W / 2, ys - H / 2), axis=-1)
    r = reliability(-0.02 * p, 0.02 / 0.98 * p)  # 2 % zoom out and its exact inverse
    assert r.all()


def test_flow_leaving_the_frame():
    ab, ba = zeros(), zeros()
    ab[...] = (5, 0)
    ba[...] = (-5, 0)
    r = reliability(ab, ba)
    assert (r[:, : W - 5] == 1).all() and (r[:, W - 5 :] == 0).all()


def test_long_term_weights_example():
    c = [np.float32([1, 0, 0, 1]), np.float32([1, 1, 0, 0]), np.float32([1, 1, 1, 0])]
    out = long_term_weights(c)
    np.testing.assert_array_equal(out, [[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0]])


def test_long_term_weights_never_exceed_one():
    rng = np.random.default_rng(0)
    for trial in range(50):
        n = rng.integers(1, 6)
        c = [rng.random((8, 9), dtype=np.float32) for _ in range(n)]
        if trial % 2:
            c = [(x > 0.5).astype(np.float32) for x in c]
        out = long_term_weights(c)
        total = np.sum(out, axis=0)
        assert total.max() <= 1 + 1e-6
        np.testing.assert_array_equal(out[0], c[0])
        for o, x in zip(out, c):
            assert (o >= 0).all() and (o <= x).all()
        if trial % 2:  # binary: each pixel goes to the closest reliable frame
            np.testing.assert_array_equal(total, np.max(c, axis=0))


def test_sintel_occlusions_are_found():
    d = shared_data("sintel_pairs", "alley_1_clean_0002")
    a, b = (
        cv2.cvtColor(cv2.imread(str(d / n)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
        for n in ("frame_t.png", "frame_t1.png")
    )
    occluded = cv2.imread(str(d / "occlusion.png"), cv2.IMREAD_GRAYSCALE) > 127
    r = reliability(flow.estimate(a, b), flow.estimate(b, a))
    zeroed_occ, zeroed_rest = (r[occluded] == 0).mean(), (r[~occluded] == 0).mean()
    assert zeroed_rest < 0.1 and zeroed_occ > 4 * zeroed_rest, (zeroed_occ, zeroed_rest)  # 0.26, 0.04


def test_widening_grows_the_excluded_region_with_a_ramp():
    """One excluded pixel widened by r = 3 px: a disc of radius 3 is 0, the weight ramps linearly
    to 1 at 6 px (4.5 px: 0.5), everything stays in [0, 1]; r = 0 keeps the hard mask."""
    from stylize_core.motion.consistency import widen_mask

    c = np.ones((41, 41), np.float32)
    c[20, 20] = 0
    out = widen_mask(c, 3.0)
    ys, xs = np.mgrid[0:41, 0:41]
    d = np.hypot(ys - 20, xs - 20)
    assert out.dtype == np.float32 and out.min() == 0 and out.max() == 1
    assert (out[d <= 3] == 0).all() and (out[d >= 6] == 1).all()
    np.testing.assert_allclose(out, np.clip((d - 3) / 3, 0, 1), atol=0.02)
    assert int((out == 0).sum()) == int((d <= 3).sum()) == 29
    np.testing.assert_array_equal(widen_mask(c, 0), c)
    np.testing.assert_array_equal(widen_mask(np.ones((5, 5), np.float32), 3), np.ones((5, 5)))


def test_widened_reliability_of_the_moving_square():
    """The covered background strip and the square's edge ring: every pixel within 2 px of them is
    excluded, pixels 4 px or further keep weight 1, the ramp lies between, all within [0, 1]."""
    ab, ba = zeros(), zeros()
    ab[15:25, 15:25] = (6, 0)
    ba[15:25, 21:31] = (-6, 0)
    hard, wide = reliability(ab, ba), reliability(ab, ba, widen=2.0)
    ys, xs = np.mgrid[0:H, 0:W]
    d = np.min([np.hypot(ys - y, xs - x) for y, x in np.argwhere(hard == 0)], axis=0)
    assert ((wide >= 0) & (wide <= 1)).all() and (wide <= hard).all()
    assert (wide[d <= 2] == 0).all() and (wide[d >= 4] == 1).all()
    ramp = (d > 2) & (d < 4)
    np.testing.assert_allclose(wide[ramp], (d[ramp] - 2) / 2, atol=0.02)
    assert (hard == 0).sum() == 126 and (wide == 0).sum() == 286  # 2.3x the excluded area
