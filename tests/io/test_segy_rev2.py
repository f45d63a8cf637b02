"""SEG-Y rev 2 and Seismic Unix cases segyio reads (or lays out) and the reader once refused or misread.

Every file is generated here with segyio, in both byte orders, and our values are compared with segyio's
(as float32, the reader's contract). Where segyio cannot write or read a case -- 24-bit samples, trace
header extensions -- the test writes those bytes itself and says so.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import segyio

from seismic.data.quality import check_segy
from seismic.io.errors import SegyHeaderError, SegyTruncatedError, SeismicIOError
from seismic.io.segy import open_segy
from seismic.io.segy_like import SegyLikeWriter

ENDIANS = ["big", "little"]
GRID = ([1, 2, 3], [10, 11], [0])  # inlines, crosslines, offsets


def _write(
    path: Path, fmt: int, endian: str, values: np.ndarray, dt_us: int = 4000, by_crossline: bool = False
) -> Path:
    """A 3 x 2 cube written by segyio (inline-sorted unless ``by_crossline``); ``values [6, n_t]`` in the
    format's own dtype, in file order."""
    spec = segyio.spec()
    spec.format, spec.endian = fmt, endian
    spec.sorting = segyio.TraceSortingFormat.CROSSLINE_SORTING if by_crossline else 2
    spec.iline, spec.xline = 189, 193
    spec.ilines, spec.xlines, spec.offsets = GRID
    spec.samples = np.arange(values.shape[1]) * dt_us / 1000.0
    pairs = [(il, xl) for xl in GRID[1] for il in GRID[0]] if by_crossline else None
    with segyio.create(str(path), spec) as f:
        for i, (il, xl) in enumerate(pairs or [(il, xl) for il in GRID[0] for xl in GRID[1]]):
            f.header[i] = {115: values.shape[1] & 0xFFFF, 117: dt_us, 189: il, 193: xl}
            f.trace[i] = values[i].copy()  # segyio converts some formats in place
        f.bin.update(hdt=dt_us)
    return path


def _segyio_traces(path: Path, endian: str, opener=segyio.open) -> np.ndarray:
    with opener(str(path), ignore_geometry=True, endian=endian) as f:
        return np.asarray(f.trace.raw[:], dtype=np.float32)


def _patch(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def _extremes(dtype: np.dtype, n_t: int) -> np.ndarray:
    """6 traces spanning the dtype's range (float32-exact where the type allows)."""
    if np.issubdtype(dtype, np.floating):
        return np.linspace(-1e30, 1e30, 6 * n_t).reshape(6, n_t).astype(dtype)
    info = np.iinfo(dtype)
    lo, hi = max(int(info.min), -(2**24)), min(int(info.max), 2**24)
    return np.linspace(lo, hi, 6 * n_t).round().astype(dtype).reshape(6, n_t)


@pytest.mark.parametrize("fmt", [6, 9, 10, 11, 12, 16])
@pytest.mark.parametrize("endian", ENDIANS)
def test_rev2_sample_formats_equal_segyio(tmp_path, fmt, endian):
    dtype = {6: np.float64, 9: np.int64, 10: np.uint32, 11: np.uint16, 12: np.uint64, 16: np.uint8}[fmt]
    path = _write(tmp_path / f"f{fmt}.sgy", fmt, endian, _extremes(np.dtype(dtype), 7))
    with open_segy(path) as f:
        assert (f.format_code, f.endian, f.kind, f.shape) == (fmt, endian, "cube", (3, 2, 7))
        ours = f.read_all().reshape(6, 7)
    np.testing.assert_array_equal(ours, _segyio_traces(path, endian))


@pytest.mark.parametrize(("fmt", "signed"), [(7, True), (15, False)])
@pytest.mark.parametrize("endian", ENDIANS)
def test_24_bit_samples(tmp_path, fmt, signed, endian):
    # segyio's writer cannot encode 24-bit samples (it falls back to IBM float): segyio writes the headers
    # of a 1-byte-sample file (format 16, 3 bytes a sample) and the 24-bit bytes are written here
    lo, hi = (-(2**23), 2**23 - 1) if signed else (0, 2**24 - 1)
    want = np.array([lo, -1 if signed else 1, 0, 1, 256, 65536, hi, hi - 1] * 6).reshape(6, 8)
    raw = (want & 0xFFFFFF).astype(">u4").view(np.uint8).reshape(6, 8, 4)[..., 1:]  # 3 low bytes, big-endian
    if endian == "little":
        raw = raw[..., ::-1]
    path = _write(tmp_path / f"f{fmt}.sgy", 16, endian, np.ascontiguousarray(raw).reshape(6, 24))
    order = endian
    _patch(path, 3224, fmt.to_bytes(2, order))  # format code
    _patch(path, 3220, (8).to_bytes(2, order))  # 8 samples per trace
    for i in range(6):
        _patch(path, 3600 + i * (240 + 24) + 114, (8).to_bytes(2, order))
    with open_segy(path) as f:
        assert (f.format_name, f.shape, f.n_samples) == ("int24" if signed else "uint24", (3, 2, 8), 8)
        np.testing.assert_array_equal(f.read_all().reshape(6, 8), want.astype(np.float32))
        np.testing.assert_array_equal(f.inlines, GRID[0])
    # segyio itself decodes them as IBM floats (with a warning): not the values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert not np.array_equal(_segyio_traces(path, endian), want.astype(np.float32))


@pytest.mark.parametrize("endian", ENDIANS)
def test_extended_sample_count(tmp_path, endian):
    n_t = 70_000  # over 65535: segyio writes it to bytes 3269-3272 (the 16-bit field wraps to 4464)
    values = np.arange(6 * n_t, dtype=np.float32).reshape(6, n_t)
    path = _write(tmp_path / "long.sgy", 5, endian, values, dt_us=1000)
    with open_segy(path) as f:
        assert f.n_samples == n_t and f.shape == (3, 2, n_t)
        assert any("3269-3272" in note for note in f.header_notes)
        ours = f.read_all().reshape(6, n_t)
        np.testing.assert_array_equal(f.read_inlines(1, 2).reshape(2, n_t), ours[2:4])
    np.testing.assert_array_equal(ours, _segyio_traces(path, endian))


def _with_trace_extensions(src: Path, dst: Path, n_ext: int, endian: str) -> Path:
    """``src`` with ``n_ext`` 240-byte trace header extensions after every trace header (bytes written
    here: segyio can neither write nor read them), announced in binary header bytes 3507-3508."""
    raw = src.read_bytes()
    head = bytearray(raw[:3600])
    head[3506:3508] = n_ext.to_bytes(2, endian)
    n_t = int.from_bytes(head[3220:3222], endian)
    trace = 240 + 4 * n_t
    body = raw[3600:]
    ext = bytes(range(1, 241)) * n_ext  # non-zero, so a reader that keeps them shows garbage samples
    traces = [body[i : i + 240] + ext + body[i + 240 : i + trace] for i in range(0, len(body), trace)]
    dst.write_bytes(bytes(head) + b"".join(traces))
    return dst


@pytest.mark.parametrize("by_crossline", [False, True])
@pytest.mark.parametrize("endian", ENDIANS)
def test_trace_header_extensions(tmp_path, endian, by_crossline):
    values = np.arange(6 * 9, dtype=np.float32).reshape(6, 9) - 20
    plain = _write(tmp_path / "plain.sgy", 5, endian, values, by_crossline=by_crossline)
    path = _with_trace_extensions(plain, tmp_path / "ext.sgy", 2, endian)
    with pytest.raises(RuntimeError):  # segyio has no notion of them
        segyio.open(str(path), ignore_geometry=True, endian=endian)
    with open_segy(path) as f, segyio.open(str(plain), endian=endian) as g:
        assert f.layout.trace_ext == 2 and f.kind == "cube" and f.shape == (3, 2, 9)
        assert f.sorting == ("crossline" if by_crossline else "inline")
        np.testing.assert_array_equal(f.read_traces(slice(None)), _segyio_traces(plain, endian))
        cube = segyio.tools.cube(g)  # [slow line, fast line, t]
        cube = cube.transpose(1, 0, 2) if by_crossline else cube
        np.testing.assert_array_equal(f.read_inlines(1, 3), cube[1:3])  # line reads too
        np.testing.assert_array_equal(f.trace_headers(fields=("iline",))["iline"], g.attributes(189)[:])
        # a rewrite on its grid keeps the extensions (copied with the trace headers)
        out = tmp_path / "classes.sgy"
        with SegyLikeWriter(f, out, "int16") as w:
            w.write_inlines(0, np.arange(6 * 9).reshape(3, 2, 9))
        assert out.read_bytes()[3600 + 240 : 3600 + 720] == bytes(range(1, 241)) * 2
    with open_segy(out) as g:
        np.testing.assert_array_equal(g.read_all(), np.arange(6 * 9).reshape(3, 2, 9))


def test_trace_header_extensions_in_the_messages(tmp_path):
    plain = _write(tmp_path / "plain.sgy", 5, "big", np.zeros((6, 9), np.float32))
    stale = tmp_path / "stale.sgy"  # announced, but the traces hold none: ignored, with a note
    stale.write_bytes(plain.read_bytes())
    _patch(stale, 3506, (1).to_bytes(2, "big"))
    with open_segy(stale) as f:
        assert f.layout.trace_ext == 0 and "3507-3508 announce 1" in f.header_notes[0]
    cut = _with_trace_extensions(plain, tmp_path / "cut.sgy", 1, "big")
    cut.write_bytes(cut.read_bytes()[:-10])
    with pytest.raises(SegyTruncatedError) as excinfo:
        open_segy(cut)
    message = str(excinfo.value)
    assert (
        "cut.sgy" in message
        and "1 x 240-byte trace header extensions (binary header bytes 3507-3508)" in message
    )


@pytest.mark.parametrize("endian", ENDIANS)
def test_negative_binary_sample_interval(tmp_path, endian):
    values = np.sin(np.arange(6 * 50, dtype=np.float32)).reshape(6, 50)
    path = _write(tmp_path / "neg.sgy", 5, endian, values, dt_us=2000)
    _patch(path, 3216, (-2).to_bytes(2, endian, signed=True))
    with segyio.open(str(path), ignore_geometry=True, endian=endian) as g:
        assert g.bin[segyio.BinField.Interval] == -2 and segyio.tools.dt(g) == 2000.0
    with open_segy(path) as f:
        assert f.dt_ms == 2.0 and f.layout.binary_dt_us == -2
        assert "sample interval is -2" in f.header_notes[0]
    report = check_segy(path)
    assert report.dt_ms == 2.0 and not report.issues and "65534" not in report.format_text()
    _patch(path, 3600 + 116, (-2).to_bytes(2, endian, signed=True))  # first trace header too
    with pytest.raises(SegyHeaderError) as excinfo:
        open_segy(path)
    assert "neg.sgy" in str(excinfo.value) and "sample interval is -2 us" in str(excinfo.value)


@pytest.mark.parametrize("endian", ENDIANS)
def test_seismic_unix_file(tmp_path, endian):
    values = np.arange(6 * 11, dtype=np.float32).reshape(6, 11) / 7
    segy = _write(tmp_path / "c.sgy", 5, endian, values)
    path = tmp_path / "c.su"
    path.write_bytes(segy.read_bytes()[3600:])  # SU: the same traces, no textual/binary header
    with open_segy(path) as f:
        assert f.layout.seismic_unix and f.kind == "cube" and f.shape == (3, 2, 11) and f.dt_ms == 4.0
        assert f.endian == endian and "Seismic Unix" in f.header_notes[0]
        ours = f.read_all().reshape(6, 11)
        with pytest.raises(SeismicIOError, match="Seismic Unix template"):
            SegyLikeWriter(f, tmp_path / "out.sgy")
    np.testing.assert_array_equal(ours, _segyio_traces(path, endian, segyio.su.open))
    assert check_segy(path).ok
    path.write_bytes(path.read_bytes()[:-8])  # cut: neither SEG-Y nor SU, and the message says both
    with pytest.raises(SeismicIOError) as excinfo:
        open_segy(path)
    assert "c.su" in str(excinfo.value) and "not a Seismic Unix file either" in str(excinfo.value)
