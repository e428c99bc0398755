"""Motion between frames: optical flow (estimated, cached, or from Blender's Vector pass: ``flow``,
``vector_pass``, ``vector_check``), backward warping in the one flow convention (``warp``), and the reliability
weights of the temporal loss (``consistency``, Ruder et al. 2016 Sec. 3.2-3.3).

May import: ``io`` and ``errors``/``settings``/``sizes``; not network, job or modes."""
