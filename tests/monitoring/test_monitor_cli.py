"""scripts/monitor.py's range defaults and printed summary (issue 18: the newest traffic was left out, and
the summary named neither row counts nor quality problems)."""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

from omegaconf import OmegaConf

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "monitor.py"
spec = importlib.util.spec_from_file_location("monitor_cli", SCRIPT)
monitor_cli = importlib.util.module_from_spec(spec)
spec.loader.exec_module(monitor_cli)

UTC = dt.UTC


def test_default_end_rounds_up_so_this_hours_traffic_is_in_range():
    now = dt.datetime(2026, 12, 6, 19, 49, 12, tzinfo=UTC)
    assert monitor_cli.default_end(now) == dt.datetime(2026, 12, 6, 20, tzinfo=UTC)
    on_the_hour = dt.datetime(2026, 12, 6, 20, tzinfo=UTC)
    assert monitor_cli.default_end(on_the_hour) == on_the_hour


def window(wid: str, out_of_range: float, dead: float = 0.0) -> dict:
    return {
        "window": {
            "id": wid,
            "quality": {
                "rows": 3000,
                "feature_rows": 1600,
                "nonfinite_fraction": 0.0,
                "dead_fraction": dead,
                "out_of_range_fraction": out_of_range,
                "out_of_range_features": {"max_abs": 0.49, "rms": 0.35, "std": 0.37, "skewness": 0.01},
            },
        },
        "rows": {"raw": 1600, "predictions": 3000, "embedding": 3000},
        "status": "ok",
        "drifted": True,
        "raw": {"drifted": True, "drifted_features": ["std", "rms"]},
        "predictions": {"drifted": False},
        "embedding": {"drifted": True},
        "polarity": None,
        "insufficient_families": [],
    }


def test_quality_problems_name_the_window_the_fraction_and_the_worst_features():
    limits = OmegaConf.create({"nonfinite": 0.001, "dead": 0.05, "out_of_range": 0.25})
    problems = monitor_cli.quality_problems([window("a", 0.01), window("b", 0.57, dead=0.2)], limits)
    assert len(problems) == 2, problems
    dead, out_of_range = problems
    assert dead.startswith("window b: dead_fraction 0.200 > 0.05 of 1600 rows")
    assert out_of_range.startswith("window b: out_of_range_fraction 0.570 > 0.25")
    assert "max_abs 0.49, std 0.37, rms 0.35" in out_of_range


def test_window_line_gives_rows_and_what_drifted():
    line = monitor_cli.window_line(window("b", 0.57))
    assert line["rows"] == 3000 and line["rows_tested"]["raw"] == 1600
    assert line["drifted"] == ["raw", "embedding"] and line["drifted_features"] == ["std", "rms"]
