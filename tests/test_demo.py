import os

import cv2
import numpy as np

from stylize_core import demo
from stylize_core.io.frames import read_image


def test_clip_frames_count_size_and_motion(tmp_path):
    paths = demo.make_clip(str(tmp_path / "clip"), frames=8, size=(160, 96))
    assert paths == [str(tmp_path / "clip" / f"frame_{i:05d}.png") for i in range(1, 9)]
    assert sorted(os.listdir(tmp_path / "clip")) == [os.path.basename(p) for p in paths]
    imgs = [read_image(p) for p in paths]
    assert all(im.shape == (96, 160, 3) for im in imgs)
    steps = [np.abs(b - a).mean() for a, b in zip(imgs, imgs[1:])]
    assert min(steps) > 0.01  # every frame moves
    assert imgs[0].std() > 0.1  # textured, not flat


def test_clip_is_deterministic(tmp_path):
    a = demo.make_clip(str(tmp_path / "a"), frames=3, seed=1)
    b = demo.make_clip(str(tmp_path / "b"), frames=3, seed=1)
    c = demo.make_clip(str(tmp_path / "c"), frames=3, seed=2)
    for pa, pb in zip(a, b):
        assert open(pa, "rb").read() == open(pb, "rb").read()
    assert np.abs(read_image(a[0]) - read_image(c[0])).mean() > 0.05


def test_style_is_colourful_and_deterministic(tmp_path):
    p = demo.make_style(str(tmp_path / "style.png"), size=(200, 120), seed=0)
    assert p == str(tmp_path / "style.png")
    img = read_image(p)
    assert img.shape == (120, 200, 3)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)  # H in degrees, S and V in [0, 1]
    assert hsv[..., 1].mean() > 0.5
    hues = np.bincount((hsv[..., 0] // 60).astype(int).ravel(), minlength=6) / hsv[..., 0].size
    assert (hues > 0.05).sum() >= 4  # at least 4 of 6 hue sectors
    demo.make_style(str(tmp_path / "again.png"), size=(200, 120), seed=0)
    assert open(p, "rb").read() == open(tmp_path / "again.png", "rb").read()
    demo.make_style(str(tmp_path / "other.png"), size=(200, 120), seed=1)
    assert np.abs(read_image(str(tmp_path / "other.png")) - img).mean() > 0.1
