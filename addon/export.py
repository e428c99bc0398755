"""Export a strip's visible frames as the engine's input, a few frames per ``step()``.

Two ways:

- ``SequencerExport``: render the strip through the sequencer of a throw-away copy
  of its scene in which every other strip is muted, with the Standard view
  transform, to PNG. Trims, offsets, speed, modifiers and transforms all apply;
  the user's scene is never touched.
- ``SceneExport``: for a scene strip, render its scene directly (its own engine)
  to multilayer EXR with the Vector pass, so the engine gets exact motion
  (``--flow vector``). The scene's settings are changed for each ``step()`` and
  restored before it returns.

Between steps nothing is left modified and no Blender data is held: each step
looks the scene and strip up again by name (undo may have replaced them).
"""
import time
from contextlib import contextmanager
from pathlib import Path

import bpy

from . import compat

DONE_MARKER = ".complete"


@contextmanager
def overridden(settings):
    """Apply ``(object, attribute, value)`` settings for the block; restore them in the same order.

    All values are read before any is changed, and restoring goes in the same order:
    for image settings the media type comes back before the file format, and the
    format before the colour depth that only that format allows.
    """
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _value in settings]
    try:
        for obj, attr, value in settings:
            setattr(obj, attr, value)
        yield
    finally:
        for obj, attr, value in saved:
            setattr(obj, attr, value)


def find_strip(scene_name, strip_name):
    """The scene and the strip, looked up by name (None, None if either is gone)."""
    scene = bpy.data.scenes.get(scene_name)
    sed = scene and scene.sequence_editor
    strip = sed and compat.strips_all(sed).get(strip_name)
    return (scene, strip) if strip else (None, None)


def render_still(scene, filepath, layer=""):
    """Render the current frame of ``scene`` to ``filepath``."""
    scene.render.filepath = str(filepath)
    with bpy.context.temp_override(scene=scene, view_layer=scene.view_layers[0]):
        bpy.ops.render.render(write_still=True, layer=layer)


class Export:
    """Renders frames ``1..count`` into ``folder``; ``step()`` returns True when all are written."""

    suffix = ".png"

    def __init__(self, scene_name, strip_name, folder, count):
        self.scene_name, self.strip_name = scene_name, strip_name
        self.folder, self.count = Path(folder), count
        self.done = 0

    @property
    def fraction(self):
        return self.done / self.count

    def path(self, index):
        return self.folder / f"frame_{index + 1:05d}{self.suffix}"

    def step(self, budget=float("inf")):
        """Render frames until ``budget`` seconds have passed (at least one); True when finished."""
        if self.done == 0:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / DONE_MARKER).unlink(missing_ok=True)
        scene, strip = find_strip(self.scene_name, self.strip_name)
        if strip is None:
            raise RuntimeError(f"strip '{self.strip_name}' was removed or renamed during the export")
        t0 = time.monotonic()
        with self.prepared(scene, strip) as render_frame:
            while self.done < self.count and (self.done == 0 or time.monotonic() - t0 < budget):
                render_frame(self.done, self.path(self.done))
                self.done += 1
        if self.done == self.count:
            (self.folder / DONE_MARKER).touch()
            return True
        return False


class SequencerExport(Export):
    """The strip as the sequencer shows it, alone, from a temporary copy of its scene."""

    @contextmanager
    def prepared(self, scene, strip):
        copy = scene.copy()
        try:
            isolate(copy.sequence_editor, strip.name)
            settings = [(copy.render, "resolution_percentage", 100), (copy.render, "use_sequencer", True),
                        (copy.view_settings, "view_transform", "Standard"), (copy.view_settings, "look", "None"),
                        (copy.view_settings, "exposure", 0.0), (copy.view_settings, "gamma", 1.0),
                        (copy.view_settings, "use_curve_mapping", False)]
            for obj, attr, value in settings + compat.png_rgb8(copy.render.image_settings):
                setattr(obj, attr, value)  # on the copy: nothing to restore
            start = strip.frame_final_start

            def render_frame(index, path):
                copy.frame_current = start + index
                render_still(copy, path)
            yield render_frame
        finally:
            bpy.data.scenes.remove(copy)


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


class SceneExport(Export):
    """A scene strip's scene rendered by its own engine, with the Vector pass, to multilayer EXR."""

    suffix = ".exr"

    @contextmanager
    def prepared(self, scene, strip):
        inner = strip.scene
        layer = inner.view_layers[0]
        render = inner.render
        settings = [(render, "use_motion_blur", False),  # else the Vector pass is empty
                    (render, "use_sequencer", False), (render, "resolution_percentage", 100),
                    (layer, "use_pass_vector", True),
                    # set for each frame, restored afterwards:
                    (inner, "frame_current", inner.frame_current), (render, "filepath", render.filepath)]
        if strip.scene_camera:
            settings.append((inner, "camera", strip.scene_camera))
        # The scene's frame shown at the strip's first visible frame.
        first = inner.frame_start + strip.frame_final_start - round(strip.frame_start)
        with overridden(settings + compat.multilayer_exr(render.image_settings)):
            def render_frame(index, path):
                inner.frame_current = first + index
                render_still(inner, path, layer=layer.name)
            yield render_frame
