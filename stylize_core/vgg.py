"""VGG-19 convolutional features in plain torch (torchvision does not have to import).

Module indices match ``torchvision.models.vgg19().features`` so the standard
``vgg19-dcbb9e9d.pth`` state dict loads unchanged; only the layers up to relu5_1
are built and kept in memory.

Two input conventions (``preprocessing``), chosen with the weights (``weights.py``):
- ``torchvision`` (torchvision's weights): RGB in [0, 1] normalised per channel,
  ``(x - IMAGENET_MEAN) / IMAGENET_STD``; the features are then multiplied by
  ``feature_scale`` = 255 x mean(IMAGENET_STD) ~ 57.6 to approximate the Caffe units
  the paper's loss weights are given in;
- ``caffe`` (the Caffe VGG-19 the paper used, converted to PyTorch by J. Johnson:
  ``vgg19-d01eb7cb.pth``): BGR in 0..255 minus the mean pixel ``CAFFE_MEAN_BGR``;
  its features *are* in Caffe units (``feature_scale`` = 1), so the paper's ratios hold
  exactly.
"""
import torch
from torch import nn

from .errors import StylizeError

# (name, out_channels) per conv; "M" = pooling. Same order as torchvision's cfg "E".
_CFG = [("conv1_1", 64), ("conv1_2", 64), "M",
        ("conv2_1", 128), ("conv2_2", 128), "M",
        ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("conv3_4", 256), "M",
        ("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512), ("conv4_4", 512), "M",
        ("conv5_1", 512)]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # the Caffe VGG-19's mean pixel, 0..255, BGR
MEAN_PIXEL = tuple(v / 255 for v in reversed(CAFFE_MEAN_BGR))  # the same as RGB in [0, 1]
TORCHVISION_FEATURE_SCALE = 255.0 * sum(IMAGENET_STD) / 3  # torchvision's features -> ~Caffe units
PREPROCESSING = ("torchvision", "caffe")


class VGG19Features(nn.Module):
    """``features`` of VGG-19 up to relu5_1; ``width_divisor`` > 1 builds a slim network for tests."""

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
        self.requires_grad_(False)
        self.eval()

    def forward(self, image, layers):
        """Features of ``image`` (N, 3, H, W) in [0, 1] at the named ``layers`` -> dict."""
        wanted = {self.index[name]: name for name in layers}
        last = max(wanted)
        if self.preprocessing == "caffe":
            image = image.flip(1)  # RGB -> BGR
        x = (image - self.mean) / self.std
        out = {}
        for i, module in enumerate(self.features):
            x = module(x)
            if i in wanted:
                out[wanted[i]] = x
            if i == last:
                break
        return out


def from_state_dict(state, pooling="max", preprocessing="torchvision"):
    """Build the network from a VGG-19 state dict: torchvision's keys (``features.0.weight``, also
    those of the Caffe conversion ``vgg19-d01eb7cb.pth``) or Caffe layer names (``conv1_1.weight``),
    mapped to the same layers; classifier keys are ignored. ``preprocessing``: see the module doc."""
    net = VGG19Features(pooling=pooling, preprocessing=preprocessing)
    state = {**{f"features.{i}.{p}": state[f"{name}.{p}"] for name, i in net.index.items()
                for p in ("weight", "bias") if f"{name}.{p}" in state}, **state}  # Caffe layer names
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
