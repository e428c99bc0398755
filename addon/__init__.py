# SPDX-License-Identifier: GPL-3.0-or-later
"""Video Style Transfer: artistic style transfer for sequencer strips and render animations (Ruder et al. 2016).

A thin Blender layer around the ``stylize_core`` engine, which runs in a separate
Python process (``worker.py``); package metadata is in ``blender_manifest.toml``.

Headless, with the extension enabled, the sidebar's button is one operator call
(the settings come from the strip's scene, ``scene.video_stylize``)::

    blender -b edit.blend --python-exit-code 1 --python-expr "import bpy; \\
        bpy.ops.sequencer.stylize_strip(strip='Shot 1'); bpy.ops.wm.save_mainfile()"

and Render > Stylize Animation… is ``bpy.ops.render.stylize_animation()`` on the active scene.
"""

from . import operators, panel, preferences, properties

modules = (properties, preferences, operators, panel)


def register():
    for module in modules:
        module.register()


def unregister():
    for module in reversed(modules):
        module.unregister()
