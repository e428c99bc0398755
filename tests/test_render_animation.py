"""Render > Stylize Animation (``render.stylize_animation``) with bpy as a module, in background mode
(the headless code path), on a tiny Cycles scene and the real engine with a random narrow VGG.

The scene is ``test_addon.make_cycles_scene`` (a cube crossing the view, 2 samples) at 50% of
64x48: the output is 32x24, like the plain render would be.
"""

import json
import time
from pathlib import Path
from types import SimpleNamespace

import bpy

import cv2
import numpy as np
import pytest

from addon import compat
from test_addon import FakeLayout, H, W, addon, blender, make_cycles_scene, quick_settings, snapshot  # noqa: F401 (fixtures)

OUT_W, OUT_H = W // 2, H // 2


def shot_scene(tmp_path, frames=3, name="shot", **kwargs):
    """The Cycles test scene, the add-on's quick settings, output ``tmp_path/render/shot_##`` as 8-bit RGB PNG."""
    scene = make_cycles_scene(name, frames=frames, **kwargs)
    quick_settings(bpy.context.preferences.addons["addon"].preferences, scene, tmp_path)
    scene.render.resolution_percentage = 50
    scene.render.filepath = str(tmp_path / "render" / "shot_##")
    image = scene.render.image_settings
    image.file_format, image.color_mode, image.color_depth = "PNG", "RGB", "8"
    return scene


def stylize_animation(scene):
    """The operator on ``scene`` as the active scene, as ``blender -b file.blend --python-expr
    "bpy.ops.render.stylize_animation()"`` calls it."""
    with bpy.context.temp_override(scene=scene):
        return bpy.ops.render.stylize_animation()


def settings_of(scene):
    """The render settings a run must leave as they were."""
    return (
        snapshot(scene.render),
        snapshot(scene.render.image_settings),
        snapshot(scene.view_layers[0]),
        snapshot(scene.view_settings),
        scene.frame_current,
        scene.camera,
    )


def current():
    from addon import job

    return job.current


def files(folder):
    return sorted(p.name for p in Path(folder).iterdir()) if Path(folder).exists() else []


def test_writes_the_frames_at_the_output_path_with_the_vector_flow(addon, tmp_path):
    scene = shot_scene(tmp_path)
    older = tmp_path / "render" / "shot_10.png"  # another render in the output folder (not a target)
    older.parent.mkdir()
    older.write_bytes(b"an earlier render")
    before = settings_of(scene)

    assert stylize_animation(scene) == {"FINISHED"}
    job = current()
    targets = [Path(scene.render.frame_path(frame=f)) for f in (1, 2, 3)]
    assert [t.name for t in targets] == ["shot_01.png", "shot_02.png", "shot_03.png"]
    assert files(tmp_path / "render") == ["shot_01.png", "shot_02.png", "shot_03.png", "shot_10.png"]
    assert older.read_bytes() == b"an earlier render"
    # The files hold the engine's frames, pixel for pixel, at the scene's output size.
    assert len(job.paths) == 3
    for target, stylised in zip(targets, job.paths):
        written, engine = cv2.imread(str(target), cv2.IMREAD_UNCHANGED), cv2.imread(stylised)
        assert written.shape == (OUT_H, OUT_W, 3) and engine.shape == written.shape
        assert np.abs(written.astype(int) - engine).max() <= 1
    # The renderer's motion vectors were used for every frame pair.
    manifest = json.loads((Path(job.out) / "job.json").read_text())
    assert [s["source"] for s in manifest["flow_sources"]] == ["vector", "vector"]
    assert "--flow vector" in (job.folder / "worker.log").read_text()
    assert any("motion blur" in w for w in job.warnings)  # off in the copy only:
    assert settings_of(scene) == before and scene.render.use_motion_blur
    assert job.folder.name == "shot.render-animation" and not (job.folder / "source.blend").exists()
    assert json.loads((job.folder / "output.json").read_text())["complete"] is True


def test_the_frames_are_converted_alike_without_numpy(addon, tmp_path, monkeypatch):
    """Debian's Blender has no numpy (its real-window test found the delivery failing with
    "No module named 'numpy'"): the pure-Python conversion gives the same linear pixels."""
    from addon import output

    rng = np.random.default_rng(1)
    frame, alpha = tmp_path / "frame.png", tmp_path / "alpha.png"
    cv2.imwrite(str(frame), rng.integers(0, 256, (6, 5, 3), np.uint8))
    cv2.imwrite(str(alpha), rng.integers(0, 256, (6, 5, 4), np.uint8))
    results = []
    for hidden in (False, True):
        if hidden:
            monkeypatch.setattr(output, "_numpy", lambda: None)
        image = output.stylised_image(frame, alpha)
        buf = np.empty(6 * 5 * 4, np.float32)
        image.pixels.foreach_get(buf)
        bpy.data.images.remove(image)
        results.append(buf.reshape(6, 5, 4))
    with_numpy, without = results
    assert np.array_equal(with_numpy, without)
    bgr = cv2.imread(str(frame))[::-1] / 255  # Blender's rows start at the bottom
    srgb = bgr[..., ::-1]
    expected = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    assert np.abs(without[..., :3] - expected).max() < 1e-6
    assert np.abs(without[..., 3] - cv2.imread(str(alpha), cv2.IMREAD_UNCHANGED)[::-1, :, 3] / 255).max() < 1e-6


def test_existing_files_are_kept_unless_overwrite_and_the_strip_option(addon, tmp_path):
    scene = shot_scene(tmp_path, frames=2)
    plain = Path(scene.render.frame_path(frame=2))
    plain.parent.mkdir()
    plain.write_bytes(b"the plain render")
    with pytest.raises(RuntimeError, match=f"1 of the 2 output files already exist, e.g. {plain}: tick Overwrite"):
        stylize_animation(scene)
    assert files(plain.parent) == ["shot_02.png"] and plain.read_bytes() == b"the plain render"

    # Another folder: the scene's file names there; the plain render is untouched.
    s = scene.video_stylize
    s.output_folder, s.add_to_sequencer = str(tmp_path / "styled"), True
    assert stylize_animation(scene) == {"FINISHED"}
    assert files(tmp_path / "styled") == ["shot_01.png", "shot_02.png"]
    assert plain.read_bytes() == b"the plain render"
    # ... added to the sequencer (the window's; 5.x: the workspace's sequencer scene): an image strip
    # of the written files over the frame range
    sequencer = bpy.data.scenes[current().sequencer_scene]
    with bpy.context.temp_override(scene=scene):
        assert sequencer == compat.sequencer_scene(bpy.context)
    strip = sequencer.sequence_editor.active_strip
    assert strip.name == "shot (stylized)" and strip.type == "IMAGE" and strip.channel == 1
    assert compat.visible_range(strip) == (1, 3) and [e.filename for e in strip.elements] == [
        "shot_01.png",
        "shot_02.png",
    ]
    assert Path(bpy.path.abspath(strip.directory)) == tmp_path / "styled"
    assert any("own sequencer" in w for w in current().warnings) == (sequencer == scene)

    # A finished result is protected too; Overwrite replaces the files.
    with pytest.raises(RuntimeError, match="2 of the 2 output files already exist"):
        stylize_animation(scene)
    s.output_folder, s.overwrite_output, s.add_to_sequencer = "", True, False
    assert stylize_animation(scene) == {"FINISHED"}
    assert cv2.imread(str(plain)).shape == (OUT_H, OUT_W, 3)
    assert not [p for p in plain.parent.iterdir() if ".stylize-part" in p.name]


def test_exr_output_keeps_the_render_alpha(addon, tmp_path):
    """A transparent film written to RGBA OpenEXR: the stylised colours in linear light, the render's alpha."""
    from stylize_core.io import exr

    scene = shot_scene(tmp_path, frames=2)
    scene.render.film_transparent = True
    image = scene.render.image_settings
    if hasattr(image, "media_type"):
        image.media_type = "IMAGE"
    image.file_format, image.color_mode, image.color_depth = "OPEN_EXR", "RGBA", "32"
    assert stylize_animation(scene) == {"FINISHED"}
    job = current()
    target = Path(scene.render.frame_path(frame=1))
    assert target.name == "shot_01.exr" and files(target.parent) == ["shot_01.exr", "shot_02.exr"]
    names = exr.channel_names(target)
    assert {"R", "G", "B", "A"} <= set(names), names
    r, g, b, a = exr.read_channels(target, ["R", "G", "B", "A"])
    assert a.shape == (OUT_H, OUT_W)
    assert a[0, 0] == 0 and a[-1, -1] == 0  # the empty background
    assert (a > 0.99).mean() > 0.02 and (a < 0.01).mean() > 0.5  # the cube, opaque
    stylised = cv2.imread(job.paths[0])[..., ::-1].astype(np.float32) / 255
    opaque = a > 0.999
    rgb = exr.linear_to_srgb(np.stack([r, g, b], -1))
    assert np.abs(rgb[opaque] - stylised[opaque]).max() < 2 / 255


def test_cancel_then_the_next_run_resumes(addon, tmp_path):
    from addon import job

    scene = shot_scene(tmp_path)
    with bpy.context.temp_override(scene=scene):
        j = job.prepare_render(bpy.context)
    while j.out is None or not any(Path(j.out).glob("frame_*.png")):  # a first frame is stylised
        assert j.step()
        time.sleep(0.05)
    j.cancel()
    assert j.state == "cancelled" and not files(tmp_path / "render")
    first = next(Path(j.out).glob("frame_*.png"))
    done_before = first.stat().st_mtime_ns
    assert stylize_animation(scene) == {"FINISHED"}
    assert current().out == j.out and first.stat().st_mtime_ns == done_before
    assert files(tmp_path / "render") == ["shot_01.png", "shot_02.png", "shot_03.png"]


def test_an_interrupted_delivery_is_completed(addon, tmp_path):
    """Files of a delivery that did not finish are the job's own: the next run replaces them without
    Overwrite; a file changed since (e.g. rendered over) is not."""
    from addon import output

    scene = shot_scene(tmp_path, frames=2)
    assert stylize_animation(scene) == {"FINISHED"}
    folder = current().folder
    record = output.read_record(folder)
    output.write_record(folder, {**record, "complete": False})
    assert stylize_animation(scene) == {"FINISHED"}
    output.write_record(folder, {**output.read_record(folder), "complete": False})
    Path(scene.render.frame_path(frame=2)).write_bytes(b"rendered over")
    with pytest.raises(RuntimeError, match="1 of the 2 output files already exist"):
        stylize_animation(scene)


def test_bad_input_is_refused_with_its_message(addon, tmp_path):
    from addon import job

    scene = shot_scene(tmp_path)
    cam = scene.camera
    scene.camera = None
    with pytest.raises(RuntimeError, match="Scene 'shot' has no camera"):
        stylize_animation(scene)
    scene.camera = cam
    scene.frame_step = 0
    with pytest.raises(RuntimeError, match=r"Scene 'shot' has an empty frame range \(frames 1-3, step 0\)"):
        stylize_animation(scene)
    scene.frame_step = 1
    (tmp_path / "a_file").write_text("not a folder")
    scene.render.filepath = str(tmp_path / "a_file" / "shot_##")
    with pytest.raises(
        RuntimeError,
        match=f"Cannot write the stylised frames to {tmp_path / 'a_file'}: "
        f"{tmp_path / 'a_file'} is a file, not a folder",
    ):
        stylize_animation(scene)
    scene.render.filepath = str(tmp_path / "render" / "shot_##")
    image = scene.render.image_settings
    if hasattr(image, "media_type"):
        image.media_type = "VIDEO"
    image.file_format = "FFMPEG"
    with pytest.raises(RuntimeError, match="The output format of scene 'shot' is a movie"):
        stylize_animation(scene)
    if hasattr(image, "media_type"):
        image.media_type = "IMAGE"
    image.file_format = "PNG"
    scene.video_stylize.style_image = ""
    with pytest.raises(RuntimeError, match="Choose a style image"):
        stylize_animation(scene)
    assert "Choose a style image" in job.refused
    assert not (tmp_path / "render").exists() and not list(tmp_path.glob("blender_stylize_jobs/*/*"))


def test_preview_frame_renders_the_current_frame_alone_and_shows_it(addon, tmp_path):
    """Render > Stylize Animation's Preview Frame: the scene's current frame rendered alone and stylised (fast
    mode, keyframe by the network); the three preview images (preview, input, side by side) at the output size;
    nothing written at the output path; the scene's settings as they were; a frame outside the range refused."""
    from addon import job

    scene = shot_scene(tmp_path)
    s = scene.video_stylize
    s.mode, s.keyframe_method = "FAST", "FEEDFORWARD"
    scene.frame_current = 9
    with pytest.raises(
        RuntimeError,
        match=r"Frame 9 is not rendered by Render Animation \(frames 1-3\): move the "
        "playhead into the scene's frame range",
    ):
        with bpy.context.temp_override(scene=scene):
            bpy.ops.render.stylize_preview()
    inputs = {}
    for frame in (1, 3):
        scene.frame_current = frame
        before = settings_of(scene)
        with bpy.context.temp_override(scene=scene):
            assert bpy.ops.render.stylize_preview() == {"FINISHED"}
        assert settings_of(scene) == before
        done = current()
        assert done.summary == f"Previewed frame {frame} of scene 'shot'" and done.folder.name == "shot.render-preview"
        assert files(done.frames) == ["export.json", "frame_00001.exr"]  # this frame alone was rendered
        images = {kind: bpy.data.images[name] for kind, name in job.PREVIEW_IMAGES.items()}
        assert tuple(images["preview"].size) == (OUT_W, OUT_H) == tuple(images["input"].size)
        assert tuple(images["compare"].size) == (2 * OUT_W, OUT_H)
        inputs[frame] = cv2.imread(images["input"].filepath).astype(int)
    # the (dimly lit) cube crosses the view: its pixels' mean column moved, each preview rendered its own frame
    columns = {f: np.nonzero(img.max(axis=2) > 4)[1] for f, img in inputs.items()}
    assert min(len(c) for c in columns.values()) > 10 and abs(columns[1].mean() - columns[3].mean()) > 2
    assert not (tmp_path / "render").exists()  # nothing at the output path


def test_render_engine_without_the_vector_pass_uses_estimated_flow(addon, tmp_path):
    scene = shot_scene(tmp_path, frames=2)
    scene.render.engine = "BLENDER_WORKBENCH"
    assert stylize_animation(scene) == {"FINISHED"}
    job = current()
    assert any("(BLENDER_WORKBENCH) writes no Vector pass: using estimated optical flow" in w for w in job.warnings)
    command = (job.folder / "worker.log").read_text().splitlines()[0]
    assert "--flow" not in command.split("--jobs")[1]  # the preset's estimator
    assert files(tmp_path / "render") == ["shot_01.png", "shot_02.png"]


def test_moving_orthographic_camera_as_in_the_strip_path(addon, tmp_path):
    """Cycles 4.3-5.1 write a wrong Vector pass for a moving orthographic camera: estimated flow with a
    warning there; the Vector pass on 4.2 and 5.2 (tests/test_vector_check.py)."""
    from addon import job

    scene = shot_scene(tmp_path, frames=2, ortho=True)
    with bpy.context.temp_override(scene=scene):
        j = job.prepare_render(bpy.context)
    while j.phase != "stylize":  # the export decided
        assert j.step()
        time.sleep(0.05)
    command = j.process.cmd
    j.cancel()
    shown = " ".join(j.warnings)
    if compat.ORTHO_VECTOR_BROKEN:
        assert "vector" not in command and "orthographic camera 'cam' moves" in shown
    else:
        assert command[command.index("--flow") + 1] == "vector" and "orthographic" not in shown


def test_keyframes_are_frames_of_the_scene_range(addon, tmp_path):
    from addon import job, request

    scene = shot_scene(tmp_path, frames=5)
    scene.frame_start, scene.frame_step = 2, 2  # frames 2, 4
    s = scene.video_stylize
    item = s.keyframes.add()
    with bpy.context.temp_override(scene=scene):
        item.frame = 4
        j = job.prepare_render(bpy.context)
        j.cancel()
        assert j.options["keyframe"] == ["2"] and j.count == 2
        assert any("Frame step 2" in w for w in j.warnings)
        item.frame = 3
        with pytest.raises(
            request.JobError,
            match=r"Keyframe at frame 3 is outside the frame range of scene 'shot' "
            r"\(frames 2-4, step 2\)",
        ):
            job.prepare_render(bpy.context)


def test_output_panel_and_render_menu_draw(addon, monkeypatch):
    from addon import job, panel, status

    status.probe()
    monkeypatch.setattr(panel, "style_icon", lambda path: 0)
    job.current = None
    calls = []
    panel.RENDER_PT_stylize_animation.draw(
        SimpleNamespace(layout=FakeLayout(calls), draw_run=panel.RENDER_PT_stylize_animation.draw_run), bpy.context
    )
    props = [c[1][1] for c in calls if c[0] == "prop"]
    assert {"style_image", "mode", "preset", "output_folder", "overwrite_output", "add_to_sequencer"} <= set(props)
    assert [c[1][0] for c in calls if c[0] == "operator"] == ["render.stylize_animation", "render.stylize_preview"]
    entries = []

    class Menu:  # records the entry and the panel it opens
        class layout:
            separator = staticmethod(lambda: None)

            @staticmethod
            def operator(idname, **kwargs):
                entries.append((idname, kwargs))
                return SimpleNamespace()

    panel.render_menu(Menu, bpy.context)
    assert entries == [("wm.call_panel", {"text": "Stylize Animation…", "icon": "BRUSH_DATA"})]
    assert panel.render_menu in bpy.types.TOPBAR_MT_render._dyn_ui_initialize()
    assert bpy.types.RENDER_PT_stylize_animation.bl_context == "output"
