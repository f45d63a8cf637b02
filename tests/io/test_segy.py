"""SEG-Y reading/writing on tiny files generated here (write_cube or segyio itself): no committed binaries."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import segyio

import seismic.io.segy as segy_mod
import seismic.io.segy_write as segy_write_mod
from seismic.io.errors import (
    SegyFormatError,
    SegyGeometryError,
    SegyHeaderError,
    SegyNoTracesError,
    SegyTraceLengthError,
    SegyTruncatedError,
    SeismicIOError,
)
from seismic.io.segy import (
    SegyFile,
    labels_path_for,
    open_segy,
    provenance_path_for,
    read_cube,
    write_cube,
)

ENDIANS = ["big", "little"]


def _cube(shape=(4, 3, 20), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # magnitudes over many decades: exercises the IBM exponent range, not just [-1, 1]
    return (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, shape)).astype(np.float32)


def _segyio_write(path, traces, headers, *, fmt=5, endian="big", dt_us=4000, spec_geometry=None) -> Path:
    """Write traces with segyio directly (for formats and layouts write_cube does not produce)."""
    n, n_t = traces.shape
    spec = segyio.spec()
    spec.format, spec.endian = fmt, endian
    spec.samples = np.arange(n_t) * dt_us / 1000.0
    if spec_geometry is None:
        spec.tracecount = n
    else:
        spec.iline, spec.xline = 189, 193
        spec.ilines, spec.xlines, spec.offsets, spec.sorting = spec_geometry
    with segyio.create(str(path), spec) as f:
        for i in range(n):
            f.header[i] = {115: n_t, 117: dt_us, **headers[i]}
            f.trace[i] = traces[i]
    return Path(path)


def _patch(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def _assert_error(excinfo, path: Path, *causes: str) -> None:
    message = str(excinfo.value)
    assert path.name in message, message
    for cause in causes:
        assert cause in message, message


# -- round trips -----------------------------------------------------------------------------------
@pytest.mark.parametrize("endian", ENDIANS)
def test_ieee_round_trip_is_exact(tmp_path, endian):
    data = _cube()
    ils, xls = np.array([100, 102, 104, 106]), np.array([7, 8, 9])
    path = write_cube(tmp_path / "c.sgy", data, 2.5, endian=endian, inlines=ils, crosslines=xls)
    amps, dt, got_il, got_xl = read_cube(path)
    np.testing.assert_array_equal(amps, data)
    assert amps.dtype == np.float32 and dt == 2.5
    np.testing.assert_array_equal(got_il, ils)
    np.testing.assert_array_equal(got_xl, xls)
    with open_segy(path) as f:  # byte order detected, not passed
        assert (f.endian, f.format_code, f.format_name, f.kind) == (endian, 5, "ieee", "cube")
        assert f.shape == data.shape and f.n_traces == 12 and f.n_samples == 20
        np.testing.assert_allclose(f.samples_ms, np.arange(20) * 2.5)
        assert "seismic" in f.text_header and f.header_notes == ()
        h = f.trace_headers()
        np.testing.assert_array_equal(h["iline"], np.repeat(ils, 3))
        np.testing.assert_array_equal(h["xline"], np.tile(xls, 4))


@pytest.mark.parametrize("endian", ENDIANS)
def test_ibm_round_trip_within_ibm_precision(tmp_path, endian):
    data = _cube(seed=1)
    path = write_cube(tmp_path / "c.sgy", data, 4.0, sample_format="ibm", endian=endian)
    amps, dt, ils, xls = read_cube(path)
    # IBM: 24-bit hex-normalised mantissa, so up to 3 bits are lost -> relative error < 2**-20
    np.testing.assert_allclose(amps, data, rtol=2**-20, atol=0)
    assert dt == 4.0 and list(ils) == [1, 2, 3, 4] and list(xls) == [1, 2, 3]
    with open_segy(path) as f:
        assert (f.format_code, f.format_name, f.endian) == (1, "ibm", endian)


@pytest.mark.parametrize("sample_format", ["ibm", "ieee"])
@pytest.mark.parametrize("endian", ENDIANS)
def test_write_never_mutates_the_callers_arrays(tmp_path, sample_format, endian):
    data = _cube(seed=2)  # float32 C-contiguous: the case where a view would reach segyio
    labels = np.arange(data.size, dtype=np.int16).reshape(data.shape) % 5
    before, labels_before = data.copy(), labels.copy()
    write_cube(tmp_path / "c.sgy", data, 4.0, labels=labels, sample_format=sample_format, endian=endian)
    np.testing.assert_array_equal(data, before)  # bit-exact: segyio converts IBM in place
    np.testing.assert_array_equal(labels, labels_before)


def test_labels_and_provenance_beside_the_segy(tmp_path):
    data = _cube()
    labels = np.random.default_rng(3).integers(0, 4, data.shape).astype(np.uint8)
    caller = {"generator": "layers", "seed": np.int64(7), "params": {"freq": np.float32(25.0)}}
    path = write_cube(tmp_path / "survey.sgy", data, 4.0, labels=labels, provenance=caller)
    assert labels_path_for(path) == tmp_path / "survey.labels.npy"
    assert provenance_path_for(path) == tmp_path / "survey.provenance.json"
    np.testing.assert_array_equal(np.load(labels_path_for(path)), labels)
    record = json.loads(provenance_path_for(path).read_text())
    assert record["provenance"] == {"generator": "layers", "seed": 7, "params": {"freq": 25.0}}
    assert record["segy"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    lab_bytes = labels_path_for(path).read_bytes()
    assert record["labels"]["sha256"] == hashlib.sha256(lab_bytes).hexdigest()
    assert record["shape"] == [4, 3, 20] and record["dt_ms"] == 4.0
    assert (record["sample_format"], record["format_code"], record["endian"]) == ("ieee", 5, "big")
    assert record["seismic_version"] and record["segyio_version"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "survey.labels.npy",
        "survey.provenance.json",
        "survey.sgy",
    ]


def test_rewrite_without_labels_drops_the_stale_labels_file(tmp_path):
    data = _cube()
    path = write_cube(tmp_path / "s.sgy", data, 4.0, labels=np.zeros(data.shape, np.int8))
    write_cube(path, data, 4.0)
    assert not labels_path_for(path).exists()
    assert json.loads(provenance_path_for(path).read_text())["labels"] is None


@pytest.mark.parametrize(
    ("kwargs", "cause"),
    [
        ({"labels": np.zeros((4, 3, 19), np.int8)}, "labels shape"),
        ({"labels": np.zeros((4, 3, 20), np.float32)}, "integers"),
        ({"sample_format": "int16"}, "sample_format"),
        ({"endian": "middle"}, "endian"),
        ({"inlines": [1, 1, 2, 3]}, "distinct"),
        ({"crosslines": [1, 2]}, "crosslines"),
        ({"iline": 190}, "iline=190"),
        ({"iline": 115}, "avoid"),
        ({"provenance": {"x": object()}}, "not JSON serialisable"),
    ],
)
def test_bad_arguments_fail_before_any_file_is_written(tmp_path, kwargs, cause):
    with pytest.raises((ValueError, TypeError), match=cause):
        write_cube(tmp_path / "s.sgy", _cube(), 4.0, **kwargs)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dt", [0.0, -4.0, 0.0004, 40.0, 70.0])
def test_bad_sample_interval_is_refused(tmp_path, dt):
    with pytest.raises(ValueError, match="dt_ms"):
        write_cube(tmp_path / "s.sgy", _cube(), dt)
    assert list(tmp_path.iterdir()) == []


def test_ibm_refuses_non_finite_values(tmp_path):
    data = _cube()
    data[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_cube(tmp_path / "s.sgy", data, 4.0, sample_format="ibm")
    assert list(tmp_path.iterdir()) == []


def test_failure_in_the_middle_leaves_no_file(tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(segy_write_mod.np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_cube(tmp_path / "s.sgy", _cube(), 4.0, labels=np.zeros((4, 3, 20), np.int8))
    assert list(tmp_path.iterdir()) == []  # no SEG-Y, no sidecar, no temporary file


def test_failed_rewrite_keeps_the_previous_outputs(tmp_path, monkeypatch):
    labels = np.ones((4, 3, 20), np.int8)
    path = write_cube(tmp_path / "s.sgy", _cube(), 4.0, labels=labels)
    snapshot = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken_json(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(segy_write_mod, "_sha256", broken_json)
    with pytest.raises(RuntimeError, match="killed"):
        write_cube(path, _cube(seed=9), 4.0, labels=labels * 2)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == snapshot


def test_a_failed_rename_drops_the_sidecars(tmp_path, monkeypatch):
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith(".sgy"):
            raise OSError("rename failed")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="rename failed"):
        write_cube(tmp_path / "s.sgy", _cube(), 4.0, labels=np.zeros((4, 3, 20), np.int8))
    assert list(tmp_path.iterdir()) == []


# -- lazy reads ------------------------------------------------------------------------------------
def test_lazy_reads_match_read_all_and_touch_only_what_is_asked(tmp_path, monkeypatch):
    data = _cube((6, 5, 12))
    path = write_cube(tmp_path / "c.sgy", data, 4.0)
    with open_segy(path) as f:
        full = f.read_all()
        np.testing.assert_array_equal(full, data)
        reads: list[tuple[int, int]] = []
        raw = SegyFile._raw
        monkeypatch.setattr(SegyFile, "_raw", lambda self, a, b: reads.append((a, b)) or raw(self, a, b))
        np.testing.assert_array_equal(f.read_inlines(2, 4), full[2:4])
        assert reads == [(10, 20)]  # two inlines of 5 traces, one contiguous read
        reads.clear()
        idx = [7, 3, 4, 5, 7, -1, 0]
        np.testing.assert_array_equal(f.read_traces(idx), full.reshape(30, 12)[idx])
        assert reads == [(0, 1), (3, 6), (7, 8), (29, 30)]
        np.testing.assert_array_equal(f.read_traces(slice(3, 9, 2)), full.reshape(30, 12)[3:9:2])
        assert f.read_inlines(3, 3).shape == (0, 5, 12)
        assert f.read_traces([]).shape == (0, 12)
        with pytest.raises(IndexError):
            f.read_inlines(4, 7)
        with pytest.raises(IndexError):
            f.read_traces([30])


@pytest.mark.parametrize("endian", ENDIANS)
def test_plain_reads_without_the_memory_map_match(tmp_path, endian):
    data = _cube((5, 4, 16))
    path = write_cube(tmp_path / "c.sgy", data, 4.0, endian=endian)
    with open_segy(path, mmap=False) as plain, open_segy(path) as mapped:
        assert plain.kind == mapped.kind == "cube" and plain.shape == mapped.shape
        np.testing.assert_array_equal(plain.read_all(), data)
        np.testing.assert_array_equal(plain.read_inlines(1, 3), mapped.read_inlines(1, 3))
        np.testing.assert_array_equal(
            plain.trace_headers(slice(0, 20))["iline"], np.repeat(np.arange(1, 6), 4)
        )


def test_crossline_sorted_file_reads_as_il_xl_t(tmp_path):
    data = _cube((3, 4, 8))
    traces = data.transpose(1, 0, 2).reshape(-1, 8)  # crossline-major order in the file
    headers = [{189: il, 193: xl} for xl in range(10, 14) for il in range(1, 4)]
    geometry = ([1, 2, 3], [10, 11, 12, 13], [0], segyio.TraceSortingFormat.CROSSLINE_SORTING)
    path = _segyio_write(tmp_path / "x.sgy", traces, headers, spec_geometry=geometry)
    with open_segy(path) as f:
        assert f.kind == "cube" and f.sorting == "crossline" and f.shape == (3, 4, 8)
        np.testing.assert_array_equal(f.read_all(), data)
        np.testing.assert_array_equal(f.read_inlines(1, 3), data[1:3])


def test_prestack_offsets_are_an_axis(tmp_path):
    data = _cube((3, 2, 4, 6))  # il, xl, offset, t
    headers = [
        {189: il, 193: xl, 37: off} for il in (1, 2, 3) for xl in (5, 6) for off in (100, 200, 300, 400)
    ]
    geometry = ([1, 2, 3], [5, 6], [100, 200, 300, 400], segyio.TraceSortingFormat.INLINE_SORTING)
    path = _segyio_write(tmp_path / "ps.sgy", data.reshape(-1, 6), headers, spec_geometry=geometry)
    with open_segy(path) as f:
        assert f.kind == "prestack" and f.shape == (3, 2, 4, 6)
        assert list(f.offsets) == [100, 200, 300, 400]
        np.testing.assert_array_equal(f.read_all(), data)
        np.testing.assert_array_equal(f.read_inlines(1, 2), data[1:2])
    with pytest.raises(SegyGeometryError) as excinfo:
        read_cube(path)
    _assert_error(excinfo, path, "pre-stack", "4 offsets")


@pytest.mark.parametrize(
    ("fmt", "dtype", "name"), [(2, np.int32, "int32"), (3, np.int16, "int16"), (8, np.int8, "int8")]
)
@pytest.mark.parametrize("endian", ENDIANS)
def test_integer_formats(tmp_path, fmt, dtype, name, endian):
    info = np.iinfo(dtype)
    traces = np.random.default_rng(4).integers(info.min, info.max, (6, 9), endpoint=True).astype(dtype)
    traces[0, :2] = info.min, info.max
    headers = [{189: 1 + i // 3, 193: 1 + i % 3} for i in range(6)]
    path = _segyio_write(tmp_path / "i.sgy", traces, headers, fmt=fmt, endian=endian)
    with open_segy(path) as f:
        assert (f.format_code, f.format_name, f.endian, f.kind) == (fmt, name, endian, "cube")
        out = f.read_all()
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, traces.reshape(2, 3, 9).astype(np.float32))


# -- unstructured and geometry ---------------------------------------------------------------------
def test_file_without_geometry_opens_unstructured(tmp_path):
    traces = _cube((7, 10)).reshape(7, 10)
    headers = [{9: 42, 37: 25 * i} for i in range(7)]  # a shot gather: one record, offsets vary
    path = _segyio_write(tmp_path / "shot.sgy", traces, headers)
    with open_segy(path) as f:
        assert f.kind == "unstructured" and f.shape == (7, 10)
        assert f.inlines is None and f.crosslines is None and f.offsets is None
        np.testing.assert_array_equal(f.read_all(), traces)
        np.testing.assert_array_equal(f.read_traces([6, 2]), traces[[6, 2]])
        h = f.trace_headers([1, 3], fields=("offset", "FieldRecord", 9))
        assert (
            list(h["offset"]) == [25, 75] and list(h["FieldRecord"]) == [42, 42] and list(h["9"]) == [42, 42]
        )
        with pytest.raises(SegyGeometryError) as excinfo:
            f.read_inlines(0, 1)
        _assert_error(excinfo, path, "189/193", "9/21")
        with pytest.raises(ValueError, match="unknown trace header field"):
            f.trace_headers(fields=("nope",))
    with pytest.raises(SegyGeometryError) as excinfo:
        read_cube(path)
    _assert_error(excinfo, path, "bytes 189/193", "9/21, 9/13")


def test_traces_out_of_order_are_not_read_as_a_grid(tmp_path):
    # segyio infers a 2 x 3 inline-sorted grid from the first traces and would read inline 2's
    # crosslines 3 and 2 under the numbers 2 and 3; every trace is checked, so this opens unstructured
    pairs = [(1, 1), (1, 2), (1, 3), (2, 1), (2, 3), (2, 2)]
    traces = np.array([[10.0 * il + xl] * 4 for il, xl in pairs], dtype=np.float32)
    path = _segyio_write(tmp_path / "irregular.sgy", traces, [{189: il, 193: xl} for il, xl in pairs])
    with open_segy(path) as f:
        assert f.kind == "unstructured" and "trace 4 holds inline 2, crossline 3" in f.geometry_error
        np.testing.assert_array_equal(f.read_all(), traces)
    with pytest.raises(SegyGeometryError) as excinfo:
        read_cube(path)
    _assert_error(excinfo, path, "bytes 189/193", "out of order")


def test_geometry_at_other_bytes_is_found_and_suggested(tmp_path):
    data = _cube((3, 4, 5))
    path = write_cube(tmp_path / "alt.sgy", data, 4.0, iline=9, xline=21, inlines=[5, 6, 7])
    with pytest.raises(SegyGeometryError) as excinfo:
        read_cube(path)  # default 189/193 are empty here
    _assert_error(excinfo, path, "bytes 189/193", "9/21 hold a full 3 x 4 grid", "iline=9, xline=21")
    amps, _, ils, _ = read_cube(path, iline=9, xline=21)
    np.testing.assert_array_equal(amps, data)
    assert list(ils) == [5, 6, 7]


def test_bad_header_byte_arguments(tmp_path):
    path = write_cube(tmp_path / "c.sgy", _cube(), 4.0)
    with pytest.raises(ValueError, match="iline=190"):
        open_segy(path, iline=190)
    with pytest.raises(ValueError, match="different"):
        open_segy(path, iline=189, xline=189)
    with pytest.raises(ValueError, match="endian"):
        open_segy(path, endian="middle")


# -- header rules ----------------------------------------------------------------------------------
def test_sample_count_falls_back_to_the_trace_header(tmp_path, caplog):
    data = _cube()
    path = write_cube(tmp_path / "c.sgy", data, 4.0)
    _patch(path, 3220, (0).to_bytes(2, "big"))  # binary header sample count -> 0
    with open_segy(path) as f:
        assert f.n_samples == 20 and any("bytes 3221-3222" in n for n in f.header_notes)
        np.testing.assert_array_equal(f.read_all(), data)
    assert "does not fit the file size" in caplog.text


def test_sample_interval_rules(tmp_path):
    path = write_cube(tmp_path / "c.sgy", _cube(), 4.0)
    _patch(path, 3216, (0).to_bytes(2, "big"))  # binary dt 0 -> trace header 4000 us
    with open_segy(path) as f:
        assert f.dt_ms == 4.0 and "binary header sample interval is 0" in f.header_notes[0]
    _patch(path, 3216, (2000).to_bytes(2, "big"))  # disagreement: the binary header wins, noted
    with open_segy(path) as f:
        assert f.dt_ms == 2.0 and "using the binary header" in f.header_notes[0]


def test_explicit_byte_order(tmp_path):
    path = write_cube(tmp_path / "le.sgy", _cube(), 4.0, endian="little")
    with open_segy(path, endian="little") as f:
        assert f.endian == "little"
    with pytest.raises(SegyFormatError) as excinfo:
        open_segy(path, endian="big")
    _assert_error(excinfo, path, "1280 in binary header bytes 3225-3226", "looks little-endian")


# -- errors ----------------------------------------------------------------------------------------
@pytest.fixture
def good(tmp_path) -> Path:
    return write_cube(tmp_path / "good.sgy", _cube(), 4.0)


def test_missing_file(tmp_path):
    path = tmp_path / "absent.sgy"
    with pytest.raises(SeismicIOError) as excinfo:
        open_segy(path)
    _assert_error(excinfo, path, "not found")


def test_truncated_file(good):
    good.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(SegyTruncatedError) as excinfo:
        open_segy(good)
    _assert_error(excinfo, good, "truncated", "11 whole traces")


def test_file_cut_inside_the_headers(good):
    good.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(SegyTruncatedError) as excinfo:
        open_segy(good)
    _assert_error(excinfo, good, "1000 bytes", "3600-byte")


def test_headers_only_file_has_no_traces(good):
    good.write_bytes(good.read_bytes()[:3600])
    with pytest.raises(SegyNoTracesError) as excinfo:
        open_segy(good)
    _assert_error(excinfo, good, "no traces")


@pytest.mark.parametrize(
    ("code", "cause"), [(99, "unknown sample format code 99"), (4, "code 4 (fixed point with gain")]
)
def test_unknown_or_unsupported_format_code(good, code, cause):
    _patch(good, 3224, code.to_bytes(2, "big"))
    with pytest.raises(SegyFormatError) as excinfo:
        open_segy(good)
    _assert_error(excinfo, good, cause, "3225-3226")


def test_inconsistent_trace_lengths(tmp_path, good):
    path = tmp_path / "ragged.sgy"
    head = bytearray(good.read_bytes()[:3600])
    head[3220:3222] = (10).to_bytes(2, "big")
    body = b""
    for ns in (10, 12, 10):
        header = bytearray(240)
        header[114:116] = ns.to_bytes(2, "big")
        body += bytes(header) + bytes(4 * ns)
    path.write_bytes(bytes(head) + body)
    with pytest.raises(SegyTraceLengthError) as excinfo:
        open_segy(path)
    _assert_error(excinfo, path, "same length", "10, 12")


@pytest.mark.parametrize(
    ("offset", "value", "cause"),
    [
        (3200, bytes(400), "binary header (bytes 3201-3600) is blank"),
        (3220, bytes(2), "sample count is 0"),
        (3216, bytes(2), "sample interval is 0 us in the binary header"),
        (3504, (300).to_bytes(2, "big"), "300 extended textual headers"),
        (3504, (-1).to_bytes(2, "big", signed=True), "variable number"),
    ],
)
def test_corrupt_headers(good, offset, value, cause):
    _patch(good, offset, value)
    if "sample" in cause:  # also blank the first trace header's copy of the value
        _patch(good, 3600 + (114 if "count" in cause else 116), bytes(2))
    with pytest.raises(SegyHeaderError) as excinfo:
        open_segy(good)
    _assert_error(excinfo, good, cause)


def test_not_a_segy_file(tmp_path):
    path = tmp_path / "picture.sgy"
    path.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(SegyFormatError) as excinfo:
        open_segy(path)
    _assert_error(excinfo, path, "unknown sample format code", "is this a SEG-Y file?")


def test_segyio_failures_are_wrapped(good, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("internal segyio failure")

    monkeypatch.setattr(segy_mod.segyio, "open", boom)
    with pytest.raises(SegyHeaderError) as excinfo:
        open_segy(good)
    _assert_error(excinfo, good, "segyio failed while opening", "internal segyio failure")


def test_closed_file_refuses_reads(good):
    f = open_segy(good)
    f.close()
    f.close()  # idempotent
    with pytest.raises(SeismicIOError, match="closed"):
        f.read_traces([0])
