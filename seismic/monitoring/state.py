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

**One monitor per state file**: :class:`~seismic.monitoring.job.schedule.Monitor` loads the state with
``lock=True``, which takes an exclusive ``flock`` on ``.<state file name>.lock`` beside it (holding the
holder's pid) for the rest of the process. A second monitor on the same file fails at once with
:class:`StateLockedError`, one line naming the state file and the holder: failing rather than waiting, so an
overlapping CronJob run ends instead of piling up behind a long one. The kernel drops the lock when the
holder dies, SIGKILL included, so a killed monitor never blocks the next. The lock is per process (a second
load in the same process shares it) and needs a local filesystem or one with working ``flock`` (not every
NFS). Holding the lock also makes it safe to remove the state's partial files a killed monitor left.
"""

from __future__ import annotations

import copy
import datetime as dt
import fcntl
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seismic.io.atomic import atomic_file, remove_partials

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1
KEEP_WINDOWS = 200  # the windows list is for people and /metrics, not for correctness: bounded
_HELD: dict[Path, int] = {}  # state files this process has locked -> the lock file's descriptor, kept open


class StateLockedError(RuntimeError):
    """Another monitor holds the state file (a RuntimeError: scripts/monitor.py reports it in one line)."""


def lock_state(path: Path) -> None:
    """Hold ``path``'s lock for the rest of this process (see the module docstring), or raise
    :class:`StateLockedError`; then remove the partial state files a killed monitor left behind."""
    key = path.resolve()
    if key in _HELD:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes (retrain commands)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StateLockedError(
            f"monitor state {path} is in use by another monitor (pid {holder}, lock {lock}): "
            "run one monitor per state file"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = fd
    stale = remove_partials([path])
    if stale:
        log.warning(
            "monitor state %s: removed %d partial file(s) left by a killed monitor: %s",
            path,
            len(stale),
            ", ".join(map(str, stale)),
        )


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
    def load(cls, path: str | Path | None, *, lock: bool = False) -> MonitorState:
        """The state at ``path`` (a fresh one if the file does not exist; ``None``: in memory only);
        ``lock``: first take the state file's lock (:func:`lock_state`), as a monitor must."""
        if lock and path is not None:
            lock_state(Path(path))
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
