"""Flow estimation (DIS, DeepFlow) accuracy, and the flow sources the scheduler uses."""

import cv2
import numpy as np
import pytest

from conftest import shared_data
from stylize_core.errors import StylizeError
from stylize_core.io import exr
from stylize_core.io.flowio import read_flo, write_flo
from stylize_core.motion import flow

SHIFT = (2.5, -1.25)
needs_deepflow = pytest.mark.skipif(
    "deepflow" not in flow.available_methods(), reason="opencv-contrib (cv2.optflow) not installed"
)


def shifted_pair(d=SHIFT, h=96, w=128, m=16):
    """A smooth random texture and the same texture moved by ``d`` pixels: the flow a->b is ``d``."""
    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur(rng.random((h + 2 * m, w + 2 * m, 3)).astype(np.float32), (0, 0), 2.0)
    big = (big - big.min()) / (big.max() - big.min())
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return big[m : m + h, m : m + w].copy(), cv2.remap(big, xs + m - d[0], ys + m - d[1], cv2.INTER_CUBIC)


def load_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255


def epe(f, g):
    return np.linalg.norm(f - g, axis=-1)


@pytest.mark.parametrize(
    "method,scale",
    [
        ("dis", 1.0),
        ("dis", 0.5),
        pytest.param("deepflow", 1.0, marks=needs_deepflow),
        pytest.param("deepflow", 0.5, marks=needs_deepflow),
    ],
)
def test_recovers_a_subpixel_shift(method, scale):
    a, b = shifted_pair()
    f = flow.estimate(a, b, method, "medium", scale)
    assert f.shape == (96, 128, 2) and f.dtype == np.float32  # full size even at scale 0.5
    err = epe(f, SHIFT)[12:-12, 12:-12]
    assert err.mean() < 0.25 and err.max() < 0.5, (err.mean(), err.max())


def test_flow_tiny_epe_is_sane():
    """50x50 FlyingChairs crop, nearly static (mean |flow| 0.3 px): DIS must not invent motion."""
    d = shared_data("flow_tiny")
    img0, img1 = load_rgb(d / "0000000-img_0.png"), load_rgb(d / "0000000-img_1.png")
    for a, b, gt in ((img0, img1, "0000000-flow_01.flo"), (img1, img0, "0000000-flow_10.flo")):
        e = epe(flow.estimate(a, b, "dis"), read_flo(d / gt)).mean()
        assert e < 1.5, e


def test_sintel_epe():
    d = shared_data("sintel_pairs", "alley_1_clean_0002")
    a, b, gt = load_rgb(d / "frame_t.png"), load_rgb(d / "frame_t1.png"), read_flo(d / "flow_forward.flo")
    zero = np.linalg.norm(gt, axis=-1).mean()  # ~3.0 px
    full, half = flow.estimate(a, b, "dis"), flow.estimate(a, b, "dis", scale=0.5)
    assert half.shape == full.shape == gt.shape
    assert epe(full, gt).mean() < min(0.6, 0.2 * zero)  # measured 0.34
    assert epe(half, gt).mean() < min(0.8, 0.25 * zero)  # measured 0.52


def test_method_errors():
    a, b = shifted_pair()
    with pytest.raises(StylizeError, match="unknown flow method 'nope'"):
        flow.estimate(a, b, "nope")
    with pytest.raises(StylizeError, match="unknown DIS preset"):
        flow.estimate(a, b, "dis", "slowest")
    with pytest.raises(StylizeError, match="scale"):
        flow.estimate(a, b, "dis", scale=0)
    assert flow.available_methods()[0] == "dis"
    if "raft" not in flow.available_methods():
        with pytest.raises(StylizeError, match="RAFT.*torchvision"):
            flow.make_flow_source("raft", None, (128, 96))


def test_estimated_source_caches_to_disk(tmp_path, monkeypatch):
    a, b = shifted_pair()
    frames = [a, b, a]
    src = flow.make_flow_source("dis", frames.__getitem__, (128, 96), cache_dir=tmp_path)
    first = src.flow(0, 1)
    [cached] = tmp_path.rglob("*.flo")  # one sub-folder per flow setting
    assert cached.name == "flow_00001_00002.flo" and cached.parent.parent == tmp_path
    np.testing.assert_array_equal(read_flo(cached), first)
    assert abs(np.median(src.flow(1, 2)[..., 0]) + SHIFT[0]) < 0.1  # long pairs work too (b -> a)

    def boom(*args, **kwargs):
        raise AssertionError("recomputed a cached flow")

    monkeypatch.setattr(flow, "estimate", boom)
    np.testing.assert_array_equal(src.flow(0, 1), first)
    # another preset or scale is another cache entry; DeepFlow has no presets
    for preset, scale in (("fast", 1.0), ("medium", 0.5)):
        other = flow.make_flow_source(
            "dis", frames.__getitem__, (128, 96), cache_dir=tmp_path, preset=preset, scale=scale
        )
        with pytest.raises(AssertionError, match="recomputed"):
            other.flow(0, 1)
    assert flow.cache_key("deepflow", "fast", 1) == flow.cache_key("deepflow", "medium", 1.0)
    assert len({flow.cache_key("dis", p, s) for p in flow.DIS_PRESETS for s in (0.5, 1)}) == 2 * len(flow.DIS_PRESETS)


def test_flo_folder_source(tmp_path):
    f = np.random.default_rng(0).normal(size=(6, 8, 2)).astype(np.float32)
    write_flo(tmp_path / "flow_00003_00001.flo", f)
    src = flow.make_flow_source("flo", None, (8, 6), flow_dir=tmp_path)
    np.testing.assert_array_equal(src.flow(2, 0), f)
    with pytest.raises(StylizeError, match=r"missing flow file .*flow_00001_00002\.flo"):
        src.flow(0, 1)
    with pytest.raises(StylizeError, match="flow is 8x6, frames are 9x6"):
        flow.make_flow_source("flo", None, (9, 6), flow_dir=tmp_path).flow(2, 0)
    f[1, 1, 0] = np.inf
    write_flo(tmp_path / "flow_00003_00001.flo", f)
    with pytest.raises(StylizeError, match="NaN or infinite"):
        src.flow(2, 0)
    with pytest.raises(StylizeError, match="flow folder not found"):
        flow.make_flow_source("flo", None, (8, 6), flow_dir=tmp_path / "nope")
    with pytest.raises(StylizeError, match="needs a folder"):
        flow.make_flow_source("flo", None, (8, 6))


def test_vector_source_composes_consecutive_flows(tmp_path):
    """Uniform per-frame Vector passes; flows to t-1 are (X, -Y), to t+1 are (-Z, W)."""
    paths = []
    for i, (x, y, z, w) in enumerate([(0, 0, -1, 2), (1, -2, -3, 0.5), (3, -0.5, 0, 0)]):
        paths.append(tmp_path / f"{i}.exr")
        exr.write_exr(
            paths[-1], {f"ViewLayer.Vector.{c}": np.full((6, 8), v, np.float32) for c, v in zip("XYZW", (x, y, z, w))}
        )
    src = flow.make_flow_source("vector", None, (8, 6), exr_paths=paths)
    np.testing.assert_allclose(src.flow(0, 1), np.broadcast_to([1, 2], (6, 8, 2)))
    # composed where the intermediate position stays inside frame 1
    np.testing.assert_allclose(src.flow(0, 2)[:4, :7], np.broadcast_to([4, 2.5], (4, 7, 2)))
    np.testing.assert_allclose(src.flow(2, 0)[:5, :5], np.broadcast_to([4, 2.5], (5, 5, 2)))
    half = flow.make_flow_source("vector", None, (4, 3), exr_paths=paths).flow(1, 2)
    np.testing.assert_allclose(half, np.broadcast_to([1.5, 0.25], (3, 4, 2)))


def test_job_caches_flows_at_the_processing_size(tmp_path, capsys):
    """Flows are estimated, cached and used at the processing size: a 64x48 clip at --scale 0.5
    caches 32x24 flows (it cached 64x48 ones, 4x the bytes, shrunk again on every use)."""
    from conftest import generated_clip, quick_argv, run_cli

    clip = generated_clip(tmp_path, 4, (64, 48))
    quick = "--scale 0.5 --long-term 1,2 --vgg random:8 --iterations 2 --iterations-later 2 --progress json".split()
    code, events, err = run_cli(quick_argv(clip, tmp_path / "out", *quick), capsys)
    assert code == 0, err
    cached = sorted((tmp_path / "out" / "flow").rglob("*.flo"))
    assert len(cached) == 2 * (3 + 2)  # offsets 1 and 2, both directions
    assert {read_flo(p).shape for p in cached} == {(24, 32, 2)}
