"""The job folder OUTDIR: its layout, what a job owns there, and the rules that keep the user's files safe.

Layout (the one place these names are spelt; the globs and patterns that find them are made from the same
spelling: :func:`frame_glob`, :func:`frame_index`, ``FLOW_GLOB``):

- ``job.json``: the manifest (``MANIFEST``), written under a temporary name and renamed;
- ``frame_00001.png`` ...: the output frames, 1-based (:func:`frame_name`);
- ``flow/<method>-<preset>-<scale>/flow_AAAAA_BBBBB.flo``: the flow cache (``FLOW``, :func:`cache_key`,
  :func:`flow_filename`; a ``--flow-dir`` of precomputed flows has the same file names);
- ``keyframes/frame_NNNNN.npy``: fast mode's optimised keyframes (``KEYFRAMES``);
- ``passes/pass_NN/frame_NNNNN.npy``: multi-pass intermediates (``PASSES``, :func:`pass_folder`);
- ``input/frame_NNNNN.png``, ``input/extracted.json``: a decoded movie (``INPUT``, ``EXTRACTED``);
- ``preview/frame_NNNNN.png``, ``preview/input/...``, ``preview/compare/...``: what ``preview`` wrote
  (``PREVIEW``, :func:`preview_files`).

Only the standard library and ``..errors`` are imported: the add-on reads these names at register time, without
numpy or torch.

Ownership. The manifest's ``owns`` records what the jobs of this folder wrote: ``frames`` (frames
``1..frames`` by their names above), ``folders`` (the folders above that a job used, relative:
``flow/dis-medium-1.0``, ``keyframes``, ``passes``, ``input``) and ``videos`` (the absolute paths of
the ``--video`` files written). It is written before the job writes anything else. The engine

- deletes only what ``owns`` names, and inside an owned folder only files of the engine's own
  names (a user's file dropped there stays);
- refuses, in one line and before anything is written: an OUTDIR that is, contains or is inside
  a folder the job reads (the clip, region maps, mattes, flows); an input file (a style image, a
  painted keyframe, a region map) where the job writes or deletes; a folder holding frame files,
  a ``job.json`` or one of the folders above that no manifest records (frames of another tool,
  the user's own ``flow/``) where the job would write; and a ``--video`` file it did not write.
  Paths are compared with symbolic links resolved;
- records ``status`` ``starting``, ``running``, ``done``, ``previewed`` (``preview``: one frame
  made, which the job resumes from), ``failed`` (with ``error``) or ``interrupted``; a job that failed
  before finishing a frame does not block another job in its
  folder (there is nothing of it to keep); any other job there needs ``--restart``, which discards
  what the old job owns (its flows are kept when the input is the same: they depend on the frames).

A manifest of an engine before ``owns`` existed counts as owning its ``frames`` and the folders
above: that engine wrote them.
"""

import json
import os
import re
from pathlib import Path

from ..errors import StylizeError

MANIFEST = "job.json"
FLOW, KEYFRAMES, PASSES, INPUT, PREVIEW = "flow", "keyframes", "passes", "input", "preview"
FOLDERS = (FLOW, KEYFRAMES, PASSES, INPUT, PREVIEW)
LEGACY_FOLDERS = (FLOW, KEYFRAMES, PASSES, INPUT)  # what a manifest of an engine before ``owns`` owned
EXTRACTED = "extracted.json"  # in ``INPUT``: what the decoded movie is (``frames.open_input``)
_FRAME = "frame_{}{}"  # frame_<1-based number, 5 digits or more><ext>: the one spelling of a frame file's name
_FLOW = "flow_{}.flo"  # flow_<from>_<to>.flo, 1-based frame numbers of 5 digits
_PASS = "pass_{}"  # pass_<1-based pass number, 2 digits>


def _number(i):
    """0-based frame ``i`` as its names number it: 1-based, five digits (``00001``)."""
    return f"{i + 1:05d}"


def frame_name(i, ext=".png"):
    """File name of 0-based frame ``i``: ``frame_00001.png`` (``ext`` ``.npy`` for arrays)."""
    return _FRAME.format(_number(i), ext)


def frame_glob(ext=".png"):
    """The glob of :func:`frame_name`'s names with ``ext``: ``frame_*.png``."""
    return _FRAME.format("*", ext)


def frame_index(name, ext=".png"):
    """0-based frame of the file name ``name`` spelt as :func:`frame_name` spells it (five digits or more), None
    for any other name."""
    m = re.fullmatch(_FRAME.format(r"(\d{5,})", re.escape(ext)), name)
    return int(m.group(1)) - 1 if m else None


def flow_filename(a, b):
    """File name of the flow from 0-based frame a to frame b (1-based on disk): ``flow_00001_00002.flo``."""
    return _FLOW.format(f"{_number(a)}_{_number(b)}")


def cache_key(method, preset, scale):
    """The flow cache's folder name in ``FLOW``: changing any setting that alters the flow changes the key."""
    return f"{method}-{float(scale)}" if method == "deepflow" else f"{method}-{preset}-{float(scale)}"


FLOW_GLOB = _FLOW.format("*")  # flow_*.flo: what a folder of flows holds (:func:`flow_filename`)
# the names older engines gave their flow cache folders (:func:`cache_key` with their methods and presets)
CACHE_KEY_RE = re.compile(r"(dis|raft)-(ultrafast|fast|medium)-[0-9.]+|deepflow-[0-9.]+")
OWN_FILES = {
    FLOW: FLOW_GLOB,
    KEYFRAMES: frame_glob(".npy"),
    PASSES: f"{_PASS.format('*')}/{frame_glob('.npy')}",
    PREVIEW: f"**/{frame_glob()}",
}  # what discard deletes
PREVIEW_KINDS = ("preview", "input", "compare")  # what ``preview`` writes of a frame (see ``preview_files``)


COMPARE_WIDTH = 1280  # px: the width of each side of a preview's comparison at most (1920x1080: 2560x720)


def compare_size(size):
    """(W, H) of each side of a preview's comparison for frames of ``size``: the frame's, at most
    ``COMPARE_WIDTH`` wide (the aspect ratio kept)."""
    w, h = size
    return (w, h) if w <= COMPARE_WIDTH else (COMPARE_WIDTH, max(1, round(h * COMPARE_WIDTH / w)))


def preview_files(out, i):
    """The files a preview of 0-based frame ``i`` writes in the job folder ``out``, by ``PREVIEW_KINDS``: the
    stylised frame ``preview/frame_NNNNN.png``, the input frame as the engine read it ``preview/input/...`` and
    both side by side (input left) ``preview/compare/...``, at the output size (compare: each side at
    ``compare_size``)."""
    folder = Path(out) / PREVIEW
    return {kind: (folder if kind == "preview" else folder / kind) / frame_name(i) for kind in PREVIEW_KINDS}


def pass_folder(p):
    """``passes/pass_NN`` of 1-based pass ``p``, relative to OUTDIR."""
    return Path(PASSES) / _PASS.format(f"{p:02d}")


def real(path):
    """``path`` absolute, with symbolic links resolved (what the file system will actually touch)."""
    return Path(os.path.realpath(os.fspath(path)))


def _within(path, folder):
    """True if ``path`` is ``folder`` or inside it (both from :func:`real`)."""
    return path == folder or folder in path.parents


def _plural(names, one, many):
    return one if len(names) == 1 else many


class JobFolder:
    """OUTDIR of one job. ``flag``: how the user named it (``--out`` or ``--jobs``), for messages."""

    def __init__(self, out, flag="--out"):
        self.path, self.flag = real(out), flag
        given = Path(os.path.abspath(os.fspath(out)))
        self.named = str(self.path) if given == self.path else f"{given} (that is {self.path})"  # for messages
        self.old = None  # the manifest found there (claim)
        self.record = None  # the manifest as last written

    def frame(self, i):
        return self.path / frame_name(i)

    # -- before anything is written ----------------------------------------------------
    def claim(self, identity, frames, uses, restart, inputs, video=None):
        """Check that the job may use this folder; nothing is written. Returns the differences from
        the job found there (empty for the same job or none).

        ``frames``: the clip's length, None if not known yet (a movie not decoded); ``uses``: the
        folders it writes (relative, as in ``owns``); ``inputs``: ``{what: (path, is_folder)}`` of
        everything it reads; ``video``: the ``--video`` path or None."""
        old = self.read() if self.path.is_dir() else None
        n_owned, owned, videos = self.owned(old)
        self._check_inputs(inputs, owned | set(uses), video)
        if self.path.is_dir():
            self._check_foreign(frames, uses, n_owned, owned)
        if video is not None and real(video).exists() and str(real(video)) not in videos:
            raise StylizeError(
                f"--video {video} exists and was not written by this job: it is never overwritten; "
                "choose another file name"
            )
        if old is None:
            return []
        diff = differences(old.get("identity"), identity)
        if diff and not restart and not self.discardable(old):
            fix = "use --restart to discard it" + (", or choose another --out" if self.flag == "--out" else "")
            raise StylizeError(f"{self.path} holds another job (differs in: {', '.join(diff)}); {fix}")
        return diff

    def _check_inputs(self, inputs, written, video):
        """Refuse an OUTDIR that is, contains or is inside a folder the job reads, an input file inside what
        the job writes or deletes (``written``: relative folders; the manifest and frame names), and a
        ``--video`` that is an input."""
        for what, (path, is_folder) in inputs.items():
            if path is None:
                continue
            p = real(path)
            if video is not None and real(video) == p:
                raise StylizeError(f"--video {video} is the {what}: choose another file name for the movie")
            if is_folder and (_within(p, self.path) or _within(self.path, p)):
                where = "is" if p == self.path else "contains" if _within(p, self.path) else "is inside"
                raise StylizeError(
                    f"{self.flag} {self.named} {where} the {what} {p}: the job would mix its files "
                    "with yours (and --restart would delete some); choose an output folder outside it"
                )
            if video is not None and is_folder and _within(real(video), p):
                raise StylizeError(f"--video {video} is inside the {what} {p}: choose a file name outside it")
            if is_folder or not _within(p, self.path) or p == self.path:
                continue
            rel = p.relative_to(self.path)
            hit = next((w for w in sorted(written) if _within(p, self.path / w)), None)
            if hit or rel.parts[0] == MANIFEST or frame_index(rel.parts[0]) is not None:
                place = f"inside {self.path / hit}" if hit else "one of the files"
                raise StylizeError(
                    f"the {what} {p} is {place} this job writes (and --restart deletes); move it "
                    "out of the output folder first"
                )

    def _check_foreign(self, frames, uses, n_owned, owned):
        """Refuse frame files beyond the owned ones (where the job writes) and used folders no manifest records."""
        tops = {Path(w).parts[0] for w in owned}
        foreign = []
        for name in sorted(os.listdir(self.path)):
            i = frame_index(name)
            if i is not None and n_owned <= i and (frames is None or i < frames):
                foreign.append(name)
        for use in uses:
            top = Path(use).parts[0]
            if (self.path / top).exists() and top not in tops and top + "/" not in foreign:
                foreign.append(top + "/")
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            them = _plural(foreign, "it is", "they are")
            raise StylizeError(
                f"{self.path} holds {shown}, which no job of this engine wrote there; {them} not its to "
                f"resume or replace (--restart included): choose another {self.flag}"
            )

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
            raise StylizeError(
                f"{path} cannot be read ({why}): this folder's job is unknown, so nothing in it "
                f"is touched; choose another {self.flag}"
            ) from None
        if not _is_manifest(old):
            raise StylizeError(
                f"{path} is not a manifest of this engine: nothing in {self.path} is touched; "
                f"choose another {self.flag}"
            )
        self.old = old
        return old

    def owned(self, old=None):
        """``(frames, folders, videos)`` the manifest ``old`` owns (see the module doc)."""
        old = self.old if old is None else old
        if old is None:
            return 0, set(), set()
        owns = old.get("owns")
        if owns is None:  # an engine before "owns": it wrote its frames and these folders
            return int(old.get("frames") or 0), set(LEGACY_FOLDERS), set()
        return int(owns.get("frames", 0)), set(owns.get("folders", ())), set(owns.get("videos", ()))

    def finished_frames(self, old=None):
        """How many of the owned frame files exist."""
        n, _, _ = self.owned(old)
        return sum(self.frame(i).exists() for i in range(n))

    def discardable(self, old):
        """A job that failed before finishing a frame: nothing of it is worth keeping."""
        return old.get("status") == "failed" and self.finished_frames(old) == 0

    # -- when the job starts ------------------------------------------------------------
    def reserve(self, record, frames, uses, restart, video=None):
        """Discard what the old job owns if it is replaced (``restart``, or another job that failed before
        finishing a frame), then record ``record`` (job and identity at least) with what this job will own,
        status ``starting``: before the job writes anything else (e.g. decodes a movie). Returns the record."""
        old, identity = self.old, record["identity"]
        n_owned, owned, videos = self.owned()
        replaced = old is not None and (restart or (identity != old.get("identity") and self.discardable(old)))
        if replaced:
            same_input = (old.get("identity") or {}).get("input") == identity.get("input")
            self.discard(n_owned, owned, keep_flows=same_input)
            n_owned = 0
            owned = {w for w in owned if same_input and Path(w).parts[0] == FLOW} if old.get("owns") else set()
        if video is not None:
            videos = videos | {str(real(video))}
        kept = {k: v for k, v in (old or {}).items() if k == "flow_sources"} if old and not replaced else {}
        owns = {"frames": max(n_owned, frames or 0), "folders": sorted(owned | set(uses)), "videos": sorted(videos)}
        return self.write({**kept, **record, "owns": owns, "status": "starting"})

    def start(self, record, frames):
        """The full manifest ``record`` (status ``running``), keeping what :meth:`reserve` recorded."""
        owns = dict(self.record["owns"], frames=max(self.record["owns"]["frames"], frames))
        return self.write({**self.record, **record, "owns": owns, "status": "running"})

    def discard(self, frames, folders, keep_flows=False):
        """Delete the frames ``1..frames`` and the engine's files in ``folders`` (not ``input/``, a decoded
        movie reused while the movie is unchanged; not the flow cache with ``keep_flows``)."""
        for i in range(frames):
            self.frame(i).unlink(missing_ok=True)
        legacy = self.old is not None and "owns" not in self.old
        for folder in folders:
            top = Path(folder).parts[0]
            if top not in OWN_FILES or (top == FLOW and keep_flows):
                continue
            pattern = ("*/" if legacy and top == FLOW else "") + OWN_FILES[top]
            for p in (self.path / folder).glob(pattern):
                if legacy and top == FLOW and not CACHE_KEY_RE.fullmatch(p.parent.name):
                    continue  # an older engine's flow cache folders have its key names, no others
                p.unlink()
            for d in sorted((self.path / folder).glob("**/"), reverse=True):
                _rmdir_if_empty(d)

    def write(self, record):
        """Write the manifest atomically; returns it."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(record, indent=2, allow_nan=False))
        os.replace(tmp, self.path / MANIFEST)
        self.record = record
        return record


def _is_manifest(old):
    """The shape of a manifest this engine wrote (a hand-edited or foreign file is not trusted)."""
    if not isinstance(old, dict) or not isinstance(old.get("identity"), dict) or not isinstance(old.get("job"), str):
        return False
    if not isinstance(old.get("frames", 0), (int, type(None))) or isinstance(old.get("frames"), bool):
        return False
    threads = old.get("threads", 1)
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 1024:
        return False
    owns = old.get("owns", {})
    if not (
        isinstance(owns, dict)
        and isinstance(owns.get("frames", 0), int)
        and all(
            isinstance(owns.get(k, []), list) and all(isinstance(v, str) for v in owns.get(k, []))
            for k in ("folders", "videos")
        )
    ):
        return False
    # an owned folder is one of the layout's, inside OUTDIR: never an absolute path or a way out with ".."
    return all(
        Path(f).parts and Path(f).parts[0] in FOLDERS and not Path(f).is_absolute() and ".." not in Path(f).parts
        for f in owns.get("folders", [])
    )


def _rmdir_if_empty(d):
    try:
        d.rmdir()
    except OSError:
        pass


def differences(old, new, prefix=""):
    """Dotted names of the entries that differ between two identity dicts (``settings.strength``)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [] if old == new else [prefix.rstrip(".") or "identity"]
    out = []
    for k in sorted(set(old) | set(new), key=str):
        out += differences(old.get(k), new.get(k), f"{prefix}{k}.")
    return out
