"""One job identity from content: resume across re-exports, --jobs ROOT/<id>, paths in events."""

import json
import os
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import OpenEXR
import pytest

from conftest import generated_clip, run_cli, shared_data
from stylize_core import cli, demo, schedule
from stylize_core.io import digest, exr, flowio
from stylize_core.job import identity
from stylize_core.network import weights
from stylize_core.settings import PRESET_DESCRIPTIONS, PRESETS, Settings

FAST = ["--vgg", "random:8", "--iterations", "4", "--iterations-later", "3", "--progress", "json"]


@pytest.fixture
def clip(tmp_path):
    """A 4-frame 48x32 generated clip and a style image."""
    return generated_clip(tmp_path, 4, (48, 32))


def mtimes(folder, pattern="frame_*.png"):
    return {p: p.stat().st_mtime_ns for p in sorted(Path(folder).glob(pattern))}


def reexport(folder):
    """Write every PNG again with the same pixels but other bytes (compression level, a text chunk
    like Blender's render-time metadata) and another modification time."""
    for k, p in enumerate(sorted(Path(folder).glob("*.png"))):
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        data = buf.tobytes()
        text = b"tEXtRenderTime\x0000:0" + str(k).encode()  # like Blender's metadata
        chunk = len(text[4:]).to_bytes(4, "big") + text + zlib.crc32(text).to_bytes(4, "big")
        new = data[:33] + chunk + data[33:]
        assert new != p.read_bytes()
        p.write_bytes(new)
        os.utime(p, ns=(10**18 + k, 10**18 + k))


def touch_pixel(path):
    img = cv2.imread(str(path))
    img[3, 5, 1] ^= 1
    cv2.imwrite(str(path), img)


def test_identical_reexported_input_resumes_untouched(clip, capsys):
    args = ["stylize", clip / "in", "--style", clip / "style.png", "--out", clip / "out", *FAST]
    code, first, _ = run_cli(args, capsys)
    assert code == 0
    before = mtimes(clip / "out")
    assert len(before) == 4
    reexport(clip / "in")
    assert cv2.imread(str(clip / "in" / "frame_00001.png")) is not None  # still a valid PNG
    style = (clip / "style.png").read_bytes()
    (clip / "style.png").write_bytes(style)  # same style bytes, new mtime
    code, events, _ = run_cli(args, capsys)
    assert code == 0 and events[0]["skipped"] == 4 and events[0]["job"] == first[0]["job"]
    assert not [e for e in events if e["event"] == "frame"]
    assert mtimes(clip / "out") == before


def test_reexported_exr_with_other_metadata_has_the_same_digest(tmp_path):
    rng = np.random.default_rng(1)
    chans = {
        f"ViewLayer.{p}.{c}": rng.random((6, 8), dtype=np.float32)
        for p, cs in (("Combined", "RGB"), ("Vector", "XYZW"))
        for c in cs
    }
    exr.write_exr(tmp_path / "a.exr", chans)
    header = {
        "compression": OpenEXR.PIZ_COMPRESSION,
        "type": OpenEXR.scanlineimage,
        "RenderTime": "00:01.23",
        "Date": "2026/01/01 10:00:00",
    }
    OpenEXR.File(header, dict(chans)).write(str(tmp_path / "b.exr"))  # (File wraps the dict's arrays)
    assert (tmp_path / "a.exr").read_bytes() != (tmp_path / "b.exr").read_bytes()
    assert digest.image_digest(tmp_path / "a.exr") == digest.image_digest(tmp_path / "b.exr")
    chans["ViewLayer.Vector.W"][2, 3] += 0.01  # the Vector pass is part of the content
    exr.write_exr(tmp_path / "c.exr", chans)
    assert digest.image_digest(tmp_path / "c.exr") != digest.image_digest(tmp_path / "a.exr")


def test_one_changed_pixel_is_another_job(clip, capsys):
    root, out = clip / "jobs", clip / "out"
    base = ["stylize", clip / "in", "--style", clip / "style.png", *FAST]
    code, a, _ = run_cli([*base, "--jobs", root], capsys)
    assert code == 0 and run_cli([*base, "--out", out], capsys)[0] == 0
    done_a = mtimes(root / a[0]["job"])
    touch_pixel(clip / "in" / "frame_00003.png")
    code, b, _ = run_cli([*base, "--jobs", root], capsys)
    assert code == 0 and b[0]["job"] != a[0]["job"] and b[0]["skipped"] == 0
    assert sorted(p.name for p in root.iterdir()) == sorted([a[0]["job"], b[0]["job"]])
    assert mtimes(root / a[0]["job"]) == done_a  # the first job's frames are never overwritten
    code, _, err = run_cli([*base, "--out", out], capsys)
    assert code == 1 and "another job" in err and "input.content" in err and "--restart" in err


def job_id(clip, vgg="random:8", style="style.png", **settings):
    j = schedule.Job(clip / "in", clip / style, None, Settings(**settings), vgg=vgg, jobs=clip / "jobs")
    assert j.out == clip / "jobs" / j.job_id and len(j.job_id) == 12
    assert json.loads((j.out / "job.json").read_text())["identity"] == j.identity
    return j.job_id


def test_style_settings_and_weights_are_part_of_the_id(clip, tmp_path):
    base = job_id(clip)
    assert job_id(clip) == base
    demo.make_style(clip / "style2.png", size=(48, 40))
    ids = {
        base,
        job_id(clip, style="style2.png"),
        job_id(clip, strength=2.0),
        job_id(clip, flow_scale=0.5),
        job_id(clip, vgg="random:4"),
        job_id(clip, style_match="area"),
        job_id(clip, reliability_widen=2.0),
        job_id(clip, tolerance_window=50),
        job_id(clip, first_pass="independent"),
    }
    assert len(ids) == 9
    assert job_id(clip, vgg="random") == job_id(clip, vgg="random:1")
    fake = tmp_path / "vgg19-dcbb9e9d.pth"  # a weights file is identified by its name and size
    fake.write_bytes(b"PK\x03\x04" + b"x" * 96)  # a zip archive's start: what a torch file begins with
    assert weights.identity(weights.resolve(fake)) == "vgg19-dcbb9e9d.pth:100"
    ident = json.loads((clip / "jobs" / base / "job.json").read_text())["identity"]
    assert identity.job_id({**ident, "weights": "vgg19-dcbb9e9d.pth:100"}) not in ids
    caffe = tmp_path / "vgg19-d01eb7cb.pth"  # the Caffe weights (--vgg caffe): another job
    caffe.write_bytes(b"PK\x03\x04" + b"x" * 96)
    assert weights.identity(weights.resolve(caffe)) == "vgg19-d01eb7cb.pth:100"
    assert (
        job_id(
            clip,
            preset="draft",
            **{k: v for k, v in Settings().to_dict().items() if k not in ("preset", "long_term")},
            long_term=(1, 10, 20, 40),
        )
        == base
    )  # the preset's name is not the identity


def test_precomputed_flo_files_are_part_of_the_id(clip):
    flows = clip / "flows"
    flows.mkdir()
    for a in range(1, 4):
        for pair in ((a, a + 1), (a + 1, a)):
            flowio.write_flo(flows / f"flow_{pair[0]:05d}_{pair[1]:05d}.flo", np.zeros((32, 48, 2), np.float32))

    def flo_job():
        return schedule.Job(
            clip / "in",
            clip / "style.png",
            None,
            Settings(flow="flo", temporal="short"),
            vgg="random:8",
            jobs=clip / "jobs",
            flow_dir=flows,
        ).job_id

    first = flo_job()
    flowio.write_flo(flows / "flow_00002_00001.flo", np.full((32, 48, 2), 0.5, np.float32))
    assert flo_job() != first


def test_two_inputs_under_one_root_never_share_frames(clip, capsys):
    demo.make_clip(clip / "other", frames=3, size=(40, 32))
    root = clip / "jobs"
    runs = []
    for src in ("in", "other", "in"):
        code, events, _ = run_cli(["stylize", clip / src, "--style", clip / "style.png", "--jobs", root, *FAST], capsys)
        assert code == 0
        runs.append(events)
        if len(runs) == 2:
            kept = {p: p.read_bytes() for p in root.rglob("frame_*.png")}
    assert runs[2][0]["job"] == runs[0][0]["job"] and runs[2][0]["skipped"] == 4  # resumed, nothing redone
    assert {p: p.read_bytes() for p in root.rglob("frame_*.png")} == kept
    outs = [Path(r[-1]["paths"][0]).parent for r in runs[:2]]
    assert outs[0] != outs[1] and [len(r[-1]["paths"]) for r in runs[:2]] == [4, 3]
    assert not set(runs[0][-1]["paths"]) & set(runs[1][-1]["paths"])


def test_events_carry_absolute_out_job_and_paths(clip, capsys, monkeypatch):
    monkeypatch.chdir(clip)  # relative arguments
    code, events, err = run_cli(["stylize", "in", "--style", "style.png", "--jobs", "jobs", *FAST], capsys)
    assert code == 0
    start, done = events[0], events[-1]
    out = Path(start["out"])
    assert start["event"] == "start" and out.is_absolute() and out == clip / "jobs" / start["job"]
    assert len(start["job"]) == 12 and int(start["job"], 16) >= 0
    assert done["event"] == "done" and done["out"] == start["out"]
    assert done["paths"] == [str(out / f"frame_{i:05d}.png") for i in range(1, 5)]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in done["paths"])
    assert [e["path"] for e in events if e["event"] == "frame"] == done["paths"]
    manifest = json.loads((out / "job.json").read_text())
    assert manifest["job"] == start["job"] and manifest["status"] == "done"
    assert manifest["identity"]["weights"] == "random:8" and manifest["identity"]["input"]["frames"] == 4
    assert str(out) in err  # "done: OUTDIR" names the job folder


def test_out_and_jobs_are_exclusive_and_one_is_required(clip, capsys):
    base = ["stylize", str(clip / "in"), "--style", str(clip / "style.png")]
    for extra in ([], ["--out", "a", "--jobs", "b"]):
        with pytest.raises(SystemExit) as e:
            cli.main(base + extra)
        assert e.value.code == 2
        assert "--out" in capsys.readouterr().err


def test_movie_under_jobs_is_identified_by_its_bytes(tmp_path, capsys):
    movie = tmp_path / "cut.avi"
    writer = cv2.VideoWriter(str(movie), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (48, 32))
    for k in range(3):
        writer.write(np.full((32, 48, 3), 40 + 60 * k, np.uint8))
    writer.release()
    demo.make_style(tmp_path / "style.png", size=(32, 32))
    args = ["stylize", movie, "--style", tmp_path / "style.png", "--jobs", tmp_path / "jobs", *FAST]
    code, first, _ = run_cli(args, capsys)
    out = Path(first[0]["out"])
    assert code == 0 and (out / "input" / "frame_00003.png").is_file() and len(first[-1]["paths"]) == 3
    assert json.loads((out / "job.json").read_text())["identity"]["input"] == {
        "movie": digest.file_digest(movie),
        "max_frames": None,
    }
    copy = tmp_path / "elsewhere" / "cut.avi"  # the same bytes at another path, another mtime
    copy.parent.mkdir()
    copy.write_bytes(movie.read_bytes())
    code, again, _ = run_cli(["stylize", copy, *args[2:]], capsys)
    assert code == 0 and again[0]["job"] == first[0]["job"] and again[0]["skipped"] == 3
    code, cut, _ = run_cli([*args, "--max-frames", "2"], capsys)
    assert code == 0 and cut[0]["job"] != first[0]["job"]


def test_info_lists_resolved_presets_and_their_descriptions(capsys):
    assert cli.main(["info", "--json"]) in (0, 1)
    info = json.loads(capsys.readouterr().out)
    fields = set(Settings().to_dict())
    assert set(info["presets"]) == set(PRESETS) == set(info["preset_descriptions"])
    for name, values in info["presets"].items():
        assert set(values) == fields and values == Settings.from_preset(name).to_dict()
        assert values["preset"] == name and info["preset_descriptions"][name] == PRESET_DESCRIPTIONS[name]
    assert info["presets"]["draft"]["scale"] == 0.5 and info["presets"]["paper"]["flow"] == "deepflow"
    assert info["presets"]["standard"]["long_term"] == [1, 10, 20, 40]
    paper, multi = info["presets"]["paper"], info["presets"]["paper-multipass"]
    assert (paper["style_match"], paper["tolerance_window"], paper["reliability_widen"]) == ("area", 50, 2.0)
    assert (multi["passes"], multi["temporal_from_pass"], multi["first_pass"]) == (15, 8, "independent")
    assert multi["temporal_weight"] == paper["temporal_weight"] / 2


def test_preserve_colors_can_be_sent_either_way():
    parse = lambda *a: (  # noqa: E731
        cli._settings(
            cli.build_parser().parse_args(["stylize", "in", "--style", "s", "--out", "o", *a])
        ).preserve_colors
    )
    assert (parse(), parse("--preserve-colors"), parse("--no-preserve-colors")) == (False, True, False)


def test_warning_is_an_event_in_json_and_a_line_on_stderr(capsys):
    from stylize_core.progress import make_progress

    make_progress("json").warning("vector pass failed")
    out, err = capsys.readouterr()
    assert json.loads(out) == {"event": "warning", "message": "vector pass failed"} and err == ""
    make_progress("none").warning("vector pass failed")
    out, err = capsys.readouterr()
    assert out == "" and err == "warning: vector pass failed\n"


def test_content_fingerprint_of_the_sintel_clip_is_fast():
    paths = sorted(shared_data("sintel_clip").glob("*.png"))
    t0 = time.perf_counter()
    content = digest.frames_digest(paths)
    seconds = time.perf_counter() - t0
    print(f"frames_digest: {len(paths)} frames of 1024x436 in {seconds:.3f} s")
    assert len(paths) == 10 and len(content) == 40 and seconds < 2.0
    assert digest.frames_digest(paths[::-1]) != content  # order is content
