"""Raw SEG-Y header probe: byte order, sample format, sample count/interval and file-size checks.

segyio trusts the binary header and reports every inconsistency as the same terse ``RuntimeError``
("trace count inconsistent with file size"), or silently falls back (IBM float for an unknown format
code, 4 ms for a missing sample interval). This module reads the 3600-byte header and the first trace
header itself, so that :mod:`seismic.io.segy` can refuse a bad file with a message that names the
cause, detect the byte order, and hand segyio numbers it can trust.

Rules (documented in :func:`probe_layout`):

* byte order: the SEG-Y rev2 byte-order constant (bytes 3297-3300) if present, else the order in which
  the format code (bytes 3225-3226) is a SEG-Y format code; a code read the wrong way round is >= 256.
* sample count: the binary header (bytes 3221-3222) when it fits the file size, else the first trace
  header (bytes 115-116) when that fits; a disagreement is kept as a note and logged.
* sample interval: the binary header (bytes 3217-3218) when non-zero, else the first trace header
  (bytes 117-118); a disagreement is kept as a note and logged (binary wins, like the sample count).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import segyio

from seismic.io.errors import (
    SegyFormatError,
    SegyHeaderError,
    SegyNoTracesError,
    SegyTraceLengthError,
    SegyTruncatedError,
    SeismicIOError,
)

log = logging.getLogger(__name__)

TEXT_BYTES = 3200
HEADER_BYTES = 3600  # textual (3200) + binary (400) file header
TRACE_HEADER_BYTES = 240

#: Sample formats this package reads: code -> (name, bytes per sample).
SUPPORTED_FORMATS: dict[int, tuple[str, int]] = {
    1: ("ibm", 4),
    2: ("int32", 4),
    3: ("int16", 2),
    5: ("ieee", 4),
    8: ("int8", 1),
}
#: Every sample format code of SEG-Y rev2 (used to tell the byte order and to name a refused code).
SEGY_FORMAT_NAMES: dict[int, str] = {
    **{code: name for code, (name, _) in SUPPORTED_FORMATS.items()},
    4: "fixed point with gain (obsolete)",
    6: "ieee float64",
    7: "int24",
    9: "int64",
    10: "uint32",
    11: "uint16",
    12: "uint64",
    15: "uint24",
    16: "uint8",
}
#: Inline/crossline byte pairs met in practice: SEG-Y rev1 (INLINE_3D/CROSSLINE_3D), field record /
#: CDP ensemble number, field record / trace number within the record.
COMMON_GEOMETRY_BYTES: tuple[tuple[int, int], ...] = ((189, 193), (9, 21), (9, 13))
#: segyio's trace header field names -> first byte (1-based).
TRACE_FIELDS: dict[str, int] = {k: v for k, v in vars(segyio.TraceField).items() if isinstance(v, int)}
_SUPPORTED_TEXT = ", ".join(f"{code} ({name})" for code, (name, _) in SUPPORTED_FORMATS.items())
_MAX_WALK = 1_000_000  # trace headers visited when looking for variable-length traces (error path only)


@dataclass(frozen=True)
class SegyLayout:
    """What the headers and the file size say about a SEG-Y file, validated."""

    endian: str
    format_code: int
    n_samples: int
    binary_samples: int  # the binary header's own value: segyio opens the file itself only if equal
    dt_us: int
    t0_ms: float
    n_traces: int
    ext_headers: int
    text_header: str
    notes: tuple[str, ...]

    @property
    def format_name(self) -> str:
        return SUPPORTED_FORMATS[self.format_code][0]


def check_header_byte(name: str, byte: int) -> int:
    """A trace header byte position given by a caller, checked to start a SEG-Y field (segyio needs it)."""
    if isinstance(byte, bool) or int(byte) != byte or int(byte) not in TRACE_FIELDS.values():
        pairs = ", ".join(f"{a}/{b}" for a, b in COMMON_GEOMETRY_BYTES)
        raise ValueError(
            f"{name}={byte!r} is not the first byte of a SEG-Y trace header field; "
            f"common inline/crossline pairs: {pairs}"
        )
    return int(byte)


def _u16(buf: bytes, pos: int, order: str) -> int:
    return int.from_bytes(buf[pos : pos + 2], order)  # type: ignore[arg-type]


def _i16(buf: bytes, pos: int, order: str) -> int:
    return int.from_bytes(buf[pos : pos + 2], order, signed=True)  # type: ignore[arg-type]


def decode_text_header(raw: bytes) -> str:
    """EBCDIC or ASCII textual header -> 40 lines of text (segyio assumes EBCDIC and garbles ASCII)."""
    ebcdic = raw.count(0x40) > raw.count(0x20)  # the space character of each encoding
    text = raw.decode("cp037" if ebcdic else "latin-1").replace("\x00", " ")
    return "\n".join(text[i : i + 80].rstrip() for i in range(0, len(text), 80)).rstrip("\n")


def _detect_endian(path: Path, binary: bytes, endian: str) -> str:
    codes = {order: _u16(binary, 24, order) for order in ("big", "little")}
    if endian not in ("auto", "big", "little"):
        raise ValueError(f"endian must be 'auto', 'big' or 'little', got {endian!r}")
    if endian == "auto":
        for order in ("big", "little"):
            if int.from_bytes(binary[96:100], order) == 0x01020304:  # rev2 byte-order constant
                endian = order
                break
        else:
            valid = [order for order in ("big", "little") if codes[order] in SEGY_FORMAT_NAMES]
            if valid:
                endian = valid[0]
    if endian == "auto" or codes[endian] not in SEGY_FORMAT_NAMES:
        if not any(binary[16:26]):
            raise SegyHeaderError(
                path,
                "binary header (bytes 3201-3600) is blank: sample format, count and interval are all 0",
            )
        read_as = "big" if endian == "auto" else endian
        other = "little" if read_as == "big" else "big"
        hint = (
            f"the file looks {other}-endian (endian='auto' detects it)"
            if codes[other] in SEGY_FORMAT_NAMES
            else "is this a SEG-Y file?"
        )
        raise SegyFormatError(
            path,
            f"unknown sample format code {codes[read_as]} in binary header bytes 3225-3226 "
            f"(read {read_as}-endian; {codes[other]} read {other}-endian); "
            f"supported codes: {_SUPPORTED_TEXT}; {hint}",
        )
    code = codes[endian]
    if code not in SUPPORTED_FORMATS:
        raise SegyFormatError(
            path,
            f"sample format code {code} ({SEGY_FORMAT_NAMES[code]}, binary header bytes 3225-3226) "
            f"is not supported; supported codes: {_SUPPORTED_TEXT}",
        )
    return endian


def _variable_lengths(fh, order: str, start: int, size: int, bps: int, default_ns: int) -> set[int]:
    """Distinct sample counts if stepping through the traces by their own headers (bytes 115-116) ends
    exactly at the end of the file (variable-length traces), else an empty set (truncated, or stale
    trace headers that make the steps land in sample data)."""
    seen: set[int] = set()
    pos = start
    for _ in range(_MAX_WALK):
        if pos + TRACE_HEADER_BYTES > size:
            break
        fh.seek(pos + 114)
        ns = int.from_bytes(fh.read(2), order) or default_ns  # type: ignore[arg-type]
        seen.add(ns)
        pos += TRACE_HEADER_BYTES + ns * bps
    return seen if pos == size and len(seen) > 1 else set()


def _sample_count(
    path: Path, fh, *, order: str, size: int, data_offset: int, bps: int, ns_bin: int, ns_tr: int, notes: list
) -> int:
    """Pick the sample count that fits the file size (binary header first), or say why none does."""
    data_bytes = size - data_offset
    sources = [
        (ns, where)
        for ns, where in ((ns_bin, "binary header bytes 3221-3222"), (ns_tr, "trace header bytes 115-116"))
        if ns > 0
    ]
    if not sources:
        raise SegyHeaderError(
            path,
            "sample count is 0 in the binary header (bytes 3221-3222) and in the first trace header "
            "(bytes 115-116); the header is corrupt",
        )
    for ns, where in sources:
        if data_bytes % (TRACE_HEADER_BYTES + ns * bps) == 0:
            if ns != ns_bin:
                notes.append(
                    f"binary header says {ns_bin} samples per trace (bytes 3221-3222), which does not fit "
                    f"the file size; using the first trace header's {ns} ({where})"
                )
            elif ns_tr not in (0, ns):
                notes.append(
                    f"first trace header says {ns_tr} samples (bytes 115-116); using the binary header's "
                    f"{ns}, which fits the file size"
                )
            return ns
    ns, where = sources[0]
    lengths = _variable_lengths(fh, order, data_offset, size, bps, ns)
    if lengths:
        shown = ", ".join(str(n) for n in sorted(lengths)[:6])
        raise SegyTraceLengthError(
            path,
            f"traces do not all have the same length: their headers (bytes 115-116) give {shown} samples, "
            f"the binary header {ns_bin}; only fixed-length traces can be read",
        )
    trace_bytes = TRACE_HEADER_BYTES + ns * bps
    whole, extra = divmod(data_bytes, trace_bytes)
    raise SegyTruncatedError(
        path,
        f"file is truncated or its sample count is wrong: {data_bytes} bytes of trace data after the "
        f"{data_offset}-byte headers are {whole} whole traces of {trace_bytes} bytes "
        f"(240-byte header + {ns} samples x {bps} bytes, from {where}) plus {extra} bytes; "
        f"a complete file would be {data_offset + (whole + 1) * trace_bytes} bytes",
    )


def probe_layout(path: str | Path, endian: str = "auto") -> SegyLayout:
    """Read and validate the file headers; raise a :class:`SeismicIOError` subclass naming the cause."""
    path = Path(path)
    if not path.exists():
        raise SeismicIOError(path, "file not found")
    if not path.is_file():
        raise SeismicIOError(path, "not a regular file")
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(HEADER_BYTES)
            if size < HEADER_BYTES:
                raise SegyTruncatedError(
                    path,
                    f"file is {size} bytes, shorter than the {HEADER_BYTES}-byte textual + binary header "
                    "of any SEG-Y file (cut short or not a SEG-Y file)",
                )
            binary = head[TEXT_BYTES:]
            order = _detect_endian(path, binary, endian)
            code = _u16(binary, 24, order)
            ext = _i16(binary, 304, order)
            if ext < 0:
                raise SegyHeaderError(
                    path,
                    f"binary header bytes 3505-3506 announce a variable number ({ext}) of extended "
                    "textual headers, which is not supported",
                )
            data_offset = HEADER_BYTES + TEXT_BYTES * ext
            if data_offset > size:
                raise SegyHeaderError(
                    path,
                    f"binary header bytes 3505-3506 announce {ext} extended textual headers "
                    f"({data_offset} header bytes) but the file is only {size} bytes",
                )
            if data_offset == size:
                raise SegyNoTracesError(
                    path, f"file holds only the {data_offset}-byte textual and binary headers, no traces"
                )
            if size - data_offset < TRACE_HEADER_BYTES:
                raise SegyTruncatedError(
                    path,
                    f"file ends {size - data_offset} bytes into the first 240-byte trace header",
                )
            fh.seek(data_offset)
            first = fh.read(TRACE_HEADER_BYTES)
            ns_bin = _u16(binary, 20, order)
            notes: list[str] = []
            ns = _sample_count(
                path,
                fh,
                order=order,
                size=size,
                data_offset=data_offset,
                bps=SUPPORTED_FORMATS[code][1],
                ns_bin=ns_bin,
                ns_tr=_u16(first, 114, order),
                notes=notes,
            )
    except OSError as err:
        raise SeismicIOError(path, f"cannot read file: {err.strerror or err}") from err
    dt_bin, dt_tr = _u16(binary, 16, order), _u16(first, 116, order)
    dt_us = (
        dt_bin or dt_tr
    )  # 2-byte unsigned microseconds: at most 65.5 ms, so 0 is the one implausible value
    if dt_us == 0:
        raise SegyHeaderError(
            path,
            "sample interval is 0 in the binary header (bytes 3217-3218) and in the first trace header "
            "(bytes 117-118); the header is corrupt",
        )
    if dt_bin and dt_tr and dt_bin != dt_tr:
        notes.append(
            f"sample interval: binary header {dt_bin} us (bytes 3217-3218), first trace header {dt_tr} us "
            f"(bytes 117-118); using the binary header"
        )
    elif not dt_bin:
        notes.append(f"binary header sample interval is 0; using the first trace header's {dt_tr} us")
    scalar = _i16(first, 214, order)  # bytes 215-216 scale the delay time, as segyio does
    factor = 1.0 if scalar == 0 else (abs(scalar) if scalar > 0 else 1.0 / abs(scalar))
    for note in notes:
        log.warning("%s: %s", path, note)
    return SegyLayout(
        endian=order,
        format_code=code,
        n_samples=ns,
        binary_samples=ns_bin,
        dt_us=dt_us,
        t0_ms=_i16(first, 108, order) * factor,
        n_traces=(size - data_offset) // (TRACE_HEADER_BYTES + ns * SUPPORTED_FORMATS[code][1]),
        ext_headers=ext,
        text_header=decode_text_header(head[:TEXT_BYTES]),
        notes=tuple(notes),
    )
