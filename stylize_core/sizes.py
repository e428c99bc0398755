"""Sizes in pixels: a size scaled by a factor, each side rounded and at least a floor (the processing size, the
coarse-to-fine levels, a style image's matched size, the flow estimation size), and the rule that matches a style
image to the frames. Pure arithmetic (it imports nothing), so ``settings`` checks a job's sizes with the rule
the engine then uses."""

MIN_SIDE = 16  # px: the smallest frame side the loss network takes (relu5_1 is at 1/16 of it)


def scaled(size, factor, least=MIN_SIDE):
    """``size`` (a tuple of sides in either order, (W, H) or (H, W)) times ``factor``, each side rounded to whole
    pixels and at least ``least`` (``MIN_SIDE``, the smallest side the loss network takes, unless told)."""
    return tuple(max(round(side * factor), least) for side in size)


def processing_size(input_size, scale):
    """The schedule's processing size (W, H) for frames of ``input_size`` (W, H) and ``--scale``."""
    return scaled(input_size, scale)


def style_size(style_hw, frame_hw, settings, clamp=True):
    """Size (H, W) the style image is resized to for frames of ``frame_hw`` = (H, W).

    ``style_match="area"`` (the authors'): the style image's area equals the frame's times
    ``style_scale``^2, i.e. both sides are multiplied by ``style_scale * sqrt(H W / (h w))``.
    ``"side"`` (ours, the default): its longer side equals the frame's longer side times
    ``style_scale``. A square style on a 1024x436 frame is 1024x1024 by side and 668x668 by
    area: strokes, measured in frame pixels, are 1.53x larger by side. Each side >= ``MIN_SIDE`` px
    with ``clamp`` (``Settings.check_size`` refuses settings that would need the clamp).
    """
    (h, w), (fh, fw) = style_hw, frame_hw
    if settings.style_match == "area":
        f = settings.style_scale * (fh * fw / (h * w)) ** 0.5
    else:
        f = settings.style_scale * max(fh, fw) / max(h, w)
    return scaled((h, w), f, MIN_SIDE if clamp else 0)
