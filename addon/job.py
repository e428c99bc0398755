"""The run: one stylise job's state machine, from a checked request (``request.py``) to its result: export the
strip, run the engine, add the result strip; or (``RenderJob``) render a scene's animation, run the engine, write
the frames to its output path; its child processes, their events, cancel and the import of the results.

``Job.step()`` advances the run a little and returns False once it is over; the
modal operator calls it on a timer, background mode in a loop: one code path.
Both the export (``export.main`` in a child Blender) and the engine run in child
processes, so Blender never blocks for long.

Each strip of each .blend file has a folder, ``//stylize_jobs/<file>/<scene>.<strip>/``
(a scene's render animation: ``<scene>.render-animation/``; a temporary folder for an
unsaved file), holding ``frames/`` (the export),
``stylized/<job id>/`` (the engine's outputs; ``stylized/looks/`` what previews stylised), ``preview-frames/``
(a preview's one exported frame) and the logs. The job's identity is the
engine's: it names its output folder by the content of the frames, the style and the
settings (``--jobs``), so a changed scene, file, style or setting is another job in
another folder, a finished result that a strip shows is never overwritten, and an
unchanged one resumes from its finished frames. The add-on takes every path from the
engine's events. The strip is exported again on every run: a saved .blend holds memory
addresses that change from save to save, so no cheap test tells an unchanged scene from
a changed one, while the engine's content identity tells unchanged frames at once.
"""

import json
import sys
import time
from pathlib import Path

import bpy

from . import compat, engine_tables, export, importer, output, request, status, worker

current = None  # the running (or last) Job: the panel draws its progress
refused = ""  # why the last request was refused, until the next one starts


def refuse_if_running():
    """``request.JobError`` if a job is running: one at a time."""
    if current is not None and current.running:
        raise request.JobError(f"A stylize job is already running ({current.label}): wait for it or cancel it")


def prepare(context, scene_name="", strip_name="", preview=False):
    """Check everything a strip's run needs (``request.strip_request``) and return a new Job (now ``current``), or
    raise ``request.JobError``. ``preview``: a PreviewJob of the scene's current frame instead."""
    global current, refused
    refuse_if_running()
    args, warnings = request.strip_request(context, scene_name, strip_name, preview)
    current = (PreviewJob if preview else Job)(**args)
    current.warnings += warnings
    refused = ""
    return current


def prepare_render(context, scene_name="", preview=False):
    """Check everything a scene's render-animation run needs (``request.render_request``) and return a new
    RenderJob (now ``current``), or raise ``request.JobError``. ``preview``: a RenderPreviewJob of the scene's
    current frame instead (rendered alone)."""
    global current, refused
    refuse_if_running()
    args, warnings = request.render_request(context, scene_name, preview)
    current = (RenderPreviewJob if preview else RenderJob)(**args)
    current.warnings += warnings
    refused = ""
    return current


class Job:
    """Save a copy -> export (child Blender) -> stylise (engine) -> import, advanced by ``step()``.

    Holds no Blender data between steps: the scene and strip are looked up by name again.
    Subclasses (``RenderJob``) change what is exported and what is done with the result.
    """

    phases = ("save", "export", "stylize")

    def __init__(self, scene, strip, style, options, vector, regions=None):
        self._start(
            scene, bpy.path.clean_name(strip.name), compat.get(strip, "frame_final_duration"), style, options, regions
        )
        self.strip_name, self.vector = strip.name, vector
        # A scene strip's regions come from its render's Cryptomatte pass: the scene route.
        self.route = "scene" if vector or (regions or {}).get("cryptomatte") else "sequencer"

    def _start(self, scene, name, count, style, options, regions):
        """State shared by every kind of job; the job folder is ``<scene>.<name>`` in ``request.jobs_root()``."""
        self.scene_name, self.count = scene.name, count
        self.folder = request.jobs_root() / f"{bpy.path.clean_name(scene.name)}.{name}"
        self.frames, self.results = self.folder / "frames", self.folder / "stylized"
        self.style, self.options = style, options
        # {"map": region map, "cryptomatte": True} or {"map", "matte": strip name}, or None (no regions)
        self.regions = regions
        self.mattes = self.folder / "matte"
        self.stage, self.fraction, self.detail, self.error = "Saving a copy of the file", 0.0, "", ""
        self.warnings = []
        self.state = "running"  # then "done", "failed" or "cancelled"
        self.process, self.phase = None, "save"  # phase: one of ``phases``
        self.out, self.paths, self.result_name, self.child_error = None, [], "", ""
        self.timings, self.t0 = {}, time.monotonic()

    @property
    def label(self):
        """What is being stylised, for messages."""
        return f"strip '{self.strip_name}'"

    @property
    def summary(self):
        """The result, for the report once the job is done."""
        return f"Added '{self.result_name}'"

    @property
    def running(self):
        return self.state == "running"

    def step(self, budget=float("inf")):
        """Advance the job; False once it is done, failed or cancelled. ``budget`` is unused:
        every phase either returns at once or only reads what a child process wrote."""
        if not self.running:
            return False
        try:
            getattr(self, "_" + self.phase)()
        except Exception as e:  # any failure ends the job with its message; the folder stays
            self._stop_child()
            self._fail(str(e) if isinstance(e, (RuntimeError, OSError)) else f"{type(e).__name__}: {e}")
        return self.running

    def cancel(self):
        """Stop the child process (finished frames stay for a resume); no strip is added."""
        if self.running:
            self._stop_child()
            self.state, self.stage, self.detail = "cancelled", "Cancelled", "Run again to resume"
            self._cleanup()

    # -- phases ---------------------------------------------------------------------------
    def _save(self):
        """Save a copy of the file (as it is now) and start the export in a child Blender."""
        self.folder.mkdir(parents=True, exist_ok=True)
        bpy.ops.wm.save_as_mainfile(filepath=str(self.blend), copy=True)
        request = {
            "blend": str(self.blend),
            "scene": self.scene_name,
            "folder": str(self.frames),
            "route": self.route,
            **self._export_request(),
        }
        self.process = self._child_blender("export", request, "export.log")
        self.phase, self.stage, self.detail = "export", "Rendering frames", f"0/{self.count}"
        self._lap("save")

    @property
    def blend(self):
        """The saved copy of the file that the child Blenders open."""
        return self.folder / "source.blend"

    def _export_request(self):
        """The route's own fields of the export request (see ``export.main``)."""
        regions = self.regions or {}
        if self.route == "scene":
            return {"strip": self.strip_name, "vector": self.vector, "cryptomatte": bool(regions.get("cryptomatte"))}
        matte = {"strip": regions["matte"], "folder": str(self.mattes)} if regions.get("matte") else None
        return {"strip": self.strip_name, "matte": matte}

    def _child_blender(self, module, request, log):
        """Run ``<module>.main(request)`` of this package in a background Blender; its Process."""
        package = Path(__file__).resolve().parent
        code = (
            "import importlib, sys, warnings; warnings.simplefilter('default', DeprecationWarning); "
            f"sys.path.insert(0, {str(package.parent)!r}); "
            f"importlib.import_module({package.name + '.' + module!r}).main({json.dumps(request)!r})"
        )
        binary = bpy.app.binary_path or sys.executable
        cmd = worker.blender_command(binary, code, module=not bpy.app.binary_path)
        return worker.Process(cmd, cwd=self.folder, log_path=self.folder / log)

    def _export_record(self):
        """The export's ``export.json`` if all its frames are there, else {}."""
        try:
            record = json.loads((self.frames / export.DONE).read_text())
        except (OSError, ValueError):
            return {}
        frames = [p for p in self.frames.iterdir() if engine_tables.is_frame(p.name)]
        if (self.regions or {}).get("matte"):
            mattes = (
                [p for p in self.mattes.iterdir() if engine_tables.is_frame(p.name)] if self.mattes.is_dir() else []
            )
            if not len(mattes) == record.get("matte") == self.count:
                return {}
        return record if len(frames) == record.get("frames") == self.count else {}

    def _export(self):
        code = self._wait(self._on_frame, "export")
        if code is None:
            return
        done = self._export_record()
        if code != 0 or not done:
            self._child_failed(f"Exporting the {self.label}", code, "export.log")
            return
        self._export_done(done)

    command = "stylize"  # the engine's command (PreviewJob: ``preview``)

    @property
    def outputs(self):
        """How many frames the engine's ``done`` event names: every frame (PreviewJob: one, the preview)."""
        return self.count

    def _engine_options(self):
        return dict(self.options)

    def _export_done(self, done):
        """Start the engine on the exported frames (the export's warnings came as events)."""
        options = self._engine_options()
        if done["vector"]:
            options["flow"] = "vector"
        if self.regions:
            options.update(request.region_options(self.regions, self.style, self.folder, self.mattes))
        python = status.worker_python()
        cmd = worker.engine_command(python, self.frames, self.style, self.results, options, self.command)
        self.results.mkdir(parents=True, exist_ok=True)
        self.process = self._engine(cmd, python)
        self.phase, self.stage, self.fraction, self.detail = "stylize", "Starting the engine", 0.0, ""

    def _engine(self, cmd, python):
        """Run the engine command ``cmd``: a process of its own (PreviewJob: the warm engine, which ends first here:
        the job's memory plan sees the device's memory without it)."""
        worker.stop_server()
        return worker.Process(cmd, env=status.worker_env(python), cwd=self.folder, log_path=self.folder / "worker.log")

    def _stylize(self):
        code = self._wait(self._on_engine_event, "stylize")
        if code is None:
            return
        if code != 0:
            self._child_failed("Stylization", code, "worker.log")
            return
        missing = [p for p in self.paths if not Path(p).is_file()]
        if len(self.paths) != self.outputs or missing:
            self._fail(
                f"The engine finished with {len(self.paths) - len(missing)} of {self.outputs} frames. "
                f"Log: {self.folder / 'worker.log'}"
            )
            return
        self._stylized()

    def _stylized(self):
        """The engine wrote every frame (``self.paths``): add the result strip above the source."""
        scene, source = request.find_strip(self.scene_name, self.strip_name)
        if source is None:
            self._fail(f"Strip '{self.strip_name}' was removed or renamed while it was being stylised")
            return
        self.result_name = importer.add_result_strip(scene, source, [Path(p) for p in self.paths]).name
        self._lap("import")
        self._done()

    def _done(self):
        self.state, self.stage, self.fraction, self.detail = "done", "Done", 1.0, self.summary
        self._cleanup()

    def _wait(self, on_event, phase):
        """One look at the child process of ``phase`` (``worker.wait``): ``on_event`` for each of its events since
        the last look (warnings and errors kept first); its exit code once it ended (the phase's time recorded),
        else None."""
        code = worker.wait(self.process, lambda event: on_event(self._keep(event)))
        if code is not None:
            self._lap(phase)
        return code

    def _keep(self, event):
        """Keep a child's ``warning`` and ``error`` events (for the report); returns ``event``."""
        if event["event"] == "warning":
            self.warnings.append(event["message"])
        elif event["event"] == "error":
            self.child_error = event["message"]
        return event

    def _child_failed(self, what, code, log):
        """The child process doing ``what`` ended with exit code ``code`` or without its result: the job fails,
        naming its error and ``log``."""
        reason = self.child_error or f"exit code {code}"
        self._fail(f"{what} failed ({reason}). Log: {self.folder / log}")

    def _on_frame(self, e):
        """A child Blender's ``frame`` event (the export's, the delivery's): the progress."""
        if e["event"] == "frame":
            self.fraction, self.detail = e["frame"] / e["frames"], f"{e['frame']}/{e['frames']}"

    def _on_engine_event(self, e):
        kind = e["event"]
        if kind == "start":
            self._lap("engine start")
            self.stage, self.out = "Stylizing", e["out"]
        elif kind == "progress":
            frames, passes = e["frames"], e["passes"]
            if e.get("fraction") is not None:  # the engine's share of the time (its cost model)
                self.fraction = max(self.fraction, e["fraction"])
            else:
                self.fraction = (
                    (e["pass"] - 1) * frames + e["frame"] - 1 + e["iteration"] / max(e["iterations"], 1)
                ) / (frames * passes)
            self.detail = f"Frame {e['frame']}/{frames}"
            if passes > 1:
                self.detail += f", pass {e['pass']}/{passes}"
            if e.get("eta") is not None:
                self.detail += f", {format_seconds(e['eta'])} left"
        elif kind == "done":
            self.paths = e["paths"]

    def _lap(self, name):
        now = time.monotonic()
        self.timings[name] = round(now - self.t0, 2)
        self.t0 = now
        if name == self.keep_blend_until:
            self.blend.unlink(missing_ok=True)

    keep_blend_until = "export"  # the last phase that needs the saved copy

    def _cleanup(self):
        """The job is over: the saved copy goes."""
        self.blend.unlink(missing_ok=True)

    def _stop_child(self):
        if self.process is not None:
            self.process.stop()

    def _fail(self, message):
        self.state, self.stage, self.error = "failed", "Failed", message
        self._cleanup()


PREVIEW_IMAGES = {
    "preview": "Stylize Preview",
    "input": "Stylize Preview Input",  # the images a preview replaces,
    "compare": "Stylize Preview Compare",
}  # by the engine's ``preview`` event's kinds
PREVIEW_IMAGE, PREVIEW_INPUT = PREVIEW_IMAGES["preview"], PREVIEW_IMAGES["input"]


class PreviewJob(Job):
    """One frame of the strip stylised as its job would: that frame exported alone (``preview-frames/``, the
    same export request otherwise), the engine's ``preview --at 1`` of it with the strip's options and results
    folder, whose shared looks (the engine's ``looks.py``) the strip's job finds (fast mode: the frame as a
    keyframe; quality mode: frame 1). The results replace the images ``PREVIEW_IMAGES``."""

    command = "preview"

    def __init__(self, scene, strip, style, options, vector, regions, at):
        super().__init__(scene, strip, style, options, vector, regions)
        self.at = at  # 1-based frame of the strip
        self.count = 1
        self.frames, self.mattes = self.folder / "preview-frames", self.folder / "preview-matte"
        self.options = {**options, "keyframe": request.one_frame_keyframes(options.get("keyframe", []), at)}
        self.files = {}  # the engine's ``preview`` event: {kind: path} of ``PREVIEW_IMAGES``'s kinds

    def _export_request(self):
        return {**super()._export_request(), "only": self.at - 1}

    @property
    def label(self):
        return f"frame {self.at} of strip '{self.strip_name}'"

    @property
    def summary(self):
        return f"Previewed frame {self.at} of '{self.strip_name}'"

    def _engine_options(self):
        return {**self.options, "at": 1}  # the exported frame alone

    outputs = 1  # the ``done`` event names the preview (its input and comparison come in the ``preview`` event)

    def _save(self):
        warm_engine()  # started (if not running) now: its imports overlap the export
        super()._save()

    def _engine(self, cmd, python):
        """The preview runs in the warm engine (``worker.Server``): torch and the networks stay loaded for the
        next preview; a cancel ends it."""
        return warm_engine().run(cmd, self.folder / "worker.log")

    def _on_engine_event(self, e):
        super()._on_engine_event(e)
        if e["event"] == "preview":
            self.files = {kind: e[kind] for kind in PREVIEW_IMAGES if kind in e}

    def _stylized(self):
        files = self.files
        if set(files) != set(PREVIEW_IMAGES):
            self._fail(f"The engine wrote no preview event (an older engine?). Log: {self.folder / 'worker.log'}")
            return
        scene = bpy.data.scenes.get(self.scene_name)
        self.result_name = show_preview(files, scene is not None and scene.video_stylize.preview_side_by_side)
        self._lap("import")
        self._done()


WARM_ENGINE_LOG = (
    "warm-engine.log"  # in ``request.jobs_root()``: the warm engine's own output (each preview's is in its job folder)
)


def warm_engine():
    """The warm engine (``worker.server``) for the worker interpreter of the preferences."""
    python = status.worker_python()
    root = request.jobs_root()
    root.mkdir(parents=True, exist_ok=True)
    return worker.server(python, status.worker_env(python), root / WARM_ENGINE_LOG)


def show_preview(files, side_by_side=False):
    """Load the engine's preview ``files`` (``{kind: path}``: preview, input, compare) into the images
    ``PREVIEW_IMAGES`` (replaced on each preview; the panel shows the input and the preview side by side) and show
    the preview (``side_by_side``: the compare image) in every Image Editor. Returns the preview image's name."""
    for kind, name in PREVIEW_IMAGES.items():
        image = bpy.data.images.get(name)
        if image is None:
            image = bpy.data.images.load(str(files[kind]), check_existing=False)
            image.name = name
        else:
            image.filepath = str(files[kind])
            image.reload()
    show_in_editors(side_by_side)
    return PREVIEW_IMAGE


def show_in_editors(side_by_side):
    """Every Image Editor shows the last preview: beside its input (the compare image) or alone."""
    image = bpy.data.images.get(PREVIEW_IMAGES["compare" if side_by_side else "preview"])
    if image is None:
        return
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "IMAGE_EDITOR":
                area.spaces.active.image = image
                area.tag_redraw()


class RenderPreviewJob(PreviewJob):
    """The scene's current frame rendered alone (its view layer, the Cryptomatte pass for regions, no Vector pass:
    the animation's job renders one, so it does not find this look) and stylised as a one-frame job's preview."""

    def __init__(self, scene, layer, style, options, regions, at):
        self._start(scene, request.JOB_FOLDER_RENDER_PREVIEW, 1, style, options, regions)
        self.route, self.layer, self.vector, self.scene_frame = "render", layer.name, False, at
        self.files = {}  # as PreviewJob's

    @property
    def label(self):
        return f"frame {self.scene_frame} of scene '{self.scene_name}'"

    @property
    def summary(self):
        return f"Previewed frame {self.scene_frame} of scene '{self.scene_name}'"

    def _export_request(self):
        return {
            "layer": self.layer,
            "vector": False,
            "cryptomatte": bool(self.regions),
            "alpha_folder": None,
            "frames": [self.scene_frame],
        }


class RenderJob(Job):
    """Stylise a scene's render animation: save a copy -> render the frame range with the Vector
    pass (the scene-strip export's ``layer_frames``) -> stylise -> write the frames to the output
    path (``output.main`` in a child Blender) -> optionally add them to a sequencer as a strip."""

    phases = ("save", "export", "stylize", "deliver")
    keep_blend_until = "deliver"

    def __init__(self, scene, layer, style, options, vector, targets, overwrite, sequencer_scene, regions=None):
        self._start(scene, request.JOB_FOLDER_RENDER, len(targets), style, options, regions)
        self.route, self.layer, self.vector = "render", layer.name, vector
        self.first_frame = scene.frame_start
        self.targets, self.overwrite, self.sequencer_scene = [str(t) for t in targets], overwrite, sequencer_scene
        self.alpha = self.folder / "alpha" if output.wants_alpha(scene) else None

    @property
    def label(self):
        return f"animation of scene '{self.scene_name}'"

    @property
    def summary(self):
        folder = Path(self.targets[0]).parent
        added = f", added '{self.result_name}' to the sequencer" if self.result_name else ""
        return f"Wrote {self.count} frames to {folder}{added}"

    def _cleanup(self):
        """The job is over: the saved copy goes, and any frame a stopped delivery was writing."""
        super()._cleanup()
        for target in self.targets:
            output.temp_path(Path(target)).unlink(missing_ok=True)

    def _export_request(self):
        return {
            "layer": self.layer,
            "vector": self.vector,
            "cryptomatte": bool(self.regions),
            "alpha_folder": str(self.alpha) if self.alpha else None,
        }

    def _stylized(self):
        """Write the engine's frames to the output paths in a child Blender (the scene's image format)."""
        alphas = (
            [str(self.alpha / engine_tables.jobdir.frame_name(i, ".png")) for i in range(self.count)]
            if self.alpha
            else [None] * self.count
        )
        request = {
            "blend": str(self.blend),
            "scene": self.scene_name,
            "job_folder": str(self.folder),
            "overwrite": self.overwrite,
            "frames": list(zip(self.paths, alphas, self.targets)),
        }
        self.process = self._child_blender("output", request, "output.log")
        self.phase, self.stage, self.fraction, self.detail = "deliver", "Writing frames", 0.0, f"0/{self.count}"

    def _deliver(self):
        code = self._wait(self._on_frame, "deliver")
        if code is None:
            return
        if code != 0 or not output.read_record(self.folder).get("complete"):
            self._child_failed("Writing the stylised frames", code, "output.log")
            return
        if self.sequencer_scene:
            self._add_strip()
        self._done()

    def _add_strip(self):
        """The written frames as an image strip in the sequencer of ``sequencer_scene``."""
        scene = bpy.data.scenes.get(self.sequencer_scene)
        if scene is None:
            self.warnings.append(f"Scene '{self.sequencer_scene}' is gone: no strip was added")
            return
        strip = importer.add_image_strip(
            scene,
            compat.strips(scene.sequence_editor_create()),
            f"{self.scene_name} (stylized)",
            [Path(t) for t in self.targets],
            self.first_frame,
            above=0,
        )
        self.result_name = strip.name
        if scene.name == self.scene_name and scene.render.use_sequencer:
            self.warnings.append(
                f"The strip is in scene '{scene.name}''s own sequencer, so its renders now show "
                "the sequencer (Output Properties > Post Processing > Sequencer)"
            )


def format_seconds(seconds):
    """``75`` -> ``"1m 15s"``."""
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s" if m else f"{s}s"
