"""Job settings, their defaults and the three presets.

Loss normalisation. Every loss is expressed in the units of the Caffe VGG-19 the
paper used: pixels in 0..255 and, with torchvision's weights (the default), features
multiplied by 255 x the mean ImageNet std (~57.6, ``vgg.TORCHVISION_FEATURE_SCALE``),
which undoes the input normalisation those weights were trained with; with the Caffe
weights themselves (``--vgg caffe``, ``weights.py``) the features are already in those
units and the ratios below hold exactly. Content and style losses are means of squared
differences (Gram matrices divided by C*H*W), the temporal loss is the per-pixel
weighted mean of squared differences over all D = W*H*C values, summed over the
earlier frames. With these units the paper's ratios apply as they are:
content : style : temporal = 1 : 20 : 200 (alpha, beta, gamma). The original Lua
defaults (content 5, style 100, temporal 1000, tv 1e-3) are the same ratios
multiplied by 5; we divide by 5 so the content weight is 1, hence tv 2e-4.

Modes. ``quality`` optimises every frame (the paper). ``fast`` (docs/fast_mode.md,
``fast_mode.py``) optimises only keyframes (with the first-frame ``iterations``) and
carries their look to the other frames by guided patch synthesis (``fast.py``):
~0.3-2 s a frame on a CPU instead of minutes. Its keyframes are the first frame, every
``keyframe_every``-th frame after it (0 = the first frame only: the default, since each
one costs a quality-mode frame; the bench measured visible drift after ~60 frames of new
content, so 30-60 suits long shots) and the frames given a painted image (``--keyframe``),
which replaces the automatic one there. ``fast_backend`` picks the patch search (``auto``:
the compiled numba search on the CPU when numba is installed, else the torch one).

L-BFGS history (``lbfgs_history``, the pairs of the two-loop recursion; Torch7's and our former
default 100). Each entry costs 24 bytes a processed pixel (~72 in peak RSS on the CPU, see
``memory.py``): 100 entries are 14 GB of a 1920x1080 run on the CPU, and the two-loop recursion's
time grows with it. Measured (``python -m bench history --vgg random:2 --parallel``: the
real-weights test's Sintel pair at 128x54, the standard preset without early stop, a random VGG
of half the widths: the losses compare the optimiser only), total loss after the iterations and
relative to 100:

| history | frame 1, 400 it | frame 2 (warped init + temporal), 200 it | history MB at 128x54 |
|---|---|---|---|
| 100 | 5598 | 8373 | 15.8 |
| 50 | 5586 (-0.21 %) | 8323 (-0.61 %) | 7.9 |
| 20 | 5629 (+0.56 %) | 8385 (+0.14 %) | 3.2 |
| 10 | 5672 (+1.33 %) | 8352 (-0.26 %) | 1.6 |

20 reaches the loss of 100 within 0.6 % (as close as 50's, and in the other direction) with a
fifth of the memory, so it is the default (the paper presets keep 100); 10 is the last the
memory plan goes down to.

The paper presets. ``paper`` is the authors' single-pass algorithm with their published
defaults, ``paper-multipass`` their multi-pass one; our defaults (``standard``) keep these
deviations, each a documented option:
- iterations 2000 / 1000 (ours 400 / 200, measured: ``python -m bench schedule --part later``,
  Sintel clip at 192x82, random VGG, no early stop: a later frame, initialised from the warped
  previous result, is within 1 % of its 200-iteration loss after a median 104 iterations and within
  0.2 % after 166, and the 1e-4/10 early stop never ends one before 200; the first frame needs 144
  and 276 of its 400), first frame from noise (ours: the content),
  DeepFlow (ours: DIS, ~100x faster);
- L-BFGS history 100 (Torch7's ``optim.lbfgs``; ours 20, measured above);
- early stop (``tolerance``, ``tolerance_window``): the loss changed by less than 1e-4
  (relative) over the last 50 iterations (the authors); ours 1e-4 over 10, which stops
  sooner once the loss has flattened;
- ``style_match="area"``: the style image's area equals the frame's (x ``style_scale``^2),
  the authors'; ours (``side``) matches the longer sides: for a square style on a 1024x436
  frame 1024x1024 instead of 668x668, strokes 1.53x larger in frame pixels. Kept as the
  default so existing jobs keep their look; a style on a wide frame looks finer with ``area``;
- ``reliability_widen`` (px of the processing size): the authors' consistency checker
  widens and smooths the regions the temporal loss leaves out; the paper presets use 2 px
  (``consistency.widen_mask``: 0 within 2 px, a ramp to 1 at 4 px). Our default is 0 (the
  hard mask of Sec. 3.2); measured on the 17 Sintel pairs (``bench reliability``, DIS, scale
  0.5, input frames): the pixels the 2-px widening removes carry 2.4x the warping error of
  pixels far from the edges (0.00184 vs 0.00076) and the weighted error in a 6-px band at the
  edges drops 24 % (0.00150 -> 0.00113), at the cost of 12 % of the constrained pixels
  (66 % -> 58 % of the frame);
- ``init="random"``: where the warped previous frame is unreliable the initialisation is the
  mean pixel (as the authors), with ``init="content"`` the content;
- multi-pass (``paper-multipass``): 15 passes of 100 iterations, ``first_pass="independent"``
  (pass 1 optimises every frame on its own from the same noise image; ours, ``warped``,
  chains the warped results like the single pass, which converges in fewer passes but gives
  the first direction a head start), the temporal loss from pass 8 (ours 2) with half the
  temporal weight (100; ours 200), blend 0.5 (both).
"""
from dataclasses import asdict, dataclass

from .errors import StylizeError

PRESETS = {  # what each preset changes from the Settings defaults (described below)
    "draft": dict(scale=0.5, iterations=100, iterations_later=50, flow_preset="ultrafast",
                  long_term=(1,), tolerance=1e-3),
    "standard": dict(),
    # The authors' settings (paper and their published defaults, see "The paper preset" above).
    "paper": dict(iterations=2000, iterations_later=1000, init="random", flow="deepflow",
                  tolerance=1e-4, tolerance_window=50, style_match="area", reliability_widen=2.0,
                  first_pass="independent", temporal_from_pass=8, pass_iterations=100, lbfgs_history=100),
}
# The authors' multi-pass algorithm: the paper preset with 15 passes and half the temporal weight.
PRESETS["paper-multipass"] = dict(PRESETS["paper"], passes=15, temporal_weight=100.0)

PRESET_DESCRIPTIONS = {
    "draft": "Fast look at a clip: half resolution, few iterations, the fastest optical flow.",
    "standard": "Full resolution with long-term consistency and early stopping.",
    "paper": "The paper's single-pass settings: 2000/1000 L-BFGS iterations (early stop over 50), random "
             "first frame, DeepFlow, style matched by area, widened reliability masks.",
    "paper-multipass": "The paper's multi-pass settings: 15 passes of 100 iterations, independent first "
                       "pass from one noise image, temporal loss (half weight) from pass 8.",
}

CHOICES = {"pooling": ("max", "avg"), "init": ("content", "random"), "optimizer": ("lbfgs", "adam"),
           "temporal": ("none", "short", "long"), "flow": ("dis", "deepflow", "raft", "flo", "vector"),
           "flow_preset": ("ultrafast", "fast", "medium"), "mode": ("quality", "fast"),
           "fast_backend": ("auto", "numba", "torch"), "style_match": ("side", "area"),
           "first_pass": ("warped", "independent")}


@dataclass
class Settings:
    """Everything that determines a job's output (recorded in its manifest)."""
    content_weight: float = 1.0
    style_weight: float = 20.0
    strength: float = 1.0             # multiplies style_weight
    temporal_weight: float = 200.0
    tv_weight: float = 2e-4
    preserve_colors: bool = False
    scale: float = 1.0                # processing size relative to the input
    style_scale: float = 1.0          # style image size relative to the frame's (see style_match)
    style_match: str = "side"         # side: longer sides equal (x style_scale) | area: areas equal (paper)
    pooling: str = "max"
    init: str = "content"             # first frame: content | random
    optimizer: str = "lbfgs"          # lbfgs | adam
    lbfgs_history: int = 20           # L-BFGS curvature pairs kept (memory.py: 24 bytes a pixel each)
    adam_lr: float = 10.0             # Adam step size in 0..255 pixel units
    iterations: int = 400             # first frame (and every frame without temporal loss)
    iterations_later: int = 200       # frames initialised from the warped previous result
    tolerance: float = 1e-4           # early stop: relative loss change over tolerance_window iterations
    tolerance_window: int = 10        # early stop window in iterations (paper: 50)
    coarse_to_fine: int = 1           # pyramid levels (1 = single scale)
    temporal: str = "long"            # none | short | long
    long_term: tuple = (1, 10, 20, 40)
    passes: int = 1                   # > 1: multi-pass, alternating direction
    pass_iterations: int = 100
    temporal_from_pass: int = 2       # multi-pass: temporal loss from this pass on (paper: 8)
    first_pass: str = "warped"        # multi-pass pass 1: warped (chained) | independent (paper)
    blend: float = 0.5                # multi-pass: weight of the warped neighbour in the init
    reliability_widen: float = 0.0    # px the excluded regions of the reliability weights grow by
    flow: str = "dis"                 # dis | deepflow | raft | flo | vector
    flow_preset: str = "medium"
    flow_scale: float = 1.0
    seed: int = 0
    mode: str = "quality"             # quality (every frame optimised) | fast (keyframes + synthesis)
    keyframe_every: int = 0           # fast: a keyframe every N frames from the first (0 = first only)
    keyframe_zoom: float = 2.0        # fast: a new keyframe where the carried strokes' area scale leaves [1/z, z] (0 = off)
    fast_backend: str = "auto"        # fast: patch search auto | numba | torch
    preset: str = "standard"

    def __post_init__(self):
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise StylizeError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("scale", "style_scale", "flow_scale"):
            if not 0 < getattr(self, name) <= 4:
                raise StylizeError(f"{name} must be in (0, 4], got {getattr(self, name)}")
        for name in ("iterations", "iterations_later", "coarse_to_fine", "passes", "pass_iterations",
                     "tolerance_window", "lbfgs_history"):
            if getattr(self, name) < 1:
                raise StylizeError(f"{name} must be at least 1, got {getattr(self, name)}")
        if any(j < 1 for j in self.long_term) or not self.long_term:
            raise StylizeError(f"long_term offsets must be positive, got {self.long_term}")
        if self.keyframe_zoom != 0 and self.keyframe_zoom <= 1:
            raise StylizeError(f"keyframe_zoom must be 0 (off) or above 1, got {self.keyframe_zoom}")
        if self.keyframe_every < 0:
            raise StylizeError(f"keyframe_every must be 0 (the first frame only) or positive, "
                               f"got {self.keyframe_every}")
        if not 0 <= self.reliability_widen <= 64:
            raise StylizeError(f"reliability_widen must be in [0, 64] pixels, got {self.reliability_widen}")
        if not 0 <= self.blend <= 1:
            raise StylizeError(f"blend must be in [0, 1], got {self.blend}")

    @classmethod
    def from_preset(cls, name="standard", **overrides):
        """Settings of a preset with ``overrides`` (None values are ignored)."""
        if name not in PRESETS:
            raise StylizeError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(preset=name, **values)

    @property
    def offsets(self):
        """Earlier frames tied to the current one by the temporal loss, closest first."""
        if self.temporal == "none":
            return ()
        return (1,) if self.temporal == "short" else tuple(sorted(self.long_term))

    def to_dict(self):
        d = asdict(self)
        d["long_term"] = list(self.long_term)
        return d

