"""Fast mode's patch-search backends: which one a synthesis uses (:func:`pick_backend`, once per
``synthesis.Propagator``) and the search that implements it (:func:`search`).

Two searches of the same guided match (``torch_search.py`` states the cost), each behind one small interface:

- ``start()``: back to the keyframe (identity match, output = the stylised keyframe);
- ``step(frame, flow_to_prev, weights, regions)``: the match of the next frame, given the flow from it to the
  previous one (float32 ``(H, W, 2)``), that flow's reliability weights ``(H, W)`` and the frame's region
  weights (or None); returns ``(H W,)`` where the positional guide held (nonzero = held);
- ``output()``: the output ``(H, W, 3)`` float32 (the stylised keyframe sampled at the match);
- ``cost()``: the last step's match cost of every pixel ``(H W,)``.

``torch``: ``torch_search.TorchSearch``, vectorised (any torch device); ``numba``: ``numba_search.NumbaSearch``,
compiled for the CPU (numba optional: imported only when used); ``auto``: numba on the CPU when installed,
else torch. The two give different (each reproducible) frames: the backend is part of the job identity.
"""

import torch

from ...errors import StylizeError
from ...settings import CHOICES
from .torch_search import TorchSearch

BACKENDS = CHOICES["fast_backend"]  # auto, numba, torch


def backend_error():
    """Why the compiled backend is unavailable (None when it is available)."""
    try:
        import numba  # noqa: F401
    except Exception as e:  # absent or broken install
        return (
            f"fast mode's compiled CPU search needs numba ({type(e).__name__}: {e}); "
            "pip install numba, or use backend 'torch' (slower on a CPU)"
        )
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


def search(name, key, settings):
    """The search of backend ``name`` (``torch`` or ``numba``: :func:`pick_backend`'s choice) for ``key``
    (``synthesis.Keyframe``) with ``settings`` (``synthesis.FastSettings``)."""
    if name == "numba":
        from .numba_search import NumbaSearch

        return NumbaSearch(key, settings)
    return TorchSearch(key, settings)
