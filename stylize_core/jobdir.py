"""The job folder OUTDIR: its layout, what a job owns there, and the rules that keep the user's files safe.

Layout (the one place these names are spelt):

- ``job.json``: the manifest (``MANIFEST``), written under a temporary name and renamed;
- ``frame_00001.png`` ...: the output frames, 1-based (:func:`frame_name`);
- ``flow/<method>-<preset>-<scale>/flow_AAAAA_BBBBB.flo``: the flow cache (``FLOW``);
- ``keyframes/frame_NNNNN.npy``: fast mode's optimised keyframes (``KEYFRAMES``);
- ``passes/pass_NN/frame_NNNNN.npy``: multi-pass intermediates (``PASSES``);
- ``input/frame_NNNNN.png``, ``input/extracted.json``: a decoded movie (``INPUT``).

Ownership. The manifest's ``owns`` records what the jobs of this folder wrote: ``frames`` (frames
``1..frames`` by their names above), ``folders`` (the top-level folders above that a job used) and
``videos`` (the absolute paths of the ``--video`` files written). The engine

- deletes only what ``owns`` names, and inside an owned folder only files of the engine's own
  names (a user's file dropped there stays);
- refuses, in one line and before anything is written, a folder that is or contains the
  input; an input (style image, painted keyframe, region maps, flows) inside one of the
  folders or names above; a folder holding frame files, a ``job.json`` or one of the folders
  above that no manifest records (frames of another tool, the user's own ``flow/``) where the
  job would write; and a ``--video`` file it did not write;
- records ``status`` ``running``, ``done``, ``failed`` (with ``error``) or ``interrupted``;
  a job that failed before finishing a frame does not block another job in its folder (there is
  nothing of it to keep); any other job there needs ``--restart``, which discards what the old
  job owns (its flows are kept when the input is the same: they depend on the frames only).

A manifest of an engine before ``owns`` existed counts as owning its ``frames`` and the folders
above: that engine wrote them.
"""
import json
import os
import re
from pathlib import Path

from .errors import StylizeError

MANIFEST = "job.json"
FLOW, KEYFRAMES, PASSES, INPUT = "flow", "keyframes", "passes", "input"
FOLDERS = (FLOW, KEYFRAMES, PASSES, INPUT)
FRAME_RE = re.compile(r"frame_(\d{5,})\.png")


def frame_name(i, ext=".png"):
    """File name of 0-based frame ``i``: ``frame_00001.png`` (``ext`` ``.npy`` for arrays)."""
    return f"frame_{i + 1:05d}{ext}"


def pass_folder(p):
    """``passes/pass_NN`` of 1-based pass ``p``, relative to OUTDIR."""
    return Path(PASSES) / f"pass_{p:02d}"


def _within(path, folder):
    """True if ``path`` is ``folder`` or inside it (both absolute, normalised)."""
    return path == folder or folder in path.parents


def _abs(path):
    return Path(os.path.abspath(os.fspath(path)))


class JobFolder:
    """OUTDIR of one job. ``flag``: how the user named it (``--out`` or ``--jobs``), for messages."""

    def __init__(self, out, flag="--out"):
        self.path, self.flag = _abs(out), flag
        self.old = None  # the manifest found there, once read()

    def frame(self, i):
        return self.path / frame_name(i)

    # -- before anything is written ----------------------------------------------------
    def check_inputs(self, inputs, folders):
        """``inputs``: ``{what: path}`` of everything the job reads; ``folders``: the top-level folders
        it writes. Refuse an OUTDIR that is or contains the clip, and any input where the job writes."""
        for what, path in inputs.items():
            if path is None or not os.fspath(path):
                continue
            p = _abs(path)
            if what == "input" and _within(p, self.path):
                where = "is" if p == self.path else "contains"
                raise StylizeError(f"{self.flag} {self.path} {where} the input {p}: the job would write beside "
                                   "(and --restart delete) your frames; choose an output folder outside the input")
            if not _within(p, self.path) or p == self.path:
                continue
            top = p.relative_to(self.path).parts[0]
            if top in folders or top == MANIFEST or FRAME_RE.fullmatch(top):
                raise StylizeError(f"{what} {p} is inside {self.path / top}, which this job writes and "
                                   "--restart deletes; move it out of the output folder first")

    def read(self):
        """The manifest there (a dict), None if there is none; a file that is not one of ours is refused."""
        path = self.path / MANIFEST
        if not path.exists():
            self.old = None
            return None
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            why = getattr(e, "strerror", None) or "not valid JSON"
            raise StylizeError(f"{path} cannot be read ({why}): this folder's job is unknown, so nothing in it "
                               f"is touched; choose another {self.flag}") from None
        if not isinstance(old, dict) or "identity" not in old or "job" not in old:
            raise StylizeError(f"{path} is not a manifest of this engine: nothing in {self.path} is touched; "
                               f"choose another {self.flag}")
        self.old = old
        return old

    def owned(self, old=None):
        """``(frames, folders, videos)`` the manifest ``old`` owns (see the module doc)."""
        old = self.old if old is None else old
        if old is None:
            return 0, set(), set()
        owns = old.get("owns")
        if owns is None:  # an engine before "owns": it wrote its frames and these folders
            return int(old.get("frames") or 0), set(FOLDERS), set()
        return int(owns.get("frames", 0)), set(owns.get("folders", ())), set(owns.get("videos", ()))

    def finished_frames(self, old=None):
        """How many of the owned frame files exist."""
        n, _, _ = self.owned(old)
        return sum(self.frame(i).exists() for i in range(n))

    def claim(self, identity, frames, folders, restart, video=None):
        """Check that the job may use this folder (before anything is written); returns the
        differences from the old job (empty for the same job or none).

        ``frames``: the clip's length, or None if not known yet (a movie not decoded); ``folders``:
        the top-level folders it writes; ``video``: the ``--video`` path or None."""
        from .identity import differences  # identity imports cv2: keep this module light
        old = self.read() if self.path.is_dir() else None
        n_owned, owned, videos = self.owned(old)
        if self.path.is_dir():
            foreign = sorted(name for name in os.listdir(self.path)
                             if (name in folders and name not in owned and (self.path / name).exists())
                             or ((m := FRAME_RE.fullmatch(name)) and int(m.group(1)) > n_owned
                                 and (frames is None or int(m.group(1)) <= frames)))
            if foreign:
                foreign = [n + "/" if (self.path / n).is_dir() else n for n in foreign]
                shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
                raise StylizeError(f"{self.path} holds {shown}, which no job of this engine wrote there; they are "
                                   f"not its to resume or replace (--restart included): choose another {self.flag}")
        if video is not None and _abs(video).exists() and str(_abs(video)) not in videos:
            raise StylizeError(f"--video {video} exists and was not written by this job: it is never overwritten; "
                               "remove it or choose another file name")
        if old is None:
            return []
        diff = differences(old.get("identity"), identity)
        if diff and not restart and not self.discardable(old):
            fix = "use --restart to discard it" + (", or choose another --out" if self.flag == "--out" else "")
            raise StylizeError(f"{self.path} holds another job (differs in: {', '.join(diff)}); {fix}")
        return diff

    def discardable(self, old):
        """A job that failed before finishing a frame: nothing of it is worth keeping."""
        return old.get("status") == "failed" and self.finished_frames(old) == 0

    # -- when the job starts ------------------------------------------------------------
    def start(self, record, identity, frames, folders, restart, video=None):
        """Discard what the old job owns if it is replaced (``restart``, or another job that failed
        before finishing a frame), then write the manifest ``record`` with ``owns`` and status running."""
        old = self.old
        n_owned, owned, videos = self.owned()
        replaced = old is not None and (restart or (identity != old.get("identity") and self.discardable(old)))
        if replaced:
            same_input = (old.get("identity") or {}).get("input") == identity.get("input")
            self.discard(n_owned, owned, keep_flows=same_input)
            n_owned = 0
        if video is not None:
            videos = videos | {str(_abs(video))}
        record = {**record, "owns": {"frames": max(n_owned, frames), "folders": sorted(owned | set(folders)),
                                     "videos": sorted(videos)}}
        if old and not replaced:  # the same job: what it found out before (Vector-pass checks, plan)
            record = {**{k: v for k, v in old.items() if k in ("flow_sources",)}, **record}
        return self.write({**record, "status": "running"})

    def discard(self, frames, folders, keep_flows=False):
        """Delete the frames ``1..frames`` and the engine's files in ``folders`` (not ``input/``, a
        decoded movie reused while the movie is unchanged; not ``flow/`` with ``keep_flows``)."""
        for i in range(frames):
            self.frame(i).unlink(missing_ok=True)
        patterns = {FLOW: "*/flow_*.flo", KEYFRAMES: "frame_*.npy", PASSES: "pass_*/frame_*.npy"}
        for folder in folders:
            if folder not in patterns or (folder == FLOW and keep_flows):
                continue
            for p in (self.path / folder).glob(patterns[folder]):
                p.unlink()
            for d in sorted((self.path / folder).glob("*/"), reverse=True):
                _rmdir_if_empty(d)

    def write(self, record):
        """Write the manifest atomically; returns it."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(record, indent=2, allow_nan=False))
        os.replace(tmp, self.path / MANIFEST)
        return record


def _rmdir_if_empty(d):
    try:
        d.rmdir()
    except OSError:
        pass
