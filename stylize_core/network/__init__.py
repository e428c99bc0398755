"""The networks and the optimiser: the loss networks (VGG-19 ``vgg``/``weights``, MobileNetV2 ``mobilenet`` read
by ``onnx_reader``), the feedforward keyframe network (``feedforward``), the loss terms (``losses``), L-BFGS
(``lbfgs``), one frame's optimisation (``optimize``, with style regions ``region_style``) and the memory plan
(``memory``).

May import: ``io``, the basics (``errors``, ``settings``, ``sizes``, ``ahead``), torch; not motion, job or modes."""
