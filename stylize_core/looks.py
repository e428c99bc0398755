"""Stylised frames shared by the jobs of one ``--jobs`` root, found by what made them (content-addressed).

A preview (``Job.preview``) of one frame is often run on that frame alone (the add-on exports the current frame
only: a strip of 250 frames is not rendered to preview one), so it is a one-frame job with an identity of its
own. What it computed is still what the whole clip's job computes for that frame when everything that decides
the result is the same. The key of a stylised frame is the SHA-1 of:

- ``what`` it is: ``keyframe`` (fast mode's automatic keyframe) or ``first`` (quality mode's first frame of a
  single pass);
- the frame's decoded pixels (``identity.image_digest``) and the processing size;
- the job identity's style, settings, loss-network weights and, in fast mode, the keyframe method with the
  feedforward model files; style regions' identity (a region source is a clip: a one-frame job's never equals
  the whole clip's, so with regions nothing is shared).

Files: ``ROOT/looks/<key>.npy`` (float16, at the processing size, written under a temporary name and renamed);
the ``KEEP`` most recently used are kept, older ones removed when a new one is written (1920x1080: 12 MB each).
"""
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from . import identity

FOLDER = "looks"
KEEP = 32


def key(what, frame_digest, size, job_identity):
    """The key of frame content ``frame_digest`` stylised as ``what`` at ``size`` (W, H) by a job of
    ``job_identity`` (``identity.job_identity``'s dict)."""
    fast = job_identity.get("fast") or {}
    record = {"what": what, "frame": frame_digest, "size": list(size), "style": job_identity["style"],
              "settings": job_identity["settings"], "weights": job_identity["weights"],
              "method": {k: fast[k] for k in ("keyframe_method", "feedforward") if k in fast},
              "regions": job_identity.get("regions")}
    return hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()


class Looks:
    """The shared stylised frames of the jobs root ``root`` (``get``, ``put``)."""

    def __init__(self, root):
        self.folder = Path(root) / FOLDER

    def get(self, k):
        """The frame stored under key ``k`` (float32), or None."""
        path = self.folder / f"{k}.npy"
        try:
            img = np.load(path).astype(np.float32)
        except (OSError, ValueError):
            return None
        os.utime(path)  # recently used: kept longest
        return img

    def put(self, k, img):
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{k}.tmp{os.getpid()}.npy"
        np.save(tmp, np.asarray(img, np.float16))
        os.replace(tmp, self.folder / f"{k}.npy")
        stored = sorted(self.folder.glob("*.npy"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in stored[KEEP:]:
            old.unlink(missing_ok=True)


def frame_digest(source, k):
    """The decoded content digest of frame ``k`` of ``source`` (a ``frames.FrameSource``)."""
    return identity.image_digest(source.paths[k])
