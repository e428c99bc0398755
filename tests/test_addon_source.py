"""The add-on's source, read without Blender: constructs that some supported Python breaks.

Blender 5.2 as Debian builds it runs on Python 3.14, which CI's bpy modules (3.11, 3.13) do
not; ``./dev test-gui 5.2`` runs the real thing, these checks fail fast in the main suite.
"""

import ast
from pathlib import Path

import pytest

ADDON = Path(__file__).resolve().parents[1] / "addon"


def class_bodies_assigning_annotations(source):
    """Names of the classes whose body assigns ``__annotations__`` and also declares annotated names."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            assigns = any(
                isinstance(s, (ast.Assign, ast.AugAssign))
                and any(
                    isinstance(t, ast.Name) and t.id == "__annotations__"
                    for t in (s.targets if isinstance(s, ast.Assign) else [s.target])
                )
                for s in node.body
            )
            if assigns and any(isinstance(s, ast.AnnAssign) for s in node.body):
                found.append(node.name)
    return found


def test_the_check_sees_the_construct_python_3_14_breaks():
    # Python 3.13 keeps both the assigned and the declared annotations; 3.14 (PEP 649/749) keeps only the
    # assigned dict, so `b` is no property: the panel's "no attribute 'style_image'" on Debian's Blender 5.2.
    broken = "class S:\n    __annotations__ = {'a': int}\n    b: int\n"
    assert class_bodies_assigning_annotations(broken) == ["S"]
    assert class_bodies_assigning_annotations("class S:\n    b: int\n") == []


@pytest.mark.parametrize("path", sorted(ADDON.glob("*.py")), ids=lambda p: p.name)
def test_no_class_body_both_assigns_and_declares_annotations(path):
    assert class_bodies_assigning_annotations(path.read_text()) == []


ENGINE_WORDS = [  # the engine's vocabulary, which the add-on reads from the vendored engine (``engine_tables``)
    '"CryptoObject"',
    "frame_{",
    r"frame_\d",
    '"frame_"',
    '"dis"',
    '"deepflow"',
    '"raft"',
    '"DIS": "dis"',
    '("draft", "Draft"',
    '("FAST", "Fast"',
    '("FEEDFORWARD", "Network"',
    '("DEEPFLOW", "DeepFlow"',
]


@pytest.mark.parametrize("path", sorted(ADDON.glob("*.py")), ids=lambda p: p.name)
def test_the_addon_does_not_retype_the_engines_vocabulary(path):
    source = path.read_text()
    assert [word for word in ENGINE_WORDS if word in source] == []
