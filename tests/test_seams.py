"""Between two keyframes each pixel takes one synthesis (``seams.py``): the choice, the seam-hiding composite,
and fast mode's frames between two keyframes that never layer two looks."""

import numpy as np

from conftest import generated_clip
from stylize_core.io.frames import read_image
from stylize_core.modes.fast import seams
from stylize_core.modes.fast import synthesis as fast


def texture(h, w, seed):
    rng = np.random.default_rng(seed)
    return np.clip(0.5 + 0.25 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32)


def test_a_seam_between_two_offsets_leaves_no_step_and_the_rest_untouched():
    h, w = 40, 256
    a = np.tile(np.linspace(0.2, 0.4, w, dtype=np.float32)[None, :, None], (h, 1, 3))
    b = a + 0.2
    take_b = np.zeros((h, w), bool)
    take_b[:, w // 2 :] = True
    out = seams.composite(a, b, take_b)
    hard = np.where(take_b[..., None], b, a)
    step = np.abs(np.diff(out, axis=1)).max()
    assert np.abs(np.diff(hard, axis=1)).max() > 0.19 and step < 0.01  # the 0.2 step is gone
    far = 5 * int(seams.FALLOFF)
    assert np.abs(out[:, : w // 2 - far] - hard[:, : w // 2 - far]).max() < 0.01  # decays away from the seam
    assert np.abs(out[:, w // 2 + far :] - hard[:, w // 2 + far :]).max() < 0.01
    assert np.array_equal(seams.composite(a, b, np.zeros_like(take_b)), a)
    assert np.array_equal(seams.composite(a, b, np.ones_like(take_b)), b)


def test_the_composite_keeps_each_texture_and_averaging_does_not():
    """Two unrelated textures: away from the seam the composite is each one as it is (detail energy kept),
    where the plain average halves the variance (std x 0.71)."""
    h, w = 64, 97  # odd width: the solver's even-size padding
    a, b = texture(h, w, 1), texture(h, w, 2)
    take_b = np.zeros((h, w), bool)
    take_b[:, 60:] = True
    out = seams.composite(a, b, take_b)
    assert np.abs(out[:, :40] - a[:, :40]).mean() < 0.01 and np.abs(out[:, 80:] - b[:, 80:]).mean() < 0.01
    assert 0.9 < out.std() / np.concatenate([a[:, :60], b[:, 60:]], 1).std() < 1.1
    assert (0.5 * (a + b)).std() / a.std() < 0.75


def test_the_choice_follows_the_costs_the_distance_and_never_goes_back():
    h, w = 32, 32
    flat = np.full((h, w), 0.01, np.float32)
    assert not seams.choose(flat, flat, 0.9).any()  # near A, equal costs: A
    assert seams.choose(flat, flat, 0.1).all()  # near B: B
    worse_a = flat.copy()
    worse_a[:, :16] = 0.2  # A matches badly on the left half
    chosen = seams.choose(worse_a, flat, 0.7)
    assert chosen[:, :12].all() and not chosen[:, 26:].any()
    earlier = np.zeros((h, w), bool)
    earlier[:4] = True
    assert seams.choose(flat, flat, 0.9, previous=earlier)[:4].all()  # a pixel that took B keeps it
    moved = seams.carry(earlier, np.dstack([np.zeros((h, w)), np.full((h, w), -2.0)]).astype(np.float32))
    assert moved[:6].all() and not moved[7:].any()  # carried 2 px down by the flow to the previous frame


def test_frames_between_two_keyframes_take_one_look_a_pixel(tmp_path):
    """Keyframes 1 and 7 given two unrelated textures: in the frames between, the detail of every 8x8 block is
    the forward synthesis' or the backward one's (local correlation of the high-passed images above 0.9), not
    both layered, as the former blend gave (except while a pixel crosses over: ``switch_frames``)."""
    import cv2

    clip = generated_clip(tmp_path, 7, (64, 48))
    frames = [read_image(p) for p in sorted((clip / "in").iterdir())]
    ka, kb = texture(48, 64, 1), texture(48, 64, 2)

    class Flows:
        def flow(self, a, b):
            from stylize_core.motion.flow import estimate

            return estimate(frames[a], frames[b], "dis")

    def synth(keys, combine="select", switch=1):
        out = fast.propagate(
            lambda i: frames[i],
            7,
            keys,
            Flows(),
            fast.FastSettings(combine=combine, switch_frames=switch),
            backend="torch",
        )
        return {i: img for i, img, _ in out}

    def detail(x):
        return x - cv2.GaussianBlur(x, (0, 0), 1.5)

    forward, backward = synth({0: ka}), synth({6: kb})
    layered = {}
    for combine, switch in (("select", 1), ("select", 3), ("blend", 1)):
        both = synth({0: ka, 6: kb}, combine, switch)
        bad = total = 0
        for i in range(2, 5):  # the middle frames: both syntheses weigh there
            o, a, b = detail(both[i]), detail(forward[i]), detail(backward[i])
            for y in range(0, 48, 8):
                for x in range(0, 64, 8):
                    blk = [v[y : y + 8, x : x + 8].ravel() for v in (o, a, b)]
                    corr = max(np.corrcoef(blk[0], blk[1])[0, 1], np.corrcoef(blk[0], blk[2])[0, 1])
                    bad, total = bad + (corr < 0.9), total + 1
        layered[combine, switch] = bad / total
    # measured: select 0.125 (the blocks a seam crosses hold both), blend 0.62; crossing over in 3 frames (the
    # default) layers a pixel for 2 frames of its switch, here in a segment of 5: 0.35
    assert layered["select", 1] < 0.2 and layered["blend", 1] > 0.5, layered
    assert layered["select", 3] < layered["blend", 1] - 0.15, layered


def test_the_solve_is_exact_on_odd_sizes():
    """``(lam - Laplacian) D = rhs`` with Neumann boundaries against a dense solve, on even and odd sizes (odd
    ones were padded with a zero row, which made the last row/column wrong by up to 0.03)."""
    lam = 1 / seams.FALLOFF**2
    rng = np.random.default_rng(3)
    for h, w in ((32, 40), (31, 40), (31, 41)):
        rhs = rng.standard_normal((h, w, 1)).astype(np.float32) * 0.01
        n = h * w
        a = np.zeros((n, n))
        for y in range(h):
            for x in range(w):
                p = y * w + x
                a[p, p] = lam
                for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    if 0 <= y + dy < h and 0 <= x + dx < w:
                        a[p, p] += 1
                        a[p, (y + dy) * w + x + dx] -= 1
        exact = np.linalg.solve(a, rhs.reshape(-1).astype(np.float64)).reshape(h, w)
        got = seams._screened_solve(rhs, lam)[..., 0]
        assert np.abs(got - exact).max() < 1e-4 * max(np.abs(exact).max(), 1e-6) + 1e-6, (h, w)
