"""One job identity: what determines a job's output, hashed from content, not file metadata.

A job is identified by
- ``input``: a folder of frames by the *decoded* content of its frames in order
  (``frames_digest``: every channel of every frame, so an EXR's Vector pass counts;
  file names, modification times and metadata such as Blender's render time do
  not), or a movie file by its bytes (``file_digest``) and ``max_frames``;
- ``style``: the style image's bytes; a blend (``--style a:0.7 --style b:0.3``) each image's
  bytes with its normalised weight; None with regions and no ``--style``;
- ``flows``: the content of the precomputed flows the job reads (``--flow flo``:
  the ``.flo`` files' names and bytes; ``--flow vector`` with ``--flow-dir``: the
  decoded EXRs), None otherwise;
- ``settings``: every :class:`~stylize_core.settings.Settings` field except the
  preset's name (the resolved values are what matters);
- ``weights``: ``random:N``, or the weights file's ``<name>:<size in bytes>``;
- ``fast``: fast mode only (None otherwise): the resolved patch-search backend, the
  synthesis parameters (``fast.FastSettings``), the frames chosen as keyframes
  (``--keyframe N``) and each painted keyframe (``--keyframe N=IMAGE``)
  by its 1-based frame number and its decoded content (:func:`image_digest`), so another
  painting, or the same one for another frame, is another job;
- ``regions`` (style regions only; absent otherwise, so other jobs keep their ids): the
  region maps' decoded content, their kind and EXR layer, and the label -> style mapping
  with every style image by its bytes (``regions.Regions.identity``).

``job_id`` is the first 12 hex digits of the SHA-1 of the identity's canonical
JSON: the folder name under ``--jobs ROOT``. The identity itself is kept in the
manifest and compared in full, so a (2^-48) clash of ids is still refused.

Cost (measured, 2 shared CPU cores): the 10 Sintel frames of 1024x436 PNG in
``../shared/data/sintel_clip`` take 0.15-0.17 s (15 ms a frame, almost all of it
PNG decoding; hashing 1.3 MB of pixels is ~1 ms); movies hash at disk speed.
"""

import hashlib
import json
import os

from ..io.digest import file_digest, frames_digest

ID_LENGTH = 12


def input_identity(path, frame_paths=None, max_frames=None):
    """``{"frames": n, "content": frames_digest}`` for a folder's ``frame_paths``, else (a movie)
    ``{"movie": file_digest, "max_frames": max_frames}``: known before the movie is decoded."""
    if frame_paths is not None:
        return {"frames": len(frame_paths), "content": frames_digest(frame_paths)}
    return {"movie": file_digest(path), "max_frames": max_frames}


def style_identity(style):
    """One style image: its bytes' digest; a blend ``((path, weight), ...)``: ``[[digest, weight],
    ...]`` (one image of weight 1 is the plain digest); None: None (regions without ``--style``)."""
    if style is None or isinstance(style, (str, os.PathLike)):
        return None if style is None else file_digest(style)
    if len(style) == 1 and style[0][1] == 1.0:
        return file_digest(style[0][0])
    return [[file_digest(p), w] for p, w in style]


def job_identity(source, style, settings, weights, flows=None, fast=None, regions=None):
    """The identity dict (see the module docstring): ``source`` from :func:`input_identity`,
    ``style`` a path or a blend (:func:`style_identity`), ``weights`` from ``weights.identity``,
    ``flows`` the digest of precomputed flows or None, ``fast`` fast mode's record
    (``modes.fast.mode.FastMode.identity``) or None, ``regions`` the style regions' record
    (``regions.Regions.identity``; the key is absent without regions)."""
    record = {
        "input": source,
        "style": style_identity(style),
        "flows": flows,
        "settings": {k: v for k, v in settings.to_dict().items() if k != "preset"},
        "weights": weights,
        "fast": fast,
    }
    if regions is not None:
        record["regions"] = regions
    return record


def job_id(identity):
    """Short id of an identity dict: 12 hex digits of the SHA-1 of its sorted-key JSON."""
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:ID_LENGTH]
