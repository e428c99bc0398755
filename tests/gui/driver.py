"""The Blender side of the real-window tests: ``blender --python driver.py -- SCENARIO`` (session.sh).

Each scenario is a generator run from a Blender timer, so Blender's own event loop runs between its
steps: it yields the seconds to wait, drives the window with real X input (``xdotool``: mouse
moves, clicks, keys), takes screenshots (ImageMagick's ``import -window root``) and records what
it saw in ``/gui/SCENARIO/result.json``, which ``test_gui.py`` asserts on the host. A button is
found as a user's eye would, by its place on screen: the mouse hovers each height of the
region and Blender's Copy Python Command (bound to Ctrl+Alt+Shift+C) tells which button is under it.
"""

import hashlib
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import bpy

SCENARIO = sys.argv[sys.argv.index("--") + 1]
OUT = Path("/gui") / SCENARIO
DATA = Path("/gui/data")
MODULE = "bl_ext.user_default.video_style_transfer"
SCREEN_W, SCREEN_H = map(int, os.environ["STYLIZE_GUI_SCREEN"].split("x"))
DEADLINE = 200  # seconds: the scenario fails (and Blender quits) after this
T0 = time.monotonic()
result = {
    "scenario": SCENARIO,
    "blender": bpy.app.version_string,
    "python": sys.version.split()[0],
    "steps": [],
    "screenshots": {},
}


def note(text):
    result["steps"].append([round(time.monotonic() - T0, 2), text])
    print(f"GUI {time.monotonic() - T0:6.1f}s {text}", flush=True)


def xdo(*args):
    subprocess.run(["xdotool", *map(str, args)], check=True)


def screenshot(name, region=None):
    """The whole screen as OUT/name.png; ``region``'s rectangle (screen pixels) recorded with it."""
    subprocess.run(["import", "-window", "root", str(OUT / f"{name}.png")], check=True)
    result["screenshots"][name] = rect(region) if region else None
    note(f"screenshot {name}")


def rect(region):
    """``region``'s [left, top, right, bottom] in screen pixels (Blender's origin is bottom left)."""
    return [region.x, SCREEN_H - region.y - region.height, region.x + region.width, SCREEN_H - region.y]


def addon():
    return sys.modules[MODULE]


def window():
    return bpy.context.window_manager.windows[0]


def area(kind):
    return next(a for a in window().screen.areas if a.type == kind)


def region(area_, kind):
    return next(r for r in area_.regions if r.type == kind)


def sidebar():
    return region(area("SEQUENCE_EDITOR"), "UI")


def column(fraction):
    """The screen column at ``fraction`` of the sidebar's width (Stylize and Preview Frame share a row)."""
    left, _top, right, _bottom = rect(sidebar())
    return left + round((right - left) * fraction)


def wait(condition, timeout, what, interval=0.1):
    """Yield until ``condition()`` is true; fails after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        yield interval


def find_button(where, command, step=12, x=None, span=None):
    """Screen position of the button in region ``where`` (or in ``span`` = (top, bottom) screen rows)
    whose Python command contains ``command``: the mouse hovers each height of a column and
    Ctrl+Alt+Shift+C (Copy Python Command, ``copy_command_key``) puts the command of the button under
    it on the clipboard."""
    wm = bpy.context.window_manager
    if where is not None:
        left, top, right, bottom = rect(where)
        x = (left + right) // 2 if x is None else x
        span = (top + 4, bottom - 4)
    seen = []
    for page in range(4 if where is not None else 1):  # then scroll the region down a page and look again
        if page:
            xdo("mousemove", x, (span[0] + span[1]) // 2, "click", "--repeat", "12", "--delay", "20", "5")
            yield 0.3
        for y in range(span[0], span[1], step):
            wm.clipboard = ""
            xdo("mousemove", x, y, "sleep", "0.03", "key", "ctrl+alt+shift+c")
            yield 0.04
            text = wm.clipboard
            if command in text:
                note(f"found {command} at {x},{y}")
                return x, y
            if text and text not in seen:
                seen.append(text)
    raise AssertionError(f"no button running {command} between rows {span} at x {x}; saw {seen}")


def screen_pixels():
    """The screen now: its width and its RGB bytes, row by row from the top."""
    path = "/tmp/screen.ppm"
    subprocess.run(["import", "-window", "root", "-depth", "8", f"PPM:{path}"], check=True)
    data = Path(path).read_bytes()
    _magic, width, rows = data.split(maxsplit=3)[:3]  # binary PPM: P6 W H 255, then W*H RGB bytes
    width, rows = int(width), int(rows)
    return width, data[-width * rows * 3 :]


def button_below(x, top, min_rows=20):
    """Screen position of the first button below row ``top`` in column ``x``: the first run of at least
    ``min_rows`` rows of one grey between the background's and the text's (a big button's face)."""
    width, pixels = screen_pixels()
    column = [pixels[(y * width + x) * 3] for y in range(SCREEN_H)]
    y = top
    while y < SCREEN_H:
        end = y
        while end + 1 < SCREEN_H and column[end + 1] == column[y]:
            end += 1
        if end - y + 1 >= min_rows and 60 <= column[y] <= 160:
            return x, (y + end) // 2
        y = end + 1
    raise AssertionError(f"no button below row {top} in column {x}")


def menu_title(name, titles=("File", "Edit", "Render", "Window", "Help")):
    """Screen position of the top bar's menu title ``name``, found as an eye finds it: the bright
    words of the bar's row, left to right, after Blender's logo (the top bar is one of the window's
    global areas, outside screen.areas, so no region gives its layout)."""
    height = round(26 * bpy.context.preferences.system.ui_scale)
    width, pixels = screen_pixels()
    w, h = 600, height
    bright = [any(max(pixels[(y * width + x) * 3 : (y * width + x) * 3 + 3]) > 150 for y in range(h)) for x in range(w)]
    words, x = [], 0
    while x < w:  # runs of bright columns, joined across gaps under 6 px (the letters of a word)
        if bright[x]:
            end = x
            while any(bright[end + 1 : end + 7]):
                end += 1 + bright[end + 1 : end + 7].index(True)
            words.append((x, end))
            x = end
        x += 1
    result["topbar_words"] = words
    left, right = words[1 + titles.index(name)]  # words[0] is the logo
    return (left + right) // 2, height // 2


def click(pos):
    xdo("mousemove", *pos, "sleep", "0.05", "click", "1")
    note(f"clicked {pos[0]},{pos[1]}")


class Ticker:
    """A timer firing every 0.1 s while the job runs: the gaps between its calls show whether the UI
    stayed responsive."""

    def __init__(self):
        self.times, self.running = [], True
        bpy.app.timers.register(self, first_interval=0.1)

    def __call__(self):
        if not self.running:
            return None
        self.times.append(time.monotonic())
        return 0.1

    def gaps(self):
        t = self.times
        return [b - a for a, b in zip(t, t[1:])]


def digest(folder):
    """sha1 of every file below ``folder`` (relative path -> digest)."""
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


def strips():
    sed = bpy.context.scene.sequence_editor
    if sed is None:
        return []
    return sorted([s.name, s.channel, s.type, getattr(s, "directory", "")] for s in addon().compat.strips_all(sed))


# -- set-up ------------------------------------------------------------------------------------------------------


def copy_command_key():
    """Blender's Copy Python Command (``ui.copy_python_command_button``) has no default key for
    operator buttons: bound to Ctrl+Alt+Shift+C in the add-on key configuration."""
    km = bpy.context.window_manager.keyconfigs.addon.keymaps.new("User Interface")
    km.keymap_items.new("ui.copy_python_command_button", "C", "PRESS", ctrl=True, alt=True, shift=True)


def setup(mode="QUALITY", strip=True, python=None):
    """The add-on's preferences as a user sets them (worker Python, a random narrow network), the
    Sequencer in the big area with its sidebar on the Stylize tab, the test clip as an image strip,
    and the file saved in OUT (the job folders go beside it)."""
    xdo("mousemove", SCREEN_W // 2, SCREEN_H // 2, "key", "Escape")  # the splash screen, if shown
    copy_command_key()
    bpy.context.preferences.use_preferences_save = False  # each scenario starts from the installed preferences
    yield 0.5
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.python = python or os.environ["STYLIZE_GUI_WORKER"]
    prefs.weights, prefs.device = "random:8", "cpu"
    scene = bpy.context.scene
    s = scene.video_stylize
    s.style_image = str(DATA / "style.png")
    s.mode, s.preset = mode, "draft"
    s.use_iterations = s.use_iterations_later = True
    s.iterations = s.iterations_later = 2
    s.use_scale, s.scale = True, 1.0
    big = max(window().screen.areas, key=lambda a: a.width * a.height)
    big.type = "SEQUENCE_EDITOR"
    big.spaces.active.view_type = "SEQUENCER"
    big.spaces.active.show_region_ui = True
    area("PROPERTIES").spaces.active.context = "OUTPUT"
    if strip:
        frames = sorted((DATA / "frames").glob("*.png"))
        sed = scene.sequence_editor_create()
        new = addon().compat.strips(sed).new_image("clip", str(frames[0]), 1, 1)
        for f in frames[1:]:
            new.elements.append(f.name)
        sed.active_strip = new
        new.select = True
        scene.frame_start, scene.frame_end = 1, len(frames)
        scene.render.resolution_x, scene.render.resolution_y = 128, 96
    bpy.ops.wm.save_as_mainfile(filepath=str(OUT / "project.blend"))
    yield 0.5
    sidebar().active_panel_category = "Stylize"
    area("SEQUENCE_EDITOR").tag_redraw()
    yield from wait(lambda: addon().status.probe(wait=False) is not None, 60, "the worker probe")
    probe = addon().status.probe(wait=False)
    result["probe"] = {k: probe.get(k) for k in ("torch", "feedforward", "error") if k in probe}
    yield 1.0  # the panels redraw with the probe
    result["category"] = sidebar().active_panel_category
    note("set up")


def current():
    return addon().job.current


def run_job(name, timeout=150):
    """Click the panel's Stylize button and follow the job to its end, with two screenshots of its
    progress and a ticker that measures the UI's responsiveness."""
    pos = yield from find_button(sidebar(), "sequencer.stylize_strip", x=column(0.3))
    click(pos)
    yield from wait(lambda: current() is not None and current().running, 15, "the job to start")
    ticker = Ticker()
    job = current()
    yield from wait(lambda: not job.running or 0.05 < job.fraction < 0.6, 60, "progress")
    seen = []
    if job.running:
        seen.append(job.fraction)
        screenshot(f"{name}-progress-1", sidebar())
        yield from wait(lambda: not job.running or job.fraction >= seen[0] + 0.15, 60, "more progress")
        if job.running:
            seen.append(job.fraction)
            screenshot(f"{name}-progress-2", sidebar())
    yield from wait(lambda: not job.running, timeout, "the job to end")
    gaps = ticker.gaps()
    ticker.running = False
    result[name] = {
        "state": job.state,
        "error": job.error,
        "fractions": seen,
        "ticks": len(gaps) + 1,
        "max_gap": round(max(gaps), 3) if gaps else None,
        "folder": str(job.folder),
    }
    note(f"{name}: {job.state} {job.error}")


# -- scenarios ---------------------------------------------------------------------------------------------------


def draw():
    """The sidebar and Output Properties draw (the log is checked for tracebacks on the host)."""
    yield from setup()
    result["button"] = yield from find_button(sidebar(), "sequencer.stylize_strip", x=column(0.3))
    screenshot("sidebar", sidebar())


def stylize():
    """A click on Stylize runs the job to the end; the new strip lies above the source."""
    yield from setup()
    before = strips()
    yield from run_job("run")
    yield 1.0
    screenshot("done", sidebar())
    result["strips_before"], result["strips_after"] = before, strips()
    result["frames"] = len(
        list(Path(bpy.path.abspath(bpy.context.scene.sequence_editor.active_strip.directory)).glob("*.png"))
    )


def cancel():
    """A finished job, then a changed one stopped with Esc: the source strip and the first output stay."""
    yield from setup()
    yield from run_job("first")
    first = Path(bpy.path.abspath(bpy.context.scene.sequence_editor.active_strip.directory))
    result["first_output"] = str(first)
    before, strips_before = digest(first), strips()
    s = bpy.context.scene.video_stylize
    s.use_strength, s.strength = True, 3.0  # another look: another job, slower (about 0.5 s a frame)
    s.iterations = s.iterations_later = 40
    sed = bpy.context.scene.sequence_editor
    sed.active_strip = addon().compat.strips_all(sed)["clip"]
    yield 0.5
    pos = yield from find_button(sidebar(), "sequencer.stylize_strip", x=column(0.3))
    click(pos)
    yield from wait(lambda: current().running and 0.05 < current().fraction < 0.5, 150, "the second job's progress")
    screenshot("second-running", sidebar())
    fraction = current().fraction
    xdo("key", "Escape")
    note(f"Esc at {fraction:.2f}")
    yield from wait(lambda: not current().running, 30, "the job to stop")
    yield 1.0
    screenshot("cancelled", sidebar())
    result["second"] = {"state": current().state, "fraction": fraction, "error": current().error}
    result["first_unchanged"] = digest(first) == before
    result["first_files"] = len(before)
    result["strips_unchanged"] = strips() == strips_before


def render():
    """Render > Stylize Animation…: the menu, its pop-up panel confirmed, frames at the output path."""
    yield from setup(strip=False)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 4
    scene.cycles.use_denoising = False  # Debian's Cycles is built without OpenImageDenoise
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 48, 100
    scene.frame_start, scene.frame_end = 1, 3
    scene.render.filepath = str(OUT / "render" / "shot_")
    bpy.data.objects["Cube"].location.x = 0.0
    bpy.data.objects["Cube"].keyframe_insert("location", frame=1)
    bpy.data.objects["Cube"].location.x = 0.5
    bpy.data.objects["Cube"].keyframe_insert("location", frame=3)
    bpy.ops.wm.save_mainfile()
    found = menu_title("Render")
    result["render_menu"] = found
    click(found)
    yield 0.7
    screenshot("render-menu")
    xdo("key", "Up")  # from the top of a menu, Up goes to its last item: Stylize Animation…
    yield 0.3
    screenshot("render-menu-item")
    xdo("key", "Return")
    yield 1.0
    screenshot("render-popup")
    # The pop-up opens under the mouse and closes at a key it does not know (Copy Python Command
    # included): its big button is found by its face in the mouse's column, the only one there
    pos = button_below(found[0], found[1] + 20)
    click(pos)
    yield from wait(lambda: current() is not None and current().running, 15, "the job to start")
    yield from wait(lambda: not current().running, 150, "the job to end")
    yield 0.5
    screenshot("render-done")
    result["render"] = {
        "state": current().state,
        "error": current().error,
        "files": sorted(p.name for p in (OUT / "render").glob("*")),
    }


def install():
    """Install PyTorch against a worker Python that cannot take packages (Debian's python3, PEP 668)."""
    bpy.context.preferences.system.use_online_access = True
    yield from setup(python="/usr/bin/python3")
    screenshot("no-torch", sidebar())
    pos = yield from find_button(sidebar(), "stylize.install_torch")
    click(pos)
    prefs = addon().preferences
    yield 0.5
    yield from wait(lambda: not prefs.INSTALL.running, 60, "the installer to end")
    yield 1.0
    screenshot("install-refused")
    info = area("DOPESHEET_EDITOR")  # the timeline: shown as the Info editor to read the reports
    info.type = "INFO"
    yield 0.3
    with bpy.context.temp_override(window=window(), area=info, region=region(info, "WINDOW")):
        bpy.ops.info.select_all(action="SELECT")
        bpy.ops.info.report_copy()
    result["reports"] = [line for line in bpy.context.window_manager.clipboard.splitlines() if line.strip()]
    result["install_lines"] = list(prefs.INSTALL.lines)
    result["site_packages"] = (
        sorted(p.name for p in Path(addon().status.site_packages()).glob("*"))
        if Path(addon().status.site_packages()).is_dir()
        else []
    )
    yield from wait(lambda: addon().status.probe(wait=False) is not None, 30, "the probe after the installer")
    screenshot("after-install", sidebar())


def preview():
    """Preview Frame in fast mode (keyframes by the network): the panel's input and preview thumbnails, the
    preview in an Image Editor (alone, then Side by Side), the time from the click to the image shown and a
    0.1 s timer's gaps meanwhile; then a 1920x1080 strip previewed at two frames (the warm engine's times)."""
    yield from setup(mode="FAST")
    scene = bpy.context.scene
    scene.frame_current = 5
    editor = area("PROPERTIES")
    editor.type = "IMAGE_EDITOR"  # where the preview shows full size
    yield 0.5
    seconds, ticker = yield from click_preview()
    yield 1.0
    screenshot("preview-panel", sidebar())
    editor = area("IMAGE_EDITOR")
    gaps = ticker.gaps()
    result["preview"] = {
        "state": current().state,
        "error": current().error,
        "seconds": round(seconds, 2),
        "timings": current().timings,
        "shown": getattr(editor.spaces.active.image, "name", None),
        "image": bpy.data.images["Stylize Preview"].filepath,
        "ticks": len(gaps) + 1,
        "max_gap": round(max(gaps), 3) if gaps else None,
        "strips": strips(),
    }
    with bpy.context.temp_override(window=window(), area=editor, region=region(editor, "WINDOW")):
        bpy.ops.image.view_all(fit_view=True)
    yield 0.5
    screenshot("preview-editor", region(editor, "WINDOW"))
    scene.video_stylize.preview_side_by_side = True  # the panel's Side by Side box (its update shows the comparison)
    yield 0.3
    with bpy.context.temp_override(window=window(), area=editor, region=region(editor, "WINDOW")):
        bpy.ops.image.view_all(fit_view=True)
    yield 0.5
    result["preview"]["side_by_side"] = {
        "shown": getattr(editor.spaces.active.image, "name", None),
        "image": bpy.data.images["Stylize Preview Compare"].filepath,
    }
    screenshot("preview-side-by-side", region(editor, "WINDOW"))
    # 1920x1080: the strip "hd" (the sequencer renders at the scene's size), previewed at two of its frames
    sed = scene.sequence_editor
    frames = sorted((DATA / "hd").glob("*.png"))
    hd = addon().compat.strips(sed).new_image("hd", str(frames[0]), 2, 30)
    for f in frames[1:]:
        hd.elements.append(f.name)
    sed.active_strip = hd
    scene.render.resolution_x, scene.render.resolution_y = 1920, 1080
    scene.video_stylize.preview_side_by_side = False
    result["preview"]["hd"] = []
    for frame in (30, 31):
        scene.frame_current = frame
        yield 0.5
        seconds, _ = yield from click_preview()
        result["preview"]["hd"].append(
            {
                "frame": frame,
                "state": current().state,
                "error": current().error,
                "seconds": round(seconds, 2),
                "timings": current().timings,
                "size": list(bpy.data.images["Stylize Preview"].size),
            }
        )
    yield 0.5
    screenshot("preview-hd", region(editor, "WINDOW"))


def click_preview():
    """Click Preview Frame; (seconds from the click to the image shown, the Ticker that ran meanwhile)."""
    before = current()
    pos = yield from find_button(sidebar(), "sequencer.stylize_preview", x=column(0.8))
    click(pos)
    clicked = time.monotonic()
    ticker = Ticker()
    yield from wait(lambda: current() not in (None, before) and not current().running, 60, "the preview", interval=0.05)
    ticker.running = False
    return time.monotonic() - clicked, ticker


SCENARIOS = {f.__name__: f for f in (draw, stylize, cancel, render, install, preview)}


def start():
    steps = SCENARIOS[SCENARIO]()

    def tick():
        try:
            if time.monotonic() - T0 > DEADLINE:
                raise AssertionError(f"the scenario took more than {DEADLINE} s")
            return next(steps)
        except StopIteration:
            result["ok"] = True
        except Exception:
            result["error"] = traceback.format_exc()
            print(result["error"], flush=True)
            try:
                screenshot("failure")
            except Exception:
                pass
        result["seconds"] = round(time.monotonic() - T0, 1)
        (OUT / "result.json").write_text(json.dumps(result, indent=1))
        bpy.ops.wm.quit_blender()
        return None

    bpy.app.timers.register(tick, first_interval=1.0)


start()
