"""The host side of the real-window tests: a cached Debian chroot with Debian's Blender, and one
Blender session in it under Xvfb, driven by ``driver.py``.

Each session runs in its own mount, PID and network namespaces (``unshare --mount --pid --net``): the
chroot's ``/proc``, ``/tmp``, the test's output folder (``/gui``) and the worker's venv
(read-only, at its own path, with the interpreter it links to) are mounted there only, so
they vanish with the session, and killing it (a timeout, a failed test, Ctrl-C) ends every
process it started, Xvfb, Blender and the engine's worker included. Nothing stays mounted
on the host, even on failure. The network namespace (no network inside) keeps Xvfb's display
socket private too, so two sessions can run at once.

Blender versions: 4.3 (Debian trixie, Blender 4.3.2 on Python 3.13) and 5.2 (sid, Blender
5.2.2 LTS on Python 3.14).
"""

import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SUITES = {"4.3": "trixie", "5.2": "sid"}
RECIPE = HERE / "chroot.sh"
SCREEN = (1920, 1080)


def cache_dir():
    return Path(os.environ.get("STYLIZE_GUI_CACHE") or Path.home() / ".cache" / "video-style-transfer" / "gui")


def mounted_under(path):
    """Mount points at or below ``path`` in this (the host's) mount namespace."""
    path = str(Path(path).resolve())
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    return [p for p in points if p == path or p.startswith(path + "/")]


def chroot(version, log=print):
    """The chroot of Blender ``version``: built once by ``chroot.sh`` and cached under the sha1 of the
    recipe and the suite; an older build of the same suite (another recipe) is removed."""
    if version not in SUITES:
        sys.exit(f"error: no GUI test chroot for Blender {version}; choose one of {', '.join(SUITES)}")
    suite = SUITES[version]
    key = hashlib.sha1(RECIPE.read_bytes() + suite.encode()).hexdigest()[:12]
    cache = cache_dir()
    root = cache / f"{suite}-{key}"
    if (root / ".ready").is_file():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    ours = re.compile(rf"{suite}-[0-9a-f]{{12}}(\.building)?")  # only this harness's builds, never other files
    for old in cache.iterdir():
        if not ours.fullmatch(old.name) or not old.is_dir():
            continue
        if mounted_under(old):
            sys.exit(f"error: {old} has mounts ({mounted_under(old)[0]}): unmount them before it is rebuilt")
        log(f"removing {old.name} (an older recipe or an unfinished build)")
        shutil.rmtree(old)
    building = cache / f"{suite}-{key}.building"
    log(f"building the Blender {version} chroot ({suite}) in {root}: a few minutes, once")
    done = subprocess.run(["bash", str(RECIPE), suite, str(building)], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"error: building the {suite} chroot failed:\n{done.stderr[-3000:]}")
    (building / ".ready").write_text(done.stdout)  # marked before the rename: a root is complete or absent
    building.rename(root)
    for log_file in cache.glob(f"{suite}-{key}.building.*.log"):
        log_file.unlink()
    return root


def blender_version(root):
    return (root / ".ready").read_text().split("\n")[0].strip()


def worker_binds(python):
    """Read-only binds the worker interpreter ``python`` needs inside the chroot: its venv and the
    installation its ``bin/python`` links to."""
    python = Path(python)
    venv = python.parent.parent
    base = python.resolve().parent.parent
    if base == Path("/usr"):  # the chroot's /usr is Debian's own, with another Python
        sys.exit(
            f"error: the worker {python} runs the system's {python.resolve()}, which the GUI chroot does not "
            "have: make the worker venv from a Python installed outside /usr (pyenv, /opt, /usr/local)"
        )
    return list(dict.fromkeys((venv, base)))


def session_command(root, out, binds, argv, env):
    """The command running ``argv`` inside the chroot ``root`` in new mount and PID namespaces, with
    ``out`` as ``/gui`` and each of ``binds`` read-only at its own path."""
    q = shlex.quote
    r = str(root)
    lines = [
        "set -e",
        f"mount -t proc proc {q(r + '/proc')}",
        f"mount -t tmpfs -o size=2g tmpfs {q(r + '/tmp')}",
        f"mount -t tmpfs tmpfs {q(r + '/dev/shm')}",
        f"mkdir -p {q(r + '/gui')}",
        f"mount --bind {q(str(out))} {q(r + '/gui')}",
    ]
    for path in binds:
        lines += [f"mkdir -p {q(r + str(path))}", f"mount --bind -o ro {q(str(path))} {q(r + str(path))}"]
    environment = " ".join(q(f"{k}={v}") for k, v in env.items())
    lines.append(f"exec chroot {q(r)} /usr/bin/env -i {environment} " + " ".join(map(q, argv)))
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--fork",
        "--kill-child",
        "--net",
        "sh",
        "-c",
        "\n".join(lines),
    ]


def run_session(root, out, scenario, worker, timeout=240):
    """Run ``session.sh SCENARIO`` in the chroot (Xvfb, then Blender with ``driver.py``); returns the
    completed process. Killed with everything it started after ``timeout`` seconds."""
    (out / scenario).mkdir(parents=True, exist_ok=True)
    for name in ("session.sh", "driver.py"):
        shutil.copy2(HERE / name, out / name)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/gui/home",
        "LANG": "C.UTF-8",
        "LIBGL_ALWAYS_SOFTWARE": "1",
        "STYLIZE_GUI_WORKER": str(worker),
        "STYLIZE_GUI_SCREEN": "x".join(map(str, SCREEN)),
    }
    cmd = session_command(root, out, worker_binds(worker), ["/bin/sh", "/gui/session.sh", scenario], env)
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except BaseException:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # --kill-child: the namespace's processes die with it
        except ProcessLookupError:
            pass
        output, _ = process.communicate()
        (out / scenario / "session.log").write_text(output or "")
        raise
    (out / scenario / "session.log").write_text(output)
    return subprocess.CompletedProcess(cmd, process.returncode, output, "")
