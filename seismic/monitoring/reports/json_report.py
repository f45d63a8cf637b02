"""The JSON drift report: a versioned schema, its validator, and an atomic writer.

Schema ``seismic.drift-report`` version 3 (bump :data:`SCHEMA_VERSION` on any incompatible change)::

    {"schema": "seismic.drift-report", "schema_version": 3, "created": ISO-8601 UTC,
     "summary": {"verdict": "drift" | "ok" | "insufficient_data", "n_windows", "n_drifted", "n_insufficient",
                 "drifted_windows": [window ids], "rows_tested": {family: rows over all windows}},
     "config": DriftConfig.to_dict(), "baseline": Baseline.summary(), "meta": {free-form, JSON-able},
     "windows": [ per window (WindowDrift.to_dict()):
        {"window": {...}, "status": "ok" | "insufficient_data", "drifted": bool, "n_current": int,
         "rows": {"raw" | "predictions" | "embedding": rows that family saw},
         "insufficient_families": [families with fewer rows than min_rows, not tested],
         "raw": {"drifted", "drifted_features": [names], "features": [
             {"name", "drifted", "gate", "n_reference", "n_current", "n_nonfinite",
              "tests": {"ks" | "wasserstein" | "psi" | "js": TEST},
              "histogram": null | {"edges", "reference", "current"}}]},
         "predictions": null | {"drifted", "tests": {"chi2": TEST, "js": TEST, "share": TEST}, "share_class",
                                "reference_distribution", "current_distribution"},
         "embedding": null | {"drifted", "combine", "n_reference", "n_current",
                              "tests": {"mmd": TEST, "classifier": TEST}, "projection": null | {...}},
         "polarity": null | {"drifted", "informative", "score", "threshold", "p_value", "classes_used"}}]}

    Version 2 added "polarity" (drift.polarity) to every window, and the "share" test (the class
    whose share changed most for its threshold, index "share_class") to "predictions". Version 3 added
    "rows" and "insufficient_families" (the log computes features for a sample of rows only); version 2
    reports are still read.
    TEST = {"test", "statistic", "p_value", "p_adjusted", "effect_size", "threshold", "drifted"}
           (numbers or null: a statistic that is undefined, or a distance without a test of its own)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from seismic.io.atomic import atomic_file
from seismic.monitoring.drift.config import DriftConfig
from seismic.monitoring.drift.results import WindowDrift

SCHEMA = "seismic.drift-report"
SCHEMA_VERSION = 3
READABLE_VERSIONS = (2, 3)
_TEST_KEYS = ("test", "statistic", "p_value", "p_adjusted", "effect_size", "threshold", "drifted")


class ReportSchemaError(ValueError):
    """A report that does not follow its declared schema version; the message names the path."""


def build_report(
    windows: Sequence[WindowDrift],
    *,
    config: DriftConfig,
    baseline: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The report dict of a run: ``windows`` in time order, ``baseline`` from ``Baseline.summary()``."""
    entries = [w.to_dict() for w in windows]
    drifted = [e for e in entries if e["drifted"]]
    insufficient = sum(e["status"] == "insufficient_data" for e in entries)
    if drifted:
        verdict = "drift"
    elif entries and insufficient == len(entries):
        verdict = "insufficient_data"
    else:
        verdict = "ok"
    report = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": {
            "verdict": verdict,
            "n_windows": len(entries),
            "n_drifted": len(drifted),
            "n_insufficient": insufficient,
            "drifted_windows": [e["window"].get("id") for e in drifted],
            "rows_tested": {
                family: sum(e["rows"].get(family, 0) for e in entries)
                for family in sorted({f for e in entries for f in e["rows"]})
            },
        },
        "config": config.to_dict(),
        "baseline": dict(baseline or {}),
        "meta": dict(meta or {}),
        "windows": entries,
    }
    validate_report(report)
    return report


def _fail(path: str, why: str) -> None:
    raise ReportSchemaError(f"drift report: {path} {why}")


def _keys(obj: Any, path: str, keys: Sequence[str]) -> None:
    if not isinstance(obj, Mapping):
        _fail(path, f"must be an object, got {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        _fail(path, f"lacks {missing}")


def _number_or_null(value: Any, path: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        _fail(path, f"must be a number or null, got {value!r}")


def _test(obj: Any, path: str) -> None:
    _keys(obj, path, _TEST_KEYS)
    for key in _TEST_KEYS[1:-1]:
        _number_or_null(obj[key], f"{path}.{key}")
    if not isinstance(obj["drifted"], bool):
        _fail(f"{path}.drifted", "must be a boolean")


def _tests(obj: Any, path: str, names: Sequence[str]) -> None:
    _keys(obj, path, ("drifted", "tests"))
    _keys(obj["tests"], f"{path}.tests", names)
    for name in names:
        _test(obj["tests"][name], f"{path}.tests.{name}")


def _window(w: Any, path: str, version: int) -> None:
    _keys(
        w, path, ("window", "status", "drifted", "n_current", "raw", "predictions", "embedding", "polarity")
    )
    if version >= 3:
        _keys(w, path, ("rows", "insufficient_families"))
        if not isinstance(w["rows"], Mapping) or not all(isinstance(v, int) for v in w["rows"].values()):
            _fail(f"{path}.rows", "must map families to row counts")
        if not set(w["insufficient_families"]) <= set(w["rows"]):
            _fail(f"{path}.insufficient_families", "names a family without a row count")
    if w["status"] not in ("ok", "insufficient_data"):
        _fail(f"{path}.status", f"must be 'ok' or 'insufficient_data', got {w['status']!r}")
    if not isinstance(w["drifted"], bool):
        _fail(f"{path}.drifted", "must be a boolean")
    if not isinstance(w["window"], Mapping):
        _fail(f"{path}.window", "must be an object")
    _keys(w["raw"], f"{path}.raw", ("drifted", "drifted_features", "features"))
    for i, f in enumerate(w["raw"]["features"]):
        fp = f"{path}.raw.features[{i}]"
        _keys(f, fp, ("name", "drifted", "gate", "n_reference", "n_current", "n_nonfinite", "histogram"))
        _tests(f, fp, ("ks", "wasserstein", "psi", "js"))
    if w["predictions"] is not None:
        _tests(w["predictions"], f"{path}.predictions", ("chi2", "js", "share"))
        if not isinstance(w["predictions"].get("share_class"), int):
            _fail(f"{path}.predictions.share_class", "must be a class index")
    if w["embedding"] is not None:
        _tests(w["embedding"], f"{path}.embedding", ("mmd", "classifier"))
    if w["polarity"] is not None:
        pp = f"{path}.polarity"
        _keys(w["polarity"], pp, ("drifted", "informative", "score", "threshold", "p_value", "classes_used"))
        for key in ("score", "threshold", "p_value"):
            _number_or_null(w["polarity"][key], f"{pp}.{key}")
        for key in ("drifted", "informative"):
            if not isinstance(w["polarity"][key], bool):
                _fail(f"{pp}.{key}", "must be a boolean")


def validate_report(report: Any) -> None:
    """Raise :class:`ReportSchemaError` naming the first path that breaks its schema version (2 or 3)."""
    _keys(
        report, "report", ("schema", "schema_version", "created", "summary", "config", "baseline", "windows")
    )
    if report["schema"] != SCHEMA:
        _fail("report.schema", f"must be {SCHEMA!r}, got {report['schema']!r}")
    version = report["schema_version"]
    if version not in READABLE_VERSIONS:
        _fail("report.schema_version", f"is {version!r}; this reader knows {list(READABLE_VERSIONS)}")
    _keys(report["summary"], "report.summary", ("verdict", "n_windows", "n_drifted", "n_insufficient"))
    if report["summary"]["verdict"] not in ("drift", "ok", "insufficient_data"):
        _fail("report.summary.verdict", f"unknown verdict {report['summary']['verdict']!r}")
    if not isinstance(report["windows"], list):
        _fail("report.windows", "must be a list")
    for i, w in enumerate(report["windows"]):
        _window(w, f"report.windows[{i}]", version)


def write_json_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """Validate, then write atomically (a reader never sees half a report). NaN is refused, not written."""
    validate_report(report)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(report, indent=1, allow_nan=False), encoding="utf-8")
    return Path(path)


def read_json_report(path: str | Path) -> dict[str, Any]:
    report = json.loads(Path(path).read_text(encoding="utf-8"))
    validate_report(report)
    return report
