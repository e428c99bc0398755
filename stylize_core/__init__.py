"""stylize_core: artistic style transfer for videos (Ruder, Dosovitskiy & Brox 2016).

Pure Python + torch + numpy + OpenCV; never imports bpy, so it can be vendored
into the Blender add-on. Run ``python -m stylize_core --help``.
"""

__version__ = "0.1.0"
