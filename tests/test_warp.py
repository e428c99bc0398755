"""warp.py against analytic translations."""

import numpy as np
import torch

from stylize_core.motion.warp import compose, warp, warp_numpy


def ramp(h=12, w=16):
    """A linear image: bilinear sampling reproduces it exactly, so shifts are analytic."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack((xs, ys, 2 * xs - ys), axis=-1)


def const_flow(u, v, h=12, w=16):
    return np.broadcast_to(np.float32([u, v]), (h, w, 2)).copy()


def test_integer_shift_reads_the_shifted_pixel():
    img = np.random.default_rng(0).random((12, 16, 3), dtype=np.float32)
    out, valid = warp_numpy(img, const_flow(3, -2))
    np.testing.assert_allclose(out[2:, :-3], img[:-2, 3:], atol=1e-6)  # out(x, y) = img(x+3, y-2)
    assert valid[2:, :-3].all() and not valid[:2].any() and not valid[:, -3:].any()


def test_subpixel_shift_is_bilinear():
    img = ramp()
    out, valid = warp_numpy(img, const_flow(0.25, 1.5))
    expect = ramp() + np.float32([0.25, 1.5, 2 * 0.25 - 1.5])
    ok = valid > 0
    assert ok.sum() == (16 - 1) * (12 - 2)  # x + 0.25 <= 15 and y + 1.5 <= 11
    np.testing.assert_allclose(out[ok], expect[ok], atol=1e-4)


def test_out_of_frame_samples_are_zero_and_invalid():
    img = np.ones((12, 16, 3), np.float32)
    out, valid = warp_numpy(img, const_flow(-20, 0))
    assert not valid.any() and np.abs(out).max() == 0
    flow = np.zeros((12, 16, 2), np.float32)
    flow[5, 7] = (0, 100)  # one pixel leaves through the bottom
    out, valid = warp_numpy(img, flow)
    assert valid.sum() == 12 * 16 - 1 and valid[5, 7] == 0 and out[5, 7].max() == 0


def test_tensor_batch_matches_numpy():
    img = np.random.default_rng(1).random((12, 16, 3), dtype=np.float32)
    flow = np.random.default_rng(2).normal(0, 2, (12, 16, 2)).astype(np.float32)
    t = torch.from_numpy(img).permute(2, 0, 1)[None].repeat(2, 1, 1, 1)
    out, valid = warp(t, flow)
    ref, ref_valid = warp_numpy(img, flow)
    assert out.shape == (2, 3, 12, 16) and valid.shape == (2, 1, 12, 16)
    np.testing.assert_allclose(out[1].permute(1, 2, 0).numpy(), ref, atol=1e-6)
    np.testing.assert_array_equal(valid[0, 0].numpy(), ref_valid)


def test_compose_two_shifts_adds_them():
    ab, bc = const_flow(1.5, -0.5), const_flow(-3.25, 2.0)
    ac = compose(ab, bc)
    np.testing.assert_allclose(ac[2:-3, 4:-3], np.broadcast_to([-1.75, 1.5], (7, 9, 2)), atol=1e-5)
    # composed flow warps like the two warps in sequence (for a linear image, where defined)
    img = ramp()
    once, valid = warp_numpy(img, ac)
    twice = warp_numpy(warp_numpy(img, bc)[0], ab)[0]
    np.testing.assert_allclose(once[2:-3, 4:-3], twice[2:-3, 4:-3], atol=1e-4)
    assert valid[2:-3, 4:-3].all()


def test_read_only_arrays_warp_without_a_warning():
    """The schedule's cached frames are read-only: torch used to print a UserWarning for each on stderr."""
    import warnings

    from stylize_core.motion.warp import warp_numpy

    img, flow = np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 2), np.float32)
    img.flags.writeable = flow.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, _ = warp_numpy(img, flow)
    assert np.array_equal(out, img)
