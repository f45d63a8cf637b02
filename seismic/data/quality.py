"""Data-quality report of a trace array, a saved survey or a SEG-Y file, in bounded memory.

Traces are scanned in chunks of whole traces (a few MiB each), so a file of any size is checked with a
fixed working set plus a few bytes per trace. Trace indices are flat and 0-based, in file/array order.

Checks, per trace:

* ``nan`` / ``inf``: at least one NaN / at least one ±Inf sample.
* ``dead``: every sample is exactly zero.
* ``constant``: all samples equal and non-zero (zero variance); only traces without non-finite samples.
* ``clipped``: the flat top of a saturated recording: at least ``clip_run`` (3) consecutive samples equal
  to the data's largest finite value (a flat top) or to its smallest (a flat bottom; the two levels are
  separate so int16 data saturated at +32767 and -32768 are both caught). Equality is exact by default
  (``clip_rtol=0``): a clipped sample is a bit-identical copy of the clip value, whereas smooth float data
  can hold neighbouring samples one float32 ULP apart. With ``policy.clip_level`` the levels are
  ``±clip_level`` and the run is of samples with ``|x| >= clip_level`` (use it when one noise burst sets
  the global extreme). False-positive guards: the run must sit at the *global* extreme (a quiet trace's
  flat peak never counts), it must be 3 long (two equal neighbouring maxima are common in integer data),
  dead and constant traces are excluded, and on integer-valued data whose extreme is below
  ``clip_min_quanta`` (256) steps, where flat peaks are ordinary quantisation, the check is skipped with a
  note unless a ``clip_level`` is given.
* ``ns_mismatch`` / ``dt_mismatch`` (SEG-Y only; see :func:`check_segy`): a trace header's sample count
  (bytes 115-116) or interval (bytes 117-118) disagrees with the binary header. A sample-count mismatch is a
  warning by default: the reader only opens a file whose sample count fits its size exactly, so the other
  value is stale (real files often keep the count of the uncropped survey). An interval mismatch is fatal
  by default: nothing in the file says which interval is right.

Amplitude statistics cover the finite samples only: min/max/mean/std/rms are exact (per-chunk moments
merged with Chan's formula, in float64); p01/p99 come from a uniform random sample (bottom-k priority
sampling) of at most ``percentile_sample`` values, exact when the data are smaller.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from seismic.data.quality_report import (
    CHECKS,
    STATS,
    TRACE_CHECKS,
    QualityIssue,
    QualityPolicy,
    QualityReport,
    issue_for,
)
from seismic.io.errors import SeismicIOError

__all__ = [
    "CHECKS",
    "QualityIssue",
    "QualityPolicy",
    "QualityReport",
    "check_path",
    "check_segy",
    "check_survey",
    "check_traces",
]

_CHUNK_SAMPLES = 1 << 20  # samples per chunk when chunk_traces is not given (4 MiB of float32)


def _longest_run(mask: np.ndarray) -> np.ndarray:
    """Length of the longest run of True along the last axis, per row (vectorised)."""
    pos = np.arange(1, mask.shape[-1] + 1, dtype=np.int32)
    last_false = np.where(mask, 0, pos).astype(np.int32)
    np.maximum.accumulate(last_false, axis=-1, out=last_false)
    return (pos - last_false).max(axis=-1, initial=0)


class _Scanner:
    """Streaming accumulator: per-trace flags and exact moments, chunk by chunk."""

    def __init__(self, n_traces: int, n_samples: int, policy: QualityPolicy) -> None:
        self.policy, self.n_samples = policy, n_samples
        self.flags = {name: np.zeros(n_traces, dtype=bool) for name in ("nan", "inf", "dead", "constant")}
        self.trace_min = np.zeros(n_traces, dtype=np.float64)  # finite samples only
        self.trace_max = np.zeros(n_traces, dtype=np.float64)
        self.top_run = np.zeros(n_traces, dtype=np.int32)  # longest run at the trace max (or +clip_level)
        self.bottom_run = np.zeros(n_traces, dtype=np.int32)  # ... at the trace min (or -clip_level)
        self.count, self.mean, self.m2 = 0, 0.0, 0.0
        self.vmin, self.vmax = math.inf, -math.inf
        self.integer_valued = True
        self.rng = np.random.default_rng(policy.seed)
        self.sample, self.keys = np.empty(0, np.float64), np.empty(0, np.float64)

    def scan(self, chunks: Iterable[tuple[int, np.ndarray]]) -> _Scanner:
        for start, chunk in chunks:
            self.update(chunk, start)
        return self

    def update(self, chunk: np.ndarray, start: int) -> None:
        if chunk.dtype not in (np.float32, np.float64):
            chunk = chunk.astype(np.float64)
        rows = slice(start, start + chunk.shape[0])
        finite = np.isfinite(chunk)
        all_finite = bool(finite.all())
        if not all_finite:
            self.flags["nan"][rows] = np.isnan(chunk).any(axis=1)
            self.flags["inf"][rows] = np.isinf(chunk).any(axis=1)
            chunk = np.where(finite, chunk, 0)
        tmin, tmax = chunk.min(axis=1), chunk.max(axis=1)
        row_finite = finite.all(axis=1)
        self.flags["dead"][rows] = (tmin == 0) & (tmax == 0) & row_finite
        self.flags["constant"][rows] = (tmin == tmax) & (tmax != 0) & row_finite
        self.trace_min[rows], self.trace_max[rows] = tmin, tmax
        self._flat_tops(chunk, tmin, tmax, rows)
        values = chunk if all_finite else chunk[finite]
        self._moments(values.reshape(-1))

    def _flat_tops(self, chunk: np.ndarray, tmin: np.ndarray, tmax: np.ndarray, rows: slice) -> None:
        """Longest run at the trace maximum (top) and at the trace minimum (bottom), per trace."""
        p = self.policy
        for extreme, top, runs in ((tmax, True, self.top_run), (tmin, False, self.bottom_run)):
            level = (
                (extreme if top else -extreme)
                if p.clip_level is None
                else np.full_like(extreme, p.clip_level)
            )
            thr = (level * (1 - p.clip_rtol))[:, None]  # magnitude threshold, per trace
            near = chunk >= thr if top else chunk <= -thr
            cand = np.flatnonzero((near.sum(axis=1) >= p.clip_run) & (level > 0))
            if cand.size:
                runs[rows.start + cand] = _longest_run(near[cand])

    def _moments(self, values: np.ndarray) -> None:
        n = values.size
        if n == 0:
            return
        mean = float(values.mean(dtype=np.float64))
        dev = np.subtract(values, mean, dtype=np.float64)
        m2 = float(np.dot(dev, dev))
        delta, total = mean - self.mean, self.count + n
        self.m2 += m2 + delta * delta * self.count * n / total
        self.mean += delta * n / total
        self.count = total
        self.vmin, self.vmax = min(self.vmin, float(values.min())), max(self.vmax, float(values.max()))
        if self.integer_valued:
            self.integer_valued = bool(np.all(values == np.round(values)))
        self._reservoir(values)

    def _reservoir(self, values: np.ndarray) -> None:
        """Bottom-k priority sampling: keep the values with the smallest uniform random keys."""
        cap, n = self.policy.percentile_sample, values.size
        if self.sample.size < cap:  # not full yet: every value is a candidate
            chosen, keys = values, self.rng.random(n)
        else:  # keys below the current threshold tau: Binomial(n, tau) of them, uniform on [0, tau)
            tau = float(self.keys.max())
            chosen = values[self.rng.choice(n, size=self.rng.binomial(n, tau), replace=False)]
            keys = self.rng.random(chosen.size) * tau
        self.sample = np.concatenate([self.sample, chosen.astype(np.float64)])
        self.keys = np.concatenate([self.keys, keys])
        if self.sample.size > cap:
            keep = np.argpartition(self.keys, cap - 1)[:cap]
            self.sample, self.keys = self.sample[keep], self.keys[keep]

    def report(self, source: str, dt_ms: float | None, locate: Callable[[np.ndarray], list]) -> QualityReport:
        p, n_traces = self.policy, self.trace_max.size
        notes: list[str] = []
        top, bottom = (p.clip_level, p.clip_level) if p.clip_level else (self.vmax, -self.vmin)
        level = max(top, bottom) if self.count or p.clip_level else None
        clipped = np.zeros(n_traces, dtype=bool)
        if p.clip_level is None and self.count and self.integer_valued and 0 < level < p.clip_min_quanta:
            notes.append(
                f"clip check skipped: integer-valued data with max |amplitude| {level:g} < "
                f"{p.clip_min_quanta} steps, where flat peaks are ordinary quantisation (give clip_level)"
            )
        elif level:
            near = 1 - p.clip_rtol
            at_top = (top > 0) & (self.trace_max >= top * near) & (self.top_run >= p.clip_run)
            at_bottom = (bottom > 0) & (self.trace_min <= -bottom * near) & (self.bottom_run >= p.clip_run)
            clipped = (at_top | at_bottom) & ~self.flags["dead"] & ~self.flags["constant"]
        found = {**self.flags, "clipped": clipped}
        indices = {name: np.flatnonzero(found[name]) for name in TRACE_CHECKS}
        issues = [issue_for(name, idx, n_traces, p, locate) for name, idx in indices.items() if idx.size]
        stats: dict[str, float | None] = dict.fromkeys(STATS)
        if self.count:
            var = self.m2 / self.count
            p01, p99 = np.percentile(self.sample, [1, 99])
            stats.update(
                min=self.vmin, max=self.vmax, mean=self.mean, std=math.sqrt(var),
                rms=math.sqrt(var + self.mean**2), p01=float(p01), p99=float(p99),
            )  # fmt: skip
        return QualityReport(
            source=source, n_traces=n_traces, n_samples=self.n_samples, dt_ms=dt_ms,
            **{f"{name}_traces": idx for name, idx in indices.items()},
            **stats, finite_samples=self.count, clip_level=level, issues=issues, notes=notes,
        )  # fmt: skip


def _by_index(idx: np.ndarray) -> list:
    return [int(i) for i in idx]


def _auto_chunk(n_samples: int, chunk_traces: int | None) -> int:
    return max(1, chunk_traces or _CHUNK_SAMPLES // max(n_samples, 1))


def _check_array(
    traces: np.ndarray,
    dt_ms: float | None,
    source: str,
    policy: QualityPolicy | None,
    chunk_traces: int | None,
    locate: Callable[[np.ndarray], list] | None = None,
) -> QualityReport:
    policy = policy or QualityPolicy()
    traces = traces if isinstance(traces, np.ndarray) else np.asarray(traces)
    if traces.ndim < 1 or traces.shape[-1] == 0:
        raise ValueError(f"traces need a non-empty last (sample) axis, got shape {traces.shape}")
    lead, n_t = traces.shape[:-1], traces.shape[-1]
    n_traces, step = math.prod(lead), _auto_chunk(n_t, chunk_traces)
    try:  # a view when the layout allows (always for 2-D and contiguous/memory-mapped arrays)
        flat = traces.view()
        flat.shape = (n_traces, n_t)
        chunks: Iterable[tuple[int, np.ndarray]] = ((s, flat[s : s + step]) for s in range(0, n_traces, step))
    except AttributeError:  # a strided N-D view: copy one block of the first axis at a time, never all
        per = n_traces // max(traces.shape[0], 1)
        k = max(1, step // max(per, 1))
        chunks = ((i * per, traces[i : i + k].reshape(-1, n_t)) for i in range(0, traces.shape[0], k))
    scanner = _Scanner(n_traces, n_t, policy).scan((s, np.asarray(c)) for s, c in chunks)

    def by_position(idx: np.ndarray) -> list:
        return [list(map(int, t)) for t in zip(*np.unravel_index(idx, lead), strict=True)]

    return scanner.report(source, dt_ms, locate or (_by_index if len(lead) <= 1 else by_position))


def check_traces(
    traces: np.ndarray,
    *,
    dt_ms: float | None = None,
    source: str = "array",
    policy: QualityPolicy | None = None,
    chunk_traces: int | None = None,
) -> QualityReport:
    """Check an array of traces ``[n_traces, n_t]`` or ``[..., n_t]`` (memory-mapped arrays stay on disk).

    Trace indices in the report are flat (row-major over the leading axes); issue examples are flat
    indices for 2-D input, multi-indices (lists) otherwise.
    """
    return _check_array(traces, dt_ms, source, policy, chunk_traces)


def check_survey(
    survey: Any,
    *,
    policy: QualityPolicy | None = None,
    source: str | None = None,
    chunk_traces: int | None = None,
) -> QualityReport:
    """Check a :class:`~seismic.data.survey.Survey`; examples are ``[inline, crossline]`` numbers."""
    n_xl = survey.amplitudes.shape[1]

    def locate(idx: np.ndarray) -> list:
        return [[int(survey.inlines[i // n_xl]), int(survey.crosslines[i % n_xl])] for i in idx]

    source = source or str(survey.provenance.get("source", "survey"))
    report = _check_array(survey.amplitudes, float(survey.dt_ms), source, policy, chunk_traces, locate)
    report.details["shape"] = list(survey.amplitudes.shape)
    return report


def _header_issues(f: Any, step: int, policy: QualityPolicy) -> list[QualityIssue]:
    """``ns_mismatch`` / ``dt_mismatch``: trace header words that are set and differ from the binary one.

    The binary values are the reader's own (signed, as segyio reads both headers): a "negative" binary
    interval is invalid, so the one the reader uses is the reference, not 65.5 ms read unsigned."""
    layout = f.layout
    refs = {
        "ns": (layout.binary_samples, f.n_samples, 115, 3221),
        "dt": (layout.binary_dt_us, round(f.dt_ms * 1000), 117, 3217),
    }
    bad: dict[str, list[np.ndarray]] = {key: [np.empty((2, 0), np.int64)] for key in refs}
    n, header_step = f.n_traces, max(step, 1 << 16)  # header words only: a few bytes a trace
    for s in range(0, n, header_step):
        for key, values in f.trace_headers(slice(s, min(s + header_step, n)), fields=tuple(refs)).items():
            binary, used = refs[key][:2]
            hit = np.flatnonzero((values != 0) & (values != (binary if binary > 0 else used)))
            bad[key].append(np.stack([s + hit, values[hit]]))
    issues = []
    for key, (binary, used, byte, bin_byte) in refs.items():
        idx, values = np.concatenate(bad[key], axis=1)
        if idx.size:
            found, counts = np.unique(values, return_counts=True)
            shown = ", ".join(f"{v} ({c} traces)" for v, c in list(zip(found, counts, strict=True))[:4])
            issue = issue_for(f"{key}_mismatch", idx, n, policy, _by_index)
            ref = binary if binary > 0 else f"{binary} (unset or invalid; the reader uses {used})"
            issue.message += (
                f": binary header bytes {bin_byte}-{bin_byte + 1} say {ref}, "
                f"trace header bytes {byte}-{byte + 1} say {shown}"
            )
            issues.append(issue)
    return issues


def check_segy(
    path: str | Path,
    *,
    iline: int = 189,
    xline: int = 193,
    endian: str = "auto",
    policy: QualityPolicy | None = None,
    chunk_traces: int | None = None,
) -> QualityReport:
    """Check a SEG-Y file, reading ``chunk_traces`` traces at a time (the file is never loaded whole).

    Besides the sample checks, every trace header's sample count (bytes 115-116) and interval (bytes
    117-118, microseconds) is compared with the binary header (bytes 3221-3222 and 3217-3218; where that
    is 0, with the value the reader uses): a differing non-zero value is an ``ns_mismatch`` /
    ``dt_mismatch``; 0 in a trace header means "unset" and passes. Examples are 0-based trace indices in
    file order. Unreadable files raise the :class:`SeismicIOError` of :func:`seismic.io.segy.open_segy`.
    """
    from seismic.io.segy import open_segy

    policy = policy or QualityPolicy()
    path = Path(path)
    with open_segy(path, iline=iline, xline=xline, endian=endian) as f:
        n, n_t = f.n_traces, f.n_samples
        step = _auto_chunk(n_t, chunk_traces)
        chunks = ((s, f.read_traces(slice(s, min(s + step, n)))) for s in range(0, n, step))
        report = _Scanner(n, n_t, policy).scan(chunks).report(str(path), f.dt_ms, _by_index)
        report.issues += _header_issues(f, step, policy)
        report.notes.extend(f.header_notes)
        report.details.update(kind=f.kind, shape=list(f.shape), format=f.format_name, endian=f.endian)
    return report


def check_path(
    path: str | Path,
    *,
    iline: int = 189,
    xline: int = 193,
    policy: QualityPolicy | None = None,
    chunk_traces: int | None = None,
) -> QualityReport:
    """Check a SEG-Y file or a saved survey folder; unreadable input raises :class:`SeismicIOError`."""
    path = Path(path)
    if path.is_dir():
        from seismic.data.survey import Survey

        return check_survey(Survey.load(path), policy=policy, source=str(path), chunk_traces=chunk_traces)
    if not path.exists():
        raise SeismicIOError(path, "no such file or survey folder")
    return check_segy(path, iline=iline, xline=xline, policy=policy, chunk_traces=chunk_traces)
