"""``sequencer.stylize_strip``, ``sequencer.stylize_preview``, ``render.stylize_animation`` and
``render.stylize_preview`` (modal with a timer in the UI,
synchronous in background mode), ``sequencer.stylize_cancel`` and the keyframe list's
``sequencer.stylize_keyframe_add/remove``, and the region list's ``stylize.region_add/remove``."""

import atexit
import time

import bpy
from bpy.app.handlers import persistent
from bpy.props import StringProperty

from . import compat, request, worker
from . import job as jobs


def redraw(context):
    """Redraw the sequencer and the properties editor, whose panels show ``job.current``'s progress."""
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in {"SEQUENCE_EDITOR", "PROPERTIES"}:
                area.tag_redraw()


class StylizeRun:
    """A stylize job as an operator: modal with a timer in the UI, synchronous in background mode.
    Subclasses say what to prepare (``prepare``)."""

    def prepare(self, context):
        """A new ``job.Job`` for this request, or raise ``request.JobError``."""
        raise NotImplementedError

    def start(self, context):
        try:
            job = self.prepare(context)
            job.step()  # saves a copy of the file before any change, starts the export
        except request.JobError as e:
            jobs.refused = str(e)
            self.report({"ERROR"}, str(e))
            return None
        redraw(context)
        return job

    def finish(self, context, job):
        redraw(context)
        for warning in dict.fromkeys(job.warnings):
            self.report({"WARNING"}, warning)
        if job.state == "done":
            times = ", ".join(f"{k} {v:.1f}s" for k, v in job.timings.items())
            self.report({"INFO"}, f"{job.summary} ({job.count} frames; {times})")
            return {"FINISHED"}
        if job.state == "cancelled":
            self.report({"WARNING"}, f"Stylize cancelled: finished frames stay in {job.out or job.folder} for a resume")
        else:
            self.report({"ERROR"}, job.error)
        return {"CANCELLED"}

    def execute(self, context):
        job = self.start(context)
        if job is None:
            return {"CANCELLED"}
        last = ""
        try:
            while job.step():
                if job.detail != last:
                    print(f"Stylize: {job.stage}: {job.detail}", flush=True)
                    last = job.detail
                time.sleep(0.1)
        except KeyboardInterrupt:
            job.cancel()
        return self.finish(context, job)

    def invoke(self, context, event):
        if bpy.app.background:  # timers never fire here: run synchronously
            return self.execute(context)
        self.job = self.start(context)
        if self.job is None:
            return {"CANCELLED"}
        self.timer = context.window_manager.event_timer_add(0.2, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            self.job.cancel()
        elif event.type != "TIMER":
            return {"PASS_THROUGH"}
        running = self.job.step(budget=0.1)
        redraw(context)
        if running:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self.timer)
        # With the UNDO option Blender pushes the undo step when modal() returns FINISHED.
        return self.finish(context, self.job)


def job_running(cls):
    """True (and the reason set as the poll message) while a stylize job runs."""
    if jobs.current is not None and jobs.current.running:
        cls.poll_message_set("A stylize job is running: wait for it or cancel it")
        return True
    return False


class SEQUENCER_OT_stylize_strip(StylizeRun, bpy.types.Operator):
    """Stylise the active strip with the style image into a new image strip above it"""

    bl_idname = "sequencer.stylize_strip"
    bl_label = "Stylize Strip"
    # UNDO: the new strip is one undo step. No REGISTER: "Adjust Last Operation" would re-run
    # the whole job synchronously.
    bl_options = {"UNDO"}

    strip: StringProperty(
        name="Strip", options={"SKIP_SAVE"}, description="Name of the strip to stylise (default: the active strip)"
    )
    scene: StringProperty(
        name="Scene", options={"SKIP_SAVE"}, description="Scene holding the strip (default: the sequencer's scene)"
    )

    @classmethod
    def poll(cls, context):
        if job_running(cls):
            return False
        if not bpy.app.background:  # scripts name the strip; the button stylises the active one
            scene = compat.sequencer_scene(context)
            strip = scene and scene.sequence_editor and scene.sequence_editor.active_strip
            if strip is None or strip.type not in request.SUPPORTED:
                cls.poll_message_set("Select a movie, image or scene strip to stylise")
                return False
        return True

    def prepare(self, context):
        return jobs.prepare(context, self.scene, self.strip)


class SEQUENCER_OT_stylize_preview(StylizeRun, bpy.types.Operator):
    """Stylise the current frame of the active strip with the current settings and show it (the image
    'Stylize Preview'); the strip's job reuses it (fast mode: as a keyframe; quality mode: its first frame)"""

    bl_idname = "sequencer.stylize_preview"
    bl_label = "Preview Frame"

    strip: StringProperty(
        name="Strip", options={"SKIP_SAVE"}, description="Name of the strip to preview (default: the active strip)"
    )
    scene: StringProperty(
        name="Scene", options={"SKIP_SAVE"}, description="Scene holding the strip (default: the sequencer's scene)"
    )

    poll = SEQUENCER_OT_stylize_strip.poll

    def prepare(self, context):
        return jobs.prepare(context, self.scene, self.strip, preview=True)


class RENDER_OT_stylize_animation(StylizeRun, bpy.types.Operator):
    """Render the scene's animation with the Vector pass, stylise it and write the frames to the
    output path (or the chosen folder); the scene's Style Transfer settings apply"""

    bl_idname = "render.stylize_animation"
    bl_label = "Stylize Animation"
    bl_options = {"UNDO"}  # "Add to Sequencer": the new strip is one undo step

    scene: StringProperty(
        name="Scene", options={"SKIP_SAVE"}, description="Scene to render and stylise (default: the active scene)"
    )

    @classmethod
    def poll(cls, context):
        return not job_running(cls)

    def prepare(self, context):
        return jobs.prepare_render(context, self.scene)


class RENDER_OT_stylize_preview(StylizeRun, bpy.types.Operator):
    """Render the scene's current frame, stylise it with the scene's Style Transfer settings and show it (the
    image 'Stylize Preview')"""

    bl_idname = "render.stylize_preview"
    bl_label = "Preview Frame"

    scene: StringProperty(
        name="Scene", options={"SKIP_SAVE"}, description="Scene to preview (default: the active scene)"
    )

    poll = RENDER_OT_stylize_animation.poll

    def prepare(self, context):
        return jobs.prepare_render(context, self.scene, preview=True)


class SEQUENCER_OT_stylize_cancel(bpy.types.Operator):
    """Stop the running stylize job; finished frames are kept so the next run resumes"""

    bl_idname = "sequencer.stylize_cancel"
    bl_label = "Cancel Stylize"

    @classmethod
    def poll(cls, context):
        return jobs.current is not None and jobs.current.running

    def execute(self, context):
        jobs.current.cancel()
        return {"FINISHED"}


class KeyframeListOperator:
    """An undoable change of the keyframe list of the sequencer's scene."""

    bl_options = {"UNDO"}

    @classmethod
    def poll(cls, context):
        return compat.sequencer_scene(context) is not None


class SEQUENCER_OT_stylize_keyframe_add(KeyframeListOperator, bpy.types.Operator):
    """Make the current frame a keyframe of fast mode (give it a painted image to use yours)"""

    bl_idname = "sequencer.stylize_keyframe_add"
    bl_label = "Add Keyframe"

    def execute(self, context):
        scene = compat.sequencer_scene(context)
        add_to_list(scene.video_stylize, "keyframes", "keyframe_index").frame = scene.frame_current
        return {"FINISHED"}


class SEQUENCER_OT_stylize_keyframe_remove(KeyframeListOperator, bpy.types.Operator):
    """Remove the selected keyframe from the list"""

    bl_idname = "sequencer.stylize_keyframe_remove"
    bl_label = "Remove Keyframe"

    @classmethod
    def poll(cls, context):
        if not super().poll(context):
            return False
        settings = compat.sequencer_scene(context).video_stylize
        return 0 <= settings.keyframe_index < len(settings.keyframes)

    def execute(self, context):
        remove_from_list(compat.sequencer_scene(context).video_stylize, "keyframes", "keyframe_index")
        return {"FINISHED"}


def add_to_list(settings, items, index):
    """A new item at the end of the list ``settings.<items>``, now its active one (``settings.<index>``)."""
    item = getattr(settings, items).add()
    setattr(settings, index, len(getattr(settings, items)) - 1)
    return item


def remove_from_list(settings, items, index):
    """Remove the active item of the list ``settings.<items>`` (the next one, else the new last, becomes active);
    False if none is active."""
    collection, active = getattr(settings, items), getattr(settings, index)
    if not 0 <= active < len(collection):
        return False
    collection.remove(active)
    setattr(settings, index, min(active, len(collection) - 1))
    return True


def region_settings(operator, context):
    """The settings of the operator's scene (the panel's), else of the sequencer's scene."""
    scene = bpy.data.scenes.get(operator.scene) if operator.scene else compat.sequencer_scene(context)
    return scene.video_stylize if scene else None


def region_operator(name, label, doc, change):
    """A region list operator (``stylize.<name>``): ``change(operator, settings)`` on the settings of the scene
    its ``scene`` names (the panel's, default: the sequencer's scene; None if no scene has that name) returns
    its result. Built with ``type``: the ``scene`` property stays in the class's own ``__annotations__``."""

    def execute(self, context):
        return change(self, region_settings(self, context))

    return type(
        "STYLIZE_OT_" + name,
        (bpy.types.Operator,),
        {
            "__doc__": doc,
            "__module__": __name__,
            "bl_idname": "stylize." + name,
            "bl_label": label,
            "bl_options": {"UNDO"},
            "__annotations__": {
                "scene": StringProperty(
                    name="Scene",
                    options={"SKIP_SAVE"},
                    description="Scene whose settings hold the list (default: the sequencer's scene)",
                )
            },
            "execute": execute,
        },
    )


def _add_region(operator, settings):
    if settings is None:
        operator.report({"ERROR"}, f"No scene named '{operator.scene}'")
        return {"CANCELLED"}
    add_to_list(settings, "regions", "region_index")
    return {"FINISHED"}


def _remove_region(_operator, settings):
    if settings is None or not remove_from_list(settings, "regions", "region_index"):
        return {"CANCELLED"}
    return {"FINISHED"}


STYLIZE_OT_region_add = region_operator(
    "region_add",
    "Add Region",
    "Add a region: an object or collection with its own style (or kept as it is)",
    _add_region,
)
STYLIZE_OT_region_remove = region_operator(
    "region_remove", "Remove Region", "Remove the selected region from the list", _remove_region
)


@persistent
def cancel_running(*_args):
    """Stop a running job's worker (file load, add-on disabled, Blender quitting)."""
    if jobs.current is not None:
        jobs.current.cancel()


classes = (
    SEQUENCER_OT_stylize_strip,
    SEQUENCER_OT_stylize_preview,
    RENDER_OT_stylize_animation,
    RENDER_OT_stylize_preview,
    SEQUENCER_OT_stylize_cancel,
    SEQUENCER_OT_stylize_keyframe_add,
    SEQUENCER_OT_stylize_keyframe_remove,
    STYLIZE_OT_region_add,
    STYLIZE_OT_region_remove,
)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.app.handlers.load_pre.append(cancel_running)
    atexit.register(cancel_running)
    atexit.register(worker.stop_server)


def unregister():
    cancel_running()
    worker.stop_server()  # the warm engine of the previews
    atexit.unregister(worker.stop_server)
    atexit.unregister(cancel_running)
    bpy.app.handlers.load_pre.remove(cancel_running)
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
