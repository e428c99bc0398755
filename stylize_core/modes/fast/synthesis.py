"""Fast mode's synthesis: carry the look of stylised keyframes to the frames between them.

Example-based synthesis after Jamriska et al. 2019, *Stylizing Video by Example*
(reimplemented from the paper): every output pixel is copied from the stylised
keyframe at a position found by a guided patch search (PatchMatch) between the
frame and the keyframe's input, with three guides:

- colour: 5x5 patches of the frame vs of the keyframe's input;
- positional: the keyframe coordinates the previous frame used, advected by the
  optical flow (a truncated quadratic penalty, so the colour guide can correct drift
  of a few pixels but a far-away look-alike never wins where the track is reliable);
- temporal: 5x5 patches of the previous output warped into this frame vs of the
  stylised keyframe (only where the flow is reliable).

Differences from the probe that motivated this version (see docs in bench/fast.py):

- *no averaging vote*: the output is the stylised keyframe sampled (bicubic, once,
  never resampled from frame to frame) at the matched coordinate of each pixel, so it
  is as sharp as the keyframe and nothing blurs over time;
- *coherence*: a candidate that continues a neighbour's match (``nnf(p+d) - d``) gets a
  bonus, larger where the positional guide is lost, so revealed regions are filled with
  coherent chunks of keyframe texture instead of isolated colour matches;
- *re-seeding*: the positional guide of the next frame is this frame's match (advected),
  so a revealed region is re-seeded from its best colour match and tracked from then on;
- the search behind one interface with two backends, picked once per :class:`Propagator`
  (``backends.py``): vectorised torch on whole frames (``torch_search.py``, any device, with the
  cost it minimises) or compiled for the CPU (``numba_search.py``).

Style regions (issue #10): with region weights per frame (``regions.Regions.masks``: R soft
maps summing to 1), each pixel's colour descriptor gets R more values, ``sqrt(REGION_WEIGHT)``
times its region weights, and the keyframe's descriptors its own region weights likewise, so
the cost of a match adds ``REGION_WEIGHT * |m_frame(p) - m_key(q)|^2``: 2 x REGION_WEIGHT
between two different regions, far above any colour cost (a mean squared difference per
value, <= 1), so a pixel is copied from the keyframe's pixels of its own region and strokes
never cross a region border; the positional guide's penalty is at most ``pos_weight``, so a
pixel whose region changed (an object moved over another) leaves its advected match.

Several keyframes: each frame between keyframes A < t < B is synthesised from A
(forward) and from B (backward) and the two are blended with weights falling linearly
with the distance to the keyframe, by a blend that keeps the texture's local contrast
(:func:`blend`; a plain average of two unaligned textures is a blur).

Which frames are keyframes is decided before (``plan.py``). Images are ``(H, W, 3)`` float32 RGB
in [0, 1]; flows follow ``motion/warp.py``. Nothing here reads or writes files: :func:`propagate`
takes a frame reader and a flow source (``motion.flow.make_flow_source``) and yields frames, so the
job owns IO, resume and progress.
"""

import time
import warnings
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ...ahead import ahead
from ...errors import StylizeError
from ...io.frames import resize
from ...motion.consistency import reliability
from ...motion.flow import resize_flow
from ...sizes import scaled
from . import backends, seams
from .backends import pick_backend


@dataclass
class FastSettings:
    """Everything that determines fast mode's output (for a job manifest)."""

    patch: int = 5  # patch side
    dims: int = 8  # PCA dimensions per guide (colour, style)
    pos_sigma: float = 2.0  # positional guide: pixels before the penalty saturates
    pos_weight: float = 0.02  # positional penalty at saturation (units: mean squared diff per value)
    temporal_guide_weight: float = 0.5  # temporal guide (the previous output, warped) relative to the colour guide
    coherence: float = 0.0015  # bonus per coherent 4-neighbour where the track holds
    coherence_lost: float = 0.004  # ... where the positional guide is lost
    lost_from_guide: bool = True  # an unreliable pixel starts its search from the advected match (not random)
    lost_rounds: int = 1  # search rounds over the pixels that lost their guide (2: same quality, slower)
    outlier: float = 4.0  # a tracked pixel whose cost exceeds outlier x median joins them
    combine: str = "select"  # between two keyframes: select (seams.py: one synthesis a pixel) or blend
    switch_frames: int = 3  # select: frames over which a pixel crosses over from A's synthesis to B's
    seed: int = 0

    def __post_init__(self):
        if self.patch < 1 or self.patch % 2 == 0:
            raise StylizeError(f"patch size must be odd and positive, got {self.patch}")
        if not 1 <= self.dims <= 3 * self.patch**2:
            raise StylizeError(f"dims must be in 1..{3 * self.patch**2}, got {self.dims}")

    def to_dict(self):
        """The settings as the job identity records them (``mode.FastMode.identity``, ``job/identity.py``)."""
        return {IDENTITY_NAMES.get(k, k): v for k, v in asdict(self).items()}


# The one place a field is recorded under another name. ``temporal_guide_weight`` was ``temporal_weight``, a name
# that means the temporal loss weight (gamma) in ``settings.py``; job identities (and so every job folder written
# before the rename, tests/test_identity_pins.py) hold the old name, so the identity keeps it.
IDENTITY_NAMES = {"temporal_guide_weight": "temporal_weight"}

REGION_WEIGHT = 1.0  # cost of matching another region, per unit of squared region weight difference


def prepare_keyframe(styled, size, name="keyframe"):
    """A stylised (e.g. painted) keyframe brought to the frame ``size`` = (W, H).

    Same size: unchanged. Same aspect ratio (within 1%): resized, with a warning.
    Another aspect ratio: refused (a crop or pad would silently shift the painting
    against the frame it must match).
    """
    styled = np.asarray(styled, np.float32)
    if styled.ndim != 3 or styled.shape[2] != 3:
        raise StylizeError(f"{name}: expected an RGB image (H, W, 3), got shape {styled.shape}")
    h, w = styled.shape[:2]
    if (w, h) == tuple(size):
        return styled
    if min(w, h) < 16:
        raise StylizeError(
            f"{name} is {w}x{h} px: too small to be carried to {size[0]}x{size[1]} frames (at least 16 px a side)"
        )
    if abs((w / h) / (size[0] / size[1]) - 1) > 0.01:
        raise StylizeError(
            f"{name} is {w}x{h} but the frames are {size[0]}x{size[1]}: "
            "the aspect ratios differ, crop or pad the painting to the frame's shape"
        )
    warnings.warn(f"{name} is {w}x{h}, resized to the frame size {size[0]}x{size[1]}", stacklevel=2)
    return np.clip(resize(styled, size), 0, 1).astype(np.float32)


def _t(img, device):
    img = np.ascontiguousarray(img, np.float32)
    if not img.flags.writeable:  # a cached input frame (frames.FrameSource): torch warns on read-only memory
        img = img.copy()
    return torch.from_numpy(img).permute(2, 0, 1)[None].to(device)


class _Basis:
    """PCA of the ``patch x patch x 3`` patches of some images: descriptors as a conv."""

    def __init__(self, images, patch, dims, gen):
        self.patch = patch
        cols = []
        for x in images:
            u = F.unfold(self._pad(x), patch)[0]  # (3 p p, H W)
            pick = torch.randint(0, u.shape[1], (min(u.shape[1], 20000),), generator=gen)
            cols.append(u[:, pick.to(u.device)].T)
        data = torch.cat(cols).double()
        self.mean = data.mean(0)
        _, _, v = torch.linalg.svd(data - self.mean, full_matrices=False)
        scale = 1.0 / np.sqrt(3 * patch * patch)  # SSD -> mean per value
        self.weight = (v[:dims] * scale).float()  # (dims, 3 p p)
        self.bias = -(self.weight.double() @ self.mean).float()

    def _pad(self, x):
        r = self.patch // 2
        return F.pad(x, (r, r, r, r), mode="replicate")

    def __call__(self, x):
        """``(1, 3, H, W)`` -> ``(H W, dims)`` descriptors (rows contiguous)."""
        w = self.weight.view(-1, 3, self.patch, self.patch)
        y = F.conv2d(self._pad(x), w, self.bias)
        return y[0].permute(1, 2, 0).reshape(-1, w.shape[0]).contiguous()


class Keyframe:
    """One stylised keyframe as the searches (``backends.py``) see it: its patch descriptors, pixel grid and
    random generator.

    ``source`` ``(H W, 2 x dims)``: per keyframe pixel, the colour descriptor of its input (PCA of its
    ``patch x patch`` patches, then the region weights times ``sqrt(REGION_WEIGHT)``) and the style
    descriptor of its stylisation (PCA, zeros in place of the region weights); :meth:`colour` and
    :meth:`style` describe a frame and a warped output alike, to be compared with them.
    """

    def __init__(self, key_input, key_styled, settings, device, key_regions=None):
        key_input = np.asarray(key_input, np.float32)
        h, w = key_input.shape[:2]
        self.size, self.device = (w, h), device
        self.styled_np = prepare_keyframe(key_styled, self.size)  # (H, W, 3)
        self.gen = torch.Generator().manual_seed(settings.seed)
        xi, self.styled = self.tensor(key_input), self.tensor(self.styled_np)  # (1, 3, H, W)
        self._colour = _Basis([xi], settings.patch, settings.dims, self.gen)
        self._style = _Basis([self.styled], settings.patch, settings.dims, self.gen)
        self.regions = 0 if key_regions is None else int(np.shape(key_regions)[2])
        self.dims = settings.dims + self.regions  # colour descriptor: PCA + region weights
        self.source = torch.cat([self.colour(xi, key_regions), self.style(self.styled)], 1).contiguous()
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
        )
        self.grid = torch.stack([xs, ys], -1).reshape(-1, 2).to(self.device)  # (N, 2) x, y
        self.grid_np = self.grid.cpu().numpy().reshape(h, w, 2)
        self.source_np = self.source.cpu().numpy()

    def tensor(self, img):
        """``(H, W, 3)`` -> ``(1, 3, H, W)`` on the device."""
        return _t(img, self.device)

    def colour(self, x, regions):
        """Colour descriptors ``(H W, dims)`` of ``x`` ``(1, 3, H, W)``: the PCA of the colour patches, then the
        region weights ``regions`` ``(H, W, R)`` times ``sqrt(REGION_WEIGHT)`` (none without regions)."""
        d = self._colour(x)
        if not self.regions:
            return d
        if regions is None:
            raise ValueError("a propagator made with key_regions needs every frame's regions")
        r = torch.from_numpy(np.ascontiguousarray(regions, np.float32)).reshape(-1, self.regions)
        return torch.cat([d, r.to(d.device) * np.float32(np.sqrt(REGION_WEIGHT))], 1).contiguous()

    def style(self, x):
        """Style descriptors ``(H W, dims)`` of ``x`` ``(1, 3, H, W)``, padded with zeros where the colour ones hold
        region weights (the region values compare colour only)."""
        d = self._style(x)
        return d if not self.regions else torch.cat([d, d.new_zeros(d.shape[0], self.regions)], 1).contiguous()


class Propagator:
    """One keyframe (its input frame and its stylisation) carried frame by frame.

    ``start()`` resets to the keyframe; ``step(frame, flow_to_prev, flow_from_prev)``
    returns the next frame's stylisation, where ``flow_to_prev`` is the flow from the new
    frame to the previous one and ``flow_from_prev`` the reverse (for the reliability
    check). Works in either direction of time. The patch search is the backend's
    (``backends.search``), picked once here.
    """

    def __init__(self, key_input, key_styled, settings=None, device="cpu", backend="auto", key_regions=None):
        """``key_regions``: the keyframe's region weights ``(H, W, R)`` (style regions), or None;
        then :meth:`step` needs every frame's."""
        self.s = settings or FastSettings()
        self.device = torch.device(device)
        self.backend = pick_backend(backend, self.device)
        self.key = Keyframe(key_input, key_styled, self.s, self.device, key_regions)
        self.size = self.key.size
        self.search = backends.search(self.backend, self.key, self.s)
        self.start()

    def start(self):
        """Back to the keyframe: identity match, output = the stylised keyframe."""
        self.search.start()
        self.stats = {}
        return self.output_numpy()

    def output_numpy(self):
        return self.search.output()

    def step(self, frame, flow_to_prev, flow_from_prev, weights=None, regions=None):
        """The stylisation of ``frame``, the frame after (or before) the previous one.

        ``weights``: reliability of ``flow_to_prev`` if already computed, else from the
        flows (:func:`reliability_weights`). ``regions``: the frame's region weights
        ``(H, W, R)`` (a propagator made with ``key_regions``).
        """
        t0 = time.perf_counter()
        c = reliability_weights(flow_to_prev, flow_from_prev) if weights is None else weights
        ok = self.search.step(frame, np.asarray(flow_to_prev, np.float32), np.asarray(c, np.float32), regions)
        self.stats = {"lost": float(1 - ok.mean()), "seconds": time.perf_counter() - t0}
        return self.output_numpy()

    def cost_numpy(self):
        """The last step's match cost of every pixel ``(H, W)`` (the guided patch error: colour, temporal and
        positional terms less the coherence bonus, ``torch_search.py``; lower = a better match to the keyframe)."""
        w, h = self.size
        return np.asarray(self.search.cost(), np.float32).reshape(h, w)


def reliability_weights(flow_to_prev, flow_from_prev, scale=0.5):
    """``consistency.reliability`` computed at ``scale`` of the frame size (4x cheaper at 0.5)
    and brought back to full size (nearest): the flows are estimated at half size anyway."""
    h, w = flow_to_prev.shape[:2]
    if scale >= 1 or min(w, h) * scale < 16:
        return reliability(flow_to_prev, flow_from_prev)
    size = scaled((w, h), scale)
    small = [resize_flow(f, size) for f in (flow_to_prev, flow_from_prev)]
    return cv2.resize(reliability(*small), (w, h), interpolation=cv2.INTER_NEAREST)


def blend(a, b, wa, sigma=2.0, max_gain=2.0):
    """``wa * a + (1 - wa) * b`` that keeps the local contrast of the texture (units: [0, 1] RGB).

    A plain average of two syntheses whose strokes do not line up halves their detail
    energy (two uncorrelated textures at ``wa = 0.5``: std x 0.71), a visible blur
    between keyframes. After Heitz & Neyret 2018 (histogram-preserving blending), made
    local: with ``L`` a Gaussian low-pass of ``sigma`` pixels and details ``d = x - L(x)``,

        out = L(m) + g * (wa * d_a + wb * d_b),      m = wa * a + wb * b,  wb = 1 - wa
        g^2 = L(wa |d_a|^2 + wb |d_b|^2) / L(|wa d_a + wb d_b|^2)   (clipped to [1, max_gain])

    so the detail energy is the weighted energy of the two inputs: ``g = 1`` where they
    agree (``a = b`` gives ``a``), ``g = 1/sqrt(wa^2 + wb^2)`` where they are uncorrelated.
    """
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    wb = 1.0 - wa
    if wa >= 1 or wb >= 1:
        return (a if wa >= 1 else b).copy()

    def low(x):
        return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)

    da, db = a - low(a), b - low(b)
    d = wa * da + wb * db
    target = low(wa * (da * da).sum(2) + wb * (db * db).sum(2))
    actual = low((d * d).sum(2))
    gain = np.clip(np.sqrt(target / np.maximum(actual, 1e-8)), 1.0, max_gain)
    return np.clip(low(wa * a + wb * b) + gain[..., None] * d, 0, 1).astype(np.float32)


def segments(n, keys):
    """Plan a clip of ``n`` frames with keyframes ``keys`` (0-based, sorted, unique).

    Returns ``(frame, [(key, weight), ...])`` for every frame: frames before the first
    keyframe come from it alone (backward), after the last from it alone (forward),
    between two from both with weights linear in the distance.
    """
    keys = sorted(set(int(k) for k in keys))
    if not keys:
        raise StylizeError("fast mode needs at least one keyframe")
    if keys[0] < 0 or keys[-1] >= n:
        raise StylizeError(f"keyframes {keys} outside the clip's {n} frames (0-based)")
    plan = []
    for i in range(n):
        before = [k for k in keys if k <= i]
        after = [k for k in keys if k >= i]
        if before and after and before[-1] != after[0]:
            a, b = before[-1], after[0]
            plan.append((i, [(a, (b - i) / (b - a)), (b, (i - a) / (b - a))]))
        else:
            plan.append((i, [(before[-1] if before else after[0], 1.0)]))
    return plan


def propagate(read, n, keyframes, flows, settings=None, device="cpu", start=0, backend="auto", regions=None):
    """Stylise a clip of ``n`` frames from stylised keyframes; yields ``(i, image, info)`` in order.

    ``read(i)``: frame ``i`` as (H, W, 3) float32; ``keyframes``: ``{index: stylised image}``
    (painted or from the quality mode; another size is resized with a warning if the
    aspect ratio matches, refused otherwise); ``flows``: an object with ``.flow(a, b)``
    (``flow.make_flow_source``). ``start``: first frame to yield (resume); the frames of
    a segment before it are still synthesised, since each depends on its predecessor.
    Between two keyframes the backward pass is held in memory as uint8 (W*H*3 bytes per
    frame) until the forward pass blends it. ``regions(i)``: frame ``i``'s region weights
    ``(H, W, R)`` (style regions: a guide keeping matches inside their region), or None.
    """
    s = settings or FastSettings()
    keys = sorted(keyframes)
    plan = segments(n, keys)

    def pass_(key, frames_):
        """Yield ``(i, image, info)`` for ``frames_`` (consecutive, moving away from ``key``).

        The flows of frame ``i + 1`` (and their reliability) are estimated in a thread while
        frame ``i`` is synthesised; ``flow_seconds`` is the time spent waiting for them.
        """

        def inputs(i, prev):
            fb, ff = flows.flow(i, prev), flows.flow(prev, i)
            return read(i), fb, ff, reliability_weights(fb, ff), regions(i) if regions else None

        prop = Propagator(read(key), keyframes[key], s, device, backend, key_regions=regions(key) if regions else None)
        frames_ = list(frames_)
        t0 = time.perf_counter()
        for (i, _), (frame, fb, _, weights, frame_regions) in ahead(
            zip(frames_, [key] + frames_[:-1]), lambda pair: inputs(*pair)
        ):
            t_flow = time.perf_counter() - t0
            img = prop.step(frame, fb, None, weights, frame_regions)
            yield i, img, dict(prop.stats, flow_seconds=t_flow, key=key), prop.cost_numpy(), fb
            t0 = time.perf_counter()

    def styled_key(k):
        return prepare_keyframe(keyframes[k], (read(k).shape[1], read(k).shape[0]), f"keyframe {k + 1}")

    # before the first keyframe: backward from it, then emitted in order
    first = keys[0]
    if first > 0 and start < first:
        held = {i: (img, info) for i, img, info, _, _ in pass_(first, range(first - 1, -1, -1))}
        for i in range(start, first):
            yield i, held[i][0], held[i][1]
    for a, b in zip(keys, keys[1:] + [None]):
        if max(start, 0) <= a:
            yield a, styled_key(a), {"key": a}
        if b is None:
            if a + 1 < n:
                for i, img, info, _, _ in pass_(a, range(a + 1, n)):
                    if i >= start:
                        yield i, img, info
            break
        if b - a < 2 or start >= b:
            continue
        back = {
            i: (np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8), info, cost.astype(np.float16))
            for i, img, info, cost, _ in pass_(b, range(b - 1, a, -1))
        }
        chosen = since = None  # seams.choose: the pixels that take B's synthesis (and since when), carried
        for i, img, info, cost, flow_to_prev in pass_(a, range(a + 1, b)):
            wa = dict(plan[i][1])[a]
            other, other_info, other_cost = back.pop(i)
            other = other.astype(np.float32) / 255
            extra = {"blend": wa}
            if s.combine == "select":
                chosen = seams.choose(
                    cost,
                    other_cost.astype(np.float32),
                    wa,
                    None if chosen is None else seams.carry(chosen, flow_to_prev),
                )
                weight = None
                if s.switch_frames > 1:
                    since = np.where(chosen, 1 + (0 if since is None else seams.carry(since, flow_to_prev)), 0)
                    weight = np.minimum(since / s.switch_frames, 1.0).astype(np.float32)
                out = seams.composite(img, other, chosen, weight=weight)
                extra["from_b"] = float(chosen.mean())
            else:
                out = blend(img, other, wa)
            if i >= start:
                yield (
                    i,
                    out,
                    dict(
                        info,
                        seconds=info["seconds"] + other_info["seconds"],
                        flow_seconds=info["flow_seconds"] + other_info["flow_seconds"],
                        **extra,
                    ),
                )


def step_counts(n, keys, start=0):
    """``{frame: synthesis steps}`` that :func:`propagate` runs before it yields each frame from ``start`` on
    (the frames' progress: its events weigh each by the work behind it). Between two keyframes the
    backward pass runs whole before the first forward frame is yielded; a resumed segment also
    synthesises its frames before ``start`` again; keyframes cost none."""
    keys = sorted(keys)
    counts = dict.fromkeys(range(start, n), 0)
    first = keys[0]
    if start < first:
        counts[start] = first  # the whole backward pass, then in order
    for a, b in zip(keys, keys[1:] + [n]):
        inner = [i for i in range(a + 1, b) if i >= start]
        if not inner:
            continue
        both = b < n  # between two keyframes: backward, then forward
        counts[inner[0]] = (b - a - 1 if both else 0) + inner[0] - a
        for i in inner[1:]:
            counts[i] = 1
    return counts


def time_step(read, flows, a, b, settings=None, device="cpu", backend="auto", regions=None):
    """Seconds one synthesised frame takes here: frame ``b`` from keyframe ``a`` (its own input as the
    stylisation: the cost does not depend on the look), with the flows both ways (cached by the job's
    flow source, so the frame's own synthesis reuses them). The step is timed on its second and third
    runs, the faster counting (a busy machine's pauses are not the step's): the first loads the compiled
    search and warms the caches, once a job."""
    t0 = time.perf_counter()
    fb, ff = flows.flow(b, a), flows.flow(a, b)
    t_flow = time.perf_counter() - t0
    styled = np.array(read(a), np.float32)  # writable like a real keyframe's (numba compiles per array type)
    prop = Propagator(read(a), styled, settings, device, backend, key_regions=regions(a) if regions else None)
    args = (read(b), fb, None, reliability_weights(fb, ff), regions(b) if regions else None)
    times = []
    for _ in range(3):
        prop.start()
        t0 = time.perf_counter()
        prop.step(*args)
        times.append(time.perf_counter() - t0)
    return t_flow + min(times[1:])
