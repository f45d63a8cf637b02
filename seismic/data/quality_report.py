"""Quality report types: the policy that grades findings, the issues, and the report itself.

The checks that fill them live in :mod:`seismic.data.quality`; see its docstring for the definitions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

CHECKS = ("nan", "inf", "dead", "clipped", "constant", "dt_mismatch", "ns_mismatch")
TRACE_CHECKS = CHECKS[:5]
STATS = ("min", "max", "mean", "std", "rms", "p01", "p99")
_WHAT = {
    "nan": "traces with a NaN sample",
    "inf": "traces with an infinite sample",
    "dead": "all-zero traces",
    "clipped": "traces with a flat top/bottom at the clip level",
    "constant": "non-zero traces with all samples equal",
    "dt_mismatch": "trace headers whose sample interval disagrees with the binary header",
    "ns_mismatch": "trace headers whose sample count disagrees with the binary header",
}

Severity = Literal["fatal", "warning"]


@dataclass(frozen=True)
class QualityPolicy:
    """Which findings fail a check, and the clip-detection parameters.

    A check named in ``fatal`` is always fatal, one in ``warn`` is never fatal; any other check is a warning
    until the fraction of affected traces exceeds ``max_fraction``, then it is fatal. Defaults: NaN, Inf and
    dt mismatches are fatal; dead, clipped and constant traces escalate past 10%; a sample-count mismatch
    stays a warning (``warn``), because the file only opened if its size settled the count.
    """

    fatal: frozenset[str] = frozenset({"nan", "inf", "dt_mismatch"})
    warn: frozenset[str] = frozenset({"ns_mismatch"})
    max_fraction: float = 0.10  # of the traces; strictly more is fatal for a check in neither set
    clip_run: int = 3  # consecutive samples at the clip level that make a flat top
    clip_level: float | None = None  # None: the data's own extremes (see the module docstring)
    clip_rtol: float = 0.0  # relative tolerance of "at the clip level"; 0 = bit-identical
    clip_min_quanta: int = 256  # integer data with a smaller extreme skip the clip check
    max_examples: int = 5  # examples kept per issue
    percentile_sample: int = 250_000  # values kept for p01/p99 (8 bytes each + 8 for the key)
    seed: int = 0  # of the percentile sample: reports are reproducible

    def __post_init__(self) -> None:
        object.__setattr__(self, "fatal", frozenset(self.fatal))
        object.__setattr__(self, "warn", frozenset(self.warn))
        unknown = sorted((self.fatal | self.warn) - set(CHECKS))
        if unknown:
            raise ValueError(f"unknown checks {unknown}; known: {', '.join(CHECKS)}")
        if self.fatal & self.warn:
            raise ValueError(f"checks both fatal and warning: {sorted(self.fatal & self.warn)}")
        if not 0.0 <= self.max_fraction <= 1.0:
            raise ValueError(f"max_fraction must be in [0, 1], got {self.max_fraction}")
        if self.clip_run < 2 or self.percentile_sample < 1 or not 0.0 <= self.clip_rtol < 1.0:
            raise ValueError("need clip_run >= 2, percentile_sample >= 1 and 0 <= clip_rtol < 1")
        if self.clip_level is not None and not self.clip_level > 0:
            raise ValueError(f"clip_level must be positive, got {self.clip_level}")

    def with_overrides(
        self, *, fatal: Iterable[str] = (), warn: Iterable[str] = (), max_fraction: float | None = None
    ) -> QualityPolicy:
        """A copy where ``fatal`` checks become always fatal and ``warn`` checks never fatal."""
        fatal, warn = set(fatal), set(warn)
        if fatal & warn:
            raise ValueError(f"checks given as both fatal and warning: {sorted(fatal & warn)}")
        return replace(
            self,
            fatal=frozenset((self.fatal - warn) | fatal),
            warn=frozenset((self.warn - fatal) | warn),
            max_fraction=self.max_fraction if max_fraction is None else max_fraction,
        )

    def severity(self, check: str, count: int, n_traces: int) -> Severity:
        if check in self.fatal:
            return "fatal"
        if check in self.warn:
            return "warning"
        return "fatal" if n_traces and count / n_traces > self.max_fraction else "warning"


@dataclass
class QualityIssue:
    check: str
    severity: Severity
    message: str
    count: int  # traces affected
    examples: list  # first few trace indices (surveys: [inline, crossline] numbers)


@dataclass
class QualityReport:
    source: str
    n_traces: int
    n_samples: int
    dt_ms: float | None
    dead_traces: np.ndarray
    nan_traces: np.ndarray
    inf_traces: np.ndarray
    clipped_traces: np.ndarray
    constant_traces: np.ndarray
    min: float | None  # amplitude statistics over the finite samples (None when there are none)
    max: float | None
    mean: float | None
    std: float | None
    rms: float | None
    p01: float | None
    p99: float | None
    finite_samples: int = 0
    clip_level: float | None = None
    issues: list[QualityIssue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(issue.severity == "fatal" for issue in self.issues)

    def to_dict(self) -> dict[str, Any]:
        def num(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        out: dict[str, Any] = {
            "source": self.source,
            "ok": self.ok,
            "n_traces": int(self.n_traces),
            "n_samples": int(self.n_samples),
            "dt_ms": num(self.dt_ms),
            "finite_samples": int(self.finite_samples),
            "clip_level": num(self.clip_level),
            "stats": {k: num(getattr(self, k)) for k in STATS},
            "issues": [
                {**vars(i), "examples": _jsonable(i.examples), "count": int(i.count)} for i in self.issues
            ],
            "notes": list(self.notes),
            "details": _jsonable(self.details),
        }
        for name in TRACE_CHECKS:
            out[f"{name}_traces"] = [int(i) for i in getattr(self, f"{name}_traces")]
        return out

    def format_text(self) -> str:
        dt = "unknown" if self.dt_ms is None else f"{self.dt_ms:g} ms"
        lines = [
            f"Quality report: {self.source}",
            f"  {self.n_traces} traces x {self.n_samples} samples, dt {dt}",
        ]
        if self.min is not None:
            stats = "  ".join(f"{k} {getattr(self, k):.4g}" for k in STATS)
            lines.append(f"  amplitude: {stats}")
        if self.issues:
            lines.append(f"  {'check':<12} {'severity':<8} {'traces':>8} {'fraction':>9}  examples")
        for i in self.issues:
            frac = i.count / self.n_traces if self.n_traces else 0.0
            examples = ", ".join(str(e) for e in i.examples) + (", ..." if i.count > len(i.examples) else "")
            sev = "FATAL" if i.severity == "fatal" else "warning"
            lines.append(f"  {i.check:<12} {sev:<8} {i.count:>8} {frac:>9.2%}  {examples}")
        lines += [f"  {i.check}: {i.message}" for i in self.issues if i.check.endswith("_mismatch")]
        lines += [] if self.issues else ["  no issues found"]
        lines += [f"  note: {n}" for n in self.notes]
        n_fatal = sum(i.severity == "fatal" for i in self.issues)
        verdict = "OK" if self.ok else "FAIL"
        lines.append(f"  result: {verdict} ({n_fatal} fatal, {len(self.issues) - n_fatal} warning(s))")
        return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def issue_for(
    check: str, idx: np.ndarray, n_traces: int, policy: QualityPolicy, locate: Callable[[np.ndarray], list]
) -> QualityIssue:
    frac = idx.size / n_traces if n_traces else 0.0
    return QualityIssue(
        check=check,
        severity=policy.severity(check, idx.size, n_traces),
        message=f"{idx.size} {_WHAT[check]} ({frac:.2%} of {n_traces})",
        count=int(idx.size),
        examples=locate(idx[: policy.max_examples]),
    )
