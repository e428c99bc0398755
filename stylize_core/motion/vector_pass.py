"""Blender's Vector render pass -> optical flows in our convention (see ``warp.py``).

The pass has four channels ``<view layer>.Vector.X/Y/Z/W`` in pixels of the
rendered resolution, with Blender's y axis pointing *up*; OpenEXR rows are
stored top-down, so row 0 is the top of the image. For the pixel ``p`` of frame
t (measured with Cycles in Blender 5.0 by ``tests/test_vector_pass.py``):

- ``X, Y`` = position in frame t-1 minus position in frame t (points *to the
  previous frame*), so ``flow t -> t-1 = (X, -Y)``;
- ``Z, W`` = position in frame t minus position in frame t+1 (points *from the
  next frame to this one*), so ``flow t -> t+1 = (-Z, W)``.

Render with motion blur *off*: with it on, Cycles 5.0 writes an all-zero pass.
Known limitation: Cycles 5.0 writes wrong vectors for a *moving orthographic*
camera (a spurious zoom field that depends on the camera's distance); 4.2.0 and
5.2.3 write them right (``tests/test_vector_check.py``). Perspective cameras and moving objects
seen by a static orthographic camera are correct. ``vector_check.py`` checks every
frame pair against the rendered frames, whatever the version.
``vector_check.py`` detects such pairs and the engine uses estimated flow there.
"""

import numpy as np

from ..errors import StylizeError
from ..io import exr


def read_vector(path):
    """The Vector pass of ``path`` as ``(H, W, 4)`` float32 ``(X, Y, Z, W)``."""
    names = exr.find_pass(set(exr.channel_names(path)), "Vector", "XYZW")
    if names is None:
        raise StylizeError(
            f"{path}: no Vector pass (enable View Layer > Passes > Data > Vector and save as multilayer OpenEXR)"
        )
    return np.stack(exr.read_channels(path, names), axis=-1)


def vector_to_flows(vector):
    """``(H, W, 4)`` Vector pass -> ``(flow t->t-1, flow t->t+1)``, each ``(H, W, 2)`` float32."""
    x, y, z, w = np.moveaxis(np.asarray(vector, np.float32), -1, 0)
    return np.stack((x, -y), axis=-1), np.stack((-z, w), axis=-1)


def read_flows(path):
    """``(flow t->t-1, flow t->t+1)`` for the frame rendered to ``path``."""
    return vector_to_flows(read_vector(path))
