"""The sequencer sidebar's Stylize tab (and its Keyframes sub-panel in fast mode, and Regions);
Output Properties' Style Transfer panel (and its Regions) and the Render menu's Stylize Animation…
for the scene's render animation."""

import os

import bpy
import bpy.utils.previews

from . import compat, engine_tables, job, request, status
from .properties import FLOWS, TUNABLES, applies, preset_value

_previews = None  # thumbnails of style images, keyed by absolute path and modification time


def style_icon(path):
    """Icon id of a thumbnail of the image at ``path`` (0 if there is none)."""
    path = bpy.path.abspath(path)
    if not os.path.isfile(path):
        return 0
    key = f"{path}:{os.path.getmtime(path)}"
    if key not in _previews:
        _previews.load(key, path, "IMAGE")
        _previews[key].image_size[:]  # loaded now: Blender 5.2 loads it later, drawing a spinner until some redraw
    return _previews[key].icon_id


def draw_settings(layout, settings, draw_tunables):
    """The worker's state and the engine settings (style, mode, preset, overrides, motion): the
    sequencer sidebar and Output Properties draw the same. Returns the worker's probe (or None)."""
    layout.use_property_split = True
    layout.use_property_decorate = False
    probe = status.draw_worker(layout)
    col = layout.column()
    col.prop(settings, "style_image", text="Style")
    if icon := style_icon(settings.style_image):
        col.template_icon(icon_value=icon, scale=6.0)
    col.prop(settings, "mode", expand=True)
    col.prop(settings, "preset")
    if probe and (text := probe.get("preset_descriptions", {}).get(settings.preset)):
        status.draw_wrapped(col, text, icon="INFO")
    col.prop(settings, "preserve_colors")
    draw_tunables(layout, settings)

    split = layout.split(factor=0.4)
    split.alignment = "RIGHT"
    split.label(text="Motion")
    choices = split.column(align=True)
    flows = (probe or {}).get("flows", [])
    for ident, _name, _description in FLOWS:
        row = choices.row(align=True)
        row.enabled = ident == "AUTO" or engine_tables.engine_value(ident) in flows
        row.prop_enum(settings, "flow", ident)
    return probe


def draw_job(layout, draw_run):
    """The running job's progress and Cancel, else ``draw_run(layout)`` (the run button); the last
    job's state, error and warnings."""
    last = job.current
    if last is not None and last.running:
        layout.progress(factor=last.fraction, text=f"{last.stage} {last.detail}".strip())
        layout.operator("sequencer.stylize_cancel", icon="CANCEL")
    else:
        draw_run(layout)
        if last is not None and not last.error and not job.refused:
            layout.label(text=f"{last.stage}: {last.detail}" if last.detail else last.stage)
    if error := job.refused or (last.error if last else ""):
        status.draw_wrapped(layout.box(), error, icon="ERROR")
    if last is not None and last.warnings:
        box = layout.box()
        for warning in dict.fromkeys(last.warnings):
            status.draw_wrapped(box, warning, icon="ERROR")


class SidebarPanel:
    """A panel of the Sequencer sidebar's Stylize tab, shown while the sequencer shows a scene."""

    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Stylize"

    @classmethod
    def poll(cls, context):
        return compat.sequencer_scene(context) is not None


class SEQUENCER_PT_stylize(SidebarPanel, bpy.types.Panel):
    bl_label = "Style Transfer"

    def draw(self, context):
        scene = compat.sequencer_scene(context)
        draw_settings(self.layout, scene.video_stylize, self.draw_tunables)
        draw_job(self.layout, lambda layout: self.draw_run(layout, scene))

    @staticmethod
    def draw_tunables(layout, settings):
        """Each engine setting: the preset's value, or the user's with the override box ticked."""
        col = layout.column(heading="Override")
        for field in TUNABLES:
            row = col.row(align=True)
            row.active = applies(settings, field)  # greyed: the mode does not use it (and it is not sent)
            row.prop(settings, "use_" + field, text="")
            if getattr(settings, "use_" + field):
                row.prop(settings, field)
            else:
                value = preset_value(settings, field)
                shown = "…" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
                row.label(text=f"{settings.bl_rna.properties[field].name}: {shown} (preset)")

    @staticmethod
    def draw_run(layout, scene):
        sed = scene.sequence_editor
        strip = sed.active_strip if sed else None
        row = layout.row()
        row.scale_y = 1.5
        # The operator's poll() disables the button and says why in its tooltip.
        supported = strip is not None and strip.type in request.SUPPORTED
        row.operator(
            "sequencer.stylize_strip",
            icon="BRUSH_DATA",
            text=f"Stylize '{strip.name}'" if supported else "Select a movie, image or scene strip",
        )
        if supported:
            row.operator("sequencer.stylize_preview", icon="IMAGE_DATA", text="Preview Frame")
        draw_preview(layout, scene.video_stylize)


def draw_preview(layout, settings):
    """The last preview beside its input frame, as thumbnails (the images ``job.PREVIEW_INPUT`` and
    ``job.PREVIEW_IMAGE``; full size in an Image Editor, alone or side by side with its input)."""
    images = [bpy.data.images.get(name) for name in (job.PREVIEW_INPUT, job.PREVIEW_IMAGE)]
    if not all(images):
        return
    row = layout.row()
    for image, label in zip(images, ("Input", "Preview")):
        col = row.column(align=True)
        col.label(text=label)
        if icon := style_icon(image.filepath):
            col.template_icon(icon_value=icon, scale=5.0)
    layout.prop(settings, "preview_side_by_side")


class SEQUENCER_UL_stylize_keyframes(bpy.types.UIList):
    """One keyframe a row: its timeline frame and its painted image (empty: stylised by the engine)."""

    def draw_item(self, _context, layout, _data, item, _icon, _active_data, _active_property, _index=0, _flt=0):
        row = layout.row(align=True)
        row.prop(item, "frame", text="")
        row.prop(item, "image", text="", icon="BRUSH_DATA")


class SEQUENCER_PT_stylize_keyframes(SidebarPanel, bpy.types.Panel):
    """Fast mode's keyframes: the strip's first frame always; others from this list."""

    bl_label = "Keyframes"
    bl_parent_id = "SEQUENCER_PT_stylize"

    @classmethod
    def poll(cls, context):
        return super().poll(context) and compat.sequencer_scene(context).video_stylize.mode == "FAST"

    def draw(self, context):
        layout = self.layout
        settings = compat.sequencer_scene(context).video_stylize
        status.draw_wrapped(
            layout,
            "The strip's first frame (and the first after each cut) is stylised and "
            "carried to the others. Add frames to stylise too, or give one your painted "
            "version of it.",
            icon="INFO",
        )
        layout.prop(settings, "keyframe_method")
        layout.prop(settings, "keyframe_every")
        row = layout.row()
        row.template_list(
            "SEQUENCER_UL_stylize_keyframes", "", settings, "keyframes", settings, "keyframe_index", rows=3
        )
        buttons = row.column(align=True)
        buttons.operator("sequencer.stylize_keyframe_add", icon="ADD", text="")
        buttons.operator("sequencer.stylize_keyframe_remove", icon="REMOVE", text="")


class STYLIZE_UL_regions(bpy.types.UIList):
    """One region a row: its object or collection, and its style image's name or Keep."""

    def draw_item(self, _context, layout, _data, item, _icon, _active_data, _active_property, _index=0, _flt=0):
        row = layout.row(align=True)
        row.prop(item, item.kind.lower(), text="")
        name = "Keep" if item.keep else os.path.basename(bpy.path.abspath(item.style_image)) or "No style"
        row.label(text=name, icon="HIDE_OFF" if item.keep else "BRUSH_DATA")


def draw_look(layout, item):
    """A region's look: Keep, or its style image (with a thumbnail) and strength."""
    layout.prop(item, "keep")
    col = layout.column()
    col.active = not item.keep
    col.prop(item, "style_image", text="Style")
    if not item.keep and (icon := style_icon(item.style_image)):
        col.template_icon(icon_value=icon, scale=4.0)
    col.prop(item, "strength")


def draw_region_list(layout, settings, scene):
    """The object/collection region list of ``scene``'s settings, its +/- and the active region."""
    status.draw_wrapped(
        layout,
        "Scene strips and Stylize Animation: objects or collections get their own "
        "style (Cycles or EEVEE: the Cryptomatte pass tells them apart).",
        icon="INFO",
    )
    row = layout.row()
    row.template_list("STYLIZE_UL_regions", "", settings, "regions", settings, "region_index", rows=3)
    buttons = row.column(align=True)
    buttons.operator("stylize.region_add", icon="ADD", text="").scene = scene.name
    buttons.operator("stylize.region_remove", icon="REMOVE", text="").scene = scene.name
    if 0 <= settings.region_index < len(settings.regions):
        item = settings.regions[settings.region_index]
        col = layout.column()
        col.prop(item, "kind", expand=True)
        col.prop(item, item.kind.lower())
        draw_look(col, item)


def draw_matte(layout, settings, scene):
    """The matte strip of movie and image strips and its white part's look."""
    status.draw_wrapped(
        layout,
        "Movie and image strips: the white part of the matte strip (e.g. a mask "
        "strip) at the same frames gets its own style.",
        icon="INFO",
    )
    if scene.sequence_editor:
        layout.prop_search(settings, "matte_strip", scene.sequence_editor, compat.STRIPS_ALL, icon="SEQUENCE")
    else:
        layout.prop(settings, "matte_strip", icon="SEQUENCE")
    draw_look(layout.column(), settings.matte)


class SEQUENCER_PT_stylize_regions(SidebarPanel, bpy.types.Panel):
    """Regions: objects (scene strips) or a matte's white part (movie and image strips) with their own style."""

    bl_label = "Regions"
    bl_parent_id = "SEQUENCER_PT_stylize"
    bl_options = {"DEFAULT_CLOSED"}

    def draw_header(self, context):
        self.layout.prop(compat.sequencer_scene(context).video_stylize, "use_regions", text="")

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        scene = compat.sequencer_scene(context)
        settings = scene.video_stylize
        layout.active = settings.use_regions
        sed = scene.sequence_editor
        kind = sed.active_strip.type if sed and sed.active_strip else ""
        if kind != "SCENE":
            draw_matte(layout, settings, scene)
        if kind not in ("MOVIE", "IMAGE"):
            draw_region_list(layout, settings, scene)
        layout.prop(settings, "region_rest")


class RENDER_PT_stylize_animation(bpy.types.Panel):
    """Output Properties > Style Transfer: the scene's settings, where the stylised animation goes,
    and the Stylize Animation button (also opened from Render > Stylize Animation…)."""

    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "output"
    bl_label = "Style Transfer"
    bl_options = {"DEFAULT_CLOSED"}
    bl_ui_units_x = 18  # the width of Render > Stylize Animation…'s pop-up (the default cut its labels short)

    def draw(self, context):
        settings = context.scene.video_stylize
        draw_settings(self.layout, settings, SEQUENCER_PT_stylize.draw_tunables)
        col = self.layout.column(heading="Output")
        col.prop(settings, "output_folder")
        col.prop(settings, "overwrite_output")
        col.prop(settings, "add_to_sequencer")
        draw_job(self.layout, lambda layout: self.draw_run(layout, settings))

    @staticmethod
    def draw_run(layout, settings):
        row = layout.row()
        row.scale_y = 1.5
        row.operator("render.stylize_animation", icon="BRUSH_DATA")
        # its own row: the big button keeps the pop-up's width (the real-window test finds it in the mouse's column)
        layout.operator("render.stylize_preview", icon="IMAGE_DATA", text="Preview Frame")
        draw_preview(layout, settings)


class RENDER_PT_stylize_regions(bpy.types.Panel):
    """Output Properties > Style Transfer > Regions: objects or collections with their own style."""

    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "output"
    bl_label = "Regions"
    bl_parent_id = "RENDER_PT_stylize_animation"
    bl_options = {"DEFAULT_CLOSED"}

    def draw_header(self, context):
        self.layout.prop(context.scene.video_stylize, "use_regions", text="")

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        settings = context.scene.video_stylize
        layout.active = settings.use_regions
        draw_region_list(layout, settings, context.scene)
        layout.prop(settings, "region_rest")


def render_menu(self, _context):
    """Render > Stylize Animation…: the Style Transfer panel as a pop-up, with its button."""
    self.layout.separator()
    self.layout.operator(
        "wm.call_panel", text="Stylize Animation…", icon="BRUSH_DATA"
    ).name = RENDER_PT_stylize_animation.__name__


classes = (
    SEQUENCER_PT_stylize,
    SEQUENCER_UL_stylize_keyframes,
    SEQUENCER_PT_stylize_keyframes,
    STYLIZE_UL_regions,
    SEQUENCER_PT_stylize_regions,
    RENDER_PT_stylize_animation,
    RENDER_PT_stylize_regions,
)


def register():
    global _previews
    _previews = bpy.utils.previews.new()
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_render.append(render_menu)


def unregister():
    status.stop_redraw_timer()
    bpy.types.TOPBAR_MT_render.remove(render_menu)
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
    bpy.utils.previews.remove(_previews)
