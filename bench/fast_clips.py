"""Fast mode end to end on real clips (issue #17's targets): the engine's job, its default keyframe plan.

Each clip runs as a user's job does (``stylize_core.schedule.run``, ``--mode fast``, the standard preset, the
default keyframe plan, ``--keyframe-method`` as given, default feedforward), once with each ``--combine`` of
the segments between two keyframes (``select``: ``seams.py``, one synthesis a pixel; ``blend``: the former
contrast-keeping average). Clips (``--clips``): ``sintel`` (the 10-frame sintel_clip, 1024x436), ``cockatoo``
(frames 1-60) and ``cockatoo2`` (frames 121-240) of cockatoo.mp4 and ``tree`` (tree.avi, its 444 frames), at
``--scale`` of their size (1 = full: cockatoo 1280x720, tree 320x240).

Per clip and combine:
- ``dist key max`` / ``mean``: the style distance (``bench.common.StyleDistance``) of every frame to its nearest
  keyframe's stylisation (the job's own ``keyframes/*.npy``); ``mid/near``: the middle frame of each segment
  against the mean of the frames next to its keyframes (the worst segment);
- ``E / per-frame``: the warping error between consecutive outputs (DIS flow at full size with its
  reliability mask: the job's own flows are at half size) over that of a per-frame stylisation (the same
  feedforward network on every frame: what the keyframes are); ``sharpness``: the mean gradient magnitude
  over the per-frame stylisation's (whole frame), and in the pixels the flow reveals (``revealed``: unreliable
  between the frame and its predecessor);
- seconds: the whole job, its keyframes (``optimise`` stage), and ``frames/s after keyframes`` = synthesised
  frames / (job seconds - keyframe seconds): flow + synthesis + I/O;
- ETA: every ``progress`` event's ETA against the time the job then took, from 10 % of the job on: median
  and worst ratio (a table per clip with ``--eta-table``).
Contact sheets ``fast_clip_<clip>.png``: input | keyframe | frames between | result, for each segment's
keyframes and middle frame.

Measured (``python -m bench fast_clips --combine select --eta-table``, full size, load 3-4 with a test suite on
the other core; the table with every column and the one-frame / blend comparison: docs/fast_mode.md): dist key
max 0.0012 (sintel), 0.0071 (cockatoo 1-60), 0.0159 (cockatoo 121-240), 0.0038 (tree); E / per-frame 0.096,
0.157, 0.209, 0.123; sharpness 0.92-0.99; frames/s after keyframes 1.09 (1024x436), 0.16-0.17 (1280x720),
1.74 (320x240); ETA median 0.70-0.98, worst 0.33-1.46.
"""

import glob
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from stylize_core import progress
from stylize_core.io.frames import read_image as engine_read
from stylize_core.modes.fast import mode as fast_mode
from stylize_core.motion.consistency import reliability
from stylize_core.motion.flow import estimate
from stylize_core.network.feedforward import Feedforward
from stylize_core.schedule import run as run_job
from stylize_core.settings import Settings

from .common import (
    StyleDistance,
    Table,
    grid,
    labelled,
    print_header,
    read_image,
    real_style_path,
    warping_error,
    write_image,
)
from .fast import gradient

CLIPS = {
    "sintel": ("sintel_clip", 0, 10),
    "cockatoo": ("video/cockatoo.mp4", 0, 60),
    "cockatoo2": ("video/cockatoo.mp4", 120, 120),
    "tree": ("video/tree.avi", 0, 444),
}


def add_arguments(parser):
    parser.add_argument("--clips", default="sintel,cockatoo,cockatoo2,tree", help=f"of {', '.join(CLIPS)}")
    parser.add_argument("--scale", type=float, default=1.0, help="of each clip's size (default 1: full size)")
    parser.add_argument("--combine", default="select,blend", help="segment composites to compare")
    parser.add_argument("--keyframe-method", default="feedforward", help="optimise | feedforward | auto")
    parser.add_argument("--eta-table", action="store_true", help="print predicted vs actual time left")
    parser.add_argument(
        "--work",
        default=str(Path(tempfile.gettempdir()) / "bench_fast_clips"),
        help="folder for the clips' frames and the jobs (default: in the system's temporary folder)",
    )


def clip_folder(args, name):
    """The clip's frames as PNGs at ``--scale`` in ``--work``/input_<name> (made once)."""
    path, first, count = CLIPS[name]
    if args.quick:
        count = min(count, 6)
    folder = f"{args.work}/input_{name}_{args.scale * (0.125 if args.quick else 1):g}_{count}"
    if len(glob.glob(folder + "/frame_*.png")) == count:
        return folder
    import os

    os.makedirs(folder, exist_ok=True)
    src = args.data / path
    if src.is_dir():
        imgs = [engine_read(p) for p in sorted(src.glob("*.png"))[first : first + count]]
    else:
        cap = cv2.VideoCapture(str(src))
        cap.set(cv2.CAP_PROP_POS_FRAMES, first)
        imgs = []
        while len(imgs) < count:
            ok, bgr = cap.read()
            if not ok:
                break
            imgs.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255)
        cap.release()
    scale = args.scale * (0.125 if args.quick else 1)
    for i, img in enumerate(imgs):
        h, w = img.shape[:2]
        if scale != 1:
            img = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        cv2.imwrite(
            f"{folder}/frame_{i + 1:05d}.png", cv2.cvtColor((img * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)
        )
    return folder


def run_engine(args, folder, style, combine, out):
    """The job, with its progress events (time, event) captured: ``(frames, keyframes, events, seconds, record)``."""
    import dataclasses
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    events, t0 = [], time.monotonic()
    real_init, real_emit = fast_mode.FastMode.__init__, progress.Progress.emit

    def init(self, *a, **k):
        real_init(self, *a, **k)
        self.synthesis = dataclasses.replace(self.synthesis, combine=combine)

    def emit(self, event, **f):
        events.append((time.monotonic() - t0, event, f))

    fast_mode.FastMode.__init__, progress.Progress.emit = init, emit
    try:
        settings = Settings.from_preset("standard", mode="fast", keyframe_method=args.keyframe_method)
        run_job(folder, style, out, settings, progress=progress.Progress())
    finally:
        fast_mode.FastMode.__init__, progress.Progress.emit = real_init, real_emit
    seconds = time.monotonic() - t0
    record = json.loads(open(f"{out}/job.json").read())
    frames = [read_image(p) for p in sorted(glob.glob(f"{out}/frame_*.png"))]
    keys = {k - 1: np.load(f"{out}/keyframes/frame_{k:05d}.npy").astype(np.float32) for k in record["keyframes"]}
    return frames, keys, events, seconds, record


def eta_ratios(events, seconds):
    end = next(t for t, e, _ in events if e == "done")
    out = []
    for t, e, f in events:
        if e == "progress" and f.get("eta") is not None and t >= 0.1 * end and end - t > 0.5:
            out.append((t, f["eta"], end - t))
    return out


def run(args):
    print_header("Fast mode end to end: the default keyframe plan on real clips", args)
    style_path = args.style or real_style_path(args)
    style = read_image(style_path)
    distance = StyleDistance()
    print(f"- style image: {style_path}; keyframes: --keyframe-method {args.keyframe_method}; scale {args.scale:g}\n")
    table = Table(
        "clip",
        "size",
        "frames",
        "keyframes",
        "combine",
        "dist key max",
        "dist key mean",
        "mid/near",
        "E / per-frame",
        "sharpness",
        "sharpness revealed",
        "job s",
        "keyframes s",
        "frames/s after keyframes",
        "ETA median",
        "ETA worst",
        title="Fast mode, end to end",
    )
    ff = Feedforward([(style, 1.0)])
    for name in args.clips.split(","):
        folder = clip_folder(args, name)
        inputs = [read_image(p) for p in sorted(glob.glob(folder + "/frame_*.png"))]
        h, w = inputs[0].shape[:2]
        per_frame = [ff.stylize(x) for x in inputs]
        flows, masks = [], []
        for i in range(1, len(inputs)):
            fwd, bwd = estimate(inputs[i - 1], inputs[i], "dis"), estimate(inputs[i], inputs[i - 1], "dis")
            flows.append(fwd)
            masks.append(reliability(fwd, bwd))
        e_ref = np.mean(
            [warping_error(per_frame[i - 1], per_frame[i], flows[i - 1], masks[i - 1]) for i in range(1, len(inputs))]
        )
        sheet_rows = []
        for combine in args.combine.split(","):
            out = f"{folder}_{combine}"
            frames, keys, events, seconds, record = run_engine(args, folder, style_path, combine, out)
            ks = sorted(keys)
            dk = [distance(f, keys[min(ks, key=lambda k: (abs(k - i), k))]) for i, f in enumerate(frames)]
            ratios = []
            for a, b in zip(ks, ks[1:] + [len(frames) - 1] if ks[-1] < len(frames) - 1 else ks[1:]):
                inner = list(range(a + 1, b))
                if len(inner) >= 3:
                    near = [dk[inner[0]], dk[inner[-1]]] if b in keys else [dk[inner[0]]]
                    ratios.append(dk[inner[len(inner) // 2]] / max(np.mean(near), 1e-6))
            e = np.mean(
                [warping_error(frames[i - 1], frames[i], flows[i - 1], masks[i - 1]) for i in range(1, len(frames))]
            )
            g = [gradient(f) for f in frames]
            gr = [gradient(p) for p in per_frame]
            sharp = np.mean([a.mean() / max(b.mean(), 1e-8) for a, b in zip(g, gr)])
            rev = [(m < 0.5) for m in masks]
            sharp_rev = [g[i + 1][r].mean() / max(gr[i + 1][r].mean(), 1e-8) for i, r in enumerate(rev) if r.sum() > 16]
            key_s = record["timings"]["optimise"]
            synthesised = len(frames) - len(ks)
            fps = synthesised / max(seconds - key_s, 1e-6)
            eta = eta_ratios(events, seconds)
            r = [p / a for _, p, a in eta]
            table.add(
                name,
                f"{w}x{h}",
                len(frames),
                "/".join(str(k + 1) for k in ks),
                combine,
                max(dk),
                float(np.mean(dk)),
                max(ratios) if ratios else "-",
                e / e_ref,
                sharp,
                float(np.mean(sharp_rev)) if sharp_rev else "-",
                seconds,
                key_s,
                fps,
                statistics.median(r) if r else "-",
                max(r, key=lambda x: abs(np.log(x))) if r else "-",
            )
            if args.eta_table:
                t = Table("at s", "predicted left s", "actual left s", title=f"ETA, {name} {combine}")
                for at, p, a in eta[:: max(1, len(eta) // 12)]:
                    t.add(at, p, a)
                t.print()
            segs = [(a, b) for a, b in zip(ks, ks[1:])] or [(ks[0], len(frames) - 1)]
            for a, b in segs[:3]:
                mid = (a + b) // 2
                sheet_rows.append(
                    [
                        labelled(inputs[mid], f"input {mid + 1}"),
                        labelled(keys[a], f"key {a + 1}"),
                        labelled(frames[(a + mid) // 2], f"{combine} {(a + mid) // 2 + 1}"),
                        labelled(frames[mid], f"{combine} {mid + 1} d {dk[mid]:.4f}"),
                        labelled(frames[(mid + b) // 2], f"{combine} {(mid + b) // 2 + 1}"),
                        labelled(keys.get(b, frames[b]), f"{'key' if b in keys else 'frame'} {b + 1}"),
                    ]
                )
            print(f"fast_clips: {name} {combine} done ({seconds:.0f} s)", file=sys.stderr, flush=True)
        small = [
            [cv2.resize(x, (320, round(320 * h / w)), interpolation=cv2.INTER_AREA) for x in row] for row in sheet_rows
        ]
        write_image(args.out / f"fast_clip_{name}.png", grid(small))
    table.notes.append(
        "dist key: style distance to the nearest keyframe's stylisation; mid/near: the worst "
        "segment's middle frame over the frames next to its keyframes; E and sharpness against "
        "the feedforward network applied to every frame; ETA: predicted / actual time left from "
        "10 % of the job on."
    )
    table.print()
