"""L-BFGS on one tensor, without a line search, with a capped step and no host syncs.

The paper's optimiser is Torch7's ``optim.lbfgs`` without line search: at iteration k
the direction is ``d_k = -H_k g_k`` from the two-loop recursion over the last m pairs
``s_i = x_(i+1) - x_i``, ``y_i = g_(i+1) - g_i`` (Nocedal & Wright, Algorithm 7.4) with
the initial scaling ``H_0 = (s.y / y.y) I`` of the newest pair, and the step is
``x_(k+1) = x_k + t d_k`` with ``t = min(1, 1/|g_0|_1)`` on the first iteration and 1 after.

Where the curvature estimate is poor (flat regions of the loss, e.g. from a noise
initialisation) that full step can be enormous: the loss jumps by 10^12 and the
history then stalls the optimiser near its start (seen with torch.optim.LBFGS). So
the step is capped: no pixel moves by more than ``max_step`` (in [0, 1] image units)
in one iteration, ``t = min(t, max_step / max|d|)``. A capped step is still a valid
step for the curvature pairs; pairs with ``s.y <= 1e-10`` are not used (kept with
``rho = 0``, which makes them contribute nothing), so the update stays a positive
definite quasi-Newton step.

Every quantity stays a tensor on the device of ``x``: an iteration queues kernels and
never waits for the device (the caller decides when to read the loss).
"""

import torch


class LBFGS:
    """``step(closure)``: one iteration; ``closure()`` zeroes and computes ``x.grad``, returns the loss."""

    def __init__(self, x, history_size=100, max_step=0.25, lr=1.0):
        self.x, self.m, self.max_step, self.lr = x, history_size, max_step, lr
        self.pairs = []  # (s, y, rho) with rho = 1 / (s.y), or 0 for a pair not used
        self.h_diag = None
        self.prev_g = self.prev_s = None

    def step(self, closure):
        """One iteration; returns the loss (a tensor) at ``x`` before the step."""
        loss = closure()
        with torch.no_grad():
            g = self.x.grad.detach().reshape(-1).clone()
            if self.prev_g is None:
                d = -g
                t = torch.clamp(1.0 / g.abs().sum(), max=1.0) * self.lr
            else:
                self._remember(self.prev_s, g - self.prev_g)
                d = self._direction(g)
                t = torch.as_tensor(self.lr, dtype=g.dtype, device=g.device)
            t = torch.minimum(t, self.max_step / d.abs().max().clamp_min(1e-30))
            s = d * t
            self.x.add_(s.view_as(self.x))
            self.prev_g, self.prev_s = g, s
        return loss.detach()

    def _remember(self, s, y):
        ys = torch.dot(y, s)
        use = ys > 1e-10
        rho = torch.where(use, 1.0 / ys.clamp_min(1e-10), torch.zeros_like(ys))
        scale = ys / torch.dot(y, y).clamp_min(1e-30)
        self.h_diag = torch.where(use, scale, self.h_diag if self.h_diag is not None else torch.ones_like(ys))
        self.pairs.append((s, y, rho))
        if len(self.pairs) > self.m:
            self.pairs.pop(0)

    def _direction(self, g):
        """Two-loop recursion: ``-H g``. The updates are in place (``addcmul_`` with the 0-d
        coefficient tensors): no new vector per history entry, half the memory traffic."""
        q = -g
        alphas = []
        for s, y, rho in reversed(self.pairs):
            a = rho * torch.dot(s, q)
            q.addcmul_(y, a, value=-1)
            alphas.append(a)
        d = q.mul_(self.h_diag)
        for (s, y, rho), a in zip(self.pairs, reversed(alphas)):
            b = rho * torch.dot(y, d)
            d.addcmul_(s, a - b)
        return d
