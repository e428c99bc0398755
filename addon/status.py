"""The worker's interpreter and environment, what it offers (probed once), and how to show that."""

import sys
import textwrap
from pathlib import Path

import bpy

from . import worker

ADDON = __package__


def prefs():
    """This add-on's preferences, or None when it is registered without being enabled."""
    addon = bpy.context.preferences.addons.get(ADDON)
    return addon.preferences if addon else None


def worker_python():
    """The interpreter that runs the engine: the preference, else Blender's own."""
    p = prefs()
    return bpy.path.abspath(p.python) if p and p.python else sys.executable


def site_packages():
    """Where "Install PyTorch" puts packages: the extension's user folder."""
    try:
        return bpy.utils.extension_path_user(ADDON, path="site-packages", create=True)
    except ValueError:  # a legacy add-on (development checkout), not an extension
        return bpy.utils.user_resource("CONFIG", path=f"{ADDON}/site-packages", create=True)


def worker_env(python):
    """Environment for ``python``: the engine, the installed torch, and with Blender's own
    interpreter also Blender's site folders (its numpy and the extension wheels)."""
    paths = [site_packages()]
    if worker.is_own_python(python):
        paths += [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]
    return worker.environment(paths)


def probe(wait=True):
    """What the worker interpreter offers (see ``worker.probe``); None while a background probe runs."""
    python = worker_python()
    return worker.cached_probe(python, worker_env(python), wait=wait)


def torch_problem(result):
    """Why the worker cannot run and how to fix it, or None if it can."""
    if "torch" in result and "error" not in result:
        return None
    python = worker_python()
    if "torch" not in result:
        return (
            f"PyTorch is missing for the worker Python ({python}). Fix: Preferences > Add-ons > "
            f"Video Style Transfer > Install PyTorch, or set Worker Python to an interpreter "
            f"that has torch. ({result.get('error', '')})"
        )
    return f"The worker Python ({python}) cannot load the engine: {result['error']}"


def draw_wrapped(layout, text, icon="NONE", width=48):
    """``text`` as labels of at most ``width`` characters, the first with ``icon``."""
    col = layout.column(align=True)
    for i, line in enumerate(textwrap.wrap(text, width) or [""]):
        col.label(text=line, icon=icon if i == 0 else "BLANK1")


def draw_worker(layout, width=48):
    """One line on the worker's state, or the problem and its fix. Returns the probe result."""
    result = probe(wait=False)
    if result is None:
        layout.label(text="Checking the worker's Python…", icon="TIME")
        _redraw_when_probed()
    elif problem := torch_problem(result):
        box = layout.box()
        draw_wrapped(box, problem, icon="ERROR", width=width)
        if "torch" not in result:
            box.operator("stylize.install_torch", icon="IMPORT")
    else:
        devices = ", ".join(["CPU"] + ["CUDA"] * result["cuda"] + ["Metal"] * result["mps"])
        layout.label(text=f"PyTorch {result['torch']} ({devices})", icon="CHECKMARK")
    return result


def _redraw_when_probed():
    if not bpy.app.timers.is_registered(_redraw_probed):
        bpy.app.timers.register(_redraw_probed, first_interval=0.5)


def stop_redraw_timer():
    """Unregister the redraw timer (the add-on is being disabled)."""
    if bpy.app.timers.is_registered(_redraw_probed):
        bpy.app.timers.unregister(_redraw_probed)


def _redraw_probed():
    """Timer: once the background probe is done, redraw the panels that show it."""
    if probe(wait=False) is None:
        return 0.5
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in {"SEQUENCE_EDITOR", "PREFERENCES"}:
                area.tag_redraw()
    return None
