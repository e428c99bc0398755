"""Memory a run needs, what the device has, the fallbacks that make it fit, out-of-memory messages.

Estimate (bytes) of the peak of one frame's optimisation at the processing size
``W x H`` (``P = W * H`` pixels), with 4-byte float32 values:

- **activations** = ``4 * (2 * A + 2 * I + 3 P)``: ``A`` = sum over the VGG-19 convs up
  to relu5_1 of ``C_l * H_l * W_l`` (each ReLU output is kept for the backward pass and
  gets a gradient of the same size), counted from the layer table in ``vgg.py``
  (``H_l = H // 2^k`` after k poolings; ``A`` = 290 P for the real widths); ``I`` = the
  max-pooling indices (int64, hence the factor 2: ``I`` = 30 P); ``3 P`` = the normalised
  input. The loss features are the network's own outputs (``vgg.py`` folds its
  ``feature_scale`` in; the scaled copies cost 130 P more before, 17 % of the measured peak).
  With **checkpointing** (``vgg.checkpoint``): ``4 * (2 K + S + 3 P)``, ``K`` = what the
  segments keep (the six loss layers, 130 P, and the pooling outputs that start a segment,
  30 P) with their gradients, ``S`` = the largest segment recomputed in the backward pass
  with its gradients (``2 * (its ReLU outputs + its pooling indices)``: conv1_2 and pool1,
  160 P): 483 P against 643 P. Measured (one step, 512x384, torch 2.13 CPU, peak RSS growth):
  3478 bytes a pixel with the scaled copies, 2897 without, 2297 with checkpointing; the
  iteration takes ~1.35x as long (one more forward pass).
- **optimizer**: L-BFGS (``settings.lbfgs_history`` = m) keeps 2 vectors of ``3 P`` values
  per history entry, ``h = min(iterations - 1, m)`` entries, plus 5 working vectors
  (the image's gradient, the flat gradient, the previous one, the direction, ``q``):
  ``4 * 3 P * (2 h * HEAP + 5)``. ``HEAP`` = 3 on the CPU: glibc's heap fragments between
  the history vectors and the activations freed every iteration, and the peak RSS grows
  by ~3x the history's size (measured 56-77 bytes per pixel and entry against 24 counted,
  torch 2.13, 128x96 to 256x192); 1 on CUDA/MPS (caching allocators).
  Adam: ``4 * 3 P * 3`` (two moments and the gradient).
- **targets**: the content, the image, its initialisation (``3 P`` each) and the content
  target relu4_2 (``512 * P / 64``); the Gram targets (``sum C_l^2`` over the style
  layers), all ``* 4``.
- **temporal**: per earlier frame of the temporal loss, its warped result and weights as
  tensors (``4 P``), as numpy arrays with the long-term weights (``5 P``) and its two flows
  (``4 P``): ``4 * 13 P``; plus the earlier results the schedule keeps in memory
  (``max(offsets) + 1`` of ``3 P``; 2 in multi-pass).
- **frames**: one input frame read at the input size and the result resized back to
  it: ``4 * 2 * 3 * W_in * H_in``.
- **network**: the VGG-19 weights up to conv5_1 (12.9 M floats, 52 MB).

The style Grams are computed once by a gradient-free pass, before the optimisation and
smaller than it, so they do not add to the peak. ``total`` is the sum, in bytes.
On the CPU (torch 2.13) the measured growth of the peak RSS is 1.0-1.25x the sum of
activations, optimizer and targets at 256x192 to 512x384 after 1 to 60 L-BFGS
iterations (tests/test_memory.py checks one step at two sizes).

Fitting (:func:`plan`, called by ``schedule.Job`` before anything is recorded): when the
estimate exceeds the memory available on the device, in this order,
1. a shorter L-BFGS history: the longest of ``HISTORIES`` (down to 10) that fits: the
   cheapest change (``bench history``: the loss after 400 / 200 iterations within ~1 % for
   20 to 100 entries), 24 bytes a pixel an entry (72 on the CPU);
2. activation checkpointing (with the longest history that then fits, at least 10): the same
   values, ~1.35x the time per iteration;
3. a lower processing scale (with both), the largest that fits (2 decimals), down to
   ``MIN_SCALE_FACTOR`` x the requested one (a quarter of the side: below that the result is
   another picture, so it is not chosen silently);
and only when nothing fits the run is refused with the estimate and a scale that would fit.
At 1920x1080 with the standard preset (history 20) the plan is 9.4 GB on the CPU and 7.6 GB on
CUDA: it runs as asked on this 24 GB CPU and a 12 GB GPU; a 6 GB GPU gets history 10 and
checkpointing (5.9 GB), a 4 GB one also --scale 0.82 (``python -m bench hd``; measured there:
the engine on 2 frames of 1920x1080, 2 iterations each, peaked at 5.5 GB RSS against 6.8 GB
estimated for those iterations).
The choice is one ``warning`` event and the manifest's ``memory`` entry; the job's identity
keeps the *requested* settings (the same command resumes the same job whatever memory is
free that day), the manifest's ``settings`` are the effective ones. The plan is made again
by every run: a job resumed with more (or less) free memory continues with that run's plan.
"""

import os
import re
from dataclasses import dataclass, field

from ..errors import StylizeError
from ..sizes import processing_size
from .losses import CONTENT_LAYER, STYLE_LAYERS
from .vgg import _CFG

FLOAT = 4
HISTORIES = (50, 20, 10)  # shorter L-BFGS histories tried, longest first (the last is the shortest)
MIN_SCALE_FACTOR = 0.25  # the automatic scale goes down to this fraction of the requested one
CPU_HEAP_FACTOR = 3  # measured growth of the peak RSS per L-BFGS history vector / its size
GB = 1024**3
# MobileNetV2 (``--network mobilenet``, ``mobilenet.py``) up to its deepest loss layer (block13_expand), forward +
# backward of the style losses: measured peak RSS growth 0.72-0.74 GB at 1024x436 (1640 bytes a pixel; VGG-19
# 2900), 0.51-0.55 GB with checkpointing (1190); its weights are 3.5 M floats.
MOBILENET_BYTES = {False: 1640, True: 1190}
MOBILENET_WEIGHTS = 3_500_000


def _layers(w, h):
    """``[(name, channels, H_l * W_l)]`` of every conv of VGG-19 up to conv5_1, real widths."""
    out = []
    for item in _CFG:
        if item == "M":
            w, h = w // 2, h // 2
        else:
            out.append((item[0], item[1], w * h))
    return out


def _pool_outputs(w, h):
    """Values of the outputs of the poolings before conv5_1 (one index each)."""
    total, channels = 0, 3
    for item in _CFG:
        if item == "M":
            w, h = w // 2, h // 2
            total += channels * w * h
        else:
            channels = item[1]
    return total


def _checkpointed(w, h):
    """``(K, S)`` of the module doc: values kept by the checkpointed segments, and the largest
    segment's recomputed ReLU outputs and pooling indices with their gradients."""
    wanted = {"conv" + name[4:] for name in (CONTENT_LAYER,) + STYLE_LAYERS}
    kept, largest, seg, channels = 0, 0, 0, 3
    for item in _CFG:
        if item == "M":
            w, h = w // 2, h // 2
            pooled = channels * w * h
            largest, seg, kept = max(largest, seg + 2 * pooled), 0, kept + pooled
        else:
            name, channels = item
            seg += 2 * channels * w * h
            if name in wanted:
                largest, seg, kept = max(largest, seg), 0, kept + channels * w * h
    return kept, max(largest, seg)


def estimate(size, settings, device="cpu", input_size=None, iterations=None, checkpoint=False, network="vgg19"):
    """Peak memory of a run at processing ``size = (W, H)``: dict of parts and ``total``, in bytes.

    ``iterations`` (default: the largest of the settings) bounds the L-BFGS history length;
    ``input_size = (W, H)`` of the frames on disk (default ``size``); ``checkpoint``: the VGG
    runs with activation checkpointing; ``network``: ``vgg19`` (counted from its layers, module doc)
    or ``mobilenet`` (measured: ``MOBILENET_BYTES``). See the module doc.
    """
    w, h = size
    p = w * h
    layers = _layers(w, h)
    a = sum(c * n for _, c, n in layers)
    feats = {"relu" + name[4:]: c * n for name, c, n in layers}
    if network == "mobilenet":
        parts = {"activations": MOBILENET_BYTES[bool(checkpoint)] * p}
    elif checkpoint:
        kept, largest = _checkpointed(w, h)
        parts = {"activations": FLOAT * (2 * kept + largest + 3 * p)}
    else:
        parts = {"activations": FLOAT * (2 * a + 2 * _pool_outputs(w, h) + 3 * p)}
    s = settings
    if iterations is None:
        iterations = max(s.iterations, s.iterations_later, s.pass_iterations)
    if s.optimizer == "adam":
        parts["optimizer"] = FLOAT * 3 * p * 3
    else:
        history = min(max(iterations - 1, 0), s.lbfgs_history)
        heap = CPU_HEAP_FACTOR if str(device).startswith("cpu") else 1
        parts["optimizer"] = FLOAT * 3 * p * (2 * history * heap + 5)
    if network == "mobilenet":  # Grams of 32, 96, 144, 192, 576 channels; content: 192 channels at stride 8
        grams, content = 32**2 + 96**2 + 144**2 + 192**2 + 576**2, 192 * p // 64
    else:
        grams = sum(c * c for name, c, _ in layers if "relu" + name[4:] in STYLE_LAYERS)
        content = feats[CONTENT_LAYER]
    parts["targets"] = FLOAT * (3 * 3 * p + content + grams)
    offsets = len(s.offsets) if s.passes == 1 else (1 if s.passes >= s.temporal_from_pass else 0)
    kept = (max(s.offsets, default=0) + 1) if s.passes == 1 else 2
    parts["temporal"] = FLOAT * (13 * p * offsets + 3 * p * kept * (offsets > 0 or s.passes > 1))
    wi, hi = input_size or size
    parts["frames"] = FLOAT * 2 * 3 * wi * hi
    parts["network"] = FLOAT * (
        MOBILENET_WEIGHTS
        if network == "mobilenet"
        else sum(c_in * c * 9 + c for c_in, (_, c, _) in zip([3] + [c for _, c, _ in layers[:-1]], layers))
    )
    parts["total"] = sum(parts.values())
    return parts


def available(device="cpu"):
    """Bytes free for this run on ``device``, or None when it cannot be told.

    CPU: ``MemAvailable`` of /proc/meminfo (else free pages from ``os.sysconf``), lowered to
    the cgroup v2 limit left (``memory.max - memory.current``) in a container.
    CUDA: the free bytes of ``torch.cuda.mem_get_info``. MPS: torch's recommended maximum
    less what is allocated, where this torch has it.
    """
    kind = str(device).split(":")[0]
    if kind == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    if kind == "mps":
        import torch

        mps = getattr(torch, "mps", None)
        if mps is None or not hasattr(mps, "recommended_max_memory"):
            return None
        return int(mps.recommended_max_memory() - mps.current_allocated_memory())
    free = _meminfo_available()
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    left = _cgroup_left()
    return free if left is None else min(free, left)


def _meminfo_available(path="/proc/meminfo"):
    try:
        with open(path) as f:
            m = re.search(r"^MemAvailable:\s+(\d+) kB", f.read(), re.M)
    except OSError:
        return None
    return int(m.group(1)) * 1024 if m else None


def _cgroup_left(root="/sys/fs/cgroup"):
    try:
        with open(os.path.join(root, "memory.max")) as f:
            limit = f.read().strip()
        with open(os.path.join(root, "memory.current")) as f:
            current = int(f.read())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(int(limit) - current, 0)


def max_scale(input_size, settings, device, free, checkpoint=False, network="vgg19"):
    """Largest ``--scale`` (rounded down to 2 decimals) whose estimate fits in ``free`` bytes, or None."""

    def fits(scale):
        return (
            estimate(
                processing_size(input_size, scale), settings, device, input_size, checkpoint=checkpoint, network=network
            )["total"]
            <= free
        )

    if not fits(0.01):
        return None
    lo, hi = 0.01, settings.scale
    for _ in range(40):  # bisection; the estimate grows with the scale
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    best = int(lo * 100) / 100
    while best > 0.01 and not fits(best):  # rounding safety
        best = round(best - 0.01, 2)
    return best


@dataclass
class Plan:
    """What a run uses to fit: the effective ``settings`` (``lbfgs_history``, ``scale``), VGG
    ``checkpoint``-ing, the processing ``size``, its estimate ``need`` and the requested
    settings' ``requested`` (bytes), the ``free`` bytes (None: unknown) and the ``changes``
    (option-like strings; empty when the run fits as asked)."""

    settings: object
    checkpoint: bool
    size: tuple
    need: int
    requested: int
    free: object
    changes: list = field(default_factory=list)
    device: str = "cpu"

    @property
    def warning(self):
        """One line for the ``warning`` event, or None when nothing was changed."""
        if not self.changes:
            return None
        return (
            f"not enough {self.device.split(':')[0].upper()} memory for this run as asked (about "
            f"{self.requested / GB:.1f} GB, {self.free / GB:.1f} GB available): using "
            f"{_and(self.changes)} (about {self.need / GB:.1f} GB)"
        )

    def record(self):
        """The manifest's ``memory`` entry (bytes)."""
        return {
            "available": self.free,
            "estimate": self.need,
            "estimate_as_asked": self.requested,
            "lbfgs_history": self.settings.lbfgs_history,
            "checkpoint": self.checkpoint,
            "scale": self.settings.scale,
            "size": list(self.size),
            "fallbacks": list(self.changes),
        }


def _and(items):
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


CHECKPOINT_NOTE = "activation checkpointing (~1.35x the time per iteration)"


def plan(input_size, settings, device="cpu", free=None, network="vgg19"):
    """The :class:`Plan` of a run of frames of ``input_size = (W, H)`` on ``device`` with ``free``
    bytes (default :func:`available`) and the loss ``network`` (``estimate``): the requested
    ``settings`` if their estimate fits, else the fallbacks of the module doc in order; StylizeError
    (the estimate, a scale that would fit) when none fits."""
    s = settings
    free = available(device) if free is None else free
    size = processing_size(input_size, s.scale)
    need = estimate(size, s, device, input_size, network=network)["total"]
    if free is None or need <= free:
        return Plan(s, False, size, need, need, free, [], str(device))

    def attempt(history, checkpoint, scale):
        t = _with(s, lbfgs_history=history, scale=scale)
        sz = processing_size(input_size, scale)
        total = estimate(sz, t, device, input_size, checkpoint=checkpoint, network=network)["total"]
        if total > free:
            return None
        changes = (
            ([f"--lbfgs-history {history}"] if history != s.lbfgs_history else [])
            + ([CHECKPOINT_NOTE] if checkpoint else [])
            + ([f"--scale {scale:g} ({sz[0]}x{sz[1]})"] if scale != s.scale else [])
        )
        return Plan(t, checkpoint, sz, total, need, free, changes, str(device))

    lbfgs = s.optimizer == "lbfgs"
    shorter = [m for m in HISTORIES if m < s.lbfgs_history] if lbfgs else []
    shortest = min(s.lbfgs_history, HISTORIES[-1]) if lbfgs else s.lbfgs_history
    for fallback in [(m, False, s.scale) for m in shorter] + [(m, True, s.scale) for m in [s.lbfgs_history] + shorter]:
        found = attempt(*fallback)
        if found:
            return found
    least = _with(s, lbfgs_history=shortest)
    scale = max_scale(input_size, least, device, free, checkpoint=True, network=network)
    if scale and scale >= MIN_SCALE_FACTOR * s.scale:
        return attempt(shortest, True, scale)
    name = str(device).split(":")[0].upper()
    advice = f"use --scale {scale:.2f} or lower" if scale else "not even --scale 0.01 fits; free some memory"
    if lbfgs and scale:
        adam = estimate(size, _with(s, optimizer="adam"), device, input_size, checkpoint=True, network=network)["total"]
        advice += f", or --optimizer adam (needs {adam / GB:.1f} GB at this scale with checkpointing)"
    raise StylizeError(
        f"not enough {name} memory: this run needs about {need / GB:.1f} GB at "
        f"{size[0]}x{size[1]} (--scale {s.scale:g}), {free / GB:.1f} GB is available, "
        f"and still more than that with --lbfgs-history {shortest}, activation "
        f"checkpointing and --scale {MIN_SCALE_FACTOR * s.scale:g}; {advice}"
    )


def _with(settings, **changes):
    from dataclasses import replace

    return replace(settings, **changes)


def _oom_types():
    import torch

    types = [MemoryError]
    for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)):
        if isinstance(t, type) and t not in types:
            types.append(t)
    return tuple(types)


_OOM_TEXT = re.compile(
    r"out of memory|can't allocate memory|not enough memory|"
    r"cannot allocate memory|failed to allocate",
    re.I,
)


def is_out_of_memory(exc):
    """True for torch's and Python's out-of-memory errors (CPU, CUDA, MPS; old and new torch).

    torch < 2.5 has no ``torch.OutOfMemoryError``; its CPU allocator raises a RuntimeError
    "DefaultCPUAllocator: can't allocate memory", MPS a RuntimeError "MPS backend out of memory".
    """
    if isinstance(exc, _oom_types()):
        return True
    return isinstance(exc, RuntimeError) and bool(_OOM_TEXT.search(str(exc)))


def out_of_memory_message(device, frame, size, settings, input_size):
    """One line for an out-of-memory error on 0-based ``frame`` at processing ``size``."""
    need = estimate(size, settings, device, input_size)["total"]
    kind = str(device).split(":")[0]
    return (
        f"out of {kind.upper()} memory on frame {frame + 1} at {size[0]}x{size[1]} "
        f"(--scale {settings.scale:g}, estimated need {need / GB:.1f} GB); try a lower --scale "
        f"(e.g. {settings.scale / 2:g})" + ("" if kind == "cpu" else " or --device cpu")
    )


def non_finite_message(frame, pass_, settings):
    """One line for a loss that became NaN or infinite on 0-based ``frame``."""
    other = "--optimizer adam" if settings.optimizer == "lbfgs" else "--optimizer lbfgs or a lower --adam-lr"
    return (
        f"the loss became NaN or infinite on frame {frame + 1} (pass {pass_}); lower "
        f"--style-weight, --temporal-weight or --strength, or try {other}"
    )
