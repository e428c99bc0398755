"""Fast mode (stylize_core/modes/fast/: synthesis.py, plan.py, backends.py) on tiny synthetic clips with known flows."""

import warnings

import cv2
import numpy as np
import pytest

from conftest import run_bench, shared_data
from stylize_core.errors import StylizeError
from stylize_core.modes.fast import backends as search_backends
from stylize_core.modes.fast import synthesis as fast
from stylize_core.modes.fast.plan import plan_keyframes

W, H, SHIFT, SQ = 64, 48, (3, 2), (16, 12, 20)  # size, square motion per frame, square x, y, side


def texture(h, w, seed, sigma):
    rng = np.random.default_rng(seed)
    t = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), sigma)
    t = (t - t.min()) / (t.max() - t.min())
    return t.astype(np.float32)


BACK = texture(H, W, 1, 1.0)
SQUARE = texture(SQ[2], SQ[2], 2, 0.7) * 0.5 + 0.5  # brighter than the background


def frame(k):
    img = BACK.copy()
    x, y = SQ[0] + k * SHIFT[0], SQ[1] + k * SHIFT[1]
    img[y : y + SQ[2], x : x + SQ[2]] = SQUARE
    return img


def stylise(img):
    """A content-bound 'style': inverted, saturated, with stripes of the content's own structure."""
    return np.clip(1 - img**0.7 + 0.3 * (img[..., ::-1] - 0.5), 0, 1).astype(np.float32)


class KnownFlows:
    """Exact flows of the clip: the square moves by SHIFT per frame, the background stands still."""

    def flow(self, a, b):
        f = np.zeros((H, W, 2), np.float32)
        x, y = SQ[0] + a * SHIFT[0], SQ[1] + a * SHIFT[1]
        f[y : y + SQ[2], x : x + SQ[2]] = np.subtract(b, a) * np.array(SHIFT, np.float32)
        return f


def shifted(img, k):
    """``img`` (of frame 0) with the square moved as in frame k (the background where it was stays)."""
    out = img.copy()
    x, y = SQ[0] + k * SHIFT[0], SQ[1] + k * SHIFT[1]
    out[y : y + SQ[2], x : x + SQ[2]] = img[SQ[1] : SQ[1] + SQ[2], SQ[0] : SQ[0] + SQ[2]]
    return out


def revealed(k):
    """Pixels of frame k covered by the square in frame 0 but not in frame k."""
    m = np.zeros((H, W), bool)
    m[SQ[1] : SQ[1] + SQ[2], SQ[0] : SQ[0] + SQ[2]] = True
    x, y = SQ[0] + k * SHIFT[0], SQ[1] + k * SHIFT[1]
    m[y : y + SQ[2], x : x + SQ[2]] = False
    return m


def backends():
    return ["torch"] + ([] if search_backends.backend_error() else ["numba"])


@pytest.mark.parametrize("backend", backends())
def test_propagated_frame_matches_shifted_keyframe(backend):
    key = stylise(frame(0))
    prop = fast.Propagator(frame(0), key, backend=backend)
    flows = KnownFlows()
    out = prop.step(frame(1), flows.flow(1, 0), flows.flow(0, 1))
    want = shifted(key, 1)
    from stylize_core.motion.consistency import reliability

    ok = reliability(flows.flow(1, 0), flows.flow(0, 1)) > 0
    ok[:3], ok[-3:], ok[:, :3], ok[:, -3:] = False, False, False, False
    err = np.abs(out - want).mean(axis=2)[ok]
    assert ok.sum() > 0.6 * W * H
    assert err.mean() < 0.01, err.mean()
    assert np.percentile(err, 98) < 0.05


@pytest.mark.parametrize("backend", backends())
def test_revealed_region_gets_texture_not_flat_fill(backend):
    key, flows = stylise(frame(0)), KnownFlows()
    out = fast.Propagator(frame(0), key, backend=backend)
    for k in range(1, 4):
        img = out.step(frame(k), flows.flow(k, k - 1), flows.flow(k - 1, k))
    region = revealed(3)
    region = cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert region.sum() > 100

    def grad(x):
        g = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)
        return np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))

    ideal = stylise(frame(3))  # what a per-frame stylisation gives there
    got, want = grad(img)[region].mean(), grad(ideal)[region].mean()
    assert got > 0.5 * want, (got, want)
    # and the colours come from the background's stylisation, not the square's
    assert np.abs(img[region].mean(0) - ideal[region].mean(0)).max() < 0.1


def test_keyframe_of_another_size():
    small = stylise(frame(0))[::2, ::2]
    with pytest.warns(UserWarning, match="resized"):
        out = fast.prepare_keyframe(small, (W, H))
    assert out.shape == (H, W, 3)
    with pytest.raises(StylizeError, match="aspect"):
        fast.prepare_keyframe(stylise(frame(0))[:, :40], (W, H))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fast.prepare_keyframe(stylise(frame(0)), (W, H)).shape == (H, W, 3)


def test_segments_plan():
    plan = dict(fast.segments(10, [2, 6]))
    assert plan[0] == [(2, 1.0)] and plan[2] == [(2, 1.0)] and plan[9] == [(6, 1.0)]
    assert plan[4] == [(2, 0.5), (6, 0.5)]
    assert all(abs(sum(w for _, w in v) - 1) < 1e-9 for v in plan.values())
    with pytest.raises(StylizeError):
        fast.segments(5, [])
    with pytest.raises(StylizeError):
        fast.segments(5, [5])


def test_propagate_with_two_keyframes_yields_every_frame():
    n = 6
    keys = {1: stylise(frame(1)), 4: stylise(frame(4))}
    got = list(fast.propagate(frame, n, keys, KnownFlows()))
    assert [i for i, _, _ in got] == list(range(n))
    imgs = {i: img for i, img, _ in got}
    for k, img in keys.items():
        assert np.array_equal(imgs[k], img)
    assert got[2][2]["blend"] == pytest.approx(2 / 3)
    for i in range(n):
        assert imgs[i].shape == (H, W, 3) and imgs[i].dtype == np.float32
    # resume: start=3 yields only 3.. and the same images
    again = {i: img for i, img, _ in fast.propagate(frame, n, keys, KnownFlows(), start=3)}
    assert sorted(again) == [3, 4, 5]
    assert np.allclose(again[5], imgs[5], atol=1e-6)


def test_numba_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(search_backends, "backend_error", lambda: "fast mode's compiled CPU search needs numba")
    assert search_backends.pick_backend("auto", "cpu") == "torch"
    with pytest.raises(StylizeError, match="numba"):
        search_backends.pick_backend("numba", "cpu")
    with pytest.raises(StylizeError, match="backend"):
        search_backends.pick_backend("magic", "cpu")


def test_bench_fast_quick_synthetic(tmp_path):
    data = shared_data("sintel_pairs").parent
    proc = run_bench("fast", "--quick", "--synthetic", "--out", tmp_path, "--data", data, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "SYNTHETIC" in out and "Targets of issue #8" in out
    assert "| frames per second after keyframes |" in out
    assert "| sintel_pairs | 2 | fast, exact flow |" in out  # fast mode on the GT flows
    assert "| sintel_pairs, exact flow: E fast / E per-frame |" in out
    assert (tmp_path / "fast_pair.png").stat().st_size > 0


def test_blend_of_two_syntheses_keeps_their_texture_contrast():
    """Between two keyframes the forward and backward syntheses are blended; a plain average of
    two unaligned textures loses ~30 % of their gradient energy, fast.blend keeps it."""
    a, b = texture(96, 96, 3, 1.0), texture(96, 96, 4, 1.0)

    def grad(x):
        return np.abs(np.diff(x, axis=1)).mean() + np.abs(np.diff(x, axis=0)).mean()

    linear, kept = 0.5 * a + 0.5 * b, fast.blend(a, b, 0.5)
    assert grad(linear) < 0.75 * grad(a)
    assert grad(kept) == pytest.approx(0.5 * (grad(a) + grad(b)), rel=0.1)
    # the colours stay those of the plain blend at low frequencies
    low = lambda x: cv2.GaussianBlur(x, (0, 0), 6)  # noqa: E731
    assert np.abs(low(kept) - low(linear)).max() < 0.03
    # where the two agree the blend is the identity; at the ends it is the one synthesis
    assert np.abs(fast.blend(a, a, 0.3) - a).max() < 1e-5
    assert np.array_equal(fast.blend(a, b, 1.0), a) and np.array_equal(fast.blend(a, b, 0.0), b)


def _clip_with_a_cut(work):
    """Sintel frames 1-4, then the first 4 frames of another shot (tree.avi), at 1/8 size."""
    from stylize_core.io.frames import open_input, read_image, resize

    paths = sorted(shared_data("sintel_clip").glob("frame_*.png"))[:4]
    size = (128, 54)
    frames = [resize(read_image(p), size) for p in paths]
    src = open_input(shared_data("video", "tree.avi"), work, max_frames=4)
    return frames + [resize(src.read(i), size) for i in range(4)]


def test_plan_keyframes_finds_the_cut_and_the_push_in(tmp_path):
    from stylize_core.io.frames import open_input, resize
    from stylize_core.motion.flow import EstimatedFlows

    frames = _clip_with_a_cut(tmp_path / "tree")
    flows = EstimatedFlows(lambda i: frames[i], "dis", "medium")
    assert plan_keyframes(lambda i: frames[i], len(frames), flows, drift=0) == ([4], [], [])
    # one real shot: the camera moves in on the bird (median area scale of the carried strokes
    # ~0.5 by frame 37, 0.08 by frame 60): no cut, new keyframes for the change of view only
    src = open_input(shared_data("video", "cockatoo.mp4"), tmp_path / "bird", max_frames=61)
    bird = [resize(src.read(i), (320, 180)) for i in range(len(src))]
    flows = EstimatedFlows(lambda i: bird[i], "dis", "medium")
    cuts, changes, _ = plan_keyframes(lambda i: bird[i], len(bird), flows, drift=0)
    assert cuts == [] and len(changes) == 2 and 30 <= changes[0] <= 44 < changes[1], changes
    assert plan_keyframes(lambda i: bird[i], len(bird), flows, zoom=0, drift=0) == ([], [], [])
    # a shot that pans without zooming (tree.avi, 60 frames): nothing
    src = open_input(shared_data("video", "tree.avi"), tmp_path / "tree", max_frames=60)
    tree = [src.read(i) for i in range(len(src))]
    assert plan_keyframes(lambda i: tree[i], len(tree), EstimatedFlows(lambda i: tree[i]), drift=0) == ([], [], [])


def test_plan_keyframes_adds_keyframes_where_the_synthesis_drifts():
    """The planning pass's synthesis error (mean |synthesis - frame| on thumbnails) over ``drift``: a keyframe.
    Cockatoo frames 121-180 (the camera drifts over new content; measured 0.021 after 10 frames, 0.032 after
    30): one or two are added, none with a looser bound; a given keyframe restarts the pass."""
    import cv2

    from stylize_core.motion.flow import EstimatedFlows

    cap = cv2.VideoCapture(str(shared_data("video", "cockatoo.mp4")))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 120)
    bird = [
        cv2.resize(cv2.cvtColor(cap.read()[1], cv2.COLOR_BGR2RGB), (320, 180), interpolation=cv2.INTER_AREA).astype(
            np.float32
        )
        / 255
        for _ in range(60)
    ]
    cap.release()
    flows = EstimatedFlows(lambda i: bird[i])
    cuts, changes, drifts = plan_keyframes(lambda i: bird[i], len(bird), flows, zoom=0)
    assert cuts == changes == [] and 1 <= len(drifts) <= 3 and 15 <= drifts[0] <= 45, drifts
    assert plan_keyframes(lambda i: bird[i], len(bird), flows, zoom=0, drift=0.2) == ([], [], [])
    given = plan_keyframes(lambda i: bird[i], len(bird), flows, zoom=0, keys=(drifts[0] - 5,))[2]
    assert given and given[0] > drifts[0], (given, drifts)


def test_next_frames_flows_are_estimated_while_a_frame_is_synthesised(monkeypatch):
    """propagate asks for frame i+1's flows (in another thread) before frame i's synthesis ends:
    each step below waits for that request and would time out without the overlap."""
    import threading

    asked, calls = {}, []

    class Flows(KnownFlows):
        def flow(self, a, b):
            calls.append((a, b, threading.current_thread() is threading.main_thread()))
            asked.setdefault(max(a, b), threading.Event()).set()
            return super().flow(a, b)

    real_step = fast.Propagator.step

    def step(self, frame_, *args, **kw):
        i = step.i = getattr(step, "i", 0) + 1
        if i + 1 < 5:
            assert asked.setdefault(i + 1, threading.Event()).wait(5), f"frame {i + 1}'s flow not requested"
        return real_step(self, frame_, *args, **kw)

    monkeypatch.setattr(fast.Propagator, "step", step)
    out = list(fast.propagate(frame, 5, {0: stylise(frame(0))}, Flows(), backend="torch"))
    assert [i for i, _, _ in out] == [0, 1, 2, 3, 4]
    assert sorted((a, b) for a, b, _ in calls) == sorted(
        [(i, i - 1) for i in range(1, 5)] + [(i - 1, i) for i in range(1, 5)]
    )
    assert not any(main for _, _, main in calls)


@pytest.mark.skipif(search_backends.backend_error() is not None, reason="numba not installed")
def test_unreliable_pixels_start_from_the_advected_match():
    """Where the flow is unreliable the positional guide is off, but the search starts from the
    advected match (random only where the flow leaves the frame): less flicker (bench fast)."""
    from stylize_core.modes.fast import numba_search as fast_numba

    w, h = 12, 8
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    identity = np.stack([xs, ys], -1).reshape(-1, 2)
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0] = 1.0  # every pixel came from one to its right
    unreliable = np.zeros((h, w), np.float32)
    guide, ok, nnf = fast_numba.advect(identity, flow, unreliable, w, h, 0, True)
    assert not ok.any()  # no positional guide anywhere
    inside = (xs + 1 <= w - 1).reshape(-1)
    assert np.allclose(nnf[inside], identity[inside] + [1, 0])
    _, _, rand = fast_numba.advect(identity, flow, unreliable, w, h, 0, False)
    assert not np.allclose(rand[inside], identity[inside] + [1, 0])


@pytest.mark.skipif(search_backends.backend_error() is not None, reason="numba not installed")
def test_numba_search_does_not_depend_on_the_threads_timing():
    """Bands run in two phases (even, then odd), so no band reads a neighbour's border row while it
    is written: the parallel search gives exactly the serial one (``py_func``, bands one by one in
    index order). Before, band 1 read band 0's last row while band 0 was writing it, and a loaded
    machine resumed a fast-mode job with another frame."""
    from stylize_core.modes.fast import numba_search as fast_numba

    rng = np.random.default_rng(3)
    w, h, dims = 24, 32, 3
    n = w * h
    src = rng.random((n, 2 * dims), dtype=np.float32)
    tcol, tsty = rng.random((n, dims), dtype=np.float32), rng.random((n, dims), dtype=np.float32)
    tw, ok = np.full(n, 0.5, np.float32), np.ones(n, np.float32)
    guide = (np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1).reshape(-1, 2) + 0.3).astype(np.float32)
    bonus, lost = np.full(n, 0.01, np.float32), np.zeros(n, np.bool_)
    args = (w, h, dims, np.float32(0.1), np.float32(1 / 16.0))

    def run(search):
        nnf = rng_nnf.copy()
        cost = np.empty(n, np.float32)
        fast_numba.evaluate(src, tcol, tsty, tw, guide, ok, bonus, nnf, cost, *args)
        search(src, tcol, tsty, tw, guide, ok, bonus, lost, nnf, cost, *args, 3, 0, np.float32(np.inf), 5)
        return nnf, cost

    rng_nnf = np.stack([rng.integers(0, w, n), rng.integers(0, h, n)], -1).astype(np.float32)
    serial = run(fast_numba.search.py_func)
    for _ in range(3):
        parallel = run(fast_numba.search)
        assert np.array_equal(parallel[0], serial[0]) and np.array_equal(parallel[1], serial[1])
