"""Read SEG-Y files lazily (segyio, memory-mapped) as 3D cubes, pre-stack volumes or unstructured traces.

Rules, and why:

* **Geometry.** segyio infers the inline/crossline/offset grid from the header bytes given (default
  189/193, SEG-Y rev1), and every trace's header words are then checked against that grid (segyio
  looks at a few traces only). When either fails the file still opens, as ``kind="unstructured"`` (a
  flat trace array + headers): 2D lines and shot gathers simply have no grid, and refusing them would
  make them unreadable. Whatever needs a grid (:meth:`SegyFile.read_inlines`, :func:`read_cube`) then raises
  :class:`SegyGeometryError` naming the bytes tried, what they hold, and which common alternative byte
  pair (9/21, 9/13) would give a full grid.
* **Byte order, format, sample count and interval** come from :mod:`seismic.io.segy_headers`, which
  checks the headers against the file size before segyio sees the file: the binary header wins when it
  fits, the first trace header is the fallback, and every disagreement is logged and kept in
  :attr:`SegyFile.header_notes`. SEG-Y rev 0-2 are read: every rev 2 sample format but the obsolete
  code 4, the extended sample count, trace header extensions, and Seismic Unix files (no file header);
  samples are always returned as float32 (:mod:`seismic.io.segy_formats`).
* **Errors** are always a :class:`SeismicIOError` subclass whose message names the file and the cause;
  segyio's own ``RuntimeError``/``OSError``/``ValueError`` never escape.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import segyio

from seismic.io.errors import (
    SegyGeometryError,
    SegyHeaderError,
    SegyTruncatedError,
    SeismicIOError,
)
from seismic.io.segy_formats import carrier, decode
from seismic.io.segy_headers import (
    COMMON_GEOMETRY_BYTES,
    TRACE_FIELDS,
    SegyLayout,
    check_header_byte,
    probe_layout,
)
from seismic.io.segy_write import labels_path_for, provenance_path_for, write_cube

__all__ = [
    "COMMON_GEOMETRY_BYTES",
    "SegyFile",
    "labels_path_for",
    "open_segy",
    "provenance_path_for",
    "read_cube",
    "write_cube",
]

_ALIASES = {"offset": 37, "cdp": 21, "cdp_x": 181, "cdp_y": 185, "coord_scalar": 71, "ns": 115, "dt": 117}
DEFAULT_HEADER_FIELDS = ("iline", "xline", "offset", "cdp_x", "cdp_y")
_CHECK_CHUNK = 1 << 20  # traces per chunk when checking the grid: bounded memory on huge files


@contextlib.contextmanager
def _segyio_errors(path: Path, doing: str) -> Iterator[None]:
    """Turn segyio's exceptions into the package's family, naming the file and what was being done."""
    try:
        yield
    except SeismicIOError:
        raise
    except (RuntimeError, OSError, ValueError, IndexError, KeyError, TypeError, AttributeError) as err:
        cls = SegyTruncatedError if "size" in str(err) or "EOF" in str(err) else SegyHeaderError
        raise cls(path, f"segyio failed while {doing}: {err}") from err


def _open_segyio(path: Path, layout: SegyLayout, iline: int, xline: int, geometry: bool) -> Any:
    """Open with segyio's public API (``segyio.open``, or ``segyio.su.open`` for Seismic Unix) when its own
    reading of the headers is right; else -- a wrong binary sample count, the rev 2 extended count, trace
    header extensions, 24-bit samples -- hand segyio the validated layout through its own creation path
    (the only way to make segyio read such a file without rewriting its header; see
    :func:`seismic.io.segy_formats.carrier`)."""
    if layout.seismic_unix:
        return segyio.su.open(
            path, "r", iline=iline, xline=xline, ignore_geometry=not geometry, endian=layout.endian
        )
    if layout.segyio_native:
        return segyio.open(
            path, "r", iline=iline, xline=xline, ignore_geometry=not geometry, endian=layout.endian
        )
    fmt, samples = carrier(layout.format_code, layout.n_samples, layout.trace_ext)
    fd = segyio._segyio.segyiofd(str(path), "r", 256 if layout.endian == "little" else 0)
    fd.segymake(samples=samples, tracecount=layout.n_traces, format=fmt, ext_headers=layout.ext_headers)
    f = segyio.SegyFile(fd, filename=str(path), mode="r", iline=iline, xline=xline, endian=layout.endian)
    f._samples = np.arange(samples, dtype=np.float64)  # segyio.open sets it; its line reads need the length
    if geometry:
        importlib.import_module("segyio.open").infer_geometry(f, fd.metrics(), iline, xline, True)
    return f


class SegyFile:
    """An open SEG-Y file: header facts as attributes, lazy memory-mapped reads as methods.

    ``kind`` is ``"cube"`` (one offset), ``"prestack"`` (offsets as an extra axis) or
    ``"unstructured"`` (no inline/crossline grid at the bytes given; see the module docstring).
    Not thread-safe (one segyio handle); open one per worker.
    """

    def __init__(
        self, path: str | Path, *, iline: int = 189, xline: int = 193, endian: str = "auto", mmap: bool = True
    ) -> None:
        self.path = Path(path)
        self.iline_byte = check_header_byte("iline", iline)
        self.xline_byte = check_header_byte("xline", xline)
        if self.iline_byte == self.xline_byte:
            raise ValueError(f"iline and xline must be different header bytes, both are {iline}")
        layout = probe_layout(self.path, endian)
        self.layout = layout  # the validated header facts, including the binary header's own values
        # samples per trace as segyio sees them (extension headers, 24-bit bytes): decoded by _decode
        self._stored_samples = carrier(layout.format_code, layout.n_samples, layout.trace_ext)[1]
        self.endian: Literal["big", "little"] = layout.endian  # type: ignore[assignment]
        self.format_code = layout.format_code
        self.format_name = layout.format_name
        self.n_traces = layout.n_traces
        self.n_samples = layout.n_samples
        self.dt_ms = layout.dt_us / 1000.0
        self.samples_ms = layout.t0_ms + np.arange(self.n_samples) * self.dt_ms
        self.text_header = layout.text_header
        self.header_notes = layout.notes
        self.geometry_error: str | None = None  # why there is no grid (kind "unstructured")
        self.inlines: np.ndarray | None = None
        self.crosslines: np.ndarray | None = None
        self.offsets: np.ndarray | None = None
        self.sorting: Literal["inline", "crossline"] | None = None
        self.kind: Literal["cube", "prestack", "unstructured"] = "unstructured"
        self.shape: tuple[int, ...] = (self.n_traces, self.n_samples)
        self._f: Any = None
        try:
            with _segyio_errors(self.path, f"inferring the geometry at bytes {iline}/{xline}"):
                self._f = _open_segyio(self.path, layout, self.iline_byte, self.xline_byte, True)
        except SeismicIOError:
            self.geometry_error = "segyio finds no inline- or crossline-sorted grid"
            with _segyio_errors(self.path, "opening the file"):
                self._f = _open_segyio(self.path, layout, self.iline_byte, self.xline_byte, False)
        try:
            with _segyio_errors(self.path, "memory-mapping and checking the geometry"):
                # Mapped pages count in the process's RSS (clean, reclaimable page cache, but counted):
                # streaming jobs over files larger than their memory budget read without the map.
                if mmap:
                    self._f.mmap()  # False (plain reads) on platforms without mmap; same results either way
                if self.geometry_error is None:
                    self._adopt_geometry(self._f)
        except BaseException:
            self.close()
            raise

    def _adopt_geometry(self, f: Any) -> None:
        """Take segyio's grid after checking every trace's header words against it (segyio looks at a
        few traces only and accepts, e.g., an inline whose crosslines are out of order, then reads them
        under the wrong crossline numbers)."""
        inlines, crosslines = np.asarray(f.ilines, np.int64), np.asarray(f.xlines, np.int64)
        offsets = np.asarray(f.offsets, np.int64)
        if not (inlines.any() or crosslines.any()):
            # unset words, not a grid: else a shot gather whose offsets vary is a 1 x 1 x n "pre-stack volume"
            self.geometry_error = "the header words there are all zero (unset)"
            return
        sorting = "inline" if f.sorting == segyio.TraceSortingFormat.INLINE_SORTING else "crossline"
        slow, fast = (inlines, crosslines) if sorting == "inline" else (crosslines, inlines)
        n_off = len(offsets)
        for s in range(0, self.n_traces, _CHECK_CHUNK):
            t = np.arange(s, min(s + _CHECK_CHUNK, self.n_traces))
            want = {"slow": slow[t // (len(fast) * n_off)], "fast": fast[(t // n_off) % len(fast)]}
            exp_il, exp_xl = (
                (want["slow"], want["fast"]) if sorting == "inline" else (want["fast"], want["slow"])
            )
            got = self.trace_headers(slice(t[0], t[-1] + 1), fields=("iline", "xline", 37))
            bad = (got["iline"] != exp_il) | (got["xline"] != exp_xl)
            if n_off > 1:
                bad |= got["37"] != offsets[t % n_off]
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                self.geometry_error = (
                    f"segyio sees a {len(inlines)} x {len(crosslines)} {sorting}-sorted grid, but trace "
                    f"{s + i} holds inline {got['iline'][i]}, crossline {got['xline'][i]} where that grid "
                    f"has inline {exp_il[i]}, crossline {exp_xl[i]} (traces out of order or missing)"
                )
                return
        self.inlines, self.crosslines, self.offsets, self.sorting = inlines, crosslines, offsets, sorting
        grid = (len(inlines), len(crosslines))
        if n_off > 1:
            self.kind, self.shape = "prestack", (*grid, n_off, self.n_samples)
        else:
            self.kind, self.shape = "cube", (*grid, self.n_samples)

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the file handle and the memory map (idempotent)."""
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> SegyFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"SegyFile({str(self.path)!r}, kind={self.kind!r}, shape={self.shape}, dt_ms={self.dt_ms}, "
            f"format={self.format_name!r}, endian={self.endian!r})"
        )

    def _handle(self) -> Any:
        if self._f is None:
            raise SeismicIOError(self.path, "file is closed")
        return self._f

    # -- reads -----------------------------------------------------------------------------------
    def _raw(self, start: int, stop: int) -> np.ndarray:
        """Traces [start, stop) as float32; one contiguous segyio read over the memory map."""
        with _segyio_errors(self.path, f"reading traces {start}-{stop - 1}"):
            data = self._handle().trace.raw[start:stop]
        return self._decode(np.asarray(data).reshape(stop - start, self._stored_samples))

    def _decode(self, data: np.ndarray) -> np.ndarray:
        """segyio's samples ``[k, m]`` -> float32 ``[k, n_t]`` (extension headers cut, 24-bit assembled)."""
        return decode(data, self.format_code, self.n_samples, self.endian)

    def read_traces(self, indices: int | Sequence[int] | np.ndarray | slice) -> np.ndarray:
        """Traces by position in the file, float32 ``[k, n_t]``, in the order asked (any file kind).

        Neighbouring indices are read as one contiguous block, so only the traces asked for are touched.
        """
        if isinstance(indices, slice):
            indices = range(*indices.indices(self.n_traces))
        idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        if idx.ndim != 1:
            raise ValueError(f"indices must be one-dimensional, got shape {idx.shape}")
        bad = idx[(idx < -self.n_traces) | (idx >= self.n_traces)]
        if bad.size:
            raise IndexError(f"trace index {int(bad[0])} out of range for {self.n_traces} traces")
        unique, inverse = np.unique(idx % self.n_traces, return_inverse=True)
        out = np.empty((unique.size, self.n_samples), dtype=np.float32)
        if unique.size == 0:
            return out
        breaks = np.flatnonzero(np.diff(unique) != 1) + 1
        for run_start, run in zip(np.r_[0, breaks], np.split(unique, breaks), strict=True):
            out[run_start : run_start + run.size] = self._raw(int(run[0]), int(run[-1]) + 1)
        return out[inverse]

    def _require_grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.inlines is None or self.crosslines is None or self.offsets is None:
            raise SegyGeometryError(self.path, self._geometry_reason())
        return self.inlines, self.crosslines, self.offsets

    def read_inlines(self, start: int, stop: int) -> np.ndarray:
        """Inlines by position [start, stop), float32 ``[k, n_xl, (n_off,) n_t]`` (cube/prestack only).

        Inline-sorted files are read as one contiguous block; crossline-sorted ones line by line
        through segyio's strided line reader. Nothing outside the range is read.
        """
        inlines, crosslines, offsets = self._require_grid()
        if not 0 <= start <= stop <= len(inlines):
            raise IndexError(f"inline range [{start}, {stop}) outside [0, {len(inlines)})")
        n_xl, n_off, k = len(crosslines), len(offsets), stop - start
        if self.sorting == "inline":
            block = self._raw(start * n_xl * n_off, stop * n_xl * n_off)
            out = block.reshape(k, n_xl, n_off, self.n_samples)
        else:
            out = np.empty((k, n_xl, n_off, self.n_samples), dtype=np.float32)
            f = self._handle()
            with _segyio_errors(self.path, f"reading inlines {start}-{stop - 1}"):
                for i, il in enumerate(inlines[start:stop]):
                    for j, off in enumerate(offsets):
                        out[i, :, j] = self._decode(f.iline[int(il), int(off)])
        return out[:, :, 0] if self.kind == "cube" else out

    def read_all(self) -> np.ndarray:
        """The whole file, float32, in :attr:`shape` (loads everything: use the lazy reads for big files)."""
        if self.kind == "unstructured":
            return self._raw(0, self.n_traces)
        inlines, crosslines, offsets = self._require_grid()
        data = self._raw(0, self.n_traces)
        if self.sorting == "inline":
            data = data.reshape(len(inlines), len(crosslines), len(offsets), self.n_samples)
        else:
            data = data.reshape(len(crosslines), len(inlines), len(offsets), self.n_samples)
            data = np.ascontiguousarray(data.transpose(1, 0, 2, 3))
        return data[:, :, 0] if self.kind == "cube" else data

    def trace_headers(
        self,
        indices: Sequence[int] | np.ndarray | slice | None = None,
        fields: Iterable[str | int] = DEFAULT_HEADER_FIELDS,
    ) -> dict[str, np.ndarray]:
        """Selected trace header words as int arrays, one per field, for all traces or ``indices``.

        ``fields`` are aliases (``iline``/``xline`` = the configured bytes, ``offset``, ``cdp``, ``cdp_x``,
        ``cdp_y``, ``coord_scalar``, ``ns``, ``dt``), segyio ``TraceField`` names (``"CDP_X"``) or byte
        positions; each key of the result is the field as given (a byte position as its decimal string).
        Reads only the header words, never the samples.
        """
        f = self._handle()
        sel: Any = slice(None) if indices is None else indices
        if not isinstance(sel, slice):
            sel = np.asarray(sel, dtype=np.intc)
        out: dict[str, np.ndarray] = {}
        for field in fields:
            byte = self._field_byte(field)
            with _segyio_errors(self.path, f"reading trace header bytes {byte}"):
                out[str(field)] = np.asarray(f.attributes(byte)[sel], dtype=np.int64)
        return out

    def _field_byte(self, field: str | int) -> int:
        if isinstance(field, str):
            byte = {"iline": self.iline_byte, "xline": self.xline_byte, **_ALIASES, **TRACE_FIELDS}.get(field)
            if byte is None:
                raise ValueError(
                    f"unknown trace header field {field!r}; aliases: iline, xline, {', '.join(_ALIASES)}"
                )
            return byte
        return check_header_byte("field", field)

    # -- geometry diagnosis (only built when a grid is needed and missing) -------------------------
    def _grid_at(self, il_byte: int, xl_byte: int) -> tuple[int, int, bool]:
        """Distinct inline and crossline numbers at a byte pair, and whether they tile the traces."""
        h = self.trace_headers(fields=(il_byte, xl_byte, 37))
        il, xl, off = h[str(il_byte)], h[str(xl_byte)], h["37"]
        n_il, n_xl, n_off = (len(np.unique(a)) for a in (il, xl, off))
        keys = np.unique(np.stack([il, xl, off]), axis=1).shape[1]
        full = n_il > 1 and n_xl > 1 and keys == self.n_traces == n_il * n_xl * n_off
        return n_il, n_xl, full

    def _geometry_reason(self) -> str:
        n_il, n_xl, _ = self._grid_at(self.iline_byte, self.xline_byte)
        reason = (
            f"no inline/crossline geometry at trace header bytes {self.iline_byte}/{self.xline_byte}: "
            f"{self.geometry_error} (they hold {n_il} distinct inline and {n_xl} distinct crossline numbers "
            f"over {self.n_traces} traces; a 3D volume needs every inline x crossline, sorted by one of them)"
        )
        tried = [(a, b) for a, b in COMMON_GEOMETRY_BYTES if (a, b) != (self.iline_byte, self.xline_byte)]
        for a, b in tried:
            n_a, n_b, full = self._grid_at(a, b)
            if full:
                return f"{reason}; bytes {a}/{b} hold a full {n_a} x {n_b} grid: try iline={a}, xline={b}"
        pairs = ", ".join(f"{a}/{b}" for a, b in tried)
        return f"{reason}; the common alternatives {pairs} hold no full grid either (2D line or gathers?)"


def open_segy(
    path: str | Path, *, iline: int = 189, xline: int = 193, endian: str = "auto", mmap: bool = True
) -> SegyFile:
    """Open a SEG-Y file lazily, memory-mapped unless ``mmap=False`` (plain reads, the same results, and a
    resident set that does not grow with the file); see :class:`SegyFile` and the module rules."""
    return SegyFile(path, iline=iline, xline=xline, endian=endian, mmap=mmap)


def read_cube(path: str | Path, **open_kwargs: Any) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Load a post-stack 3D cube: ``(amplitudes [il, xl, t] float32, dt_ms, inlines, crosslines)``.

    Raises :class:`SegyGeometryError` for a file with no inline/crossline grid (naming the bytes tried)
    or for a pre-stack file (several offsets: use :func:`open_segy` and its 4D reads).
    """
    with open_segy(path, **open_kwargs) as f:
        if f.kind == "prestack":
            raise SegyGeometryError(
                f.path,
                f"pre-stack file ({len(f.offsets)} offsets) is not a post-stack cube; "  # type: ignore[arg-type]
                "read it with open_segy(...).read_all() to get [il, xl, offset, t]",
            )
        inlines, crosslines, _ = f._require_grid()
        return f.read_all(), f.dt_ms, inlines.copy(), crosslines.copy()
