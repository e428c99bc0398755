"""Regions in the add-on (issue #10), with bpy as a module in background mode and the real engine
(random narrow VGG, 64x48, few frames): a scene strip whose two objects get two styles through the
Cryptomatte Object pass, a movie strip with a mask strip as its matte, Render > Stylize Animation
with the same region list, and the requests the add-on refuses.

The test scene is two emission cubes of known greys (left light, right dark) over a black world,
both drifting right, so every pixel's object is known from the rendered colour.
"""
import json
from pathlib import Path
from types import SimpleNamespace

import bpy
import cv2
import numpy as np
import pytest

from addon import compat
from test_addon import (FakeLayout, W, H, addon, blender, check_result, flat_image, image_strip,  # noqa: F401
                        job_folder, make_frames, make_movie, snapshot, strip_names, stylize)

LIGHT, DARK = 0.8, 0.25  # linear emission of the left and right cube


def emission(name, grey):
    mat = bpy.data.materials.new(name)
    if not compat.IS_5:
        mat.use_nodes = True
    nodes = mat.node_tree.nodes
    nodes.clear()
    shader = nodes.new("ShaderNodeEmission")
    shader.inputs["Color"].default_value = (grey, grey, grey, 1.0)
    out = nodes.new("ShaderNodeOutputMaterial")
    mat.node_tree.links.new(shader.outputs[0], out.inputs[0])
    return mat


def two_cube_scene(name="shot", frames=3):
    """Cycles, 2 samples, 64x48: cubes 'left' (in collection 'Set') and 'right' drifting 0.1 a frame."""
    import bmesh
    scene = bpy.data.scenes.new(name)
    scene.render.engine = "CYCLES"
    scene.cycles.samples, scene.cycles.use_denoising = 2, False
    scene.render.resolution_x, scene.render.resolution_y = W, H
    scene.frame_start, scene.frame_end = 1, frames
    group = bpy.data.collections.new("Set")
    scene.collection.children.link(group)
    for obj_name, x, grey, owner in (("left", -1.1, LIGHT, group), ("right", 1.1, DARK, scene.collection)):
        mesh = bpy.data.meshes.new(obj_name)
        bm = bmesh.new()
        bmesh.ops.create_cube(bm, size=1.6)
        bm.to_mesh(mesh)
        mesh.materials.append(emission(obj_name, grey))
        obj = bpy.data.objects.new(obj_name, mesh)
        obj.pass_index = 7 if obj_name == "left" else 0
        owner.objects.link(obj)
        for frame in (1, frames):
            obj.location = (x + 0.1 * (frame - 1), 0, 0)
            obj.keyframe_insert("location", frame=frame)
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    cam.location, cam.rotation_euler = (0, -6, 0), (1.5708, 0, 0)
    scene.collection.objects.link(cam)
    scene.camera = cam
    return scene


def noise_style(path, bgr):
    """A style image: coarse noise around the colour ``bgr``."""
    rng = np.random.default_rng(1)
    noise = cv2.resize(rng.integers(-60, 60, (8, 8)).astype(np.int16), (64, 64), interpolation=cv2.INTER_NEAREST)[..., None]
    cv2.imwrite(str(path), np.clip(np.array(bgr) + noise, 0, 255).astype(np.uint8))
    return str(path)


def add_region(settings, target, style="", keep=False, strength=1.0):
    item = settings.regions.add()
    item.kind = "COLLECTION" if isinstance(target, bpy.types.Collection) else "OBJECT"
    setattr(item, item.kind.lower(), target)
    item.style_image, item.keep, item.strength = style, keep, strength
    return item


def pass_settings(scene):
    """What the user set that a region export must leave alone: pass indices and the view layers' passes."""
    return ({o.name: o.pass_index for o in scene.objects},
            [snapshot(layer) for layer in scene.view_layers], snapshot(scene.render))


def engine_args(j):
    """The job's engine command parsed by the engine's own parser (as ``_export_done`` builds it)."""
    from addon import worker
    from stylize_core import cli
    options = dict(j.options)
    options.update(j.region_options())
    cmd = worker.engine_command("python", "frames", j.style, "jobs", options)
    return cli.build_parser().parse_args(cmd[3:])


def objects_in(combined):
    """Masks of the left and right cube in a rendered frame (sRGB (H, W, 3)): far from the edges'
    mixed colours, by the known greys."""
    from stylize_core import exr
    grey = combined.mean(-1)
    left, right = (np.abs(grey - exr.linear_to_srgb(g)) < 0.03 for g in (LIGHT, DARK))
    return left, right


# -- a scene strip: two objects, two styles ---------------------------------------------------------

def test_scene_strip_two_objects_get_two_styles(addon, tmp_path):
    from stylize_core import exr, regions
    shot = two_cube_scene(frames=3)
    before = pass_settings(shot)
    sed = bpy.context.scene.sequence_editor_create()
    strip = compat.strips(sed).new_scene("shot", shot, 1, 1)
    strip_before = snapshot(strip)
    s = bpy.context.scene.video_stylize
    s.use_regions, s.region_rest = True, "KEEP"  # the black world stays black
    s.iterations = 4
    green, magenta = noise_style(tmp_path / "green.png", (30, 220, 30)), noise_style(tmp_path / "magenta.png",
                                                                                     (200, 40, 200))
    add_region(s, bpy.data.collections["Set"], green)  # the collection stands for 'left'
    add_region(s, bpy.data.objects["right"], magenta, strength=2.0)

    assert stylize(strip="shot") == {"FINISHED"}
    from addon import job
    print("TIMINGS", job.current.timings)
    new, out = check_result(sed, strip, strip_before, channel=2)
    assert pass_settings(shot) == before  # the user's objects and passes are untouched
    assert not shot.view_layers[0].use_pass_cryptomatte_object

    folder = job_folder()
    assert json.loads((folder / "regions.json").read_text()) == {
        "left": {"style": green, "strength": 1.0}, "right": {"style": magenta, "strength": 2.0}, "*": "keep"}
    command = (folder / "worker.log").read_text().splitlines()[0]
    assert "--regions input --regions-layer CryptoObject" in command and "--style" not in command
    assert "--flow vector" in command

    # The label maps the engine reads line up with the objects.
    frames = sorted((folder / "frames").glob("frame_*.exr"))
    source = regions.ExrLayer([str(f) for f in frames], "CryptoObject", "test")
    for path in frames:
        left, right = objects_in(exr.read_rgb(path))
        assert left.sum() > 150 and right.sum() > 150
        labels = source.read(frames.index(path))
        assert set(labels) == {"left", "right", regions.BACKGROUND}
        assert (labels["left"][left] > 0.5).mean() >= 0.99 and (labels["right"][right] > 0.5).mean() >= 0.99
        assert (labels[regions.BACKGROUND][~(left | right)] > 0.5).mean() >= 0.95  # edges excluded above

    # Two looks: greener on the left, more magenta on the right; the world kept.
    files = [out / e.filename for e in new.elements]
    for path, result in zip(frames, files):
        rendered = (exr.read_rgb(path) * 255).round()
        left, right = objects_in(rendered / 255)
        styled = cv2.imread(str(result))[..., ::-1].astype(float)  # RGB like the render

        def greenness(mask, img):
            return (img[mask, 1] - img[mask][:, [0, 2]].mean(1)).mean()
        towards_green = greenness(left, styled) - greenness(left, rendered)
        towards_magenta = greenness(right, rendered) - greenness(right, styled)
        print("GREEN", towards_green, towards_magenta)
        assert towards_green > 3 and towards_magenta > 3 and towards_green + towards_magenta > 20
        world = ~cv2.dilate((left | right).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert np.abs(styled[world] - rendered[world]).mean() < 3
