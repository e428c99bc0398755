"""Before a run: can OUTDIR and the ``--video`` file be written?

Checked up front so that a job does not run for hours and then fail on its first frame
or its movie. Nothing is written by the checks (``os.access`` with the process's real ids;
as root only a read-only file system refuses).
"""

import os
from pathlib import Path

from ..errors import StylizeError
from .frames import VIDEO_FOURCC


def _existing_ancestor(path):
    """``path`` or its closest ancestor that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _writable_folder(folder):
    return os.access(folder, os.W_OK | os.X_OK)


def check_out(out, flag="--out"):
    """StylizeError unless the folder ``out`` (given as ``flag``) exists and is writable, or can be created."""
    if out is None or not str(out).strip():
        raise StylizeError(f"{flag} is empty: give an output folder")
    out = Path(out)
    base = _existing_ancestor(out)
    if not base.is_dir():
        what = "is" if base == Path(os.path.abspath(out)) else "is under"
        raise StylizeError(f"cannot use output folder {out}: it {what} {base}, a file, not a folder")
    if not _writable_folder(base):
        action = "write to" if base == Path(os.path.abspath(out)) else "create"
        raise StylizeError(
            f"cannot {action} output folder {out}: {base} is not writable (permission denied "
            f"or read-only file system); choose another {flag}"
        )


def check_video(video, out):
    """StylizeError unless ``video`` has a known extension and its folder (``out`` or an existing one) is writable."""
    from .frames import check_path

    check_path(os.fspath(video), "--video")
    video = Path(video)
    if video.is_dir():
        raise StylizeError(f"--video {video} is a folder; give a file name such as {video / 'clip.mp4'}")
    ext = video.suffix.lower()
    if ext not in VIDEO_FOURCC:
        raise StylizeError(
            f"--video {video}: unsupported video format {ext or '(none)'} (use {'/'.join(VIDEO_FOURCC)})"
        )
    folder = Path(os.path.abspath(video.parent))
    if not folder.exists():
        if folder == Path(os.path.abspath(out)):
            return  # the job creates OUTDIR
        raise StylizeError(f"cannot write --video {video}: folder {video.parent} does not exist")
    if not folder.is_dir() or not _writable_folder(folder):
        raise StylizeError(f"cannot write --video {video}: {folder} is not a writable folder")
