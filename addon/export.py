"""Export a strip's visible frames as the engine's input, in a child Blender process.

The add-on saves a copy of the .blend file and runs ``main()`` in ``blender -b`` (or,
with bpy as a Python module, in a child Python), as render farms do: the user's
Blender never blocks on a render, and every setting changed for the export is
changed in the throw-away copy only. ``main()`` reports on stdout with the engine's
JSON events (``frame``, ``warning``, ``done``, ``error``; see docs/conventions.md).

Three routes:

- ``sequencer``: the strip rendered through the sequencer with every other strip
  muted and the Standard view transform, to 8-bit PNG. Trims, offsets, speed,
  modifiers and transforms all apply.
- ``scene`` (scene strips): the strip's scene rendered by its own engine, the view
  layer the strip shows, to multilayer EXR with the Vector pass (motion blur off,
  which would empty the pass), so the engine gets exact motion (``--flow vector``).
  A moving orthographic camera makes Cycles before 5.2 write a wrong Vector pass: the
  ``done`` event then says ``"vector": false`` with the reason.
- ``render`` (Render > Stylize Animation): a scene's own frame range, rendered like a
  scene strip covering it (the same ``layer_frames``), at the scene's output size; the
  Vector pass only when the render engine writes it.

Regions: the ``scene`` and ``render`` routes add the Cryptomatte Object pass (``cryptomatte``),
whose object names and coverage the engine reads from the same EXR files; the user's objects
and their pass indices are never touched. The ``sequencer`` route renders a ``matte`` strip too,
isolated like the strip, at the same timeline frames, into its own folder.
"""

import json
import sys
from pathlib import Path

import bpy

from . import compat, engine_tables

DONE = "export.json"  # written last into the frames folder: {"frames", "vector", "warnings", "matte"}


def emit(event, **fields):
    """One JSON event line on stdout (Blender's own output is interleaved on the same stream)."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def apply(settings):
    """Set ``(object, attribute, value)`` settings, in order (on the copy: nothing to restore)."""
    for obj, attr, value in settings:
        setattr(obj, attr, value)


def render_still(scene, filepath, layer=None):
    """Render the current frame of ``scene`` to ``filepath`` (only ``layer``, if given)."""
    scene.render.filepath = str(filepath)
    layer = layer or scene.view_layers[0]
    with bpy.context.temp_override(scene=scene, view_layer=layer):
        bpy.ops.render.render(write_still=True, layer=layer.name)


def isolate(sequence_editor, name):
    """Mute every strip but ``name`` and the meta strips holding it; unmute their channels."""
    chain = [compat.strips_all(sequence_editor)[name]]
    while (meta := chain[-1].parent_meta()) is not None:
        chain.append(meta)
    keep = {s.name for s in chain}
    for s in compat.strips_all(sequence_editor):
        s.mute = s.name not in keep
    owner = sequence_editor
    for s in reversed(chain):
        owner.channels[s.channel].mute = False
        owner = s


def sequencer_frames(scene, strip, matte=None):
    """Route ``sequencer``: (suffix, render(index, path)) for the strip as the sequencer shows it;
    with ``matte`` (``{"strip", "folder"}``) each frame of that strip at the same timeline frame too,
    under the frame's own name in its folder."""
    isolate(scene.sequence_editor, strip.name)
    apply(
        [
            (scene.render, "resolution_percentage", 100),
            (scene.render, "use_sequencer", True),
            (scene.view_settings, "view_transform", "Standard"),
            (scene.view_settings, "look", "None"),
            (scene.view_settings, "exposure", 0.0),
            (scene.view_settings, "gamma", 1.0),
            (scene.view_settings, "use_curve_mapping", False),
        ]
        + compat.png_rgb8(scene.render.image_settings)
    )
    start = compat.get(strip, "frame_final_start")

    def render(index, path):
        scene.frame_current = start + index
        render_still(scene, path)
        if matte:
            isolate(scene.sequence_editor, matte["strip"])
            render_still(scene, Path(matte["folder"]) / Path(path).with_suffix(".png").name)
            isolate(scene.sequence_editor, strip.name)

    return ".png", render


def layer_frames(scene, layer, frames, vector=True, alpha_folder=None, cryptomatte=False):
    """Render ``frames`` (scene frame numbers) of ``scene``'s view ``layer`` to multilayer EXR, with the
    Vector pass if ``vector`` (motion blur off) and the Cryptomatte Object pass if ``cryptomatte``:
    shared by the scene-strip and render routes.

    Returns (suffix, render(index, path), warnings, vector_problem). With ``alpha_folder`` every
    frame's alpha is also saved there as a 16-bit RGBA PNG (the frame's name), for the render route's
    output: a multilayer EXR cannot be read back through bpy."""
    render = scene.render
    warnings = []
    if vector and render.use_motion_blur:
        warnings.append(
            f"motion blur of scene '{scene.name}' is off in the export (the Vector pass is empty with it on)"
        )
    apply(
        [(render, "use_sequencer", False), (layer, "use_pass_vector", vector)]
        + ([(layer, "use_pass_cryptomatte_object", True)] if cryptomatte else [])
        + ([(render, "use_motion_blur", False)] if vector else [])
        + [(other, "use", other == layer) for other in scene.view_layers]  # 5.2 writes every used layer
        + compat.multilayer_exr(render.image_settings)
    )
    problem = moving_ortho_camera(scene, layer, frames) if vector and compat.ORTHO_VECTOR_BROKEN else None

    def render_frame(index, path):
        scene.frame_set(frames[index])
        render_still(scene, path, layer)
        if alpha_folder is not None:
            save_alpha(scene, Path(alpha_folder) / Path(path).with_suffix(".png").name)

    return ".exr", render_frame, warnings, problem


def save_alpha(scene, path):
    """Save the last render (Render Result) as 16-bit RGBA PNG at ``path``, then restore EXR output."""
    settings = scene.render.image_settings
    formats = compat.multilayer_exr(settings)
    apply(compat.png_rgb8(settings) + [(settings, "color_mode", "RGBA"), (settings, "color_depth", "16")])
    bpy.data.images["Render Result"].save_render(str(path), scene=scene)
    apply(formats)


def scene_frames(strip, vector=True, cryptomatte=False):
    """Route ``scene``: (suffix, render(index, path), warnings, vector_problem) for a scene strip."""
    inner, layer = strip.scene, compat.view_layer(strip)
    inner.render.resolution_percentage = 100  # the sequencer scales the strip to its own size
    if strip.scene_camera:
        inner.camera = strip.scene_camera
    # The scene frame shown at the strip's first visible frame.
    first = (
        inner.frame_start
        + compat.get(strip, "animation_offset_start")
        + compat.get(strip, "frame_final_start")
        - round(compat.get(strip, "frame_start"))
    )
    count = compat.get(strip, "frame_final_duration")
    return layer_frames(inner, layer, range(first, first + count), vector, cryptomatte=cryptomatte)


def animation_frames(scene):
    """The scene frames Render Animation renders: every ``frame_step``-th of the frame range."""
    return range(scene.frame_start, scene.frame_end + 1, max(scene.frame_step, 1))


def render_range(scene, request):
    """The scene frames of a ``render`` request: its ``frames`` (a preview's), else the animation's."""
    return request.get("frames") or animation_frames(scene)


def render_frames(scene, request):
    """Route ``render``: (suffix, render(index, path), warnings, vector_problem) for a scene's own
    frame range (or the request's ``frames``) at its output size, as Render Animation renders it."""
    layer = scene.view_layers[request["layer"]]
    return layer_frames(
        scene,
        layer,
        render_range(scene, request),
        request["vector"],
        request.get("alpha_folder"),
        request.get("cryptomatte", False),
    )


def moving_ortho_camera(scene, layer, frames):
    """Why the Vector pass cannot be trusted (a moving orthographic camera), or None.

    The camera is read from ``layer``'s evaluated depsgraph: the original object's
    matrix is not updated by ``frame_set`` on a scene other than the window's."""
    cam = scene.camera
    if cam is None or cam.data.type != "ORTHO":
        return None

    def pose(frame):
        scene.frame_set(frame)
        evaluated = cam.evaluated_get(layer.depsgraph)
        return evaluated.matrix_world.copy(), evaluated.data.ortho_scale

    first = pose(frames[0])
    for f in frames[1:]:
        m, scale = pose(f)
        if max(abs(a - b) for ra, rb in zip(m, first[0]) for a, b in zip(ra, rb)) > 1e-6 or scale != first[1]:
            return f"the orthographic camera '{cam.name}' moves, for which Cycles writes a wrong Vector pass"
    return None


def source_frames(request, scene):
    """(count, suffix, render, warnings, vector_problem) of the request's route."""
    if request["route"] == "render":
        return (len(render_range(scene, request)), *render_frames(scene, request))
    sed = scene.sequence_editor
    strip = sed and compat.strips_all(sed).get(request["strip"])
    if strip is None:
        raise RuntimeError(f"strip '{request['strip']}' not found in scene '{request['scene']}' of the saved copy")
    count = compat.get(strip, "frame_final_duration")
    if request["route"] == "scene":
        return (count, *scene_frames(strip, request.get("vector", True), request.get("cryptomatte", False)))
    matte = request.get("matte")
    if matte and compat.strips_all(sed).get(matte["strip"]) is None:
        raise RuntimeError(f"matte strip '{matte['strip']}' not found in scene '{request['scene']}' of the saved copy")
    return (count, *sequencer_frames(scene, strip, matte), [], None)


def clear(folder):
    """Create ``folder``, or remove from it an earlier export's files (frames of another length, another
    route): its frame files and marker only, never another file."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_file() and (old.name == DONE or engine_tables.is_frame(old.name)):
            old.unlink()


def export(request):
    """Render the frames of ``request`` (see ``main``); the ``done`` event's fields."""
    bpy.ops.wm.open_mainfile(filepath=request["blend"], load_ui=False)
    scene = bpy.data.scenes.get(request["scene"])
    if scene is None:
        raise RuntimeError(f"scene '{request['scene']}' not found in the saved copy")
    folder = Path(request["folder"])
    clear(folder)
    for extra in (request.get("alpha_folder"), (request.get("matte") or {}).get("folder")):
        if extra:
            clear(Path(extra))
    count, suffix, render, warnings, problem = source_frames(request, scene)
    for w in warnings + ([f"{problem}: using estimated optical flow"] if problem else []):
        emit("warning", message=w)
    indices = range(count) if request.get("only") is None else [request["only"]]  # a preview: one frame alone
    count = len(indices)
    for n, i in enumerate(indices):
        path = folder / engine_tables.jobdir.frame_name(n, suffix)  # the engine reads them in name order
        render(i, path)
        emit("frame", frame=n + 1, frames=count, path=str(path))
    vector = request["route"] in ("scene", "render") and request.get("vector", True)
    done = {
        "frames": count,
        "vector": vector and problem is None,
        "warnings": warnings + ([problem] if problem else []),
    }
    if request.get("matte"):
        done["matte"] = count
    (folder / DONE).write_text(json.dumps(done))
    return done


def main(request_json):
    """Child entry point: ``request_json`` holds blend (the saved copy), scene, folder and route:
    ``sequencer`` | ``scene`` with strip, or ``render`` (the scene's frame range) with layer (a view
    layer's name) and alpha_folder (or null); ``scene`` and ``render`` with vector (render the Vector
    pass) and cryptomatte (the Cryptomatte Object pass), ``sequencer`` with matte (``{"strip",
    "folder"}`` or absent); ``only`` (optional): the 0-based index of the one frame to export (as
    ``frame_00001``); ``export.json`` is written when all frames are."""
    try:
        emit("done", **export(json.loads(request_json)))
    except Exception as e:
        emit("error", message=f"{type(e).__name__}: {e}" if not isinstance(e, RuntimeError) else str(e))
        raise
