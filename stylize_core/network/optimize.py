"""Optimising one frame: content + style + TV (+ temporal) loss, L-BFGS or Adam, coarse-to-fine."""

import time

import numpy as np
import torch
import torch.nn.functional as F

from ..sizes import scaled, style_size
from .lbfgs import LBFGS
from .losses import content_loss, gram, style_loss, temporal_loss, tv_loss

_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)


def to_tensor(img, device):
    """(H, W, C) numpy -> (1, C, H, W) float32 tensor (a copy: read-only arrays are fine)."""
    img = np.ascontiguousarray(img, dtype=np.float32)
    if not img.flags.writeable:  # a cached input frame; torch warns on read-only memory
        img = img.copy()
    return torch.from_numpy(img).permute(2, 0, 1)[None].contiguous().to(device)


def to_numpy(t):
    return t[0].permute(1, 2, 0).detach().cpu().numpy()


def resize(t, size):
    """Resize a (1, C, H, W) tensor to ``size`` = (H, W) (area down, bicubic up)."""
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    if size[0] < t.shape[-2]:
        return F.interpolate(t, size=size, mode="area")
    return F.interpolate(t, size=size, mode="bicubic", align_corners=False)


def luminance(img):
    """(H, W, 3) RGB -> (H, W, 3) grey image of its luminance."""
    return np.repeat(img @ _YIQ[0][:, None], 3, axis=2)


def match_luminance(style_grey, content_grey):
    """The style's luminance with the content's mean and standard deviation (Gatys et al. 2017, Sec. 5.1).

    ``L_s' = sigma_c / sigma_s (L_s - mu_s) + mu_c`` over all pixels, on (H, W, 3) grey images in
    [0, 1] (``luminance``), not clipped: the style statistics then match the content's, so a dark
    painting on a bright frame does not darken the frame. A flat style (``sigma_s`` ~ 0) is shifted only.
    """
    mu_s, sd_s = float(style_grey[..., 0].mean()), float(style_grey[..., 0].std())
    mu_c, sd_c = float(content_grey[..., 0].mean()), float(content_grey[..., 0].std())
    gain = sd_c / sd_s if sd_s > 1e-6 else 1.0
    return ((style_grey - mu_s) * gain + mu_c).astype(np.float32)


def with_colors_of(grey, color):
    """Luminance of ``grey`` with the chrominance (I, Q) of ``color``."""
    yiq = color @ _YIQ.T
    yiq[..., 0] = grey[..., 0]
    return np.clip(yiq @ np.linalg.inv(_YIQ).T, 0, 1).astype(np.float32)


def level_iterations(iterations, levels):
    """Iterations per pyramid level, coarsest first, for ``levels`` levels (1 = single scale):
    ``iterations`` at every coarser level and half of them at full size.

    An iteration at 1/2^k of the size costs ~1/4^k of a full-size one, so 3 levels cost
    1/16 + 1/4 + 1/2 = 0.81 of the single-scale run. ``python -m bench schedule --part c2f``
    (256x109, N = 100, random VGG, one run on a quiet machine): single scale 37.8 s; N at every
    level (the old schedule) 53.8 s, reaching the single-scale loss after 30.8 s and ending 2.5 %
    below it; N, N, N/2 36.8 s, reaching it after 32.8 s (0.87x) and ending 0.8 % below it;
    N, N/2, N/4 20.3 s but 2.6 % above it.
    """
    if levels <= 1:
        return [iterations]
    return [iterations] * (levels - 1) + [max(iterations // 2, 1)]


READ_EVERY = 10  # iterations between reads of the losses on a GPU (Stylizer._optimise)
READ_SECONDS = 0.5  # ... or this long, whichever comes first


def read_every(device):
    """Iterations between host reads of the loss: 1 on the CPU, ``READ_EVERY`` elsewhere."""
    return 1 if torch.device(device).type == "cpu" else READ_EVERY


class Stylizer:
    """Style transfer of single frames towards one style image, or a blend, with fixed settings.

    ``style_image``: an ``(H, W, 3)`` image, or a blend ``[(image, weight), ...]`` (weights
    normalised to sum 1). A blend's target is the blended Gram ``sum_k w_k G_k`` per layer:
    ``sum_k w_k |G - G_k|^2 = |G - sum_k w_k G_k|^2 + const``, so the loss towards the blended
    target has the same gradient as the weighted sum of the losses towards each image.
    """

    def __init__(self, vgg, style_image, settings, device="cpu"):
        self.vgg, self.settings, self.device = vgg, settings, torch.device(device)
        blend = [(style_image, 1.0)] if isinstance(style_image, np.ndarray) else list(style_image)
        total = sum(w for _, w in blend) or 1.0
        self.images = [self._work(img) for img, _ in blend]
        self.blend = [(k, w / total) for k, (_, w) in enumerate(blend)]
        self.style_image = self.images[0] if self.images else None
        self._grams = {}  # (image, size[, the frame's luminance statistics]) and blends -> Gram targets

    def features(self, x):
        """Loss-layer features of ``x`` (the network's ``content_layer`` and ``style_layers``; VGG-19's in
        Caffe units: the network folds in its ``feature_scale``)."""
        return self.vgg(x, (self.vgg.content_layer, *self.vgg.style_layers))

    def image_grams(self, k, size, frame=None):
        """Gram matrices of style image ``k`` for frames of ``size`` = (H, W) (the image resized
        to match, :func:`style_size`), computed once per image and size.

        With ``preserve_colors`` and a ``frame`` ((H, W, 3) grey, ``luminance``), the style's
        luminance is first matched to the frame's mean and std (:func:`match_luminance`): the
        targets then follow the frame (one extra forward pass of the style image per frame; only
        the current frame's are kept).
        """
        image, key = self.images[k], (k, size)
        if self.settings.preserve_colors and frame is not None:
            image = match_luminance(image, frame)
            key = (k, size, round(float(frame[..., 0].mean()), 6), round(float(frame[..., 0].std()), 6))
        if key not in self._grams:
            for old in [o for o in self._grams if len(o) == 4 and o[:2] == key[:2]]:
                del self._grams[old]
            target = style_size(image.shape[:2], size, self.settings)
            with torch.no_grad():
                feats = self.features(resize(to_tensor(image, self.device), target))
                self._grams[key] = [gram(feats[name]) for name in self.vgg.style_layers]
        return self._grams[key]

    def blend_grams(self, blend, size, frame=None):
        """Gram targets ``sum_k w_k G_k`` of a blend ``[(image index, weight), ...]``."""
        per_image = [self.image_grams(k, size, frame) for k, _ in blend]
        if len(blend) == 1 and blend[0][1] == 1.0:
            return per_image[0]
        return [sum(w * g[n] for (_, w), g in zip(blend, per_image)) for n in range(len(self.vgg.style_layers))]

    def style_grams(self, size, frame=None):
        """Gram targets for frames of ``size`` = (H, W): the style image's, or the blend's
        (``frame``: see :meth:`image_grams`)."""
        return self.blend_grams(self.blend, size, frame)

    def _objective(self, content, temporal, frame=None):
        """Closure factory: returns ``f(x) -> (total, parts)`` for one pyramid level
        (``frame``: the frame as numpy, for the style's luminance matching)."""
        s = self.settings
        size = tuple(content.shape[-2:])
        with torch.no_grad():
            target = self.features(content)[self.vgg.content_layer]
        grams = self.style_grams(size, frame)
        style_w = s.style_weight * s.strength
        net = self.vgg

        def f(x):
            feats = self.features(x)
            parts = {
                "content": net.content_scale * content_loss(feats[net.content_layer], target),
                "style": style_loss([gram(feats[n]) for n in net.style_layers], grams, net.style_weights),
                "tv": tv_loss(x),
            }
            parts["temporal"] = sum((temporal_loss(x, w, c) for w, c in temporal), x.new_zeros(()))
            total = (
                s.content_weight * parts["content"]
                + style_w * parts["style"]
                + s.tv_weight * parts["tv"]
                + s.temporal_weight * parts["temporal"]
            )
            return total, parts

        return f

    def _work(self, img):
        return luminance(img) if self.settings.preserve_colors else img

    def losses(self, image, content, temporal=()):
        """Unweighted loss terms of ``image`` as floats (``temporal``: (warped, weights) pairs)."""
        work = self._work(content)
        x, c = to_tensor(self._work(image), self.device), to_tensor(work, self.device)
        temporal = [(to_tensor(self._work(w), self.device), to_tensor(m[..., None], self.device)) for w, m in temporal]
        with torch.no_grad():
            total, parts = self._objective(c, temporal, work)(x)
        return {"total": float(total), **{k: float(v) for k, v in parts.items()}}

    def stylize(self, content, init=None, temporal=(), iterations=None, on_step=None, seed=None, schedule=None):
        """Stylise ``content`` (H, W, 3) in [0, 1]; returns the image as numpy.

        ``init``: starting image (default: the content, or noise with ``init="random"``).
        ``temporal``: ``(warped_earlier_result, reliability (H, W))`` pairs.
        ``on_step(iteration, total_iterations, loss)`` is called after every iteration.
        ``schedule``: iterations per pyramid level, coarsest first (default
        :func:`level_iterations` of ``iterations`` and ``coarse_to_fine``).
        """
        s = self.settings
        iterations = s.iterations if iterations is None else iterations
        work = self._work(content)
        full = to_tensor(work, self.device)
        h, w = full.shape[-2:]
        if init is not None:
            x = to_tensor(self._work(init), self.device)
        elif s.init == "random":
            g = torch.Generator().manual_seed(s.seed if seed is None else seed)
            x = (0.5 + 0.1 * torch.randn(full.shape, generator=g)).to(self.device)
        else:
            x = full.clone()
        temporal = [
            (to_tensor(self._work(wp), self.device), to_tensor(c[..., None], self.device)) for wp, c in temporal
        ]
        schedule = level_iterations(iterations, s.coarse_to_fine) if schedule is None else list(schedule)
        levels = [scaled((h, w), 1 / 2**k) for k in reversed(range(len(schedule)))]
        done, total_iters = 0, sum(schedule)
        for size, count in zip(levels, schedule):
            x = resize(x, size).detach().clone()
            objective = self._objective(
                resize(full, size), [(resize(wp, size), resize(c, size)) for wp, c in temporal], work
            )
            x, n = self._optimise(x, objective, count, lambda i, loss: on_step and on_step(done + i, total_iters, loss))
            done += count
        return to_numpy(x.clamp(0, 1)) if not s.preserve_colors else with_colors_of(to_numpy(x.clamp(0, 1)), content)

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
                if (
                    s.tolerance > 0
                    and len(history) > window
                    and abs(history[-window - 1] - loss) < s.tolerance * abs(loss)
                ):
                    return x.detach(), i
        return x.detach(), len(history)
