"""Fast mode: carry the look of a few stylised keyframes to every frame of a clip.

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
- the search is vectorised torch (PCA-compressed patch descriptors, jump-flooding
  propagation and random search on whole frames, more rounds on the pixels that lost
  their guide): no compiled extension, and the same code runs on a GPU.

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

Images are ``(H, W, 3)`` float32 RGB in [0, 1]; flows follow ``warp.py``. Nothing here
reads or writes files: :func:`propagate` takes a frame reader and a flow source
(``flow.make_flow_source``) and yields frames, so the scheduler owns IO, resume and
progress.
"""
import time
import warnings
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from . import seams
from ...ahead import ahead
from ...motion.consistency import reliability
from ...errors import StylizeError
from ...motion.flow import estimate, resize_flow
from ...settings import CHOICES


@dataclass
class FastSettings:
    """Everything that determines fast mode's output (for a job manifest)."""
    patch: int = 5                 # patch side
    dims: int = 8                  # PCA dimensions per guide (colour, style)
    pos_sigma: float = 2.0         # positional guide: pixels before the penalty saturates
    pos_weight: float = 0.02       # positional penalty at saturation (units: mean squared diff per value)
    temporal_weight: float = 0.5   # temporal guide relative to the colour guide
    coherence: float = 0.0015      # bonus per coherent 4-neighbour where the track holds
    coherence_lost: float = 0.004  # ... where the positional guide is lost
    lost_from_guide: bool = True   # an unreliable pixel starts its search from the advected match (not random)
    lost_rounds: int = 1           # search rounds over the pixels that lost their guide (2: same quality, slower)
    outlier: float = 4.0           # a tracked pixel whose cost exceeds outlier x median joins them
    combine: str = "select"        # between two keyframes: select (seams.py: one synthesis a pixel) or blend
    switch_frames: int = 3         # select: frames over which a pixel crosses over from A's synthesis to B's
    seed: int = 0

    def __post_init__(self):
        if self.patch < 1 or self.patch % 2 == 0:
            raise StylizeError(f"patch size must be odd and positive, got {self.patch}")
        if not 1 <= self.dims <= 3 * self.patch ** 2:
            raise StylizeError(f"dims must be in 1..{3 * self.patch ** 2}, got {self.dims}")

    def to_dict(self):
        return asdict(self)


REGION_WEIGHT = 1.0    # cost of matching another region, per unit of squared region weight difference


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
        raise StylizeError(f"{name} is {w}x{h} px: too small to be carried to {size[0]}x{size[1]} frames "
                           "(at least 16 px a side)")
    if abs((w / h) / (size[0] / size[1]) - 1) > 0.01:
        raise StylizeError(f"{name} is {w}x{h} but the frames are {size[0]}x{size[1]}: "
                           "the aspect ratios differ, crop or pad the painting to the frame's shape")
    warnings.warn(f"{name} is {w}x{h}, resized to the frame size {size[0]}x{size[1]}", stacklevel=2)
    shrink = size[0] * size[1] < w * h
    out = cv2.resize(styled, tuple(size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return np.clip(out, 0, 1).astype(np.float32)


BACKENDS = CHOICES["fast_backend"]  # auto, numba, torch


def backend_error():
    """Why the compiled backend is unavailable (None when it is available)."""
    try:
        import numba  # noqa: F401
    except Exception as e:  # absent or broken install
        return (f"fast mode's compiled CPU search needs numba ({type(e).__name__}: {e}); "
                "pip install numba, or use backend 'torch' (slower on a CPU)")
    return None


def pick_backend(name, device):
    """``auto``: numba on the CPU when installed, else the vectorised torch search."""
    if name not in BACKENDS:
        raise StylizeError(f"unknown fast-mode backend {name!r} (choose from {', '.join(BACKENDS)})")
    if name == "auto":
        return "numba" if torch.device(device).type == "cpu" and backend_error() is None else "torch"
    if name == "numba":
        if torch.device(device).type != "cpu":
            raise StylizeError("the numba backend runs on the CPU only; use backend 'torch' on a GPU")
        if backend_error():
            raise StylizeError(backend_error())
    return name


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
            u = F.unfold(self._pad(x), patch)[0]                     # (3 p p, H W)
            pick = torch.randint(0, u.shape[1], (min(u.shape[1], 20000),), generator=gen)
            cols.append(u[:, pick.to(u.device)].T)
        data = torch.cat(cols).double()
        self.mean = data.mean(0)
        _, _, v = torch.linalg.svd(data - self.mean, full_matrices=False)
        scale = 1.0 / np.sqrt(3 * patch * patch)                      # SSD -> mean per value
        self.weight = (v[:dims] * scale).float()                      # (dims, 3 p p)
        self.bias = -(self.weight.double() @ self.mean).float()

    def _pad(self, x):
        r = self.patch // 2
        return F.pad(x, (r, r, r, r), mode="replicate")

    def __call__(self, x):
        """``(1, 3, H, W)`` -> ``(H W, dims)`` descriptors (rows contiguous)."""
        w = self.weight.view(-1, 3, self.patch, self.patch)
        y = F.conv2d(self._pad(x), w, self.bias)
        return y[0].permute(1, 2, 0).reshape(-1, w.shape[0]).contiguous()


class Propagator:
    """One keyframe (its input frame and its stylisation) carried frame by frame.

    ``start()`` resets to the keyframe; ``step(frame, flow_to_prev, flow_from_prev)``
    returns the next frame's stylisation, where ``flow_to_prev`` is the flow from the new
    frame to the previous one and ``flow_from_prev`` the reverse (for the reliability
    check). Works in either direction of time.
    """

    def __init__(self, key_input, key_styled, settings=None, device="cpu", backend="auto", key_regions=None):
        """``key_regions``: the keyframe's region weights ``(H, W, R)`` (style regions), or None;
        then :meth:`step` needs every frame's."""
        self.s = settings or FastSettings()
        self.device = torch.device(device)
        self.backend = pick_backend(backend, self.device)
        key_input = np.asarray(key_input, np.float32)
        h, w = key_input.shape[:2]
        self.size = (w, h)
        key_styled = prepare_keyframe(key_styled, self.size)
        self.gen = torch.Generator().manual_seed(self.s.seed)
        xi, xs = _t(key_input, self.device), _t(key_styled, self.device)
        self.key_styled = xs
        self.colour = _Basis([xi], self.s.patch, self.s.dims, self.gen)
        self.style = _Basis([xs], self.s.patch, self.s.dims, self.gen)
        self.regions = 0 if key_regions is None else int(np.shape(key_regions)[2])
        self.dims = self.s.dims + self.regions   # colour descriptor: PCA + region weights
        self.source = torch.cat([self._colour(xi, key_regions), self._pad(self.style(xs))], 1).contiguous()
        ys, xs_ = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                 indexing="ij")
        self.grid = torch.stack([xs_, ys], -1).reshape(-1, 2).to(self.device)   # (N, 2) x, y
        self.grid_np = self.grid.cpu().numpy().reshape(h, w, 2)
        self.key_np = key_styled
        self.source_np = self.source.cpu().numpy()
        self.start()

    def _colour(self, x, regions):
        """Colour descriptors ``(H W, dims)``: the PCA of the colour patches, then the region
        weights times ``sqrt(REGION_WEIGHT)`` (none without regions)."""
        d = self.colour(x)
        if not self.regions:
            return d
        if regions is None:
            raise ValueError("a propagator made with key_regions needs every frame's regions")
        r = torch.from_numpy(np.ascontiguousarray(regions, np.float32)).reshape(-1, self.regions)
        return torch.cat([d, r.to(d.device) * np.float32(np.sqrt(REGION_WEIGHT))], 1).contiguous()

    def _pad(self, d):
        """Style descriptors padded with zeros to ``dims`` (the region values compare colour only)."""
        return d if not self.regions else torch.cat([d, d.new_zeros(d.shape[0], self.regions)], 1).contiguous()

    # -- state ---------------------------------------------------------------------
    def start(self):
        """Back to the keyframe: identity match, output = the stylised keyframe."""
        self.nnf = self.grid.clone()
        self.best = torch.zeros(len(self.grid), device=self.device)
        self.output = self.key_styled
        self.stats = {}
        return self.output_numpy()

    def output_numpy(self):
        if torch.is_tensor(self.output):
            return self.output[0].permute(1, 2, 0).cpu().numpy()
        return self.output

    # -- cost ------------------------------------------------------------------------
    def _rand(self, *shape):
        return torch.rand(*shape, generator=self.gen).to(self.device)

    def _index(self, q):
        w, h = self.size
        qi = torch.round(q)
        return (qi[:, 1].clamp(0, h - 1) * w + qi[:, 0].clamp(0, w - 1)).long()

    def _clamp(self, q):
        w, h = self.size
        return torch.stack([q[:, 0].clamp(0, w - 1), q[:, 1].clamp(0, h - 1)], 1)

    def _coherent(self, p, q):
        """How many 4-neighbours ``p+d`` of each pixel match ``q + d`` (continuing its copy)."""
        w, h = self.size
        x, y = self.grid[p, 0], self.grid[p, 1]
        count = torch.zeros(len(p), device=self.device)
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            ok = (x + dx >= 0) & (x + dx <= w - 1) & (y + dy >= 0) & (y + dy <= h - 1)
            nb = (p + dx + dy * w).clamp(0, w * h - 1)
            d = self.nnf[nb] - q - torch.tensor([dx, dy], dtype=q.dtype, device=q.device)
            count += (ok & (d.abs().amax(1) < 0.5)).float()
        return count

    def _cost(self, p, q):
        g = self.source[self._index(q)]
        k = self.dims
        cost = (g[:, :k] - self.t_colour[p]).square().sum(1)
        cost += self.t_weight[p] * (g[:, k:] - self.t_style[p]).square().sum(1)
        pos = ((q - self.guide[p]).square().sum(1) / self.s.pos_sigma ** 2).clamp(max=1.0)
        cost += self.s.pos_weight * self.guide_ok[p] * pos
        return cost - self.bonus[p] * self._coherent(p, q)

    def _try(self, p, q, best):
        """Evaluate candidates ``q`` for pixels ``p``; keep the better (Jacobi update)."""
        q = self._clamp(q)
        c = self._cost(p, q)
        better = c < best
        best = torch.where(better, c, best)
        self.nnf[p[better]] = q[better]
        return best

    def _propagate(self, p, best, step):
        w, h = self.size
        x, y = self.grid[p, 0], self.grid[p, 1]
        for dx, dy in ((step, 0), (-step, 0), (0, step), (0, -step)):
            ok = (x + dx >= 0) & (x + dx <= w - 1) & (y + dy >= 0) & (y + dy <= h - 1)
            if not bool(ok.any()):
                continue
            pp = p[ok]
            nb = pp + dx + dy * w
            q = self.nnf[nb] - torch.tensor([dx, dy], dtype=torch.float32, device=self.device)
            best[ok] = self._try(pp, q, best[ok])
        return best

    def _random(self, p, best, radii):
        for r in radii:
            q = self.nnf[p] + torch.round((self._rand(len(p), 2) * 2 - 1) * r)
            best = self._try(p, q, best)
        return best

    def _search_torch(self, ok):
        """Vectorised search (any torch device): Jacobi propagation with jump flooding."""
        s, (w, h) = self.s, self.size
        n = w * h
        everyone = torch.arange(n, device=self.device)
        best = self._cost(everyone, self.nnf)
        best = self._propagate(everyone, best, 1)
        best = self._random(everyone, best, (4, 1))
        med = best[ok].median() if bool(ok.any()) else best.median()
        lost = (~ok) | (best > s.outlier * med.clamp(min=1e-4))
        p = everyone[lost]
        if len(p):
            jumps = [2 ** k for k in range(int(np.log2(max(w, h))) - 1, -1, -1)]
            radii = [max(w, h) / 2 ** k for k in range(int(np.log2(max(w, h))))]
            b = best[p]
            for _ in range(s.lost_rounds):
                for j in jumps:
                    b = self._propagate(p, b, j)
                b = self._random(p, b, radii)
                b = self._try(p, self._rand(len(p), 2) * torch.tensor([w - 1, h - 1], device=self.device), b)
            best[p] = b
            best = self._propagate(everyone, best, 1)   # let the tracked borders settle
        self.best = best
        return lost

    # -- one frame -------------------------------------------------------------------
    def step(self, frame, flow_to_prev, flow_from_prev, weights=None, regions=None):
        """The stylisation of ``frame``, the frame after (or before) the previous one.

        ``weights``: reliability of ``flow_to_prev`` if already computed, else from the
        flows (:func:`reliability_weights`). ``regions``: the frame's region weights
        ``(H, W, R)`` (a propagator made with ``key_regions``).
        """
        t0 = time.perf_counter()
        c = reliability_weights(flow_to_prev, flow_from_prev) if weights is None else weights
        step = self._step_numba if self.backend == "numba" else self._step_torch
        ok = step(frame, np.asarray(flow_to_prev, np.float32), np.asarray(c, np.float32), regions)
        self.stats = {"lost": float(1 - ok.mean()), "seconds": time.perf_counter() - t0}
        return self.output_numpy()

    def cost_numpy(self):
        """The last step's match cost of every pixel ``(H, W)`` (the guided patch error of :meth:`_cost`: colour,
        temporal and positional terms less the coherence bonus; lower = a better match to the keyframe)."""
        w, h = self.size
        c = self.best.cpu().numpy() if torch.is_tensor(self.best) else self.best
        return np.asarray(c, np.float32).reshape(h, w)

    def _step_numba(self, frame, flow, c, regions=None):
        from . import numba_search as nb
        s, (w, h) = self.s, self.size
        if torch.is_tensor(self.nnf):
            self.nnf = self.nnf.cpu().numpy()
        seed = int(torch.randint(0, 2 ** 30, (1,), generator=self.gen))
        guide, ok, nnf = nb.advect(self.nnf, flow, c, w, h, seed, s.lost_from_guide)
        tcol = self._colour(_t(frame, self.device), regions).numpy()
        if s.temporal_weight > 0:
            mx, my = (self.grid_np[..., 0] + flow[..., 0]), (self.grid_np[..., 1] + flow[..., 1])
            warped = cv2.remap(self.output_numpy(), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            tsty = self._pad(self.style(_t(warped, self.device))).numpy()
        else:
            tsty = np.zeros((1, self.dims), np.float32)
        tw = (s.temporal_weight * ok).astype(np.float32)
        bonus = np.where(ok > 0, s.coherence, s.coherence_lost).astype(np.float32)
        cost = np.empty(w * h, np.float32)
        args = (w, h, self.dims, np.float32(s.pos_weight), np.float32(1 / s.pos_sigma ** 2))
        src = self.source_np
        nb.evaluate(src, tcol, tsty, tw, guide, ok, bonus, nnf, cost, *args)
        okb = ok > 0
        med = float(np.median(cost[okb][::7])) if okb.any() else float(np.median(cost))
        lost = ~okb | (cost > s.outlier * max(med, 1e-4))
        nb.search(src, tcol, tsty, tw, guide, ok, bonus, lost, nnf, cost, *args, 1, 2 * s.lost_rounds,
                  np.float32(med), seed)
        self.nnf, self.best = nnf, cost
        m = nnf.reshape(h, w, 2)
        self.output = np.clip(cv2.remap(self.key_np, m[..., 0], m[..., 1], cv2.INTER_CUBIC,
                                        borderMode=cv2.BORDER_REPLICATE), 0, 1)
        return okb

    def _step_torch(self, frame, flow_to_prev, c, regions=None):
        s, (w, h) = self.s, self.size
        n = w * h
        if not torch.is_tensor(self.nnf):
            self.nnf = torch.from_numpy(self.nnf).to(self.device)
        if not torch.is_tensor(self.output):
            self.output = _t(self.output, self.device)
        c = torch.from_numpy(np.ascontiguousarray(c, np.float32)).reshape(-1).to(self.device)
        fl = torch.from_numpy(np.ascontiguousarray(flow_to_prev, np.float32)).reshape(-1, 2).to(self.device)
        # positional guide: the previous match advected, nearest sample + sub-pixel remainder
        pos = self.grid + fl
        near = self._index(pos)
        guide = self.nnf[near] + (pos - torch.round(pos))
        inside = (pos[:, 0] >= 0) & (pos[:, 0] <= w - 1) & (pos[:, 1] >= 0) & (pos[:, 1] <= h - 1)
        ok = (c > 0) & inside
        self.guide, self.guide_ok = guide, ok.float()
        # temporal guide: previous output warped (bilinear) where reliable
        gx = 2 * pos[:, 0] / max(w - 1, 1) - 1
        gy = 2 * pos[:, 1] / max(h - 1, 1) - 1
        warped = F.grid_sample(self.output, torch.stack([gx, gy], -1).view(1, h, w, 2),
                               mode="bilinear", padding_mode="border", align_corners=True)
        x = _t(frame, self.device)
        self.t_colour = self._colour(x, regions)
        self.t_style = self._pad(self.style(warped))
        self.t_weight = s.temporal_weight * self.guide_ok
        self.bonus = torch.where(ok, s.coherence, s.coherence_lost)
        # init: tracked pixels (and, with lost_from_guide, untracked ones whose flow stays
        # inside) from the advected guide, the others from random keyframe positions
        rnd = self._rand(n, 2) * torch.tensor([w - 1, h - 1], dtype=torch.float32, device=self.device)
        start = (ok | inside) if s.lost_from_guide else ok
        self.nnf = self._clamp(torch.where(start[:, None], guide, rnd))
        self._search_torch(ok)
        # vote: the stylised keyframe sampled once at the match (no averaging)
        gx = 2 * self.nnf[:, 0] / max(w - 1, 1) - 1
        gy = 2 * self.nnf[:, 1] / max(h - 1, 1) - 1
        out = F.grid_sample(self.key_styled, torch.stack([gx, gy], -1).view(1, h, w, 2),
                            mode="bicubic", padding_mode="border", align_corners=True)
        self.output = out.clamp(0, 1)
        return ok.float().cpu().numpy()


def reliability_weights(flow_to_prev, flow_from_prev, scale=0.5):
    """``consistency.reliability`` computed at ``scale`` of the frame size (4x cheaper at 0.5)
    and brought back to full size (nearest): the flows are estimated at half size anyway."""
    h, w = flow_to_prev.shape[:2]
    if scale >= 1 or min(w, h) * scale < 16:
        return reliability(flow_to_prev, flow_from_prev)
    size = (max(16, round(w * scale)), max(16, round(h * scale)))
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


CUT_HISTOGRAM = 0.3   # Bhattacharyya distance of colour histograms: a cut candidate above it
CUT_RELIABLE = 0.5    # ... confirmed when less than this share of the frame has a reliable flow


def colour_histogram(img):
    """Normalised HSV histogram (12 hue x 4 saturation x 4 value bins) of an RGB [0, 1]
    image, computed on a 64-pixel-wide thumbnail."""
    img = np.asarray(img, np.float32)
    h, w = img.shape[:2]
    thumb = cv2.resize(img, (64, max(1, round(64 * h / w))), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(np.clip(thumb * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [12, 4, 4], [0, 180, 0, 256, 0, 256])
    return cv2.normalize(hist, hist, 1, 0, cv2.NORM_L1)


PLAN_WIDTH = 192      # thumbnails of this width track the keyframe's texture (plan_keyframes)


def _change(keep, fb, zoom):
    """Carry ``keep`` (per thumbnail pixel: keyframe x, y and 1 where still tracked, (h, w, 3))
    one frame on with the flow ``fb`` (new -> previous frame); return it and whether the
    texture drifted too far: its median area scale ``det(d(x, y) / dp)`` outside
    ``[1/zoom, zoom]``, or less than half of the frame still tracked."""
    h, w = keep.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    keep = cv2.remap(keep, xs + fb[..., 0], ys + fb[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    tracked = keep[..., 2] > 0.5
    if tracked.mean() < 0.5:
        return keep, True
    gx, gy = np.gradient(keep[..., :2], axis=1), np.gradient(keep[..., :2], axis=0)
    det = gx[..., 0] * gy[..., 1] - gx[..., 1] * gy[..., 0]
    area = float(np.median(det[cv2.erode(tracked.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0]))
    return keep, not 1 / zoom <= area <= zoom


DRIFT = 0.03  # mean |synthesis - frame| of the planning pass (RGB in [0, 1]) above which a keyframe is added
DRIFT_GAP = 12  # frames: a drift keyframe comes at least this far after the last keyframe


def plan_keyframes(read, n, flows, zoom=2.0, drift=DRIFT, keys=()):
    """Frames (0-based) that need a keyframe of their own: ``(cuts, changes, drifts)``.

    - ``cuts``: the first frame of a new shot, where nothing before shows its content. A cut
      needs both signs: the colour histograms of ``t - 1`` and ``t`` differ (Bhattacharyya
      distance > ``CUT_HISTOGRAM``; measured on the shared clips: <= 0.17 between consecutive
      frames of a shot, <= 0.43 on Sintel's fastest pairs, >= 0.31 between different Sintel
      scenes) and ``flows`` (the job's) are reliable on less than ``CUT_RELIABLE`` of the
      frame. Only candidates cost a flow.
    - ``changes`` (``zoom`` > 0): where the look carried from the last keyframe has stretched
      too far: the keyframe's coordinates, carried frame by frame on ``PLAN_WIDTH``-wide
      thumbnails (DIS flow), cover an area scale outside ``[1/zoom, zoom]`` (the camera
      moved in or out by more than sqrt(zoom): the copied strokes would be magnified or
      shrunk), or less than half of the frame is still tracked. Measured (median area scale
      after 60 frames): 0.08 on the cockatoo clip (a push-in), 1.00 on tree.avi, 0.96 over
      the 10 Sintel frames.
    - ``drifts`` (``drift`` > 0): where the synthesis itself fails. A planning pass runs the synthesis
      (:class:`Propagator`) on the thumbnails from the last keyframe (``keys``, the keyframes already
      given, or an added one), the keyframe's own thumbnail standing for its stylisation (the matches do
      not depend on the look); its output is then the keyframe's texture re-arranged to explain the frame,
      and its mean absolute difference from the frame thumbnail (RGB in [0, 1]) is the evidence: small
      where the keyframe's patches still explain the frame, large where the frame shows what the keyframe
      never did or the matches broke down. A keyframe is added where it exceeds ``drift``, at least
      ``DRIFT_GAP`` frames after the last (in fast motion the error rises again within 3 frames of a new
      keyframe: a keyframe that often would flicker like a per-frame stylisation). Measured (this
      error from frame 0): 0.007-0.016 at the first frame after the keyframe; cockatoo (push-in) 0.022 at
      10 frames, 0.033 at 30; cockatoo frames 121-240 0.021 at 10, 0.032 at 30, 0.048 at 60; tree.avi's
      distinct images (it holds each for about 6 of its 15 fps frames) 0.023 at 10-20, 0.031 at 40;
      Sintel's fast motion 0.031 after 5 frames.
    The plan is decided here, on thumbnails, before any full-size synthesis: a fixed list of keyframes.
    """
    cuts, changes, drifts = [], [], []
    if n < 2:
        return cuts, changes, drifts
    first = read(0)
    size = (PLAN_WIDTH, max(8, round(PLAN_WIDTH * first.shape[0] / first.shape[1])))

    def thumb(img):
        return cv2.resize(np.asarray(img, np.float32), size, interpolation=cv2.INTER_AREA)

    def reset():
        ys, xs = np.mgrid[0:size[1], 0:size[0]].astype(np.float32)
        return np.stack([xs, ys, np.ones_like(xs)], -1)
    prev, prev_hist, keep = thumb(first), colour_histogram(first), reset()
    given = set(keys)

    def synthesis(key_thumb):
        return Propagator(key_thumb, key_thumb.copy(), backend="auto") if drift > 0 else None
    prop, last = synthesis(prev), 0
    for t in range(1, n):
        img = read(t)
        cur, hist = thumb(img), colour_histogram(img)
        added = None
        fb = estimate(cur, prev, "dis", "medium") if zoom > 0 or drift > 0 else None
        if cv2.compareHist(prev_hist, hist, cv2.HISTCMP_BHATTACHARYYA) > CUT_HISTOGRAM and \
                reliability_weights(flows.flow(t, t - 1), flows.flow(t - 1, t)).mean() < CUT_RELIABLE:
            added = cuts
        else:
            if zoom > 0:
                keep, changed = _change(keep, fb, zoom)
                if changed:
                    added = changes
            if prop is not None and added is None and t not in given:
                out = prop.step(cur, fb, estimate(prev, cur, "dis", "medium"))
                if float(np.abs(out - cur).mean()) > drift and t - last >= DRIFT_GAP:
                    added = drifts
        if added is not None or t in given:
            if added is not None and t not in given:
                added.append(t)
            keep, prop, last = reset(), synthesis(cur), t
        prev, prev_hist = cur, hist
    return cuts, changes, drifts


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

        prop = Propagator(read(key), keyframes[key], s, device, backend,
                          key_regions=regions(key) if regions else None)
        frames_ = list(frames_)
        t0 = time.perf_counter()
        for (i, _), (frame, fb, _, weights, frame_regions) in ahead(zip(frames_, [key] + frames_[:-1]),
                                                                    lambda pair: inputs(*pair)):
            t_flow = time.perf_counter() - t0
            img = prop.step(frame, fb, None, weights, frame_regions)
            yield i, img, dict(prop.stats, flow_seconds=t_flow, key=key), prop.cost_numpy(), fb
            t0 = time.perf_counter()

    def styled_key(k):
        return prepare_keyframe(keyframes[k], (read(k).shape[1], read(k).shape[0]), f"keyframe {k + 1}")

    # before the first keyframe: backward from it, then emitted in order
    first, last = keys[0], keys[-1]
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
        back = {i: (np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8), info, cost.astype(np.float16))
                for i, img, info, cost, _ in pass_(b, range(b - 1, a, -1))}
        chosen = since = None  # seams.choose: the pixels that take B's synthesis (and since when), carried
        for i, img, info, cost, flow_to_prev in pass_(a, range(a + 1, b)):
            wa = dict(plan[i][1])[a]
            other, other_info, other_cost = back.pop(i)
            other = other.astype(np.float32) / 255
            extra = {"blend": wa}
            if s.combine == "select":
                chosen = seams.choose(cost, other_cost.astype(np.float32), wa,
                                      None if chosen is None else seams.carry(chosen, flow_to_prev))
                weight = None
                if s.switch_frames > 1:
                    since = np.where(chosen, 1 + (0 if since is None else seams.carry(since, flow_to_prev)), 0)
                    weight = np.minimum(since / s.switch_frames, 1.0).astype(np.float32)
                out = seams.composite(img, other, chosen, weight=weight)
                extra["from_b"] = float(chosen.mean())
            else:
                out = blend(img, other, wa)
            if i >= start:
                yield i, out, dict(info, seconds=info["seconds"] + other_info["seconds"],
                                   flow_seconds=info["flow_seconds"] + other_info["flow_seconds"], **extra)


def step_counts(n, keys, start=0):
    """``{frame: synthesis steps}`` that :func:`propagate` runs before it yields each frame from ``start`` on
    (the frames' progress: its events weigh each by the work behind it). Between two keyframes the
    backward pass runs whole before the first forward frame is yielded; a resumed segment also
    synthesises its frames before ``start`` again; keyframes cost none."""
    keys = sorted(keys)
    counts = dict.fromkeys(range(start, n), 0)
    first = keys[0]
    if start < first:
        counts[start] = first                              # the whole backward pass, then in order
    for a, b in zip(keys, keys[1:] + [n]):
        inner = [i for i in range(a + 1, b) if i >= start]
        if not inner:
            continue
        both = b < n                                       # between two keyframes: backward, then forward
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
