"""One stylise run: check the request, export the strip, run the engine, add the result strip.

``Job.step()`` advances the run a little and returns False once it is over; the
modal operator calls it on a timer, background mode in a loop: one code path.
A job folder (``//stylize_jobs/<strip>_<hash>/``, or a temporary folder for an
unsaved file) holds ``frames/`` (the export), ``out/`` (the engine's output) and
``worker.log`` (its stderr). It is kept after a failure or cancel: the next run
with the same strip and settings resumes.
"""
import hashlib
import json
import tempfile
import time
from pathlib import Path

import bpy

from . import compat, export, importer, status, worker

SUPPORTED = {"MOVIE", "IMAGE", "SCENE"}
ENGINE_FLOWS = {"DIS": "dis", "DEEPFLOW": "deepflow", "RAFT": "raft"}

current = None  # the running Job, if any


class JobError(Exception):
    """A request that cannot run, with a message that says why and what to do."""


def prepare(context, scene_name="", strip_name=""):
    """Check everything a run needs and return a new Job (now ``current``), or raise JobError."""
    global current
    if current is not None and current.running:
        raise JobError(f"A stylize job is already running (strip '{current.strip_name}'): "
                       "wait for it or cancel it")
    scene = bpy.data.scenes.get(scene_name) if scene_name else compat.sequencer_scene(context)
    if scene is None:
        raise JobError(f"No scene named '{scene_name}'")
    sed = scene.sequence_editor
    strip = (compat.strips_all(sed).get(strip_name) if strip_name else sed.active_strip) if sed else None
    if strip is None:
        raise JobError(f"No strip named '{strip_name}' in scene '{scene.name}'" if strip_name else
                       "No active strip: click the movie, image or scene strip to stylise")
    if strip.type not in SUPPORTED:
        raise JobError(f"'{strip.name}' is a {strip.type.lower().replace('_', ' ')} strip: "
                       "only movie, image and scene strips can be stylised")
    if strip.type == "SCENE" and strip.scene is None:
        raise JobError(f"Scene strip '{strip.name}' has no scene")

    settings = scene.video_stylize
    style = Path(bpy.path.abspath(settings.style_image))
    if not settings.style_image:
        raise JobError("Choose a style image in the sidebar's Stylize tab")
    if not style.is_file():
        raise JobError(f"Style image not found: {style}")

    try:
        worker.engine_root()
    except FileNotFoundError as e:
        raise JobError(str(e)) from None
    probe = status.probe()
    if problem := status.torch_problem(probe):
        raise JobError(problem)

    vector = uses_vector_pass(strip, settings.flow)
    flow = "vector" if vector else ENGINE_FLOWS.get(settings.flow)
    needed = flow or ("deepflow" if settings.preset == "paper" else "dis")
    if needed != "vector" and needed not in probe["flows"]:
        raise JobError(f"{needed} optical flow is not available to the worker "
                       f"(available: {', '.join(probe['flows'])}): choose another in Motion")

    p = status.prefs()
    vgg = bpy.path.abspath(p.weights) if p and p.weights else None
    if vgg and not vgg.startswith("random") and not Path(vgg).is_file():
        raise JobError(f"VGG-19 weights not found: {vgg} (Preferences > Add-ons > Video Style Transfer)")
    if not vgg and not probe["weights"] and not bpy.app.online_access:
        raise JobError("The VGG-19 weights (548 MB) must be downloaded once, but online access is off: "
                       "enable Preferences > System > Network > Allow Online Access, or set the weights "
                       "file in the add-on's preferences")

    options = {"preset": settings.preset, "strength": round(settings.strength, 4),
               "temporal-weight": round(settings.temporal_weight, 4),
               "preserve-colors": settings.preserve_colors, "flow": flow,
               "scale": round(settings.scale, 4) or None, "iterations": settings.iterations or None,
               "iterations-later": settings.iterations or None,
               "device": p.device if p else "auto", "vgg": vgg,
               "no-download": not bpy.app.online_access}
    current = Job(scene, strip, style, options, vector)
    return current


def uses_vector_pass(strip, flow):
    """Auto on a scene strip that renders its camera with an engine that writes the Vector pass."""
    return (flow == "AUTO" and strip.type == "SCENE" and strip.scene_input == "CAMERA"
            and strip.scene.render.engine in compat.VECTOR_PASS_ENGINES)


def source_identity(strip):
    """What the strip shows, as JSON-able data (for the job folder's name)."""
    ident = {"type": strip.type, "name": strip.name, "start": strip.frame_start,
             "range": [strip.frame_final_start, strip.frame_final_end]}
    if strip.type == "MOVIE":
        ident["file"] = bpy.path.abspath(strip.filepath)
    elif strip.type == "IMAGE":
        ident["files"] = [bpy.path.abspath(strip.directory), [e.filename for e in strip.elements]]
    else:
        ident["scene"] = [strip.scene.name, strip.scene_camera.name if strip.scene_camera else ""]
    return ident


def jobs_root():
    """``//stylize_jobs`` beside a saved .blend, else a folder in the system's temporary folder."""
    if bpy.data.filepath:
        return Path(bpy.path.abspath("//stylize_jobs"))
    return Path(tempfile.gettempdir()) / "blender_stylize_jobs"


class Job:
    """Export -> stylise -> import, advanced by ``step()``; holds no Blender data between steps."""

    def __init__(self, scene, strip, style, options, vector):
        self.scene_name, self.strip_name = scene.name, strip.name
        self.count = strip.frame_final_duration
        key = json.dumps([source_identity(strip), str(style), options], sort_keys=True)
        self.folder = jobs_root() / f"{bpy.path.clean_name(strip.name)}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
        kind = export.SceneExport if vector else export.SequencerExport
        self.export = kind(scene.name, strip.name, self.folder / "frames", self.count)
        self.out, self.log_path = self.folder / "out", self.folder / "worker.log"
        self.style, self.options = style, options
        self.resume = (self.export.folder / export.DONE_MARKER).is_file() and not self.finished_frames()
        if self.resume:
            self.export.done = self.count
        self.stage, self.fraction, self.detail, self.error = "Exporting frames", 0.0, "", ""
        self.state = "running"  # then "done", "failed" or "cancelled"
        self.process, self.result_name, self.engine_error = None, "", ""
        self.timings, self.t0 = {}, time.monotonic()

    @property
    def running(self):
        return self.state == "running"

    def output_paths(self):
        return [self.out / f"frame_{i:05d}.png" for i in range(1, self.count + 1)]

    def finished_frames(self):
        return all(p.is_file() for p in self.output_paths())

    def step(self, budget=float("inf")):
        """Advance the job; False once it is done, failed or cancelled."""
        if not self.running:
            return False
        try:
            if self.process is None:
                self._export(budget)
            else:
                self._stylize()
        except Exception as e:  # any failure ends the job with its message; the folder stays
            self._stop_worker()
            self._fail(str(e) if isinstance(e, (RuntimeError, OSError)) else f"{type(e).__name__}: {e}")
        return self.running

    def cancel(self):
        """Stop the worker (finished frames stay for a resume); no strip is added."""
        if self.running:
            self._stop_worker()
            self.state, self.stage, self.detail = "cancelled", "Cancelled", "Run again to resume"

    def _export(self, budget):
        finished = self.export.step(budget)
        self.fraction, self.detail = self.export.fraction, f"Frame {self.export.done}/{self.count}"
        if finished:
            self._lap("export")
            self._start_worker()

    def _start_worker(self):
        python = status.worker_python()
        options = {**self.options, "restart": not self.resume}
        cmd = worker.engine_command(python, self.export.folder, self.style, self.out, options)
        self.out.mkdir(parents=True, exist_ok=True)
        self.process = worker.Process(cmd, env=status.worker_env(python), cwd=self.folder,
                                      log_path=self.log_path)
        self.stage, self.fraction, self.detail = "Starting the engine", 0.0, ""

    def _stylize(self):
        for line in self.process.drain():
            event = worker.parse_event(line)
            if event:
                self._on_event(event)
        code = self.process.returncode
        if code is None:
            return
        self._lap("stylize")
        if code != 0:
            reason = self.engine_error or f"exit code {code}"
            self._fail(f"Stylization failed ({reason}). Log: {self.log_path}")
            return
        paths = self.output_paths()
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            self._fail(f"The engine finished without {', '.join(missing[:3])}. Log: {self.log_path}")
            return
        scene, source = export.find_strip(self.scene_name, self.strip_name)
        if source is None:
            self._fail(f"Strip '{self.strip_name}' was removed or renamed while it was being stylised")
            return
        self.result_name = importer.add_result_strip(scene, source, paths).name
        self._lap("import")
        self.state, self.stage, self.fraction, self.detail = "done", "Done", 1.0, f"Added '{self.result_name}'"

    def _on_event(self, e):
        kind = e["event"]
        if kind == "start":
            self._lap("engine start")
            self.stage = "Stylizing"
        elif kind == "progress":
            frames, passes = e["frames"], e["passes"]
            self.fraction = ((e["pass"] - 1) * frames + e["frame"] - 1
                             + e["iteration"] / max(e["iterations"], 1)) / (frames * passes)
            self.detail = f"Frame {e['frame']}/{frames}"
            if passes > 1:
                self.detail += f", pass {e['pass']}/{passes}"
            if e.get("eta") is not None:
                self.detail += f", {format_seconds(e['eta'])} left"
        elif kind == "error":
            self.engine_error = e["message"]

    def _lap(self, name):
        now = time.monotonic()
        self.timings[name] = round(now - self.t0, 2)
        self.t0 = now

    def _stop_worker(self):
        if self.process is not None:
            self.process.stop()

    def _fail(self, message):
        self.state, self.stage, self.error = "failed", "Failed", message


def format_seconds(seconds):
    """``75`` -> ``"1m 15s"``."""
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s" if m else f"{s}s"
