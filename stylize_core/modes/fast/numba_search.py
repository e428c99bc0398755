"""Fast mode's patch search compiled for the CPU (numba, optional): one frame's guided match to the keyframe.

One of the two searches behind ``backends.search`` (the other: ``torch_search.py``, whose docstring states the
cost both minimise; the same cost here, with early termination of the descriptor sum), searched in scan
order, so propagation carries a good match across a whole region in one sweep. Rows are split into bands
searched in parallel, the even bands and then the odd ones, so that no band reads a neighbour's border row
while it is written: the result does not depend on the threads' timing. The bands exchange matches between
sweeps. The functions release the GIL, so the next frame's flow is estimated meanwhile
(``synthesis.propagate``). Imported only when used; without numba the engine says so
(``backends.backend_error``). :class:`NumbaSearch` drives the compiled functions for one keyframe.
"""

import cv2
import numpy as np
import torch
from numba import njit, prange


@njit(cache=True, inline="always")
def _cost(p, qx, qy, w, h, src, tcol, tsty, tw, guide, gok, bonus, nnf, dims, pos_w, inv_s2, best):
    ix = min(max(int(qx + 0.5), 0), w - 1)
    iy = min(max(int(qy + 0.5), 0), h - 1)
    q = iy * w + ix
    # bound: the coherence bonus is at most 4 x bonus, so stop once the rest exceeds best + that
    bound = best + 4.0 * bonus[p]
    c = 0.0
    if gok[p] > 0:
        dx, dy = qx - guide[p, 0], qy - guide[p, 1]
        c += pos_w * min((dx * dx + dy * dy) * inv_s2, 1.0)
    for k in range(dims):
        d = src[q, k] - tcol[p, k]
        c += d * d
    if c >= bound:
        return c
    t = tw[p]
    if t > 0:
        for k in range(dims):
            d = src[q, dims + k] - tsty[p, k]
            c += t * d * d
        if c >= bound:
            return c
    px, py = p % w, p // w
    coh = 0.0
    if px + 1 < w and abs(nnf[p + 1, 0] - qx - 1.0) < 0.5 and abs(nnf[p + 1, 1] - qy) < 0.5:
        coh += 1.0
    if px > 0 and abs(nnf[p - 1, 0] - qx + 1.0) < 0.5 and abs(nnf[p - 1, 1] - qy) < 0.5:
        coh += 1.0
    if py + 1 < h and abs(nnf[p + w, 0] - qx) < 0.5 and abs(nnf[p + w, 1] - qy - 1.0) < 0.5:
        coh += 1.0
    if py > 0 and abs(nnf[p - w, 0] - qx) < 0.5 and abs(nnf[p - w, 1] - qy + 1.0) < 0.5:
        coh += 1.0
    return c - bonus[p] * coh


@njit(cache=True, parallel=True, nogil=True)
def search(
    src,
    tcol,
    tsty,
    tw,
    guide,
    gok,
    bonus,
    lost,
    nnf,
    cost,
    w,
    h,
    dims,
    pos_w,
    inv_s2,
    sweeps,
    lost_sweeps,
    refine,
    seed,
):
    """Improve ``nnf`` (N, 2) float32 keyframe coordinates in place; ``cost`` (N,) likewise.

    Every pixel takes part in ``sweeps`` sweeps (alternating direction), those costing more
    than ``refine`` with a local random search (radius 2, 1); pixels flagged ``lost`` in ``lost_sweeps`` more,
    with a random
    search from the whole frame down to 1 pixel.
    """
    bands = 8
    rows = (h + bands - 1) // bands
    total = sweeps + lost_sweeps
    big = max(w, h)
    for s in range(total):
        forward = s % 2 == 0
        only_lost = s >= sweeps
        for phase in range(2):  # even bands, then odd ones: neighbouring bands never run at once
            for k in prange(bands // 2):
                b = 2 * k + phase
                np.random.seed(seed + 7919 * s + b)
                y0, y1 = b * rows, min(h, (b + 1) * rows)
                for yy in range(y0, y1):
                    y = yy if forward else y1 - 1 - (yy - y0)
                    for xx in range(w):
                        x = xx if forward else w - 1 - xx
                        p = y * w + x
                        if only_lost and not lost[p]:
                            continue
                        best = cost[p]
                        bx, by = nnf[p, 0], nnf[p, 1]
                        d = -1 if forward else 1
                        # propagation from the already visited neighbours
                        if 0 <= x + d < w:
                            qx, qy = nnf[p + d, 0] - d, nnf[p + d, 1]
                            c = _cost(
                                p, qx, qy, w, h, src, tcol, tsty, tw, guide, gok, bonus, nnf, dims, pos_w, inv_s2, best
                            )
                            if c < best:
                                best, bx, by = c, qx, qy
                        if y0 <= y + d < y1 or (0 <= y + d < h and s > 0):
                            qx, qy = nnf[p + d * w, 0], nnf[p + d * w, 1] - d
                            c = _cost(
                                p, qx, qy, w, h, src, tcol, tsty, tw, guide, gok, bonus, nnf, dims, pos_w, inv_s2, best
                            )
                            if c < best:
                                best, bx, by = c, qx, qy
                        # random search around the best
                        r = float(big) if lost[p] else (2.0 if best > refine else 0.0)
                        while r >= 1.0:
                            qx = min(max(bx + np.floor((np.random.random() * 2 - 1) * r + 0.5), 0.0), w - 1.0)
                            qy = min(max(by + np.floor((np.random.random() * 2 - 1) * r + 0.5), 0.0), h - 1.0)
                            c = _cost(
                                p, qx, qy, w, h, src, tcol, tsty, tw, guide, gok, bonus, nnf, dims, pos_w, inv_s2, best
                            )
                            if c < best:
                                best, bx, by = c, qx, qy
                            r *= 0.5
                        nnf[p, 0], nnf[p, 1], cost[p] = bx, by, best


@njit(cache=True, parallel=True, nogil=True)
def evaluate(src, tcol, tsty, tw, guide, gok, bonus, nnf, cost, w, h, dims, pos_w, inv_s2):
    """``cost`` of the current ``nnf`` for every pixel."""
    for p in prange(w * h):
        cost[p] = _cost(
            p, nnf[p, 0], nnf[p, 1], w, h, src, tcol, tsty, tw, guide, gok, bonus, nnf, dims, pos_w, inv_s2, np.inf
        )


@njit(cache=True, parallel=True, nogil=True)
def advect(prev_nnf, flow, weights, w, h, seed, guess_lost):
    """Positional guide of the new frame from the previous match and the flow new -> previous.

    ``guide(p) = prev_nnf(round(p + flow(p))) + (p + flow(p) - round(...))``: the match
    of the nearest pixel plus the sub-pixel remainder (exact where the match is locally
    a translation, and never a mix of two unrelated matches). ``ok`` where the flow is
    reliable and stays inside; the initial match is the guide there, random elsewhere.
    """
    n = w * h
    guide = np.empty((n, 2), np.float32)
    ok = np.zeros(n, np.float32)
    nnf = np.empty((n, 2), np.float32)
    for y in prange(h):
        np.random.seed(seed + y)
        for x in range(w):
            p = y * w + x
            sx, sy = x + flow[y, x, 0], y + flow[y, x, 1]
            ix = min(max(int(np.floor(sx + 0.5)), 0), w - 1)
            iy = min(max(int(np.floor(sy + 0.5)), 0), h - 1)
            q = iy * w + ix
            gx = prev_nnf[q, 0] + sx - ix
            gy = prev_nnf[q, 1] + sy - iy
            guide[p, 0], guide[p, 1] = gx, gy
            inside = 0 <= sx <= w - 1 and 0 <= sy <= h - 1
            if inside and (weights[y, x] > 0 or guess_lost):
                ok[p] = 1.0 if weights[y, x] > 0 else 0.0
                nnf[p, 0] = min(max(gx, 0.0), w - 1.0)
                nnf[p, 1] = min(max(gy, 0.0), h - 1.0)
            else:
                nnf[p, 0] = np.floor(np.random.random() * w)
                nnf[p, 1] = np.floor(np.random.random() * h)
    return guide, ok, nnf


class NumbaSearch:
    """The match ``nnf`` (H W, 2) of every pixel to keyframe coordinates, carried frame by frame (numpy arrays).

    The backend interface (``backends.py``): :meth:`start`, :meth:`step`, :meth:`output`, :meth:`cost`.
    """

    def __init__(self, key, settings):
        """``key``: the keyframe's descriptors (``synthesis.Keyframe``, on the CPU); ``settings``:
        ``synthesis.FastSettings``."""
        self.key, self.s = key, settings

    def start(self):
        """Back to the keyframe: identity match, output = the stylised keyframe."""
        self.nnf = self.key.grid_np.reshape(-1, 2).copy()
        self.best = np.zeros(len(self.nnf), np.float32)
        self.image = self.key.styled_np

    def output(self):
        """The last output ``(H, W, 3)`` float32."""
        return self.image

    def cost(self):
        """The last step's match cost of every pixel ``(H W,)``."""
        return self.best

    def step(self, frame, flow, c, regions=None):
        """Match ``frame`` (the frame after or before the last one) given ``flow`` (to that one, float32) and its
        reliability ``c``; returns where the positional guide held ``(H W,)`` (bool)."""
        key, s, (w, h) = self.key, self.s, self.key.size
        seed = int(torch.randint(0, 2**30, (1,), generator=key.gen))
        guide, ok, nnf = advect(self.nnf, flow, c, w, h, seed, s.lost_from_guide)
        tcol = key.colour(key.tensor(frame), regions).numpy()
        if s.temporal_guide_weight > 0:
            mx, my = (key.grid_np[..., 0] + flow[..., 0]), (key.grid_np[..., 1] + flow[..., 1])
            warped = cv2.remap(self.image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            tsty = key.style(key.tensor(warped)).numpy()
        else:
            tsty = np.zeros((1, key.dims), np.float32)
        tw = (s.temporal_guide_weight * ok).astype(np.float32)
        bonus = np.where(ok > 0, s.coherence, s.coherence_lost).astype(np.float32)
        cost = np.empty(w * h, np.float32)
        args = (w, h, key.dims, np.float32(s.pos_weight), np.float32(1 / s.pos_sigma**2))
        src = key.source_np
        evaluate(src, tcol, tsty, tw, guide, ok, bonus, nnf, cost, *args)
        okb = ok > 0
        med = float(np.median(cost[okb][::7])) if okb.any() else float(np.median(cost))
        lost = ~okb | (cost > s.outlier * max(med, 1e-4))
        search(
            src, tcol, tsty, tw, guide, ok, bonus, lost, nnf, cost, *args, 1, 2 * s.lost_rounds, np.float32(med), seed
        )
        self.nnf, self.best = nnf, cost
        m = nnf.reshape(h, w, 2)
        self.image = np.clip(
            cv2.remap(key.styled_np, m[..., 0], m[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE), 0, 1
        )
        return okb
