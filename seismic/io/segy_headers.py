"""Raw SEG-Y header probe: byte order, sample format, sample count/interval and file-size checks.

segyio trusts the binary header and reports every inconsistency as the same terse ``RuntimeError``
("trace count inconsistent with file size"), or silently falls back (IBM float for an unknown format
code, 4 ms for a missing sample interval). This module reads the 3600-byte header and the first trace
header itself, so that :mod:`seismic.io.segy` can refuse a bad file with a message that names the
cause, detect the byte order, and hand segyio numbers it can trust.

Rules (documented in :func:`probe_layout`):

* byte order: the SEG-Y rev2 byte-order constant (bytes 3297-3300) if present, else the order in which
  the format code (bytes 3225-3226) is a SEG-Y format code; a code read the wrong way round is >= 256.
* sample count: the rev 2 extended count (bytes 3269-3272) when set and it fits the file size, else the
  binary header (bytes 3221-3222) when it fits, else the first trace header (bytes 115-116) when that
  fits; a disagreement is kept as a note and logged.
* trace header extensions (rev 2, bytes 3507-3508): each trace then has 240 more header bytes per
  extension; when only traces without them fit the file size the count is ignored, with a note.
* sample interval: signed 16-bit, as in SEG-Y rev 2 and segyio: the binary header (bytes 3217-3218) when
  positive, else the first trace header (bytes 117-118); a disagreement is kept as a note and logged
  (binary wins, like the sample count).
* Seismic Unix: a file that is no readable SEG-Y but whose first trace header tiles it from byte 0 is
  read as SU (no textual/binary header, IEEE float samples), through segyio's ``su`` module.
"""

from __future__ import annotations

import logging
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
from seismic.io.segy_formats import (
    HEADER_BYTES,
    SEGY_FORMAT_NAMES,
    SUPPORTED_FORMATS,
    SUPPORTED_TEXT,
    TEXT_BYTES,
    TRACE_HEADER_BYTES,
    SegyLayout,
    i16,
    su_layout,
    t0_ms,
    u16,
)

log = logging.getLogger(__name__)

#: Said where a file is neither SEG-Y nor Seismic Unix (SU files are read: :func:`segy_formats.su_layout`).
NOT_SU = (
    "it is not a Seismic Unix file either (no 3600-byte header; read as such when its first trace "
    "header's sample count, bytes 115-116, tiles the file, which it does not here); if it is SU, check "
    "that it is complete"
)


#: Inline/crossline byte pairs met in practice: SEG-Y rev1 (INLINE_3D/CROSSLINE_3D), field record /
#: CDP ensemble number, field record / trace number within the record.
COMMON_GEOMETRY_BYTES: tuple[tuple[int, int], ...] = ((189, 193), (9, 21), (9, 13))
#: segyio's trace header field names -> first byte (1-based).
TRACE_FIELDS: dict[str, int] = {k: v for k, v in vars(segyio.TraceField).items() if isinstance(v, int)}
_MAX_WALK = 1_000_000  # trace headers visited when looking for variable-length traces (error path only)


def check_header_byte(name: str, byte: int) -> int:
    """A trace header byte position given by a caller, checked to start a SEG-Y field (segyio needs it)."""
    if isinstance(byte, bool) or int(byte) != byte or int(byte) not in TRACE_FIELDS.values():
        pairs = ", ".join(f"{a}/{b}" for a, b in COMMON_GEOMETRY_BYTES)
        raise ValueError(
            f"{name}={byte!r} is not the first byte of a SEG-Y trace header field; "
            f"common inline/crossline pairs: {pairs}"
        )
    return int(byte)


def decode_text_header(raw: bytes) -> str:
    """EBCDIC or ASCII textual header -> 40 lines of text (segyio assumes EBCDIC and garbles ASCII)."""
    ebcdic = raw.count(0x40) > raw.count(0x20)  # the space character of each encoding
    text = raw.decode("cp037" if ebcdic else "latin-1").replace("\x00", " ")
    return "\n".join(text[i : i + 80].rstrip() for i in range(0, len(text), 80)).rstrip("\n")


def _detect_endian(path: Path, binary: bytes, endian: str) -> str:
    codes = {order: u16(binary, 24, order) for order in ("big", "little")}
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
                "binary header (bytes 3201-3600) is blank: sample format, count and interval are all 0; "
                f"{NOT_SU}",
            )
        read_as = "big" if endian == "auto" else endian
        other = "little" if read_as == "big" else "big"
        hint = (
            f"the file looks {other}-endian (endian='auto' detects it)"
            if codes[other] in SEGY_FORMAT_NAMES
            else f"is this a SEG-Y file? {NOT_SU}"
        )
        raise SegyFormatError(
            path,
            f"unknown sample format code {codes[read_as]} in binary header bytes 3225-3226 "
            f"(read {read_as}-endian; {codes[other]} read {other}-endian); "
            f"supported codes: {SUPPORTED_TEXT}; {hint}",
        )
    code = codes[endian]
    if code not in SUPPORTED_FORMATS:
        raise SegyFormatError(
            path,
            f"sample format code {code} ({SEGY_FORMAT_NAMES[code]}, binary header bytes 3225-3226) "
            "is not supported: neither this package nor segyio decodes it (segyio reads it as IBM float); "
            f"convert the file to code 5 (IEEE float) with the software that wrote it; supported codes: "
            f"{SUPPORTED_TEXT}",
        )
    return endian


def _variable_lengths(
    fh, order: str, start: int, size: int, bps: int, default_ns: int, head: int
) -> set[int]:
    """Distinct sample counts if stepping through the traces by their own headers (bytes 115-116) ends
    exactly at the end of the file (variable-length traces), else an empty set (truncated, or stale
    trace headers that make the steps land in sample data). ``head``: header bytes per trace."""
    seen: set[int] = set()
    pos = start
    for _ in range(_MAX_WALK):
        if pos + head > size:
            break
        fh.seek(pos + 114)
        ns = int.from_bytes(fh.read(2), order) or default_ns  # type: ignore[arg-type]
        seen.add(ns)
        pos += head + ns * bps
    return seen if pos == size and len(seen) > 1 else set()


_EXT, _EXT_SEGYIO, _BIN, _TR = (
    "binary header bytes 3269-3272 (rev 2 extended count)",
    "binary header bytes 3269-3272 read big-endian (as segyio writes them in little-endian files)",
    "binary header bytes 3221-3222",
    "first trace header bytes 115-116",
)


def _sample_count(
    path: Path,
    fh,
    *,
    order: str,
    size: int,
    data_offset: int,
    bps: int,
    counts: dict,
    trace_ext: int,
    notes: list,
) -> tuple[int, int]:
    """``(sample count, trace header extensions)`` that fit the file size (rev 2 extended count first, then
    the binary header, then the first trace header; the announced extensions first, then none), or an
    error that says why nothing fits. ``counts``: where -> value, in that order of preference."""
    data_bytes = size - data_offset
    sources = [(ns, where) for where, ns in counts.items() if ns > 0]
    if not sources:
        raise SegyHeaderError(
            path,
            "sample count is 0 in the binary header (bytes 3221-3222 and 3269-3272) and in the first trace "
            "header (bytes 115-116); the header is corrupt",
        )
    for n_ext in dict.fromkeys((trace_ext, 0)):
        for ns, where in sources:
            if data_bytes % (TRACE_HEADER_BYTES * (1 + n_ext) + ns * bps):
                continue
            if n_ext != trace_ext:
                notes.append(
                    f"binary header bytes 3507-3508 announce {trace_ext} trace header extension(s), but only "
                    "traces without them fit the file size; ignoring them"
                )
            ahead = list(counts.items())[: list(counts).index(where)]
            skipped = [f"{w} say {n} samples per trace" for w, n in ahead if n or w == _BIN]
            if skipped:
                notes.append(f"{'; '.join(skipped)}, which does not fit the file size; using {ns} ({where})")
            elif counts[_TR] not in (0, ns):
                notes.append(
                    f"first trace header says {counts[_TR]} samples (bytes 115-116); using {ns} ({where}), "
                    "which fits the file size"
                )
            return ns, n_ext
    ns, where = sources[0]
    head = TRACE_HEADER_BYTES * (1 + trace_ext)
    lengths = _variable_lengths(fh, order, data_offset, size, bps, ns, head)
    if lengths:
        shown = ", ".join(str(n) for n in sorted(lengths)[:6])
        raise SegyTraceLengthError(
            path,
            f"traces do not all have the same length: their headers (bytes 115-116) give {shown} samples, "
            f"the binary header {counts[_BIN]}; only fixed-length traces can be read",
        )
    trace_bytes = head + ns * bps
    whole, extra = divmod(data_bytes, trace_bytes)
    ext = (
        f" + {trace_ext} x 240-byte trace header extensions (binary header bytes 3507-3508)"
        if trace_ext
        else ""
    )
    raise SegyTruncatedError(
        path,
        f"file is truncated or its sample count is wrong: {data_bytes} bytes of trace data after the "
        f"{data_offset}-byte headers are {whole} whole traces of {trace_bytes} bytes "
        f"(240-byte header{ext} + {ns} samples x {bps} bytes, from {where}) plus {extra} bytes; "
        f"a complete file would be {data_offset + (whole + 1) * trace_bytes} bytes",
    )


def _segy_layout(path: Path, fh, size: int, endian: str) -> SegyLayout:
    head = fh.read(HEADER_BYTES)
    if size < HEADER_BYTES:
        raise SegyTruncatedError(
            path,
            f"file is {size} bytes, shorter than the {HEADER_BYTES}-byte textual + binary header "
            f"of any SEG-Y file (cut short or not a SEG-Y file); {NOT_SU}",
        )
    binary = head[TEXT_BYTES:]
    order = _detect_endian(path, binary, endian)
    code = u16(binary, 24, order)
    ext, trace_ext = i16(binary, 304, order), i16(binary, 306, order)
    for value, pos, what in (
        (ext, 3505, "extended textual headers"),
        (trace_ext, 3507, "trace header extensions"),
    ):
        if value < 0:
            raise SegyHeaderError(
                path,
                f"binary header bytes {pos}-{pos + 1} announce a variable number ({value}) of {what}, "
                "which is not supported",
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
            path, f"file ends {size - data_offset} bytes into the first 240-byte trace header"
        )
    fh.seek(data_offset)
    first = fh.read(TRACE_HEADER_BYTES)
    counts = {
        _EXT: int.from_bytes(binary[68:72], order, signed=True),  # type: ignore[arg-type]
        # segyio (1.9) writes and reads this 4-byte field big-endian even in little-endian files
        _EXT_SEGYIO: int.from_bytes(binary[68:72], "big", signed=True) if order == "little" else 0,
        _BIN: u16(binary, 20, order),
        _TR: u16(first, 114, order),
    }
    notes: list[str] = []
    bps = SUPPORTED_FORMATS[code][1]
    ns, trace_ext = _sample_count(
        path,
        fh,
        order=order,
        size=size,
        data_offset=data_offset,
        bps=bps,
        counts=counts,
        trace_ext=trace_ext,
        notes=notes,
    )
    # signed, as SEG-Y rev 2 and segyio read it: a "negative" interval is a corrupt one, not 65.5 ms
    dt_bin, dt_tr = i16(binary, 16, order), i16(first, 116, order)
    dt_us = dt_bin if dt_bin > 0 else dt_tr
    if dt_us <= 0:
        raise SegyHeaderError(
            path,
            f"sample interval is {dt_bin} us in the binary header (bytes 3217-3218) and {dt_tr} us in the "
            "first trace header (bytes 117-118), neither positive; the header is corrupt",
        )
    if dt_bin > 0 and dt_tr > 0 and dt_bin != dt_tr:
        notes.append(
            f"sample interval: binary header {dt_bin} us (bytes 3217-3218), first trace header {dt_tr} us "
            f"(bytes 117-118); using the binary header"
        )
    elif dt_bin <= 0:
        notes.append(
            f"binary header sample interval is {dt_bin} (bytes 3217-3218, signed 16-bit); using the first "
            f"trace header's {dt_tr} us"
        )
    return SegyLayout(
        endian=order,
        format_code=code,
        n_samples=ns,
        binary_samples=counts[_BIN],
        ext_samples=counts[_EXT],
        binary_dt_us=dt_bin,
        dt_us=dt_us,
        t0_ms=t0_ms(first, order),
        n_traces=(size - data_offset) // (TRACE_HEADER_BYTES * (1 + trace_ext) + ns * bps),
        ext_headers=ext,
        trace_ext=trace_ext,
        seismic_unix=False,
        text_header=decode_text_header(head[:TEXT_BYTES]),
        notes=tuple(notes),
    )


def probe_layout(path: str | Path, endian: str = "auto") -> SegyLayout:
    """Read and validate the file headers; raise a :class:`SeismicIOError` subclass naming the cause.

    A file that fails as SEG-Y is tried as Seismic Unix (:func:`seismic.io.segy_formats.su_layout`)
    before the SEG-Y error is raised."""
    path = Path(path)
    if endian not in ("auto", "big", "little"):
        raise ValueError(f"endian must be 'auto', 'big' or 'little', got {endian!r}")
    if not path.exists():
        raise SeismicIOError(path, "file not found")
    if not path.is_file():
        raise SeismicIOError(path, "not a regular file")
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            try:
                layout = _segy_layout(path, fh, size, endian)
            except SeismicIOError:
                su = su_layout(fh, size, endian)
                if su is None:
                    raise
                layout = su
    except OSError as err:
        raise SeismicIOError(path, f"cannot read file: {err.strerror or err}") from err
    for note in layout.notes:
        log.warning("%s: %s", path, note)
    return layout
