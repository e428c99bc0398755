"""Fast mode: a few stylised keyframes carried to every frame by flow-guided patch synthesis (Jamriska et al.
2019; docs/fast_mode.md). ``mode`` is the mode the job runs; ``plan`` decides which frames need a keyframe
(cuts, changes of view, synthesis drift); ``synthesis`` carries the keyframes' look to the frames between them
(``Propagator``, ``propagate``, ``blend``); ``backends`` picks the patch search, ``torch_search`` (vectorised,
any device) or ``numba_search`` (compiled, the CPU), both behind one interface; ``seams`` the gradient-domain
blend between two keyframes' syntheses."""
