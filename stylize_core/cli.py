"""Command line: ``python -m stylize_core stylize INPUT --style STYLE --out OUTDIR`` and ``demo``."""
import argparse
import json
import signal
import sys
from pathlib import Path

from . import __version__
from .errors import StylizeError
from .progress import make_progress
from .settings import PRESET_DESCRIPTIONS, PRESETS, Settings

# option -> (Settings field, type, help); their defaults come from the chosen preset.
TUNABLES = [
    ("--strength", "strength", float, "style strength, multiplies the style weight"),
    ("--style-weight", "style_weight", float, "style loss weight (beta)"),
    ("--content-weight", "content_weight", float, "content loss weight (alpha)"),
    ("--temporal-weight", "temporal_weight", float, "temporal loss weight (gamma)"),
    ("--tv-weight", "tv_weight", float, "total-variation weight"),
    ("--scale", "scale", float, "processing size relative to the input; output keeps the input size"),
    ("--style-scale", "style_scale", float, "style image size relative to the frame (see --style-match)"),
    ("--style-match", "style_match", str, "style image size rule: side (its longer side = the frame's) "
                                          "or area (its area = the frame's, the paper's)"),
    ("--iterations", "iterations", int, "iterations for the first frame"),
    ("--iterations-later", "iterations_later", int, "iterations for later frames (prevWarped init)"),
    ("--tolerance", "tolerance", float, "early stop when the loss changes less than this (relative) over "
                                        "--tolerance-window iterations; 0 = never"),
    ("--tolerance-window", "tolerance_window", int, "early stop: iterations the loss change is measured over"),
    ("--coarse-to-fine", "coarse_to_fine", int, "pyramid levels, each half the size of the next (1 = off); the coarser levels run the "
                                                  "iterations, full size half of them"),
    ("--optimizer", "optimizer", str, "lbfgs or adam"),
    ("--lbfgs-history", "lbfgs_history", int, "L-BFGS: curvature pairs kept (each costs 24 bytes per "
                                              "processed pixel; lowered automatically when a run does not fit)"),
    ("--adam-lr", "adam_lr", float, "Adam step in 0..255 pixel units"),
    ("--init", "init", str, "first frame initialisation: content or random"),
    ("--temporal", "temporal", str, "temporal loss: none, short (previous frame) or long (--long-term offsets)"),
    ("--long-term", "long_term", lambda v: tuple(int(x) for x in v.split(",")), "earlier frames for the long-term loss, comma-separated"),
    ("--passes", "passes", int, "number of passes; > 1 runs the multi-pass algorithm"),
    ("--pass-iterations", "pass_iterations", int, "multi-pass: iterations per frame and pass"),
    ("--temporal-from-pass", "temporal_from_pass", int, "multi-pass: first pass with the temporal loss"),
    ("--blend", "blend", float, "multi-pass: weight of the warped neighbour in the initialisation"),
    ("--first-pass", "first_pass", str, "multi-pass: pass 1 starts each frame from the warped neighbour "
                                        "(warped) or on its own from --init, noise the same for every frame "
                                        "(independent, the paper's)"),
    ("--reliability-widen", "reliability_widen", float, "pixels (processing size) by which the regions the "
                                                        "temporal loss leaves out grow, with a ramp as wide "
                                                        "(0 = the hard mask)"),
    ("--flow", "flow", str, "flow source: dis, deepflow, raft, flo (--flow-dir) or vector (Blender EXR Vector pass)"),
    ("--flow-preset", "flow_preset", str, "DIS preset: ultrafast, fast or medium"),
    ("--flow-scale", "flow_scale", float, "compute flow at this fraction of the processing size"),
    ("--pooling", "pooling", str, "VGG pooling: max or avg"),
    ("--seed", "seed", int, "random seed"),
    ("--mode", "mode", str, "quality (every frame optimised) or fast (keyframes optimised, the other frames "
                            "synthesised from them by patch search: seconds a frame instead of minutes)"),
    ("--keyframe-every", "keyframe_every", int, "fast mode: a keyframe every N frames from the first "
                                                "(0 = the first frame only)"),
    ("--keyframe-zoom", "keyframe_zoom", float, "fast mode: a new keyframe where the strokes carried from the "
                                                "last one are magnified or shrunk by more than this factor in "
                                                "area, or half the frame is new (0 = off)"),
    ("--fast-backend", "fast_backend", str, "fast mode's patch search: auto (numba on the CPU if installed, "
                                            "else torch), numba or torch"),
]


def _preset_table(field):
    default = getattr(Settings(), field)
    values = [f"{name}: {PRESETS[name].get(field, default)}" for name in PRESETS]
    return "; ".join(values)


def build_parser():
    p = argparse.ArgumentParser(prog="python -m stylize_core",
                                description="Artistic style transfer for videos (Ruder et al. 2016).")
    sub = p.add_subparsers(dest="command", required=True)
    st = sub.add_parser("stylize", help="stylise a clip",
                        description="Stylise a movie or a folder of frames into OUTDIR/frame_00001.png ...")
    st.add_argument("input", help="movie file (mp4/avi/mov/mkv/webm) or folder of frames (png/jpg/exr)")
    st.add_argument("--style", action="append", metavar="IMAGE[:WEIGHT]",
                    help="style image; repeat for a blend (--style a.jpg:0.7 --style b.jpg:0.3, weights "
                         "normalised to sum 1). Required unless style regions give every label a style; with "
                         "regions it is the style of every label not listed (default: none)")
    st.add_argument("--regions", metavar="SOURCE",
                    help="style regions: a folder of integer label images, one per input frame in the same "
                         "order (PNG 8/16-bit grey or EXR), or 'input' = the input's own multilayer EXR frames "
                         "(see --regions-layer) (default: none)")
    st.add_argument("--regions-layer", metavar="NAME",
                    help="EXR layer of the region maps: IndexOB, IndexMA (labels are the index numbers), "
                         "CryptoObject, CryptoMaterial or CryptoAsset (labels are the Cryptomatte names; soft "
                         "edges) (default: IndexOB if present, else the first Cryptomatte)")
    st.add_argument("--matte", metavar="DIR",
                    help="style regions from soft mattes, one grey image (or its alpha) per frame: label 1 "
                         "weighs the matte value (white), label 0 one minus it (default: none)")
    st.add_argument("--region", action="append", metavar="LABEL=IMAGE[:STRENGTH]",
                    help="the style of a region label (LABEL=keep: left as the input; LABEL * = every label "
                         "not listed); repeatable (default: none)")
    st.add_argument("--region-map", metavar="FILE",
                    help='JSON mapping of labels to styles: {"3": {"style": "a.jpg" or [["a.jpg", 0.7], '
                         '["b.jpg", 0.3]], "strength": 0.8}, "0": "keep", "*": ...}; relative paths are relative '
                         "to the file; --region entries replace its own (default: none)")
    where = st.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="output folder (also holds the manifest and flow cache); "
                                     "another job there is refused unless --restart "
                                     "(default: none; exactly one of --out and --jobs is required)")
    where.add_argument("--jobs", metavar="ROOT",
                       help="output folder ROOT/<job id>, the id a 12-hex hash of the input and style content, "
                            "settings and weights: the same job resumes, another gets its own folder "
                            "(default: none; exactly one of --out and --jobs is required)")
    _common(st)
    st.add_argument("--flow-dir", help="folder of precomputed flow_AAAAA_BBBBB.flo files (--flow flo) "
                                       "or of Blender multilayer EXRs (--flow vector; default: INPUT). Default: none")
    st.add_argument("--keyframe", action="append", metavar="N[=IMAGE]",
                    help="fast mode: frame N (1-based, like the output names) is a keyframe, stylised by the "
                         "engine, or with =IMAGE given as that stylised (e.g. painted) image, carried to the "
                         "other frames; repeatable. An image of another size with the frames' aspect ratio "
                         "(1%%) is resized with a warning (default: none)")
    st.add_argument("--preserve-colors", action=argparse.BooleanOptionalAction, default=None,
                    help="luminance-only transfer: keep the colours of the input; the style's luminance "
                         "is matched to each frame's mean and std first (Gatys et al. 2017) (default: off)")
    for flag, field, typ, text in TUNABLES:
        st.add_argument(flag, dest=field, type=typ, default=None,
                        help=f"{text} (default: {_preset_table(field)})")
    info = sub.add_parser("info", help="what this installation offers (torch, devices, flows, weights)")
    info.add_argument("--json", action="store_true", help="one JSON object (default: text)")
    dm = sub.add_parser("demo", help="stylise a generated clip with built-in defaults",
                        description="Generate a short clip and a style image into OUTDIR and stylise it.")
    dm.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    dm.add_argument("--frames", type=int, default=12, help="clip length (default: 12)")
    _common(dm, preset="draft")
    return p


def _common(p, preset="standard"):
    p.add_argument("--preset", choices=list(PRESETS), default=preset,
                   help=f"draft (fast look), standard, paper (the paper's single-pass settings) or "
                        f"paper-multipass (its multi-pass settings) (default: {preset})")
    p.add_argument("--vgg", help="VGG-19 weights file (vgg19-dcbb9e9d.pth, or the Caffe VGG-19 "
                                 "vgg19-d01eb7cb.pth, recognised by its name); 'caffe' = the Caffe VGG-19 the "
                                 "paper used (torch hub cache, else downloaded): BGR 0..255 input, the paper's "
                                 "loss units exactly; 'random[:N]' = random network for tests "
                                 "(default: $STYLIZE_VGG19, the torch hub cache, then download)")
    p.add_argument("--device", choices=["auto", "cuda", "mps", "cpu"], default="auto",
                   help="torch device; auto = cuda, then mps, then cpu (default: auto)")
    p.add_argument("--video", help="also encode the result as a movie (.mp4/.mov/.avi) (default: none)")
    p.add_argument("--max-frames", type=int, help="only the first N frames (default: all)")
    p.add_argument("--no-download", action="store_true",
                   help="never download the VGG-19 weights; fail if no local file is found (default: download)")
    p.add_argument("--restart", action="store_true",
                   help="discard finished frames of an earlier job in OUTDIR (default: resume)")
    p.add_argument("--progress", choices=["bar", "json", "none"],
                   help="progress output: bar (terminal), json (one object per line) or none "
                        "(default: bar on a terminal, else none)")


def _settings(args):
    overrides = {f: getattr(args, f, None) for _, f, _, _ in TUNABLES}
    overrides["preserve_colors"] = getattr(args, "preserve_colors", None)
    return Settings.from_preset(args.preset, **overrides)


def parse_keyframes(values):
    """``["12=painted.png", "30"]`` (``--keyframe``, 1-based frame numbers) ->
    ``{11: "painted.png", 29: None}`` (None: a keyframe the engine stylises)."""
    out = {}
    for value in values or ():
        number, sep, path = str(value).partition("=")
        if not number.strip().isdigit() or (sep and not path.strip()):
            raise StylizeError(f"--keyframe {value!r}: expected FRAME=IMAGE or FRAME with a 1-based frame "
                               "number, e.g. --keyframe 12=painted.png")
        k = int(number)
        if k < 1:
            raise StylizeError(f"--keyframe {value!r}: frame numbers start at 1 (frame_00001.png)")
        if k - 1 in out:
            raise StylizeError(f"--keyframe: frame {k} is given twice ({out[k - 1]} and {path})")
        out[k - 1] = path if sep else None
    return out


def _on_sigterm(*_):
    raise KeyboardInterrupt


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "info":
        return _info(args.json)
    kind = args.progress or ("bar" if sys.stderr.isatty() else "none")
    progress = make_progress(kind)
    signal.signal(signal.SIGTERM, _on_sigterm)
    from .schedule import run  # imports torch: after argument parsing so --help stays fast
    from . import outputs
    from .regions import RegionOptions, parse_weighted
    try:
        settings = _settings(args)
        where = args.out or getattr(args, "jobs", None)  # OUTDIR, or --jobs ROOT (OUTDIR inside it)
        outputs.check_out(where)
        if args.video:
            outputs.check_video(args.video, where if args.command == "stylize" else Path(args.out) / "stylized")
        if args.command == "demo":
            return _demo(args, settings, progress)
        regions = RegionOptions(args.regions, args.regions_layer, args.matte, tuple(args.region or ()),
                                args.region_map)
        regions.check()
        styles = [parse_weighted(v) for v in args.style or ()] or None
        paths = run(args.input, styles, args.out, settings, video=args.video, vgg=args.vgg,
                    device=args.device, progress=progress, max_frames=args.max_frames,
                    flow_dir=args.flow_dir, restart=args.restart, allow_download=not args.no_download,
                    jobs=args.jobs, keyframes=parse_keyframes(args.keyframe), regions=regions or None)
        print(f"done: {paths[0].parent if paths else args.out}", file=sys.stderr)
        return 0
    except StylizeError as e:
        return _fail(progress, str(e))
    except OSError as e:  # e.g. a folder made read-only or a disk filled during the run
        return _fail(progress, outputs.os_error_message(e))
    except MemoryError:  # outside the optimisation (which reports its own, with the size)
        return _fail(progress, "out of memory; try a lower --scale")
    except KeyboardInterrupt:
        progress.error("interrupted")
        print(f"interrupted: finished frames in {args.out or args.jobs} are kept; run the same command to resume",
              file=sys.stderr)
        return 130


def _fail(progress, message):
    """A user-facing error: the ``error`` event, one line on stderr, exit code 1."""
    message = " ".join(str(message).split())
    progress.error(message)
    print(f"error: {message}", file=sys.stderr)
    return 1


def _info(as_json):
    """Engine version, torch and its devices, available flow methods, the weights file found."""
    r = {"engine": __version__, "python": sys.version.split()[0], "executable": sys.executable,
         "presets": {name: Settings.from_preset(name).to_dict() for name in PRESETS},
         "preset_descriptions": PRESET_DESCRIPTIONS}
    try:
        from .regions import LAYERS
        r["region_layers"] = list(LAYERS)
        import torch
        r.update(torch=torch.__version__, cuda=torch.cuda.is_available(),
                 mps=torch.backends.mps.is_available())
        from . import flow, weights
        r["flows"] = flow.available_methods()
    except Exception as e:  # a broken torch/OpenCV install is what this command reports
        r["error"] = f"{type(e).__name__}: {e}"
        weights = None
    if weights is not None:
        try:
            found = weights.find_weights()
            if found is not None:
                weights.check_header(found)
            r["weights"] = str(found or "")
            caffe = weights.hub_path(weights.CAFFE_FILENAME)
            r["weights_caffe"] = str(caffe) if caffe.is_file() else ""
        except StylizeError as e:
            r["weights"], r["weights_error"] = "", str(e)
    print(json.dumps(r) if as_json else "\n".join(f"{k}: {v}" for k, v in r.items()))
    return 1 if "error" in r else 0


def _demo(args, settings, progress):
    from . import demo, weights
    from .schedule import run
    out = Path(args.out)
    clip, style = out / "input", out / "style.png"
    demo.make_clip(clip, frames=args.frames)
    demo.make_style(style)
    vgg = args.vgg
    if vgg is None and weights.find_weights() is None:
        try:
            if args.no_download:
                raise StylizeError("VGG-19 weights not found and --no-download was given")
            weights.download()
        except StylizeError as e:
            print(f"warning: {e}\nwarning: the demo goes on with a randomly initialised VGG-19: "
                  "it exercises the whole pipeline, but the pictures are not real style transfer",
                  file=sys.stderr)
            vgg = "random"
    run(clip, style, out / "stylized", settings, video=args.video or out / "stylized.mp4", vgg=vgg,
        device=args.device, progress=progress, max_frames=args.max_frames, restart=args.restart,
        allow_download=not args.no_download)
    print(f"done: frames in {out / 'stylized'}, movie {args.video or out / 'stylized.mp4'}", file=sys.stderr)
    return 0
