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
                what = "is a folder, not a file" if Path(candidate).is_dir() else "does not exist"
                fix = f"fix or unset {ENV}, or pass --vgg PATH" if origin == ENV else "check the --vgg path"
                raise StylizeError(f"VGG-19 weights not found: {candidate} (from {origin}) {what}; {fix}")
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
    except OSError as e:
        raise StylizeError(f"cannot load VGG-19 weights from {path}: {e.strerror or e}") from None
    except Exception as e:  # torch raises many types, with multi-line advice
        raise StylizeError(f"cannot load VGG-19 weights from {path}: not a PyTorch weights file "
                           f"({_short_reason(path, e)})") from None
    if not isinstance(state, dict):
        raise StylizeError(f"{path} does not hold a state dict")
    return from_state_dict(state, pooling).to(device)



ZIP_MAGIC, PICKLE_MAGIC = b"PK\x03\x04", b"\x80"


def _short_reason(path, error):
    """Why ``torch.load`` failed, in a few words: from the file's first bytes, else the error's first sentence."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        head = None
    if head == b"":
        return "the file is empty"
    if head is not None and not head.startswith((ZIP_MAGIC, PICKLE_MAGIC)):
        return "neither a zip archive nor a pickle: wrong or damaged file"
    first = str(error).strip().splitlines()[0].split(". ")[0] if str(error).strip() else ""
    kind = "zip archive" if head and head.startswith(ZIP_MAGIC) else "pickle"
    reason = f"truncated or corrupt {kind}" + (f": {first}" if first else f" ({type(error).__name__})")
    return reason if len(reason) <= 160 else reason[:157] + "..."


def check_header(path):
    """StylizeError unless ``path`` starts like a PyTorch file (zip archive or pickle): a cheap check."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise StylizeError(f"cannot read VGG-19 weights {path}: {e.strerror}") from None
    if not head.startswith((ZIP_MAGIC, PICKLE_MAGIC)):
        raise StylizeError(f"cannot load VGG-19 weights from {path}: not a PyTorch weights file "
                           f"({_short_reason(path, None)})")
