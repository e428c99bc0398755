"""Stylised frames shared by the jobs of one ``--jobs`` root, found by what made them (content-addressed).

A preview (``Job.preview``) of one frame is often run on that frame alone (the add-on exports the current frame
only: a strip of 250 frames is not rendered to preview one), so it is a one-frame job with an identity of its
own. What it computed is still what the whole clip's job computes for that frame when everything that decides
the result is the same. Previews write looks; jobs only read them (a job's own frames stay in its folder). The
key of a stylised frame is the SHA-1 of:

- ``what`` it is: ``keyframe`` (fast mode's automatic keyframe) or ``first`` (quality mode's first frame of a
  single pass);
- the frame's decoded pixels (``digest.image_digest``) and the processing size;
- the job identity's style, weights and, in fast mode, the keyframe method with the feedforward model files; the
  settings as the job runs them (after the memory plan); the noise seed when the result starts from noise
  (``--init random``: ``seed + frame``, so only the same frame of the same clip matches).
With style regions there are no looks (a region source is a clip: a one-frame job's never equals the clip's).

Files: ``ROOT/looks/<40 hex digits>.npy`` (float16, at the processing size, written under a temporary name and
renamed); the ``KEEP`` most recently used are kept, older ones (of those names only) removed when a preview
writes one (1920x1080: 12 MB each).
"""

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from ..io import digest

FOLDER = "looks"
KEEP = 32


def key(what, frame_digest, size, job_identity, settings, seed=None):
    """The key of frame content ``frame_digest`` stylised as ``what`` at ``size`` (W, H) by a job of
    ``job_identity`` (``identity.job_identity``'s dict) running ``settings`` (``Settings.to_dict()``); ``seed``:
    the noise seed if the result starts from noise, else None."""
    fast = job_identity.get("fast") or {}
    record = {
        "what": what,
        "frame": frame_digest,
        "size": list(size),
        "style": job_identity["style"],
        "settings": {k: v for k, v in settings.items() if k != "preset"},
        "weights": job_identity["weights"],
        "method": {k: fast[k] for k in ("keyframe_method", "feedforward") if k in fast},
        "seed": seed,
    }
    return hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()


NAME = re.compile(r"[0-9a-f]{40}\.npy")  # what ``put`` writes, and all it ever removes


class Looks:
    """The shared stylised frames of the jobs root ``root`` (``get``, ``put``)."""

    def __init__(self, root):
        self.folder = Path(root) / FOLDER

    def get(self, k):
        """The frame stored under key ``k`` (float32), or None."""
        path = self.folder / f"{k}.npy"
        try:
            img = np.load(path).astype(np.float32)
            os.utime(path)  # recently used: kept longest
        except (OSError, ValueError):  # absent, or removed meanwhile by another process's ``put``
            return None
        return img

    def put(self, k, img):
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{k}.tmp{os.getpid()}.npy"
        np.save(tmp, np.asarray(img, np.float16))
        os.replace(tmp, self.folder / f"{k}.npy")
        stored = []
        for p in self.folder.iterdir():
            try:
                if NAME.fullmatch(p.name):
                    stored.append((p.stat().st_mtime, p))
            except FileNotFoundError:  # removed meanwhile
                pass
        for _, old in sorted(stored, reverse=True)[KEEP:]:
            old.unlink(missing_ok=True)


def frame_digest(source, k):
    """The decoded content digest of frame ``k`` of ``source`` (a ``frames.FrameSource``)."""
    return digest.image_digest(source.paths[k])
