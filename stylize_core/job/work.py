"""What a mode works with: the protocol between a job and its mode, and the services behind it.

A mode (``modes.quality.QualityMode``, ``modes.fast.mode.FastMode``) is built from what was asked
(``Mode(settings, device, keyframes, warn)``: it may refuse an option, it says its identity and whether it needs
flows and the loss network), then bound to a :class:`Work` once the frames are known (``mode.bind(work)``); from
then on it sees the job only through it:

- ``work.settings``: the one owner of the settings as they run (after the memory plan, ``network.memory``);
- ``work.clip`` (:class:`Clip`): the frames at the processing size, their region weights, flows and reliability
  weights, and the earlier results it keeps (memory stays flat: the rest is read back from the job folder);
- ``work.files`` (:class:`Files`): the job folder's files (output frames, arrays of passes and keyframes) and its
  manifest (:class:`~stylize_core.job.manifest.Manifest`), the one writer of ``job.json``;
- ``work.stylize(i, pass_, content, init, temporal, iterations, seed)``: frame ``i`` optimised (the job's network,
  style, regions and error messages), and ``work.shared_look(k, what, make, write)`` (``job.looks``);
- ``work.timings`` (:class:`Timings`, thread-safe), ``work.progress`` (events, or None), ``work.warn(message)``;
- ``work.styles`` / ``work.style_images``: the style (or blend) and its decoded images (fast mode's network).

The mode then answers ``passes``, ``stages`` (its timings' names), ``manifest()`` (its entries of ``job.json``),
``skipped()`` (finished work units), ``work(skipped)`` (the work left, for the progress ETA), ``frames(skipped)``
(yields ``(i, image at the processing size, info)`` for every frame still to write, in order; the job writes
and reports each one) and ``preview(k)``/``preview_work(k)``. Nothing else of the job is reachable: a task of a
farm plan can build the same :class:`Work` for part of a clip.
"""

import os
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import jobdir
from ..io.frames import quantize, read_image, resize
from ..motion.consistency import reliability
from ..motion.warp import warp_numpy


class Timings:
    """Seconds per stage, added from any thread (work done ahead in a thread counts too, so the stages may add up
    to more than the job's wall-clock time)."""

    def __init__(self, stages):
        self.seconds = dict.fromkeys(stages, 0.0)
        self._lock = threading.Lock()

    def add(self, stage, seconds):
        with self._lock:
            self.seconds[stage] += seconds

    @contextmanager
    def timed(self, stage):
        """Adds the block's seconds to ``stage``."""
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.add(stage, time.monotonic() - t0)

    def rounded(self):
        with self._lock:
            return {k: round(v, 3) for k, v in self.seconds.items()}


class Clip:
    """The clip as a mode reads it: frame ``i`` at the processing size ``proc`` (of ``n`` frames of ``size``), its
    region weights, the flows between frames and their reliability, and the earlier results kept in memory."""

    def __init__(self, src, size, proc, widen, timings, files, regions=None):
        self.src, self.n, self.size, self.proc, self.widen = src, len(src), size, proc, widen
        self.timings, self.files, self.regions = timings, files, regions
        self.flows = None  # the job's flow source (``motion.flow``), set once the job has made it
        self._results = {}

    def content(self, i):
        with self.timings.timed("io"):
            return resize(self.src.read(i), self.proc)

    def region_masks(self, i):
        """Frame ``i``'s region weights ``(R, H, W)`` at the processing size (``io.regions.Regions.masks``)."""
        with self.timings.timed("io"):
            return self.regions.masks(i, self.proc)

    def flow(self, a, b):
        """Flow from frame ``a`` to ``b`` at the processing size."""
        with self.timings.timed("flow"):
            return self.flows.flow(a, b)

    def reliability(self, a, b):
        """``(flow a->b, reliability weights (H, W))`` of a result of frame b warped into frame a."""
        fab, fba = self.flow(a, b), self.flow(b, a)
        with self.timings.timed("consistency"):
            return fab, reliability(fab, fba, self.widen)

    def reliable_warp(self, image, a, b, prepared=None):
        """``image`` (a result for frame b) warped into frame a, and the reliability weights; ``prepared``:
        ``self.reliability(a, b)`` if already computed (e.g. ahead, in a thread)."""
        fab, weights = prepared or self.reliability(a, b)
        with self.timings.timed("consistency"):
            warped, _ = warp_numpy(image, fab)
        return warped, weights

    def result(self, i, pass_dir=None):
        """Earlier result of frame ``i`` at the processing size: kept in memory, else read back (the output frame,
        or ``pass_dir``'s array)."""
        key = (pass_dir, i)
        if key not in self._results:
            with self.timings.timed("io"):
                img = self.files.read_array(pass_dir, i) if pass_dir else read_image(self.files.frame(i))
                self._results[key] = resize(img, self.proc)
        return self._results[key]

    def keep(self, i, pass_dir, img, keep):
        """Keep frame ``i``'s result ``img`` (and the last ``keep`` of ``pass_dir``) as :meth:`result` would read
        it back from disk: the 8-bit PNG at the output size, or the float16 array. So a job resumed from its files
        computes what the uninterrupted job did (their frames 4-6 differed by up to 56/255 before)."""
        if pass_dir is None:
            img = resize(quantize(resize(img, self.size)), self.proc)
        else:
            img = img.astype(np.float16).astype(np.float32)
        self._results[(pass_dir, i)] = img
        for k in [k for k in self._results if k[0] != pass_dir or abs(k[1] - i) > keep]:
            del self._results[k]


class Files:
    """The job folder's files a mode reads and writes (names: ``io.jobdir``), and its manifest."""

    def __init__(self, folder, manifest, timings):
        self.folder, self.manifest, self.timings = folder, manifest, timings
        self.out = Path(folder.path)

    def frame(self, i):
        """Output frame ``i`` (0-based): ``OUTDIR/frame_00001.png`` ..."""
        return self.folder.frame(i)

    def first_missing(self, n):
        """Index of the first of ``n`` output frames not yet written (``n`` if none)."""
        done = [self.frame(i).exists() for i in range(n)]
        return done.index(False) if False in done else n

    def folder_of(self, name):
        """``OUTDIR/name`` (a folder the job owns: ``jobdir.KEYFRAMES``, ``jobdir.pass_folder(p)``), created."""
        d = self.out / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def array(self, d, i):
        """Frame ``i``'s float16 array in folder ``d``."""
        return Path(d) / jobdir.frame_name(i, ".npy")

    def read_array(self, d, i):
        return np.load(self.array(d, i)).astype(np.float32)

    def save_array(self, d, i, img):
        """``d/frame_NNNNN.npy`` (float16), written under a temporary name and renamed."""
        with self.timings.timed("io"):
            tmp = Path(d) / ("." + jobdir.frame_name(i, ".tmp.npy"))
            np.save(tmp, img.astype(np.float16))
            os.replace(tmp, self.array(d, i))


@dataclass
class Work:
    """All a mode may use of its job (see the module docstring)."""

    settings: object
    device: str
    clip: Clip
    files: Files
    stylize: Callable
    shared_look: Callable
    timings: Timings
    progress: object
    warn: Callable
    styles: tuple
    style_images: dict
