"""The engine's L-BFGS: converges like L-BFGS, caps its steps, never reads a value back to the host."""

import numpy as np
import pytest
import torch

from stylize_core.network.lbfgs import LBFGS


def quadratic(n=40, seed=0):
    """f(x) = 1/2 x'Ax - b'x with A symmetric positive definite (condition ~100); minimum A^-1 b."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    a = q @ torch.diag(torch.logspace(0, 2, n, dtype=torch.float64)) @ q.T
    b = torch.randn(n, generator=g, dtype=torch.float64)
    return a, b, torch.linalg.solve(a, b)


def closure_for(x, a, b):
    def closure():
        x.grad = None
        loss = 0.5 * x @ a @ x - b @ x
        loss.backward()
        return loss

    return closure


def test_converges_to_the_minimum_of_a_quadratic():
    a, b, solution = quadratic()
    x = torch.zeros(40, dtype=torch.float64, requires_grad=True)
    opt = LBFGS(x, history_size=40, max_step=10.0)
    closure = closure_for(x, a, b)
    for _ in range(80):
        opt.step(closure)
    assert torch.allclose(x.detach(), solution, atol=1e-6)


def test_no_step_moves_a_value_further_than_max_step():
    a, b, _ = quadratic()
    x = torch.zeros(40, dtype=torch.float64, requires_grad=True)
    opt = LBFGS(x, max_step=0.01)
    closure = closure_for(x, a, b)
    steps = []
    for _ in range(30):
        before = x.detach().clone()
        opt.step(closure)
        steps.append(float((x.detach() - before).abs().max()))
    assert max(steps) <= 0.01 + 1e-12 and min(steps[1:]) > 0.005  # capped, not stalled


def test_a_step_never_reads_a_value_back(monkeypatch):
    """No ``float()``/``bool()``/``.item()`` on a tensor inside ``step``: on a GPU an iteration is
    one queue of kernels (the caller reads the loss when it wants to)."""
    a, b, _ = quadratic()
    x = torch.zeros(40, dtype=torch.float64, requires_grad=True)
    opt = LBFGS(x)
    closure = closure_for(x, a, b)
    opt.step(closure)
    reads = []
    for name in ("__bool__", "__float__", "__int__", "item", "tolist", "numpy"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor,
            name,
            lambda self, *args, _o=original, _n=name, **kw: reads.append(_n) or _o(self, *args, **kw),
        )
    for _ in range(5):
        opt.step(closure)
    monkeypatch.undo()
    assert reads == []


def test_a_noise_start_does_not_blow_up_or_stall():
    """torch.optim.LBFGS without line search took a 1e12x loss jump on its second step from
    noise on this problem and then stalled near the start (the bug this module fixes)."""
    from stylize_core.network.optimize import Stylizer
    from stylize_core.network.weights import load_vgg
    from stylize_core.settings import Settings

    rng = np.random.default_rng(0)
    content, style = rng.random((48, 64, 3), np.float32), rng.random((64, 64, 3), np.float32)
    losses = []
    Stylizer(load_vgg("random:2"), style, Settings(init="random", tolerance=0.0)).stylize(
        content, iterations=30, seed=1, on_step=lambda i, n, loss: losses.append(loss)
    )
    assert max(losses) <= 1.01 * losses[0]
    assert losses[-1] < 0.2 * losses[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_step_stays_on_the_device():
    a, b, solution = quadratic()
    a, b = a.cuda(), b.cuda()
    x = torch.zeros(40, dtype=torch.float64, device="cuda", requires_grad=True)
    opt = LBFGS(x, history_size=40, max_step=10.0)
    closure = closure_for(x, a, b)
    opt.step(closure)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(80):
            opt.step(closure)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.allclose(x.detach().cpu(), solution, atol=1e-6)
