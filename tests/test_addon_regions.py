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
from test_addon import (  # noqa: F401 (fixtures)
    FakeLayout,
    H,
    W,
    addon,
    blender,
    check_result,
    image_strip,
    job_folder,
    make_frames,
    make_movie,
    quick_settings,
    snapshot,
    strip_names,
    stylize,
)

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
    noise = cv2.resize(rng.integers(-60, 60, (8, 8)).astype(np.int16), (64, 64), interpolation=cv2.INTER_NEAREST)
    noise = noise[..., None]
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
    return (
        {o.name: o.pass_index for o in scene.objects},
        [snapshot(layer) for layer in scene.view_layers],
        snapshot(scene.render),
    )


def engine_args(j):
    """The job's engine command parsed by the engine's own parser (as ``_export_done`` builds it)."""
    from addon import request, worker
    from stylize_core import cli

    options = dict(j.options)
    j.folder.mkdir(parents=True, exist_ok=True)  # made by the job's first step
    options.update(request.region_options(j.regions, j.style, j.folder, j.mattes))
    cmd = worker.engine_command("python", "frames", j.style, "jobs", options)
    return cli.build_parser().parse_args(cmd[3:])


def objects_in(combined):
    """Masks of the left and right cube in a rendered frame (sRGB (H, W, 3)): far from the edges'
    mixed colours, by the known greys."""
    from stylize_core.io import exr

    grey = combined.mean(-1)
    left, right = (np.abs(grey - exr.linear_to_srgb(g)) < 0.03 for g in (LIGHT, DARK))
    return left, right


# -- a scene strip: two objects, two styles ---------------------------------------------------------


def test_scene_strip_two_objects_get_two_styles(addon, tmp_path):
    from stylize_core.io import exr, regions

    shot = two_cube_scene(frames=3)
    before = pass_settings(shot)
    sed = bpy.context.scene.sequence_editor_create()
    strip = compat.strips(sed).new_scene("shot", shot, 1, 1)
    strip_before = snapshot(strip)
    s = bpy.context.scene.video_stylize
    s.use_regions, s.region_rest = True, "KEEP"  # the black world stays black
    s.iterations = 4
    green, magenta = (
        noise_style(tmp_path / "green.png", (30, 220, 30)),
        noise_style(tmp_path / "magenta.png", (200, 40, 200)),
    )
    add_region(s, bpy.data.collections["Set"], green)  # the collection stands for 'left'
    add_region(s, bpy.data.objects["right"], magenta, strength=2.0)

    assert stylize(strip="shot") == {"FINISHED"}
    new, out = check_result(sed, strip, strip_before, channel=2)
    assert pass_settings(shot) == before  # the user's objects and passes are untouched
    assert not shot.view_layers[0].use_pass_cryptomatte_object

    folder = job_folder()
    assert json.loads((folder / "regions.json").read_text()) == {
        "left": {"style": green, "strength": 1.0},
        "right": {"style": magenta, "strength": 2.0},
        "*": "keep",
    }
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
        assert towards_green > 3 and towards_magenta > 3 and towards_green + towards_magenta > 20
        world = ~cv2.dilate((left | right).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert np.abs(styled[world] - rendered[world]).mean() < 3


# -- what reaches the engine, and what is refused ---------------------------------------------------


def test_region_list_reaches_the_engine_and_bad_lists_are_refused(addon, tmp_path):
    """The region list as the engine reads it (its own parser and region map reader): a collection
    stands for its objects, an object's own entry wins, strength and Keep; Everything Else is the main
    style (--style) or "*": keep. Each mistake is refused with one line before anything runs."""
    from addon import job, request
    from stylize_core import cli
    from stylize_core.io import regions

    shot = two_cube_scene(frames=2)
    extra = bpy.data.objects.new("extra", bpy.data.meshes.new("extra"))
    bpy.data.collections["Set"].objects.link(extra)
    sed = bpy.context.scene.sequence_editor_create()
    strip = compat.strips(sed).new_scene("shot", shot, 1, 1)
    sed.active_strip = strip
    s = bpy.context.scene.video_stylize
    s.use_regions = True
    main = str(Path(bpy.path.abspath(s.style_image)))
    green = noise_style(tmp_path / "green.png", (30, 220, 30))

    def mapping():
        j = job.prepare(bpy.context)
        j.cancel()
        args = engine_args(j)
        cli.build_parser()  # the options parse as the engine's
        assert args.regions == "input" and args.regions_layer == "CryptoObject" and args.matte is None
        regions.RegionOptions(args.regions, args.regions_layer, args.matte, (), args.region_map).check()
        style = [regions.parse_weighted(v) for v in args.style or ()] or None
        return regions.build_mapping(args.region, args.region_map, style), j

    with pytest.raises(request.JobError, match="The region list is empty"):
        job.prepare(bpy.context)
    add_region(s, bpy.data.collections["Set"], green, strength=0.5)
    add_region(s, bpy.data.objects["left"], keep=True)
    m, j = mapping()
    assert j.route == "scene" and j._export_request()["cryptomatte"]
    record = m.record(str)
    assert record["left"] == "keep" and record["extra"] == {"style": [[green, 1.0]], "strength": 0.5}
    assert record["*"] == {"style": [[main, 1.0]], "strength": 1.0}  # --style: everything else
    s.region_rest = "KEEP"
    s.style_image = ""  # not needed then
    m, j = mapping()
    assert m.record(str)["*"] == "keep" and j.style is None
    s.flow = "DIS"  # no Vector pass wanted: still the scene route for the Cryptomatte pass
    m, j = mapping()
    assert j.route == "scene" and j._export_request() == {"strip": "shot", "vector": False, "cryptomatte": True}
    assert engine_args(j).flow == "dis"

    s.regions[1].keep = False
    for message, change in (
        ("Choose a style image for region 'left', or tick Keep", None),
        (
            f"Style image of region 'left' not found: {tmp_path / 'gone.png'}",
            lambda: setattr(s.regions[1], "style_image", str(tmp_path / "gone.png")),
        ),
        (
            "Object 'left' is in the region list twice",
            lambda: (setattr(s.regions[1], "keep", True), add_region(s, bpy.data.objects["left"], keep=True)),
        ),
        (
            "Region 3 of the list has no object: choose one or remove the region",
            lambda: (s.regions.remove(2), s.regions.add()),
        ),
        (
            "Choose a style image (Sequencer sidebar > Stylize, or Output Properties > Style Transfer) for "
            "everything outside the regions, or set Everything Else to Keep",
            lambda: (s.regions.remove(2), setattr(s, "region_rest", "STYLE")),
        ),
        (
            "Regions need the Cryptomatte pass, which the render engine of scene 'shot' (BLENDER_WORKBENCH) "
            "does not write",
            lambda: (setattr(s, "style_image", main), setattr(shot.render, "engine", "BLENDER_WORKBENCH")),
        ),
        (
            "Regions of scene strip 'shot' need its camera's render: set the strip's Input to Camera",
            lambda: (setattr(shot.render, "engine", "CYCLES"), setattr(strip, "scene_input", "SEQUENCER")),
        ),
    ):
        if change:
            change()
        with pytest.raises(request.JobError, match=message.replace("(", r"\(").replace(")", r"\)")):
            job.prepare(bpy.context)
    assert strip_names(sed) == ["shot"]
    strip.scene_input = "CAMERA"
    s.use_regions = False  # the list stays, unused
    j = job.prepare(bpy.context)
    j.cancel()
    assert j.regions is None and j.route == "sequencer"  # DIS: the strip as the sequencer shows it
    assert j._export_request() == {"strip": "shot", "matte": None}


def test_matte_requests_and_refusals(addon, tmp_path):
    from addon import job, request

    sed = bpy.context.scene.sequence_editor_create()
    clip = image_strip(sed, "clip", make_frames(tmp_path / "pics", 4), 1, 5)  # frames 5-8
    short = image_strip(sed, "short", make_frames(tmp_path / "short", 2), 2, 5)  # frames 5-6
    sed.active_strip = clip
    s = bpy.context.scene.video_stylize
    s.use_regions = True
    with pytest.raises(request.JobError, match="Choose the matte strip whose white part is the region"):
        job.prepare(bpy.context)
    for name, message in (
        ("nope", "No matte strip named 'nope' in scene 'Scene'"),
        ("clip", "'clip' cannot be the matte of strip 'clip'"),
    ):
        s.matte_strip = name
        with pytest.raises(request.JobError, match=message):
            job.prepare(bpy.context)
    s.matte_strip = "short"
    with pytest.raises(request.JobError, match="Choose a style image for the matte's white part, or tick Keep"):
        job.prepare(bpy.context)
    s.matte.keep = True
    j = job.prepare(bpy.context)
    j.cancel()
    assert j.route == "sequencer" and j._export_request() == {
        "strip": "clip",
        "matte": {"strip": "short", "folder": str(j.folder / "matte")},
    }
    args = engine_args(j)
    assert args.matte == str(j.folder / "matte") and args.regions is None
    assert json.loads(Path(args.region_map).read_text()) == {"1": "keep"}
    assert j.warnings == [
        "The matte strip 'short' (frames 5-6) does not cover strip 'clip' (frames 5-8): where it "
        "is missing the frame is black (outside the region)"
    ]
    assert short.channel == 2 and strip_names(sed) == ["clip", "short"]


# -- a movie strip and a matte ----------------------------------------------------------------------


def left_half_mask():
    """A mask (Blender's Mask editor) covering about the left half of the frame."""
    mask = bpy.data.masks.new("left half")
    spline = mask.layers.new(name="layer").splines.new()
    spline.points.add(3)
    for point, co in zip(spline.points, [(-0.1, -0.1), (0.5, -0.1), (0.5, 1.1), (-0.1, 1.1)]):
        point.co, point.handle_type = co, "VECTOR"
    spline.use_cyclic = True
    return mask


def test_movie_strip_with_a_mask_strip_as_matte(addon, tmp_path):
    """The white part of a (muted) mask strip takes the matte's style, the rest is kept."""
    from stylize_core.io import regions

    scene = bpy.context.scene
    sed = scene.sequence_editor_create()
    movie = compat.strips(sed).new_movie("clip", str(make_movie(tmp_path / "clip.mp4", frames=3)), 1, 1)
    matte = compat.strips(sed).new_mask("matte", left_half_mask(), 2, 1)
    matte.mute = True  # as a user keeps it, so that it does not cover the clip
    before = snapshot(movie), snapshot(matte)
    s = scene.video_stylize
    s.use_regions, s.region_rest, s.matte_strip = True, "KEEP", "matte"
    green = noise_style(tmp_path / "green.png", (30, 220, 30))
    s.matte.style_image = green
    s.iterations = 4
    sed.active_strip = movie

    assert stylize() == {"FINISHED"}
    new, out = check_result(sed, movie, before[0], channel=3)  # above the matte strip
    assert snapshot(matte) == before[1] and matte.mute
    folder = job_folder()
    command = (folder / "worker.log").read_text().splitlines()[0]
    assert f"--matte {folder / 'matte'}" in command and "--style" not in command
    assert json.loads((folder / "regions.json").read_text()) == {"1": {"style": green, "strength": 1.0}, "*": "keep"}
    mattes = sorted((folder / "matte").glob("frame_*.png"))
    assert [m.name for m in mattes] == [f"frame_{i:05d}.png" for i in (1, 2, 3)]
    white = regions.Mattes([str(m) for m in mattes], "test").read(0)["1"] > 0.5
    x = np.arange(W)[None, :].repeat(H, 0)
    assert (white == (x < W // 2)).mean() >= 0.97  # the mask's left half, as the sequencer shows it

    files = [out / e.filename for e in new.elements]
    for i, result in enumerate(files):
        exported = cv2.imread(str(folder / "frames" / f"frame_{i + 1:05d}.png")).astype(float)
        styled = cv2.imread(str(result)).astype(float)
        inside = cv2.erode(white.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        outside = ~cv2.dilate(white.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert np.abs(styled[outside] - exported[outside]).mean() < 2  # kept

        def greenness(img):
            return (img[inside, 1] - img[inside][:, [0, 2]].mean(1)).mean()

        assert greenness(styled) - greenness(exported) > 3  # towards the green style


# -- Render > Stylize Animation with the same list ---------------------------------------------------


def test_render_animation_keeps_a_listed_object(addon, tmp_path):
    from stylize_core.io import exr

    scene = two_cube_scene("anim", frames=2)
    scene.render.filepath = str(tmp_path / "render" / "anim_##")
    image = scene.render.image_settings
    image.file_format, image.color_mode, image.color_depth = "PNG", "RGB", "8"
    quick_settings(bpy.context.preferences.addons["addon"].preferences, scene, tmp_path)
    s = scene.video_stylize
    s.use_regions, s.iterations = True, 4
    s.style_image = noise_style(tmp_path / "magenta.png", (200, 40, 200))
    add_region(s, bpy.data.objects["left"], keep=True)
    before = pass_settings(scene)
    with bpy.context.temp_override(scene=scene):
        assert bpy.ops.render.stylize_animation() == {"FINISHED"}
    assert pass_settings(scene) == before
    from addon import job

    folder = job.current.folder
    command = (folder / "worker.log").read_text().splitlines()[0]
    assert "--regions input --regions-layer CryptoObject" in command and "--flow vector" in command
    assert json.loads((folder / "regions.json").read_text()) == {"left": "keep"}
    for frame in (1, 2):
        rendered = exr.read_rgb(folder / "frames" / f"frame_{frame:05d}.exr") * 255
        left, right = objects_in(rendered / 255)
        written = cv2.imread(str(tmp_path / "render" / f"anim_{frame:02d}.png"))[..., ::-1].astype(float)
        # The engine composites at its processing size (half, in the draft preset): 3 px off the edges
        inside = cv2.erode(left.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        assert inside.sum() > 100 and np.abs(written[inside] - rendered[inside]).mean() < 2  # kept
        assert np.abs(written[right] - rendered[right]).mean() > 10  # stylised


# -- the panels ----------------------------------------------------------------------------------


class OperatorProps:
    """What ``UILayout.operator()`` returns: its properties, checked against the operator's."""

    def __init__(self, idname, calls):
        category, name = idname.split(".")
        object.__setattr__(self, "rna", getattr(getattr(bpy.ops, category), name).get_rna_type())
        object.__setattr__(self, "calls", calls)

    def __setattr__(self, name, value):
        assert name in self.rna.properties, f"{self.rna.identifier} has no property {name}"
        self.calls.append(("operator property", (name, value), {}))


class Layout(FakeLayout):
    """``FakeLayout`` whose operators take properties."""

    def __getattr__(self, name):
        call = super().__getattr__(name)

        def recorded(*args, **kwargs):
            call(*args, **kwargs)
            return OperatorProps(args[0], self.calls) if name == "operator" else Layout(self.calls)

        return recorded


def test_region_panels_and_list_operators(addon, tmp_path):
    """The Regions sub-panels draw (checked against the real UILayout's RNA): the object list for scene
    strips and in Output Properties, the matte for movie and image strips; + and - edit the list of the
    scene they are given."""
    from addon import panel

    scene = bpy.context.scene
    shot = two_cube_scene(frames=2)
    sed = scene.sequence_editor_create()
    scene_strip = compat.strips(sed).new_scene("shot", shot, 1, 1)
    pics = image_strip(sed, "pics", make_frames(tmp_path / "pics", 2), 2, 1)
    assert bpy.ops.stylize.region_add() == {"FINISHED"}  # the sequencer's scene by default
    assert bpy.ops.stylize.region_add(scene="shot") == {"FINISHED"}
    assert len(scene.video_stylize.regions) == 1 and len(shot.video_stylize.regions) == 1
    scene.video_stylize.regions[0].object = bpy.data.objects["left"]

    def draw(cls, context_scene=scene):
        calls = []
        with bpy.context.temp_override(scene=context_scene):
            cls.draw_header(SimpleNamespace(layout=Layout(calls)), bpy.context)
            cls.draw(SimpleNamespace(layout=Layout(calls)), bpy.context)
        return calls, [c[1][0] for c in calls if c[0] == "operator"], [c[1][1] for c in calls if c[0] == "prop"]

    for active, has_list, has_matte in ((scene_strip, True, False), (pics, False, True), (None, True, True)):
        sed.active_strip = active
        calls, ops, props = draw(panel.SEQUENCER_PT_stylize_regions)
        assert props[0] == "use_regions" and "region_rest" in props
        assert ("template_list" in [c[0] for c in calls]) == has_list
        assert (ops == ["stylize.region_add", "stylize.region_remove"]) == has_list
        assert [c[1] for c in calls if c[0] == "operator property"] == [("scene", "Scene")] * 2 * has_list
        assert ("object" in props) == has_list and "style_image" in props and "strength" in props
        assert any(c[0] == "prop_search" and c[1][1] == "matte_strip" for c in calls) == has_matte
    calls, ops, props = draw(panel.RENDER_PT_stylize_regions, shot)
    assert ops == ["stylize.region_add", "stylize.region_remove"] and "kind" in props

    assert bpy.ops.stylize.region_remove(scene="shot") == {"FINISHED"}
    assert len(shot.video_stylize.regions) == 0 and len(scene.video_stylize.regions) == 1
    assert bpy.ops.stylize.region_remove(scene="shot") == {"CANCELLED"}  # nothing left to remove
