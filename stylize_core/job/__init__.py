"""What a mode works with, whatever the mode: the job's identity (``identity``) and the looks shared by the jobs
of one ``--jobs`` root (``looks``).

May import: ``io``, ``motion``, ``network``, the basics (``errors``, ``settings``, ``sizes``, ``ahead``); not ``modes`` (the modes use the job, the
job's runner ``schedule`` picks the mode)."""
