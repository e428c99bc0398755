"""Fast mode: a few stylised keyframes carried to every frame by flow-guided patch synthesis (Jamriska et al.
2019; docs/fast_mode.md). ``mode`` is the mode the job runs, ``synthesis`` the propagation between keyframes,
``numba_search`` the compiled patch search (the CPU backend), ``seams`` the gradient-domain blend between two
keyframes' syntheses."""
