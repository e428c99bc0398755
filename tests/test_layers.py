"""The engine's layers (``stylize_core/<layer>/__init__.py`` say what each holds): a module imports only from
its own layer, the layers below it and the shared basics, never bpy; ``io`` never imports torch (the add-on
reads ``io.jobdir`` and ``settings`` inside Blender). Read from the source (AST), nothing is imported."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "stylize_core"
BASICS = {"errors", "settings", "sizes", "ahead", "__init__"}  # what every layer may import
# layer -> the layers it may import (itself included); the top level (cli, serve, demo, schedule) may import all
ALLOWED = {
    "io": {"io"},
    "motion": {"io", "motion"},
    "network": {"io", "network"},
    "job": {"io", "motion", "network", "job"},
    "modes": {"io", "motion", "network", "job", "modes"},
}
EXTERNAL_FORBIDDEN = {"io": {"torch", "bpy"}, None: {"bpy"}}


def modules():
    return sorted(p for p in PKG.rglob("*.py"))


def imports(path):
    """``(target parts below stylize_core, line)`` of every relative import, and the absolute imports' roots."""
    tree = ast.parse(path.read_text())
    here = list(path.relative_to(PKG).parent.parts)
    relative, absolute = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[: len(here) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
            if node.module is None or target == base:  # ``from . import x``: x is a module of that package
                relative += [(base + [a.name], node.lineno) for a in node.names]
            else:
                relative.append((target, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            absolute.append(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            absolute += [a.name.split(".")[0] for a in node.names]
    return relative, absolute


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_a_module_imports_only_its_layer_the_layers_below_and_the_basics(path):
    parts = path.relative_to(PKG).parts
    layer = parts[0] if len(parts) > 1 else None
    relative, absolute = imports(path)
    wrong = []
    for target, line in relative:
        if layer is None:
            continue
        top = target[0] if target else "__init__"
        if len(target) == 1 and top in BASICS | {"__version__"}:
            continue
        if top not in ALLOWED[layer]:
            wrong.append(f"line {line}: {'.'.join(target)}")
    forbidden = EXTERNAL_FORBIDDEN.get(layer, set()) | EXTERNAL_FORBIDDEN[None]
    wrong += [f"imports {name}" for name in absolute if name in forbidden]
    assert not wrong, f"{path.relative_to(PKG)} reaches outside its layer ({layer or 'top'}): {wrong}"


def test_every_layer_says_what_it_holds_and_may_import():
    for layer in ALLOWED:
        doc = ast.get_docstring(ast.parse((PKG / layer / "__init__.py").read_text())) or ""
        assert "May import" in doc, layer
    for path in modules():
        if path.name not in ("__init__.py", "__main__.py"):
            assert ast.get_docstring(ast.parse(path.read_text())), f"{path.relative_to(PKG)} has no docstring"
