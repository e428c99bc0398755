"""Optimising one frame with style regions: guided Gram matrices (Gatys et al. 2017).

Each region r of the mapping (``regions.py``) has a soft mask ``m_r`` over the frame
(``sum_r m_r = 1``), a style target (its image's Gram matrices, or the blended Gram of a
weighted blend, as :class:`~stylize_core.network.optimize.Stylizer`) and a strength ``s_r``. At
every style layer l the mask is resized by area to the layer's size (``m_r^l``) and the
generated image's guided Gram is ``G_r^l = (F^l m_r^l)(F^l m_r^l)^T / (C_l sum m_r^l)``
(``losses.guided_gram``). The loss of a frame x with content c is

    L = alpha L_content + beta' sum_r s_r a_r sum_l mean((G_r^l - T_r^l)^2)
        + lambda_tv L_tv + gamma L_temporal + KEEP_WEIGHT L_keep

with ``beta' = style_weight * strength`` (the settings'), ``a_r = mean(m_r)`` the region's
share of the frame (0..1) and ``T_r^l`` its target. The content loss is a mean over the
whole frame, so a region's content term is proportional to its area; weighting its style
term by ``a_r`` keeps each region's style/content balance that of a full-frame job, and a
single full-frame region of strength 1 is exactly the plain loss. Regions without pixels
(``a_r < MIN_SHARE``) and ``keep`` regions have no style term.

``keep`` regions: ``L_keep = mean(k * ((x - c) * 255)^2)`` over all values, ``k`` the summed
keep masks (the temporal loss's units), which holds them at the input while the other regions'
strokes meet them, and the result is composited ``(1 - k) x + k c`` (``regions.composite``), so
their pixels are the input's away from the soft edges. The temporal loss and its reliability
weights stay global: a kept region still takes part in it.
"""

import torch
import torch.nn.functional as F

from ..io.regions import composite
from .losses import content_loss, guided_gram, style_loss, temporal_loss, tv_loss
from .optimize import Stylizer, to_tensor

KEEP_WEIGHT = 1000.0  # weight of L_keep (temporal loss units; the default temporal weight is 200)
MIN_SHARE = 1e-4  # a region covering less of the frame has no style term


def _area(mask, size):
    return mask if tuple(mask.shape[-2:]) == tuple(size) else F.interpolate(mask, size=size, mode="area")


class RegionStylizer(Stylizer):
    """A :class:`Stylizer` whose style loss is guided per region.

    ``images``: the style images (each loaded once); ``regions``: per mapping region its blend
    ``[(image index, weight), ...]`` (weights summing to 1) and strength, or None for keep:
    ``[(blend or None, strength), ...]``.
    """

    def __init__(self, vgg, images, regions, settings, device="cpu"):
        super().__init__(vgg, [(img, 1.0) for img in images], settings, device)
        self.regions = list(regions)
        self._masks = None

    def _objective(self, content, temporal, frame=None):
        s = self.settings
        size = tuple(content.shape[-2:])
        masks = _area(self._masks, size)  # (1, R, H, W)
        with torch.no_grad():
            feats = self.features(content)
        net = self.vgg
        target = feats[net.content_layer]
        shares = masks.mean((0, 2, 3)).tolist()
        terms = []  # (weight s_r a_r, targets per layer, masks per layer)
        for r, (blend, strength) in enumerate(self.regions):
            if blend is None or shares[r] < MIN_SHARE or strength == 0:
                continue
            layer_masks = [_area(masks[:, r : r + 1], feats[n].shape[-2:]) for n in net.style_layers]
            terms.append((strength * shares[r], self.blend_grams(blend, size, frame), layer_masks))
        kept = [r for r, (blend, _) in enumerate(self.regions) if blend is None]
        keep = masks[:, kept].sum(1, keepdim=True) if kept else None
        style_w = s.style_weight * s.strength

        def f(x):
            feats = self.features(x)
            style = x.new_zeros(())
            for weight, grams, layer_masks in terms:
                style = style + weight * style_loss(
                    [guided_gram(feats[n], m) for n, m in zip(net.style_layers, layer_masks)], grams, net.style_weights
                )
            parts = {
                "content": net.content_scale * content_loss(feats[net.content_layer], target),
                "style": style,
                "tv": tv_loss(x),
            }
            parts["temporal"] = sum((temporal_loss(x, w, c) for w, c in temporal), x.new_zeros(()))
            parts["keep"] = torch.mean(keep * ((x - content) * 255.0) ** 2) if keep is not None else x.new_zeros(())
            total = (
                s.content_weight * parts["content"]
                + style_w * parts["style"]
                + s.tv_weight * parts["tv"]
                + s.temporal_weight * parts["temporal"]
                + KEEP_WEIGHT * parts["keep"]
            )
            return total, parts

        return f

    def _set_masks(self, masks):
        self._masks = to_tensor(masks.transpose(1, 2, 0), self.device)

    def losses(self, image, content, masks, temporal=()):
        """Unweighted loss terms (floats) of ``image`` under ``masks`` (R, H, W)."""
        self._set_masks(masks)
        return super().losses(image, content, temporal)

    def stylize(self, content, masks, init=None, temporal=(), iterations=None, on_step=None, seed=None, keep=None):
        """:meth:`Stylizer.stylize` with the region weights ``masks`` (R, H, W) at the content's
        size; ``keep`` (H, W): the keep regions' summed weight, composited with the content."""
        self._set_masks(masks)
        try:
            out = super().stylize(
                content, init=init, temporal=temporal, iterations=iterations, on_step=on_step, seed=seed
            )
        finally:
            self._masks = None
        return composite(out, content, keep)
