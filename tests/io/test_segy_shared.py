"""The real SEG-Y files in ../shared/data/segy behave as their README table says (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pytest

from seismic.io.errors import SegyNoTracesError, SegyTruncatedError
from seismic.io.segy import open_segy, read_cube

pytestmark = pytest.mark.shared_data


def test_f3_int16_cube(shared_segy_dir):
    path = shared_segy_dir / "f3.sgy"
    with open_segy(path) as f:
        assert (f.kind, f.format_code, f.format_name, f.endian) == ("cube", 3, "int16", "big")
        assert f.shape == (23, 18, 75) and f.dt_ms == 4.0
        assert list(f.inlines) == list(range(111, 134)) and list(f.crosslines) == list(range(875, 893))
        # its trace headers still carry the uncropped survey's sample count (462): the binary header wins
        assert any("462" in note for note in f.header_notes)
        np.testing.assert_array_equal(f.read_inlines(5, 7), f.read_all()[5:7])
    amps, dt, ils, _ = read_cube(path)
    assert amps.shape == (23, 18, 75) and amps.dtype == np.float32 and dt == 4.0
    assert np.all(amps == np.round(amps)) and np.abs(amps).max() > 0  # int16 samples, not garbage
    # the F3 crop also holds its geometry at bytes 9/21 (field record / CDP)
    same, _, ils9, _ = read_cube(path, iline=9, xline=21)
    np.testing.assert_array_equal(same, amps)
    np.testing.assert_array_equal(ils9, ils)


def test_small_ibm_cube(shared_segy_dir):
    amps, dt, ils, xls = read_cube(shared_segy_dir / "small.sgy")
    assert amps.shape == (5, 5, 50) and dt == 4.0
    assert list(ils) == [1, 2, 3, 4, 5] and list(xls) == [20, 21, 22, 23, 24]
    # segyio's test cube stores inline + crossline/100 + sample/1e5
    np.testing.assert_allclose(amps[2, 3, 4], 3 + 23 / 100 + 4e-5, rtol=1e-6)
    with open_segy(shared_segy_dir / "small.sgy") as f:
        assert (f.format_name, f.endian) == ("ibm", "big")


def test_small_lsb_detected_little_endian_same_values(shared_segy_dir):
    with open_segy(shared_segy_dir / "small-lsb.sgy") as f:
        assert f.endian == "little" and f.kind == "cube" and f.shape == (5, 5, 50)
        lsb = f.read_all()
    msb, _, _, _ = read_cube(shared_segy_dir / "small.sgy")
    np.testing.assert_array_equal(lsb, msb)


def test_small_prestack(shared_segy_dir):
    with open_segy(shared_segy_dir / "small-ps.sgy") as f:
        assert f.kind == "prestack" and f.shape == (4, 3, 2, 10)
        assert len(f.offsets) == 2
        full = f.read_all()
        np.testing.assert_array_equal(f.read_inlines(1, 3), full[1:3])
        np.testing.assert_array_equal(f.read_traces([1]), full[0, 0, 1][None])


def test_shot_gather_is_unstructured(shared_segy_dir):
    with open_segy(shared_segy_dir / "shot-gather.sgy") as f:
        assert f.kind == "unstructured" and f.shape == (61, 25) and f.inlines is None
        assert f.read_all().shape == (61, 25)
        assert len(f.trace_headers()["offset"]) == 61


def test_broken_is_refused_as_truncated(shared_segy_dir):
    path = shared_segy_dir / "broken.sgy"
    with pytest.raises(SegyTruncatedError) as excinfo:
        open_segy(path)
    assert "broken.sgy" in str(excinfo.value) and "truncated" in str(excinfo.value)


def test_text_only_has_no_traces(shared_segy_dir):
    path = shared_segy_dir / "text.sgy"
    with pytest.raises(SegyNoTracesError) as excinfo:
        open_segy(path)
    assert "text.sgy" in str(excinfo.value) and "no traces" in str(excinfo.value)
