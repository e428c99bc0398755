"""The sequencer sidebar's Stylize tab (and its Keyframes sub-panel in fast mode)."""
import os

import bpy
import bpy.utils.previews

from . import compat, job, status
from .properties import FLOWS, TUNABLES, preset_value

_previews = None  # thumbnails of style images, keyed by absolute path and modification time


def style_icon(path):
    """Icon id of a thumbnail of the image at ``path`` (0 if there is none)."""
    path = bpy.path.abspath(path)
    if not os.path.isfile(path):
        return 0
    key = f"{path}:{os.path.getmtime(path)}"
    if key not in _previews:
        _previews.load(key, path, "IMAGE")
    return _previews[key].icon_id


class SEQUENCER_PT_stylize(bpy.types.Panel):
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Stylize"
    bl_label = "Style Transfer"

    @classmethod
    def poll(cls, context):
        return compat.sequencer_scene(context) is not None

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        scene = compat.sequencer_scene(context)
        settings, last = scene.video_stylize, job.current
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
        self.draw_tunables(layout, settings)

        split = layout.split(factor=0.4)
        split.alignment = "RIGHT"
        split.label(text="Motion")
        choices = split.column(align=True)
        flows = (probe or {}).get("flows", [])
        for ident, _name, _description in FLOWS:
            row = choices.row(align=True)
            row.enabled = ident == "AUTO" or job.ENGINE_FLOWS[ident] in flows
            row.prop_enum(settings, "flow", ident)


        if last is not None and last.running:
            layout.progress(factor=last.fraction, text=f"{last.stage} {last.detail}".strip())
            layout.operator("sequencer.stylize_cancel", icon="CANCEL")
        else:
            self.draw_run(layout, scene)
            if last is not None and not last.error and not job.refused:
                layout.label(text=f"{last.stage}: {last.detail}" if last.detail else last.stage)
        if error := job.refused or (last.error if last else ""):
            status.draw_wrapped(layout.box(), error, icon="ERROR")
        if last is not None and last.warnings:
            box = layout.box()
            for warning in dict.fromkeys(last.warnings):
                status.draw_wrapped(box, warning, icon="ERROR")

    @staticmethod
    def draw_tunables(layout, settings):
        """Each engine setting: the preset's value, or the user's with the override box ticked."""
        col = layout.column(heading="Override")
        for field in TUNABLES:
            row = col.row(align=True)
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
        supported = strip is not None and strip.type in job.SUPPORTED
        row.operator("sequencer.stylize_strip", icon="BRUSH_DATA",
                     text=f"Stylize '{strip.name}'" if supported else "Select a movie, image or scene strip")


class SEQUENCER_UL_stylize_keyframes(bpy.types.UIList):
    """One keyframe a row: its timeline frame and its painted image (empty: stylised by the engine)."""

    def draw_item(self, _context, layout, _data, item, _icon, _active_data, _active_property, _index=0, _flt=0):
        row = layout.row(align=True)
        row.prop(item, "frame", text="")
        row.prop(item, "image", text="", icon="BRUSH_DATA")


class SEQUENCER_PT_stylize_keyframes(bpy.types.Panel):
    """Fast mode's keyframes: the strip's first frame always; others from this list."""
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Stylize"
    bl_label = "Keyframes"
    bl_parent_id = "SEQUENCER_PT_stylize"

    @classmethod
    def poll(cls, context):
        scene = compat.sequencer_scene(context)
        return scene is not None and scene.video_stylize.mode == "FAST"

    def draw(self, context):
        layout = self.layout
        settings = compat.sequencer_scene(context).video_stylize
        status.draw_wrapped(layout, "The strip's first frame is stylised and carried to the others. Add "
                                    "frames to stylise too, or give one your painted version of it.", icon="INFO")
        row = layout.row()
        row.template_list("SEQUENCER_UL_stylize_keyframes", "", settings, "keyframes", settings, "keyframe_index",
                          rows=3)
        buttons = row.column(align=True)
        buttons.operator("sequencer.stylize_keyframe_add", icon="ADD", text="")
        buttons.operator("sequencer.stylize_keyframe_remove", icon="REMOVE", text="")


classes = (SEQUENCER_PT_stylize, SEQUENCER_UL_stylize_keyframes, SEQUENCER_PT_stylize_keyframes)


def register():
    global _previews
    _previews = bpy.utils.previews.new()
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister():
    status.stop_redraw_timer()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
    bpy.utils.previews.remove(_previews)
