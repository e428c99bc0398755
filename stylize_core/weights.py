"""Finding the VGG-19 weights: explicit path, ``STYLIZE_VGG19``, the torch hub cache, then a download.

The download is the torchvision release file, checked against the SHA-256 prefix
in its name, saved into the hub cache and loaded with ``weights_only=True``.
"""
import os
from pathlib import Path

import torch

from .errors import StylizeError
from .vgg import from_state_dict, random_vgg

FILENAME = "vgg19-dcbb9e9d.pth"
URL = "https://download.pytorch.org/models/" + FILENAME
SHA256_PREFIX = "dcbb9e9d"
ENV = "STYLIZE_VGG19"


def hub_path():
    """Where torch keeps downloaded checkpoints (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / FILENAME


def find_weights(path=None):
    """Path of a local weights file, in resolution order, or None."""
    for candidate, origin in ((path, "--vgg"), (os.environ.get(ENV), ENV)):
        if candidate:
            if not Path(candidate).is_file():
                raise StylizeError(f"VGG-19 weights not found at {candidate} (from {origin})")
            return Path(candidate)
    return hub_path() if hub_path().is_file() else None


def download(progress=True):
    """Download the official weights into the hub cache (hash-checked) and return the path."""
    dst = hub_path()
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(URL, str(dst), hash_prefix=SHA256_PREFIX, progress=progress)
    except Exception as e:  # network errors come in many types
        raise StylizeError(
            f"VGG-19 weights are not available and could not be downloaded ({type(e).__name__}: {e}). "
            f"Download {URL} and put it at {dst}, or pass --vgg PATH, or set {ENV}=PATH") from None
    return dst


def resolve(spec=None, allow_download=True):
    """``spec`` made definite: ``random[:N]`` -> ``"random:N"``; a path or None -> the weights
    file's Path (``find_weights`` order, downloaded if absent and ``allow_download``)."""
    spec = None if spec is None else str(spec)
    if spec is not None and spec.startswith("random"):
        divisor = spec.split(":", 1)[1] if ":" in spec else "1"
        if not divisor.isdigit() or int(divisor) < 1:
            raise StylizeError(f"--vgg {spec}: expected random or random:N with N a positive integer")
        return f"random:{int(divisor)}"
    path = find_weights(spec)
    if path is None:
        if not allow_download:
            raise StylizeError(f"VGG-19 weights not found: put {FILENAME} at {hub_path()}, "
                               f"pass --vgg PATH, or set {ENV}=PATH")
        path = download()
    return path


def identity(resolved):
    """Part of the job identity: ``random:N``, or the weights file's ``<name>:<size in bytes>``."""
    if isinstance(resolved, str) and resolved.startswith("random:"):
        return resolved
    return f"{Path(resolved).name}:{Path(resolved).stat().st_size}"


def load_vgg(spec=None, device="cpu", pooling="max", allow_download=True):
    """The VGG-19 feature network for ``spec``: a weights path, None (resolve), or ``random[:N]``.

    ``random:N`` is a randomly initialised network with channels divided by N (tests only).
    """
    path = resolve(spec, allow_download)
    if isinstance(path, str):
        return random_vgg(int(path.split(":")[1]), pooling=pooling).to(device)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise StylizeError(f"cannot load VGG-19 weights from {path}: {e}") from None
    if not isinstance(state, dict):
        raise StylizeError(f"{path} does not hold a state dict")
    return from_state_dict(state, pooling).to(device)

