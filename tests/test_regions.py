"""Style regions (issue #10): guided Gram matrices, region maps (label images, EXR index passes,
Cryptomatte, mattes), the label -> style mapping, keep regions, blends, fast mode's region guide
and the CLI's checks. Tiny images and random VGG-19s."""

import json
import struct

import cv2
import numpy as np
import pytest
import torch

from conftest import run_cli, texture
from stylize_core.errors import StylizeError
from stylize_core.io import exr, regions
from stylize_core.modes.fast import synthesis as fast
from stylize_core.motion.warp import warp_numpy
from stylize_core.network.losses import STYLE_LAYERS, gram, guided_gram, style_loss
from stylize_core.network.optimize import Stylizer, to_tensor
from stylize_core.network.region_style import RegionStylizer
from stylize_core.network.weights import load_vgg
from stylize_core.settings import Settings

FAST = ["--vgg", "random:8", "--iterations", "4", "--iterations-later", "3", "--progress", "json"]
FAST_MODE = [
    *(v for v in FAST if v not in ("--iterations-later", "3")),
    "--keyframe-method",
    "optimise",
]  # no later iterations


@pytest.fixture(scope="module")
def vgg():
    return load_vgg("random:4")


def red_flat():
    img = np.zeros((32, 32, 3), np.float32)
    img[..., 0] = 0.9
    return img


def blue_stripes():
    img = np.full((32, 32, 3), 0.95, np.float32)
    img[0::4], img[1::4] = (0, 0, 1), (0, 0, 1)
    return img


def one_hot(labels, values, feather=regions.FEATHER):
    out = np.stack([(labels == v).astype(np.float32) for v in values])
    return np.stack([cv2.GaussianBlur(m, (0, 0), feather, borderType=cv2.BORDER_REFLECT) for m in out])


def save_png(path, img):
    cv2.imwrite(
        str(path), img if img.dtype != np.float32 else np.clip(img[..., ::-1] * 255 + 0.5, 0, 255).astype(np.uint8)
    )
    return path


# -- the loss ----------------------------------------------------------------------------
def test_guided_gram_normalisation():
    f = torch.randn(1, 6, 8, 10)
    assert torch.allclose(guided_gram(f, torch.ones(1, 1, 8, 10)), gram(f), rtol=1e-6, atol=1e-7)
    left = torch.zeros(1, 1, 8, 10)
    left[..., :4] = 1
    # a hard mask: the Gram of the masked part alone, normalised by its own area (C x 8 x 4)
    assert torch.allclose(guided_gram(f, left), gram(f[..., :4]), rtol=1e-5, atol=1e-6)
    # an empty mask gives zeros, never a division by zero
    assert float(guided_gram(f, torch.zeros(1, 1, 8, 10)).abs().max()) == 0


def test_one_full_frame_region_is_the_plain_loss_and_blends_use_the_blended_gram(vgg):
    content, a, b = texture(24, 32, 1), texture(32, 32, 2), texture(32, 32, 3)
    s = Settings()
    plain = Stylizer(vgg, a, s).losses(content * 0.8, content)
    region = RegionStylizer(vgg, [a], [([(0, 1.0)], 1.0)], s).losses(
        content * 0.8, content, np.ones((1, 24, 32), np.float32)
    )
    for k in ("content", "style", "tv"):
        assert region[k] == pytest.approx(plain[k], rel=1e-5), k
    blend = Stylizer(vgg, [(a, 7.0), (b, 3.0)], s)  # weights normalised: 0.7, 0.3
    ga, gb = Stylizer(vgg, a, s).style_grams((24, 32)), Stylizer(vgg, b, s).style_grams((24, 32))
    for g, x, y in zip(blend.style_grams((24, 32)), ga, gb):
        assert torch.allclose(g, 0.7 * x + 0.3 * y, rtol=1e-5, atol=1e-6)
    # sum_k w_k |G - G_k|^2 = |G - sum_k w_k G_k|^2 + const: the same gradient
    x = to_tensor(content, "cpu").requires_grad_(True)
    feats = blend.features(x)
    grams = [gram(feats[n]) for n in STYLE_LAYERS]
    (g1,) = torch.autograd.grad(style_loss(grams, blend.style_grams((24, 32))), x, retain_graph=True)
    (g2,) = torch.autograd.grad(0.7 * style_loss(grams, ga) + 0.3 * style_loss(grams, gb), x)
    assert torch.allclose(g1, g2, rtol=1e-3, atol=1e-6 * float(g2.abs().max()))


def test_two_regions_take_their_own_style_and_keep_stays(vgg):
    """Left third flat red, middle third kept, right third blue stripes (24x48, 30 iterations)."""
    h, w = 24, 48
    content = texture(h, w, 1)
    labels = np.repeat(np.arange(w)[None] // 16, h, 0)
    masks = one_hot(labels, (0, 1, 2))
    red, blue = red_flat(), blue_stripes()
    st = RegionStylizer(vgg, [red, blue], [([(0, 1.0)], 1.0), (None, 1.0), ([(1, 1.0)], 1.0)], Settings(tolerance=0.0))
    out = st.stylize(content, masks, iterations=30, keep=masks[1])
    inner = [slice(0, 13), slice(19, 29), slice(35, 48)]  # >= 3 px from the soft edges
    left, middle, right = (out[:, s] for s in inner)
    mean = {"red": red.reshape(-1, 3).mean(0), "blue": blue.reshape(-1, 3).mean(0)}

    def dist(region, style):
        return float(np.abs(region.reshape(-1, 3).mean(0) - mean[style]).sum())

    assert dist(left, "red") < 0.7 * dist(left, "blue")  # measured 0.45 (flat red vs texture)
    assert dist(right, "blue") < 0.3 * dist(right, "red")  # measured 0.14
    # guided Grams of each region: closer to its own style's than to the other's
    with torch.no_grad():
        feats = st.features(to_tensor(out, "cpu"))
        m = to_tensor(masks.transpose(1, 2, 0), "cpu")
        for r, own, other, ratio in ((0, 0, 1, 0.6), (2, 1, 0, 0.5)):  # measured 0.42, 0.26
            guided = [
                guided_gram(
                    feats[n], torch.nn.functional.interpolate(m[:, r : r + 1], size=feats[n].shape[-2:], mode="area")
                )
                for n in STYLE_LAYERS
            ]
            d_own = float(style_loss(guided, st.blend_grams([(own, 1.0)], (h, w))))
            d_other = float(style_loss(guided, st.blend_grams([(other, 1.0)], (h, w))))
            assert d_own < ratio * d_other, (r, d_own, d_other)
    # the kept third is the input away from its soft edges
    assert float(np.abs(middle - content[:, inner[1]]).mean()) < 0.02


def test_temporal_loss_lowers_the_warping_error_across_a_moving_border(vgg):
    """Frame t+1 = frame t shifted by (3, 2) px, the red | blue border moving with it."""
    h, w = 24, 32
    frame_t = texture(h, w, 4)
    labels_t = (np.arange(w)[None].repeat(h, 0) >= 14).astype(np.int64)
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = -3, -2  # flow t+1 -> t
    frame_t1, _ = warp_numpy(frame_t, flow)
    labels_t1 = (np.arange(w)[None].repeat(h, 0) >= 17).astype(np.int64)
    st = RegionStylizer(
        vgg,
        [red_flat(), blue_stripes()],
        [([(0, 1.0)], 1.0), ([(1, 1.0)], 1.0)],
        Settings(init="random", tolerance=0.0),
    )
    s_t = st.stylize(frame_t, one_hot(labels_t, (0, 1)), iterations=15, seed=1)
    warped, valid = warp_numpy(s_t, flow)
    m1 = one_hot(labels_t1, (0, 1))
    band = np.zeros((h, w), bool)
    band[:, 13:21] = True  # +-4 px around the border of frame t+1

    def error(img, where):
        c = valid * where
        return float((c[..., None] * (img - warped) ** 2).sum() / (3 * c.sum()))

    per_frame = st.stylize(frame_t1, m1, iterations=15, seed=2)
    temporal = st.stylize(frame_t1, m1, init=warped, temporal=[(warped, valid)], iterations=15)
    assert error(temporal, 1.0) < 0.3 * error(per_frame, 1.0)
    assert error(temporal, band) < 0.3 * error(per_frame, band)


# -- maps and the mapping ----------------------------------------------------------------
def test_style_weights_and_region_values_parse():
    assert regions.parse_weighted("a.jpg:0.7") == ("a.jpg", 0.7)
    assert regions.parse_weighted("C:\\art\\a.jpg") == ("C:\\art\\a.jpg", 1.0)
    assert regions.parse_weighted("C:\\art\\a.jpg:2") == ("C:\\art\\a.jpg", 2.0)
    assert regions.normalise([("a", 3), ("b", 1)]) == (("a", 0.75), ("b", 0.25))
    assert regions.parse_region("Cube=oil.jpg:0.5") == ("Cube", regions.Region((("oil.jpg", 1.0),), 0.5))
    assert regions.parse_region("sky=keep")[1].keep
    for bad in ("3", "=a.jpg", "3="):
        with pytest.raises(StylizeError, match="LABEL=IMAGE"):
            regions.parse_region(bad)
    with pytest.raises(StylizeError, match="must not all be 0"):
        regions.normalise([("a", 0.0)])


def test_region_map_json(tmp_path):
    (tmp_path / "styles").mkdir()
    path = tmp_path / "map.json"
    path.write_text(
        json.dumps(
            {
                "3": {"style": [["styles/a.png", 3], ["/abs/b.png", 1]], "strength": 0.5},
                "0": "keep",
                "*": "styles/c.png",
            }
        )
    )
    m = regions.build_mapping(["7=d.png"], path, style=(("e.png", 1.0),))
    assert m.entries == ["3", "0", "7", "*"]
    assert m.regions[0] == regions.Region(((str(tmp_path / "styles/a.png"), 0.75), ("/abs/b.png", 0.25)), 0.5)
    assert m.regions[1].keep and m.regions[3].style == ((str(tmp_path / "styles/c.png"), 1.0),)  # '*' wins
    assert m.index("3") == 0 and m.index("42") == 3
    assert regions.build_mapping(["7=d.png"]).index("42") is None
    path.write_text('{"3": {"style": 5}}')
    with pytest.raises(StylizeError, match="label '3'"):
        regions.build_mapping((), path)


def test_label_maps_of_another_size_are_resized_nearest(tmp_path):
    (tmp_path / "maps").mkdir()
    lab = np.full((64, 96), 1000, np.uint16)
    lab[:, 48:] = 2000  # 16-bit labels, twice the frame size
    save_png(tmp_path / "maps" / "m1.png", lab)
    style = save_png(tmp_path / "s.png", red_flat())
    r = regions.Regions(regions.RegionOptions(str(tmp_path / "maps"), region=("1000=" + str(style), "2000=keep")))
    r.check(1)
    assert r.labels == {"1000", "2000"}
    m = r.masks(0, (48, 32))
    assert m.shape == (2, 32, 48) and np.allclose(m.sum(0), 1, atol=1e-5)
    assert np.allclose(m[0][:, :20], 1) and np.allclose(m[1][:, 28:], 1)
    assert 0.3 < m[0][10, 23] < 0.9  # a soft edge, about FEATHER px wide
    regions.FEATHER, old = 0.0, regions.FEATHER
    try:
        hard = r.masks(0, (47, 31))  # nearest: never a label in between
        assert set(np.unique(hard)) <= {0.0, 1.0}
    finally:
        regions.FEATHER = old


def test_mattes_are_soft_and_resized_by_area(tmp_path):
    (tmp_path / "m").mkdir()
    v = np.zeros((32, 48, 4), np.uint8)
    v[..., 3] = np.linspace(0, 255, 48).astype(np.uint8)[None]  # the alpha channel is the matte
    save_png(tmp_path / "m" / "a.png", v)
    r = regions.Regions(regions.RegionOptions(matte=str(tmp_path / "m"), region=("0=keep", "1=keep")))
    r.check(1)
    m = r.masks(0, (24, 16))
    expected = cv2.resize(v[..., 3].astype(np.float32) / 255, (24, 16), interpolation=cv2.INTER_AREA)
    assert np.allclose(m[1], expected, atol=1e-5) and np.allclose(m[0], 1 - expected, atol=1e-5)


def _hex_float(h):
    return struct.unpack("<f", struct.pack("<I", int(h, 16)))[0]


def write_blender_exr(path, rgb, index, crypto, blender5=False):
    """A multilayer EXR as Blender writes it (measured on bpy 4.2 / 5.2 renders): 4.x one part,
    ``ViewLayer.IndexOB.X`` and lower-case ``CryptoObject00.r/g/b/a``; 5.x one part per pass,
    ``ViewLayer.Object Index.X``, the Cryptomatte attributes on the first part only.
    ``crypto``: ``{name: coverage (H, W)}`` (at most 2 per pixel here)."""
    names = {"Cube": "a8fce865", "Ball": "74d3ebe9"}
    h, w = index.shape
    ids, covs = [np.zeros((h, w), np.float32) for _ in range(2)], [np.zeros((h, w), np.float32) for _ in range(2)]
    order = np.argsort(-np.stack([crypto[n] for n in names]), 0)  # rank by coverage
    for rank in range(2):
        for k, n in enumerate(names):
            sel = order[rank] == k
            ids[rank][sel] = np.where(crypto[n][sel] > 0, _hex_float(names[n]), 0)
            covs[rank][sel] = crypto[n][sel]
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    index_name = "ViewLayer.Object Index.X" if blender5 else "ViewLayer.IndexOB.X"
    ch = {f"ViewLayer.Combined.{c}": lin[..., k] for k, c in enumerate("RGB")}
    ch[index_name] = index.astype(np.float32)
    ch.update(
        {
            "ViewLayer.CryptoObject00.r": ids[0],
            "ViewLayer.CryptoObject00.g": covs[0],
            "ViewLayer.CryptoObject00.b": ids[1],
            "ViewLayer.CryptoObject00.a": covs[1],
        }
    )
    attrs = {
        "cryptomatte/542cafa/name": "ViewLayer.CryptoObject",
        "cryptomatte/542cafa/hash": "MurmurHash3_32",
        "cryptomatte/542cafa/conversion": "uint32_to_float32",
        "cryptomatte/542cafa/manifest": json.dumps(names),
    }
    parts = (
        {
            "ViewLayer.Combined": [f"ViewLayer.Combined.{c}" for c in "RGB"],
            "ViewLayer.Object Index": [index_name],
            "ViewLayer.CryptoObject00": [n for n in ch if "Crypto" in n],
        }
        if blender5
        else None
    )
    exr.write_exr(path, ch, attrs, parts)


def blender_clip(folder, frames=2, size=(48, 32), blender5=False):
    """EXR frames: a Cube (left, index 3) and a Ball (right, index 7) on the world (index 0), the
    Ball's left edge anti-aliased (coverage 0.5) and moving 2 px a frame."""
    folder.mkdir(parents=True)
    w, h = size
    for t in range(frames):
        x = np.arange(w)[None].repeat(h, 0).astype(np.float32)
        cube = (x < 16).astype(np.float32)
        ball = np.clip(x - (28 + 2 * t) + 0.5, 0, 1)
        ball[:4] = 0  # the world shows above the Ball
        index = np.where(cube > 0, 3, np.where(ball >= 0.5, 7, 0))
        write_blender_exr(
            folder / f"frame_{t + 1:04d}.exr", texture(h, w, t), index, {"Cube": cube, "Ball": ball}, blender5
        )
    return folder


@pytest.mark.parametrize("blender5", [False, True])
def test_blender_exr_index_and_cryptomatte_layers(tmp_path, blender5):
    clip = blender_clip(tmp_path / "in", blender5=blender5)
    paths = sorted(str(p) for p in clip.iterdir())
    r = regions.Regions(regions.RegionOptions(regions.INPUT, region=("*=keep",)), None, paths)
    assert r.layer == "IndexOB"  # the default when present
    r.check(2)
    assert r.labels == {"0", "3", "7"}
    crypto = regions.Regions(
        regions.RegionOptions(regions.INPUT, "CryptoObject", region=("Cube=keep", "Ball=keep", "background=keep")),
        None,
        paths,
    )
    crypto.check(2)
    assert crypto.labels == {"Cube", "Ball", "background"}
    data = crypto.source.read(1)
    assert data["Ball"][10, 30] == pytest.approx(0.5) and data["background"][10, 30] == pytest.approx(0.5)
    assert data["Cube"][10, 5] == pytest.approx(1) and data["background"][2, 40] == pytest.approx(1)
    m = crypto.masks(1, (48, 32))
    assert np.allclose(m.sum(0), 1, atol=1e-5) and m[1][10, 30] == pytest.approx(0.5)


# -- the CLI -----------------------------------------------------------------------------
def label_clip(tmp_path, frames=3, size=(48, 32)):
    """A generated clip with label maps (0 left, 7 right; the border moves 2 px a frame) and
    the two styles."""
    from conftest import generated_clip

    clip = generated_clip(tmp_path, frames, size)
    (clip / "maps").mkdir()
    w, h = size
    for t in range(frames):
        lab = np.zeros((h, w), np.uint8)
        lab[:, w // 2 + 2 * t :] = 7
        save_png(clip / "maps" / f"map_{t + 1:03d}.png", lab)
    save_png(clip / "red.png", red_flat())
    save_png(clip / "blue.png", blue_stripes())
    return clip


@pytest.mark.parametrize("mode", ["quality", "fast"])
def test_cli_regions_end_to_end(tmp_path, capsys, mode):
    from stylize_core.io.frames import read_image

    clip = label_clip(tmp_path)
    out = clip / "out"
    args = [
        "stylize",
        clip / "in",
        "--regions",
        clip / "maps",
        "--region",
        f"0={clip / 'red.png'}:0.8",
        "--region",
        "7=keep",
        "--out",
        out,
        "--mode",
        mode,
        *(FAST if mode == "quality" else FAST_MODE),
    ]
    code, events, err = run_cli(args, capsys)
    assert code == 0, err
    manifest = json.loads((out / "job.json").read_text())
    assert manifest["style"] is None and manifest["regions"]["labels"] == ["0", "7"]
    assert manifest["regions"]["mapping"] == {
        "0": {"style": [[str(clip / "red.png"), 1.0]], "strength": 0.8},
        "7": "keep",
    }
    assert manifest["identity"]["regions"]["maps"]
    for t in range(3):
        got, src = read_image(out / f"frame_{t + 1:05d}.png"), read_image(sorted((clip / "in").iterdir())[t])
        border = 24 + 2 * t
        assert np.abs(got - src)[:, border + 3 :].mean() < 0.02  # kept: the input
        assert np.abs(got - src)[:, : border - 3].mean() > 0.05  # stylised
    # another region map is another job
    lab = cv2.imread(str(clip / "maps" / "map_002.png"), cv2.IMREAD_UNCHANGED)
    lab[0, 0] = 7
    save_png(clip / "maps" / "map_002.png", lab)
    code, _, err = run_cli(args, capsys)
    assert code == 1 and "regions.maps" in err


def test_cli_style_blend_and_crypto_input(tmp_path, capsys):
    clip = blender_clip(tmp_path / "in")
    save_png(tmp_path / "red.png", red_flat())
    save_png(tmp_path / "blue.png", blue_stripes())
    out = tmp_path / "out"
    code, _, err = run_cli(
        [
            "stylize",
            clip,
            "--style",
            f"{tmp_path / 'red.png'}:3",
            "--style",
            f"{tmp_path / 'blue.png'}:1",
            "--regions",
            "input",
            "--regions-layer",
            "CryptoObject",
            "--region",
            "Cube=keep",
            "--out",
            out,
            *FAST,
        ],
        capsys,
    )
    assert code == 0, err
    manifest = json.loads((out / "job.json").read_text())
    assert manifest["style"] == [[str(tmp_path / "red.png"), 0.75], [str(tmp_path / "blue.png"), 0.25]]
    assert manifest["regions"]["layer"] == "CryptoObject"
    assert manifest["regions"]["mapping"]["*"]["style"] == manifest["style"]
    assert set(manifest["regions"]["labels"]) == {"Ball", "Cube", "background"}


def bad_region_cases(tmp_path):
    clip = label_clip(tmp_path)
    red = clip / "red.png"
    (clip / "short").mkdir()
    save_png(clip / "short" / "a.png", np.zeros((32, 48), np.uint8))
    (clip / "long").mkdir()
    for t in range(4):
        save_png(clip / "long" / f"a{t}.png", np.zeros((32, 48), np.uint8))
    (clip / "broken").mkdir()
    for t in range(3):
        (clip / "broken" / f"m{t}.png").write_bytes(b"not an image")
    (clip / "colour").mkdir()
    for t in range(3):
        save_png(clip / "colour" / f"m{t}.png", texture(32, 48, t))
    maps = ["--regions", clip / "maps"]
    return clip, [
        ([*maps, "--region", f"0={red}"], "label '7' in frame 1 has no style"),
        (["--regions", clip / "short", "--region", f"*={red}"], "1 region map for 3 input frames"),
        (["--regions", clip / "long", "--region", f"*={red}"], "4 region maps for 3 input frames"),
        (
            ["--regions", clip / "broken", "--region", f"*={red}", "--max-frames", "2"],
            "cannot decode region map m0.png",
        ),
        (["--regions", clip / "broken", "--region", f"*={red}"], "cannot decode region map m0.png"),
        (["--regions", clip / "colour", "--region", f"*={red}"], "is a colour image"),
        ([*maps, "--region", f"*={clip / 'missing.png'}"], "style image not found"),
        ([*maps, "--region", "0"], "expected LABEL=IMAGE"),
        (["--region", f"0={red}", "--style", red], "--region needs region maps"),
        ([*maps, "--regions-layer", "Depth", "--style", red], "choose from IndexOB, IndexMA, CryptoObject"),
        (["--regions", "input", "--style", red], "--regions input reads the input's multilayer EXR"),
        ([], "--style is required"),
    ]


def test_bad_region_inputs_give_one_clear_line(tmp_path, capsys):
    clip, cases = bad_region_cases(tmp_path)
    for args, expected in cases:
        out = clip / "out"
        code = __import__("stylize_core.cli", fromlist=["main"]).main(
            ["stylize", str(clip / "in"), *map(str, args), "--out", str(out), "--progress", "none", "--vgg", "random:8"]
        )
        err = capsys.readouterr().err.strip()
        assert code == 1, args
        assert err.startswith("error: ") and len(err.splitlines()) == 1, err
        assert expected in err, (expected, err)
        assert not out.exists()  # nothing recorded


def test_info_lists_the_region_layers(capsys):
    from stylize_core import cli

    assert cli.main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["region_layers"] == ["IndexOB", "IndexMA", "CryptoObject", "CryptoMaterial", "CryptoAsset"]


# -- fast mode: the region guide -------------------------------------------------------------
def test_fast_mode_region_guide_keeps_matches_inside_their_region():
    """The same grey texture on both sides of a border that moves 6 px to the right; the keyframe
    is red left of it and blue right of it. Without the guide the pixels the border passed keep
    their advected (blue) match; with it they take red from the keyframe's own region."""
    h, w = 32, 48
    grey = texture(h, w, 9).mean(2, keepdims=True).repeat(3, 2)
    left0 = np.arange(w)[None].repeat(h, 0) < 20
    left1 = np.arange(w)[None].repeat(h, 0) < 26
    styled = np.where(left0[..., None], np.float32([0.9, 0.1, 0.1]), np.float32([0.1, 0.1, 0.9])) * (0.5 + 0.5 * grey)
    zero = np.zeros((h, w, 2), np.float32)
    ones = np.ones((h, w), np.float32)

    def run(guided):
        r0 = np.stack([left0, ~left0], -1).astype(np.float32)
        r1 = np.stack([left1, ~left1], -1).astype(np.float32)
        prop = fast.Propagator(grey, styled, backend="torch", key_regions=r0 if guided else None)
        out = prop.step(grey, zero, zero, ones, r1 if guided else None)
        strip = out[:, 21:25]  # left of the new border, right of the old
        return float((strip[..., 0] > strip[..., 2]).mean())

    assert run(True) > 0.95 and run(False) < 0.2
