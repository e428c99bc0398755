"""The add-on in a real Blender window: Debian's Blender (4.3.2 on Python 3.13, 5.2.2 on Python 3.14)
under Xvfb, the zip installed with Blender's own installer, driven by real X input (``driver.py``).

Run by ``./dev test-gui VERSION`` (as root: the chroot and its mounts), which sets
``STYLIZE_GUI_BLENDER``. Screenshots, Blender's log and each scenario's ``result.json`` are kept
in ``out/gui/VERSION/SCENARIO/``. The engine runs with a random narrow VGG (``random:8``), the
draft preset and 2 iterations on a 24-frame 128x96 clip, so a job takes seconds.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import harness

VERSION = os.environ["STYLIZE_GUI_BLENDER"]
OUT = harness.ROOT / "out" / "gui" / VERSION
WORKER = Path(os.environ.get("STYLIZE_TEST_WORKER_PYTHON", sys.executable)).absolute()
FRAMES = 24


@pytest.fixture(scope="module")
def gui():
    """The chroot (built or reused), a fresh output folder with the freshly built zip and the test clip."""
    start = time.monotonic()
    root = harness.chroot(VERSION)
    built = time.monotonic() - start
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "data" / "frames").mkdir(parents=True)
    done = subprocess.run(
        [sys.executable, str(harness.ROOT / "build_addon.py"), "--dist", str(OUT / "dist")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (zip_path,) = (OUT / "dist").glob("*.zip")
    shutil.copy2(zip_path, OUT / "addon.zip")
    rng = np.random.default_rng(0)
    cv2.imwrite(str(OUT / "data" / "style.png"), cv2.resize((rng.random((8, 8, 3)) * 255).astype(np.uint8), (128, 128)))
    for i in range(FRAMES):
        img = np.zeros((96, 128, 3), np.uint8)
        img[:] = (8 * i, 100, 200)
        cv2.rectangle(img, (5 + 3 * i, 20), (40 + 3 * i, 60), (255, 255, 255), -1)
        cv2.imwrite(str(OUT / "data" / "frames" / f"img_{i:03d}.png"), img)
    (OUT / "data" / "hd").mkdir()
    for i in range(2):  # 1920x1080 for Preview Frame's timing
        img = cv2.resize(cv2.imread(str(OUT / "data" / "frames" / f"img_{4 * i:03d}.png")), (1920, 1080))
        cv2.imwrite(
            str(OUT / "data" / "hd" / f"hd_{i:03d}.png"),
            cv2.add(cv2.GaussianBlur(img, (0, 0), 2), (rng.random((1080, 1920, 3)) * 30).astype(np.uint8)),
        )
    print(f"\nBlender {VERSION}: {harness.blender_version(root)}, chroot ready in {built:.1f} s")
    return root


def run(gui, scenario):
    """Run ``scenario`` in a fresh Blender; its result, after checking that it ended well and that
    Blender's log holds no Python error."""
    start = time.monotonic()
    done = harness.run_session(gui, OUT, scenario, WORKER)
    took = time.monotonic() - start
    folder = OUT / scenario
    log = (folder / "blender.log").read_text(errors="replace") if (folder / "blender.log").exists() else ""
    assert (folder / "result.json").exists(), f"no result (exit {done.returncode}):\n{done.stdout}\n{log[-3000:]}"
    result = json.loads((folder / "result.json").read_text())
    print(f"{scenario}: {took:.1f} s in all, {result.get('seconds')} s in Blender; {result['steps']}")
    assert result.get("ok"), result.get("error")
    problems = [line for line in log.splitlines() if "Traceback" in line or line.startswith(("Error", "ERROR"))]
    assert not problems, log[-3000:]
    assert result["blender"].startswith(VERSION + ".") and done.returncode == 0, done.stdout
    return result


def screenshot(scenario, name):
    path = OUT / scenario / f"{name}.png"
    image = cv2.imread(str(path))
    assert image is not None and image.shape[:2] == harness.SCREEN[::-1], path
    return image


def test_installs_and_the_panels_draw(gui):
    result = run(gui, "draw")
    installed = (OUT / "home" / "installed").read_text()
    print(installed.strip())
    assert result["python"].startswith({"4.3": "3.13.", "5.2": "3.14."}[VERSION])
    assert result["category"] == "Stylize" and result["probe"]["torch"].startswith("2.")
    left, top, right, bottom = result["screenshots"]["sidebar"]
    x, y = result["button"]  # the Stylize button lies in the sidebar, found under the mouse
    assert left <= x <= right and top <= y <= bottom
    panel = screenshot("draw", "sidebar")[top:bottom, left:right]
    assert panel.std() > 20  # drawn: text and the style thumbnail, not an empty region


def test_a_click_runs_the_job_and_the_ui_stays_responsive(gui):
    result = run(gui, "stylize")
    job = result["run"]
    assert job["state"] == "done" and not job["error"]
    first, second = job["fractions"]
    assert 0 < first < second < 1  # progress seen twice while it ran
    left, top, right, bottom = result["screenshots"]["run-progress-1"]
    a = screenshot("stylize", "run-progress-1")[top:bottom, left:right].astype(int)
    b = screenshot("stylize", "run-progress-2")[top:bottom, left:right].astype(int)
    assert (np.abs(a - b).max(axis=2) > 30).sum() > 200  # the bar moved on screen
    assert job["ticks"] >= 10 and job["max_gap"] < 1.0  # a 0.1 s timer kept firing
    source, new = sorted(result["strips_after"], key=lambda s: s[1])
    assert result["strips_before"] == [source] and source[:3] == ["clip", 1, "IMAGE"]
    assert new[:3] == ["clip (stylized)", 2, "IMAGE"] and result["frames"] == FRAMES


def test_esc_stops_a_job_and_keeps_the_source_and_earlier_output(gui):
    result = run(gui, "cancel")
    assert result["first"]["state"] == "done"
    second = result["second"]
    assert second["state"] == "cancelled" and not second["error"] and second["fraction"] < 1
    assert result["first_unchanged"] and result["first_files"] >= FRAMES and result["strips_unchanged"]


def test_render_menu_popup_writes_the_frames(gui):
    result = run(gui, "render")
    render = result["render"]
    assert render["state"] == "done" and not render["error"], render
    assert render["files"] == ["shot_0001.png", "shot_0002.png", "shot_0003.png"]
    frame = cv2.imread(str(OUT / "render" / "render" / "shot_0002.png"))
    assert frame.shape == (48, 64, 3) and frame.std() > 1
    screenshot("render", "render-popup")


def test_install_pytorch_for_a_system_python_is_one_clear_message(gui):
    result = run(gui, "install")
    assert "No module named 'numpy'" in result["probe"]["error"]  # Debian's python3: not a worker
    errors = [r for r in result["reports"] if "pip" in r]
    assert len(errors) == 1 and "is a system Python without pip (PEP 668)" in errors[0], result["reports"]
    assert "install python3-venv first" in errors[0] and "~" not in errors[0]
    assert "-m venv" in errors[0] and result["install_lines"] == [] and result["site_packages"] == []


def test_preview_frame_shows_the_frame_in_the_panel_and_an_image_editor(gui):
    result = run(gui, "preview")
    preview = result["preview"]
    assert preview["state"] == "done" and not preview["error"], preview
    assert preview["shown"] == "Stylize Preview" and [s[0] for s in preview["strips"]] == ["clip"]
    print(f"preview: {preview['seconds']} s from the click to the image ({preview['timings']})")
    left, top, right, bottom = result["screenshots"]["preview-editor"]
    editor = screenshot("preview", "preview-editor")[top:bottom, left:right]
    assert editor.std() > 20  # the stylised frame fills the editor, not its empty grey
    image = cv2.imread(str(OUT / "preview" / Path(preview["image"]).relative_to("/gui/preview")))
    left, top, right, bottom = result["screenshots"]["preview-panel"]
    assert shown_at(screenshot("preview", "preview-panel")[top:bottom, left:right], image) > 0.8  # its thumbnail
    assert preview["ticks"] >= 5 and preview["max_gap"] < 1.0, preview  # a 0.1 s timer kept firing
    # Side by Side: the Image Editor shows the input and the preview side by side
    side = preview["side_by_side"]
    assert side["shown"] == "Stylize Preview Compare"
    compare = cv2.imread(str(OUT / "preview" / Path(side["image"]).relative_to("/gui/preview")))
    assert compare.shape[1] == 2 * image.shape[1] and np.array_equal(compare[:, image.shape[1] :], image)
    left, top, right, bottom = result["screenshots"]["preview-side-by-side"]
    assert (
        shown_at(screenshot("preview", "preview-side-by-side")[top:bottom, left:right], compare, range(200, 1200, 20))
        > 0.8
    )
    for hd in preview["hd"]:  # 1920x1080, the second with the engine warm: reported (the target is <= 3 s)
        assert hd["state"] == "done" and not hd["error"] and hd["size"] == [1920, 1080], hd
        print(f"preview 1920x1080, frame {hd['frame']}: {hd['seconds']} s from the click ({hd['timings']})")


def shown_at(screen, image, widths=range(40, 200, 4)):
    """How well ``image`` appears somewhere in ``screen`` at one of ``widths`` (best normalised correlation)."""
    best = 0.0
    for width in widths:
        small = cv2.resize(image, (width, round(width * image.shape[0] / image.shape[1])), interpolation=cv2.INTER_AREA)
        if small.shape[0] < screen.shape[0] and small.shape[1] < screen.shape[1]:
            best = max(best, float(cv2.matchTemplate(screen, small, cv2.TM_CCOEFF_NORMED).max()))
    return best
