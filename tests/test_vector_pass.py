"""Proves the Vector-pass convention on a real Cycles render, and tests ``exr.py``.

The scene: a perspective camera looking straight down at a textured background
plane, with a textured square in front of it; camera and square translate
parallel to the image plane with different, non-constant velocities, so the
image motion of each plane is a known uniform shift (``analytic_flow``) and the
previous and next frame differ. Run as a script (``python test_vector_pass.py
OUTDIR``) it renders the three frames; the tests do that in a subprocess so
bpy never loads into the test process.
"""

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import render_with_bpy

W, H, LENS, SENSOR, CAM_Z, FG_Z = 96, 64, 50.0, 36.0, 10.0, 1.0
CAM = {1: (-0.24, -0.15), 2: (0.0, 0.0), 3: (0.33, 0.06)}  # camera x, y per frame (world)
OBJ = {1: (-0.30, 0.25), 2: (0.0, 0.0), 3: (0.20, -0.40)}  # square x, y per frame (world)


def _material(bpy, name, scale):
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:  # Blender < 5.0 creates materials without nodes
        mat.use_nodes = True
    nt = mat.node_tree
    nt.nodes.clear()
    coord, tex = nt.nodes.new("ShaderNodeTexCoord"), nt.nodes.new("ShaderNodeTexNoise")
    emit, out = nt.nodes.new("ShaderNodeEmission"), nt.nodes.new("ShaderNodeOutputMaterial")
    tex.inputs["Scale"].default_value = scale
    nt.links.new(coord.outputs["Object"], tex.inputs["Vector"])
    nt.links.new(tex.outputs["Color"], emit.inputs["Color"])
    nt.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    return mat


def _plane(bpy, scene, name, size, z, mat):
    s = size / 2
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([(-s, -s, 0), (s, -s, 0), (s, s, 0), (-s, s, 0)], [], [(0, 1, 2, 3)])
    mesh.materials.append(mat)
    ob = bpy.data.objects.new(name, mesh)
    ob.location.z = z
    scene.collection.objects.link(ob)
    return ob


def _set_multilayer_exr(image_settings):
    """Multilayer float EXR output on Blender 4.2 - 5.0 (5.0 added ``media_type``)."""
    if hasattr(image_settings, "media_type"):
        image_settings.media_type = "MULTI_LAYER_IMAGE"
    image_settings.file_format = "OPEN_EXR_MULTILAYER"
    image_settings.color_depth = "32"


def cycles_scene(bpy, w, h, frames, samples):
    """Factory settings, then a Cycles CPU scene (linear keys) rendering frames 1..``frames`` at
    ``w`` x ``h`` with ``samples``, no denoising or motion blur, the Vector pass, multilayer EXR."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.edit.keyframe_new_interpolation_type = "LINEAR"
    sc = bpy.context.scene
    sc.render.engine = "CYCLES"
    sc.cycles.device, sc.cycles.samples = "CPU", samples
    sc.cycles.use_denoising = sc.cycles.use_adaptive_sampling = False
    sc.render.use_motion_blur = False
    sc.render.resolution_x, sc.render.resolution_y, sc.render.resolution_percentage = w, h, 100
    sc.render.threads_mode, sc.render.threads = "FIXED", 2
    sc.frame_start, sc.frame_end = 1, frames
    sc.view_layers[0].use_pass_vector = True
    _set_multilayer_exr(sc.render.image_settings)
    return sc


def render(out):
    """Render frames 1-3 to ``out/frame_000N.exr`` with Combined, Vector and Object Index passes."""
    import bpy

    sc = cycles_scene(bpy, W, H, 3, 16)
    sc.view_layers[0].use_pass_object_index = True
    _plane(bpy, sc, "bg", 40, 0, _material(bpy, "bg", 0.6))
    square = _plane(bpy, sc, "square", 2.4, FG_Z, _material(bpy, "square", 1.5))
    square.pass_index = 1
    cam_data = bpy.data.cameras.new("cam")
    cam_data.lens, cam_data.sensor_width, cam_data.sensor_fit = LENS, SENSOR, "HORIZONTAL"
    cam = bpy.data.objects.new("cam", cam_data)
    sc.collection.objects.link(cam)
    sc.camera = cam
    for f in (1, 2, 3):
        cam.location = (*CAM[f], CAM_Z)
        cam.keyframe_insert("location", frame=f)
        square.location = (*OBJ[f], FG_Z)
        square.keyframe_insert("location", frame=f)
    sc.render.filepath = str(Path(out) / "frame_")
    bpy.ops.render.render(animation=True)


def analytic_flow(t, s, on_square):
    """Uniform image motion (u, v down) from frame t to frame s of the square or the background."""
    depth = CAM_Z - FG_Z if on_square else CAM_Z
    px_per_unit = LENS / SENSOR * W / depth
    rel = lambda f: np.subtract(OBJ[f] if on_square else (0, 0), CAM[f])  # noqa: E731
    d = rel(s) - rel(t)
    return np.array([d[0], -d[1]]) * px_per_unit


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    out = render_with_bpy(tmp_path_factory, "vector_pass", __file__)
    from stylize_core.io import exr

    result = []
    for f in (1, 2, 3):
        path = out / f"frame_{f:04d}.exr"
        names = set(exr.channel_names(path))
        index = exr.find_pass(names, "Object Index", "X") or exr.find_pass(names, "IndexOB", "X")
        result.append((path, exr.read_rgb(path), exr.read_channels(path, index)[0] > 0.5))
    return result


def _erode(mask, px):
    return cv2.erode(mask.astype(np.uint8), np.ones((2 * px + 1,) * 2, np.uint8)) > 0


def remap(img, flow):
    """``out(p) = img(p + flow(p))`` (bilinear) with cv2.remap: the convention of
    ``stylize_core/motion/warp.py`` (test_warp.py), without torch; and the mask of samples inside the frame."""
    h, w = flow.shape[:2]
    x = (np.arange(w, dtype=np.float32)[None] + flow[..., 0]).astype(np.float32)
    y = (np.arange(h, dtype=np.float32)[:, None] + flow[..., 1]).astype(np.float32)
    out = cv2.remap(np.asarray(img, np.float32), x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    out = out.reshape(img.shape)
    return out, ((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)).astype(np.float32)


@pytest.mark.parametrize("other", [1, 3], ids=["to_previous", "to_next"])
def test_vector_pass_matches_analytic_motion(frames, other):
    from stylize_core.motion import vector_pass

    to_prev, to_next = vector_pass.read_flows(frames[1][0])
    flow = to_prev if other == 1 else to_next
    square = frames[1][2]
    assert 300 < square.sum() < 2000
    for region, on_square in ((_erode(square, 2), True), (_erode(~square, 3), False)):
        err = np.linalg.norm(flow[region] - analytic_flow(2, other, on_square), axis=-1)
        assert err.max() < 0.1, (on_square, err.max())


@pytest.mark.parametrize("other", [1, 3], ids=["previous", "next"])
def test_warping_with_vector_flow_aligns_frames(frames, other):
    from stylize_core.motion import vector_pass

    to_prev, to_next = vector_pass.read_flows(frames[1][0])
    flow = to_prev if other == 1 else to_next
    _, img_t, sq_t = frames[1]
    _, img_s, sq_s = frames[other - 1]
    warped, valid = remap(img_s, flow)
    sq_warped, _ = remap(sq_s[..., None].astype(np.float32), flow)
    # not disoccluded: the warped square mask agrees with this frame's, away from edges
    ok = _erode((valid > 0) & (np.abs(sq_warped[..., 0] - sq_t) < 1e-3), 2)
    assert ok.mean() > 0.5
    warped_diff = np.abs(warped - img_t)[ok].mean()
    plain_diff = np.abs(img_s - img_t)[ok].mean()
    assert warped_diff < 0.02 and warped_diff < 0.2 * plain_diff, (warped_diff, plain_diff)


def test_remap_follows_the_warp_convention():
    img = np.random.default_rng(0).random((12, 16, 3), dtype=np.float32)
    flow = np.broadcast_to(np.float32([3, -2]), (12, 16, 2))
    out, valid = remap(img, flow)
    np.testing.assert_allclose(out[2:, :-3], img[:-2, 3:], atol=1e-6)  # out(x, y) = img(x+3, y-2)
    assert valid[2:, :-3].all() and not valid[:2].any() and not valid[:, -3:].any()
    ramp = np.mgrid[0:12, 0:16][1].astype(np.float32)[..., None]  # x: bilinear is exact
    half, _ = remap(ramp, np.broadcast_to(np.float32([0.25, 0.5]), (12, 16, 2)))
    np.testing.assert_allclose(half[:-1, :-1, 0], ramp[:-1, :-1, 0] + 0.25, atol=1e-2)


def test_vector_to_flows_signs():
    from stylize_core.motion.vector_pass import vector_to_flows

    prev, nxt = vector_to_flows(np.broadcast_to(np.float32([1, 2, 3, 4]), (2, 3, 4)))
    assert prev.shape == nxt.shape == (2, 3, 2)
    np.testing.assert_array_equal(prev[0, 0], [1, -2])
    np.testing.assert_array_equal(nxt[0, 0], [-3, 4])


def test_exr_multilayer_round_trip_and_srgb(tmp_path):
    from stylize_core.io import exr

    rng = np.random.default_rng(0)
    lin = rng.random((5, 7, 3), dtype=np.float32)
    vec = rng.normal(size=(5, 7, 4)).astype(np.float32)
    path = tmp_path / "ml.exr"
    exr.write_exr(
        path,
        {
            **{f"ViewLayer.Combined.{c}": lin[..., i] for i, c in enumerate("RGB")},
            **{f"ViewLayer.Vector.{c}": vec[..., i] for i, c in enumerate("XYZW")},
        },
    )
    names = exr.channel_names(path)
    assert len(names) == 7 and "ViewLayer.Vector.W" in names
    assert exr.find_pass(set(names), "Vector", "XYZW") == [f"ViewLayer.Vector.{c}" for c in "XYZW"]
    assert exr.find_pass(set(names), "Depth", "Z") is None
    np.testing.assert_allclose(exr.read_rgb(path), exr.linear_to_srgb(lin), atol=1e-6)
    from stylize_core.motion.vector_pass import read_vector

    np.testing.assert_array_equal(read_vector(path), vec)
    srgb = exr.linear_to_srgb(np.float32([-1, 0, 0.0031308, 0.5, 1, 4]))
    np.testing.assert_allclose(srgb, [0, 0, 0.04045, 0.735357, 1, 1], atol=1e-5)


def test_exr_plain_rgb_and_errors(tmp_path):
    from stylize_core.errors import StylizeError
    from stylize_core.io import exr
    from stylize_core.motion.vector_pass import read_vector

    path = tmp_path / "plain.exr"
    exr.write_exr(path, {c: np.full((4, 6), 0.5, np.float32) for c in "RGB"})
    np.testing.assert_allclose(exr.read_rgb(path), 0.735357, atol=1e-5)
    with pytest.raises(StylizeError, match="no Vector pass"):
        read_vector(path)
    with pytest.raises(StylizeError, match="missing EXR channel.*Z"):
        exr.read_channels(path, ["R", "Z"])
    exr.write_exr(path, {"Y": np.zeros((4, 6), np.float32)})
    with pytest.raises(StylizeError, match="no RGB image"):
        exr.read_rgb(path)
    junk = tmp_path / "junk.exr"
    junk.write_bytes(b"not an exr")
    for bad in (junk, tmp_path / "missing.exr"):
        with pytest.raises(StylizeError, match="cannot read EXR"):
            exr.channel_names(bad)


if __name__ == "__main__":
    render(sys.argv[1])
