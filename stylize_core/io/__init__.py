"""Files in and out: frames and movies, and the one image decoder (``frames``), OpenEXR passes (``exr``), ``.flo``
files (``flowio``), style region maps (``regions``), the job folder's layout, file names and ownership (``jobdir``),
content digests of files and images (``digest``), and the checks that OUTDIR and ``--video`` can be written
(``outputs``).

May import: the standard library, numpy, OpenCV, OpenEXR, and ``errors``/``settings``/``sizes``; never torch (the add-on
reads ``jobdir`` at register time), nor the layers above (motion, network, job, modes)."""
