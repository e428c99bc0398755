# SPDX-License-Identifier: GPL-3.0-or-later
"""Video Style Transfer: artistic style transfer for sequencer strips (Ruder et al. 2016).

The add-on is a thin Blender layer around the ``stylize_core`` engine, which runs
in a separate Python process (see ``worker.py``); package metadata is in
``blender_manifest.toml``.
"""
from . import operators, panel, preferences, properties

modules = (properties, preferences, operators, panel)


def register():
    for module in modules:
        module.register()


def unregister():
    for module in reversed(modules):
        module.unregister()
