"""Write a new SEG-Y volume on the grid of an existing one, streaming inline blocks, headers copied.

For results computed per sample of a post-stack cube (class volumes, probabilities): the output has the
template's textual, binary, extended and trace headers byte for byte (coordinates, line numbers, scalars,
everything a loader keys on), its trace order and byte order; only the sample format code (binary header
bytes 3225-3226) and the samples change (rev 2 trace header extensions are copied with their trace header).
The binary header's sample count is set to the real one when the template's was wrong
(:mod:`seismic.io.segy_headers` read the file by its trace headers then).

Headers are copied as raw bytes with ``os.pread``/``os.pwrite`` rather than through segyio: segyio's
``spec`` rebuilds the headers from a few fields and loses the rest, and copying 240 bytes per trace as
numpy slices costs nothing next to the samples. Writes go through plain file I/O, not a memory map, so the
output never counts in the writer's resident memory. The file is written under a temporary name and renamed
only when every trace was written (:func:`seismic.io.atomic.atomic_file`): a failure leaves no output.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from seismic.io.atomic import atomic_file
from seismic.io.errors import SeismicIOError
from seismic.io.segy import SegyFile
from seismic.io.segy_headers import TEXT_BYTES, TRACE_HEADER_BYTES

#: Output sample formats: name -> (SEG-Y format code, numpy dtype without byte order).
OUTPUT_FORMATS: dict[str, tuple[int, str]] = {"int8": (8, "i1"), "int16": (3, "i2"), "ieee": (5, "f4")}
_FORMAT_POS = TEXT_BYTES + 24  # binary header bytes 3225-3226
_SAMPLES_POS = TEXT_BYTES + 20  # binary header bytes 3221-3222
_EXT_SAMPLES_POS = TEXT_BYTES + 68  # binary header bytes 3269-3272 (rev 2 extended sample count)


def _pwrite_all(fd: int, data: Any, offset: int) -> None:
    """``os.pwrite`` until every byte is out (it may write less than asked, e.g. past 2 GiB on Linux)."""
    view = memoryview(data).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


class SegyLikeWriter:
    """Write ``[k, n_xl, n_t]`` inline blocks of a volume on ``template``'s grid to ``path``.

    Use as a context manager; call :meth:`write_inlines` for every inline (any order, any block size).
    On a clean exit the file appears at ``path``; on an error, or if some inline was never written, no file.
    ``sample_format``: ``int8``, ``int16`` (integer volumes: values must fit) or ``ieee`` (float32).
    """

    def __init__(self, template: SegyFile, path: str | Path, sample_format: str = "int16") -> None:
        if template.kind != "cube":
            raise SeismicIOError(
                template.path, f"a {template.kind} file has no post-stack inline/crossline grid to copy"
            )
        if template.layout.seismic_unix:
            raise SeismicIOError(
                template.path,
                "a Seismic Unix template has no binary header to record the output's sample format in; "
                "convert it to SEG-Y first (SU's segyhdrs + segywrite)",
            )
        if sample_format not in OUTPUT_FORMATS:
            raise ValueError(f"sample_format must be one of {sorted(OUTPUT_FORMATS)}, got {sample_format!r}")
        self.template = template
        self.path = Path(path)
        if self.path.resolve() == template.path.resolve():
            raise ValueError(f"{self.path}: the output would overwrite its template")
        self.sample_format = sample_format
        code, kind = OUTPUT_FORMATS[sample_format]
        order = ">" if template.endian == "big" else "<"
        self._code, self._dtype = code, np.dtype(order + kind)
        layout = self._layout = template.layout
        self._n_il, self._n_xl = len(template.inlines), len(template.crosslines)  # type: ignore[arg-type]
        self._n_t = template.n_samples
        self._in_offset, self._in_trace = layout.data_offset, layout.trace_bytes
        self._head = TRACE_HEADER_BYTES * (1 + layout.trace_ext)  # trace header + rev 2 extensions, copied
        self._out_trace = self._head + self._n_t * self._dtype.itemsize
        self._written = np.zeros((self._n_il, self._n_xl), dtype=bool)
        self._stack = contextlib.ExitStack()
        self._in_fd = self._out_fd = -1

    def __enter__(self) -> SegyLikeWriter:
        try:
            tmp = self._stack.enter_context(atomic_file(self.path))
            self._in_fd = os.open(self.template.path, os.O_RDONLY)
            self._stack.callback(os.close, self._in_fd)
            self._out_fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
            self._stack.callback(os.close, self._out_fd)
            head = bytearray(os.pread(self._in_fd, self._in_offset, 0))
            head[_FORMAT_POS : _FORMAT_POS + 2] = self._code.to_bytes(2, self.template.endian)
            # over 65535 samples only the rev 2 extended count can hold it (then 0 in the 16-bit one)
            short = self._n_t if self._n_t <= 0xFFFF else 0
            head[_SAMPLES_POS : _SAMPLES_POS + 2] = short.to_bytes(2, self.template.endian)
            if self._layout.ext_samples:
                head[_EXT_SAMPLES_POS : _EXT_SAMPLES_POS + 4] = self._n_t.to_bytes(4, self.template.endian)
            _pwrite_all(self._out_fd, bytes(head), 0)
            # the full size up front: traces may come in any order
            os.ftruncate(self._out_fd, self._in_offset + self.template.n_traces * self._out_trace)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        # the stack closes the files, then renames the temporary file, or removes it when told of an error
        if exc_type is None and not self._written.all():
            il, xl = np.argwhere(~self._written)[0]
            error = SeismicIOError(
                self.path,
                f"{int((~self._written).sum())} trace(s) never written (first: inline position {il}, "
                f"crossline position {xl}); nothing was saved",
            )
            self._stack.__exit__(SeismicIOError, error, None)
            raise error
        return bool(self._stack.__exit__(exc_type, exc, tb))

    def _trace_index(self, il: np.ndarray, xl: np.ndarray) -> np.ndarray:
        """File position of the traces at grid positions ``(il, xl)`` (the template's sort order)."""
        if self.template.sorting == "inline":
            return il * self._n_xl + xl
        return xl * self._n_il + il

    def write_inlines(self, start: int, values: np.ndarray) -> None:
        """Write ``values [k, n_xl, n_t]`` as inlines ``start .. start + k - 1`` (positions, not numbers)."""
        if self._out_fd < 0:
            raise RuntimeError("SegyLikeWriter: use it as a context manager")
        values = np.asarray(values)
        k = len(values)
        if values.shape != (k, self._n_xl, self._n_t) or not 0 <= start <= start + k <= self._n_il:
            raise ValueError(
                f"values of shape {values.shape} at inline {start} do not fit the {self._n_il} x "
                f"{self._n_xl} x {self._n_t} grid of {self.template.path}"
            )
        if self._dtype.kind == "i":
            info = np.iinfo(self._dtype)
            if values.size and (values.min() < info.min or values.max() > info.max):
                raise ValueError(f"values outside [{info.min}, {info.max}] do not fit {self.sample_format}")
        il, xl = np.meshgrid(np.arange(start, start + k), np.arange(self._n_xl), indexing="ij")
        traces = self._trace_index(il.ravel(), xl.ravel())
        samples = values.reshape(k * self._n_xl, self._n_t).astype(self._dtype, copy=False)
        order = np.argsort(traces, kind="stable")
        traces, samples = traces[order], samples[order]
        # runs of consecutive traces: one read and one write each (a single run for inline-sorted files)
        breaks = np.flatnonzero(np.diff(traces) != 1) + 1
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(traces)], strict=True):
            first, n = int(traces[lo]), int(hi - lo)
            raw = os.pread(self._in_fd, n * self._in_trace, self._in_offset + first * self._in_trace)
            if len(raw) != n * self._in_trace:
                raise SeismicIOError(self.template.path, f"cannot read trace headers {first}-{first + n - 1}")
            out = np.empty((n, self._out_trace), dtype=np.uint8)
            out[:, : self._head] = np.frombuffer(raw, np.uint8).reshape(n, self._in_trace)[:, : self._head]
            out[:, self._head :] = samples[lo:hi].view(np.uint8).reshape(n, -1)
            _pwrite_all(self._out_fd, out.data, self._in_offset + first * self._out_trace)
        self._written[start : start + k] = True
