#!/usr/bin/env python3
"""Build the Blender extension: dist/<id>-<version>.zip

    python build_addon.py                      # wheels for this machine's platform
    python build_addon.py --platform linux-x64 --platform windows-x64   # one zip per platform
    python build_addon.py --no-wheels          # no downloads (tests, offline)

The package root is ``addon/`` plus ``blender_manifest.toml``, with the engine
vendored as ``vendor/stylize_core`` (the worker puts ``vendor/`` on its PYTHONPATH).
Unless ``--no-wheels``, the OpenEXR and opencv-contrib-python-headless wheels
(versions from requirements.txt) are fetched with ``pip download`` for Python 3.11
into ``build/wheels/<platform>/`` (kept as a cache) and listed in the manifest;
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
PYTHON_VERSION = "3.11"  # Blender 4.2-5.0
# Blender platform -> pip platform tags (pip also accepts older compatible tags of each).
PIP_PLATFORMS = {
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux2014_x86_64"],
    "windows-x64": ["win_amd64"],
    "macos-arm64": ["macosx_14_0_arm64"],
    "macos-x64": ["macosx_14_0_x86_64"],
}
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


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
    """Fetch the bundled wheels for each platform; their paths, per platform."""
    found = {}
    for plat in platforms:
        folder = cache / plat
        folder.mkdir(parents=True, exist_ok=True)
        tags = [arg for tag in PIP_PLATFORMS[plat] for arg in ("--platform", tag)]
        try:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps",
                            "--python-version", PYTHON_VERSION, "--implementation", "cp", *tags,
                            "-d", str(folder), *map(pinned, WHEEL_PACKAGES)], check=True)
        except subprocess.CalledProcessError:
            sys.exit(f"error: pip could not download the {plat} wheels; use --no-wheels to build without them")
        found[plat] = sorted(folder.glob("*.whl"))
    return found


def stage(manifest_text, wheels, out):
    """Lay out the package source folder ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(ROOT / "addon", out, ignore=IGNORE)
    shutil.copytree(ROOT / "stylize_core", out / "vendor" / "stylize_core", ignore=IGNORE)
    if wheels:
        (out / "wheels").mkdir()
        names = []
        for path in sorted({w for ws in wheels.values() for w in ws}):
            shutil.copy2(path, out / "wheels" / path.name)
            names.append(f"./wheels/{path.name}")
        extra = (f"platforms = {sorted(wheels)!r}\nwheels = [\n"
                 + "".join(f'  "{n}",\n' for n in names) + "]\n\n").replace("'", '"')
        table = manifest_text.index("\n[")  # top-level keys must come before the first table
        manifest_text = manifest_text[:table + 1] + extra + manifest_text[table + 1:]
    (out / "blender_manifest.toml").write_text(manifest_text)


def extension_tool():
    """Command prefix running Blender's extension tool, and a --valid-tags argument list."""
    blender = shutil.which("blender")
    if blender:
        return [blender, "--command", "extension"], []
    spec = importlib.util.find_spec("bpy")
    if spec is None:
        sys.exit("error: neither a `blender` binary on PATH nor the `bpy` module is available "
                 "to validate the package")
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-wheels", action="store_true",
                        help="do not bundle OpenEXR/OpenCV wheels (no network needed)")
    parser.add_argument("--platform", action="append", choices=sorted(PIP_PLATFORMS),
                        help="platform to bundle wheels for, repeatable (default: this machine's); "
                             "several give one zip per platform")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder (default: dist)")
    parser.add_argument("--wheel-cache", type=Path, default=ROOT / "build" / "wheels",
                        help="downloaded wheels (default: build/wheels)")
    args = parser.parse_args(argv)
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
