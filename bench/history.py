"""L-BFGS history length: loss after N iterations and after T seconds, s/iteration, peak memory.

The real-weights test's setup (tests/test_schedule.py): the Sintel pair ``alley_1_clean_0002``
resized to ``--size``, the generated painting as the style, the standard preset without early
stop. Per history length m (``--histories``), in a fresh child process (so that its peak RSS is
its own): frame 1 from the content with ``iterations`` (400) iterations, then frame 2 initialised
from frame 1's result warped by the ground-truth flow, with the temporal loss (weights: the
ground truth's non-occluded pixels) and ``iterations_later`` (200) iterations.

- loss @N: the total loss after the last iteration; loss @T: after the last iteration finished
  within T seconds, T = the median over the runs of the time of iteration N/2 (the same wall
  time for every m); relative to the longest history's.
- s/iter: median seconds per iteration (after 2 warm-up steps).
- peak MB: growth of the child's peak RSS (VmHWM) over a warm-up run at 16x16; history MB: the
  history's own size, ``2 m * 3 P * 4`` bytes (``memory.py``).
The configurations run one after the other, in the order given (``--repeat 2``: two interleaved
rounds, the table keeps the median s/iter), or all at once (``--parallel``, one thread each:
they then share the machine's load alike, so their times compare within the run).
"""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from stylize_core.network import memory
from stylize_core.settings import Settings

from .common import ROOT, Table, print_header, random_spec, style_path

PAIR = "alley_1_clean_0002"

CHILD = """
import json, sys, time
import numpy as np
from stylize_core.io import frames, flowio
from stylize_core.network.optimize import Stylizer
from stylize_core.settings import Settings
from stylize_core.motion.warp import warp_numpy
from stylize_core.network.weights import load_vgg
from stylize_core.motion.flow import resize_flow

def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

a = json.loads(sys.argv[1])
size, pair = tuple(a["size"]), a["pair"]
read = lambda name: frames.resize(frames.read_image(pair + "/" + name), size)
c1, c2 = read("frame_t.png"), read("frame_t1.png")
mask = ((read("occlusion.png") < 0.5) & (read("invalid.png") < 0.5)).astype(np.float32)[..., 0]
flow = resize_flow(flowio.read_flo(pair + "/flow_forward.flo"), size)
s = Settings(tolerance=0.0, lbfgs_history=a["history"], iterations=a["iterations"][0],
             iterations_later=a["iterations"][1])
st = Stylizer(load_vgg(a["vgg"]), frames.read_image(a["style"]), s)
st.stylize(np.zeros((16, 16, 3), np.float32), iterations=2)
before = peak()
logs = []
for content, init, temporal, n in ((c1, None, (), s.iterations), (c2, "warp", None, s.iterations_later)):
    if init == "warp":
        init, valid = warp_numpy(result, flow)
        temporal = ((init, mask * (valid > 0)),)
        init = np.where((mask * (valid > 0))[..., None] > 0, init, content)
    log, t0 = [], time.perf_counter()
    result = st.stylize(content, init=init, temporal=temporal, iterations=n,
                        on_step=lambda i, k, loss: log.append((time.perf_counter() - t0, loss)))
    logs.append(log)
print(json.dumps({"logs": logs, "peak": peak() - before}))
"""


def add_arguments(parser):
    parser.add_argument("--device", default="cpu", help="cpu only: peak memory is the child's RSS (default cpu)")
    parser.add_argument(
        "--size",
        default="128x54",
        help="frame size WxH (default 128x54; the real-weights test uses 256x109: 4x the time)",
    )
    parser.add_argument("--histories", default="100,50,20,10", help="history lengths (default 100,50,20,10)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of all configurations (default 1)")
    parser.add_argument(
        "--parallel", action="store_true", help="run the configurations of a round at once, one torch thread each"
    )


def run_child(args, history, size, iterations):
    a = {
        "size": size,
        "iterations": iterations,
        "pair": str(args.data / "sintel_pairs" / PAIR),
        "history": history,
        "vgg": args.vgg or random_spec(args),
        "style": str(style_path(args)),
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if args.parallel else None
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(a)], cwd=ROOT, capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"history {history} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.split("\n")[-2])


def loss_at(log, seconds):
    done = [loss for t, loss in log if t <= seconds]
    return done[-1] if done else log[0][1]


def run(args):
    if args.device != "cpu":
        raise SystemExit("bench history: --device cpu only (peak memory is measured as the child's RSS)")
    print_header("L-BFGS history length", args)
    size = [int(v) for v in args.size.lower().split("x")]
    histories = [int(m) for m in args.histories.split(",")]
    s = Settings()
    if args.quick:
        size, histories, s = [48, 20], [4, 2], Settings(iterations=12, iterations_later=8)
    runs = {m: [] for m in histories}
    with ThreadPoolExecutor(len(histories) if args.parallel else 1) as pool:
        for _ in range(args.repeat):
            done = pool.map(lambda m: run_child(args, m, size, (s.iterations, s.iterations_later)), histories)
            for m, result in zip(histories, list(done)):
                runs[m].append(result)
    p = size[0] * size[1]
    for k, (label, n) in enumerate(
        (
            (f"frame 1 (content init, {s.iterations} it)", s.iterations),
            (f"frame 2 (warped init + temporal, {s.iterations_later} it)", s.iterations_later),
        )
    ):
        logs = {m: [r["logs"][k] for r in runs[m]] for m in histories}
        t = float(np.median([log[n // 2 - 1][0] for m in histories for log in logs[m]]))
        ref = max(histories)
        ref_n, ref_t = logs[ref][0][-1][1], loss_at(logs[ref][0], t)
        table = Table(
            "history",
            f"loss @{n} it",
            "vs longest",
            f"loss @{t:.0f} s",
            "vs longest",
            "s/iter",
            "peak MB",
            "history MB",
            title=f"{label}, {size[0]}x{size[1]}, {args.vgg or random_spec(args)}",
        )
        for m in histories:
            log = logs[m][0]
            per_iter = float(np.median([np.median(np.diff([x for x, _ in lg])[2:]) for lg in logs[m]]))
            peak = max(r["peak"] for r in runs[m]) / 2**20
            table.add(
                m,
                log[-1][1],
                f"{log[-1][1] / ref_n - 1:+.2%}",
                loss_at(log, t),
                f"{loss_at(log, t) / ref_t - 1:+.2%}",
                per_iter,
                peak,
                2 * min(m, n - 1) * 3 * p * memory.FLOAT / 2**20,
            )
        table.notes.append(
            "loss: the total weighted loss (deterministic for a given m: the runs start from "
            "the same image); peak MB: the child's peak RSS growth over frames 1 and 2."
        )
        table.print()
