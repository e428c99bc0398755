"""API differences between Blender 4.2 LTS, 4.5 LTS, 5.0 and 5.2 LTS, in one place.

- 5.0 renamed ``sequences[_all]`` to ``strips[_all]`` (on the sequence editor and on
  meta strips; the types ``Sequence*`` became ``*Strip``, which this add-on never names).
- 5.2 deprecates (removal in 6.0) ``frame_final_start/end/duration``, ``frame_start`` and
  ``frame_offset_*`` of strips for ``left_handle``, ``right_handle``, ``duration``,
  ``content_start``, ``left/right_handle_offset``, and ``animation_offset_*`` for
  ``content_trim_*``; none of the new names exist in 5.0.
- 5.2 adds ``SceneStrip.view_layer``: the view layer the strip shows (None = the default).
- Cycles 5.0 writes a wrong Vector pass for a moving orthographic camera (``ORTHO_VECTOR_BROKEN``).
- 5.0 moved "multilayer OpenEXR" from ``file_format`` to ``media_type = 'MULTI_LAYER_IMAGE'``.
- EEVEE's engine id is ``BLENDER_EEVEE_NEXT`` in 4.2-4.5 and ``BLENDER_EEVEE`` again in 5.0.
- 5.0 lets a workspace edit another scene's sequencer (``context.sequencer_scene``).
- 5.x warns when a ``//`` path is stored in a path property without the option
  ``PATH_SUPPORTS_BLEND_RELATIVE`` (which 4.2 does not know).
"""

import bpy

IS_5 = bpy.app.version >= (5, 0, 0)
# Cycles writes a wrong Vector pass for a moving orthographic camera in 5.0.1 (a false zoom
# field) and a right one in 4.2.0 and 5.2.3 (tests/test_vector_check.py measures each); the
# versions between are not known and counted as wrong.
ORTHO_VECTOR_BROKEN = (4, 3, 0) <= bpy.app.version < (5, 2, 0)

EEVEE = "BLENDER_EEVEE" if IS_5 else "BLENDER_EEVEE_NEXT"
VECTOR_PASS_ENGINES = {"CYCLES", EEVEE}
CRYPTOMATTE_ENGINES = {"CYCLES", EEVEE}  # Workbench writes no passes
_STRIPS, _STRIPS_ALL = (
    ("strips", "strips_all")
    if "strips" in bpy.types.SequenceEditor.bl_rna.properties
    else ("sequences", "sequences_all")
)  # strips: 4.4+, sequences: until 4.5
STRIPS_ALL = _STRIPS_ALL  # the property's name, e.g. for ``UILayout.prop_search``
_HANDLES = hasattr(bpy.types, "Strip") and "left_handle" in bpy.types.Strip.bl_rna.properties  # 5.2+
# Old name -> new name of the strip timing properties (5.2+), used by ``get``/``put``.
_RENAMED = {
    "frame_final_start": "left_handle",
    "frame_final_end": "right_handle",
    "frame_final_duration": "duration",
    "frame_start": "content_start",
    "frame_offset_start": "left_handle_offset",
    "frame_offset_end": "right_handle_offset",
    "animation_offset_start": "content_trim_start",
    "animation_offset_end": "content_trim_end",
}


def _timing(name):
    if name not in _RENAMED:
        raise KeyError(f"not a strip timing property: {name}")
    return _RENAMED[name] if _HANDLES else name


def get(strip, name):
    """A strip timing property by its 4.2-5.0 name (``frame_final_start`` ...), on any version."""
    return getattr(strip, _timing(name))


def put(strip, name, value):
    """Set a strip timing property by its 4.2-5.0 name, on any version."""
    setattr(strip, _timing(name), value)


def visible_range(strip):
    """``(first, end)`` timeline frames the strip shows: ``first`` included, ``end`` excluded."""
    return get(strip, "frame_final_start"), get(strip, "frame_final_end")


def view_layer(strip):
    """The view layer a scene strip shows: its own choice (5.2+), else the scene's first."""
    chosen = getattr(strip, "view_layer", None)
    return chosen if chosen is not None else strip.scene.view_layers[0]


# ``options`` of path properties that may hold a "//" (relative to the .blend) path.
PATH = (
    {"PATH_SUPPORTS_BLEND_RELATIVE"}
    if "is_path_supports_blend_relative" in bpy.types.Property.bl_rna.properties
    else set()
)


def path_property(name, description, subtype="FILE_PATH"):
    """A file (or, ``subtype="DIR_PATH"``, folder) path property that may hold a "//" path (``PATH``)."""
    return bpy.props.StringProperty(name=name, subtype=subtype, options=PATH, description=description)


def strips(owner):
    """Top-level strips of a sequence editor, or the children of a meta strip."""
    return getattr(owner, _STRIPS)


def strips_all(sequence_editor):
    """Every strip of a sequence editor, including those inside meta strips."""
    return getattr(sequence_editor, _STRIPS_ALL)


def sequencer_scene(context):
    """The scene whose sequencer the user edits."""
    return getattr(context, "sequencer_scene", None) or context.scene


def multilayer_exr(image_settings):
    """``(object, attribute, value)`` settings that select 32-bit multilayer OpenEXR output."""
    if IS_5:
        fmt = [
            (image_settings, "media_type", "MULTI_LAYER_IMAGE"),
            (image_settings, "file_format", "OPEN_EXR_MULTILAYER"),
        ]
    else:
        fmt = [(image_settings, "file_format", "OPEN_EXR_MULTILAYER")]
    return fmt + [(image_settings, "color_depth", "32"), (image_settings, "exr_codec", "ZIP")]


def png_rgb8(image_settings):
    """``(object, attribute, value)`` settings that select 8-bit RGB PNG output."""
    fmt = [(image_settings, "media_type", "IMAGE")] if IS_5 else []
    return fmt + [
        (image_settings, "file_format", "PNG"),
        (image_settings, "color_mode", "RGB"),
        (image_settings, "color_depth", "8"),
        (image_settings, "compression", 15),
    ]
