"""Whole clips: the single-pass and multi-pass schedules, with a manifest and resume.

Single pass (paper Sec. 3): frame 0 from the content (or noise); every later frame
is initialised from the previous result warped into it (prevWarped) and optimised
with the short-term or long-term temporal loss. Multi-pass (paper Sec. 3.4):
passes alternate direction; each frame starts from a blend of its previous-pass
result and the warped neighbour, weighted by the reliability; the temporal loss is
switched on from ``temporal_from_pass``.

Memory stays flat: frames are read from disk on demand, and only the earlier
results the temporal loss needs are kept (the rest are read back from OUTDIR).
"""
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from . import __version__, identity, vector_check
from .consistency import long_term_weights, reliability
from .errors import StylizeError
from .flow import VectorPassFlows, make_flow_source, resize_flow
from .frames import is_movie, load_style, open_input, read_image, resize, write_png, write_video
from .optimize import Stylizer
from . import memory
from .warp import warp_numpy
from .weights import identity as weights_identity, load_vgg, resolve as resolve_weights

MANIFEST = "job.json"


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


class Job:
    """One clip, one style, one output folder: ``out``, or ``jobs/<job id>`` (exactly one of them).

    The job's identity (``identity.py``: input and style content, flows, settings, weights)
    is computed first; under ``jobs`` it names the folder, so another job never shares it.
    """

    def __init__(self, input_path, style_path, out, settings, vgg=None, device="auto",
                 progress=None, max_frames=None, flow_dir=None, restart=False, allow_download=True,
                 jobs=None):
        if (out is None) == (jobs is None):
            raise ValueError("give exactly one of out and jobs")
        self.settings, self.progress = settings, progress
        movie = is_movie(input_path)
        self.src = None if movie else open_input(input_path, None, max_frames)
        source = identity.input_identity(input_path, None if movie else self.src.paths, max_frames)
        self.style = load_style(style_path)
        vgg = resolve_weights(vgg, allow_download)  # a download happens here, once, before the id
        self.identity = identity.job_identity(source, style_path, settings, weights_identity(vgg),
                                              self._flow_files_digest(flow_dir, max_frames))
        self.job_id = identity.job_id(self.identity)
        self.out = Path(os.path.abspath(out if out is not None else Path(jobs) / self.job_id))
        if movie:
            self.src = open_input(input_path, self.out, max_frames, digest=source["movie"])
        self.out.mkdir(parents=True, exist_ok=True)
        self.size = self.src.size
        s = settings
        self.proc = (max(round(self.size[0] * s.scale), 16), max(round(self.size[1] * s.scale), 16))
        memory.check_fits(self.proc, s, pick_device(device), self.size)  # before anything is recorded
        self._manifest(input_path, style_path, restart)
        self.device = pick_device(device)
        net = load_vgg(vgg, self.device, s.pooling, allow_download=allow_download)
        self.stylizer = Stylizer(net, self.style, s, self.device)
        needs_flow = s.passes > 1 or s.offsets
        self.flows = make_flow_source(
            s.flow, self.src.read, self.size, cache_dir=self.out / "flow", preset=s.flow_preset,
            scale=min(s.flow_scale * s.scale, 1.0), flow_dir=flow_dir,
            exr_paths=vector_exrs(self.src, flow_dir) if s.flow == "vector" else None) if needs_flow else None
        self._results = {}
        self.timings = dict.fromkeys(("flow", "consistency", "optimise", "io"), 0.0)

    @contextmanager
    def timed(self, stage):
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.timings[stage] += time.monotonic() - t0

    # -- identity, manifest and resume ---------------------------------------------------
    def _flow_files_digest(self, flow_dir, max_frames):
        """Digest of the precomputed flows the job reads (``--flow flo``/``vector`` with
        ``--flow-dir``), None if it reads none (vector passes in the input are in its digest)."""
        s = self.settings
        if not flow_dir or not (s.passes > 1 or s.offsets):
            return None
        if s.flow == "flo" and os.path.isdir(flow_dir):
            return identity.flo_digest(flow_dir)
        if s.flow == "vector":
            return identity.frames_digest(open_input(flow_dir, None, max_frames).paths)
        return None

    def _manifest(self, input_path, style_path, restart):
        """Refuse a folder holding another job (unless ``restart``); record this one."""
        record = {"job": self.job_id, "identity": self.identity,
                  "input": str(Path(input_path).resolve()), "style": str(Path(style_path).resolve()),
                  "frames": len(self.src), "size": list(self.size),
                  "settings": self.settings.to_dict()}
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
            for p in list(self.out.glob("frame_*.png")) + list(self.out.glob("passes/*/*.npy")):
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
    def content(self, i):
        with self.timed("io"):
            return resize(self.src.read(i), self.proc)

    def flow(self, a, b):
        with self.timed("flow"):
            return resize_flow(self.flows.flow(a, b), self.proc)

    def reliable_warp(self, image, a, b):
        """``image`` (a result for frame b) warped into frame a, and the reliability weights."""
        fab, fba = self.flow(a, b), self.flow(b, a)
        with self.timed("consistency"):
            warped, _ = warp_numpy(image, fab)
            return warped, reliability(fab, fba)

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

    def _stylize(self, i, pass_, content, init, temporal, iterations):
        step = (lambda it, n, loss: self.progress.step(i, pass_, it, n, loss)) if self.progress else None
        try:
            with self.timed("optimise"):
                return self.stylizer.stylize(content, init=init, temporal=temporal, iterations=iterations,
                                             on_step=step, seed=self.settings.seed + i)
        except FloatingPointError:
            raise StylizeError(memory.non_finite_message(i, pass_, self.settings)) from None
        except Exception as e:  # noqa: BLE001 -- only out-of-memory errors are translated
            if not memory.is_out_of_memory(e):
                raise
            raise StylizeError(memory.out_of_memory_message(self.device, i, self.proc, self.settings,
                                                            self.size)) from None

    # -- schedules --------------------------------------------------------------------
    def _start(self, frames, passes, skipped):
        """The ``start`` event, then (if work is left) the check of the flows."""
        if self.progress:
            self.progress.start(frames, passes, self.size, skipped=skipped, out=self.out, job=self.job_id)
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
        t0 = time.monotonic()
        if self.settings.passes > 1:
            self._multi_pass()
        else:
            self._single_pass()
        paths = [frame_path(self.out, i) for i in range(len(self.src))]
        if video:
            write_video([str(p) for p in paths], str(video), self.src.fps)
        timings = {k: round(v, 3) for k, v in self.timings.items()}
        self._write_manifest({**self.record, "status": "done",
                              "seconds": round(time.monotonic() - t0, 2), "timings": timings})
        if self.progress:
            self.progress.done(self.out, timings, paths)
        return paths

    def _single_pass(self):
        s, n = self.settings, len(self.src)
        done = [frame_path(self.out, i).exists() for i in range(n)]
        skipped = done.index(False) if False in done else n
        self._start(n, 1, skipped)
        keep = max(s.offsets, default=1)
        for i in range(skipped, n):
            content = self.content(i)
            earlier = [j for j in s.offsets if i - j >= 0]
            if not earlier:
                img = self._stylize(i, 1, content, None, (), s.iterations)
            else:
                pairs = [self.reliable_warp(self.result(i - j), i, i - j) for j in earlier]
                weights = long_term_weights([c for _, c in pairs])
                init = pairs[0][0]
                inside = weights[0] > 0  # regions with no reliable previous result start from content
                init = np.where(inside[..., None], init, content) if s.init == "content" else init
                temporal = [(w, c) for (w, _), c in zip(pairs, weights)]
                img = self._stylize(i, 1, content, init, temporal, s.iterations_later)
            path = frame_path(self.out, i)
            with self.timed("io"):
                write_png(path, resize(img, self.size))
            self._keep(i, None, img, keep)
            if self.progress:
                self.progress.frame(i, path)

    def _multi_pass(self):
        s, n = self.settings, len(self.src)
        dirs = [self.out / "passes" / f"pass_{p:02d}" for p in range(1, s.passes + 1)]
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
        def finished(p, i):
            return (frame_path(self.out, i) if p == s.passes else
                    dirs[p - 1] / f"frame_{i + 1:05d}.npy").exists()
        skipped = sum(finished(p, i) for p in range(1, s.passes + 1) for i in range(n))
        self._start(n, s.passes, skipped)
        for p in range(1, s.passes + 1):
            order = range(n) if p % 2 else range(n - 1, -1, -1)
            step = 1 if p % 2 else -1
            for i in order:
                if finished(p, i):
                    continue
                content, nb = self.content(i), i - step
                prev = self.result(i, dirs[p - 2]) if p > 1 else None
                init, temporal = prev, ()
                if 0 <= nb < n:
                    warped, c = self.reliable_warp(self.result(nb, dirs[p - 1]), i, nb)
                    base = prev if prev is not None else content
                    c3 = c[..., None]
                    init = c3 * (s.blend * warped + (1 - s.blend) * base) + (1 - c3) * base \
                        if prev is not None else np.where(c3 > 0, warped, base)
                    if p >= s.temporal_from_pass:
                        temporal = [(warped, c)]
                img = self._stylize(i, p, content, init, temporal, s.pass_iterations)
                with self.timed("io"):
                    self._save_pass(dirs[p - 1], i, img)
                    path = dirs[p - 1] / f"frame_{i + 1:05d}.npy"
                    if p == s.passes:
                        path = frame_path(self.out, i)
                        write_png(path, resize(img, self.size))
                self._keep(i, dirs[p - 1], img, 1)
                if self.progress:
                    self.progress.frame(i, path)

    @staticmethod
    def _save_pass(d, i, img):
        path = d / f"frame_{i + 1:05d}.npy"
        tmp = d / f".frame_{i + 1:05d}.tmp.npy"
        np.save(tmp, img.astype(np.float16))
        os.replace(tmp, path)


def run(input_path, style_path, out, settings, video=None, **kwargs):
    """Stylise a clip into ``out``; returns the output frame paths. See :class:`Job`."""
    return Job(input_path, style_path, out, settings, **kwargs).run(video)
