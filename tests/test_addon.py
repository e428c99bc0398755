"""The Blender add-on (``addon/``) with bpy as a module, in background mode, driving the real engine.

Engine runs use a randomly initialised, 8x narrower VGG (``random:8``), the draft
preset and 2 iterations per frame on 64x48 clips, so each takes seconds.
"""
import os
import subprocess
import sys
import tempfile
import time
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
    p = bpy.context.preferences.addons["addon"].preferences
    p.weights, p.device = "random:8", "cpu"
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = W, H
    s = scene.video_stylize
    s.style_image = str(make_style(tmp_path / "style.png"))
    s.preset, s.iterations = "draft", 2
    yield mod
    from addon import job
    if job.current is not None:
        job.current.cancel()
        job.current = None
    from addon import worker
    worker.forget_probes()


# -- helpers ----------------------------------------------------------------------------------

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


def make_frames(folder, frames):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(frames):
        cv2.imwrite(str(folder / f"img_{i:03d}.png"), clip_frame(i))
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
    assert new.frame_final_start == source.frame_final_start
    assert new.frame_final_duration == source.frame_final_duration
    folder = Path(bpy.path.abspath(new.directory))
    files = [folder / e.filename for e in new.elements]
    assert len(files) == source.frame_final_duration
    assert all(f.is_file() for f in files)
    assert cv2.imread(str(files[0])).shape[:2] == (H, W)
    assert snapshot(source) == before
    return new, folder


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


def test_operator_pushes_undo():
    from addon.operators import SEQUENCER_OT_stylize_strip
    # Blender pushes the undo step itself when execute() or modal() returns FINISHED
    # (headless Blender has no window, so ed.undo cannot be exercised here).
    assert {"REGISTER", "UNDO"} <= SEQUENCER_OT_stylize_strip.bl_options


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
    from addon import panel, preferences, status
    status.probe()  # fill the cache: the panel never waits for it
    panel.style_icon(bpy.context.scene.video_stylize.style_image)
    (thumbnail,) = panel._previews.values()
    assert tuple(thumbnail.image_size) == (64, 64)
    monkeypatch.setattr(panel, "style_icon", lambda path: 1)  # background mode has no icon ids
    state = bpy.context.window_manager.video_stylize_job
    for running, error in ((False, ""), (True, ""), (False, "Something failed")):
        state.running, state.error, state.progress = running, error, 0.5
        calls = []
        fake = SimpleNamespace(layout=FakeLayout(calls), draw_run=panel.SEQUENCER_PT_stylize.draw_run)
        panel.SEQUENCER_PT_stylize.draw(fake, bpy.context)
        names = [c[0] for c in calls]
        assert ("progress" in names) == running
        assert "template_icon" in names  # the style image's thumbnail
        ops = [c[1][0] for c in calls if c[0] == "operator"]
        assert ops == (["sequencer.stylize_cancel"] if running else ["sequencer.stylize_strip"])
        labels = " ".join(c[2].get("text", "") for c in calls if c[0] == "label")
        assert "PyTorch" in labels and (not error or error in labels)

    prefs = bpy.context.preferences.addons["addon"].preferences
    calls = []

    class Proxy:  # the preferences object with a recording layout
        layout = FakeLayout(calls)

        def __getattr__(self, name):
            return getattr(prefs, name)
    preferences.StylizePreferences.draw(Proxy(), bpy.context)
    labels = " ".join(c[2].get("text", "") for c in calls if c[0] == "label")
    assert "--target" in labels and "https://download.pytorch.org/whl/cpu" in labels


def test_build_validate_install_and_run(blender, tmp_path, monkeypatch):
    """build_addon.py --no-wheels -> a zip Blender's tool validates, installs, enables and runs."""
    done = subprocess.run([sys.executable, str(ROOT / "build_addon.py"), "--no-wheels", "--dist", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success parsing TOML" in done.stdout  # Blender's validate
    (zip_path,) = tmp_path.glob("video_style_transfer-*.zip")
    names = zipfile.ZipFile(zip_path).namelist()
    assert "blender_manifest.toml" in names and "vendor/stylize_core/cli.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]

    module = "bl_ext.user_default.video_style_transfer"
    assert bpy.ops.extensions.package_install_files(
        filepath=str(zip_path), repo="user_default", enable_on_install=True, overwrite=True) == {"FINISHED"}
    try:
        assert module in bpy.context.preferences.addons
        installed = sys.modules[module]
        assert installed.worker.engine_root().name == "vendor"
        p = bpy.context.preferences.addons[module].preferences
        p.weights, p.device = "random:8", "cpu"
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        scene = bpy.context.scene
        scene.render.resolution_x, scene.render.resolution_y = W, H
        scene.video_stylize.style_image = str(make_style(tmp_path / "style.png"))
        scene.video_stylize.preset, scene.video_stylize.iterations = "draft", 2
        sed = scene.sequence_editor_create()
        src = image_strip(sed, "pics", make_frames(tmp_path / "pics", 2), 1, 1)
        before = snapshot(src)
        assert stylize(strip="pics") == {"FINISHED"}
        check_result(sed, src, before, channel=2)
    finally:
        addon_utils.disable(module, default_set=True)


# -- stylising the three kinds of strip -------------------------------------------------------

def test_movie_strip(addon, tmp_path):
    scene = bpy.context.scene
    sed = scene.sequence_editor_create()
    movie = compat.strips(sed).new_movie("clip", str(make_movie(tmp_path / "clip.mp4")), 2, 5)
    movie.frame_offset_start, movie.frame_offset_end = 1, 1  # visible: movie frames 1..4 at 6..9
    pics = make_frames(tmp_path / "pics", 2)
    image_strip(sed, "busy", pics, 3, 8)    # overlaps the range on channel 3
    image_strip(sed, "later", pics, 4, 20)  # channel 4 is free over the range
    sed.active_strip = movie
    before = snapshot(movie)
    assert (movie.frame_final_start, movie.frame_final_duration) == (6, 4)

    assert stylize() == {"FINISHED"}
    new, out = check_result(sed, movie, before, channel=4)
    # The export respected the trim: the first exported frame is the movie's frame 1.
    exported = cv2.imread(str(out.parent / "frames" / "frame_00001.png")).astype(int)
    errors = [np.abs(exported - clip_frame(i)).mean() for i in range(6)]
    assert int(np.argmin(errors)) == 1 and errors[1] < 4
    assert strip_names(sed) == ["busy", "clip", "clip (stylized)", "later"]
    assert len(bpy.data.scenes) == 1  # the export's temporary scene is gone


@pytest.mark.skipif(bpy.app.version < (5, 0, 0), reason="bpy 4.x cannot size a meta strip from Python: "
                    "move_to_meta() keeps the meta's one-frame content range")
def test_export_isolates_a_strip_inside_a_meta(addon, tmp_path):
    """Covering strips are muted, the muted channel of the meta is unmuted, only in a temporary copy."""
    from addon import export, importer
    scene = bpy.context.scene
    sed = scene.sequence_editor_create()
    movie = compat.strips(sed).new_movie("clip", str(make_movie(tmp_path / "clip.mp4")), 1, 1)
    effect_strip(sed, "cover", "COLOR", 3, 1, 10)
    meta = compat.strips(sed).new_meta("meta", 2, 1)
    movie.move_to_meta(meta)
    meta.frame_final_end = 7
    sed.channels[2].mute = True
    before = {s.name: snapshot(s) for s in compat.strips_all(sed)}
    assert export.SequencerExport(scene.name, "clip", tmp_path / "frames", 6).step()
    for i in range(6):
        exported = cv2.imread(str(tmp_path / "frames" / f"frame_{i + 1:05d}.png")).astype(int)
        assert np.abs(exported - clip_frame(i)).mean() < 4
    assert {s.name: snapshot(s) for s in compat.strips_all(sed)} == before and sed.channels[2].mute
    assert len(bpy.data.scenes) == 1
    assert importer.container(sed, movie) == compat.strips(meta)
    assert importer.free_channel(compat.strips(meta), movie.channel, 1, 7) == 2


def test_image_sequence_by_name_in_saved_file(addon, tmp_path):
    """The headless path: a saved .blend, the strip named, job folder beside the file."""
    scene = bpy.context.scene
    sed = scene.sequence_editor_create()
    src = image_strip(sed, "pics", make_frames(tmp_path / "pics", 4), 1, 10)
    src.frame_offset_start = 1
    other = image_strip(sed, "other", make_frames(tmp_path / "other", 2), 1, 30)
    sed.active_strip = other
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "edit.blend"))
    sed = bpy.context.scene.sequence_editor
    src = compat.strips_all(sed)["pics"]
    before = snapshot(src)

    assert stylize(strip="pics") == {"FINISHED"}
    new, out = check_result(sed, src, before, channel=2)
    assert new.directory.startswith("//stylize_jobs/pics_")
    assert out.parent.parent == tmp_path / "stylize_jobs"
    assert (out.parent / "worker.log").is_file()


def make_cycles_scene(name, frames=8):
    """A tiny Cycles scene: a cube moving across the camera's view."""
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
    scene.collection.objects.link(cam)
    scene.camera = cam
    scene.collection.objects.link(bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN")))
    return scene


def test_scene_strip_uses_vector_pass(addon):
    shot = make_cycles_scene("shot")
    render_before = (snapshot(shot.render), snapshot(shot.render.image_settings),
                     snapshot(shot.view_layers[0]), shot.frame_current, shot.camera)
    sed = bpy.context.scene.sequence_editor_create()
    strip = compat.strips(sed).new_scene("shot", shot, 1, 3)
    strip.frame_offset_start, strip.frame_final_duration = 2, 4  # shot frames 3..6 at 5..8
    sed.active_strip = strip
    before = snapshot(strip)

    assert stylize() == {"FINISHED"}
    new, out = check_result(sed, strip, before, channel=2)
    frames = sorted((out.parent / "frames").glob("frame_*"))
    assert [f.name for f in frames] == [f"frame_{i:05d}.exr" for i in range(1, 5)]
    assert "--flow vector" in (out.parent / "worker.log").read_text()
    assert (snapshot(shot.render), snapshot(shot.render.image_settings), snapshot(shot.view_layers[0]),
            shot.frame_current, shot.camera) == render_before


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
    unsupported = [(effect_strip(sed, "flat", "COLOR", 2, 1, 10), "color"),
                   (effect_strip(sed, "title", "TEXT", 3, 1, 10), "text")]
    try:
        unsupported.append((compat.strips(sed).new_sound("beep", str(make_wav(tmp_path / "beep.wav")), 1, 1),
                            "sound"))
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
    assert "Style image not found" in bpy.context.window_manager.video_stylize_job.error


def test_missing_torch_says_how_to_fix(addon, tmp_path):
    no_torch = fake_python(tmp_path / "python-without-torch", (
        "import runpy, sys\n"
        "sys.modules['torch'] = None  # 'import torch' fails as if it were not installed\n"
        "module, sys.argv = sys.argv[2], sys.argv[2:]  # called as: python -m MODULE ARGS\n"
        "runpy.run_module(module, run_name='__main__', alter_sys=True)\n"))
    bpy.context.preferences.addons["addon"].preferences.python = no_torch
    sed = bpy.context.scene.sequence_editor_create()
    sed.active_strip = image_strip(sed, "pics", make_frames(tmp_path / "pics", 2), 1, 1)
    with pytest.raises(RuntimeError, match=r"PyTorch is missing for the worker Python .*Install PyTorch.*import of torch halted"):
        stylize()
    assert strip_names(sed) == ["pics"]


def test_install_torch_runs_pip_for_the_worker_python(addon, tmp_path):
    from addon import preferences, status
    fake = fake_python(tmp_path / "python-with-fake-pip", (
        "import sys\n"
        "print('args:', ' '.join(sys.argv[1:]))\n"
        "print('Successfully installed torch')\n"))
    bpy.context.preferences.addons["addon"].preferences.python = fake
    bpy.context.preferences.system.use_online_access = False
    with pytest.raises(RuntimeError, match="Allow Online Access"):
        bpy.ops.stylize.install_torch()
    bpy.context.preferences.system.use_online_access = True
    assert bpy.ops.stylize.install_torch() == {"FINISHED"}
    assert list(preferences.INSTALL.lines) == [
        f"args: -m pip install --upgrade --target {status.site_packages()} "
        "--index-url https://download.pytorch.org/whl/cpu torch", "Successfully installed torch"]
    assert "Successfully installed torch" in Path(preferences.INSTALL.log_path).read_text()


def test_engine_error_is_reported(addon, tmp_path):
    (tmp_path / "not-an-image.png").write_text("hello")
    bpy.context.scene.video_stylize.style_image = str(tmp_path / "not-an-image.png")
    sed = bpy.context.scene.sequence_editor_create()
    sed.active_strip = image_strip(sed, "pics", make_frames(tmp_path / "pics", 2), 1, 1)
    with pytest.raises(RuntimeError, match=r"Stylization failed \(.*style.*\)\. Log: .*worker\.log"):
        stylize()
    assert strip_names(sed) == ["pics"]


def test_crash_keeps_frames_and_the_next_run_resumes(addon, tmp_path):
    crashing = fake_python(tmp_path / "python-crashing", (
        "import os, subprocess, sys\n"
        f"REAL = {sys.executable!r}\n"
        "if sys.argv[1] != '-m':\n"
        "    os.execv(REAL, [REAL] + sys.argv[1:])\n"
        "engine = subprocess.Popen([REAL] + sys.argv[1:], stdout=subprocess.PIPE, text=True)\n"
        "for line in engine.stdout:\n"
        "    sys.stdout.write(line)\n"
        "    sys.stdout.flush()\n"
        "    if '\"event\": \"frame\"' in line:\n"
        "        engine.kill()\n"
        "        print('simulated crash after the first frame', file=sys.stderr)\n"
        "        sys.exit(1)\n"))
    prefs = bpy.context.preferences.addons["addon"].preferences
    prefs.python = crashing
    sed = bpy.context.scene.sequence_editor_create()
    src = image_strip(sed, "pics", make_frames(tmp_path / "pics", 3), 1, 1)
    sed.active_strip = src
    with pytest.raises(RuntimeError, match=r"Stylization failed \(exit code 1\)\. Log: .*worker\.log"):
        stylize()
    assert strip_names(sed) == ["pics"]
    from addon import job
    folder = job.current.folder
    assert "simulated crash" in (folder / "worker.log").read_text()
    first = folder / "out" / "frame_00001.png"
    mtime = first.stat().st_mtime_ns
    assert not (folder / "out" / "frame_00003.png").exists()

    prefs.python = ""  # Blender's own Python: the job resumes in the same folder
    before = snapshot(src)
    assert stylize() == {"FINISHED"}
    assert job.current.folder == folder and job.current.resume
    assert first.stat().st_mtime_ns == mtime
    check_result(sed, src, before, channel=2)


def test_cancel_and_second_run_refused(addon, tmp_path):
    from addon import job
    sed = bpy.context.scene.sequence_editor_create()
    sed.active_strip = image_strip(sed, "pics", make_frames(tmp_path / "pics", 3), 1, 1)
    running = job.prepare(bpy.context)
    while running.process is None:  # export, then the worker starts
        assert running.step()
    with pytest.raises(RuntimeError, match="already running"):
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
    wm = SimpleNamespace(video_stylize_job=bpy.context.window_manager.video_stylize_job, windows=[],
                         event_timer_remove=lambda timer: reports.append(("timer removed", timer)))
    context = SimpleNamespace(window_manager=wm)
    op = SimpleNamespace(timer="T", report=lambda kind, text: reports.append((kind, text)))
    op.finish = lambda ctx, j: op_type.finish(op, ctx, j)
    timer, esc = SimpleNamespace(type="TIMER", value="NOTHING"), SimpleNamespace(type="ESC", value="PRESS")

    op.job = job.prepare(bpy.context)
    assert op_type.modal(op, context, SimpleNamespace(type="MOUSEMOVE", value="NOTHING")) == {"PASS_THROUGH"}
    stages = set()
    while (result := op_type.modal(op, context, timer)) == {"PASS_THROUGH"}:
        stages.add(wm.video_stylize_job.stage)
        time.sleep(0.05)
    assert result == {"FINISHED"} and not wm.video_stylize_job.running
    assert "Stylizing" in stages and wm.video_stylize_job.progress == 1
    assert reports[0] == ("timer removed", "T") and reports[1][0] == {"INFO"}
    check_result(sed, src, before, channel=2)

    sed.active_strip = src
    op.job = job.prepare(bpy.context)
    while op.job.process is None:
        assert op_type.modal(op, context, timer) == {"PASS_THROUGH"}
    assert op_type.modal(op, context, esc) == {"CANCELLED"}
    assert op.job.process.returncode is not None and reports[-1][0] == {"WARNING"}
    assert strip_names(sed) == ["pics", "pics (stylized)"]


def test_progress_events_drive_the_bar(addon, tmp_path):
    from addon import job
    sed = bpy.context.scene.sequence_editor_create()
    sed.active_strip = image_strip(sed, "pics", make_frames(tmp_path / "pics", 2), 1, 1)
    j = job.prepare(bpy.context)
    j._on_event({"event": "start", "frames": 4, "passes": 2, "width": W, "height": H, "skipped": 0})
    assert j.stage == "Stylizing"
    j._on_event({"event": "progress", "frame": 3, "frames": 4, "pass": 2, "passes": 2,
                 "iteration": 5, "iterations": 10, "loss": 1.0, "seconds": 1.0, "eta": 75.0})
    assert j.fraction == pytest.approx((4 + 2 + 0.5) / 8)
    assert j.detail == "Frame 3/4, pass 2/2, 1m 15s left"
    j._on_event({"event": "error", "message": "out of memory"})
    assert j.engine_error == "out of memory"
    assert job.format_seconds(3725) == "1h 02m" and job.format_seconds(9) == "9s"
    j.cancel()


# -- the bpy-free worker module ---------------------------------------------------------------

def test_worker_process_and_events(tmp_path):
    from addon import worker
    script = ("import sys, time\n"
              "print('{\"event\": \"start\", \"frames\": 2}')\n"
              "print('not json')\n"
              "print('to the log', file=sys.stderr)\n")
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

    cmd = worker.engine_command("py", "in", "s.png", "out", {"preset": "draft", "preserve-colors": True,
                                                            "restart": False, "scale": None})
    assert cmd == ["py", "-m", "stylize_core", "stylize", "in", "--style", "s.png", "--out", "out",
                   "--preset", "draft", "--preserve-colors", "--progress", "json"]
