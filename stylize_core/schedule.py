"""Whole clips: a job's identity, manifest, resume, IO, flows and progress, whatever the mode.

A *mode* turns frames into stylised frames (``settings.mode`` picks one of ``MODES``):
``quality.QualityMode`` (the paper's single/multi-pass optimisation of every frame) or
``fast_mode.FastMode`` (keyframes, then patch synthesis). Its protocol:

- ``needs_flow()``, ``identity()`` (added to the job identity, or None), ``check()``
  (after the input is open, before anything is recorded), ``manifest()`` (entries for
  ``job.json``), ``passes``, ``stages`` (the timings' names), ``skipped()`` (finished
  work units);
- ``frames(skipped)``: yields ``(i, image, info)`` for every frame still to write, in the
  order written, at the processing size (or the output size); ``Job.run`` writes each one
  atomically to ``OUTDIR/frame_NNNNN.png`` at the input size and reports it (``frame``).

Memory stays flat: frames are read from disk on demand, and a mode keeps only the
earlier results it needs (``Job._keep``; the rest are read back from OUTDIR).
"""
import json
import os
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from . import __version__, identity, vector_check
from .consistency import reliability
from .errors import StylizeError
from .flow import VectorPassFlows, make_flow_source
from .frames import is_movie, load_style, open_input, read_image, resize, write_png, write_video
from .optimize import Stylizer
from . import memory, regions as regions_
from .region_style import RegionStylizer
from .fast_mode import FastMode
from .quality import QualityMode
from .warp import warp_numpy
from .weights import identity as weights_identity, load_vgg, resolve as resolve_weights

MANIFEST = "job.json"
MODES = {"quality": QualityMode, "fast": FastMode}


def pick_device(name="auto"):
    """``auto`` = cuda, then mps, then cpu."""
    if name != "auto":
        if name == "cuda" and not torch.cuda.is_available():
            raise StylizeError("--device cuda: no CUDA device is available to torch")
        if name == "mps" and not torch.backends.mps.is_available():
            raise StylizeError("--device mps: Metal (MPS) is not available to torch")
        return name
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def frame_path(out, i):
    return Path(out) / f"frame_{i + 1:05d}.png"


def vector_exrs(src, flow_dir):
    """The multilayer EXRs holding the Vector pass: ``flow_dir``'s, else the input frames."""
    if flow_dir:
        folder = open_input(flow_dir, flow_dir)
        paths = folder.paths
    else:
        paths = src.paths
    if not all(str(p).lower().endswith(".exr") for p in paths):
        raise StylizeError("--flow vector needs multilayer EXR frames (the input or --flow-dir)")
    if len(paths) < len(src):
        raise StylizeError(f"--flow vector: {len(paths)} EXR files for {len(src)} frames")
    return paths[:len(src)]


def style_blend(style):
    """``style`` (a path, ``[(path, weight), ...]`` or None) as a normalised blend, or None."""
    if style is None or isinstance(style, (str, os.PathLike)):
        return None if style is None else ((os.fspath(style), 1.0),)
    return regions_.normalise([(os.fspath(p), float(w)) for p, w in style]) if style else None


class Job:
    """One clip, one style (or a blend, or style regions), one output folder: ``out``, or
    ``jobs/<job id>`` (exactly one of them).

    The job's identity (``identity.py``: input and style content, flows, settings, weights,
    regions) is computed first; under ``jobs`` it names the folder, so another job never shares it.
    """

    def __init__(self, input_path, style_path, out, settings, vgg=None, device="auto",
                 progress=None, max_frames=None, flow_dir=None, restart=False, allow_download=True,
                 jobs=None, keyframes=None, regions=None):
        """``style_path``: a style image, a blend ``[(path, weight), ...]`` (weights normalised),
        or None with ``regions`` (``regions.RegionOptions``: style regions, see ``regions.py``).
        ``keyframes``: painted keyframes ``{0-based frame: image path}`` (fast mode only)."""
        if (out is None) == (jobs is None):
            raise ValueError("give exactly one of out and jobs")
        self.styles = style_blend(style_path)
        self.settings, self.progress = settings, progress
        self.warnings = []  # reported after the ``start`` event
        self.device = pick_device(device)
        self.mode = MODES[settings.mode](self, keyframes)
        movie = is_movie(input_path)
        self.src = None if movie else open_input(input_path, None, max_frames)
        source = identity.input_identity(input_path, None if movie else self.src.paths, max_frames)
        self.regions = regions_.Regions(regions, self.styles, None if movie else self.src.paths) \
            if regions else None
        if self.regions is None and self.styles is None:
            raise StylizeError("--style is required (or style regions: --regions/--matte with --region)")
        self.style_images = self.regions.styles if self.regions else {p: load_style(p) for p, _ in self.styles}
        if self.regions and not movie:
            self.regions.check(len(self.src), max_frames is None)  # before anything is recorded
        mode_identity = self.mode.identity()
        vgg = resolve_weights(vgg, allow_download)  # a download happens here, once, before the id
        self.identity = identity.job_identity(
            source, self.styles, settings, weights_identity(vgg), self._flow_files_digest(flow_dir, max_frames),
            mode_identity, self._regions_identity(movie))
        self.job_id = identity.job_id(self.identity)
        self.out = Path(os.path.abspath(out if out is not None else Path(jobs) / self.job_id))
        if movie:
            self.src = open_input(input_path, self.out, max_frames, digest=source["movie"])
            if self.regions:
                self.regions.check(len(self.src), max_frames is None)
        self.size = self.src.size
        self.mode.check()  # before the output folder holds anything of this job
        self.out.mkdir(parents=True, exist_ok=True)
        # Before anything is recorded: the memory plan (memory.py). It may lower the L-BFGS history
        # or the scale, or checkpoint the VGG; the identity keeps the requested settings, the
        # manifest the effective ones (``settings``) and the plan (``memory``).
        self.memory = memory.plan(self.size, settings, self.device)
        self.settings = self.mode.s = s = self.memory.settings
        self.proc = self.memory.size
        if self.memory.warning:
            self.warnings.append(self.memory.warning)
        self._manifest(input_path, restart)
        net = load_vgg(vgg, self.device, s.pooling, allow_download=allow_download)
        net.checkpoint = self.memory.checkpoint
        if torch.device(self.device).type == "cuda":
            torch.backends.cudnn.benchmark = True  # the frames share one size: tuned convolutions pay
        self.stylizer = self._make_stylizer(net)
        self.flows = make_flow_source(  # flows at the processing size: estimated, cached and used there
            s.flow, self.src.read, self.proc, cache_dir=self.out / "flow", preset=s.flow_preset,
            scale=min(s.flow_scale * s.scale, 1.0), flow_dir=flow_dir,
            exr_paths=vector_exrs(self.src, flow_dir) if s.flow == "vector" else None, frame_size=self.size) \
            if self.mode.needs_flow() else None
        self._results = {}
        self.timings = dict.fromkeys(self.mode.stages, 0.0)
        self._timings_lock = threading.Lock()

    @contextmanager
    def timed(self, stage):
        """Adds the block's seconds to ``timings[stage]`` (from any thread: work done ahead in a
        thread counts too, so the stages may add up to more than the job's wall-clock time)."""
        t0 = time.monotonic()
        try:
            yield
        finally:
            with self._timings_lock:
                self.timings[stage] += time.monotonic() - t0

    # -- identity, manifest and resume ---------------------------------------------------
    def _flow_files_digest(self, flow_dir, max_frames):
        """Digest of the precomputed flows the job reads (``--flow flo``/``vector`` with
        ``--flow-dir``), None if it reads none (vector passes in the input are in its digest)."""
        s = self.settings
        if not flow_dir or not self.mode.needs_flow():
            return None
        if s.flow == "flo" and os.path.isdir(flow_dir):
            return identity.flo_digest(flow_dir)
        if s.flow == "vector":
            return identity.frames_digest(open_input(flow_dir, None, max_frames).paths)
        return None

    def _regions_identity(self, movie):
        """The regions' identity record; for a movie input the maps are hashed once it is decoded,
        so their names and bytes stand in for it here."""
        if self.regions is None:
            return None
        if movie:  # the frame count is known after decoding: hash the map files themselves
            self.regions.digest = identity.frames_digest(self.regions.source.paths)
        return self.regions.identity(identity.file_digest)

    def _make_stylizer(self, net):
        """The plain :class:`Stylizer` (one style or a blend), or with regions a :class:`RegionStylizer`
        whose images are every style image of the mapping, each loaded once."""
        s = self.settings
        if self.regions is None:
            return Stylizer(net, [(self.style_images[p], w) for p, w in self.styles], s, self.device)
        paths = list(self.style_images)
        plan = [(None if r.keep else [(paths.index(p), w) for p, w in r.style], r.strength)
                for r in self.regions.mapping.regions]
        return RegionStylizer(net, [self.style_images[p] for p in paths], plan, s, self.device)

    def _style_record(self):
        """The manifest's ``style``: one image's absolute path, a blend's ``[[path, weight], ...]``, or None."""
        if self.styles is None:
            return None
        if len(self.styles) == 1:
            return str(Path(self.styles[0][0]).resolve())
        return [[str(Path(p).resolve()), w] for p, w in self.styles]

    def _manifest(self, input_path, restart):
        """Refuse a folder holding another job (unless ``restart``); record this one."""
        record = {"job": self.job_id, "identity": self.identity,
                  "input": str(Path(input_path).resolve()), "style": self._style_record(),
                  "frames": len(self.src), "size": list(self.size),
                  "settings": self.settings.to_dict(), "memory": self.memory.record(), **self.mode.manifest()}
        if self.regions:
            record["regions"] = self.regions.manifest()
        path = self.out / MANIFEST
        try:
            old = json.loads(path.read_text()) if path.exists() else None
        except ValueError:
            old = {}
        if old is None and any(self.out.glob("frame_*.png")):
            old = {}  # frames without a manifest: not ours to resume
        if old is not None and not restart:
            diff = identity.differences(old.get("identity"), self.identity)
            if diff:
                raise StylizeError(f"{self.out} holds another job (differs in: {', '.join(diff)}); "
                                   "use --restart to discard it, or choose another --out")
        if old and not restart and "flow_sources" in old:  # the same job: its Vector-pass check
            record["flow_sources"] = old["flow_sources"]
        if restart:
            for p in [*self.out.glob("frame_*.png"), *self.out.glob("passes/*/*.npy"),
                      *self.out.glob("keyframes/*.npy")]:
                p.unlink()
        if (old or {}).get("identity", {}).get("input") != self.identity["input"]:
            shutil.rmtree(self.out / "flow", ignore_errors=True)  # flows of other frames
        self._write_manifest({**record, "engine": __version__, "status": "running"})

    def _write_manifest(self, record):
        tmp = self.out / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, self.out / MANIFEST)
        self.record = record

    # -- frames, flows, results -------------------------------------------------------
    def frame_file(self, i):
        """Output frame ``i`` (0-based): ``OUTDIR/frame_{i+1:05d}.png``."""
        return frame_path(self.out, i)

    def first_missing(self):
        """Index of the first output frame not yet written (the clip's length if none)."""
        done = [self.frame_file(i).exists() for i in range(len(self.src))]
        return done.index(False) if False in done else len(done)

    def content(self, i):
        with self.timed("io"):
            return resize(self.src.read(i), self.proc)

    def region_masks(self, i):
        """Frame ``i``'s region weights ``(R, H, W)`` at the processing size (``regions.Regions.masks``)."""
        with self.timed("io"):
            return self.regions.masks(i, self.proc)

    def flow(self, a, b):
        """Flow from frame ``a`` to ``b`` at the processing size."""
        with self.timed("flow"):
            return self.flows.flow(a, b)

    def reliability(self, a, b):
        """``(flow a->b, reliability weights (H, W))`` of a result of frame b warped into frame a."""
        fab, fba = self.flow(a, b), self.flow(b, a)
        with self.timed("consistency"):
            return fab, reliability(fab, fba, self.settings.reliability_widen)

    def reliable_warp(self, image, a, b, prepared=None):
        """``image`` (a result for frame b) warped into frame a, and the reliability weights;
        ``prepared``: ``self.reliability(a, b)`` if already computed (e.g. ahead, in a thread)."""
        fab, weights = prepared or self.reliability(a, b)
        with self.timed("consistency"):
            warped, _ = warp_numpy(image, fab)
        return warped, weights

    def result(self, i, pass_dir=None):
        """Earlier result of frame ``i`` at processing size (memory, else from disk)."""
        key = (pass_dir, i)
        if key not in self._results:
            path = (pass_dir / f"frame_{i + 1:05d}.npy") if pass_dir else frame_path(self.out, i)
            with self.timed("io"):
                img = np.load(path).astype(np.float32) if pass_dir else read_image(path)
                self._results[key] = resize(img, self.proc)
        return self._results[key]

    def _keep(self, i, pass_dir, img, keep):
        self._results[(pass_dir, i)] = img
        for k in [k for k in self._results if k[0] != pass_dir or abs(k[1] - i) > keep]:
            del self._results[k]

    def _stylize(self, i, pass_, content, init, temporal, iterations, seed=None):
        """Frame ``i`` optimised; noise (``init="random"`` without ``init``) from ``seed``,
        by default ``settings.seed + i`` (another noise image for every frame)."""
        seed = self.settings.seed + i if seed is None else seed
        step = (lambda it, n, loss: self.progress.step(i, pass_, it, n, loss)) if self.progress else None
        extra = {}
        if self.regions:  # this frame's region weights, read now (memory stays flat)
            masks = self.region_masks(i)
            extra = {"masks": masks, "keep": self.regions.keep(masks)}
        try:
            with self.timed("optimise"):
                return self.stylizer.stylize(content, init=init, temporal=temporal, iterations=iterations,
                                             on_step=step, seed=seed, **extra)
        except FloatingPointError:
            raise StylizeError(memory.non_finite_message(i, pass_, self.settings)) from None
        except Exception as e:  # noqa: BLE001 -- only out-of-memory errors are translated
            if not memory.is_out_of_memory(e):
                raise
            raise StylizeError(memory.out_of_memory_message(self.device, i, self.proc, self.settings,
                                                            self.size)) from None

    # -- the run ----------------------------------------------------------------------
    def _start(self, frames, passes, skipped):
        """The ``start`` event, the warnings so far, then (if work is left) the check of the flows."""
        if self.progress:
            self.progress.start(frames, passes, self.size, skipped=skipped, out=self.out, job=self.job_id)
            for message in self.warnings:
                self.progress.warning(message)
        if skipped < frames * passes and isinstance(self.flows, VectorPassFlows):
            self._check_vector_pass()

    def _check_vector_pass(self):
        """Check the Vector pass per frame pair (``vector_check.py``; once per job, kept in the
        manifest's ``flow_sources``) and warn once about the pairs that use estimated flow."""
        records = self.record.get("flow_sources")
        if records is None:
            with self.timed("flow"):
                records = self.flows.check()
            self._write_manifest({**self.record, "flow_sources": records})
        else:
            self.flows.use(records)
        failed = [r["frames"][0] - 1 for r in records if r["source"] != "vector"]
        if failed and self.progress:
            self.progress.warning(vector_check.warning(failed, len(records)))

    def run(self, video=None):
        """Write (atomically) and report every frame the mode yields; then the video, the manifest
        and ``done``. Returns the output frame paths."""
        t0 = time.monotonic()
        n, skipped = len(self.src), self.mode.skipped()
        self._start(n, self.mode.passes, skipped)
        for i, img, _info in self.mode.frames(skipped):
            path = frame_path(self.out, i)
            with self.timed("io"):
                write_png(path, resize(img, self.size))
            if self.progress:
                self.progress.frame(i, path)
        paths = [frame_path(self.out, i) for i in range(n)]
        if video:
            write_video([str(p) for p in paths], str(video), self.src.fps)
        timings = {k: round(v, 3) for k, v in self.timings.items()}
        self._write_manifest({**self.record, "status": "done",
                              "seconds": round(time.monotonic() - t0, 2), "timings": timings})
        if self.progress:
            self.progress.done(self.out, timings, paths)
        return paths

    @staticmethod
    def save_array(d, i, img):
        """``d/frame_{i+1:05d}.npy`` (float16), written under a temporary name and renamed."""
        path = d / f"frame_{i + 1:05d}.npy"
        tmp = d / f".frame_{i + 1:05d}.tmp.npy"
        np.save(tmp, img.astype(np.float16))
        os.replace(tmp, path)


def run(input_path, style_path, out, settings, video=None, **kwargs):
    """Stylise a clip into ``out``; returns the output frame paths. See :class:`Job`."""
    return Job(input_path, style_path, out, settings, **kwargs).run(video)
