"""Whole clips: the job that runs a mode over a clip, whatever the mode.

``Job`` opens the input, computes the identity (``job.identity``) and claims the job folder (``io.jobdir``), plans
the memory (``network.memory``), loads the loss network and the flows, then builds the mode's
:class:`~stylize_core.job.work.Work` (the protocol a mode sees: ``job/work.py``) and writes and reports every frame
the mode yields, atomically, at the input size (``OUTDIR/frame_NNNNN.png``); the manifest (``job.manifest``) records
how it ended. ``settings.mode`` picks the mode (``MODES``): ``modes.quality.QualityMode`` (the paper's single/multi-
pass optimisation of every frame) or ``modes.fast.mode.FastMode`` (keyframes, then patch synthesis).
"""

import os
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .errors import StylizeError
from .io import digest, jobdir
from .io import regions as regions_
from .io.frames import is_movie, load_style, open_input, resize, write_png, write_pngs, write_video
from .io.jobdir import flow_filename
from .job import identity
from .job.looks import Looks, frame_digest
from .job.looks import key as looks_key
from .job.manifest import Manifest, inputs, owned_folders, same_threads, style_record
from .job.work import Clip, Files, Timings, Work
from .modes.fast.mode import FastMode
from .modes.quality import QualityMode
from .motion import vector_check
from .motion.flow import VectorPassFlows, make_flow_source
from .network import memory
from .network.optimize import Stylizer
from .network.region_style import RegionStylizer
from .network.weights import identity as weights_identity
from .network.weights import kind as weights_kind
from .network.weights import load_vgg
from .network.weights import resolve as resolve_weights
from .sizes import processing_size

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
    return paths[: len(src)]


def style_blend(style):
    """``style`` (a path, ``[(path, weight), ...]`` or None) as a normalised blend, or None."""
    if style is None or isinstance(style, (str, os.PathLike)):
        return None if style is None else ((os.fspath(style), 1.0),)
    return regions_.normalise([(os.fspath(p), float(w)) for p, w in style]) if style else None


class Job:
    """One clip, one style (or a blend, or style regions), one output folder: ``out``, or
    ``jobs/<job id>`` (exactly one of them).

    The job's identity (``job.identity``: input and style content, flows, settings, weights,
    regions) is computed first; under ``jobs`` it names the folder, so another job never shares it.
    """

    def __init__(
        self,
        input_path,
        style_path,
        out,
        settings,
        vgg=None,
        device="auto",
        progress=None,
        max_frames=None,
        flow_dir=None,
        restart=False,
        allow_download=True,
        jobs=None,
        keyframes=None,
        regions=None,
        video=None,
    ):
        """``style_path``: a style image, a blend ``[(path, weight), ...]`` (weights normalised),
        or None with ``regions`` (``io.regions.RegionOptions``: style regions, see ``io/regions.py``).
        ``keyframes``: painted keyframes ``{0-based frame: image path}`` (fast mode only); ``video``: a
        movie file to encode the frames into at the end (checked with the folder: ``jobdir``)."""
        if (out is None) == (jobs is None):
            raise ValueError("give exactly one of out and jobs")
        if settings.pooling != "max" and str(vgg) == "mobilenet":
            raise StylizeError("--pooling applies to the VGG-19 networks; MobileNetV2 has no pooling to choose")
        if flow_dir is not None and settings.flow not in ("flo", "vector"):
            raise StylizeError(
                f"--flow-dir applies only with --flow flo or vector; it would be ignored here (--flow {settings.flow})"
            )
        if flow_dir is not None and not os.path.isdir(flow_dir):
            raise StylizeError(
                f"--flow-dir {flow_dir} "
                + ("is not a folder" if os.path.exists(flow_dir) else "not found")
                + ": give the folder of the flow files"
            )
        self.styles = style_blend(style_path)
        self.settings, self.progress = settings, progress  # the requested settings (the identity's)
        self.warnings = []  # reported after the ``start`` event
        self.device = pick_device(device)
        self.mode = MODES[settings.mode](settings, self.device, keyframes, self.warnings.append)
        movie = is_movie(input_path)
        self.src = None if movie else open_input(input_path, None, max_frames)
        source = identity.input_identity(input_path, None if movie else self.src.paths, max_frames)
        self.regions = regions_.Regions(regions, self.styles, None if movie else self.src.paths) if regions else None
        if self.regions is None and self.styles is None:
            raise StylizeError("--style is required (or style regions: --regions/--matte with --region)")
        self.style_images = self.regions.styles if self.regions else {p: load_style(p) for p, _ in self.styles}
        if self.regions and not movie:
            self.regions.check(len(self.src), max_frames is None)  # before anything is recorded
            self._warn_unused_labels()
        mode_identity = self.mode.identity()
        # the network resolved (a download happens here, once, before the id), unless the mode needs none
        if not self.mode.needs_network() and vgg is not None:
            self.warnings.append(
                f"--network {vgg} is not used: feedforward keyframes need no loss network "
                "(--keyframe-iterations N refines them with it)"
            )
        vgg = resolve_weights(vgg, allow_download) if self.mode.needs_network() else None
        self.identity = identity.job_identity(
            source,
            self.styles,
            settings,
            weights_identity(vgg) if vgg is not None else None,
            self._flow_files_digest(flow_dir, max_frames),
            mode_identity,
            self._regions_identity(movie),
        )
        self.job_id = identity.job_id(self.identity)
        self.looks = Looks(jobs) if jobs is not None else None  # what the jobs of this root share (job/looks.py)
        self.folder = jobdir.JobFolder(
            out if out is not None else Path(jobs) / self.job_id, "--out" if out is not None else "--jobs"
        )
        self.out, self.video = self.folder.path, video
        self.manifest = Manifest(self.folder)
        self.timings = Timings(self.mode.stages)
        frames = None if movie else len(self.src)
        if not movie:  # before anything is written (a movie, once it is decoded)
            self._prepare(vgg)
        uses = owned_folders(movie, settings, self.mode.needs_flow())
        same = not self.folder.claim(
            self.identity,
            frames,
            uses,
            restart,
            inputs(input_path, flow_dir, keyframes, regions, self.style_images),
            video,
        )
        same_threads(self.folder.old if same and not restart else None, self.device, self.warnings.append)
        self.folder.reserve(
            {"job": self.job_id, "identity": self.identity, "engine": __version__}, frames, uses, restart, video
        )
        with self.manifest.recording():  # from here on a failure is recorded in the manifest
            self._open(input_path, movie, source, max_frames, vgg, allow_download, flow_dir)

    def _open(self, input_path, movie, source, max_frames, vgg, allow_download, flow_dir):
        """The rest of the set-up, once the folder is this job's: the movie decoded, the memory plan, the
        full manifest, the network, the stylizer, the flows and the mode's work."""
        if movie:  # decoded into OUTDIR/input/ now that the folder is recorded as this job's
            self.src = open_input(input_path, self.out, max_frames, digest=source["movie"])
            if self.regions:
                self.regions.check(len(self.src), max_frames is None)
                self._warn_unused_labels()
            self._prepare(vgg)
        s = self.settings = self.memory.settings  # from here on: the settings as they run
        uses = sorted(
            set(self.manifest.record["owns"]["folders"]) | set(owned_folders(movie, s, self.mode.needs_flow()))
        )
        self.manifest.start(
            {**self._record(input_path), "owns": dict(self.manifest.record["owns"], folders=uses)}, len(self.src)
        )
        self.stylizer = None  # the mode optimises nothing (fast mode's feedforward keyframes)
        if vgg is not None:
            net = load_vgg(vgg, self.device, s.pooling, allow_download=allow_download)
            net.checkpoint = self.memory.checkpoint
            if torch.device(self.device).type == "cuda":
                torch.backends.cudnn.benchmark = True  # the frames share one size: tuned convolutions pay
            self.stylizer = self._make_stylizer(net)
        files = Files(self.folder, self.manifest, self.timings)
        self.clip = Clip(self.src, self.size, self.proc, s.reliability_widen, self.timings, files, self.regions)
        self.clip.flows = (
            make_flow_source(  # flows at the processing size: estimated, cached and used there
                s.flow,
                self.src.read,
                self.proc,
                cache_dir=self.out / jobdir.FLOW,
                preset=s.flow_preset,
                scale=min(s.flow_scale * s.scale, 1.0),
                flow_dir=flow_dir,
                exr_paths=vector_exrs(self.src, flow_dir) if s.flow == "vector" else None,
                frame_size=self.size,
            )
            if self.mode.needs_flow()
            else None
        )
        if s.flow == "flo" and self.clip.flows is not None:
            self._check_flo_files(flow_dir)
        self.mode.bind(
            Work(
                s,
                self.device,
                self.clip,
                files,
                self.stylize,
                self.shared_look,
                self.timings,
                self.progress,
                self.warnings.append,
                self.styles,
                self.style_images,
            )
        )

    def _check_flo_files(self, flow_dir):
        """Every ``.flo`` file the job will read exists, before the first frame (not hours into the clip)."""
        s, n = self.settings, len(self.src)
        steps = s.offsets if s.mode == "quality" and s.passes == 1 else (1,)
        for j in steps:
            for i in range(j, n):
                for a, b in ((i, i - j), (i - j, i)):
                    path = Path(flow_dir) / flow_filename(a, b)
                    if not path.is_file():
                        raise StylizeError(
                            f"missing flow file {path} (flow from frame {a + 1} to frame {b + 1}); "
                            "--flow flo needs both directions of every pair the job uses"
                        )

    # -- identity --------------------------------------------------------------------
    def _flow_files_digest(self, flow_dir, max_frames):
        """Digest of the precomputed flows the job reads (``--flow flo``/``vector`` with
        ``--flow-dir``), None if it reads none (vector passes in the input are in its digest)."""
        s = self.settings
        if not flow_dir or not self.mode.needs_flow():
            return None
        if s.flow == "flo" and os.path.isdir(flow_dir):
            return digest.flo_digest(flow_dir)
        if s.flow == "vector":
            return digest.frames_digest(open_input(flow_dir, None, max_frames).paths)
        return None

    def _regions_identity(self, movie):
        """The regions' identity record; for a movie input the maps are hashed once it is decoded,
        so their names and bytes stand in for it here."""
        if self.regions is None:
            return None
        if movie:  # the frame count is known after decoding: hash the map files themselves
            self.regions.digest = digest.frames_digest(self.regions.source.paths)
        return self.regions.identity(digest.file_digest)

    def _make_stylizer(self, net):
        """The plain :class:`Stylizer` (one style or a blend), or with regions a :class:`RegionStylizer`
        whose images are every style image of the mapping, each loaded once."""
        s = self.settings
        if self.regions is None:
            return Stylizer(net, [(self.style_images[p], w) for p, w in self.styles], s, self.device)
        paths = list(self.style_images)
        plan = [
            (None if r.keep else [(paths.index(p), w) for p, w in r.style], r.strength)
            for r in self.regions.mapping.regions
        ]
        return RegionStylizer(net, [self.style_images[p] for p in paths], plan, s, self.device)

    def _warn_unused_labels(self):
        unused = self.regions.unused()
        if unused:
            self.warnings.append(
                f"{self.regions.what}: no frame has label{'s' if len(unused) > 1 else ''} "
                f"{', '.join(unused)}: {'their' if len(unused) > 1 else 'its'} style is not used "
                f"(labels present: {', '.join(sorted(self.regions.labels, key=str)) or 'none'})"
            )

    def _prepare(self, vgg):
        """Once the frames are known: the settings against their sizes and the style images'
        (``Settings.check_size``), the mode's checks, and the memory plan (``network/memory.py``), which may lower
        the L-BFGS history or the scale, or checkpoint the network; the identity keeps the requested
        settings, the manifest the effective ones (``memory.settings``, the mode's ``work.settings``) and the plan
        (``memory``)."""
        self.size = self.src.size
        self.settings.check_size(self.size, [(img.shape[1], img.shape[0]) for img in self.style_images.values()])
        self.mode.check(len(self.src), self.size, self.regions)
        if vgg is not None:
            self.memory = memory.plan(self.size, self.settings, self.device, network=weights_kind(vgg))
        else:  # no optimisation (feedforward keyframes): nothing to fit by a lower history or scale
            size = processing_size(self.size, self.settings.scale)
            self.memory = memory.Plan(self.settings, False, size, None, None, None, [], str(self.device))
        self.proc = self.memory.size
        if self.memory.warning:
            self.warnings.append(self.memory.warning)
        if self._no_style():
            self.warnings.append(
                f"no style is applied: {self._no_style()}; the frames come out as the input "
                "(smoothed by the total-variation term)"
            )

    def _no_style(self):
        """Why nothing would be stylised (a style weight of 0, every region kept or at strength 0), or None."""
        s = self.settings
        if s.style_weight * s.strength == 0:
            return f"{'--style-weight' if s.style_weight == 0 else '--strength'} is 0"
        if self.regions and all(r.keep or r.strength == 0 for r in self.regions.mapping.regions):
            return "every region is kept or has strength 0"
        return None

    def _record(self, input_path):
        """The manifest's entries for this job (``jobdir.JobFolder.start`` adds ``owns`` and ``status``)."""
        record = {
            "job": self.job_id,
            "identity": self.identity,
            "input": str(Path(input_path).resolve()),
            "style": style_record(self.styles),
            "frames": len(self.src),
            "size": list(self.size),
            "threads": torch.get_num_threads(),
            "settings": self.settings.to_dict(),
            "memory": self.memory.record(),
            **self.mode.manifest(),
            "engine": __version__,
        }
        if self.regions:
            record["regions"] = self.regions.manifest()
        return record

    # -- what the mode's work calls -----------------------------------------------------
    def shared_look(self, k, what, make, write=False):
        """Frame ``k`` stylised as ``what`` (``looks.key``): from the jobs root's shared looks (a preview of this
        frame alone made it with the same look), else ``make()``; ``write`` (a preview): then stored there too.
        Without ``--jobs`` or with style regions: ``make()``."""
        if self.looks is None or self.regions:
            return make()
        with self.timings.timed("io"):
            s = self.settings
            seed = s.seed + k if s.init == "random" else None
            key = looks_key(what, frame_digest(self.src, k), self.proc, self.identity, s.to_dict(), seed)
            img = self.looks.get(key)
        if img is None or img.shape[:2] != (self.proc[1], self.proc[0]):
            img = make()
            if write:
                with self.timings.timed("io"):
                    self.looks.put(key, img)
                img = img.astype(np.float16).astype(np.float32)  # as stored: the job that finds it has these pixels
        return img

    def stylize(self, i, pass_, content, init, temporal, iterations, seed=None):
        """Frame ``i`` optimised; noise (``init="random"`` without ``init``) from ``seed``,
        by default ``settings.seed + i`` (another noise image for every frame)."""
        seed = self.settings.seed + i if seed is None else seed
        step = (lambda it, n, loss: self.progress.step(i, pass_, it, n, loss)) if self.progress else None
        extra = {}
        if self.regions:  # this frame's region weights, read now (memory stays flat)
            masks = self.clip.region_masks(i)
            extra = {"masks": masks, "keep": self.regions.keep(masks)}
        try:
            with self.timings.timed("optimise"):
                return self.stylizer.stylize(
                    content, init=init, temporal=temporal, iterations=iterations, on_step=step, seed=seed, **extra
                )
        except FloatingPointError:
            raise StylizeError(memory.non_finite_message(i, pass_, self.settings)) from None
        except Exception as e:  # noqa: BLE001 -- only out-of-memory errors are translated
            if not memory.is_out_of_memory(e):
                raise
            raise StylizeError(
                memory.out_of_memory_message(self.device, i, self.proc, self.settings, self.size)
            ) from None

    # -- the run ----------------------------------------------------------------------
    def _start(self, frames, passes, skipped):
        """The ``start`` event, the warnings so far, then (if work is left) the check of the flows."""
        if self.progress:
            self.progress.start(
                frames, passes, self.size, skipped=skipped, out=self.out, job=self.job_id, work=self.mode.work(skipped)
            )
            for message in self.warnings:
                self.progress.warning(message)
        if skipped < frames * passes and isinstance(self.clip.flows, VectorPassFlows):
            self._check_vector_pass()

    def _check_vector_pass(self):
        """Check the Vector pass per frame pair (``motion/vector_check.py``; once per job, kept in the
        manifest's ``flow_sources``) and warn once about the pairs that use estimated flow."""
        records = self.manifest.record.get("flow_sources")
        if records is None:
            with self.timings.timed("flow"):
                records = self.clip.flows.check()
            self.manifest.update(flow_sources=records)
        else:
            self.clip.flows.use(records)
        failed = [r["frames"][0] - 1 for r in records if r["source"] != "vector"]
        if failed and self.progress:
            self.progress.warning(vector_check.warning(failed, len(records)))

    def run(self):
        """Write (atomically) and report every frame the mode yields; then the video, the manifest
        and ``done``. Returns the output frame paths. A failure or an interruption is recorded in
        the manifest's ``status``."""
        with self.manifest.recording():
            return self._run(self.video)

    def _run(self, video):
        t0 = time.monotonic()
        n, skipped = len(self.src), self.mode.skipped()
        self._start(n, self.mode.passes, skipped)
        self._write(self.mode.frames(skipped))
        paths = [self.folder.frame(i) for i in range(n)]
        if video:
            write_video([str(p) for p in paths], str(video), self.src.fps)
        timings = self.timings.rounded()
        self.manifest.update(status="done", seconds=round(time.monotonic() - t0, 2), timings=timings)
        if self.progress:
            self.progress.done(self.out, timings, paths)
        return paths

    def _write(self, frames):
        """Write (atomically, at the input size) and report every frame ``(i, image, info)`` of ``frames``."""
        for i, img, _info in frames:
            path = self.folder.frame(i)
            with self.timings.timed("io"):
                write_png(path, resize(img, self.size))
            if self.progress:
                self.progress.frame(i, path)

    # -- the job in independent pieces (a farm plan's tasks) ------------------------------
    def units(self):
        """The job in independent pieces, as its mode cuts it: fast mode ``(keyframes, segments)``
        (``FastMode.units``), quality mode its shots ``[(first, end), ...]`` (``QualityMode.shots``). Decided once
        and kept in the manifest, so the pieces and this job's own :meth:`run` compute the same frames."""
        with self.manifest.recording():
            if isinstance(self.clip.flows, VectorPassFlows):
                self._check_vector_pass()
            return self.mode.units()

    def run_keyframe(self, k):
        """Fast mode: stylise automatic keyframe ``k`` (0-based) into ``keyframes/`` unless it is there."""
        with self.manifest.recording():
            self.mode.keyframe(k)

    def run_part(self, part):
        """Write the frames of one piece ``(first, end)`` of :meth:`units` still missing (a segment: once its
        keyframes are stylised); the frames equal those of :meth:`run`."""
        with self.manifest.recording():
            if isinstance(self.clip.flows, VectorPassFlows):
                self._check_vector_pass()
            self._write(self.mode.frames(part[0], part))

    def preview(self, k):
        """Frame ``k`` (0-based) alone, as this job makes it, written to ``OUTDIR/preview/frame_NNNNN.png`` at
        the output size, with the input frame and both side by side (``jobdir.preview_files``; the ``preview``
        event names the three); returns the preview's path. What the job can reuse stays where it looks for it
        (the mode's ``preview``: fast mode's keyframe cache, quality mode's first finished frame), so the job with
        the same identity does not compute it again. The manifest's status is ``previewed``."""
        n = len(self.src)
        if not 0 <= k < n:
            raise StylizeError(f"--at {k + 1} is not a frame of the clip (frames 1-{n})")
        with self.manifest.recording():
            t0 = time.monotonic()
            if self.progress:
                self.progress.start(1, 1, self.size, out=self.out, job=self.job_id, work=self.mode.preview_work(k))
                for message in self.warnings:
                    self.progress.warning(message)
            img, finished = self.mode.preview(k)
            files = jobdir.preview_files(self.out, k)
            path = files["preview"]
            with self.timings.timed("io"):
                shown, source = resize(img, self.size), resize(self.src.read(k), self.size)
                for p in files.values():
                    p.parent.mkdir(parents=True, exist_ok=True)
                half = jobdir.compare_size(self.size)
                write_pngs(
                    [
                        (files["preview"], shown),
                        (files["input"], source),
                        (files["compare"], np.concatenate([resize(source, half), resize(shown, half)], axis=1)),
                    ]
                )
                if finished and not self.folder.frame(k).exists():
                    write_png(self.folder.frame(k), shown)
            timings = self.timings.rounded()
            self.manifest.update(
                status="previewed",
                timings=timings,
                preview={"frame": k + 1, "seconds": round(time.monotonic() - t0, 2)},
            )
            if self.progress:
                self.progress.frame(k, path)
                self.progress.emit("preview", frame=k + 1, **{kind: str(p) for kind, p in files.items()})
                self.progress.done(self.out, timings, [path])
        return path


def run(input_path, style_path, out, settings, video=None, **kwargs):
    """Stylise a clip into ``out``; returns the output frame paths. See :class:`Job`."""
    return Job(input_path, style_path, out, settings, video=video, **kwargs).run()
