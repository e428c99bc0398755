"""The engine's own tables in Blender's Python: ``settings`` (the choices the panel offers: presets, modes,
keyframe methods, flows, the Cryptomatte layer) and ``jobdir`` (the file names of a job folder), read from the
vendored ``stylize_core`` package (``worker.engine_root()``) when the add-on is imported, i.e. at register time.
No bpy in here.

Only these two modules run here, and they import the standard library and the engine's ``errors`` alone: never
torch, numpy or OpenCV (the engine itself runs in the worker's interpreter). The package is loaded by its file
location under a private name (``PACKAGE``), so that it is neither found as nor mistaken for a ``stylize_core``
that Blender's Python may have installed, and its modules' relative imports (``from .errors import ...``) work.
"""

import importlib
import importlib.util
import sys

from . import worker

PACKAGE = __package__ + "._engine"  # the vendored package's name in ``sys.modules``
JOBDIR = "io.jobdir"  # the job folder's names: that module of the package


def package():
    """The vendored engine package, its ``__init__`` (a docstring and a version) run once, under ``PACKAGE``."""
    if PACKAGE in sys.modules:
        return sys.modules[PACKAGE]
    folder = worker.engine_root() / worker.ENGINE
    spec = importlib.util.spec_from_file_location(
        PACKAGE, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[PACKAGE]
        raise
    return module


def load(name):
    """The engine module ``name`` (dotted, relative to the package), e.g. ``settings``."""
    package()
    return importlib.import_module(f"{PACKAGE}.{name}")


settings = load("settings")
jobdir = load(JOBDIR)


def is_frame(name, suffixes=(".png", ".exr")):
    """True if ``name`` is a frame file's name as the engine spells it (``jobdir.frame_name``), with one of
    ``suffixes`` (the export's frames, mattes and alphas)."""
    return any(jobdir.frame_index(name, suffix) is not None for suffix in suffixes)


def choices(table, upper=True):
    """An EnumProperty's items from an engine table of (value, label, description): the identifier is the value
    (in upper case with ``upper``)."""
    return [(value.upper() if upper else value, label, description) for value, label, description in table]


def engine_value(identifier):
    """The engine's value of an enum identifier ``choices`` made with ``upper``."""
    return identifier.lower()
