"""Quality mode: every frame optimised (Ruder et al. 2016), single-pass or multi-pass.

Single pass (paper Sec. 3): frame 0 from the content (or noise); every later frame
is initialised from the previous result warped into it (prevWarped) and optimised
with the short-term or long-term temporal loss. Where that warped result is not
reliable (weight 0 for the previous frame: disoccluded, on a motion boundary or
warped from outside the frame) the initialisation is the content with
``init="content"``, and with ``init="random"`` the mean pixel (``vgg.MEAN_PIXEL``, the
Caffe VGG-19's, as the authors), never the black the warp gives outside the frame.

Shots: a clip of several shots (``shots.shot_cuts``: the first frame of each, found once per job and recorded in
the manifest's ``shot_cuts``, 1-based) is stylised shot by shot, each from its own first frame: no temporal term,
initialisation or pass neighbour reaches across a cut (the flow there relates unrelated pictures). So the shots
are independent, and a farm plan runs each as a task of its own (``farm/graph.py``) with the frames of the
single-machine run. A clip without cuts is stylised as before.

Multi-pass (paper Sec. 3.4): passes alternate direction. Pass 1 (``first_pass``):
``independent`` (the paper's) optimises every frame on its own from the ``init`` image,
with ``init="random"`` the *same* noise image for every frame (seed ``seed``), so no
direction is favoured; ``warped`` (ours) starts each frame from the warped result of its
neighbour in the pass direction, like the single pass. Later passes start each frame
from a blend of its previous-pass result x and the warped neighbour w with reliability c:
``c (blend w + (1 - blend) x) + (1 - c) x``; the temporal loss is switched on from
``temporal_from_pass`` (paper: 8 of 15 passes, with half the temporal weight: preset
``paper-multipass``). Intermediate passes are kept in
``OUTDIR/passes/pass_NN/frame_NNNNN.npy`` (float16) for resume.

A mode (the protocol: ``job/work.py``) only turns frames into stylised frames: it yields the
finished frames ``(i, image at processing size, info)`` and the job writes and reports
them. Memory stays flat: only the earlier results the temporal loss needs are kept
(``work.clip.keep``), the rest are read back from OUTDIR.
"""

import numpy as np

from ..ahead import ahead
from ..errors import StylizeError
from ..io import jobdir
from ..motion.consistency import long_term_weights
from ..network.optimize import level_iterations
from ..network.vgg import MEAN_PIXEL
from .shots import shot_cuts, shots


def _levels(iterations, s):
    """Iterations a frame of ``iterations`` runs over its pyramid levels (what its progress events count)."""
    return sum(level_iterations(iterations, s.coarse_to_fine))


class QualityMode:
    """The paper's optimisation of every frame: the job writes what :meth:`frames` yields."""

    stages = ("flow", "consistency", "optimise", "io")  # the job's timings, in seconds

    def __init__(self, settings, device, keyframes=None, warn=None):
        if keyframes:
            raise StylizeError("--keyframe needs --mode fast (painted keyframes are carried by fast mode)")
        self.asked, self.w = settings, None

    def bind(self, work):
        """From here on the mode sees the job through ``work`` (``job.work.Work``)."""
        self.w = work

    @property
    def s(self):
        """The settings: as they run once bound (after the memory plan), as asked before."""
        return self.w.settings if self.w else self.asked

    @property
    def passes(self):
        return self.s.passes

    def needs_flow(self):
        return self.s.passes > 1 or bool(self.s.offsets)

    def needs_network(self):
        return True

    def identity(self):
        """What this mode adds to the job identity besides the settings: nothing."""
        return None

    def manifest(self):
        return {}

    def check(self, n, size, regions):
        """Checks once the input is open (nothing beyond the settings' own)."""

    def _pass_dirs(self):
        return [self.w.files.out / jobdir.pass_folder(p) for p in range(1, self.s.passes + 1)]

    def _finished(self, p, i):
        if p == self.s.passes:
            return self.w.files.frame(i).exists()
        return self.w.files.array(self._pass_dirs()[p - 1], i).exists()

    def skipped(self):
        """Finished work units (frames x passes): single pass, the frames before the first
        missing one; multi-pass, every finished (pass, frame)."""
        n = self.w.clip.n
        if self.s.passes == 1:
            return self.w.files.first_missing(n)
        return sum(self._finished(p, i) for p in range(1, self.s.passes + 1) for i in range(n))

    def work(self, skipped):
        """The work left (``progress.Progress``): iterations of every pyramid level, of every unit left."""
        s, n = self.s, self.w.clip.n
        if s.passes == 1 and not s.offsets:
            return {"optimise": (n - skipped) * _levels(s.iterations, s)}
        if s.passes == 1:
            later = max(n - max(skipped, 1), 0)
            return {"optimise": (skipped == 0) * _levels(s.iterations, s) + later * _levels(s.iterations_later, s)}
        return {"optimise": (n * s.passes - skipped) * _levels(s.pass_iterations, s)}

    def preview(self, k):
        """Frame ``k`` optimised as a first frame (no temporal term, ``--iterations``: ``Job.preview``). In a single
        pass frame 1 is the job's own first frame: kept as its finished frame (True), or read back if finished."""
        first = k == 0 and self.s.passes == 1
        if first and self.w.files.frame(0).exists():
            return self.w.clip.result(0), False
        return self._first(k, write=True), first

    def _first(self, k, content=None, write=False):
        """Frame ``k`` optimised as a first frame (no temporal term, ``--iterations``), or the jobs root's shared
        look if a preview of the frame alone made it (``work.shared_look``; ``write``: a preview's, stored there)."""
        w = self.w
        return w.shared_look(
            k,
            "first",
            lambda: w.stylize(k, 1, w.clip.content(k) if content is None else content, None, (), self.s.iterations),
            write,
        )

    def preview_work(self, k):
        """The work of :meth:`preview` (``progress.Progress``)."""
        if k == 0 and self.s.passes == 1 and self.w.files.frame(0).exists():
            return {}
        return {"optimise": _levels(self.s.iterations, self.s)}

    def shots(self):
        """``[(first, end), ...]`` of the clip (``end`` exclusive): found once per job, kept in the manifest
        (``shot_cuts``, 1-based). Without flows (one pass, no temporal term) the frames are independent: one shot."""
        w = self.w
        manifest, n = w.files.manifest, w.clip.n
        if "shot_cuts" not in manifest.record:
            cuts = shot_cuts(w.clip.content, n, w.clip) if self.needs_flow() else []
            manifest.update(shot_cuts=[t + 1 for t in cuts])
        return shots(n, [t - 1 for t in manifest.record["shot_cuts"]])

    def units(self):
        """The job in independent pieces (a farm plan's tasks, ``farm/graph.py``): its shots."""
        return self.shots()

    def frames(self, skipped, part=None):
        """The frames still to write, shot by shot (``part``: only the shot ``(first, end)``, a farm task's)."""
        for lo, hi in [part] if part else self.shots():
            yield from self._single_pass(lo, hi) if self.s.passes == 1 else self._multi_pass(lo, hi)

    def _single_inputs(self, i, lo):
        """Frame ``i`` at the processing size and, per earlier frame j of the temporal loss in its shot (from
        ``lo``; closest first), ``clip.reliability(i, i - j)``: all that frame ``i`` needs besides the
        earlier results, so it is prepared ahead while frame ``i - 1`` is optimised."""
        clip = self.w.clip
        return clip.content(i), [clip.reliability(i, i - j) for j in self.s.offsets if i - j >= lo]

    def _single_pass(self, lo, hi):
        w, clip, s = self.w, self.w.clip, self.s
        start = next((i for i in range(lo, hi) if not w.files.frame(i).exists()), hi)  # resume the shot
        keep = max(s.offsets, default=1)
        for i, (content, prepared) in ahead(range(start, hi), lambda i: self._single_inputs(i, lo)):
            earlier = [j for j in s.offsets if i - j >= lo]
            if not earlier:
                img = self._first(i, content)
            else:
                pairs = [clip.reliable_warp(clip.result(i - j), i, i - j, ready) for j, ready in zip(earlier, prepared)]
                weights = long_term_weights([c for _, c in pairs])
                reliable = weights[0][..., None] > 0  # elsewhere: the content, or the mean pixel
                fill = content if s.init == "content" else np.float32(MEAN_PIXEL)
                init = np.where(reliable, pairs[0][0], fill).astype(np.float32)
                temporal = [(w, c) for (w, _), c in zip(pairs, weights)]
                img = w.stylize(i, 1, content, init, temporal, s.iterations_later)
            yield i, img, {}
            clip.keep(i, None, img, keep)

    def _multi_pass(self, lo, hi):
        w, clip, s = self.w, self.w.clip, self.s
        dirs = [w.files.folder_of(jobdir.pass_folder(p)) for p in range(1, s.passes + 1)]
        for p in range(1, s.passes + 1):
            order = range(lo, hi) if p % 2 else range(hi - 1, lo - 1, -1)
            step = 1 if p % 2 else -1
            independent = p == 1 and s.first_pass == "independent"

            def inputs(i):
                """Frame ``i`` and, if its neighbour's result is used (in the shot), ``clip.reliability(i, nb)``
                (prepared ahead while the frame before it in the pass is optimised)."""
                nb = i - step
                used = lo <= nb < hi and (not independent or p >= s.temporal_from_pass)
                return clip.content(i), clip.reliability(i, nb) if used else None

            for i, (content, ready) in ahead([i for i in order if not self._finished(p, i)], inputs):
                nb = i - step
                prev = clip.result(i, dirs[p - 2]) if p > 1 else None
                init, temporal = prev, ()
                if ready is not None:
                    warped, c = clip.reliable_warp(clip.result(nb, dirs[p - 1]), i, nb, ready)
                    base = prev if prev is not None else content
                    c3 = c[..., None]
                    if not independent:
                        init = (
                            c3 * (s.blend * warped + (1 - s.blend) * base) + (1 - c3) * base
                            if prev is not None
                            else np.where(c3 > 0, warped, base)
                        )
                    if p >= s.temporal_from_pass:
                        temporal = [(warped, c)]
                img = w.stylize(i, p, content, init, temporal, s.pass_iterations, seed=s.seed if independent else None)
                w.files.save_array(dirs[p - 1], i, img)
                if p == s.passes:
                    yield i, img, {}  # the job writes the output frame and reports it
                elif w.progress:
                    w.progress.frame(i, w.files.array(dirs[p - 1], i))
                clip.keep(i, dirs[p - 1], img, 1)
