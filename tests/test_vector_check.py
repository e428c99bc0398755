"""The Vector-pass check on real Cycles renders: a correct (perspective) and, on Blender 5.0,
a broken (moving orthographic camera) Vector pass.

Both scenes: a camera looking straight down at a textured background plane, panning
``PAN`` = 2 px per frame to the right, and a textured square moving over it. Cycles
writes exact vectors for the perspective camera; for the orthographic one Cycles 5.0
writes a false zoom field, 4.2 and 5.2 the right vectors. The tests tell which from the
analytic pan, and the check must agree: keep a right pass, reject a wrong one. Run as a script
(``python test_vector_check.py
OUTDIR``) it renders ``OUTDIR/persp/`` and ``OUTDIR/ortho/``; the tests do that in a
subprocess with this interpreter (bpy), and run the engine (torch) in a subprocess with
``$STYLIZE_TEST_WORKER_PYTHON`` or this interpreter, so neither loads into the test process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, render_with_bpy

W, H, FRAMES, PAN = 96, 64, 5, 2.0  # PAN: camera pan in px per frame
CAM_Z, FG_Z = 10.0, 1.0
LENS, SENSOR = 50.0, 36.0  # perspective: px per unit at the background = LENS/SENSOR*W/CAM_Z
ORTHO_SCALE = 4.8  # orthographic: px per unit = W/ORTHO_SCALE
WORKER = os.environ.get("STYLIZE_TEST_WORKER_PYTHON") or sys.executable


def render(out, kind):
    """Render frames 1..FRAMES of the ``kind`` ("persp"/"ortho") scene to ``out/frame_000N.exr``."""
    import bpy

    from test_vector_pass import _material, _plane, cycles_scene

    sc = cycles_scene(bpy, W, H, FRAMES, 8)
    _plane(bpy, sc, "bg", 40, 0, _material(bpy, "bg", 0.8))
    square = _plane(bpy, sc, "square", 1.2, FG_Z, _material(bpy, "square", 2.0))
    cam_data = bpy.data.cameras.new("cam")
    if kind == "ortho":
        cam_data.type, cam_data.ortho_scale = "ORTHO", ORTHO_SCALE
        px_per_unit = W / ORTHO_SCALE
    else:
        cam_data.lens, cam_data.sensor_width = LENS, SENSOR
        px_per_unit = LENS / SENSOR * W / CAM_Z
    cam_data.sensor_fit = "HORIZONTAL"
    cam = bpy.data.objects.new("cam", cam_data)
    sc.collection.objects.link(cam)
    sc.camera = cam
    for f in range(1, FRAMES + 1):
        cam.location = ((f - 1) * PAN / px_per_unit, 0.0, CAM_Z)
        cam.keyframe_insert("location", frame=f)
        square.location = (-0.5, 0.3 - 0.06 * f, FG_Z)
        square.keyframe_insert("location", frame=f)
    sc.render.filepath = str(Path(out) / "frame_")
    bpy.ops.render.render(animation=True)


# Run with the worker interpreter: warping errors of the rendered frames with the flows the job
# used (its manifest's flow_sources, composed for offset 2 as the long-term loss does), with the
# Vector pass alone and with DIS, over the samples inside the frame.
ERRORS = """
import json, sys
import numpy as np
from stylize_core.motion import flow
from stylize_core.io import frames
from stylize_core.motion.warp import warp_numpy
def errors(exrs, manifest):
    src = frames.open_input(exrs, None)
    used = flow.make_flow_source("vector", src.read, src.size, exr_paths=src.paths)
    used.use(json.load(open(manifest))["flow_sources"])
    vector = flow.VectorPassFlows(src.paths, src.size)
    def error(a, b, f):
        warped, valid = warp_numpy(src.read(b), f)
        return float((np.abs(warped - src.read(a)).mean(-1) * valid).sum() / valid.sum())
    pairs = [(a, a + d) for d in (1, 2, -1, -2) for a in range(len(src)) if 0 <= a + d < len(src)]
    return {name: float(np.mean([error(a, b, get(a, b)) for a, b in pairs])) for name, get in
            (("used", used.flow), ("vector", vector.flow),
             ("dis", lambda a, b: flow.estimate(src.read(a), src.read(b), "dis")))}
args = sys.argv[1:]
print(json.dumps([errors(exrs, manifest) for exrs, manifest in zip(args[::2], args[1::2])]))
"""


def engine(*args):
    """Run ``python -m stylize_core ARGS --progress json`` with the worker interpreter; the events."""
    proc = subprocess.run(
        [WORKER, "-m", "stylize_core", *map(str, args), "--progress", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def stylize(folder, tmp_path):
    """A quick job with the short and long-term (offset 2) temporal loss on ``folder``'s EXRs."""
    from stylize_core import demo

    style = tmp_path / "style.png"
    if not style.exists():
        demo.make_style(style, size=(32, 32))
    quick = "--flow vector --long-term 1,2 --vgg random:8 --iterations 2 --iterations-later 2".split()
    events = engine("stylize", folder, "--style", style, "--jobs", tmp_path / "jobs", *quick)
    manifest = json.loads((Path(events[0]["out"]) / "job.json").read_text())
    return events, manifest


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    return render_with_bpy(tmp_path_factory, "vector_check", __file__, "persp", "ortho")


@pytest.fixture(scope="module")
def runs(renders):
    """The engine's events and manifest for each render (a subprocess costs seconds: run once)."""
    return {kind: stylize(renders / kind, renders) for kind in ("persp", "ortho")}


def ortho_pass_is_right(renders):
    """Whether this Blender's Cycles wrote the orthographic render's Vector pass right: the
    background (most pixels) must move by the camera pan, flow t->t+1 = (-PAN, 0) px.
    Cycles 5.0 writes a false zoom field there (tens of px off), 4.2 and 5.2 the right flow."""
    from stylize_core.motion import vector_pass

    worst = 0.0
    for f in range(1, FRAMES):
        _, forward = vector_pass.read_flows(renders / "ortho" / f"frame_{f:04d}.exr")
        worst = max(worst, float(np.median(np.abs(forward - np.float32([-PAN, 0])))))
    return worst < 0.25


def test_check_accepts_right_and_rejects_wrong_vector_passes(renders, runs):
    right = ortho_pass_is_right(renders)
    print("this Blender's orthographic Vector pass is", "right" if right else "wrong")
    for kind, source in (("persp", "vector"), ("ortho", "vector" if right else "dis")):
        events, manifest = runs[kind]
        records = manifest["flow_sources"]
        assert [r["frames"] for r in records] == [[i, i + 1] for i in range(1, FRAMES)]
        assert {r["source"] for r in records} == {source}, records
        warnings = [e["message"] for e in events if e["event"] == "warning"]
        if source == "vector":
            assert not warnings and all(r["vector_error"] < r["dis_error"] + 0.001 for r in records)
        else:
            assert warnings == [
                "Vector pass failed the consistency check for 4 of 4 frame pairs "
                "(frames 1-5): using estimated optical flow (DIS) there"
            ]
            assert all(r["vector_reliable"] < 0.1 < 0.9 < r["dis_reliable"] for r in records)
        assert [e["event"] for e in events][:2] == ["start"] + (["warning"] if warnings else ["progress"])


def test_fallback_warping_error_is_dis_not_the_broken_pass(renders, runs):
    args = [str(a) for kind in ("persp", "ortho") for a in (renders / kind, Path(runs[kind][0][0]["out"]) / "job.json")]
    proc = subprocess.run([WORKER, "-c", ERRORS, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    persp, ortho = json.loads(proc.stdout)
    print({"persp": persp, "ortho": ortho})
    assert persp["used"] == persp["vector"] < persp["dis"] * 1.2
    assert ortho["used"] < 1.2 * ortho["dis"] + 0.002  # no worse than the estimated flow, offsets 1 and 2
    if ortho_pass_is_right(renders):
        assert ortho["used"] == ortho["vector"]  # a right pass is kept
    else:
        assert ortho["vector"] > 3 * ortho["used"]  # not the broken pass's


def texture(w, h, seed=0):
    rng = np.random.default_rng(seed)
    import cv2

    return cv2.resize(rng.random((h // 4, w // 4, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)


def test_consistent_but_wrong_vectors_fail_only_on_their_pair(tmp_path):
    """Synthetic EXRs: a texture panning 2 px/frame left (flow t->t+1 = (-2, 0)); the Vector pass
    is right except between frames 2 and 3, where it says 5 px (consistently both ways)."""
    from stylize_core.io import exr

    big, w, h = np.clip(texture(80, 40), 0, 1), 48, 40
    folder = tmp_path / "exr"
    folder.mkdir()
    for t in range(4):
        lin = big[:, 2 * t : 2 * t + w] ** 2.2
        to_prev, to_next = (5.0 if t == 2 else 2.0), (5.0 if t == 1 else 2.0)  # |flow| in px
        exr.write_exr(
            folder / f"frame_{t + 1:04d}.exr",
            {
                **{f"ViewLayer.Combined.{c}": lin[..., i] for i, c in enumerate("RGB")},
                "ViewLayer.Vector.X": np.full((h, w), to_prev),
                "ViewLayer.Vector.Y": np.zeros((h, w)),
                "ViewLayer.Vector.Z": np.full((h, w), to_next),
                "ViewLayer.Vector.W": np.zeros((h, w)),
            },
        )
    events, manifest = stylize(folder, tmp_path)
    assert [r["source"] for r in manifest["flow_sources"]] == ["vector", "dis", "vector"]
    bad = manifest["flow_sources"][1]
    assert bad["vector_reliable"] > 0.8 and bad["vector_error"] > 2 * bad["dis_error"] + 0.005
    assert [e["message"] for e in events if e["event"] == "warning"] == [
        "Vector pass failed the consistency check for 1 of 3 frame pairs (frames 2-3): "
        "using estimated optical flow (DIS) there"
    ]
    Path(events[-1]["paths"][-1]).unlink()
    again, resumed = stylize(folder, tmp_path)  # resumed: the recorded check is reused
    assert again[0]["skipped"] == 3 and resumed["flow_sources"] == manifest["flow_sources"]
    assert [e["event"] for e in again if e["event"] in ("warning", "frame")] == ["warning", "frame"]


if __name__ == "__main__":
    for kind in sys.argv[2:]:
        render(Path(sys.argv[1]) / kind, kind)
