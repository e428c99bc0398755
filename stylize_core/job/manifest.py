"""A job's manifest (``OUTDIR/job.json``) and resume: the one writer of the record, how a run that raised is
recorded, what the record holds, and what a resumed job must match to compute what an uninterrupted one did.

The folder's rules (what a job owns, what it may delete, claiming it for an identity) are ``io.jobdir``'s; this
module writes the record through it. ``status`` goes ``started`` -> ``done`` | ``previewed`` | ``interrupted``
(Ctrl-C, SIGTERM) | ``failed`` (with ``error``, the one-line message).
"""

import os
import threading
from contextlib import contextmanager
from pathlib import Path

import torch

from .. import ahead, errors
from ..io import jobdir
from ..io import regions as regions_
from ..io.jobdir import cache_key


class Manifest:
    """The record of one job folder (``jobdir.JobFolder``): read it as ``record``, change it with :meth:`update`
    (whole-record writes, atomic, from any thread)."""

    def __init__(self, folder):
        self.folder = folder
        self._lock = threading.Lock()

    @property
    def record(self):
        return self.folder.record

    def update(self, **fields):
        with self._lock:
            self.folder.write({**self.folder.record, **fields})

    def start(self, record, frames):
        """The full record once the folder is this job's (``JobFolder.start``)."""
        with self._lock:
            self.folder.start(record, frames)

    @contextmanager
    def recording(self):
        """Record how the block ended if it raised: ``interrupted`` (Ctrl-C, SIGTERM) or ``failed`` with the
        message; the exception goes on once the work started ahead (a flow being written to the cache) has
        ended, so that nothing is left half-written."""
        try:
            yield
        except KeyboardInterrupt:
            ahead.settle()
            self.end("interrupted")
            raise
        except BaseException as e:
            ahead.settle()
            self.end("failed", error=errors.message(e))
            raise

    def end(self, status, **fields):
        try:
            self.update(status=status, **fields)
        except OSError:  # e.g. the disk that failed the job: the error itself is what matters
            pass


def style_record(styles):
    """The manifest's ``style``: one image's absolute path, a blend's ``[[path, weight], ...]``, or None."""
    if styles is None:
        return None
    if len(styles) == 1:
        return str(Path(styles[0][0]).resolve())
    return [[str(Path(p).resolve()), w] for p, w in styles]


def inputs(input_path, flow_dir, painted, regions, style_images):
    """``{what: (path, is a folder)}`` of everything the job reads (``jobdir.JobFolder.claim``)."""
    record = {
        "input": (input_path, os.path.isdir(input_path)),
        "--flow-dir": (flow_dir, flow_dir is not None and os.path.isdir(flow_dir)),
    }
    for k, path in (painted or {}).items():
        record[f"keyframe {k + 1} image"] = (path, False)
    for n, p in enumerate(style_images):
        record[f"style image {n + 1}" if len(style_images) > 1 else "style image"] = (p, False)
    if regions:
        record.update(
            {
                "--regions folder": (None if regions.source == regions_.INPUT else regions.source, True),
                "--matte folder": (regions.matte, True),
                "--region-map": (regions.region_map, False),
            }
        )
    return record


def owned_folders(movie, s, needs_flow):
    """The folders of OUTDIR a job of settings ``s`` writes (relative: ``jobdir``'s ``owns``)."""
    uses = []
    if needs_flow and s.flow != "flo":  # the flow cache (also the Vector pass's fallback)
        method = "dis" if s.flow == "vector" else s.flow
        uses.append(f"{jobdir.FLOW}/{cache_key(method, s.flow_preset, min(s.flow_scale * s.scale, 1.0))}")
    uses.append(jobdir.PREVIEW)  # written by ``preview`` only, owned by every job so that --restart clears it
    if s.mode == "fast":
        uses.append(jobdir.KEYFRAMES)
    elif s.passes > 1:
        uses.append(jobdir.PASSES)
    if movie:
        uses.append(jobdir.INPUT)
    return uses


def same_threads(old, device, warn):
    """A resumed job computes with the number of CPU threads it started with (``old``: its record, or None):
    torch's reductions (convolutions, Gram matrices) add in another order with another count, and the frames would
    differ from an uninterrupted run's (measured: 3-5/255 on average after 3 frames, 1 vs 2 threads)."""
    threads = (old or {}).get("threads")
    if threads and threads != torch.get_num_threads() and torch.device(device).type == "cpu":
        warn(
            f"resuming with the {threads} CPU threads this job started with (this process "
            f"had {torch.get_num_threads()}), so that its frames match an uninterrupted run"
        )
        torch.set_num_threads(threads)
