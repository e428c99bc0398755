"""VGG-19 convolutional features in plain torch (torchvision does not have to import).

Module indices match ``torchvision.models.vgg19().features`` so the standard
``vgg19-dcbb9e9d.pth`` state dict loads unchanged; only the layers up to relu5_1
are built and kept in memory.

Two input conventions (``preprocessing``), chosen with the weights (``weights.py``):
- ``torchvision`` (torchvision's weights): RGB in [0, 1] normalised per channel,
  ``(x - IMAGENET_MEAN) / IMAGENET_STD``; the features are multiplied by
  ``feature_scale`` = 255 x mean(IMAGENET_STD) ~ 57.6 to approximate the Caffe units
  the paper's loss weights are given in (folded into the network, below);
- ``caffe`` (the Caffe VGG-19 the paper used, converted to PyTorch by J. Johnson:
  ``vgg19-d01eb7cb.pth``): BGR in 0..255 minus the mean pixel ``CAFFE_MEAN_BGR``;
  its features *are* in Caffe units (``feature_scale`` = 1), so the paper's ratios hold
  exactly.

The forward pass returns the features in Caffe units without a multiplication per activation:
convolutions, ReLU and pooling are positively homogeneous (``conv(s a) + s b = s (conv(a) + b)``,
``relu(s a) = s relu(a)``, ``pool(s a) = s pool(a)`` for ``s > 0``), so scaling the normalised
input and every conv bias by ``s = feature_scale`` scales every activation by ``s``: the same
values as multiplying the loss layers' features (to float rounding, ~1e-6 relative), without the
six scaled copies (130 values a pixel) autograd would keep. The ReLUs act in place (a conv's
backward pass needs its input, not its output), which saves one layer's transient output.
Measured (one L-BFGS step at 512x384, random VGG of the real widths, torch 2.13 CPU, peak RSS
growth): 684 MB before, 569 MB with the scale folded, 528 MB also with the ReLUs in place (567 MB
without); the time of a VGG forward+backward is unchanged by either (interleaved, same process).
Channels-last memory was measured at 0.88x the time of the bare forward+backward at 384x164
on this CPU, but the Gram matrices would then need the (H W, C) layout: not used yet.

Options set on the network by the caller (``schedule.Job``, ``memory.plan``):
- ``checkpoint`` (bool): with gradients on, each segment (the layers up to and including a
  pooling or a requested layer) runs under ``torch.utils.checkpoint``: only the segments'
  inputs and the requested layers are kept for the backward pass, the rest is recomputed
  there, one segment at a time (one more forward pass per iteration; the same values).
  ``memory.py`` counts what it saves.
- ``autocast`` (a torch dtype or None): the convolutions run under ``torch.autocast`` in that
  dtype (bf16/fp16 on CUDA); the features come out in it and the losses cast them to fp32
  (``losses.py``), so Gram matrices and losses are computed in fp32.
"""

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import StylizeError
from .losses import CONTENT_LAYER, STYLE_LAYERS

# (name, out_channels) per conv; "M" = pooling. Same order as torchvision's cfg "E".
_CFG = [
    ("conv1_1", 64),
    ("conv1_2", 64),
    "M",
    ("conv2_1", 128),
    ("conv2_2", 128),
    "M",
    ("conv3_1", 256),
    ("conv3_2", 256),
    ("conv3_3", 256),
    ("conv3_4", 256),
    "M",
    ("conv4_1", 512),
    ("conv4_2", 512),
    ("conv4_3", 512),
    ("conv4_4", 512),
    "M",
    ("conv5_1", 512),
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # the Caffe VGG-19's mean pixel, 0..255, BGR
MEAN_PIXEL = tuple(v / 255 for v in reversed(CAFFE_MEAN_BGR))  # the same as RGB in [0, 1]
TORCHVISION_FEATURE_SCALE = 255.0 * sum(IMAGENET_STD) / 3  # torchvision's features -> ~Caffe units
PREPROCESSING = ("torchvision", "caffe")


class VGG19Features(nn.Module):
    """``features`` of VGG-19 up to relu5_1; ``width_divisor`` > 1 builds a slim network for tests.

    The loss layers (the paper's): content ``relu4_2``, style ``relu1_1`` ... ``relu5_1``, equally weighted.
    """

    content_layer = CONTENT_LAYER
    style_layers = STYLE_LAYERS
    style_weights = (1.0,) * len(STYLE_LAYERS)
    content_scale = 1.0  # the paper's loss weights apply as they are (Caffe units)

    def __init__(self, width_divisor=1, pooling="max", preprocessing="torchvision"):
        super().__init__()
        if preprocessing not in PREPROCESSING:
            raise ValueError(f"preprocessing must be one of {PREPROCESSING}, got {preprocessing!r}")
        self.preprocessing = preprocessing
        self.feature_scale = TORCHVISION_FEATURE_SCALE if preprocessing == "torchvision" else 1.0
        layers, self.index = [], {}
        channels = 3
        for item in _CFG:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2))
                continue
            name, out = item
            out = max(out // width_divisor, 4)
            layers.append(nn.Conv2d(channels, out, 3, padding=1))
            self.index[name] = len(layers) - 1
            layers.append(nn.ReLU())
            self.index["relu" + name[4:]] = len(layers) - 1
            channels = out
        self.features = nn.Sequential(*layers)
        if preprocessing == "caffe":  # x_bgr * 255 - mean  ==  (x - mean / 255) / (1 / 255), channels swapped
            mean, std = tuple(v / 255 for v in CAFFE_MEAN_BGR), (1 / 255,) * 3
        else:
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.checkpoint, self.autocast = False, None
        self.requires_grad_(False)
        self.eval()

    def forward(self, image, layers):
        """Features of ``image`` (N, 3, H, W) in [0, 1] at the named ``layers`` -> dict, in Caffe
        units (times ``feature_scale``, folded in: see the module doc)."""
        wanted = {self.index[name]: name for name in layers}
        last = max(wanted)
        if self.preprocessing == "caffe":
            image = image.flip(1)  # RGB -> BGR
        x = (image - self.mean) * (self.feature_scale / self.std)
        out = {}
        segments, start = [], 0
        for i, module in enumerate(self.features[: last + 1]):
            if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)) or i in wanted:
                segments.append((start, i + 1))
                start = i + 1
        ckpt = self.checkpoint and torch.is_grad_enabled()
        with torch.autocast(image.device.type, self.autocast) if self.autocast else nullcontext():
            for a, b in segments:
                names = [wanted[i] for i in range(a, b) if i in wanted]
                if ckpt:
                    x, *feats = checkpoint(self._segment, x, a, b, wanted, use_reentrant=False)
                else:
                    x, *feats = self._segment(x, a, b, wanted)
                out.update(zip(names, feats))
        return out

    def _segment(self, x, a, b, wanted):
        """Layers ``a`` to ``b - 1``: ``(output, *the outputs of the wanted layers among them)``."""
        feats = []
        for i in range(a, b):
            module = self.features[i]
            if isinstance(module, nn.Conv2d):
                bias = module.bias * self.feature_scale if self.feature_scale != 1 else module.bias
                x = F.conv2d(x, module.weight, bias, module.stride, module.padding)
            elif isinstance(module, nn.ReLU):
                x = torch.relu_(x)
            else:
                x = module(x)
            if i in wanted:
                feats.append(x)
        return (x, *feats)


def from_state_dict(state, pooling="max", preprocessing="torchvision"):
    """Build the network from a VGG-19 state dict: torchvision's keys (``features.0.weight``, also
    those of the Caffe conversion ``vgg19-d01eb7cb.pth``) or Caffe layer names (``conv1_1.weight``),
    mapped to the same layers; classifier keys are ignored. ``preprocessing``: see the module doc."""
    net = VGG19Features(pooling=pooling, preprocessing=preprocessing)
    state = {
        **{
            f"features.{i}.{p}": state[f"{name}.{p}"]
            for name, i in net.index.items()
            for p in ("weight", "bias")
            if f"{name}.{p}" in state
        },
        **state,
    }  # Caffe layer names
    wanted = net.state_dict().keys()
    missing = [k for k in wanted if k not in state]
    if missing:
        raise StylizeError(f"not a VGG-19 state dict: missing {missing[0]} (and {len(missing) - 1} more)")
    for key in wanted:
        if tuple(state[key].shape) != tuple(net.state_dict()[key].shape):
            raise StylizeError(f"not a VGG-19 state dict: {key} has shape {tuple(state[key].shape)}")
    net.load_state_dict({k: state[k] for k in wanted})
    return net


def random_vgg(width_divisor=1, seed=0, pooling="max"):
    """A randomly initialised network with the real layer layout (tests, speed benchmarks)."""
    gen = torch.Generator().manual_seed(seed)
    net = VGG19Features(width_divisor, pooling)
    for module in net.features:
        if isinstance(module, nn.Conv2d):
            fan_in = module.in_channels * 9
            module.weight.data = torch.randn(module.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5
            module.bias.data.zero_()
    return net
