"""Settings (saved with the scene) and the running job's state (window manager, not saved)."""
import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

FLOWS = [
    ("AUTO", "Auto", "The exact Vector pass for scene strips (Cycles/EEVEE, camera input), "
                     "else the preset's estimator (DIS; DeepFlow for Paper)"),
    ("DIS", "DIS", "OpenCV's fast Dense Inverse Search optical flow"),
    ("DEEPFLOW", "DeepFlow", "DeepFlow (the paper's choice): slower, needs opencv-contrib"),
    ("RAFT", "RAFT", "RAFT neural optical flow: needs torchvision"),
]


class StylizeSettings(bpy.types.PropertyGroup):
    """What the Run button does with the active strip."""

    style_image: StringProperty(name="Style Image", subtype="FILE_PATH",
                                description="Painting or picture whose style is transferred")
    preset: EnumProperty(name="Preset", default="standard", items=[
        ("draft", "Draft", "Half resolution, few iterations: a quick look"),
        ("standard", "Standard", "Full resolution, long-term consistency, early stopping"),
        ("paper", "Paper", "Ruder et al.'s settings: DeepFlow, 2000/1000 iterations (slow)"),
    ])
    strength: FloatProperty(name="Style Strength", default=1.0, min=0.0, soft_max=5.0,
                            description="Multiplies the style weight: more style, less content")
    preserve_colors: BoolProperty(name="Preserve Colors",
                                  description="Transfer the style's brightness only and keep the clip's colours")
    temporal_weight: FloatProperty(name="Temporal Weight", default=200.0, min=0.0, soft_max=2000.0,
                                   description="How strongly each frame must follow the previous ones (less flicker)")
    flow: EnumProperty(name="Motion", items=FLOWS, default="AUTO",
                       description="Where the motion between frames comes from")
    scale: FloatProperty(name="Processing Scale", default=0.0, min=0.0, max=4.0, step=10,
                         description="Stylise at this fraction of the frame size (the result keeps the "
                                     "frame size); 0 = the preset's (Draft 0.5, else 1)")
    iterations: IntProperty(name="Iterations", default=0, min=0, soft_max=2000,
                            description="Optimisation steps per frame; 0 = the preset's")


class StylizeJobState(bpy.types.PropertyGroup):
    """Progress of the running (or last) job, drawn by the panel."""

    running: BoolProperty()
    stage: StringProperty()
    progress: FloatProperty(min=0.0, max=1.0, subtype="FACTOR")
    detail: StringProperty()
    error: StringProperty()


classes = (StylizeSettings, StylizeJobState)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.video_stylize = PointerProperty(type=StylizeSettings)
    bpy.types.WindowManager.video_stylize_job = PointerProperty(type=StylizeJobState)


def unregister():
    del bpy.types.WindowManager.video_stylize_job
    del bpy.types.Scene.video_stylize
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
