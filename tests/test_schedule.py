"""Schedules: prevWarped initialisation, long-term weights, multi-pass blending, flat memory."""

import os

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, shared_data
from stylize_core import demo, schedule
from stylize_core.io import flowio, frames
from stylize_core.motion.flow import resize_flow
from stylize_core.motion.warp import warp_numpy
from stylize_core.network.optimize import Stylizer
from stylize_core.settings import Settings


def static_clip(folder, n=3, size=(40, 32)):
    """``n`` identical frames (a static scene: zero flow, every pixel reliable)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    img = np.kron(rng.random((size[1] // 4, size[0] // 4, 3)), np.ones((4, 4, 1))).astype(np.float32)
    for i in range(n):
        frames.write_png(folder / f"f{i + 1}.png", img)
    return folder


@pytest.fixture
def recorded(monkeypatch):
    """Record every call to Stylizer.stylize (init and temporal terms) and run it."""
    calls = []
    real = Stylizer.stylize

    def record(self, content, init=None, temporal=(), **kw):
        out = real(self, content, init=init, temporal=temporal, **kw)
        calls.append({"init": None if init is None else init.copy(), "temporal": temporal, "out": out})
        return out

    monkeypatch.setattr(Stylizer, "stylize", record)
    return calls


def job(tmp_path, clip, **settings):
    demo.make_style(tmp_path / "style.png", size=(32, 32))
    s = Settings(iterations=4, iterations_later=3, pass_iterations=2, **settings)
    return schedule.Job(clip, tmp_path / "style.png", tmp_path / "out", s, vgg="random:8")


def test_prev_warped_init_of_a_static_scene_starts_at_the_previous_result(tmp_path, recorded):
    j = job(tmp_path, static_clip(tmp_path / "in"), temporal="short")
    j.run()
    first = frames.read_image(j.folder.frame(0))
    second = recorded[1]
    assert np.abs(second["init"] - first).max() <= 0.5 / 255 + 1e-6  # the saved 8-bit result
    ((warped, weights),) = second["temporal"]
    assert weights.min() == 1.0 and np.abs(warped - first).max() <= 0.5 / 255 + 1e-6


def test_long_term_terms_use_available_offsets_and_weights_stay_below_one(tmp_path, recorded):
    clip = tmp_path / "in"
    demo.make_clip(clip, frames=5, size=(48, 32))
    job(tmp_path, clip, temporal="long", long_term=(1, 2, 4)).run()
    assert [len(c["temporal"]) for c in recorded] == [0, 1, 2, 2, 3]
    for call in recorded[1:]:
        total = sum(c for _, c in call["temporal"])
        assert total.max() <= 1.0 and total.min() >= 0.0


def test_multi_pass_blends_with_the_warped_neighbour(tmp_path, recorded):
    j = job(tmp_path, static_clip(tmp_path / "in"), passes=3, temporal_from_pass=3, blend=0.5)
    j.run()
    assert len(recorded) == 9
    pass1, pass2, pass3 = recorded[:3], recorded[3:6], recorded[6:]
    assert all(not c["temporal"] for c in pass1 + pass2) and len(pass3[1]["temporal"]) == 1
    # pass 2 runs backwards (frames 3, 2, 1): frame 2 blends its pass-1 result with frame 3's
    # pass-2 result (zero flow, all reliable): init = 0.5 * neighbour + 0.5 * own previous
    expected = 0.5 * pass2[0]["out"] + 0.5 * pass1[1]["out"]
    assert np.abs(pass2[1]["init"] - expected).max() < 2e-3  # float16 pass storage
    assert np.abs(pass2[0]["init"] - pass1[2]["out"]).max() < 2e-3  # no neighbour: own result
    assert len(list((j.out / "passes").rglob("*.npy"))) == 9  # every pass is kept for resume
    assert len(list(j.out.glob("frame_*.png"))) == 3


def test_memory_holds_only_what_the_temporal_loss_needs(tmp_path):
    clip = tmp_path / "in"
    demo.make_clip(clip, frames=9, size=(32, 32))
    j = job(tmp_path, clip, temporal="long", long_term=(1, 3))
    sizes = []
    real = j.clip.keep
    j.clip.keep = lambda *a: (real(*a), sizes.append(len(j.clip._results)))
    j.run()
    assert max(sizes) <= 4 and len(sizes) == 9


def test_real_weights_stylise_a_sintel_pair(tmp_path):
    """With real VGG-19 weights (../shared/weights or STYLIZE_VGG19): on a Sintel pair the
    temporal loss lowers the warping error (ground-truth flow) without losing the style."""
    weights = SHARED_DATA.parent / "weights"  # not data: no VGG-19 weights exist on the project's machines
    path = os.environ.get("STYLIZE_VGG19") or next(iter(sorted(weights.glob("*.pth"))), None)
    if path is None:
        pytest.skip(f"no VGG-19 weights ($STYLIZE_VGG19, {weights}): they cannot be downloaded here")
    pair = shared_data("sintel_pairs", "alley_1_clean_0002")
    size = (256, 109)
    (tmp_path / "in").mkdir()
    for i, name in enumerate(("frame_t.png", "frame_t1.png")):
        frames.write_png(tmp_path / "in" / f"f{i}.png", frames.resize(frames.read_image(pair / name), size))
    demo.make_style(tmp_path / "style.png")
    flow = resize_flow(flowio.read_flo(pair / "flow_forward.flo"), size)
    mask = (
        frames.resize(
            (
                (frames.read_image(pair / "occlusion.png") < 0.5) & (frames.read_image(pair / "invalid.png") < 0.5)
            ).astype(np.float32),
            size,
        )[..., 0]
        > 0.99
    )
    results = {}
    for temporal in ("none", "short"):
        s = Settings(iterations=60, iterations_later=60, temporal=temporal)
        j = schedule.Job(tmp_path / "in", tmp_path / "style.png", tmp_path / temporal, s, vgg=path)
        s_t, s_t1 = (frames.read_image(p) for p in j.run())
        warped, valid = warp_numpy(s_t1, flow)
        m = mask & (valid > 0)
        content = frames.read_image(tmp_path / "in" / "f1.png")
        results[temporal] = (((s_t - warped) ** 2).mean(-1)[m].mean(), j.stylizer.losses(s_t1, content)["style"])
    assert results["short"][0] < 0.5 * results["none"][0]
    assert results["short"][1] < 2 * results["none"][1]


def shifted_job(tmp_path, **settings):
    """Two identical 40x32 frames with flows saying frame 2 is frame 1 moved 5 px left: the flow
    2->1 of the 5 right-hand columns leaves the frame (unreliable)."""
    clip = static_clip(tmp_path / "in", n=2)
    flows = tmp_path / "flows"
    flows.mkdir()
    shift = np.zeros((32, 40, 2), np.float32)
    shift[..., 0] = 5
    flowio.write_flo(flows / "flow_00002_00001.flo", shift)
    flowio.write_flo(flows / "flow_00001_00002.flo", -shift)
    demo.make_style(tmp_path / "style.png", size=(32, 32))
    s = Settings(iterations=4, iterations_later=3, temporal="short", flow="flo", **settings)
    return schedule.Job(clip, tmp_path / "style.png", tmp_path / "out", s, vgg="random:8", flow_dir=flows)


def test_widened_weights_reach_the_temporal_loss(tmp_path, recorded):
    """reliability_widen=2: the 5 excluded columns grow to 7, then a ramp (0.5 at 3 px) to 1 at 4 px."""
    shifted_job(tmp_path, reliability_widen=2.0).run()
    ((_, weights),) = recorded[1]["temporal"]
    assert (weights[:, 33:] == 0).all() and np.allclose(weights[:, 32], 0.5, atol=0.01)
    assert (weights[:, :31] == 1).all()


def test_random_init_fills_unreliable_pixels_with_the_mean_pixel(tmp_path, recorded):
    """init=random: where the warped previous result is unreliable (here: the 5 right-hand columns,
    whose flow 2->1 leaves the frame) the second frame starts from the mean pixel, not black."""
    from stylize_core.network.vgg import MEAN_PIXEL

    shifted_job(tmp_path, init="random").run()
    init = recorded[1]["init"]
    np.testing.assert_allclose(init[:, 35:], np.broadcast_to(np.float32(MEAN_PIXEL), (32, 5, 3)), atol=1e-6)
    assert np.allclose(MEAN_PIXEL, (0.48502, 0.45796, 0.40761), atol=1e-5)
    first = recorded[0]["out"]
    assert np.abs(init[:, :35] - first[:, 5:]).max() <= 0.5 / 255 + 1e-6  # reliable: the warped result
    ((_, weights),) = recorded[1]["temporal"]
    assert (weights[:, 35:] == 0).all() and (weights[:, :35] == 1).all()


def test_paper_multipass_first_pass_is_independent_from_one_noise(tmp_path, recorded, monkeypatch):
    """paper-multipass: pass 1 optimises every frame on its own from the same noise image (no warped
    neighbour, no temporal term); the temporal term appears in pass 8 of 15, not before."""
    starts = []
    real = Stylizer._optimise
    monkeypatch.setattr(
        Stylizer, "_optimise", lambda self, x, *a: (starts.append(x.detach().clone()), real(self, x, *a))[1]
    )
    clip = tmp_path / "in"
    demo.make_clip(clip, frames=3, size=(40, 32))
    demo.make_style(tmp_path / "style.png", size=(32, 32))
    s = Settings.from_preset("paper-multipass", pass_iterations=2, flow="dis")
    assert (s.passes, s.temporal_from_pass, s.first_pass, s.init) == (15, 8, "independent", "random")
    schedule.Job(clip, tmp_path / "style.png", tmp_path / "out", s, vgg="random:8").run()
    assert len(recorded) == 45
    pass1 = recorded[:3]
    assert all(c["init"] is None and not c["temporal"] for c in pass1)
    assert torch.equal(starts[0], starts[1]) and torch.equal(starts[0], starts[2])  # one noise image
    assert 0.3 < float(starts[0].mean()) < 0.7 and float(starts[0].std()) > 0.05  # and it is noise
    by_pass = [recorded[3 * k : 3 * k + 3] for k in range(15)]
    assert all(not c["temporal"] for p in by_pass[:7] for c in p)  # passes 1-7
    assert all(len(p[1]["temporal"]) == 1 for p in by_pass[7:])  # passes 8-15
    assert all(c["init"] is not None for p in by_pass[1:] for c in p)


def test_warped_first_pass_chains_the_neighbour(tmp_path, recorded):
    """first_pass=warped (ours): pass 1 starts frames 2 and 3 from the warped earlier result."""
    j = job(tmp_path, static_clip(tmp_path / "in"), passes=2, first_pass="warped", init="random")
    j.run()
    assert recorded[0]["init"] is None
    # the earlier result as the pass stores it (float16: what a resumed job reads back)
    assert np.abs(recorded[1]["init"] - recorded[0]["out"]).max() < 1e-3


@pytest.mark.parametrize("passes", [1, 2])
def test_next_frames_flows_are_estimated_while_a_frame_is_optimised(tmp_path, monkeypatch, passes):
    """Quality mode asks for the next frame's flows (in another thread) before the current frame's
    optimisation ends: each optimisation below waits for that request and would time out without
    the overlap. The frames they read are decoded once per step (the frame cache)."""
    import threading

    clip = tmp_path / "in"
    demo.make_clip(clip, frames=4, size=(48, 32))
    j = job(tmp_path, clip, temporal="short", passes=passes, temporal_from_pass=2)
    asked, threads = {}, set()
    real_flow = j.clip.flows.flow

    def flow(a, b):
        threads.add(threading.current_thread() is threading.main_thread())
        asked.setdefault(max(a, b), threading.Event()).set()
        return real_flow(a, b)

    monkeypatch.setattr(j.clip.flows, "flow", flow)
    real = Stylizer.stylize
    order = []

    def stylize(self, content, **kw):
        order.append(len(order))
        i = len(order) - 1 if passes == 1 else None  # pass 1 of 2 runs frames 0..3 forwards
        if i is not None and i + 1 < 4:
            assert asked.setdefault(i + 1, threading.Event()).wait(10), f"frame {i + 2}'s flow not requested"
        return real(self, content, **kw)

    monkeypatch.setattr(Stylizer, "stylize", stylize)
    reads = []
    real_read = frames.read_image
    monkeypatch.setattr(frames, "read_image", lambda p, *a, **k: (reads.append(p), real_read(p, *a, **k))[1])
    j.run()
    assert len(order) == 4 * passes
    assert threads == {False}  # every flow was estimated ahead, in the worker thread
    if passes == 1:
        assert len(reads) == 4  # each input frame decoded once (content and both flows)
