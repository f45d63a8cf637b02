"""Write a 3D cube as SEG-Y (segyio), with its label volume and a provenance record beside it.

All outputs are written to temporary files and renamed only when every one of them is complete, so a
failure anywhere leaves none of them (not a SEG-Y without its labels, nor labels without a SEG-Y).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib.metadata
import json
from pathlib import Path
from typing import Any

import numpy as np
import segyio

from seismic.io.atomic import atomic_file
from seismic.io.segy_headers import check_header_byte

_FORMATS = {"ieee": 5, "ibm": 1}
_MAX_SAMPLES = 32767  # the sample count is a 2-byte header field, signed in SEG-Y rev0/rev1
_RESERVED_BYTES = {1, 5, 115, 117}  # written by write_cube itself: sequence numbers, sample count/interval
PROVENANCE_VERSION = 1


def labels_path_for(segy_path: str | Path) -> Path:
    """Where the label volume of a SEG-Y file lives: ``survey.sgy`` -> ``survey.labels.npy``."""
    return Path(segy_path).with_suffix(".labels.npy")


def provenance_path_for(segy_path: str | Path) -> Path:
    """Where the provenance record of a SEG-Y file lives: ``survey.sgy`` -> ``survey.provenance.json``."""
    return Path(segy_path).with_suffix(".provenance.json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def _jsonable(obj: Any) -> Any:
    """JSON fallback for what provenance dicts usually hold: numpy scalars/arrays, paths, sets."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"provenance value of type {type(obj).__name__} is not JSON serialisable")


def _line_numbers(name: str, numbers: Any, n: int) -> np.ndarray:
    if numbers is None:
        return np.arange(1, n + 1, dtype=np.int64)
    arr = np.asarray(numbers)
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be {n} integers (one per {name[:-1]}), got {arr.dtype} {arr.shape}")
    if len(np.unique(arr)) != n or arr.min() < -(2**31) or arr.max() >= 2**31:
        raise ValueError(f"{name} must be distinct and fit in 32 bits")
    return arr.astype(np.int64)


def _package_version() -> str:
    try:
        return importlib.metadata.version("seismic")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _text_header(fmt: str, endian: str, dt_ms: float, iline: int, xline: int) -> str:
    return segyio.tools.create_text_header(
        {
            1: f"WRITTEN BY seismic {_package_version()} (segyio)",
            2: f"3D POST-STACK CUBE, INLINE SORTED, SAMPLE INTERVAL {dt_ms:g} MS",
            3: f"SAMPLE FORMAT {fmt.upper()}, {endian.upper()}-ENDIAN",
            4: f"INLINE BYTES {iline}-{iline + 3}  CROSSLINE BYTES {xline}-{xline + 3}",
            5: "PROVENANCE: SEE <NAME>.provenance.json BESIDE THIS FILE",
            39: "SEG Y REV1",
            40: "END TEXTUAL HEADER",
        }
    )


def write_cube(
    path: str | Path,
    amplitudes: np.ndarray,
    dt_ms: float,
    *,
    labels: np.ndarray | None = None,
    provenance: dict[str, Any] | None = None,
    sample_format: str = "ieee",
    endian: str = "big",
    inlines: Any = None,
    crosslines: Any = None,
    iline: int = 189,
    xline: int = 193,
) -> Path:
    """Write ``amplitudes [il, xl, t]`` as an inline-sorted SEG-Y cube; return the SEG-Y path.

    Inline/crossline numbers go to trace header bytes ``iline``/``xline`` (default 1..n), the sample
    count and interval to both the binary and every trace header. IEEE float by default (exact round
    trip); ``sample_format="ibm"`` for legacy readers (about 1e-6 relative precision). The caller's
    array is never modified (segyio converts IBM samples in place, so each line is written from a copy).

    Beside the SEG-Y: ``labels`` (same shape, integers) as ``<name>.labels.npy`` and always
    ``<name>.provenance.json`` with the caller's ``provenance`` dict, the sha256 of the written SEG-Y and
    labels files, shape, dt, format, byte order and package version. All files are written or none; a
    stale labels file from an earlier write without labels is removed so the sidecars always match.
    Bad arguments raise ``ValueError`` before anything is written.
    """
    path = Path(path)
    amps = np.asarray(amplitudes)
    if amps.ndim != 3 or amps.size == 0 or not np.issubdtype(amps.dtype, np.number):
        raise ValueError(f"amplitudes must be a non-empty numeric [n_il, n_xl, n_t] array, got {amps.shape}")
    if np.iscomplexobj(amps):
        raise ValueError("amplitudes must be real")
    n_il, n_xl, n_t = amps.shape
    if sample_format not in _FORMATS:
        raise ValueError(f"sample_format must be one of {sorted(_FORMATS)}, got {sample_format!r}")
    if endian not in ("big", "little"):
        raise ValueError(f"endian must be 'big' or 'little', got {endian!r}")
    dt_us = round(float(dt_ms) * 1000)
    # signed 16-bit on disk (SEG-Y rev 2; segyio and this package's reader read it so)
    if not 0 < dt_us <= 32767 or abs(dt_us - float(dt_ms) * 1000) > 1e-6 * dt_us:
        raise ValueError(f"dt_ms must be a whole number of microseconds in (0, 32.767] ms, got {dt_ms}")
    if n_t > _MAX_SAMPLES:
        raise ValueError(f"{n_t} samples per trace exceed the SEG-Y limit of {_MAX_SAMPLES}")
    iline, xline = check_header_byte("iline", iline), check_header_byte("xline", xline)
    if iline == xline or {iline, xline} & _RESERVED_BYTES:
        raise ValueError(f"iline/xline bytes must differ and avoid {sorted(_RESERVED_BYTES)}")
    il_numbers = _line_numbers("inlines", inlines, n_il)
    xl_numbers = _line_numbers("crosslines", crosslines, n_xl)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != amps.shape:
            raise ValueError(f"labels shape {labels.shape} differs from amplitudes shape {amps.shape}")
        if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
            raise ValueError(f"labels must be integers, got {labels.dtype}")
    if sample_format == "ibm" and not np.isfinite(amps).all():
        raise ValueError("IBM float cannot represent NaN or Inf; write IEEE or clean the data")
    caller = json.loads(json.dumps(provenance or {}, default=_jsonable))  # fail before writing anything

    spec = segyio.spec()
    spec.iline, spec.xline = iline, xline
    spec.ilines, spec.xlines, spec.offsets = il_numbers, xl_numbers, [0]
    spec.samples = np.arange(n_t) * float(dt_ms)
    spec.format, spec.sorting, spec.endian = (
        _FORMATS[sample_format],
        segyio.TraceSortingFormat.INLINE_SORTING,
        endian,
    )
    lab_path, prov_path = labels_path_for(path), provenance_path_for(path)
    written = False
    try:
        # the SEG-Y is entered first, so it is renamed last: it only appears once the sidecars are in place
        with contextlib.ExitStack() as stack:
            tmp_segy = stack.enter_context(atomic_file(path))
            tmp_prov = stack.enter_context(atomic_file(prov_path))
            tmp_lab = stack.enter_context(atomic_file(lab_path)) if labels is not None else None
            with segyio.create(tmp_segy, spec) as f:
                f.text[0] = _text_header(sample_format, endian, float(dt_ms), iline, xline)
                f.bin.update({segyio.BinField.SEGYRevision: 1, segyio.BinField.TraceFlag: 1})
                trace = 0
                for i, il in enumerate(il_numbers):
                    for xl in xl_numbers:
                        seq = trace + 1
                        f.header[trace] = {
                            1: seq,
                            5: seq,
                            115: n_t,
                            117: dt_us,
                            iline: int(il),
                            xline: int(xl),
                        }
                        trace += 1
                    f.iline[int(il)] = np.array(amps[i], dtype=np.float32, order="C", copy=True)
            record: dict[str, Any] = {
                "provenance_version": PROVENANCE_VERSION,
                "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "seismic_version": _package_version(),
                "segyio_version": importlib.metadata.version("segyio"),
                "segy": {"file": path.name, "sha256": _sha256(tmp_segy), "bytes": tmp_segy.stat().st_size},
                "labels": None,
                "shape": [n_il, n_xl, n_t],
                "dt_ms": float(dt_ms),
                "sample_format": sample_format,
                "format_code": _FORMATS[sample_format],
                "endian": endian,
                "iline_byte": iline,
                "xline_byte": xline,
                "inline_range": [int(il_numbers.min()), int(il_numbers.max())],
                "crossline_range": [int(xl_numbers.min()), int(xl_numbers.max())],
                "provenance": caller,
            }
            if tmp_lab is not None:
                with tmp_lab.open("wb") as fh:  # a file handle: np.save would append .npy to the name
                    np.save(fh, labels)
                record["labels"] = {
                    "file": lab_path.name,
                    "sha256": _sha256(tmp_lab),
                    "dtype": str(labels.dtype),
                }
            tmp_prov.write_text(json.dumps(record, indent=2) + "\n")
            written = True
    except BaseException:
        if written:  # a rename failed: the SEG-Y (renamed last) is not in place, so drop the sidecars
            lab_path.unlink(missing_ok=True)
            prov_path.unlink(missing_ok=True)
        raise
    if labels is None:
        lab_path.unlink(missing_ok=True)
    return path
