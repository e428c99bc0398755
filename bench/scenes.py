"""Sintel-like test clips rendered with Blender: frames plus exact flows from the Vector pass.

A random (seeded) scene: a textured sky dome and ground, procedurally textured objects, some of them
moving, and a camera travelling sideways while it looks at a moving target, so that
objects occlude each other and the background. Cycles renders it at a small size with
few samples, motion blur off and the Vector pass on, into one multilayer EXR per frame
(``frame_00001.exr``...). Rendering runs in a child process (``python -m bench.scenes``)
so that bpy never shares a process with the benchmarks; a finished folder is reused.
"""

import argparse
import json
import math
import random
import subprocess
import sys
from pathlib import Path

from stylize_core.io.exr import read_rgb
from stylize_core.motion.vector_pass import read_flows

ROOT = Path(__file__).resolve().parents[1]
DONE = "scene.json"


def render(folder, frames=8, width=160, height=68, samples=32, seed=0):
    """Render a clip into ``folder`` (skipped if already there with the same parameters)."""
    folder = Path(folder)
    params = dict(frames=frames, width=width, height=height, samples=samples, seed=seed)
    marker = folder / DONE
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return folder
    cmd = [sys.executable, "-m", "bench.scenes", str(folder)]
    cmd += [f"--{k}={v}" for k, v in params.items()]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"scene rendering failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    marker.write_text(json.dumps(params))
    return folder


def exr_paths(folder):
    return sorted(Path(folder).glob("frame_*.exr"))


def load_clip(folder):
    """Frames (sRGB, ``(H, W, 3)``) and exact flows of a rendered clip.

    Returns ``(frames, forward, backward)``: ``forward[t]`` is the flow t->t+1 (from the
    Vector pass of frame t), ``backward[t]`` the flow t+1->t (from that of frame t+1).
    """
    paths = exr_paths(folder)
    flows = [read_flows(p) for p in paths]
    return ([read_rgb(p) for p in paths], [f[1] for f in flows[:-1]], [f[0] for f in flows[1:]])


TEXTURES = [
    "ShaderNodeTexNoise",
    "ShaderNodeTexVoronoi",
    "ShaderNodeTexChecker",
    "ShaderNodeTexWave",
    "ShaderNodeTexBrick",
]


def _material(bpy, rng, name, scale=1.0, kind=None, emission=False):
    """A procedural material: a texture (random kind unless given) through a random colour ramp.

    ``emission``: the texture is emitted light (the sky dome) instead of a diffuse colour.
    """
    mat = bpy.data.materials.new(name)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes.get("Principled BSDF")
    kind = kind or rng.choice(TEXTURES)
    tex = nodes.new(kind)
    tex.inputs["Scale"].default_value = scale * rng.uniform(3.0, 8.0)
    ramp = nodes.new("ShaderNodeValToRGB")
    dark, light = ramp.color_ramp.elements  # a contrasted ramp: a dark and a light colour
    dark.color = tuple(0.35 * rng.random() for _ in range(3)) + (1.0,)
    light.color = tuple(0.5 + 0.5 * rng.random() for _ in range(3)) + (1.0,)
    links.new(tex.outputs[1 if kind == "ShaderNodeTexChecker" else 0], ramp.inputs["Fac"])
    if emission:
        shader = nodes.new("ShaderNodeEmission")
        links.new(ramp.outputs["Color"], shader.inputs["Color"])
        links.new(shader.outputs["Emission"], nodes.get("Material Output").inputs["Surface"])
    else:
        links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
        bsdf.inputs["Roughness"].default_value = rng.uniform(0.4, 0.9)
    return mat


def _keyframe(obj, frame, location, rotation=None):
    obj.location = location
    obj.keyframe_insert("location", frame=frame)
    if rotation is not None:
        obj.rotation_euler = rotation
        obj.keyframe_insert("rotation_euler", frame=frame)


def build_scene(frames, width, height, samples, seed):
    """Create the scene in the current bpy session and set up rendering; returns the scene."""
    import bpy

    rng = random.Random(seed)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, frames

    # A textured, self-lit sky dome, so that every pixel sees geometry and has an exact flow.
    bpy.ops.mesh.primitive_uv_sphere_add(radius=50, segments=64, ring_count=32)
    dome = bpy.context.object
    dome.data.materials.append(_material(bpy, rng, "sky", scale=2.0, kind="ShaderNodeTexNoise", emission=True))
    dome.visible_shadow = False
    bpy.ops.mesh.primitive_plane_add(size=60)
    bpy.context.object.data.materials.append(_material(bpy, rng, "ground", scale=8.0, kind="ShaderNodeTexVoronoi"))
    bpy.ops.object.light_add(type="SUN", rotation=(0.6, 0.2, 0.8))
    bpy.context.object.data.energy = 3.0

    shapes = [
        bpy.ops.mesh.primitive_cube_add,
        bpy.ops.mesh.primitive_uv_sphere_add,
        bpy.ops.mesh.primitive_cylinder_add,
        bpy.ops.mesh.primitive_cone_add,
        bpy.ops.mesh.primitive_torus_add,
        bpy.ops.mesh.primitive_monkey_add,
    ]
    for i in range(14):
        rng.choice(shapes)()
        obj = bpy.context.object
        obj.scale = [rng.uniform(0.6, 1.5)] * 3
        obj.data.materials.append(_material(bpy, rng, f"object{i}"))
        start = (rng.uniform(-7, 7), rng.uniform(-5, 8), rng.uniform(0.6, 2.5))
        rot = tuple(rng.uniform(0, math.pi) for _ in range(3))
        _keyframe(obj, 1, start, rot)
        if rng.random() < 0.6:  # a moving object
            step = (rng.uniform(-0.25, 0.25), rng.uniform(-0.2, 0.2), 0.0)
            end = tuple(s + d * (frames - 1) for s, d in zip(start, step))
            _keyframe(obj, frames, end, tuple(r + rng.uniform(-0.5, 0.5) for r in rot))

    bpy.ops.object.empty_add(location=(0, 0, 1))
    target = bpy.context.object
    _keyframe(target, 1, (-1.0, 1.0, 1.0))
    _keyframe(target, frames, (1.0, 1.0, 1.0))
    bpy.ops.object.camera_add()
    camera = bpy.context.object
    camera.data.lens = 28
    _keyframe(camera, 1, (-4.0, -11.0, 3.0))
    _keyframe(camera, frames, (-4.0 + 0.35 * (frames - 1), -11.0 + 0.15 * (frames - 1), 2.8))
    track = camera.constraints.new("TRACK_TO")
    track.target, track.track_axis, track.up_axis = target, "TRACK_NEGATIVE_Z", "UP_Y"
    scene.camera = camera

    render = scene.render
    render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.cycles.use_animated_seed = True
    scene.cycles.max_bounces = 2
    render.use_motion_blur = False
    render.resolution_x, render.resolution_y, render.resolution_percentage = width, height, 100
    scene.view_settings.view_transform = "Standard"
    layer = scene.view_layers[0]
    layer.use_pass_combined = True
    layer.use_pass_vector = True
    image = render.image_settings
    image.media_type = "MULTI_LAYER_IMAGE"  # bpy >= 5.0; sets file_format to OPEN_EXR_MULTILAYER
    image.file_format = "OPEN_EXR_MULTILAYER"
    image.color_depth = "32"
    image.exr_codec = "ZIP"
    return scene


def main(argv=None):
    parser = argparse.ArgumentParser(description="render a generated clip with its Vector pass")
    parser.add_argument("folder", type=Path)
    for name, default in (("frames", 8), ("width", 160), ("height", 68), ("samples", 32), ("seed", 0)):
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args(argv)
    import bpy

    scene = build_scene(args.frames, args.width, args.height, args.samples, args.seed)
    args.folder.mkdir(parents=True, exist_ok=True)
    scene.render.filepath = str(args.folder.resolve() / "frame_#####")
    bpy.ops.render.render(animation=True)


if __name__ == "__main__":
    main()
