"""Preview Frame: ``python -m stylize_core preview`` timed end to end, as the add-on runs it (a child process).

- Fast mode, feedforward keyframe, a Sintel frame resized to ``--size`` (default 1920x1080): the wall time of
  the whole command (process start, imports, the network, the frame's I/O), ``--repeats`` runs each cold (a
  fresh process per preview) and warm (requests to one ``python -m stylize_core serve``, as the add-on sends
  them), each in a fresh ``--jobs`` root, on a one-frame clip (the add-on exports the current frame alone);
  the target is <= 3 s.
- Quality mode, frame 1 at ``--quality-size`` (default 512x218): the draft preset's preview against the
  standard preset's (the standard keyframe: the frame a standard job optimises first), measured in this one
  run, cold and warm; the target is draft <= 1/10 of standard.
The contact sheet ``preview.png``: input | fast preview | quality draft | quality standard (``--network``:
the loss network of the quality previews, default mobilenet = real pretrained features).
"""

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stylize_core.io import jobdir
from stylize_core.io.frames import resize, write_png

from .common import ROOT, Table, grid, labelled, print_header, read_image, style_path, write_image


def add_arguments(parser):
    parser.add_argument("--size", default="1920x1080", help="fast-mode preview frame size WxH (default 1920x1080)")
    parser.add_argument("--quality-size", default="512x218", help="quality-mode preview frame size WxH")
    parser.add_argument("--repeats", type=int, default=3, help="fast-mode runs (default 3)")
    parser.add_argument("--no-quality", action="store_true", help="only the fast-mode preview")


def wh(text):
    w, h = text.lower().split("x")
    return int(w), int(h)


def clip(folder, size, frames=2):
    """A ``frames``-frame clip of the Sintel frames at ``size`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted((ROOT.parent / "shared" / "data" / "sintel_clip").glob("frame_*.png"))[:frames]
    for i, src in enumerate(sources):
        write_png(folder / jobdir.frame_name(i), read_image(src, size))
    return folder


class Warm:
    """The warm engine (``python -m stylize_core serve``) as the add-on runs it; ``ready`` once it has imported."""

    def __init__(self):
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stylize_core", "serve"],
            cwd=ROOT,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert json.loads(self.proc.stdout.readline())["event"] == "ready"
        self.start_seconds = time.monotonic() - t0

    def run(self, argv):
        self.proc.stdin.write(json.dumps({"argv": argv}) + "\n")
        self.proc.stdin.flush()
        while True:
            event = json.loads(self.proc.stdout.readline())
            if event["event"] == "served":
                return event["code"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(60)


def preview(input_dir, out, style, *options, warm=None):
    """Run the preview of frame 1 (a CLI process, or a request to the ``warm`` engine); (wall seconds, the
    manifest's timings, the preview image)."""
    argv = [
        "preview",
        str(input_dir),
        "--jobs",
        str(out),
        "--style",
        str(style),
        "--at",
        "1",
        "--no-download",
        *options,
    ]
    t0 = time.monotonic()
    if warm is None:
        run = subprocess.run(
            [sys.executable, "-m", "stylize_core", *argv, "--progress", "none"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        code, why = run.returncode, run.stderr.strip()[-500:]
    else:
        code, why = warm.run([*argv, "--progress", "json"]), "(the warm engine's error event)"
    seconds = time.monotonic() - t0
    if code:
        raise SystemExit(f"preview failed ({code}): {why}")
    (folder,) = [p.parent for p in out.glob(f"*/{jobdir.MANIFEST}")]
    manifest = json.loads((folder / jobdir.MANIFEST).read_text())
    return seconds, manifest.get("timings", {}), read_image(jobdir.preview_files(folder, 0)["preview"])


def run(args):
    print_header("Preview Frame, end to end (the CLI as the add-on runs it)", args)
    size, qsize = ((320, 180), (128, 54)) if args.quick else (wh(args.size), wh(args.quality_size))
    network = args.vgg = args.vgg or "mobilenet"  # real pretrained features; and a real painting as the style
    style = style_path(args)
    sheet = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames = clip(tmp / "fast_in", size, frames=1)  # as the add-on sends it: the current frame alone
        table = Table(
            "engine",
            "run",
            "end to end s",
            "job's own s",
            "stylise s",
            "io s",
            title=f"Fast mode, feedforward keyframe, {size[0]}x{size[1]} (target <= 3 s end to end)",
        )
        walls = {"cold": [], "warm": []}
        warm = Warm()
        for kind in ("cold", "warm"):
            for r in range(args.repeats):
                wall, timings, img = preview(
                    frames,
                    tmp / f"fast_{kind}{r}",
                    style,
                    "--mode",
                    "fast",
                    "--keyframe-method",
                    "feedforward",
                    warm=warm if kind == "warm" else None,
                )
                walls[kind].append(wall)
                table.add(
                    kind, r + 1, wall, sum(timings.values()), timings.get("optimise", 0.0), timings.get("io", 0.0)
                )
        table.notes.append(
            f"median: cold (a process per preview) {statistics.median(walls['cold']):.2f} s, warm "
            f"(``serve``, the add-on's) {statistics.median(walls['warm']):.2f} s; warm run 1 builds "
            f"the networks; the warm engine's own start (imports, overlapping the add-on's export) "
            f"{warm.start_seconds:.2f} s; job's timings from the manifest ({', '.join(timings)})"
        )
        table.print()
        small = (480, round(480 * size[1] / size[0]))
        sheet_in = read_image(frames / jobdir.frame_name(0), small)
        row = [labelled(sheet_in, "input"), labelled(resize(img, small), "fast preview")]
        if not args.no_quality:
            qframes = clip(tmp / "quality_in", qsize, frames=1)
            table = Table(
                "preset",
                "engine",
                "end to end s",
                "optimise s",
                title=f"Quality mode, frame 1 at {qsize[0]}x{qsize[1]}, network {network} "
                "(target: draft <= 1/10 of standard)",
            )
            times = {}
            for preset in ("draft", "standard"):
                for kind in ("cold", "warm"):
                    wall, timings, img = preview(
                        qframes,
                        tmp / f"q_{preset}_{kind}",
                        style,
                        "--mode",
                        "quality",
                        "--preset",
                        preset,
                        "--network",
                        network,
                        warm=warm if kind == "warm" else None,
                    )
                    times[preset, kind] = wall
                    table.add(preset, kind, wall, timings.get("optimise", 0.0))
                row.append(labelled(resize(img, small), f"quality {preset}"))
            for kind in ("cold", "warm"):
                table.notes.append(
                    f"draft / standard, {kind}: {times['draft', kind] / times['standard', kind]:.3f} "
                    "(measured in this run)"
                )
            table.print()
        warm.close()
        sheet.append(row)
    path = write_image(args.out / ("preview_quick.png" if args.quick else "preview.png"), grid(sheet))
    print(f"contact sheet: {path}")
