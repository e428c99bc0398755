"""Job identities are pinned: the refactors of issue #18 (subpackages, the mode protocol, fast mode's modules)
change no job's identity, so every job folder written before them resumes. The ids were computed at 8640566,
before those changes; a change that means to change an identity changes a value here and says why."""

import cv2
import numpy as np
import pytest

from stylize_core import demo, schedule
from stylize_core.settings import Settings

PINNED = {
    "quality": ({}, "80f910f280a2"),
    "quality-multipass": ({"passes": 3}, "3fbf01aed394"),
    "blend": ({"style": [("style.png", 0.7), ("style2.png", 0.3)]}, "a124e202daf9"),
    "fast": ({"mode": "fast", "vgg": None}, "2b2c0c6ea3d2"),
    "fast-optimise": ({"mode": "fast", "keyframe_method": "optimise"}, "48b6eefb9525"),
    "fast-painted": ({"mode": "fast", "vgg": None, "keyframes": {2: "paint.png"}}, "d125ef51c9c6"),
    "fast-every": ({"mode": "fast", "vgg": None, "keyframe_every": 2, "fast_backend": "torch"}, "f60b27c3ccc9"),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("pins")
    demo.make_clip(d / "in", frames=4, size=(48, 32))
    demo.make_style(d / "style.png", size=(48, 48))
    demo.make_style(d / "style2.png", size=(40, 40), seed=3)
    cv2.imwrite(str(d / "paint.png"), np.full((32, 48, 3), 200, np.uint8))
    return d


@pytest.mark.parametrize("case", PINNED)
def test_job_identities_are_those_of_before_the_refactor(inputs, case):
    options, expected = PINNED[case]
    options = dict(options)
    style = options.pop("style", "style.png")
    style = inputs / style if isinstance(style, str) else [(inputs / p, w) for p, w in style]
    keyframes = {k: inputs / p for k, p in options.pop("keyframes", {}).items()} or None
    vgg = options.pop("vgg", "random:8")
    job = schedule.Job(
        inputs / "in", style, None, Settings(**options), vgg=vgg, jobs=inputs / "jobs", keyframes=keyframes
    )
    assert job.job_id == expected
