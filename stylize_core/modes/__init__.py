"""The modes, each turning a clip's frames into stylised frames through the job's services: ``quality`` (the
paper's optimisation of every frame) and ``fast`` (keyframes carried by patch synthesis).

May import: every layer below (``io``, ``motion``, ``network``, ``job``); not ``schedule`` or the CLI."""
