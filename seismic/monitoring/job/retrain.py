"""The retrain trigger: a policy over the monitored windows that starts a retrain, with a cooldown and an
append-only audit log of every decision.

**Policy** (``retrain`` in ``configs/monitor.yaml``), judged on each window with enough rows (a window with
too few rows neither extends nor breaks a streak):

- ``consecutive_windows: K``: some alert family (raw features, predictions, embeddings) drifted in K
  consecutive windows: a lasting shift, not a burst;
- ``embedding_and_predictions: true``: the embeddings and the predicted classes drifted in the same window:
  the network itself sees different data and answers differently, which is what a retrain can fix (raw
  drift alone may be a gain change that normalisation absorbs);
- ``cooldown``: after a trigger, no other until the cooldown has passed (data time: window ends), so a
  shift that lasts for hours starts one retrain, not one per window; a retrain still running blocks too.

**Action**: ``commands``, run one after the other until one fails (the default trains on the fresh data
named by ``data`` and then gates the result through ``scripts/promote.py``, whose exit 1, a refusal, is
recorded as such), or ``webhook`` (POST of the decision as JSON to a pipeline service). In command
arguments ``{python}`` is this interpreter, ``{env}`` the environment, ``{window_start}``/``{window_end}``
the triggering window; an argument that is exactly ``{data}`` expands to the ``data`` overrides.

**Audit log** (``audit_log``): one JSON line per decision (``trigger``, ``skip`` with its reason) and per
finished action (``finished`` with exit statuses and seconds), flushed and fsynced before anything starts,
never rewritten.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seismic.monitoring.alerting.channels import post_json, receiver_url
from seismic.monitoring.state import MonitorState

log = logging.getLogger(__name__)
DEFAULT_COMMANDS = (
    ("{python}", "scripts/train.py", "env={env}", "{data}"),
    ("{python}", "scripts/promote.py", "env={env}", "{data}"),
)


@dataclass(frozen=True)
class RetrainConfig:
    enabled: bool = False
    consecutive_windows: int = 3
    embedding_and_predictions: bool = True
    cooldown: dt.timedelta = dt.timedelta(hours=6)
    action: str = "command"  # command | webhook
    commands: tuple[tuple[str, ...], ...] = DEFAULT_COMMANDS
    data: tuple[str, ...] = ()
    workdir: str | None = None  # where the commands run (default: the current directory)
    timeout_s: float = 6 * 3600
    wait: bool = False  # True: the monitor waits for the action (cron runs, the loop); False: a thread
    webhook: Mapping[str, Any] = field(default_factory=dict)
    audit_log: str = "retrain_audit.jsonl"


class RetrainTrigger:
    def __init__(self, cfg: RetrainConfig, state: MonitorState, *, env: str, model_name: str) -> None:
        if cfg.action not in ("command", "webhook"):
            raise ValueError(f"retrain.action must be command or webhook, got {cfg.action!r}")
        if cfg.consecutive_windows < 1:
            raise ValueError("retrain.consecutive_windows must be >= 1")
        self.cfg, self.state, self.env, self.model_name = cfg, state, env, model_name
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()  # the audit log is appended from the action thread too

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def audit(self, record: Mapping[str, Any]) -> None:
        path = Path(self.cfg.audit_log)
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(
            {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **record}, sort_keys=True
        )
        with self._lock, path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def decide(self, window: Mapping[str, Any], families: Sequence[str]) -> dict[str, Any] | None:
        """Judge one window (``families``: the alert families firing in it); the decision, or None when the
        window has too few rows. Starts the action on a trigger."""
        if not self.cfg.enabled or window["status"] != "ok":
            return None
        info = window["window"]
        end = dt.datetime.fromisoformat(info["end"]) if "end" in info else dt.datetime.now(dt.UTC)
        st = self.state.data["retrain"]
        drift = sorted(set(families) - {"quality"})  # bad data is a data problem, not a model problem
        st["drift_streak"] = st["drift_streak"] + 1 if drift else 0
        both = self.cfg.embedding_and_predictions and {"embedding", "predictions"} <= set(drift)
        base = {
            "window": info.get("id"),
            "families": drift,
            "streak": st["drift_streak"],
            "model": self.model_name,
        }
        if not drift:
            reason = None
        elif st["drift_streak"] >= self.cfg.consecutive_windows:
            reason = f"drift on {st['drift_streak']} consecutive windows"
        elif both:
            reason = "embedding and prediction drift in one window"
        else:
            reason = None
        last = st.get("last_started")
        if reason is None:
            decision = {**base, "decision": "skip", "reason": "no drift" if not drift else "policy not met"}
        elif self.running:
            decision = {**base, "decision": "skip", "reason": f"{reason}; a retrain is still running"}
        elif last and end < dt.datetime.fromisoformat(last) + self.cfg.cooldown:
            until = dt.datetime.fromisoformat(last) + self.cfg.cooldown
            decision = {**base, "decision": "skip", "reason": f"{reason}; cooldown until {until.isoformat()}"}
        else:
            decision = {**base, "decision": "trigger", "reason": reason, "action": self.cfg.action}
            st["last_started"], st["drift_streak"] = end.isoformat(), 0
        st["last_decision"] = decision
        self.audit(decision)
        if decision["decision"] == "trigger":
            self._start(info)
        return decision

    def _argv(self, template: Sequence[str], info: Mapping[str, Any]) -> list[str]:
        values = {
            "python": sys.executable,
            "env": self.env,
            "window_start": info.get("start", ""),
            "window_end": info.get("end", ""),
        }
        argv: list[str] = []
        for arg in template:
            if arg == "{data}":
                argv.extend(self.cfg.data)
                continue
            # plain replacement, not str.format: Hydra overrides may hold braces of their own
            for key, value in values.items():
                arg = arg.replace("{" + key + "}", value)
            argv.append(arg)
        return argv

    def _start(self, info: Mapping[str, Any]) -> None:
        if self.cfg.wait:
            self._run(info)
            return
        self._thread = threading.Thread(target=self._run, args=(info,), name="retrain", daemon=True)
        self._thread.start()

    def _run(self, info: Mapping[str, Any]) -> None:
        started = time.monotonic()
        if self.cfg.action == "webhook":
            body = {"event": "retrain", "model": self.model_name, "env": self.env, "window": dict(info)}
            body["data"] = list(self.cfg.data)
            try:
                url = receiver_url(self.cfg.webhook, "retrain webhook")
                if url is None:
                    raise ValueError(f"retrain webhook: {self.cfg.webhook.get('url_env')} is not set")
                post_json(url, body, min(self.cfg.timeout_s, 30.0), {})
                result = {"ok": True}
            except (OSError, ValueError) as err:
                result = {"ok": False, "error": str(err)}
        else:
            result = self._commands(info)
        self.audit(
            {
                "decision": "finished",
                "window": info.get("id"),
                "seconds": round(time.monotonic() - started, 1),
                **result,
            }
        )

    def _commands(self, info: Mapping[str, Any]) -> dict[str, Any]:
        statuses: list[dict[str, Any]] = []
        for template in self.cfg.commands:
            argv = self._argv(template, info)
            log.warning("retrain: running %s", " ".join(argv))
            try:
                self._process = subprocess.Popen(argv, cwd=self.cfg.workdir, stdin=subprocess.DEVNULL)
                rc: int | str = self._process.wait(timeout=self.cfg.timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
                rc = "timeout"
            except OSError as err:
                rc = f"cannot start: {err}"
            finally:
                self._process = None
            statuses.append({"argv": argv, "rc": rc})
            if rc != 0:
                break
        gate = bool(statuses) and any(Path(arg).name == "promote.py" for arg in statuses[-1]["argv"])
        last_rc = statuses[-1]["rc"] if statuses else 0
        # promote.py's exit 1 is the gate refusing the new model: the retrain itself worked
        ok = last_rc == 0 or (gate and last_rc == 1 and len(statuses) == len(self.cfg.commands))
        return {"ok": ok, "promoted": gate and last_rc == 0, "commands": statuses}

    def stop(self, grace_s: float | None = 30.0) -> None:
        """Let a running action finish (``grace_s``; None: however long it takes), then terminate it; the
        audit log records its exit status either way."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        thread.join(grace_s)
        process = self._process
        if thread.is_alive() and process is not None:
            process.terminate()
            thread.join(10)
