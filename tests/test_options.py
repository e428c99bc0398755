"""Every option of ``stylize`` refuses its bad values in one line, before anything is written.

Table-driven: the Settings options take their bad values from their own declaration
(``settings.option``: range, finiteness, type), every other option from ``OTHER`` below, and
``test_every_option_is_covered`` fails when the parser has an option neither covers, so a new
option cannot skip this.
"""

import json

import numpy as np
import pytest

from conftest import generated_clip
from stylize_core import cli
from stylize_core.settings import CLI_OPTIONS, FIELDS, Settings, flag

FAST = ["--vgg", "random:8", "--progress", "json"]
# option -> [(bad value, text the error line must hold)]; "{clip}" is the test's folder.
OTHER = {
    "--style": [
        ("", "--style is empty"),
        ("{clip}/missing.png", "style image not found"),
        ("{clip}/style.png:inf", "the weight after ':' must be a number >= 0"),
        ("{clip}/style.png:-1", "the weight after ':' must be a number >= 0"),
        ("{clip}/style.png:0", "the style weights must not all be 0"),
        ("{clip}", "is a folder"),
    ],
    "--regions": [("{clip}/missing", "--regions"), ("input", "--regions input reads the input's multilayer EXR")],
    "--regions-layer": [("Bogus", "--regions-layer")],
    "--matte": [("{clip}/missing", "--matte")],
    "--region": [
        ("3", "expected LABEL=IMAGE[:STRENGTH] or LABEL=keep"),
        ("3={clip}/style.png:1e30", "a region's strength must be in [0, 100], got 1e+30"),
    ],
    "--region-map": [("{clip}/missing.json", "missing.json: not found"), ("{clip}/style.png", "not valid JSON")],
    "--out": [("", "--out is empty")],
    "--jobs": [("", "--jobs is empty")],
    "--flow-dir": [("{clip}/in", "--flow-dir applies only with --flow flo or vector")],
    "--keyframe": [
        ("\u00b2={clip}/style.png", "expected FRAME=IMAGE or FRAME"),
        ("0", "frame numbers start at 1"),
        ("x", "expected FRAME=IMAGE"),
        ("2=", "expected FRAME=IMAGE"),
        ("2", "--keyframe needs --mode fast"),
    ],
    "--preset": [("bogus", "invalid choice: 'bogus'")],
    "--vgg": [("random:x", "expected random or random:N"), ("{clip}/missing.pth", "VGG-19 weights not found")],
    "--network": [
        ("", "--network is empty"),
        ("{clip}/missing.onnx", "MobileNet model not found"),
        ("{clip}/style.png", "VGG-19 weights"),
    ],
    "--device": [("tpu", "invalid choice: 'tpu'")],
    "--video": [("{clip}/out.gif", "unsupported video format .gif"), ("{clip}/in", "is a folder")],
    "--max-frames": [("0", "must be at least 1, got 0"), ("abc", "expected a whole number")],
    "--progress": [("loud", "invalid choice: 'loud'")],
    "--no-download": [],  # flags: no value to get wrong
    "--restart": [],
    "--help": [],
}
# Settings options whose bad values need another option beside them to reach their own check.
CONTEXT = {
    "--adam-lr": ["--optimizer", "adam"],
    **dict.fromkeys(["--keyframe-every", "--keyframe-zoom", "--fast-backend"], ["--mode", "fast"]),
    **dict.fromkeys(["--pass-iterations", "--first-pass", "--blend", "--temporal-from-pass"], ["--passes", "2"]),
    "--flow-dir": ["--flow", "dis"],
    **dict.fromkeys(["--region", "--region-map"], ["--matte", "{clip}/mattes"]),
    "--regions-layer": ["--regions", "input"],
}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from stylize_core.io.frames import write_png

    folder = generated_clip(tmp_path_factory.mktemp("options"), 3, (48, 32))
    (folder / "mattes").mkdir()
    for i in range(3):
        write_png(folder / "mattes" / f"m{i}.png", np.full((32, 48, 3), 0.5 + 0.1 * i, np.float32))
    return folder


def stylize(clip, capsys, *args, out="out"):
    where = [] if any(a in ("--out", "--jobs") for a in args) else ["--out", clip / out]
    style = [] if "--style" in args else ["--style", clip / "style.png"]
    try:
        code = cli.main([str(a) for a in ["stylize", clip / "in", *style, *where, *FAST, *args]])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines(), captured.out


def assert_refused(clip, capsys, option, value, expected, extra=()):
    extra = [str(a).format(clip=clip) for a in extra]
    code, lines, out = stylize(clip, capsys, *extra, option, value.format(clip=clip))
    assert code in (1, 2), (option, value, code, lines)
    assert len(lines) == 1 and lines[0].startswith("error: "), (option, value, lines)
    assert expected in lines[0], (option, value, expected, lines[0])
    if code == 1:  # the engine's own: also the JSON error event (the add-on's worker reads it)
        assert json.loads(out.splitlines()[-1]) == {"event": "error", "message": lines[0][len("error: ") :]}
    assert not (clip / "out").exists(), (option, value)


def test_every_option_is_covered():
    parser = cli.build_parser()
    stylize_parser = parser._subparsers._group_actions[0].choices["stylize"]
    options = {s for a in stylize_parser._actions for s in a.option_strings if s.startswith("--")}
    settings = {flag(name) for name in CLI_OPTIONS} | {
        "--no-" + flag(n)[2:] for n in CLI_OPTIONS if FIELDS[n].metadata["kind"].bad() == []
    }
    assert options - settings - set(OTHER) == set(), "options without bad values in this test"
    for name in CLI_OPTIONS:  # every declared option has bad values, or is a flag
        kind = FIELDS[name].metadata["kind"]
        assert kind.bad() or type(kind).__name__ == "Flag", name


@pytest.mark.parametrize("name", CLI_OPTIONS)
def test_settings_options_refuse_bad_values(clip, capsys, name):
    option = flag(name)
    for value in FIELDS[name].metadata["kind"].bad():
        assert_refused(clip, capsys, option, value, option, CONTEXT.get(option, ()))


@pytest.mark.parametrize("option", [o for o in OTHER if OTHER[o]])
def test_other_options_refuse_bad_values(clip, capsys, option):
    for value, expected in OTHER[option]:
        assert_refused(clip, capsys, option, value, expected, CONTEXT.get(option, ()))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--mode", "fast", "--passes", "3"], "--passes 3 applies to --mode quality"),
        (["--preset", "paper-multipass", "--mode", "fast"], "--passes 15 (from --preset paper-multipass) applies"),
        (["--keyframe-every", "10"], "--keyframe-every applies only with --mode fast"),
        (["--mode", "fast", "--temporal-weight", "5"], "--temporal-weight applies only with the temporal loss"),
        (["--temporal", "none", "--temporal-weight", "5"], "--temporal-weight applies only with the temporal loss"),
        (["--passes", "2", "--pass-iterations", "2", "--iterations", "40"], "--iterations applies only with one pass"),
        (["--passes", "2", "--pass-iterations", "2", "--temporal", "short"], "--temporal applies only with one pass"),
        (["--tolerance", "0", "--tolerance-window", "50"], "--tolerance-window applies only with early stopping"),
        (["--flow-scale", "4"], "--flow-scale 4 with --scale 1 would estimate the flow at 4x the frames' size"),
        (["--temporal", "none", "--flow-preset", "fast"], "--flow-preset applies only with optical flow"),
        (["--mode", "fast", "--iterations-later", "5"], "--iterations-later applies only with --mode quality"),
        (["--blend", "0.3"], "--blend applies only with more than one pass"),
        (["--adam-lr", "5"], "--adam-lr applies only with --optimizer adam"),
        (["--optimizer", "adam", "--lbfgs-history", "5"], "--lbfgs-history applies only with --optimizer lbfgs"),
        (["--temporal", "short", "--long-term", "1,5"], "--long-term applies only with --temporal long"),
        (
            ["--flow", "deepflow", "--flow-preset", "fast"],
            "--flow-preset applies only with --flow dis or raft or vector",
        ),
        (["--passes", "3", "--temporal-from-pass", "4"], "--temporal-from-pass 4 is after the last of the 3 passes"),
        (["--long-term", "1,1"], "--long-term names an offset twice: 1,1"),
        (["--temporal", "none", "--flow", "deepflow"], "--flow applies only with optical flow"),
        (["--seed", "5"], "--seed applies only with something random"),
        (["--style", "{clip}/style.png:"], "the weight after ':' is missing"),
        (["--strength", "1e30"], "--strength must be in [0, 100], got 1e+30"),
        (["--keyframe-zoom", "nan", "--mode", "fast"], "--keyframe-zoom must be in (1, 100] or 0 (off), got nan"),
        (["--tolerance", "nan"], "--tolerance must be in [0, 1], got nan"),
        (["--optimizer", "adam", "--adam-lr", "nan"], "--adam-lr must be in (0, 255], got nan"),
        (
            ["--scale", "0.2"],
            "--scale 0.2 makes the 48x32 frames 10x6 px; the loss network needs at least 16 px a side: "
            "use --scale 0.5 or more",
        ),
        (
            ["--coarse-to-fine", "4"],
            "--coarse-to-fine 4: the coarsest level of the 48x32 px processing size would be "
            "below 16 px; at most 2 levels fit",
        ),
        (["--style-scale", "1e-4"], "--style-scale 0.0001 makes a 48x48 style image 0x0 px for 48x32 px frames"),
    ],
)
def test_combinations_and_sizes_are_refused(clip, capsys, args, expected):
    code, lines, _ = stylize(clip, capsys, *[a.format(clip=clip) for a in args])
    assert code == 1 and len(lines) == 1 and expected in lines[0], lines
    assert not (clip / "out").exists()


def test_what_is_accepted_works(clip, capsys):
    """The values next to the refused ones run: a tiny flow scale (DIS is given an image it can take: it
    crashed the process for some thin sizes), the smallest scale, huge but equal blend weights."""
    style = clip / "style.png"
    code, lines, _ = stylize(
        clip,
        capsys,
        "--flow-scale",
        "0.2",
        "--scale",
        "0.5",
        "--style",
        f"{style}:1e308",
        "--style",
        f"{style}:1e308",
        "--max-frames",
        "2",
        "--iterations",
        "2",
        out="ok",
    )
    assert code == 0, lines
    record = json.loads((clip / "ok" / "job.json").read_text())
    assert [w for _, w in record["style"]] == [0.5, 0.5]  # normalised, not 0/0
    assert record["settings"]["flow_scale"] == 0.2


def test_dis_takes_any_size():
    """Sizes that made OpenCV's DIS fail an assertion (9x9) or crash (200x10, 48x8)."""
    from stylize_core.motion import flow

    rng = np.random.default_rng(0)
    for w, h in ((9, 9), (200, 10), (48, 8), (10, 200), (5, 4)):
        a = rng.random((h, w, 3), dtype=np.float32)
        for preset in ("ultrafast", "medium"):
            f = flow.estimate(a, np.roll(a, 1, axis=1), "dis", preset)
            assert f.shape == (h, w, 2) and np.isfinite(f).all()


def test_settings_refuse_in_python_too():
    """The same declaration checks Settings built in code (the add-on's worker, scripts)."""
    with pytest.raises(Exception, match="--strength must be in"):
        Settings(strength=-1)
    with pytest.raises(Exception, match="--long-term names an offset twice"):
        Settings(long_term=(1, 1))
    assert Settings.from_preset("standard", iterations="12").iterations == 12
