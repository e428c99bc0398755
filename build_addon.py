#!/usr/bin/env python3
"""Build the Blender extension: dist/<id>-<version>.zip

    python build_addon.py                      # wheels for this machine's platform
    python build_addon.py --platform linux-x64 --platform windows-x64   # one zip per platform
    python build_addon.py --no-wheels          # no downloads (tests, offline)

The package root is ``addon/`` plus ``blender_manifest.toml``, with the engine
vendored as ``vendor/stylize_core`` (the worker puts ``vendor/`` on its PYTHONPATH).
Unless ``--no-wheels``, the OpenEXR and opencv-contrib-python-headless wheels
(versions from requirements.txt) are fetched with ``pip download`` for every Python
that a supported Blender runs (``BLENDER_PYTHONS`` and ``DISTRIBUTION_PYTHONS``: a zip
with only the 3.11 wheels is refused whole by Blender 5.1+, one without 3.14's by
Debian's 5.2) into ``build/wheels/<platform>/`` (kept as a cache) and listed in the manifest, from
which Blender installs the ones matching its Python;
without them the worker needs those packages in its own Python. PyTorch is not
bundled (too large): users install it from the add-on's preferences.

The package is built and validated by Blender's own extension tool:
``blender --command extension build/validate`` when ``blender`` is on PATH, else
``blender_ext.py`` from the installed ``bpy`` module, run with this Python.
"""

import argparse
import importlib.util
import platform
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
WHEEL_PACKAGES = ("OpenEXR", "opencv-contrib-python-headless")
# The Python of each supported Blender series: (first Blender version, Python), oldest first.
# The manifest's blender_version_min is the first row's version. ./dev asks this table too.
BLENDER_PYTHONS = (((4, 2), "3.11"), ((5, 1), "3.13"))
# Pythons that Linux distributions build a supported Blender on, besides the official builds' above (Debian's
# Blender 5.2 runs on Python 3.14). Blender refuses a zip whose wheels lack its Python ("This Python version
# (3.14) isn't compatible with (3.13, 3.11)"); the zip carries wheels for all of them. Measured: a 3.14 OpenEXR
# wheel adds 1.8 MB to a 58 MB zip (OpenCV's wheel is abi3, one for every Python), so one zip, not one per Python.
DISTRIBUTION_PYTHONS = ("3.14",)
# Blender platform -> pip platform tags (pip also accepts older compatible tags of each).
PIP_PLATFORMS = {
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux2014_x86_64"],
    "windows-x64": ["win_amd64"],
    "macos-arm64": ["macosx_14_0_arm64"],
    "macos-x64": ["macosx_14_0_x86_64"],
}
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def python_of_blender(version):
    """The Python version that Blender ``version`` ("5.2.3" or a tuple) runs."""
    if isinstance(version, str):
        version = tuple(int(v) for v in version.split(".")[:2])
    found = [py for first, py in BLENDER_PYTHONS if tuple(version[:2]) >= first]
    if not found:
        sys.exit(f"error: Blender {version} is older than the oldest supported ({BLENDER_PYTHONS[0][0]})")
    return found[-1]


def bundled_pythons():
    """Every Python the zip has wheels for, oldest first."""
    found = {py for _, py in BLENDER_PYTHONS} | set(DISTRIBUTION_PYTHONS)
    return sorted(found, key=lambda v: tuple(map(int, v.split("."))))


def host_platform():
    """This machine's platform in Blender's naming."""
    system = {"Linux": "linux", "Windows": "windows", "Darwin": "macos"}[platform.system()]
    arch = "arm64" if platform.machine().lower() in ("arm64", "aarch64") else "x64"
    return f"{system}-{arch}"


def pinned(name):
    """``name==version`` as pinned in requirements.txt (``name`` alone if it is not pinned)."""
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if re.match(rf"{re.escape(name)}\s*==", line, re.IGNORECASE):
            return line.split("#")[0].strip()
    return name


def download_wheels(platforms, cache):
    """Fetch the bundled wheels for each platform and supported Python; their paths, per platform."""
    found = {}
    for plat in platforms:
        tags = [arg for tag in PIP_PLATFORMS[plat] for arg in ("--platform", tag)]
        found[plat] = set()
        for python in bundled_pythons():
            folder = cache / plat / f"py{python}"
            folder.mkdir(parents=True, exist_ok=True)
            try:
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "pip",
                        "download",
                        "--quiet",
                        "--only-binary=:all:",
                        "--no-deps",
                        "--python-version",
                        python,
                        "--implementation",
                        "cp",
                        *tags,
                        "-d",
                        str(folder),
                        *map(pinned, WHEEL_PACKAGES),
                    ],
                    check=True,
                )
            except subprocess.CalledProcessError:
                sys.exit(
                    f"error: pip could not download the {plat} wheels for Python {python}; "
                    "use --no-wheels to build without them"
                )
            found[plat] |= set(folder.glob("*.whl"))
        found[plat] = sorted(found[plat], key=lambda p: p.name)
    return found


def stage(manifest_text, wheels, out):
    """Lay out the package source folder ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(ROOT / "addon", out, ignore=IGNORE)
    shutil.copytree(ROOT / "stylize_core", out / "vendor" / "stylize_core", ignore=IGNORE)
    if wheels:
        (out / "wheels").mkdir()
        names = []
        for path in sorted({w.name: w for ws in wheels.values() for w in ws}.values(), key=lambda p: p.name):
            shutil.copy2(path, out / "wheels" / path.name)
            names.append(f"./wheels/{path.name}")
        extra = (
            f"platforms = {sorted(wheels)!r}\nwheels = [\n" + "".join(f'  "{n}",\n' for n in names) + "]\n\n"
        ).replace("'", '"')
        table = manifest_text.index("\n[")  # top-level keys must come before the first table
        manifest_text = manifest_text[: table + 1] + extra + manifest_text[table + 1 :]
    (out / "blender_manifest.toml").write_text(manifest_text)


def extension_tool():
    """Command prefix running Blender's extension tool, and a --valid-tags argument list."""
    blender = shutil.which("blender")
    if blender:
        return [blender, "--command", "extension"], []
    spec = importlib.util.find_spec("bpy")
    if spec is None:
        sys.exit("error: neither a `blender` binary on PATH nor the `bpy` module is available to validate the package")
    bpy_dir = Path(spec.submodule_search_locations[0])
    script = next(bpy_dir.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    tags = next(bpy_dir.glob("*/scripts/modules/_bpy_internal/extensions/tags.py"))
    return [sys.executable, str(script)], [f"--valid-tags={tags}"]


def build(source, dist, split):
    """Build the zip(s) into ``dist`` and validate each; returns their paths."""
    tool, tags = extension_tool()
    dist.mkdir(parents=True, exist_ok=True)
    before = set(dist.glob("*.zip"))
    cmd = [*tool, "build", "--source-dir", str(source), "--output-dir", str(dist), *tags]
    subprocess.run(cmd + (["--split-platforms"] if split else []), check=True)
    zips = sorted(set(dist.glob("*.zip")) - before) or sorted(dist.glob("*.zip"))
    for z in zips:
        subprocess.run([*tool, "validate", str(z), *tags], check=True)
        bad = [n for n in zipfile.ZipFile(z).namelist() if "__pycache__" in n or n.endswith(".pyc")]
        if bad:
            sys.exit(f"error: {z} holds compiled Python files: {bad[:3]}")
    return zips


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--no-wheels", action="store_true", help="do not bundle OpenEXR/OpenCV wheels (no network needed)"
    )
    parser.add_argument(
        "--platform",
        action="append",
        choices=sorted(PIP_PLATFORMS),
        help="platform to bundle wheels for, repeatable (default: this machine's); several give one zip per platform",
    )
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder (default: dist)")
    parser.add_argument(
        "--wheel-cache", type=Path, default=ROOT / "build" / "wheels", help="downloaded wheels (default: build/wheels)"
    )
    parser.add_argument(
        "--python-of-blender", metavar="VERSION", help="print the Python version that Blender VERSION runs, and exit"
    )
    args = parser.parse_args(argv)
    if args.python_of_blender:
        print(python_of_blender(args.python_of_blender))
        return
    manifest_text = (ROOT / "blender_manifest.toml").read_text()
    manifest = tomllib.loads(manifest_text)
    platforms = args.platform or [host_platform()]
    wheels = {} if args.no_wheels else download_wheels(platforms, args.wheel_cache)
    source = ROOT / "build" / "extension" / manifest["id"]
    stage(manifest_text, wheels, source)
    try:
        zips = build(source, args.dist, split=len(wheels) > 1)
    except subprocess.CalledProcessError as e:
        sys.exit(f"error: {e.cmd[1] if len(e.cmd) > 1 else e.cmd[0]} failed (exit {e.returncode}), see above")
    for z in zips:
        print(f"built {z}")


if __name__ == "__main__":
    main()
