"""VGG-19 layout, torchvision state-dict compatibility and weight resolution."""

import pytest
import torch

from stylize_core.errors import StylizeError
from stylize_core.network import weights
from stylize_core.network.vgg import VGG19Features, from_state_dict, random_vgg


def torchvision_like_state():
    """A state dict with torchvision's vgg19 keys: features.* plus classifier.*."""
    state = {f"features.{k}": v for k, v in random_vgg(seed=3).features.state_dict().items()}
    state["features.30.weight"] = torch.zeros(512, 512, 3, 3)  # conv5_2: beyond relu5_1
    state["classifier.0.weight"] = torch.zeros(4, 4)
    return state


def test_layer_indices_match_torchvision():
    net = VGG19Features()
    assert net.index["relu1_1"] == 1 and net.index["relu4_2"] == 22 and net.index["relu5_1"] == 29
    assert len(net.features) == 30  # only up to relu5_1 is kept
    convs = [k for k in net.state_dict() if k.endswith("weight")]
    assert convs[0] == "features.0.weight" and convs[-1] == "features.28.weight"


def test_torchvision_state_dict_loads_unchanged(tmp_path):
    state = torchvision_like_state()
    path = tmp_path / weights.FILENAME
    torch.save(state, path)
    net = weights.load_vgg(path)
    assert torch.equal(net.features[28].weight, state["features.28.weight"])
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(net(x, ["relu5_1"])["relu5_1"], from_state_dict(state)(x, ["relu5_1"])["relu5_1"])


def test_bad_weights_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(StylizeError, match="not a VGG-19 state dict"):
        weights.load_vgg(bad)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(StylizeError, match="cannot load VGG-19 weights"):
        weights.load_vgg(garbage)


def test_resolution_order(tmp_path, monkeypatch):
    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    a.write_bytes(b"x"), b.write_bytes(b"x")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    monkeypatch.setenv(weights.ENV, str(b))
    assert weights.find_weights(a) == a
    assert weights.find_weights(None) == b
    monkeypatch.delenv(weights.ENV)
    assert weights.find_weights(None) is None
    weights.hub_path().parent.mkdir(parents=True)
    weights.hub_path().write_bytes(b"x")
    assert weights.find_weights(None) == weights.hub_path()
    with pytest.raises(StylizeError, match="not found"):
        weights.find_weights(tmp_path / "missing.pth")


def test_offline_without_weights_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    monkeypatch.delenv(weights.ENV, raising=False)
    monkeypatch.setattr(weights, "URL", "http://127.0.0.1:9/vgg19-dcbb9e9d.pth")
    with pytest.raises(StylizeError) as e:
        weights.load_vgg(None)
    assert str(weights.hub_path()) in str(e.value) and "--vgg" in str(e.value)


def caffe_input(x):
    """What the Caffe VGG-19 expects for RGB [0, 1] images: BGR in 0..255 minus the mean pixel."""
    from stylize_core.network.vgg import CAFFE_MEAN_BGR

    return x.flip(1) * 255 - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)


def test_caffe_weights_resolve_from_the_hub_cache_with_their_preprocessing(tmp_path, monkeypatch):
    """``--vgg caffe``: vgg19-d01eb7cb.pth (features.N keys, classifier.1/.4 as in J. Johnson's
    conversion) from the hub cache, fed BGR 0..255 mean-subtracted; its features are in Caffe units
    (scale 1), torchvision's are rescaled by 255 x mean std = 57.6."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    monkeypatch.setattr(weights, "CAFFE_URL", "http://127.0.0.1:9/vgg19-d01eb7cb.pth")
    with pytest.raises(StylizeError, match="Caffe VGG-19 weights not found"):
        weights.resolve("caffe", allow_download=False)
    with pytest.raises(StylizeError, match="could not be downloaded"):
        weights.resolve("caffe")
    state = torchvision_like_state()
    state["classifier.1.weight"] = state.pop("classifier.0.weight")
    path = weights.hub_path(weights.CAFFE_FILENAME)
    path.parent.mkdir(parents=True, exist_ok=True)  # (the failed download made it)
    torch.save(state, path)
    assert weights.resolve("caffe", allow_download=False) == path
    assert weights.identity(path) == f"vgg19-d01eb7cb.pth:{path.stat().st_size}"
    caffe = weights.load_vgg("caffe", allow_download=False)
    assert caffe.preprocessing == "caffe" and caffe.feature_scale == 1.0
    plain = from_state_dict(state)  # the same weights with torchvision's input convention
    assert plain.feature_scale == pytest.approx(57.63, abs=0.01)
    x = torch.rand(1, 3, 24, 24)
    # the torchvision network normalises (y - mean) / std: give it y such that that is caffe_input(x)
    y = caffe_input(x) * plain.std + plain.mean
    for layer in ("relu1_1", "relu4_2", "relu5_1"):  # (the torchvision network's are in Caffe units: / 57.6)
        torch.testing.assert_close(
            caffe(x, [layer])[layer], plain(y, [layer])[layer] / plain.feature_scale, rtol=1e-4, atol=1e-3
        )
    first = torch.nn.functional.conv2d(
        caffe_input(x), state["features.0.weight"], state["features.0.bias"], padding=1
    ).clamp_min(0)
    torch.testing.assert_close(caffe(x, ["relu1_1"])["relu1_1"], first, rtol=1e-5, atol=1e-4)
    # the file is known by its name also as a plain path (--vgg PATH, $STYLIZE_VGG19)
    copy = tmp_path / weights.CAFFE_FILENAME
    torch.save(state, copy)
    assert weights.load_vgg(copy).preprocessing == "caffe"
    other = tmp_path / "mine.pth"
    torch.save(state, other)
    assert weights.load_vgg(other).preprocessing == "torchvision"


def test_caffe_layer_names_are_mapped(tmp_path):
    """A state dict keyed by Caffe layer names (conv1_1.weight ...) loads into the same layers."""
    net = random_vgg(seed=5)
    index = {name: i for name, i in net.index.items() if name.startswith("conv")}
    state = {f"{name}.{p}": net.features[i].state_dict()[p] for name, i in index.items() for p in ("weight", "bias")}
    loaded = from_state_dict(state, preprocessing="caffe")
    assert torch.equal(loaded.features[index["conv5_1"]].weight, net.features[index["conv5_1"]].weight)
    assert torch.equal(loaded.features[0].bias, net.features[0].bias)


def test_stylizer_features_are_in_caffe_units(tmp_path):
    """The loss features are the plain network's output times its own scale (1 for Caffe, 57.6
    otherwise), folded into the input and the biases: the same values to 1e-5 (relative)."""
    from stylize_core.network.optimize import Stylizer
    from stylize_core.settings import Settings

    state = torchvision_like_state()
    x = torch.rand(1, 3, 24, 24)
    for preprocessing, scale in (("caffe", 1.0), ("torchvision", 255 * (0.229 + 0.224 + 0.225) / 3)):
        net = from_state_dict(state, preprocessing=preprocessing)
        plain = net.features[: net.index["relu3_1"] + 1](
            ((x.flip(1) if preprocessing == "caffe" else x) - net.mean) / net.std
        )
        got = Stylizer(net, x[0].permute(1, 2, 0).numpy(), Settings()).features(x)["relu3_1"]
        torch.testing.assert_close(got, plain * scale, rtol=1e-5, atol=1e-5 * float(plain.abs().max() * scale))


def test_folded_scale_gives_the_losses_of_scaled_features():
    """Folding the feature scale changes no loss: content, style and total within 1e-5 relative of
    the former route (features of the plain network multiplied by 57.6)."""
    import numpy as np

    from stylize_core.network import optimize
    from stylize_core.settings import Settings

    rng = np.random.default_rng(0)
    net = random_vgg(4)
    content, style, image = (rng.random((40, 56, 3), np.float32) for _ in range(3))
    st = optimize.Stylizer(net, style, Settings())
    folded = st.losses(image, content)

    class Plain(VGG19Features):  # the former forward: normalise, run, then multiply the features
        def forward(self, img, layers):
            x, out = (img - self.mean) / self.std, {}
            for i, module in enumerate(self.features[: max(self.index[n] for n in layers) + 1]):
                x = module(x)
                out.update({n: x * self.feature_scale for n in layers if self.index[n] == i})
            return out

    plain = Plain(4)
    plain.load_state_dict(net.state_dict())
    former = optimize.Stylizer(plain, style, Settings()).losses(image, content)
    for k in ("content", "style", "total"):
        assert folded[k] == pytest.approx(former[k], rel=1e-5), k
    assert former["style"] > 0 and former["content"] > 0


def test_checkpointing_gives_the_same_loss_and_gradient():
    import numpy as np

    from stylize_core.network import optimize
    from stylize_core.settings import Settings

    rng = np.random.default_rng(1)
    net = random_vgg(4)
    st = optimize.Stylizer(net, rng.random((48, 48, 3), np.float32), Settings())
    content = optimize.to_tensor(rng.random((40, 56, 3), np.float32), "cpu")
    objective = st._objective(content, [])
    results = []
    for checkpoint in (False, True):
        net.checkpoint = checkpoint
        x = content.clone().requires_grad_(True)
        total, _ = objective(x)
        total.backward()
        results.append((float(total.detach()), x.grad.clone()))
    (loss, grad), (loss_ckpt, grad_ckpt) = results
    assert loss_ckpt == pytest.approx(loss, rel=1e-6)
    torch.testing.assert_close(grad_ckpt, grad, rtol=1e-5, atol=1e-6 * float(grad.abs().max()))
    assert float(grad.abs().max()) > 0


def test_autocast_features_in_bf16_grams_and_losses_in_fp32():
    """The dtype routing of ``vgg.autocast`` (bf16/fp16 on CUDA), checked with CPU bf16: the
    features come out in bf16, the Grams and the losses are fp32 and close to the fp32 run."""
    import numpy as np

    from stylize_core.network import losses, optimize
    from stylize_core.settings import Settings

    rng = np.random.default_rng(2)
    net = random_vgg(4)
    style, content = rng.random((48, 48, 3), np.float32), rng.random((32, 40, 3), np.float32)
    reference = optimize.Stylizer(net, style, Settings()).losses(content * 0.5, content)
    net.autocast = torch.bfloat16
    st = optimize.Stylizer(net, style, Settings())
    x = optimize.to_tensor(content, "cpu")
    feats = st.features(x)
    assert {f.dtype for f in feats.values()} == {torch.bfloat16}
    assert all(g.dtype == torch.float32 for g in st.style_grams((32, 40)))
    assert losses.gram(feats["relu1_1"]).dtype == torch.float32
    total, parts = st._objective(x, [])(x.clone().requires_grad_(True))
    assert total.dtype == torch.float32 and all(v.dtype == torch.float32 for v in parts.values())
    low = st.losses(content * 0.5, content)
    for k in ("content", "style"):
        assert low[k] == pytest.approx(reference[k], rel=0.1), k
