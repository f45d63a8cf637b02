"""SEG-Y sample formats and file layout: which codes are read, the decoding segyio cannot do, and the
validated :class:`SegyLayout` (also of Seismic Unix files) that :mod:`seismic.io.segy_headers` builds.

segyio (1.9) decodes codes 1, 2, 3, 5, 6, 8, 9, 10, 11, 12 and 16 itself. The 24-bit integers (7, 15) it
sizes correctly but then decodes as IBM floats (with only a warning), and code 4 (fixed point with gain,
obsolete since rev 1) it reads as IBM float too. So 24-bit files are opened through segyio as 1-byte
samples (format 16, three per real sample: segyio still does the file layout, headers and geometry) and
assembled here; code 4 is refused, since nothing here or in segyio decodes it. Trace header extensions
(rev 2, binary header bytes 3507-3508) are read the same way: segyio has no notion of them, so the extra
240-byte headers are handed to segyio as leading samples of each trace and cut off here. Seismic Unix
files (no textual/binary header) are recognised here and opened with segyio's own ``segyio.su``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Sample formats this package reads: code -> (name, bytes per sample).
SUPPORTED_FORMATS: dict[int, tuple[str, int]] = {
    1: ("ibm", 4),
    2: ("int32", 4),
    3: ("int16", 2),
    5: ("ieee", 4),
    6: ("ieee64", 8),
    7: ("int24", 3),
    8: ("int8", 1),
    9: ("int64", 8),
    10: ("uint32", 4),
    11: ("uint16", 2),
    12: ("uint64", 8),
    15: ("uint24", 3),
    16: ("uint8", 1),
}
#: Every sample format code of SEG-Y rev 2 (used to tell the byte order and to name a refused code).
SEGY_FORMAT_NAMES: dict[int, str] = {
    **{code: name for code, (name, _) in SUPPORTED_FORMATS.items()},
    4: "fixed point with gain, obsolete since SEG-Y rev 1",
}
SUPPORTED_TEXT = ", ".join(f"{code} ({name})" for code, (name, _) in SUPPORTED_FORMATS.items())
_INT24 = (7, 15)
_CARRIER = 16  # segyio's 1-byte unsigned format: carries 24-bit samples byte by byte
TEXT_BYTES = 3200
HEADER_BYTES = 3600  # textual (3200) + binary (400) file header
TRACE_HEADER_BYTES = 240


def carrier(code: int, n_samples: int, trace_ext: int) -> tuple[int, int]:
    """``(format code, samples per trace)`` to hand segyio so that it lays the traces out right: 24-bit
    samples as 3 bytes each, and ``trace_ext`` extension headers as leading samples."""
    bps = SUPPORTED_FORMATS[code][1]
    if code in _INT24:
        return _CARRIER, TRACE_HEADER_BYTES * trace_ext + 3 * n_samples
    return code, TRACE_HEADER_BYTES * trace_ext // bps + n_samples  # 240 is a multiple of 1, 2, 4 and 8


def decode(raw: np.ndarray, code: int, n_samples: int, endian: str) -> np.ndarray:
    """segyio's traces ``[k, carrier samples]`` -> float32 ``[k, n_samples]``: drops the extension
    headers (leading samples) and assembles 24-bit integers; other codes are segyio's values as float32."""
    k = raw.shape[0]
    if code not in _INT24:
        return np.asarray(raw[:, raw.shape[1] - n_samples :], dtype=np.float32)
    b = np.asarray(raw[:, raw.shape[1] - 3 * n_samples :], dtype=np.int32).reshape(k, n_samples, 3)
    hi, lo = (0, 2) if endian == "big" else (2, 0)
    value = (b[..., hi] << 16) | (b[..., 1] << 8) | b[..., lo]
    if code == 7:  # two's complement: the top bit of the 24 is the sign
        value -= (value >= 1 << 23) << 24
    return value.astype(np.float32)


@dataclass(frozen=True)
class SegyLayout:
    """What the headers and the file size say about a SEG-Y (or Seismic Unix) file, validated."""

    endian: str
    format_code: int
    n_samples: int
    binary_samples: int  # the binary header's own 16-bit count (0 for SU)
    ext_samples: int  # rev 2 extended count, bytes 3269-3272 (0 when unset)
    binary_dt_us: int  # the binary header's own interval, signed (0 for SU)
    dt_us: int
    t0_ms: float
    n_traces: int
    ext_headers: int
    trace_ext: int  # rev 2 trace header extensions (240 bytes each) after every trace header
    seismic_unix: bool  # no textual/binary header: traces from byte 0
    text_header: str
    notes: tuple[str, ...]

    @property
    def format_name(self) -> str:
        return SUPPORTED_FORMATS[self.format_code][0]

    @property
    def data_offset(self) -> int:
        return 0 if self.seismic_unix else HEADER_BYTES + TEXT_BYTES * self.ext_headers

    @property
    def trace_bytes(self) -> int:
        return (
            TRACE_HEADER_BYTES * (1 + self.trace_ext)
            + self.n_samples * SUPPORTED_FORMATS[self.format_code][1]
        )

    @property
    def segyio_native(self) -> bool:
        """Whether ``segyio.open`` lays out and decodes the file right from its own headers; if not,
        segyio is handed :func:`seismic.io.segy_formats.carrier`'s numbers instead."""
        return (
            self.n_samples == self.binary_samples
            # segyio reads the extended count big-endian whatever the file's order: only then is it safe
            and (self.ext_samples == 0 or (self.endian == "big" and self.ext_samples == self.n_samples))
            and self.trace_ext == 0
            and carrier(self.format_code, self.n_samples, 0) == (self.format_code, self.n_samples)
        )


def u16(buf: bytes, pos: int, order: str) -> int:
    return int.from_bytes(buf[pos : pos + 2], order)  # type: ignore[arg-type]


def i16(buf: bytes, pos: int, order: str) -> int:
    return int.from_bytes(buf[pos : pos + 2], order, signed=True)  # type: ignore[arg-type]


def t0_ms(first: bytes, order: str) -> float:
    scalar = i16(first, 214, order)  # bytes 215-216 scale the delay time, as segyio does
    factor = 1.0 if scalar == 0 else (abs(scalar) if scalar > 0 else 1.0 / abs(scalar))
    return i16(first, 108, order) * factor


def su_layout(fh, size: int, endian: str) -> SegyLayout | None:
    """The layout of a Seismic Unix file (no textual/binary header; traces of a 240-byte header and IEEE
    float samples in the writer's byte order from byte 0), or None when the file is not one: the first
    trace header's sample count (bytes 115-116) must tile the file and the last trace header agree."""
    fh.seek(0)
    first = fh.read(TRACE_HEADER_BYTES)
    if len(first) < TRACE_HEADER_BYTES or first.count(0x40) + first.count(0x20) > TRACE_HEADER_BYTES // 4:
        return None  # spaces (EBCDIC or ASCII): a SEG-Y textual header, not a trace header
    for order in ("little", "big") if endian == "auto" else (endian,):  # SU is native: mostly little
        ns, dt = u16(first, 114, order), i16(first, 116, order)
        trace_bytes = TRACE_HEADER_BYTES + 4 * ns
        if ns == 0 or dt <= 0 or size % trace_bytes:
            continue
        fh.seek(size - trace_bytes + 114)
        if u16(fh.read(2), 0, order) != ns:
            continue
        note = (
            f"no SEG-Y textual/binary header: read as a Seismic Unix file ({order}-endian IEEE float, {ns} "
            f"samples at {dt} us from the first trace header); SU's segyhdrs + segywrite make a SEG-Y file"
        )
        return SegyLayout(
            endian=order,
            format_code=5,
            n_samples=ns,
            binary_samples=0,
            ext_samples=0,
            binary_dt_us=0,
            dt_us=dt,
            t0_ms=t0_ms(first, order),
            n_traces=size // trace_bytes,
            ext_headers=0,
            trace_ext=0,
            seismic_unix=True,
            text_header="",
            notes=(note,),
        )
    return None
