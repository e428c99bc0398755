"""The stylised frames come back as an image-sequence strip (above the source strip)."""

import bpy

from . import compat

MAX_CHANNEL = 128


def container(sequence_editor, strip):
    """The strips collection holding ``strip``: the editor's top level or its meta strip's."""
    meta = strip.parent_meta()
    return compat.strips(meta or sequence_editor)


def free_channel(strips, above, start, end):
    """Lowest channel above ``above`` with no strip overlapping frames ``[start, end)``."""
    busy = {
        s.channel
        for s in strips
        if compat.get(s, "frame_final_start") < end and compat.get(s, "frame_final_end") > start
    }
    for channel in range(above + 1, MAX_CHANNEL + 1):
        if channel not in busy:
            return channel
    raise RuntimeError(f"no free channel above {above} over frames {start}-{end - 1}")


def add_result_strip(scene, source, frame_paths):
    """New image strip of ``frame_paths`` over the source's range, above it, selected and active."""
    return add_image_strip(
        scene,
        container(scene.sequence_editor, source),
        f"{source.name} (stylized)",
        frame_paths,
        compat.get(source, "frame_final_start"),
        source.channel,
    )


def add_image_strip(scene, strips, name, frame_paths, start, above):
    """New image strip ``name`` of ``frame_paths`` (files of one folder) in ``strips`` from frame
    ``start``, on the lowest free channel above ``above``, selected and active."""
    sed = scene.sequence_editor
    channel = free_channel(strips, above, start, start + len(frame_paths))
    first = frame_paths[0]
    path = bpy.path.relpath(str(first)) if bpy.data.filepath else str(first)
    strip = strips.new_image(name, path, channel, start, fit_method="FIT")
    for p in frame_paths[1:]:
        strip.elements.append(p.name)
    for s in compat.strips_all(sed):
        s.select = False
    strip.select = True
    sed.active_strip = strip
    return strip
