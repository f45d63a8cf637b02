"""The monitoring job: the inference log over a time range, cut into windows, each tested for drift.

Library side of ``scripts/monitor.py`` (numpy/scipy/pyarrow only: it runs beside serving, never with torch)::

    reference = load_reference(model_dir, drift_config)
    report = run_monitoring(JobSettings(log_dir=..., start=..., end=..., granularity="1h"), reference)
    write_reports(report, output_dir)

**Reading.** The log is read one hour partition at a time (:func:`serving.inference_log_schema.
read_inference_log` prunes the other folders) and only the columns the tests need, so memory is bounded by
one hour's rows plus ``max_rows_per_window`` kept per open window: each window keeps a uniform random sample
of its rows (every row gets a seeded random key; the rows with the smallest keys survive, which is an exact
uniform sample however the rows arrive over the hours). Data quality is counted on all rows, not the sample.

**Windows.** ``granularity`` is a duration (``15min``, ``1h``, ``1d``: windows aligned to ``start``) or a
row count (``5000``: consecutive rows in time order). A window with fewer than ``drift.min_rows`` rows is
``insufficient_data``, never drift.

**Per window.** Data quality (rows with a non-finite feature, dead traces: ``zero_fraction == 1``, feature
values outside the reference's range), then raw-feature, prediction and embedding drift against the
baseline (the model's reference profile) and against the previous window (a baseline fitted on that
window, calibrated by time chunks of it). The report's ``windows`` are the baseline comparisons; each
window's ``window`` object carries its ``quality`` and the summary of its ``previous`` comparison.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seismic.monitoring.drift.config import DriftConfig
from seismic.monitoring.drift.detector import Baseline, compare, fit_baseline
from seismic.monitoring.drift.results import WindowDrift
from seismic.monitoring.profile import ReferenceProfile
from seismic.monitoring.quality import window as quality_window
from seismic.monitoring.quality.performance import PerformanceThresholds
from seismic.monitoring.quality.window import PerformanceCounts, QualitySettings
from seismic.monitoring.reports.html_report import write_html_report
from seismic.monitoring.reports.json_report import build_report, write_json_report
from serving.inference_log_schema import read_inference_log

_UNITS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "d": 86400}
_HOUR = dt.timedelta(hours=1)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class MonitoringError(RuntimeError):
    """A run that cannot produce a report (no profile, unreadable or empty log); the message says why."""


@dataclass(frozen=True)
class JobSettings:
    log_dir: str | Path
    start: dt.datetime
    end: dt.datetime
    granularity: str | int = "1h"
    max_rows_per_window: int = 20_000
    compare_previous: bool = True
    seed: int = 0
    quality: QualitySettings = field(default_factory=QualitySettings)  # performance: estimate, late labels

    def __post_init__(self) -> None:
        if not self.end > self.start:
            raise ValueError(f"monitoring: end ({self.end}) must be after start ({self.start})")
        if self.max_rows_per_window < 1:
            raise ValueError(f"max_rows_per_window must be >= 1, got {self.max_rows_per_window}")
        parse_granularity(self.granularity)


def parse_granularity(value: str | int) -> dt.timedelta | int:
    """``"15min"``, ``"1h"``, ``"1d"``, ``"90s"`` -> a duration; an integer (or ``"5000"``) -> rows."""
    if isinstance(value, int) or str(value).isdigit():
        rows = int(value)
        if rows < 1:
            raise ValueError(f"granularity: a row count must be >= 1, got {rows}")
        return rows
    match = re.fullmatch(r"(\d+)\s*([a-z]+)", str(value).strip().lower())
    if not match or match.group(2) not in _UNITS or int(match.group(1)) < 1:
        raise ValueError(f"granularity must be like 15min, 1h, 1d or a row count, got {value!r}")
    return dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def as_utc(value: dt.datetime | str) -> dt.datetime:
    """ISO text or a datetime; naive means UTC."""
    stamp = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)


@dataclass
class Reference:
    """The baseline fitted on a reference profile, and the feature range for the out-of-range check."""

    baseline: Baseline
    feature_names: list[str]
    low: np.ndarray
    high: np.ndarray
    embedding_dim: int
    info: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    performance: PerformanceThresholds | None = None


def _calibration_groups(survey: np.ndarray, inline: np.ndarray) -> tuple[np.ndarray | None, str]:
    """(survey, inline) pairs; surveys alone where inlines are unknown (-1); row order without either."""
    if (inline >= 0).all():
        return survey * (int(inline.max(initial=0)) + 1) + inline, "survey x inline blocks"
    if len(np.unique(survey)) >= 3:
        return survey, "surveys (inlines unknown)"
    return None, "row order (profile without inlines: thresholds from sampling noise only, too low)"


def load_reference(
    model_dir: str | Path, config: DriftConfig, settings: QualitySettings | None = None
) -> Reference:
    """Fit the baseline on ``model_dir``'s reference profile (``profile.npz`` + ``profile.json``).

    Calibration groups are the profile's (survey, inline) pairs in that order, so the chunks that
    :func:`~seismic.monitoring.drift.calibration.chunk_ids` forms are blocks of neighbouring inlines within a
    survey (about ``n_chunks / surveys`` per survey), each compared with the other surveys: chunks then
    differ as much as surveys do. With one survey they see only its lateral variation, and the report's
    meta says so.
    """
    try:
        profile = ReferenceProfile.load(model_dir)
    except (FileNotFoundError, ValueError, OSError, KeyError) as err:
        raise MonitoringError(f"cannot load the reference profile: {err}") from None
    groups, how = _calibration_groups(profile.survey, profile.inline)
    baseline = fit_baseline(
        config,
        features=profile.features,
        feature_names=profile.feature_names,
        predictions=profile.predicted,
        n_classes=len(profile.class_names),
        embeddings=profile.embedding,
        groups=groups,
        embedding_groups=None if groups is None else groups[profile.embedding_rows],
        n_surveys=len(np.unique(profile.survey)),
        surveys=profile.survey,
        embedding_surveys=profile.survey[profile.embedding_rows],
    )
    finite = np.where(np.isfinite(profile.features), profile.features, np.nan)
    info = {
        "model_dir": str(model_dir),
        "n_reference": len(profile.features),
        "n_surveys": len(np.unique(profile.survey)),
        "calibration_groups": how,
        "source": profile.info.get("source", {}),
    }
    return Reference(
        baseline=baseline,
        feature_names=profile.feature_names,
        low=np.nanmin(finite, axis=0),
        high=np.nanmax(finite, axis=0),
        embedding_dim=int(profile.embedding.shape[1]),
        info=info,
        class_names=list(profile.class_names),
        performance=quality_window.reference_thresholds(
            profile.probabilities,
            profile.labels,
            groups,
            config.calibration.n_chunks,
            settings or QualitySettings(),
        ),
    )


@dataclass
class _Window:
    """One window's uniform row samples (all rows; rows with features) and its data-quality counts.

    The inference log computes features for a rate-capped sample of rows, so the rows with features are
    sampled on their own: up to ``cap`` of all rows for the prediction and embedding tests, and up to
    ``cap`` of the rows with features for the feature tests and the polarity check.
    """

    start: dt.datetime | None
    end: dt.datetime | None
    cap: int
    parts: list[dict[str, np.ndarray]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    perf: PerformanceCounts | None = None  # over every row, like the quality counts

    def add(self, rows: dict[str, np.ndarray], ref: Reference, zero_col: int | None) -> None:
        c = self.counts
        c["rows"] = c.get("rows", 0) + len(rows["has"])
        f = rows["features"][rows["has"]]
        finite = np.isfinite(f)
        out = (f < ref.low) | (f > ref.high)
        c["feature_rows"] = c.get("feature_rows", 0) + len(f)
        c["nonfinite"] = c.get("nonfinite", 0) + int((~finite.all(axis=1)).sum())
        c["dead"] = c.get("dead", 0) + (0 if zero_col is None else int((f[:, zero_col] >= 1.0).sum()))
        c["out_of_range"] = c.get("out_of_range", 0) + int(out.any(axis=1).sum())
        c["per_feature"] = c.get("per_feature", 0) + out.sum(axis=0)
        c["other_embedding"] = c.get("other_embedding", 0) + int(rows["skipped"])
        if self.perf is None:
            self.perf = PerformanceCounts(len(ref.class_names))
        self.perf.add(rows["probabilities"], rows["predictions"], rows.pop("labels", None))
        self.parts.append({k: v for k, v in rows.items() if k != "skipped"})
        if sum(len(p["key"]) for p in self.parts) > 2 * self.cap:
            self.parts = [self._sample()]

    def _sample(self) -> dict[str, np.ndarray]:
        merged = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}
        order = np.argsort(merged["key"], kind="stable")
        sampled = np.zeros(len(order), dtype=bool)
        sampled[order[: self.cap]] = True
        sampled[order[merged["has"][order]][: self.cap]] = True
        keep = np.flatnonzero(sampled)
        keep = keep[np.argsort(merged["time"][keep], kind="stable")]  # time order: chunks are periods
        out = {k: v[keep] for k, v in merged.items()}
        # among the kept rows, the cap smallest keys are the uniform sample of all rows
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        out["uniform"] = rank[keep] < self.cap
        return out

    def arrays(self) -> dict[str, np.ndarray] | None:
        return self._sample() if self.parts else None

    def quality(self, names: list[str]) -> dict[str, Any]:
        c, n = self.counts, max(1, self.counts.get("feature_rows", 0))  # features: a sample of the rows
        per = np.asarray(c.get("per_feature", np.zeros(len(names))))
        return {
            "rows": int(c.get("rows", 0)),
            "feature_rows": int(c.get("feature_rows", 0)),
            "nonfinite_fraction": c.get("nonfinite", 0) / n,
            "dead_fraction": c.get("dead", 0) / n,
            "out_of_range_fraction": c.get("out_of_range", 0) / n,
            "out_of_range_features": {m: float(v) / n for m, v in zip(names, per, strict=True) if v},
            "rows_other_embedding_size": int(c.get("other_embedding", 0)),
        }


def _columns(
    table: pa.Table, ref: Reference, rng: np.random.Generator, labels: pa.Table | None
) -> dict[str, Any]:
    """Numpy arrays of the rows whose embedding and probabilities have the reference's sizes (a model swap
    may change them), with their late labels (-1: none) where a label table is given."""
    sizes = (("embedding", ref.embedding_dim), ("probabilities", len(ref.class_names)))
    same = pc.and_(*(pc.fill_null(pc.equal(pc.list_value_length(table[c].combine_chunks()), n), False)
                     for c, n in sizes))  # fmt: skip
    keep = np.asarray(same.to_numpy(zero_copy_only=False), dtype=bool)
    t = table.filter(same)
    # null has_features: a version 1 file, where every row had features
    has = np.asarray(pc.fill_null(t["has_features"], True).to_numpy(zero_copy_only=False), dtype=bool)
    feats = np.column_stack(
        [
            pc.fill_null(t[n], np.nan).to_numpy(zero_copy_only=False).astype(np.float64)
            for n in ref.feature_names
        ]
    ).reshape(t.num_rows, len(ref.feature_names))
    flat = t["embedding"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return {
        "features": feats,
        "has": has,
        "predictions": t["predicted_class"].to_numpy(zero_copy_only=False).astype(np.int64),
        "embeddings": np.asarray(flat, dtype=np.float32).reshape(t.num_rows, ref.embedding_dim),
        **quality_window.performance_columns(t, len(ref.class_names), labels),
        "time": t["timestamp"].cast(pa.int64()).to_numpy(zero_copy_only=False),
        "key": rng.random(t.num_rows),
        "skipped": len(keep) - int(keep.sum()),
    }


def _hours(start: dt.datetime, end: dt.datetime):
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        yield max(hour, start), min(hour + _HOUR, end)
        hour += _HOUR


def iter_windows(settings: JobSettings, ref: Reference):
    """Yield ``_Window`` objects in time order, reading the log one hour partition at a time."""
    gran = parse_granularity(settings.granularity)
    start, end = as_utc(settings.start), as_utc(settings.end)
    rng = np.random.default_rng(settings.seed)
    cap = settings.max_rows_per_window
    zero_col = ref.feature_names.index("zero_fraction") if "zero_fraction" in ref.feature_names else None
    needed = [
        *ref.feature_names,
        "has_features",
        "timestamp",
        "predicted_class",
        "embedding",
        "probabilities",
    ]
    needed += ["request_id", "window_index"]
    labels = settings.quality.labels()
    open_windows: dict[int, _Window] = {}
    current = _Window(None, None, cap)  # row-count mode
    for lo, hi in _hours(start, end):
        folder = Path(settings.log_dir) / f"date={lo:%Y-%m-%d}" / f"hour={lo:%H}"
        try:  # an hour without a folder has no rows: skip it without a dataset discovery
            table = read_inference_log(settings.log_dir, lo, hi, columns=needed) if folder.is_dir() else None
        except (OSError, ValueError, pa.ArrowException) as err:
            raise MonitoringError(f"cannot read the inference log {settings.log_dir}: {err}") from None
        rows = (
            _columns(table.sort_by("timestamp"), ref, rng, labels)
            if table is not None and table.num_rows
            else None
        )
        if isinstance(gran, int):
            while rows is not None and len(rows["key"]):
                take = gran - current.counts.get("rows", 0)
                head = {k: (v[:take] if k != "skipped" else v) for k, v in rows.items()}
                current.add(head, ref, zero_col)
                rows = {k: (v[take:] if k != "skipped" else 0) for k, v in rows.items()}
                if current.counts["rows"] >= gran:
                    yield current
                    current = _Window(None, None, cap)
            continue
        first = int((lo - start) / gran)
        for index in range(first, int((hi - start - dt.timedelta(microseconds=1)) / gran) + 1):
            w_start = start + index * gran
            open_windows.setdefault(index, _Window(w_start, min(w_start + gran, end), cap))
        if rows is not None:
            micros = dt.timedelta(microseconds=1)
            offsets = (rows["time"] - (start - _EPOCH) // micros) // (gran // micros)
            for index in np.unique(offsets):
                pick = offsets == index
                part = {k: (v[pick] if k != "skipped" else 0) for k, v in rows.items()}
                open_windows[int(index)].add(part, ref, zero_col)
        for index in sorted(open_windows):
            if open_windows[index].end <= hi:
                yield open_windows.pop(index)
    if isinstance(gran, int) and current.counts.get("rows", 0):
        yield current  # the last, partial window: compared if it has enough rows
    yield from (open_windows[i] for i in sorted(open_windows))


def _compare(baseline: Baseline, arrays: dict[str, np.ndarray] | None, info: dict[str, Any]) -> WindowDrift:
    if arrays is None:
        return WindowDrift(window=info, n_current=0, status="insufficient_data")
    has, uniform = arrays["has"], arrays["uniform"]
    features = arrays["features"][has] if baseline.features is not None else None
    return compare(
        baseline,
        features=features,
        feature_predictions=None if features is None else arrays["predictions"][has],
        predictions=arrays["predictions"][uniform] if baseline.predictions is not None else None,
        embeddings=arrays["embeddings"][uniform] if baseline.embeddings is not None else None,
        window=info,
    )


def _previous_baseline(config: DriftConfig, arrays: dict[str, np.ndarray], ref: Reference) -> Baseline | None:
    """A baseline on the previous window (time-ordered rows: calibration chunks are periods of it).

    Fitted on the rows with features when there are enough of them (every family then comes from the same
    rows, as a baseline needs), else on the uniform sample without the feature family.
    """
    need = max(config.min_rows, 3 * config.calibration.n_chunks)
    if arrays is None or int(arrays["uniform"].sum()) < need:
        return None
    b = ref.baseline
    with_features = int(arrays["has"].sum()) >= need
    rows = arrays["has"] if with_features else arrays["uniform"]
    return fit_baseline(
        config,
        features=arrays["features"][rows] if with_features else None,
        feature_names=b.feature_names,
        predictions=arrays["predictions"][rows],
        n_classes=b.n_classes,
        embeddings=arrays["embeddings"][rows],
    )


def _brief(result: WindowDrift) -> dict[str, Any]:
    """The previous-window comparison without its plots (the report's plots are for the baseline)."""
    d = result.to_dict()
    return {
        "status": d["status"],
        "drifted": d["drifted"],
        "drifted_features": d["raw"]["drifted_features"],
        "predictions_drifted": bool(d["predictions"] and d["predictions"]["drifted"]),
        "embedding_drifted": bool(d["embedding"] and d["embedding"]["drifted"]),
        "polarity_reversed": bool(d["polarity"] and d["polarity"]["drifted"]),
    }


def run_monitoring(settings: JobSettings, ref: Reference) -> dict[str, Any]:
    """Every window of the range against the baseline (and the previous window); the report dict."""
    config = ref.baseline.config
    if not Path(settings.log_dir).is_dir():
        raise MonitoringError(f"the inference log directory {settings.log_dir} does not exist")
    results: list[WindowDrift] = []
    previous: Baseline | None = None
    for i, window in enumerate(iter_windows(settings, ref)):
        arrays = window.arrays()
        info: dict[str, Any] = {"id": window.start.isoformat() if window.start else f"rows-{i}"}
        if window.start is not None:
            info |= {"start": window.start.isoformat(), "end": window.end.isoformat()}
        info |= {"against": "baseline", "quality": window.quality(ref.feature_names)}
        if settings.compare_previous:
            if previous is None:
                info["previous"] = {"status": "no_previous_window", "drifted": False}
            else:
                info["previous"] = _brief(_compare(previous, arrays, {"against": "previous"}))
            previous = _previous_baseline(config, arrays, ref)
        if window.perf is not None and ref.performance is not None:
            info["performance"] = window.perf.summary(
                arrays, ref.performance, ref.class_names, settings.quality, seed=settings.seed
            )
        results.append(_compare(ref.baseline, arrays, info))
    if not results or not any(r.n_current for r in results):
        raise MonitoringError(
            f"the inference log {settings.log_dir} has no rows between {as_utc(settings.start).isoformat()} "
            f"and {as_utc(settings.end).isoformat()}"
        )
    meta = {
        "log_dir": str(settings.log_dir),
        "start": as_utc(settings.start).isoformat(),
        "end": as_utc(settings.end).isoformat(),
        "granularity": str(settings.granularity),
        "max_rows_per_window": settings.max_rows_per_window,
        "reference": ref.info,
        "n_previous_drifted": sum(bool(r.window.get("previous", {}).get("drifted")) for r in results),
        "performance": quality_window.run_summary([r.to_dict() for r in results]),
        "maps": quality_window.maps(settings.quality),
    }
    return build_report(results, config=config, baseline=ref.baseline.summary(), meta=meta)


def write_reports(report: dict[str, Any], output_dir: str | Path) -> tuple[Path, Path]:
    """``drift_report.json`` and ``drift_report.html`` in ``output_dir``."""
    out = Path(output_dir)
    return write_json_report(report, out / "drift_report.json"), write_html_report(
        report, out / "drift_report.html"
    )
