"""API differences between Blender 4.2 LTS, 4.5 LTS and 5.0, in one place.

- 5.0 renamed ``sequences[_all]`` to ``strips[_all]`` (on the sequence editor and on
  meta strips; the types ``Sequence*`` became ``*Strip``, which this add-on never names).
- 5.0 moved "multilayer OpenEXR" from ``file_format`` to ``media_type = 'MULTI_LAYER_IMAGE'``.
- EEVEE's engine id is ``BLENDER_EEVEE_NEXT`` in 4.2-4.5 and ``BLENDER_EEVEE`` again in 5.0.
- 5.0 lets a workspace edit another scene's sequencer (``context.sequencer_scene``).
"""
import bpy

IS_5 = bpy.app.version >= (5, 0, 0)

EEVEE = "BLENDER_EEVEE" if IS_5 else "BLENDER_EEVEE_NEXT"
VECTOR_PASS_ENGINES = {"CYCLES", EEVEE}
_STRIPS, _STRIPS_ALL = (("strips", "strips_all") if "strips" in bpy.types.SequenceEditor.bl_rna.properties
                        else ("sequences", "sequences_all"))  # strips: 4.4+, sequences: until 4.5


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
        fmt = [(image_settings, "media_type", "MULTI_LAYER_IMAGE"),
               (image_settings, "file_format", "OPEN_EXR_MULTILAYER")]
    else:
        fmt = [(image_settings, "file_format", "OPEN_EXR_MULTILAYER")]
    return fmt + [(image_settings, "color_depth", "32"), (image_settings, "exr_codec", "ZIP")]


def png_rgb8(image_settings):
    """``(object, attribute, value)`` settings that select 8-bit RGB PNG output."""
    fmt = [(image_settings, "media_type", "IMAGE")] if IS_5 else []
    return fmt + [(image_settings, "file_format", "PNG"), (image_settings, "color_mode", "RGB"),
                  (image_settings, "color_depth", "8"), (image_settings, "compression", 15)]
