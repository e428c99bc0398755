"""The render-animation job's output: stylised frames written where the scene's render goes.

The target of each frame is Blender's own: ``scene.render.frame_path(frame=N)`` (the output
path's folder, name, ``#`` padding and extension), or its file name in a folder the user
picked. Existing files there (the plain render, an earlier result) are never overwritten
unless asked; the files of a delivery that was interrupted (cancel, crash) are this job's
own and the next run completes them. ``output.json`` in the job folder records what was
written (path -> size and modification time) and whether the delivery finished.

``main()`` runs in a child Blender (like ``export.main``) on the saved copy of the file:
every frame is saved with ``Image.save_render`` and the scene's own image settings (format,
colour depth, RGB/RGBA, codec), under the Standard view transform set on the copy, so an
8-bit output holds the engine's sRGB pixels unchanged and a float output (EXR) their linear
values. The rendered alpha is kept where the output has an alpha channel and the film is
transparent. Each file is written under a temporary name beside its target and renamed.
"""

import array
import json
import os
from pathlib import Path

import bpy

from . import export

RECORD = "output.json"  # in the job folder: {"complete": bool, "files": {path: [size, mtime_ns]}}
TEMP = ".stylize-part"  # a file being written: "<target>.stylize-part<ext>"


def targets(scene, frames, folder=""):
    """Absolute output paths of scene ``frames``: Blender's frame paths, or their names in ``folder``."""
    paths = [Path(scene.render.frame_path(frame=f)) for f in frames]
    if folder:
        base = Path(bpy.path.abspath(folder))
        paths = [base / p.name for p in paths]
    return [Path(os.path.abspath(p)) for p in paths]


def wants_alpha(scene):
    """True when the output keeps the render's alpha: an RGBA output of a transparent film."""
    return scene.render.film_transparent and scene.render.image_settings.color_mode == "RGBA"


def read_record(job_folder):
    """The job folder's ``output.json`` (an empty, finished record if there is none)."""
    try:
        record = json.loads((Path(job_folder) / RECORD).read_text())
    except (OSError, ValueError):
        return {"complete": True, "files": {}}
    return record


def write_record(job_folder, record):
    """Write ``output.json`` under a temporary name and rename it (never half-written)."""
    path = Path(job_folder) / RECORD
    tmp = path.with_name(RECORD + ".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def is_own(path, record):
    """True if ``path`` is a file an unfinished delivery of this job wrote (and nothing changed since)."""
    entry = record["files"].get(str(path))
    if record.get("complete", True) or entry is None:
        return False
    try:
        stat = path.stat()
    except OSError:
        return False
    return [stat.st_size, stat.st_mtime_ns] == entry


def writable_folder(folder):
    """Why files cannot be created in ``folder`` (made if missing), or None."""
    base = Path(folder)
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        return f"{base} is a file, not a folder"
    if not os.access(base, os.W_OK | os.X_OK):
        return f"{base} is not writable"
    return None


def format_problem(scene):
    """Why the scene's output format cannot take the stylised frames (a movie), or None. Checked before
    ``targets``: Blender creates a movie's folder when asked for its path."""
    if scene.render.is_movie_format:
        return (
            f"The output format of scene '{scene.name}' is a movie "
            f"({scene.render.image_settings.file_format}): choose an image format (PNG, OpenEXR, ...) "
            "in Output Properties"
        )
    return None


def check(paths, overwrite, record):
    """Why the stylised frames cannot be written to ``paths``, or None."""
    for folder in dict.fromkeys(p.parent for p in paths):
        if problem := writable_folder(folder):
            return f"Cannot write the stylised frames to {folder}: {problem}; choose another output path"
    existing = [p for p in paths if p.exists() and not is_own(p, record)]
    if existing and not overwrite:
        return (
            f"{len(existing)} of the {len(paths)} output files already exist, e.g. {existing[0]}: "
            "tick Overwrite or choose another output folder"
        )
    if dirs := [p for p in existing if p.is_dir()]:
        return f"The output path {dirs[0]} is a folder"
    return None


# -- in the child Blender ---------------------------------------------------------------------


def srgb_to_linear(v):
    """Inverse of the sRGB transfer function (Blender's Standard view), for float outputs."""
    return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4


def _numpy():
    """numpy, or None: Blender's own builds bundle it, Debian's Blender (python3-numpy not installed) has none."""
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def pixels(path):
    """An image file's pixels as Blender stores them: flat RGBA float32, bottom row first (a numpy array,
    else an ``array.array``), and the image's (width, height)."""
    np = _numpy()
    image = bpy.data.images.load(str(path))
    w, h = image.size
    buf = np.empty(w * h * 4, np.float32) if np else array.array("f", bytes(w * h * 16))
    image.pixels.foreach_get(buf)
    bpy.data.images.remove(image)
    return buf, (w, h)


def stylised_image(frame_path, alpha_path):
    """A float image of the stylised frame (8-bit sRGB PNG -> linear), with the render's alpha if given.

    The engine stylised the render composited over black, so its colours are taken as
    premultiplied by the alpha, as a render's are."""
    rgba, (w, h) = pixels(frame_path)
    linear = [srgb_to_linear(k / 255) for k in range(256)]  # the PNG's 256 levels
    if np := _numpy():
        rgba = np.asarray(linear, np.float32)[np.rint(rgba * 255).astype(np.intp)]
    else:  # the same table, element by element (about 1 s a 1080p frame)
        rgba = array.array("f", map(linear.__getitem__, map(round, map((255.0).__mul__, rgba))))
    rgba[3::4] = (
        pixels(alpha_path)[0][3::4]
        if alpha_path
        else (np.ones(w * h, np.float32) if np else array.array("f", [1.0]) * (w * h))
    )
    image = bpy.data.images.new("stylized", w, h, alpha=True, float_buffer=True)
    image.pixels.foreach_set(rgba)
    return image


def temp_path(target):
    """Where ``target`` is written before it is renamed: beside it, with the same extension."""
    return target.with_name(target.stem + TEMP + target.suffix)


def deliver(request):
    """Write the stylised frames of ``request`` (see ``main``) to their targets; the ``done`` fields."""
    bpy.ops.wm.open_mainfile(filepath=request["blend"], load_ui=False)
    scene = bpy.data.scenes.get(request["scene"])
    if scene is None:
        raise RuntimeError(f"scene '{request['scene']}' not found in the saved copy")
    export.apply(
        [
            (scene.display_settings, "display_device", "sRGB"),
            (scene.view_settings, "view_transform", "Standard"),
            (scene.view_settings, "look", "None"),
            (scene.view_settings, "exposure", 0.0),
            (scene.view_settings, "gamma", 1.0),
            (scene.view_settings, "use_curve_mapping", False),
        ]
    )
    folder, items = Path(request["job_folder"]), request["frames"]
    record = read_record(folder)
    if record.get("complete", True):
        record = {"complete": False, "files": {}}
    for i, (stylised, alpha, target) in enumerate(items):
        target = Path(target)
        if target.exists() and not request["overwrite"] and not is_own(target, record):
            raise RuntimeError(
                f"{target} appeared while the job ran: not overwritten (tick Overwrite or choose another output folder)"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(target)
        image = stylised_image(stylised, alpha)
        image.save_render(str(tmp), scene=scene)
        bpy.data.images.remove(image)
        os.replace(tmp, target)
        stat = target.stat()
        record["files"][str(target)] = [stat.st_size, stat.st_mtime_ns]
        write_record(folder, record)
        export.emit("frame", frame=i + 1, frames=len(items), path=str(target))
    record["complete"] = True
    write_record(folder, record)
    return {"frames": len(items), "paths": [str(Path(t)) for _s, _a, t in items]}


def main(request_json):
    """Child entry point: ``request_json`` holds blend (the saved copy), scene, job_folder,
    overwrite and frames: ``[stylised PNG, alpha PNG or null, target]`` in frame order."""
    try:
        export.emit("done", **deliver(json.loads(request_json)))
    except Exception as e:
        export.emit("error", message=f"{type(e).__name__}: {e}" if not isinstance(e, RuntimeError) else str(e))
        raise
