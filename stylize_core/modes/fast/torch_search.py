"""Fast mode's patch search in torch (any torch device): one frame's guided match to the keyframe, vectorised.

One of the two searches behind ``backends.search`` (the other, compiled for the CPU: ``numba_search.py``);
both minimise, per pixel p and keyframe position q, the cost of ``synthesis.py``'s guides (Jamriska et al.
2019; units: mean squared difference per descriptor value):

    |colour(q) - colour_frame(p)|^2 + temporal_guide_weight * ok(p) * |style(q) - style_warped(p)|^2
    + pos_weight * ok(p) * min(|q - guide(p)|^2 / pos_sigma^2, 1) - bonus(p) * coherent(p, q)

with ``guide(p)`` the previous match advected by the flow, ``ok(p)`` where that flow is reliable and
``coherent`` the 4-neighbours that continue q's copy. The search runs on whole frames at once: Jacobi
propagation with jump flooding and random search (PCA-compressed patch descriptors, ``synthesis.Keyframe``),
more rounds on the pixels that lost their guide; no compiled extension, and the same code runs on a GPU.
"""

import numpy as np
import torch
import torch.nn.functional as F


class TorchSearch:
    """The match ``nnf`` (H W, 2) of every pixel to keyframe coordinates, carried frame by frame (torch tensors).

    The backend interface (``backends.py``): :meth:`start`, :meth:`step`, :meth:`output`, :meth:`cost`.
    """

    def __init__(self, key, settings):
        """``key``: the keyframe's descriptors (``synthesis.Keyframe``); ``settings``: ``synthesis.FastSettings``."""
        self.key, self.s = key, settings
        self.size, self.device, self.grid = key.size, key.device, key.grid
        self.source, self.dims, self.gen = key.source, key.dims, key.gen

    def start(self):
        """Back to the keyframe: identity match, output = the stylised keyframe."""
        self.nnf = self.grid.clone()
        self.best = torch.zeros(len(self.grid), device=self.device)
        self.image = self.key.styled

    def output(self):
        """The last output ``(H, W, 3)`` float32."""
        return self.image[0].permute(1, 2, 0).cpu().numpy()

    def cost(self):
        """The last step's match cost of every pixel ``(H W,)``."""
        return self.best.cpu().numpy()

    def step(self, frame, flow_to_prev, c, regions=None):
        """Match ``frame`` (the frame after or before the last one) given ``flow_to_prev`` (to that one, float32)
        and its reliability ``c``; returns where the positional guide held ``(H W,)`` (float, 1 = held)."""
        s, (w, h) = self.s, self.size
        n = w * h
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
        warped = F.grid_sample(
            self.image,
            torch.stack([gx, gy], -1).view(1, h, w, 2),
            mode="bilinear",
            padding_mode="border",
            align_corners=True,
        )
        self.t_colour = self.key.colour(self.key.tensor(frame), regions)
        self.t_style = self.key.style(warped)
        self.t_weight = s.temporal_guide_weight * self.guide_ok
        self.bonus = torch.where(ok, s.coherence, s.coherence_lost)
        # init: tracked pixels (and, with lost_from_guide, untracked ones whose flow stays
        # inside) from the advected guide, the others from random keyframe positions
        rnd = self._rand(n, 2) * torch.tensor([w - 1, h - 1], dtype=torch.float32, device=self.device)
        start = (ok | inside) if s.lost_from_guide else ok
        self.nnf = self._clamp(torch.where(start[:, None], guide, rnd))
        self._search(ok)
        # vote: the stylised keyframe sampled once at the match (no averaging)
        gx = 2 * self.nnf[:, 0] / max(w - 1, 1) - 1
        gy = 2 * self.nnf[:, 1] / max(h - 1, 1) - 1
        out = F.grid_sample(
            self.key.styled,
            torch.stack([gx, gy], -1).view(1, h, w, 2),
            mode="bicubic",
            padding_mode="border",
            align_corners=True,
        )
        self.image = out.clamp(0, 1)
        return ok.float().cpu().numpy()

    # -- the search and its cost ----------------------------------------------------------
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
        pos = ((q - self.guide[p]).square().sum(1) / self.s.pos_sigma**2).clamp(max=1.0)
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

    def _search(self, ok):
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
            jumps = [2**k for k in range(int(np.log2(max(w, h))) - 1, -1, -1)]
            radii = [max(w, h) / 2**k for k in range(int(np.log2(max(w, h))))]
            b = best[p]
            for _ in range(s.lost_rounds):
                for j in jumps:
                    b = self._propagate(p, b, j)
                b = self._random(p, b, radii)
                b = self._try(p, self._rand(len(p), 2) * torch.tensor([w - 1, h - 1], device=self.device), b)
            best[p] = b
            best = self._propagate(everyone, best, 1)  # let the tracked borders settle
        self.best = best
        return lost
