"""Memory a run needs, what the device has, and out-of-memory errors as one clear message.

Estimate (bytes) of the peak of one frame's optimisation at the processing size
``W x H`` (``P = W * H`` pixels), with 4-byte float32 values:

- **activations** = ``4 * (2 * A + 2 * I + F + 3 P)``: ``A`` = sum over the VGG-19 convs up
  to relu5_1 of ``C_l * H_l * W_l`` (each ReLU output is kept for the backward pass and
  gets a gradient of the same size), counted from the layer table in ``vgg.py``
  (``H_l = H // 2^k`` after k poolings; ``A`` = 290 P for the real widths); ``I`` = the
  max-pooling indices (int64, hence the factor 2: ``I`` = 30 P); ``F`` = the copies of the
  six loss layers multiplied by the network's ``feature_scale`` (130 P); ``3 P`` = the normalised input.
- **optimizer**: L-BFGS (torch ``history_size=100``) keeps 2 vectors of ``3 P`` values
  per history entry, ``h = min(iterations - 1, 100)`` entries, plus 5 working vectors
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
"""
import os
import re

from .errors import StylizeError
from .losses import CONTENT_LAYER, STYLE_LAYERS
from .vgg import _CFG

FLOAT = 4
LBFGS_HISTORY = 100       # torch.optim.LBFGS(history_size=100) in optimize.py
CPU_HEAP_FACTOR = 3       # measured growth of the peak RSS per L-BFGS history vector / its size
GB = 1024 ** 3


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


def estimate(size, settings, device="cpu", input_size=None, iterations=None):
    """Peak memory of a run at processing ``size = (W, H)``: dict of parts and ``total``, in bytes.

    ``iterations`` (default: the largest of the settings) sets the L-BFGS history length;
    ``input_size = (W, H)`` of the frames on disk (default ``size``). See the module doc.
    """
    w, h = size
    p = w * h
    layers = _layers(w, h)
    a = sum(c * n for _, c, n in layers)
    feats = {"relu" + name[4:]: c * n for name, c, n in layers}
    f = sum(feats[name] for name in (CONTENT_LAYER,) + STYLE_LAYERS)
    parts = {"activations": FLOAT * (2 * a + 2 * _pool_outputs(w, h) + f + 3 * p)}
    s = settings
    if iterations is None:
        iterations = max(s.iterations, s.iterations_later, s.pass_iterations)
    if s.optimizer == "adam":
        parts["optimizer"] = FLOAT * 3 * p * 3
    else:
        history = min(max(iterations - 1, 0), LBFGS_HISTORY)
        heap = CPU_HEAP_FACTOR if str(device).startswith("cpu") else 1
        parts["optimizer"] = FLOAT * 3 * p * (2 * history * heap + 5)
    grams = sum(c * c for name, c, _ in layers if "relu" + name[4:] in STYLE_LAYERS)
    parts["targets"] = FLOAT * (3 * 3 * p + feats[CONTENT_LAYER] + grams)
    offsets = len(s.offsets) if s.passes == 1 else (1 if s.passes >= s.temporal_from_pass else 0)
    kept = (max(s.offsets, default=0) + 1) if s.passes == 1 else 2
    parts["temporal"] = FLOAT * (13 * p * offsets + 3 * p * kept * (offsets > 0 or s.passes > 1))
    wi, hi = input_size or size
    parts["frames"] = FLOAT * 2 * 3 * wi * hi
    parts["network"] = FLOAT * sum(c_in * c * 9 + c for c_in, (_, c, _) in
                                   zip([3] + [c for _, c, _ in layers[:-1]], layers))
    parts["total"] = sum(parts.values())
    return parts


def processing_size(input_size, scale):
    """The schedule's processing size for ``scale`` (each side at least 16 px)."""
    return max(round(input_size[0] * scale), 16), max(round(input_size[1] * scale), 16)


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


def max_scale(input_size, settings, device, free):
    """Largest ``--scale`` (rounded down to 2 decimals) whose estimate fits in ``free`` bytes, or None."""
    def fits(scale):
        return estimate(processing_size(input_size, scale), settings, device, input_size)["total"] <= free
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


def check_fits(size, settings, device, input_size):
    """Refuse a run whose estimate exceeds the memory available on ``device`` (StylizeError)."""
    free = available(device)
    if free is None:
        return
    need = estimate(size, settings, device, input_size)["total"]
    if need <= free:
        return
    name = str(device).split(":")[0].upper()
    scale = max_scale(input_size, settings, device, free)
    advice = (f"use --scale {scale:.2f} or lower" if scale else
              "not even --scale 0.01 fits; free some memory")
    if settings.optimizer == "lbfgs" and scale:
        adam = estimate(size, _with(settings, optimizer="adam"), device, input_size)["total"]
        advice += f", or --optimizer adam (needs {adam / GB:.1f} GB at this scale)"
    raise StylizeError(f"not enough {name} memory: this run needs about {need / GB:.1f} GB at "
                       f"{size[0]}x{size[1]} (--scale {settings.scale:g}), {free / GB:.1f} GB is "
                       f"available; {advice}")


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


_OOM_TEXT = re.compile(r"out of memory|can't allocate memory|not enough memory|"
                       r"cannot allocate memory|failed to allocate", re.I)


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
    return (f"out of {kind.upper()} memory on frame {frame + 1} at {size[0]}x{size[1]} "
            f"(--scale {settings.scale:g}, estimated need {need / GB:.1f} GB); try a lower --scale "
            f"(e.g. {settings.scale / 2:g})" + ("" if kind == "cpu" else " or --device cpu"))


def non_finite_message(frame, pass_, settings):
    """One line for a loss that became NaN or infinite on 0-based ``frame``."""
    other = "--optimizer adam" if settings.optimizer == "lbfgs" else "--optimizer lbfgs or a lower --adam-lr"
    return (f"the loss became NaN or infinite on frame {frame + 1} (pass {pass_}); lower "
            f"--style-weight, --temporal-weight or --strength, or try {other}")
