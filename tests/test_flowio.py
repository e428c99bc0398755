"""Middlebury .flo reading and writing, and the errors users see."""

import numpy as np
import pytest

from stylize_core.errors import StylizeError
from stylize_core.io.flowio import check_flow, read_flo, write_flo


def sample_flow(h=5, w=7):
    return np.random.default_rng(0).normal(0, 3, (h, w, 2)).astype(np.float32)


def test_round_trip_is_exact(tmp_path):
    flow = sample_flow()
    path = tmp_path / "f.flo"
    write_flo(path, flow)
    assert path.stat().st_size == 12 + 5 * 7 * 2 * 4
    head = path.read_bytes()[:12]  # Middlebury header: "PIEH" (float 202021.25), width, height
    assert head[:4] == b"PIEH" and np.frombuffer(head[4:], "<i4").tolist() == [7, 5]
    np.testing.assert_array_equal(np.frombuffer(path.read_bytes()[12:28], "<f4"), flow[0, :2].ravel())
    assert not list(tmp_path.glob("*.tmp*"))
    back = read_flo(path, expect_size=(7, 5))
    assert back.dtype == np.float32 and back.shape == (5, 7, 2)
    np.testing.assert_array_equal(back, flow)


def test_bad_magic(tmp_path):
    path = tmp_path / "bad.flo"
    path.write_bytes(np.float32(1.0).tobytes() + np.int32([1, 1]).tobytes() + bytes(8))
    with pytest.raises(StylizeError, match="bad magic"):
        read_flo(path)


def test_truncated(tmp_path):
    path = tmp_path / "short.flo"
    write_flo(path, sample_flow())
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(StylizeError, match="truncated.*7x5"):
        read_flo(path)


def test_missing_file(tmp_path):
    with pytest.raises(StylizeError, match="cannot read flow file"):
        read_flo(tmp_path / "nope.flo")


def test_nan_is_rejected(tmp_path):
    flow = sample_flow()
    flow[2, 3, 1] = np.nan
    path = tmp_path / "nan.flo"
    write_flo(path, flow)
    with pytest.raises(StylizeError, match="NaN"):
        read_flo(path)


def test_wrong_size_and_shape():
    with pytest.raises(StylizeError, match="flow is 7x5, frames are 8x5"):
        check_flow(sample_flow(), "f.flo", expect_size=(8, 5))
    with pytest.raises(StylizeError, match="2 channels"):
        check_flow(np.zeros((5, 7, 3), np.float32), "f.flo")
