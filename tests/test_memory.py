"""The memory estimate against measured peak RSS, the refusal of runs that cannot fit, memory probes."""

import json
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from stylize_core.network import memory
from stylize_core.settings import Settings

# One L-BFGS step of the engine's Stylizer at W x H in a fresh process; prints the growth of
# the peak RSS (bytes) over a warm-up run at 16x16 (torch's own start-up is not counted).
# The peak is /proc's VmHWM, which exec resets: ru_maxrss keeps the forking parent's peak, so
# under a large parent (the test run with bpy loaded) it measured no growth at all.
CHILD = """
import json, sys
import numpy as np, torch

def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

from stylize_core.network.optimize import Stylizer
from stylize_core.settings import Settings
from stylize_core.network.weights import load_vgg
torch.set_num_threads(1)
w, h = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
settings = Settings(tolerance=0.0, temporal="none", style_scale=0.1)
st = Stylizer(load_vgg("random"), rng.random((32, 32, 3), dtype=np.float32), settings)
st.stylize(rng.random((16, 16, 3), dtype=np.float32), iterations=2)
before = peak()
st.stylize(rng.random((h, w, 3), dtype=np.float32), iterations=1)
print(json.dumps((peak() - before) * 1024))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc/self/status")
@pytest.mark.parametrize("size", [(192, 144), (320, 240)])
def test_estimate_matches_the_measured_peak_of_one_step(size):
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *map(str, size)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    measured = json.loads(proc.stdout.split()[-1])
    parts = memory.estimate(size, Settings(temporal="none"), "cpu", iterations=1)
    predicted = parts["activations"] + parts["optimizer"] + parts["targets"]
    assert 0.5 * predicted <= measured <= 2 * predicted, (measured / 2**20, predicted / 2**20)


def test_estimate_grows_with_the_pixels_and_the_history():
    s = Settings(temporal="none", lbfgs_history=100)
    small, big = (memory.estimate(sz, s, iterations=1) for sz in ((256, 160), (512, 320)))
    assert big["activations"] == pytest.approx(4 * small["activations"], rel=0.01)
    # L-BFGS: 2 vectors of 3 values per pixel and history entry, lbfgs_history entries at most
    one, full, more = (memory.estimate((256, 160), s, "cuda", iterations=n)["optimizer"] for n in (1, 101, 400))
    assert full - one == 100 * 2 * 3 * 256 * 160 * 4 and more == full
    short = memory.estimate((256, 160), memory._with(s, lbfgs_history=20), "cuda", iterations=400)["optimizer"]
    assert short - one == 20 * 2 * 3 * 256 * 160 * 4
    adam = memory.estimate((256, 160), Settings(optimizer="adam"), iterations=400)
    assert adam["optimizer"] < one
    # long-term temporal terms (offsets 1, 10, 20, 40) cost more than none
    assert memory.estimate((256, 160), Settings())["temporal"] > 0 == small["temporal"]


def test_refusal_names_the_need_and_a_scale_that_fits(monkeypatch):
    s = Settings(scale=1.0)
    size = (1920, 1080)
    need = memory.estimate(size, s, "cpu", size)["total"]
    least = memory._with(s, lbfgs_history=10)
    fits = lambda sc: (  # noqa: E731
        memory.estimate(
            memory.processing_size(size, sc),
            least,
            "cpu",
            size,  # noqa: E731
            checkpoint=True,
        )["total"]
        <= free
    )
    free = memory.estimate(memory.processing_size(size, 0.2), least, "cpu", size, checkpoint=True)["total"]
    monkeypatch.setattr(memory, "available", lambda device: free)
    with pytest.raises(memory.StylizeError) as e:
        memory.plan(size, s, "cpu")
    text = str(e.value)
    assert f"{need / 2**30:.1f} GB" in text and f"{free / 2**30:.1f} GB is available" in text
    assert "--lbfgs-history 10, activation checkpointing and --scale 0.25" in text
    scale = float(text.split("use --scale ")[1].split()[0])
    assert scale == 0.2 and fits(scale) and not fits(scale + 0.01)
    assert "\n" not in text and "--optimizer adam" in text
    monkeypatch.setattr(memory, "available", lambda device: need)
    assert memory.plan(size, s, "cpu").changes == []  # exactly enough: accepted as asked
    monkeypatch.setattr(memory, "available", lambda device: None)
    assert memory.plan(size, s, "cpu").changes == []  # unknown: not refused


def test_planner_lowers_the_history_then_checkpoints_then_lowers_the_scale(monkeypatch):
    s, size = Settings(lbfgs_history=100), (1920, 1080)

    def need(history, checkpoint=False, scale=1.0, device="cpu"):
        return memory.estimate(
            memory.processing_size(size, scale),
            memory._with(s, lbfgs_history=history),
            device,
            size,
            checkpoint=checkpoint,
        )["total"]

    # 1. the longest shorter history that fits (50 does not, 20 does: exactly)
    monkeypatch.setattr(memory, "available", lambda device: need(20))
    p = memory.plan(size, s, "cpu")
    assert (p.settings.lbfgs_history, p.checkpoint, p.settings.scale, p.need) == (20, False, 1.0, need(20))
    assert need(50) > need(20) and p.changes == ["--lbfgs-history 20"] and p.settings.iterations == s.iterations
    assert p.warning.startswith(f"not enough CPU memory for this run as asked (about {need(100) / 2**30:.1f} GB")
    # 2. history 10 alone does not fit: checkpointing with the longest history that then fits
    free = need(10, True)
    assert need(10) > free and need(20, True) > free
    monkeypatch.setattr(memory, "available", lambda device: free)
    p = memory.plan(size, s, "cpu")
    assert (p.settings.lbfgs_history, p.checkpoint, p.settings.scale) == (10, True, 1.0)
    assert p.changes == ["--lbfgs-history 10", memory.CHECKPOINT_NOTE] and p.need == free
    # checkpointing saves 160 of 643 values a pixel (module doc), ~1 GB at 1920x1080 ...
    saved = need(10) - need(10, True)
    assert saved == 4 * (643 - 483) * 1920 * 1080
    # 3. ... then the largest scale (2 decimals) that fits with both
    free = need(10, True, 0.6)
    monkeypatch.setattr(memory, "available", lambda device: free)
    p = memory.plan(size, s, "cpu")
    assert (p.settings.lbfgs_history, p.checkpoint, p.settings.scale) == (10, True, 0.6)
    assert p.size == (1152, 648) and p.changes[-1] == "--scale 0.6 (1152x648)" and p.need <= free
    assert need(10, True, 0.61) > free
    # the same plan is recorded in the manifest
    assert p.record() == {
        "available": free,
        "estimate": p.need,
        "estimate_as_asked": need(100),
        "lbfgs_history": 10,
        "checkpoint": True,
        "scale": 0.6,
        "size": [1152, 648],
        "fallbacks": p.changes,
    }
    # 1920x1080 with the default settings runs as asked on a 12 GB GPU and in 12 GB of CPU memory
    for device in ("cuda", "cpu"):
        assert memory.plan(size, Settings(), device, free=12 * 2**30).changes == []


def test_available_memory_sources(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    8000000 kB\n")
    assert memory._meminfo_available(meminfo) == 8000000 * 1024
    assert memory._meminfo_available(tmp_path / "none") is None
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory.current").write_text("1000\n")
    assert memory._cgroup_left(tmp_path) is None
    (tmp_path / "memory.max").write_text("5000\n")
    assert memory._cgroup_left(tmp_path) == 4000
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 10**9)
    monkeypatch.setattr(memory, "_cgroup_left", lambda: 4000)
    assert memory.available("cpu") == 4000


def test_out_of_memory_errors_are_recognised():
    cpu_old = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
        "memory: you tried to allocate 8589934592 bytes. Error code 12 (Cannot allocate memory)"
    )
    mps = RuntimeError("MPS backend out of memory (MPS allocated: 8.00 GB, other allocations: 1.00 GB)")
    assert memory.is_out_of_memory(cpu_old) and memory.is_out_of_memory(mps)
    assert memory.is_out_of_memory(MemoryError()) and memory.is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert not memory.is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not memory.is_out_of_memory(ValueError("out of memory"))
