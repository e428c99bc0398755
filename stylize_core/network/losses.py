"""Loss terms of Ruder et al. 2016 (content, Gram-matrix style, TV, temporal), in Caffe units.

See ``settings`` for the normalisation: images in [0, 1] are compared in 0..255
units and features are in Caffe units: the network's output times its own
``feature_scale`` (``vgg.TORCHVISION_FEATURE_SCALE`` ~ 57.6 for torchvision's weights,
1 for the Caffe weights).
"""

import torch

CONTENT_LAYER = "relu4_2"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def gram(features):
    """Gram matrix of ``(1, C, H, W)`` features, divided by C*H*W; in fp32 whatever the features'
    dtype (bf16/fp16 under the VGG's autocast), and outside any autocast region."""
    _, c, h, w = features.shape
    f = features.float().reshape(c, h * w)
    with torch.autocast(f.device.type, enabled=False):
        return f @ f.t() / (c * h * w)


def guided_gram(features, mask):
    """Guided Gram matrix (Gatys et al. 2017, Sec. 4) of ``(1, C, H, W)`` features under a soft
    ``(1, 1, H, W)`` mask ``m`` at the features' size:

        G_r = (F * m)(F * m)^T / (C * sum(m))

    i.e. the Gram of the masked features normalised by the mask's area (in feature pixels), so
    that ``m = 1`` everywhere gives :func:`gram` (divided by C*H*W) exactly.
    """
    _, c, h, w = features.shape
    f = (features * mask).reshape(c, h * w)
    return f @ f.t() / (c * mask.sum().clamp(min=1e-6))


def content_loss(features, target):
    """Mean squared difference, in fp32."""
    return torch.mean((features.float() - target.float()) ** 2)


def style_loss(grams, targets, weights=None):
    """Sum over layers of the mean squared Gram difference, times each layer's weight (the network's
    ``style_weights``: 1 for VGG-19's layers)."""
    weights = weights or (1.0,) * len(grams)
    return sum(w * torch.mean((g - t) ** 2) for g, t, w in zip(grams, targets, weights))


def tv_loss(image):
    """Half the summed squared differences of neighbouring pixels (0..255 units)."""
    x = image * 255.0
    return 0.5 * (torch.sum((x[..., 1:, :] - x[..., :-1, :]) ** 2) + torch.sum((x[..., :, 1:] - x[..., :, :-1]) ** 2))


def temporal_loss(image, warped, weights):
    """Mean over all W*H*C values of ``weights * (image - warped)^2`` (0..255 units).

    ``warped`` is an earlier stylised frame warped into this frame, ``weights`` its
    per-pixel reliability ``(1, 1, H, W)``.
    """
    return torch.mean(weights * ((image - warped) * 255.0) ** 2)
