"""VGG-19 layout, torchvision state-dict compatibility and weight resolution."""
import pytest
import torch

from stylize_core import weights
from stylize_core.errors import StylizeError
from stylize_core.vgg import VGG19Features, from_state_dict, random_vgg


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
    assert torch.allclose(net(x, ["relu5_1"])["relu5_1"],
                          from_state_dict(state)(x, ["relu5_1"])["relu5_1"])


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
