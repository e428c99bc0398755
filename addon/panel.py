"""The sequencer sidebar's Stylize tab."""
import os

import bpy
import bpy.utils.previews

from . import compat, job, status
from .properties import FLOWS

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
        settings, state = scene.video_stylize, context.window_manager.video_stylize_job
        probe = status.draw_worker(layout)

        col = layout.column()
        col.prop(settings, "style_image", text="Style")
        if icon := style_icon(settings.style_image):
            col.template_icon(icon_value=icon, scale=6.0)
        col.prop(settings, "preset")
        col.prop(settings, "strength")
        col.prop(settings, "temporal_weight")
        col.prop(settings, "preserve_colors")

        split = layout.split(factor=0.4)
        split.alignment = "RIGHT"
        split.label(text="Motion")
        choices = split.column(align=True)
        flows = (probe or {}).get("flows", [])
        for ident, _name, _description in FLOWS:
            row = choices.row(align=True)
            row.enabled = ident == "AUTO" or job.ENGINE_FLOWS[ident] in flows
            row.prop_enum(settings, "flow", ident)

        col = layout.column()
        col.prop(settings, "scale")
        col.prop(settings, "iterations")

        if state.running:
            layout.progress(factor=state.progress, text=f"{state.stage} {state.detail}".strip())
            layout.operator("sequencer.stylize_cancel", icon="CANCEL")
        else:
            self.draw_run(layout, scene)
            if state.stage and not state.error:
                layout.label(text=f"{state.stage}: {state.detail}" if state.detail else state.stage)
        if state.error:
            status.draw_wrapped(layout.box(), state.error, icon="ERROR")

    @staticmethod
    def draw_run(layout, scene):
        sed = scene.sequence_editor
        strip = sed.active_strip if sed else None
        row = layout.row()
        row.scale_y = 1.5
        if strip is None or strip.type not in job.SUPPORTED:
            row.enabled = False
            row.operator("sequencer.stylize_strip", text="Select a movie, image or scene strip", icon="BRUSH_DATA")
        else:
            row.operator("sequencer.stylize_strip", text=f"Stylize '{strip.name}'", icon="BRUSH_DATA")


def register():
    global _previews
    _previews = bpy.utils.previews.new()
    bpy.utils.register_class(SEQUENCER_PT_stylize)


def unregister():
    status.stop_redraw_timer()
    bpy.utils.unregister_class(SEQUENCER_PT_stylize)
    bpy.utils.previews.remove(_previews)
