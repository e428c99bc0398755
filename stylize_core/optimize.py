"""Optimising one frame: content + style + TV (+ temporal) loss, L-BFGS or Adam, coarse-to-fine."""
import time

import numpy as np
import torch
import torch.nn.functional as F

from .lbfgs import LBFGS
from .losses import (CONTENT_LAYER, STYLE_LAYERS, content_loss, gram, style_loss, temporal_loss,
                     tv_loss)

LAYERS = (CONTENT_LAYER,) + STYLE_LAYERS
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)


def to_tensor(img, device):
    """(H, W, C) numpy -> (1, C, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None].contiguous().to(device)


def to_numpy(t):
    return t[0].permute(1, 2, 0).detach().cpu().numpy()


def resize(t, size):
    """Resize a (1, C, H, W) tensor to ``size`` = (H, W) (area down, bicubic up)."""
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    if size[0] < t.shape[-2]:
        return F.interpolate(t, size=size, mode="area")
    return F.interpolate(t, size=size, mode="bicubic", align_corners=False)


def style_size(style_hw, frame_hw, settings):
    """Size (H, W) the style image is resized to for frames of ``frame_hw`` = (H, W).

    ``style_match="area"`` (the authors'): the style image's area equals the frame's times
    ``style_scale``^2, i.e. both sides are multiplied by ``style_scale * sqrt(H W / (h w))``.
    ``"side"`` (ours, the default): its longer side equals the frame's longer side times
    ``style_scale``. A square style on a 1024x436 frame is 1024x1024 by side and 668x668 by
    area: strokes, measured in frame pixels, are 1.53x larger by side. Each side >= 16 px.
    """
    (h, w), (fh, fw) = style_hw, frame_hw
    if settings.style_match == "area":
        f = settings.style_scale * (fh * fw / (h * w)) ** 0.5
    else:
        f = settings.style_scale * max(fh, fw) / max(h, w)
    return max(round(h * f), 16), max(round(w * f), 16)


def luminance(img):
    """(H, W, 3) RGB -> (H, W, 3) grey image of its luminance."""
    return np.repeat(img @ _YIQ[0][:, None], 3, axis=2)


def with_colors_of(grey, color):
    """Luminance of ``grey`` with the chrominance (I, Q) of ``color``."""
    yiq = color @ _YIQ.T
    yiq[..., 0] = grey[..., 0]
    return np.clip(yiq @ np.linalg.inv(_YIQ).T, 0, 1).astype(np.float32)


READ_EVERY = 10      # iterations between reads of the losses on a GPU (Stylizer._optimise)
READ_SECONDS = 0.5   # ... or this long, whichever comes first


def read_every(device):
    """Iterations between host reads of the loss: 1 on the CPU, ``READ_EVERY`` elsewhere."""
    return 1 if torch.device(device).type == "cpu" else READ_EVERY


class Stylizer:
    """Style transfer of single frames towards one style image with fixed settings."""

    def __init__(self, vgg, style_image, settings, device="cpu"):
        self.vgg, self.settings, self.device = vgg, settings, torch.device(device)
        self.style_image = luminance(style_image) if settings.preserve_colors else style_image
        self._grams = {}

    def features(self, x):
        """Loss-layer features of ``x`` in Caffe units (the network folds in its ``feature_scale``)."""
        return self.vgg(x, LAYERS)

    def style_grams(self, size):
        """Gram targets for frames of ``size`` = (H, W); the style image is resized to match."""
        if size not in self._grams:
            target = style_size(self.style_image.shape[:2], size, self.settings)
            with torch.no_grad():
                feats = self.features(resize(to_tensor(self.style_image, self.device), target))
                self._grams[size] = [gram(feats[name]) for name in STYLE_LAYERS]
        return self._grams[size]

    def _objective(self, content, temporal):
        """Closure factory: returns ``f(x) -> (total, parts)`` for one pyramid level."""
        s = self.settings
        size = tuple(content.shape[-2:])
        with torch.no_grad():
            target = self.features(content)[CONTENT_LAYER]
        grams = self.style_grams(size)
        style_w = s.style_weight * s.strength

        def f(x):
            feats = self.features(x)
            parts = {"content": content_loss(feats[CONTENT_LAYER], target),
                     "style": style_loss([gram(feats[n]) for n in STYLE_LAYERS], grams),
                     "tv": tv_loss(x)}
            parts["temporal"] = sum((temporal_loss(x, w, c) for w, c in temporal), x.new_zeros(()))
            total = (s.content_weight * parts["content"] + style_w * parts["style"]
                     + s.tv_weight * parts["tv"] + s.temporal_weight * parts["temporal"])
            return total, parts
        return f

    def _work(self, img):
        return luminance(img) if self.settings.preserve_colors else img

    def losses(self, image, content, temporal=()):
        """Unweighted loss terms of ``image`` as floats (``temporal``: (warped, weights) pairs)."""
        x, c = to_tensor(self._work(image), self.device), to_tensor(self._work(content), self.device)
        temporal = [(to_tensor(self._work(w), self.device), to_tensor(m[..., None], self.device))
                    for w, m in temporal]
        with torch.no_grad():
            total, parts = self._objective(c, temporal)(x)
        return {"total": float(total), **{k: float(v) for k, v in parts.items()}}

    def stylize(self, content, init=None, temporal=(), iterations=None, on_step=None, seed=None):
        """Stylise ``content`` (H, W, 3) in [0, 1]; returns the image as numpy.

        ``init``: starting image (default: the content, or noise with ``init="random"``).
        ``temporal``: ``(warped_earlier_result, reliability (H, W))`` pairs.
        ``on_step(iteration, total_iterations, loss)`` is called after every iteration.
        """
        s = self.settings
        iterations = s.iterations if iterations is None else iterations
        full = to_tensor(self._work(content), self.device)
        h, w = full.shape[-2:]
        if init is not None:
            x = to_tensor(self._work(init), self.device)
        elif s.init == "random":
            g = torch.Generator().manual_seed(s.seed if seed is None else seed)
            x = (0.5 + 0.1 * torch.randn(full.shape, generator=g)).to(self.device)
        else:
            x = full.clone()
        temporal = [(to_tensor(self._work(wp), self.device), to_tensor(c[..., None], self.device))
                    for wp, c in temporal]
        levels = [(max(round(h / 2 ** k), 16), max(round(w / 2 ** k), 16))
                  for k in reversed(range(max(s.coarse_to_fine, 1)))]
        done, total_iters = 0, iterations * len(levels)
        for size in levels:
            x = resize(x, size).detach().clone()
            objective = self._objective(resize(full, size),
                                        [(resize(wp, size), resize(c, size)) for wp, c in temporal])
            x, n = self._optimise(x, objective, iterations,
                                  lambda i, loss: on_step and on_step(done + i, total_iters, loss))
            done += iterations
        return to_numpy(x.clamp(0, 1)) if not s.preserve_colors else with_colors_of(
            to_numpy(x.clamp(0, 1)), content)

    def _optimise(self, x, objective, iterations, on_step):
        """Run the optimiser for at most ``iterations``; returns ``(x, iterations run)``.

        Early stop (``tolerance`` > 0): after iteration k > N (N = ``tolerance_window``, the
        authors' 50, ours 10) once ``|L_(k-N) - L_k| < tolerance * |L_k|``: the loss changed by
        less than that relative amount over the last N iterations.

        The losses stay on the device and are read back together (one host-device
        synchronisation) every :func:`read_every` iterations, or once ``READ_SECONDS`` have
        passed: on a GPU an iteration is then one queue of kernels. ``on_step`` still sees
        every iteration's loss, in order; the early stop and the non-finite check act when
        the losses are read, so a GPU may run up to ``READ_EVERY - 1`` iterations past the
        stopping point. On the CPU (reading is free) every iteration is read.
        """
        s = self.settings
        x.requires_grad_(True)
        if s.optimizer == "adam":
            opt = torch.optim.Adam([x], lr=s.adam_lr / 255.0)
        else:
            opt = LBFGS(x, history_size=s.lbfgs_history)
        history, window, every = [], s.tolerance_window, read_every(x.device)

        def closure():
            x.grad = None
            total, _ = objective(x)
            total.backward()
            return total.detach()

        pending, last = [], time.monotonic()
        for i in range(1, iterations + 1):
            pending.append(opt.step(closure))
            if i < iterations and len(pending) < every and time.monotonic() - last < READ_SECONDS:
                continue
            losses, pending, last = torch.stack(pending).tolist(), [], time.monotonic()
            for loss in losses:
                if not np.isfinite(loss):
                    raise FloatingPointError("loss became non-finite")
                history.append(loss)
                on_step(len(history), loss)
                if s.tolerance > 0 and len(history) > window and \
                        abs(history[-window - 1] - loss) < s.tolerance * abs(loss):
                    return x.detach(), i
        return x.detach(), len(history)
