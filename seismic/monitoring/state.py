"""The scheduled monitor's memory between runs: one JSON file, replaced atomically after every window.

What it holds (``schema_version`` 1)::

    {"schema_version": 1,
     "last_window_end": ISO-8601 UTC | null,   # every window ending at or before this one is done
     "windows": [{"id", "start", "end", "verdict", "report", "processed_at"}],   # the latest few, newest last
     "alerts": {fingerprint: {"labels", "status", "starts_at", "ends_at", "last_sent", "last_status_sent",
                              "resolved_at", "notified"}},
     "adaptive": {statistic: [log values of windows without alerts]},
     "retrain": {"drift_streak", "last_started", "last_decision"},
     "counters": {"alerts_sent": {channel: n}, "alert_failures": {channel: n}, "windows": n}}

Why one file written with write-then-rename: the window marker, the alert state and the learned thresholds
must move together. A crash before the rename leaves the previous state, so the window is processed again
(and its alerts, already recorded as sent or not, dedup by fingerprint); a crash after it leaves the new one,
so the window is never processed twice. The file is the only coupling between runs, which is what lets the
same code run as a long-lived scheduler or as a CronJob that starts fresh each time.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seismic.io.atomic import atomic_file

SCHEMA_VERSION = 1
KEEP_WINDOWS = 200  # the windows list is for people and /metrics, not for correctness: bounded


def _empty() -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "last_window_end": None,
        "windows": [],
        "alerts": {},
        "adaptive": {},
        "retrain": {"drift_streak": 0, "last_started": None, "last_decision": None},
        "counters": {"alerts_sent": {}, "alert_failures": {}, "windows": 0},
    }


@dataclass
class MonitorState:
    path: Path | None
    data: dict[str, Any] = field(default_factory=_empty)

    @classmethod
    def load(cls, path: str | Path | None) -> MonitorState:
        """The state at ``path`` (a fresh one if the file does not exist; ``None``: in memory only)."""
        if path is None or not Path(path).is_file():
            return cls(None if path is None else Path(path))
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("schema_version") != SCHEMA_VERSION:
            found = data.get("schema_version")
            raise ValueError(f"monitor state {path}: schema_version {found!r}, expected {SCHEMA_VERSION}")
        merged = _empty()
        merged.update(data)  # keys added by a later version of this module start empty
        return cls(Path(path), merged)

    def save(self) -> None:
        if self.path is None:
            return
        with atomic_file(self.path) as tmp:
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True), encoding="utf-8")

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)

    @property
    def last_window_end(self) -> dt.datetime | None:
        value = self.data["last_window_end"]
        return None if value is None else dt.datetime.fromisoformat(value)

    def window_done(self, record: dict[str, Any]) -> None:
        """Mark a window processed (call :meth:`save` afterwards, together with the alert state)."""
        self.data["last_window_end"] = record["end"]
        self.data["windows"] = [*self.data["windows"], record][-KEEP_WINDOWS:]
        self.data["counters"]["windows"] += 1

    def count(self, counter: str, key: str, n: int = 1) -> None:
        bucket = self.data["counters"].setdefault(counter, {})
        bucket[key] = bucket.get(key, 0) + n
