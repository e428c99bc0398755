"""What a mode works with, whatever the mode: the mode protocol and its services (``work``: the settings as they
run, the clip's frames, flows and reliability, the folder's files, stylize, timings), the manifest and resume
(``manifest``), the job's identity (``identity``) and the looks shared by the jobs of one ``--jobs`` root
(``looks``).

May import: ``io``, ``motion``, ``network``, the basics (``errors``, ``settings``, ``sizes``, ``ahead``); not
``modes`` (the modes use the job; the job's runner ``schedule`` picks the mode)."""
