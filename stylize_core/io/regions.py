"""Style regions (issue #10): per-frame region maps, the label -> style mapping, masks at a size.

A frame is split into regions by a *region map*: an integer label image (a folder of PNG
8/16-bit grey or EXR images, one per input frame; or a Blender multilayer EXR's Object /
Material Index pass), soft Cryptomatte coverage (labels = the object, material or asset
names of the Cryptomatte manifest) or a soft matte (labels ``"1"`` = the matte value,
``"0"`` = 1 - it). Every label present in a frame is mapped to a *region* of the mapping:
the label's own entry, else ``*`` (every label not listed; ``--style`` acts as ``*`` when
the mapping has none). A region has a style (one image or a weighted blend, weights
normalised to 1) and a strength, or is ``keep`` (not stylised).

Per frame and at a size, :meth:`Regions.masks` gives one soft weight map per region of the
mapping, ``m_r(p)`` in [0, 1] with ``sum_r m_r(p) = 1``:

- integer labels are resized *nearest* (a label is never averaged with another) and
  one-hot encoded, then feathered: each one-hot mask is blurred by a Gaussian of
  ``FEATHER`` px (sigma, at the processing size; the masks still sum to 1) so that the
  style changes over a few pixels instead of a hard seam;
- soft weights (Cryptomatte, mattes) are resized by *area* (shrinking) or bilinearly.

Cryptomatte (the Psyop specification, as Blender writes it): the header holds
``cryptomatte/<key>/name`` (e.g. ``ViewLayer.CryptoObject``), ``/manifest`` (JSON name ->
8 hex digits of the MurmurHash3_32 of the name), ``/hash`` and ``/conversion``
(``uint32_to_float32``: an id is the float32 whose bits are the hash); the ranked layers
``<name>00``, ``<name>01`` ... hold ``(id, coverage, id, coverage)`` in their R, G, B, A
(Blender: lower-case ``r g b a``). A name's weight is its summed coverage, so edges are
anti-aliased; coverage not given to any name (Blender's world) is the label ``background``.
An id missing from the manifest is named by its 8 hex digits.

Blender names (measured on renders of bpy 4.2 and 5.2): 4.x writes one part with
``ViewLayer.IndexOB.X``, ``ViewLayer.IndexMA.X``, ``ViewLayer.CryptoObject00.r`` ...; 5.x one
part per pass, the index passes named ``ViewLayer.Object Index.X`` and ``ViewLayer.Material
Index.X``, the Cryptomatte attributes on the first part only. Both are read
(``exr.py`` merges parts by channel name).

Memory stays flat: a frame's map is read when the frame is processed. The whole clip's
maps are read once before anything is recorded, to check that every label present has a
style (one clear error naming the label and the 1-based frame) and to hash their decoded
content for the job identity.
"""

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import StylizeError
from ..settings import CRYPTO_LAYERS
from .frames import decode, load_style, natural_key

KEEP = "keep"
DEFAULT = "*"
BACKGROUND = "background"
INPUT = "input"  # --regions input: the input's own multilayer EXR frames
FEATHER = 1.0  # px (processing size): Gaussian sigma softening integer label edges
INDEX_PASSES = {"IndexOB": ("IndexOB", "Object Index"), "IndexMA": ("IndexMA", "Material Index")}
LAYERS = (*INDEX_PASSES, *CRYPTO_LAYERS)
MAP_EXTS = (".png", ".exr", ".tif", ".tiff")
MATTE_EXTS = (".png", ".jpg", ".jpeg", ".exr", ".tif", ".tiff")


# -- styles, weights and the mapping ------------------------------------------------------
def parse_weighted(value, what="--style"):
    """``"a.jpg:0.7"`` -> ``("a.jpg", 0.7)``; the suffix counts only if it is a number, so
    ``C:\\art\\a.jpg`` stays a path (weight 1)."""
    path, sep, tail = str(value).rpartition(":")
    if sep and path and not tail:
        raise StylizeError(f"{what} {value}: the weight after ':' is missing")
    if sep and path:
        try:
            weight = float(tail)
        except ValueError:
            return str(value), 1.0
        if not math.isfinite(weight) or weight < 0:
            raise StylizeError(f"{what} {value}: the weight after ':' must be a number >= 0")
        return path, weight
    return str(value), 1.0


def normalise(blend, what="--style"):
    """``[(path, weight), ...]`` with weights divided by their sum (which must be positive); divided by
    the largest first, so that weights as large as 1e308 do not overflow the sum."""
    top = max((w for _, w in blend), default=0)
    if not blend or top <= 0:
        raise StylizeError(f"{what}: the style weights must not all be 0")
    scaled = [(p, w / top) for p, w in blend]
    total = sum(w for _, w in scaled)
    return tuple((p, w / total) for p, w in scaled)


@dataclass(frozen=True)
class Region:
    """One region of the mapping: ``style`` a normalised blend ``((path, weight), ...)``, or
    ``()`` for ``keep``; ``strength`` multiplies its style loss."""

    style: tuple = ()
    strength: float = 1.0

    def __post_init__(self):
        """The strength's range is ``--strength``'s (``settings.py``)."""
        from ..settings import FIELDS

        problem = FIELDS["strength"].metadata["kind"].check(self.strength)
        if problem:
            raise StylizeError(f"a region's strength {problem}")

    @property
    def keep(self):
        return not self.style


def _region(style, strength, what):
    try:
        return Region(style, strength)
    except StylizeError as e:
        raise StylizeError(f"{what}: {e}") from None


def parse_region(value):
    """``--region LABEL=IMAGE[:STRENGTH]`` or ``LABEL=keep`` -> ``(label, Region)``."""
    label, sep, rest = str(value).partition("=")
    if not sep or not label or not rest:
        raise StylizeError(
            f"--region {value!r}: expected LABEL=IMAGE[:STRENGTH] or LABEL=keep, e.g. --region 3=oil.jpg:0.8"
        )
    if rest == KEEP:
        return label, Region()
    try:
        path, strength = parse_weighted(rest)
    except StylizeError:
        raise StylizeError(f"--region {value}: the strength after ':' must be a number from 0 to 100") from None
    return label, _region(((path, 1.0),), strength, f"--region {value}")


def load_region_map(path):
    """``--region-map FILE.json`` -> ``{label: Region}``. Entries: ``"keep"``, an image path, or
    ``{"style": path or [[path, weight], ...], "strength": s}``; relative paths are relative
    to the JSON file."""
    from .frames import regular_file

    regular_file(path, "--region-map")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise StylizeError(f"cannot read --region-map {path}: {e.strerror}") from None
    except ValueError as e:
        raise StylizeError(f"--region-map {path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise StylizeError(f"--region-map {path}: expected a JSON object of LABEL: style entries")
    base = os.path.dirname(os.path.abspath(path))

    def where(p):
        return os.path.join(base, os.path.expanduser(p))

    out = {}
    for label, entry in data.items():
        what = f"--region-map {os.path.basename(path)}, label {label!r}"
        if entry == KEEP:
            out[label] = Region()
            continue
        if isinstance(entry, str):
            entry = {"style": entry}
        if not isinstance(entry, dict) or "style" not in entry:
            raise StylizeError(f'{what}: expected "keep", an image path or {{"style": ..., "strength": ...}}')
        style, strength = entry["style"], entry.get("strength", 1.0)
        if style == KEEP:
            out[label] = Region()
            continue
        if isinstance(style, str):
            blend = [(where(style), 1.0)]
        elif (
            isinstance(style, list)
            and style
            and all(
                isinstance(s, list) and len(s) == 2 and isinstance(s[0], str) and isinstance(s[1], (int, float))
                for s in style
            )
        ):
            blend = [(where(p), float(w)) for p, w in style]
        else:
            raise StylizeError(f'{what}: "style" must be an image path or a list of [path, weight] pairs')
        if not isinstance(strength, (int, float)) or not math.isfinite(strength) or strength < 0:
            raise StylizeError(f'{what}: "strength" must be a number >= 0')
        if any(w < 0 for _, w in blend):
            raise StylizeError(f"{what}: style weights must be >= 0")
        out[label] = _region(normalise(blend, what), float(strength), what)
    return out


class Mapping:
    """Labels -> regions. ``entries``: the listed labels (file order, ``--region`` after
    ``--region-map``) then ``*`` if any; a region's index is its position there."""

    def __init__(self, listed, default=None):
        self.listed = dict(listed)
        self.entries = [k for k in self.listed if k != DEFAULT]
        self.default = self.listed.get(DEFAULT, default)
        if self.default is not None:
            self.entries.append(DEFAULT)
        self.regions = [self.listed.get(k) if k != DEFAULT else self.default for k in self.entries]
        self._index = {k: i for i, k in enumerate(self.entries)}

    def index(self, label):
        """Region index of ``label`` (its own entry, else ``*``), None if it has no style."""
        return self._index.get(label, self._index.get(DEFAULT))

    def paths(self):
        """Every style image of the mapping, each once, in order."""
        return list(dict.fromkeys(p for r in self.regions for p, _ in r.style))

    def record(self, describe):
        """``{label: "keep" | {"style": [[describe(path), weight]], "strength": s}}``."""
        return {
            k: KEEP if r.keep else {"style": [[describe(p), w] for p, w in r.style], "strength": r.strength}
            for k, r in zip(self.entries, self.regions)
        }


def build_mapping(region_values=(), region_map=None, style=None):
    """The mapping of ``--region-map`` then ``--region`` (a label given on the command line
    replaces the file's); ``style`` (the ``--style`` blend, or None) is the style of every
    label not listed unless the mapping has a ``*`` entry."""
    listed = load_region_map(region_map) if region_map else {}
    seen = set()
    for value in region_values or ():
        label, region = parse_region(value)
        if label in seen:
            raise StylizeError(f"--region: label {label!r} is given twice")
        seen.add(label)
        listed[label] = region
    default = Region(tuple(style)) if style else None
    return Mapping(listed, default)


# -- region map sources -------------------------------------------------------------------
def _list_folder(folder, exts, what):
    if not os.path.isdir(folder):
        raise StylizeError(f"{what} {folder}: not a folder")
    names = sorted(
        (
            n
            for n in os.listdir(folder)
            if n.lower().endswith(exts) and not n.startswith(".") and os.path.isfile(os.path.join(folder, n))
        ),
        key=natural_key,
    )
    if not names:
        raise StylizeError(f"{what} {folder}: no region maps found (expected {'/'.join(exts)} files)")
    return [os.path.join(folder, n) for n in names]


def _index_channel(names, layer):
    """The channel of an Object/Material Index pass (``<view layer>.IndexOB.X`` in 4.x,
    ``<view layer>.Object Index.X`` in 5.x), None if absent."""
    for alias in INDEX_PASSES[layer]:
        found = sorted(n for n in names if n.startswith(alias + ".") or f".{alias}." in n)
        if found:
            return found[0]
    return None


def _crypto_key(attrs, layer):
    """``(key, name)`` of the Cryptomatte whose name is ``layer`` or ends in ``.layer``."""
    for k in sorted(attrs):
        if k.startswith("cryptomatte/") and k.endswith("/name"):
            name = attrs[k]
            if name == layer or name.endswith("." + layer):
                return k.split("/")[1], name
    return None


def _float_bits(hex_id):
    return struct.unpack("<f", struct.pack("<I", int(hex_id, 16)))[0]


class _MapFiles:
    """One map file per frame (``paths``, in frame order); ``what`` names them in errors."""

    def __init__(self, paths, what):
        self.paths, self.what = paths, what

    def __len__(self):
        return len(self.paths)


class LabelImages(_MapFiles):
    """A folder of integer label images (PNG 8/16-bit grey, TIFF, single-channel or R/Y EXR)."""

    hard = True

    def read(self, i):
        """Frame ``i``'s labels as an integer ``(H, W)`` array."""
        path = self.paths[i]
        if path.lower().endswith(".exr"):
            from . import exr

            names = exr.channel_names(path)
            pick = next((n for n in ("Y", "R", "V", "X") if n in names), names[0] if len(names) == 1 else None)
            if pick is None:
                raise StylizeError(
                    f"{self.what} {os.path.basename(path)}: an EXR label image needs one channel "
                    f"(or Y/R); it has {', '.join(names)}"
                )
            return np.rint(exr.read_channels(path, [pick])[0]).astype(np.int64)
        img = decode(path, "region map")
        if img.ndim == 3:
            if img.shape[2] == 4:
                img = img[..., :3]
            if not (img == img[..., :1]).all():
                raise StylizeError(
                    f"{self.what} {os.path.basename(path)} is a colour image; region maps are "
                    "grey images of integer labels"
                )
            img = img[..., 0]
        if img.dtype.kind == "f":
            img = np.rint(img)
        return img.astype(np.int64)


class ExrLayer:
    """A layer of multilayer EXRs: an index pass (integer labels) or a Cryptomatte (soft)."""

    def __init__(self, paths, layer, what):
        self.paths, self.what = paths, what
        self.layer = layer or self._default(paths[0])
        self.hard = self.layer in INDEX_PASSES

    def __len__(self):
        return len(self.paths)

    def _default(self, path):
        from . import exr

        names = exr.channel_names(path)
        if _index_channel(names, "IndexOB"):
            return "IndexOB"
        attrs = exr.attributes(path)
        for layer in CRYPTO_LAYERS:
            if _crypto_key(attrs, layer):
                return layer
        raise StylizeError(
            f"{self.what}: {os.path.basename(path)} has no region layer (an Object Index "
            f"pass or a Cryptomatte); choose --regions-layer from {', '.join(LAYERS)}"
        )

    def read(self, i):
        """Integer ``(H, W)`` labels (index pass), or ``{name: (H, W) coverage}`` (Cryptomatte)."""
        from . import exr

        path = self.paths[i]
        if not path.lower().endswith(".exr"):
            raise StylizeError(
                f"{self.what}: {os.path.basename(path)} is not an EXR (--regions-layer reads multilayer EXRs)"
            )
        names = exr.channel_names(path)
        if self.hard:
            channel = _index_channel(names, self.layer)
            if channel is None:
                raise StylizeError(
                    f"{self.what}: {os.path.basename(path)} has no {self.layer} pass "
                    f"({' or '.join(INDEX_PASSES[self.layer])})"
                )
            return np.rint(exr.read_channels(path, [channel])[0]).astype(np.int64)
        return self._crypto(path, names, exr)

    def _crypto(self, path, names, exr):
        attrs = exr.attributes(path)
        found = _crypto_key(attrs, self.layer)
        if found is None:
            raise StylizeError(f"{self.what}: {os.path.basename(path)} has no {self.layer} Cryptomatte")
        key, name = found
        try:
            manifest = json.loads(attrs.get(f"cryptomatte/{key}/manifest", "{}"))
            by_bits = {int(h, 16): n for n, h in manifest.items()}
        except (ValueError, TypeError, AttributeError):
            raise StylizeError(f"{self.what}: {os.path.basename(path)}: unreadable Cryptomatte manifest") from None
        ranks = []
        for rank in range(100):
            comps = next((cs for cs in ("rgba", "RGBA") if f"{name}{rank:02d}.{cs[0]}" in names), None)
            if comps is None:
                break
            ranks.append([f"{name}{rank:02d}.{c}" for c in comps])
        if not ranks:
            raise StylizeError(f"{self.what}: {os.path.basename(path)} has no {name}00 channels")
        pairs = []
        for chans in ranks:
            r, g, b, a = exr.read_channels(path, chans)
            pairs += [(r, g), (b, a)]
        total = sum(cov for _, cov in pairs)
        out = {}
        for bits in np.unique(np.concatenate([ids.view(np.uint32)[cov > 0] for ids, cov in pairs])):
            label = by_bits.get(int(bits), f"{int(bits):08x}")
            weight = sum(np.where(ids.view(np.uint32) == bits, cov, 0) for ids, cov in pairs)
            out[label] = out.get(label, 0) + weight.astype(np.float32)
        rest = np.clip(1 - total, 0, 1).astype(np.float32)
        if rest.max() > 1e-3:
            out[BACKGROUND] = out.get(BACKGROUND, 0) + rest
        norm = np.maximum(sum(out.values()), 1e-6)
        return {k: (v / norm).astype(np.float32) for k, v in out.items()}


class Mattes(_MapFiles):
    """A folder of soft mattes: label ``"1"`` weighs the matte value, ``"0"`` one minus it."""

    hard = False

    def read(self, i):
        path = self.paths[i]
        if path.lower().endswith(".exr"):
            from . import exr

            names = exr.channel_names(path)
            pick = next((n for n in ("A", "Y", "R") if n in names), names[0])
            v = exr.read_channels(path, [pick])[0]
        else:
            img = decode(path, "matte")
            scale = 1.0 / np.iinfo(img.dtype).max if img.dtype.kind == "u" else 1.0
            if img.ndim == 3:
                img = img[..., 3] if img.shape[2] == 4 else cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY)
            v = img.astype(np.float32) * np.float32(scale)
        v = np.clip(v, 0, 1).astype(np.float32)
        return {"1": v, "0": 1 - v}


def _labels_present(data):
    if isinstance(data, dict):
        return sorted(k for k, v in data.items() if v.max() > 1e-3)
    return [str(v) for v in np.unique(data)]


def _digest_update(h, data):
    items = sorted(data.items()) if isinstance(data, dict) else [("labels", data)]
    for k, v in items:
        a = np.ascontiguousarray(v)
        h.update(f"{k}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.data)


# -- the job's regions -----------------------------------------------------------------------
@dataclass
class RegionOptions:
    """The command line's region options (``--regions``, ``--regions-layer``, ``--matte``,
    ``--region``, ``--region-map``)."""

    source: str = None
    layer: str = None
    matte: str = None
    region: tuple = ()
    region_map: str = None

    def __bool__(self):
        return bool(self.source or self.matte)

    def check(self):
        if self.source and self.matte:
            raise StylizeError("give either --regions or --matte, not both")
        if not self and (self.region or self.region_map or self.layer):
            given = "--region" if self.region else "--region-map" if self.region_map else "--regions-layer"
            raise StylizeError(f"{given} needs region maps: --regions SOURCE or --matte DIR")
        if self.layer and self.layer not in LAYERS:
            raise StylizeError(f"--regions-layer {self.layer}: choose from {', '.join(LAYERS)}")
        if self.layer and self.matte:
            raise StylizeError("--regions-layer applies to --regions, not --matte")


class Regions:
    """The job's region maps and mapping: checked and hashed once, read per frame."""

    def __init__(self, options, style=None, input_paths=None):
        """``style``: the ``--style`` blend ((path, weight), ...) or None; ``input_paths``: the
        input's frame files (None for a movie)."""
        options.check()
        self.options = options
        self.mapping = build_mapping(options.region, options.region_map, style)
        if options.matte:
            self.what = f"--matte {options.matte}"
            self.source = Mattes(_list_folder(options.matte, MATTE_EXTS, "--matte"), self.what)
        elif options.source == INPUT:
            self.what = "--regions input"
            if not input_paths or not all(p.lower().endswith(".exr") for p in input_paths):
                raise StylizeError("--regions input reads the input's multilayer EXR frames; the input has none")
            self.source = ExrLayer(list(input_paths), options.layer, self.what)
        else:
            self.what = f"--regions {options.source}"
            paths = _list_folder(options.source, MAP_EXTS, "--regions")
            if options.layer or all(p.lower().endswith(".exr") for p in paths) and self._layered(paths[0]):
                self.source = ExrLayer(paths, options.layer, self.what)
            else:
                self.source = LabelImages(paths, self.what)
        self.layer = getattr(self.source, "layer", None)
        self.styles = {p: load_style(p) for p in self.mapping.paths()}  # each image once, checked now
        self.digest, self.labels = None, None

    @staticmethod
    def _layered(path):
        from . import exr

        names = exr.channel_names(path)
        return any(_index_channel(names, k) for k in INDEX_PASSES) or any(".Crypto" in n for n in names)

    def check(self, frames, exact=True):
        """Before anything is recorded: as many maps as frames (``exact``; else, with
        ``--max-frames``, at least as many: the first ``frames`` are used), every label present
        assigned a style; the maps' digest."""
        n = len(self.source)
        if n < frames or exact and n != frames:
            raise StylizeError(
                f"{self.what}: {n} region map{'s' if n != 1 else ''} for {frames} input frames "
                "(one per frame, in the same order)"
            )
        h, labels = hashlib.sha1(), set()
        for i in range(frames):
            data = self.source.read(i)
            present = _labels_present(data)
            missing = [k for k in present if self.mapping.index(k) is None]
            if missing:
                raise StylizeError(
                    f"{self.what}: label {missing[0]!r} in frame {i + 1} has no style; give one with "
                    f"--region {missing[0]}=IMAGE (or keep), a '*' entry or --style"
                )
            labels.update(present)
            _digest_update(h, data)
        self.digest, self.labels = h.hexdigest(), labels
        self.frames = frames

    def unused(self):
        """Labels the mapping lists that no frame has (after :meth:`check`): the job warns about them (a typo
        in a label, or another layer than the one meant)."""
        return [k for k in self.mapping.entries if k != DEFAULT and k not in (self.labels or ())]

    def identity(self, digest_file):
        """Decoded maps, their source and layer, and the mapping with each style by content."""
        return {
            "maps": self.digest,
            "kind": "matte" if self.options.matte else "labels",
            "layer": self.layer,
            "mapping": self.mapping.record(digest_file),
        }

    def manifest(self):
        return {
            "source": os.path.abspath(self.options.matte or self.options.source)
            if self.options.source != INPUT
            else INPUT,
            "layer": self.layer,
            "matte": bool(self.options.matte),
            "labels": sorted(self.labels or (), key=natural_key),
            "mapping": self.mapping.record(os.path.abspath),
        }

    def masks(self, i, size):
        """Frame ``i``'s region weights ``(R, H, W)`` float32 at ``size`` = (W, H), one per mapping
        region, summing to 1 at every pixel (see the module docstring)."""
        w, h = size
        data = self.source.read(i)
        out = np.zeros((len(self.mapping.entries), h, w), np.float32)
        if not isinstance(data, dict):
            labels = (
                cv2.resize(data.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
                if data.shape != (h, w)
                else data
            )
            for value in np.unique(labels):
                r = self.mapping.index(str(int(value)))
                one = (labels == value).astype(np.float32)
                out[r] += cv2.GaussianBlur(one, (0, 0), FEATHER, borderType=cv2.BORDER_REFLECT) if FEATHER > 0 else one
            return out
        for label, weight in data.items():
            if weight.shape != (h, w):
                shrink = w * h < weight.shape[0] * weight.shape[1]
                weight = cv2.resize(weight, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            r = self.mapping.index(label)
            if r is not None:
                out[r] += weight
        return out / np.maximum(out.sum(0, keepdims=True), 1e-6)

    @property
    def has_keep(self):
        return any(r.keep for r in self.mapping.regions)

    def keep(self, masks):
        """The summed weight ``(H, W)`` of the keep regions in ``masks``, None if none is kept."""
        idx = [r for r, region in enumerate(self.mapping.regions) if region.keep]
        return masks[idx].sum(0) if idx else None


def composite(image, content, keep):
    """``(1 - k) * image + k * content``: the keep regions' pixels are the input's (soft edges)."""
    if keep is None:
        return image
    k = keep[..., None]
    return ((1 - k) * image + k * content).astype(np.float32)
