import os

import cv2
import numpy as np
import pytest

from conftest import shared_data
from stylize_core.errors import StylizeError
from stylize_core.io import exr, frames


def rgb_u8(h, w, value):
    img = np.zeros((h, w, 3), np.uint8)
    img[...] = value
    return img


def save(path, rgb):
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]) if rgb.ndim == 3 else rgb)


def listing(folder):
    return sorted(os.listdir(folder))


def make_avi(path, n, size=(64, 48), fps=10.0):
    """An MJPG avi whose frame k is a flat grey of value 40 * k."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for k in range(n):
        w.write(rgb_u8(size[1], size[0], 40 * k))
    w.release()


def test_folder_natural_sort_ignores_other_files(tmp_path):
    src = tmp_path / "clip"
    src.mkdir()
    for n, v in (("frame10.png", 30), ("frame2.png", 20), ("frame1.png", 10)):
        save(src / n, rgb_u8(6, 8, v))
    (src / "notes.txt").write_text("not a frame")
    (src / ".frame0.png").write_bytes(b"macOS resource fork")
    (src / "sub.png").mkdir()
    before = listing(src)
    clip = frames.open_input(src, tmp_path / "work")
    assert clip.names == ["frame1.png", "frame2.png", "frame10.png"]
    assert clip.paths == [str(src / n) for n in clip.names]
    assert (len(clip), clip.size, clip.fps) == (3, (8, 6), None)
    assert [round(float(clip.read(i).mean()) * 255) for i in range(3)] == [10, 20, 30]
    assert frames.natural_key("f2") < frames.natural_key("F10")
    assert listing(src) == before and not (tmp_path / "work").exists()
    assert len(frames.open_input(src, tmp_path / "work", max_frames=2)) == 2
    with pytest.raises(IndexError):
        clip.read(3)


def test_jpg_16bit_grey_and_alpha_frames(tmp_path):
    save(tmp_path / "a.jpg", rgb_u8(20, 30, (200, 100, 50)))
    img = frames.read_image(str(tmp_path / "a.jpg"))
    assert img.shape == (20, 30, 3) and img.dtype == np.float32
    assert np.allclose(img.mean((0, 1)) * 255, (200, 100, 50), atol=3)
    assert frames.image_size(str(tmp_path / "a.jpg")) == (30, 20)

    grey16 = np.full((4, 5), 1000, np.uint16)
    grey16[0, 0] = 65535
    save(tmp_path / "g16.png", grey16)
    img = frames.read_image(str(tmp_path / "g16.png"))
    assert img.shape == (4, 5, 3)
    assert img[1, 1] == pytest.approx([1000 / 65535] * 3, abs=1e-6) and img[0, 0, 0] == 1.0

    rgba = np.zeros((3, 3, 4), np.uint8)
    rgba[..., 0] = 255  # BGRA: blue, fully transparent
    assert cv2.imwrite(str(tmp_path / "a.png"), rgba)
    assert frames.read_image(str(tmp_path / "a.png"))[1, 1].tolist() == [0, 0, 1]


def test_exr_folder_is_srgb_encoded_and_clipped(tmp_path):
    src = tmp_path / "render"
    src.mkdir()
    lin = np.full((4, 6), 0.2140411, np.float32)  # sRGB 0.5
    lin[0, 0] = 5.0
    for k in (1, 2):
        exr.write_exr(
            src / f"f{k}.exr",
            {
                "ViewLayer.Combined.R": lin,
                "ViewLayer.Combined.G": lin,
                "ViewLayer.Combined.B": lin,
                "ViewLayer.Vector.X": lin,
            },
        )
    clip = frames.open_input(src, tmp_path / "work")
    assert (len(clip), clip.size) == (2, (6, 4))
    assert clip.paths[0].endswith("f1.exr")
    img = clip.read(0)
    assert img[1, 1] == pytest.approx([0.5] * 3, abs=1e-3)
    assert img[0, 0] == pytest.approx([1.0] * 3, abs=1e-6) and img.max() <= 1.0


def test_movie_is_extracted_once_under_work_dir(tmp_path, monkeypatch):
    movie_dir = tmp_path / "in"
    movie_dir.mkdir()
    movie = movie_dir / "cut.avi"
    cap = cv2.VideoCapture(str(shared_data("video", "tree.avi")))
    originals = [cap.read()[1] for _ in range(5)]
    writer = cv2.VideoWriter(str(movie), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (320, 240))
    for f in originals:
        writer.write(f)
    writer.release()

    clip = frames.open_input(movie, tmp_path / "work")
    assert (len(clip), clip.size, clip.fps) == (5, (320, 240), 15.0)
    assert clip.names[0] == "frame_00001.png"
    for i, f in enumerate(originals):
        assert np.abs(clip.read(i) - f[..., ::-1] / 255).mean() < 0.03
    assert listing(movie_dir) == ["cut.avi"]
    assert listing(tmp_path / "work" / "input") == ["extracted.json"] + [f"frame_{i:05d}.png" for i in range(1, 6)]

    monkeypatch.setattr(frames.cv2, "VideoCapture", None)  # reuse must not decode again
    assert frames.open_input(movie, tmp_path / "work").paths == clip.paths
    assert len(frames.open_input(movie, tmp_path / "work", max_frames=2)) == 2
    monkeypatch.undo()

    make_avi(movie, 3, size=(320, 240))  # a changed source is decoded again
    again = frames.open_input(movie, tmp_path / "work")
    assert len(again) == 3 and abs(again.read(2).mean() * 255 - 80) < 2
    assert not (tmp_path / "work" / "input" / "frame_00004.png").exists()


def test_tree_avi_repeats_empty_packets_at_constant_rate(tmp_path):
    tree = str(shared_data("video", "tree.avi"))
    clip = frames.open_input(tree, tmp_path / "work", max_frames=12)
    assert (len(clip), clip.size, round(clip.fps)) == (12, (320, 240), 15)
    first = clip.read(0)
    assert all(np.array_equal(clip.read(i), first) for i in range(1, 11))  # AVI null frames
    assert np.abs(clip.read(11) - first).mean() > 0.01
    full = frames.open_input(tree, tmp_path / "work")  # limit was hit: decode all
    assert len(full) == int(cv2.VideoCapture(tree).get(cv2.CAP_PROP_FRAME_COUNT)) == 444


def test_write_png_is_atomic(tmp_path, monkeypatch):
    img = np.linspace(0, 1, 4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3)
    out = tmp_path / "frame_00001.png"
    frames.write_png(str(out), img)
    assert listing(tmp_path) == ["frame_00001.png"]
    assert np.abs(frames.read_image(str(out)) - img).max() <= 0.5 / 255 + 1e-6

    def fail(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(frames.os, "replace", fail)
    with pytest.raises(KeyboardInterrupt):
        frames.write_png(str(out), np.zeros_like(img))
    assert listing(tmp_path) == ["frame_00001.png"]
    assert frames.read_image(str(out)).max() == 1.0  # old frame left intact


def test_write_video_round_trip(tmp_path):
    paths = []
    for k in range(6):
        paths.append(str(tmp_path / f"frame_{k + 1:05d}.png"))
        frames.write_png(paths[-1], np.full((48, 64, 3), k / 6, np.float32))
    for name in ("out.mp4", "out.avi"):
        out = tmp_path / name
        assert frames.write_video(paths, str(out), fps=12) == str(out)
        cap = cv2.VideoCapture(str(out))
        assert (cap.get(cv2.CAP_PROP_FPS), cap.get(3), cap.get(4)) == (12, 64, 48)
        decoded = []
        while (f := cap.read()[1]) is not None:
            decoded.append(f.mean() / 255)
        assert np.allclose(decoded, np.arange(6) / 6, atol=0.03)
    assert not [n for n in listing(tmp_path) if ".tmp" in n]
    with pytest.raises(StylizeError, match="unsupported video format"):
        frames.write_video(paths, str(tmp_path / "out.gif"))
    with pytest.raises(StylizeError, match="failed to open"):
        frames.write_video(paths, str(tmp_path / "missing" / "out.mp4"))


def test_style_loading_and_resize(tmp_path):
    save(tmp_path / "style.png", rgb_u8(200, 300, (255, 0, 0)))
    style = frames.load_style(str(tmp_path / "style.png"), max_side=150)
    assert style.shape == (100, 150, 3) and style[50, 75].tolist() == [1, 0, 0]
    assert frames.load_style(str(tmp_path / "style.png"), max_side=1000).shape == (200, 300, 3)
    up = frames.resize(style, (300, 200))
    assert up.shape == (200, 300, 3) and np.allclose(up, [1, 0, 0], atol=1e-5)
    flow = np.full((4, 6, 2), -3.5, np.float32)
    assert np.allclose(frames.resize(flow, (12, 8)), -3.5) and frames.resize(flow, (3, 2)).shape == (2, 3, 2)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    for path, msg in (
        (tmp_path / "nope.png", "style image not found"),
        (tmp_path / "bad.jpg", "cannot decode style image bad.jpg"),
        (tmp_path, "is a folder, not an image"),
    ):
        with pytest.raises(StylizeError, match=msg):
            frames.load_style(str(path))


def bad_folder(tmp_path, files):
    d = tmp_path / "bad"
    d.mkdir()
    for name, content in files.items():
        if isinstance(content, bytes):
            (d / name).write_bytes(content)
        else:
            save(d / name, content)
    return d


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "input not found"),
        ("text file", "not a supported input"),
        ("empty folder", "no frames found"),
        ("only other files", "no frames found"),
        ("mixed sizes", "frame f10.png is 9x7 but f1.png is 8x6"),
        ("garbage png", "cannot decode frame f2.png"),
        ("0-byte movie", "movie file is empty"),
        ("corrupt movie", "cannot open movie"),
        ("zero-frame movie", "movie has no frames"),
    ],
)
def test_bad_inputs_raise_clear_errors(tmp_path, case, message):
    good = rgb_u8(6, 8, 0)
    path = {
        "missing": lambda: tmp_path / "nothing.mp4",
        "text file": lambda: (tmp_path / "a.txt").write_text("x") and tmp_path / "a.txt",
        "empty folder": lambda: bad_folder(tmp_path, {}),
        "only other files": lambda: bad_folder(tmp_path, {"a.txt": b"x", "b.tif": good}),
        "mixed sizes": lambda: bad_folder(tmp_path, {"f1.png": good, "f2.png": good, "f10.png": rgb_u8(7, 9, 0)}),
        "garbage png": lambda: bad_folder(tmp_path, {"f1.png": good, "f2.png": b"\x89PNG junk"}),
        "0-byte movie": lambda: (tmp_path / "e.mp4").write_bytes(b"") or tmp_path / "e.mp4",
        "corrupt movie": lambda: (tmp_path / "c.mov").write_bytes(os.urandom(4096)) and tmp_path / "c.mov",
        "zero-frame movie": lambda: make_avi(tmp_path / "z.avi", 0) or tmp_path / "z.avi",
    }[case]()
    before = listing(tmp_path)
    with pytest.raises(StylizeError, match=message) as err:
        frames.open_input(path, tmp_path / "work")
    assert "\n" not in str(err.value)
    assert [n for n in listing(tmp_path) if n != "work"] == before
    if os.path.isdir(path):
        assert not (tmp_path / "work").exists()


def test_truncated_frame_is_named_when_read(tmp_path):
    d = bad_folder(tmp_path, {"f1.png": rgb_u8(6, 8, 0), "f2.png": rgb_u8(6, 8, 0)})
    data = (d / "f2.png").read_bytes()
    (d / "f2.png").write_bytes(data[: len(data) // 2])  # header intact, pixels cut
    clip = frames.open_input(d, tmp_path / "work")
    assert clip.read(0).shape == (6, 8, 3)
    with pytest.raises(StylizeError, match="cannot decode frame f2.png"):
        clip.read(1)


def test_one_decoder_reads_every_channel_and_says_the_same_of_a_bad_file_wherever_it_is_read(tmp_path):
    """``frames.decode`` is the stored image (grey 2-D, BGRA with its alpha, 16 bits kept); ``read_image`` is it
    as float RGB, as OpenCV's own colour decoding gives it; a missing, empty or corrupt file is the same error
    from the frame reader, the digest and the region maps."""
    from stylize_core.io import digest, regions

    rng = np.random.default_rng(1)

    def u8(*shape):
        return rng.integers(0, 256, shape, np.uint8)

    def u16(*shape):
        return rng.integers(0, 65536, shape, np.uint16)

    cases = {
        "g8.png": u8(5, 7),
        "g16.png": u16(5, 7),
        "bgra.png": u8(5, 7, 4),
        "bgr16.png": u16(5, 7, 3),
        "g.jpg": u8(5, 7),
        "bgr.jpg": u8(5, 7, 3),
    }
    for name, stored in cases.items():
        assert cv2.imwrite(str(tmp_path / name), stored)
        img = frames.decode(tmp_path / name, "frame")
        if name.endswith(".png"):
            assert img.dtype == stored.dtype and np.array_equal(img, stored), name
        colour = cv2.imread(str(tmp_path / name), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
        expected = colour[..., ::-1].astype(np.float32) * np.float32(1 / np.iinfo(colour.dtype).max)
        assert np.array_equal(frames.read_image(tmp_path / name), expected), name
    rgb, alpha = frames.read_image(tmp_path / "bgra.png", alpha=True)
    assert np.allclose(alpha, cases["bgra.png"][..., 3] / 255, rtol=0, atol=1e-7) and rgb.shape == (5, 7, 3)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG junk")
    (tmp_path / "empty.png").write_bytes(b"")
    readers = {
        "frame": lambda p: frames.read_image(p, "frame"),
        "keyframe 2 image": digest.image_digest,
        "region map": lambda p: regions.LabelImages([p], "--regions").read(0),
    }
    for what, read in readers.items():
        for name, message in (
            ("bad.png", f"cannot decode {what} bad.png: not an image or corrupt file"),
            ("empty.png", f"cannot decode {what} empty.png: not an image or corrupt file"),
            ("missing.png", f"{what} {tmp_path / 'missing.png'}: not found"),
        ):
            with pytest.raises(StylizeError) as err:
                read(str(tmp_path / name)) if what != "keyframe 2 image" else read(str(tmp_path / name), what)
            assert str(err.value) == message, (what, name)
