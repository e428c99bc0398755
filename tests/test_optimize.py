"""Losses and single-frame optimisation with a random VGG-19 on tiny images."""

import numpy as np
import pytest
import torch

from conftest import texture
from stylize_core.motion.warp import warp_numpy
from stylize_core.network.losses import gram, temporal_loss
from stylize_core.network.optimize import Stylizer
from stylize_core.network.weights import load_vgg
from stylize_core.settings import Settings


@pytest.fixture(scope="module")
def vgg():
    return load_vgg("random:2")


def test_gram_and_temporal_loss_values():
    f = torch.ones(1, 2, 3, 4)
    assert torch.allclose(gram(f), torch.full((2, 2), 12 / 24))
    x, w = torch.full((1, 3, 2, 2), 0.5), torch.zeros(1, 3, 2, 2)
    c = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # one reliable pixel of four, difference 0.5 -> 127.5^2 in 0..255 units, mean over 12 values
    assert float(temporal_loss(x, w, c)) == pytest.approx(3 * 127.5**2 / 12)


def test_optimisation_lowers_the_loss(vgg):
    content, style = texture(48, 64, 1), texture(64, 64, 2)
    for optimizer in ("lbfgs", "adam"):
        s = Settings(optimizer=optimizer, tolerance=0.0)
        st = Stylizer(vgg, style, s)
        losses = []
        out = st.stylize(content, iterations=25, on_step=lambda i, n, loss: losses.append(loss))
        assert len(losses) == 25 and out.shape == content.shape
        assert losses[-1] < 0.5 * losses[0], optimizer
        assert 0.0 <= out.min() and out.max() <= 1.0


def test_early_stop_on_relative_change(vgg):
    content = texture(32, 32, 3)
    s = Settings(tolerance=0.5)  # any change below 50 % over 10 iterations stops
    losses = []
    Stylizer(vgg, content, s).stylize(content, iterations=200, on_step=lambda i, n, loss: losses.append(loss))
    assert 11 <= len(losses) < 200


def test_temporal_loss_lowers_warping_error(vgg):
    """Frame t+1 = frame t shifted by (3, 2) px: the temporal loss keeps S_t+1 consistent with S_t."""
    frame_t = texture(48, 64, 4)
    flow = np.zeros((48, 64, 2), np.float32)
    flow[..., 0], flow[..., 1] = -3, -2  # flow t+1 -> t
    frame_t1, _ = warp_numpy(frame_t, flow)
    s = Settings(init="random", tolerance=0.0)
    st = Stylizer(vgg, texture(64, 64, 5), s)
    s_t = st.stylize(frame_t, iterations=40, seed=1)
    warped, valid = warp_numpy(s_t, flow)

    def error(s_t1):
        return float((valid[..., None] * (s_t1 - warped) ** 2).sum() / (3 * valid.sum()))

    per_frame = st.stylize(frame_t1, iterations=40, seed=2)
    temporal = st.stylize(frame_t1, init=warped, temporal=[(warped, valid)], iterations=40)
    assert error(temporal) < 0.2 * error(per_frame)
    # consistency is not bought by giving up the style
    assert st.losses(temporal, frame_t1)["style"] < 2 * st.losses(per_frame, frame_t1)["style"]


def test_preserve_colors_keeps_chrominance(vgg):
    content = texture(32, 48, 6)
    out = Stylizer(vgg, texture(32, 32, 7), Settings(preserve_colors=True)).stylize(content, iterations=5)
    yiq = np.array([[0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
    inside = (out > 0.02).all(-1) & (out < 0.98).all(-1)  # unclipped pixels
    assert np.abs((out @ yiq.T) - (content @ yiq.T))[inside].max() < 1e-4
    y = np.array([0.299, 0.587, 0.114], np.float32)
    assert np.abs(out @ y - content @ y).mean() > 0.01  # the luminance was stylised


def test_preserve_colors_matches_the_style_luminance_to_the_frame(vgg):
    """Gatys et al. 2017: the style's luminance gets the frame's mean and std before its Grams are taken,
    so a dark painting on a bright frame gives the targets of a bright one."""
    from stylize_core.network.losses import STYLE_LAYERS
    from stylize_core.network.optimize import gram, luminance, match_luminance, resize, to_tensor

    style = 0.1 + 0.2 * texture(32, 32, 7)  # dark, low contrast
    frame = 0.4 + 0.5 * texture(32, 48, 6)  # bright, high contrast
    grey_style, grey_frame = luminance(style), luminance(frame)
    matched = match_luminance(grey_style, grey_frame)
    assert matched[..., 0].mean() == pytest.approx(grey_frame[..., 0].mean(), abs=1e-4)
    assert matched[..., 0].std() == pytest.approx(grey_frame[..., 0].std(), rel=1e-3)
    assert np.corrcoef(matched[..., 0].ravel(), grey_style[..., 0].ravel())[0, 1] > 0.9999  # same picture
    st = Stylizer(vgg, style, Settings(preserve_colors=True))
    got = st.style_grams((32, 48), grey_frame)
    with torch.no_grad():
        feats = st.features(resize(to_tensor(matched, "cpu"), (48, 48)))
    for g, name in zip(got, STYLE_LAYERS):
        assert torch.allclose(g, gram(feats[name]), rtol=1e-4, atol=1e-6)
    unmatched = st.style_grams((32, 48))
    assert float((got[0] - unmatched[0]).abs().max()) > 0.1 * float(got[0].abs().max())
    # and an optimisation with it keeps the frame's brightness better than the dark style would
    out = st.stylize(frame, iterations=15)
    assert abs(float((out @ np.float32([0.299, 0.587, 0.114])).mean()) - grey_frame[..., 0].mean()) < 0.1


def test_coarse_to_fine_runs_every_level(vgg):
    content = texture(64, 64, 8)
    steps = []
    sizes = []
    st = Stylizer(vgg, content, Settings(coarse_to_fine=2, tolerance=0.0))
    real = st._optimise
    st._optimise = lambda x, *a: (sizes.append(tuple(x.shape[-2:])), real(x, *a))[1]
    st.stylize(content, iterations=4, on_step=lambda i, n, loss: steps.append((i, n)))
    # the coarse level gets the iterations, full size half of them (bench schedule: same loss, 0.87x the time)
    assert sizes == [(32, 32), (64, 64)] and steps == [(i, 6) for i in range(1, 7)]
    from stylize_core.network.optimize import level_iterations

    assert level_iterations(400, 3) == [400, 400, 200] and level_iterations(400, 1) == [400]


def test_style_size_by_area_and_by_longer_side():
    """A square style on a 1024x436 frame (Sintel): the paper's area rule gives sqrt(1024*436) = 668
    px a side, ours (the longer side) 1024: strokes 1.53x larger in frame pixels by side."""
    from stylize_core.sizes import style_size

    frame = (436, 1024)
    assert style_size((512, 512), frame, Settings(style_match="side")) == (1024, 1024)
    area = style_size((512, 512), frame, Settings(style_match="area"))
    assert area == (668, 668) and abs(area[0] ** 2 - 436 * 1024) / (436 * 1024) < 0.002
    assert 1024 / area[0] == pytest.approx(1.533, abs=1e-3)
    # a 300x900 (tall) style: area keeps its aspect with the frame's area, style_scale scales the sides
    h, w = style_size((900, 300), frame, Settings(style_match="area", style_scale=0.5))
    assert (h, w) == (579, 193) and h * w == pytest.approx(0.25 * 436 * 1024, rel=0.01)
    assert style_size((900, 300), frame, Settings(style_match="side", style_scale=0.5)) == (512, 171)
    assert Settings.from_preset("paper").style_match == "area"
    assert Settings.from_preset("standard").style_match == "side"


def test_style_grams_use_the_matched_size(vgg, monkeypatch):
    sizes = []
    st = Stylizer(vgg, texture(64, 64, 9), Settings(style_match="area"))
    real = st.features
    monkeypatch.setattr(st, "features", lambda x: (sizes.append(tuple(x.shape[-2:])), real(x))[1])
    st.style_grams((24, 96))
    assert sizes == [(48, 48)]  # sqrt(24 * 96) = 48


def constant_loss_iterations(window, tolerance=1e-4, iterations=200):
    """Iterations run on a loss that never changes (1.0): the window's length plus one."""
    st = Stylizer(None, texture(8, 8, 0), Settings(tolerance=tolerance, tolerance_window=window))
    x = torch.zeros(1, 3, 8, 8)

    def objective(x):
        return (x * 0).sum() + 1.0, {}

    _, n = st._optimise(x, objective, iterations, lambda i, loss: None)
    return n


def test_early_stop_window():
    """The loss is compared with the loss ``tolerance_window`` iterations earlier (paper 50, ours 10)."""
    assert constant_loss_iterations(10) == 11
    assert constant_loss_iterations(50) == 51
    assert constant_loss_iterations(50, tolerance=0.0) == 200
    assert Settings.from_preset("paper").tolerance_window == 50
    assert Settings.from_preset("paper").tolerance == 1e-4 and Settings().tolerance_window == 10


def test_losses_are_read_back_in_batches_off_the_cpu(monkeypatch):
    """Off the CPU the loop reads the losses once every READ_EVERY iterations (one host-device
    sync), yet on_step sees every iteration's loss, the same as when reading each one."""
    import torch

    from stylize_core.network import optimize
    from stylize_core.network.optimize import Stylizer
    from stylize_core.network.weights import load_vgg
    from stylize_core.settings import Settings

    rng = np.random.default_rng(0)
    content, style = rng.random((24, 32, 3), np.float32), rng.random((32, 32, 3), np.float32)
    stylizer = Stylizer(load_vgg("random:2"), style, Settings(tolerance=0.0))

    def run(every):
        monkeypatch.setattr(optimize, "read_every", lambda device: every)
        monkeypatch.setattr(optimize, "READ_SECONDS", 1e9)
        steps, reads = [], []
        for name in ("__bool__", "__float__", "__int__", "item", "tolist"):
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(
                torch.Tensor, name, lambda self, *a, _o=original, _n=name, **k: reads.append(_n) or _o(self, *a, **k)
            )
        stylizer.stylize(content, iterations=30, seed=1, on_step=lambda i, n, loss: steps.append((i, loss)))
        monkeypatch.undo()
        return steps, len(reads)

    each, reads_each = run(1)
    batched, reads_batched = run(10)
    assert [i for i, _ in batched] == list(range(1, 31))
    assert np.allclose([loss for _, loss in batched], [loss for _, loss in each], rtol=1e-6)
    assert reads_each - reads_batched == 27  # 30 reads of one loss -> 3 reads of ten


def test_early_stop_acts_when_the_losses_are_read(monkeypatch):
    """A constant loss stops after window + 1 iterations on the CPU; reading every 10 it stops at
    the first read past that point (iteration 20) and reports the iterations actually run."""
    from stylize_core.network import optimize
    from stylize_core.network.optimize import Stylizer
    from stylize_core.settings import Settings

    stylizer = Stylizer(None, np.zeros((8, 8, 3), np.float32), Settings(tolerance=1e-4, tolerance_window=10))
    x = __import__("torch").zeros(4, requires_grad=True)

    def objective(x):
        return (x * 0).sum() + 1.0, {}

    seen = []
    assert stylizer._optimise(x, objective, 100, lambda i, loss: seen.append(i))[1] == 11
    monkeypatch.setattr(optimize, "read_every", lambda device: 10)
    monkeypatch.setattr(optimize, "READ_SECONDS", 1e9)
    assert stylizer._optimise(x, objective, 100, lambda i, loss: seen.append(i))[1] == 20
