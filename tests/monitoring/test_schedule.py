"""Scheduled monitoring over a real inference log: each window once across crashes and restarts, alerts to a
live and a dead receiver, /metrics, and scripts/monitor.py as a daemon that stops on SIGTERM."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import serving.inference_log
from seismic.data.windows import extract_windows, sample_centres
from seismic.monitoring.alerting.channels import RetryPolicy
from seismic.monitoring.alerting.engine import AlertSettings
from seismic.monitoring.drift.config import DriftConfig
from seismic.monitoring.job import schedule
from seismic.monitoring.job.schedule import Monitor, ScheduleSettings, pending_windows
from serving.inference_log import InferenceLogWriter

sys.path.insert(0, str(Path(__file__).parent))  # the job tests' stand-in network; the alert tests' receiver
from test_alerts import Receiver, dead_url
from test_job import FAST, SPEC, WINDOW_ROWS, reference_model

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
STEP = dt.timedelta(minutes=15)
QUICK = RetryPolicy(attempts=2, backoff_s=0.01, timeout_s=2.0)


class Killed(BaseException):
    """A kill: not an Exception, so nothing on the way catches it."""


class _Clock:
    """Stands in for the ``time`` module of serving.inference_log, which stamps rows with ``time_ns()``:
    rows can then be written into chosen windows of the past (everything else is the real module)."""

    def __init__(self) -> None:
        self.ns = 0

    def time_ns(self) -> int:
        self.ns += 1000  # distinct, increasing stamps
        return self.ns

    def __getattr__(self, name: str):
        return getattr(time, name)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A model folder with a reference profile; a log of four 15-minute windows from T0 (600 rows each),
    the last two with gain x3 (drift)."""
    root = tmp_path_factory.mktemp("schedule")
    survey, net, model_dir = reference_model(root)
    (model_dir / "metadata.json").write_text(json.dumps({"model_name": "tiny", "model_version": "3"}))
    log_dir = root / "log"
    clock = _Clock()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(serving.inference_log, "time", clock)
        with InferenceLogWriter(log_dir, dt_ms=survey.dt_ms, flush_rows=10_000, max_buffer_rows=20_000) as w:
            for k in range(4):
                clock.ns = int((T0 + k * STEP + dt.timedelta(minutes=1)).timestamp() * 1e9)
                c = sample_centres(survey.labels, WINDOW_ROWS, SPEC, balance=False, seed=100 + k)
                x = extract_windows(survey.amplitudes, *c, SPEC) * (3.0 if k >= 2 else 1.0)
                p, e = net(x)
                for part in np.array_split(np.arange(WINDOW_ROWS), 3):
                    w.log(f"r{k}", "3", x[part], p[part].argmax(axis=1), p[part], e[part], 0.01)
    return model_dir, log_dir


def _settings(tmp_path, setup, channels, **kw) -> ScheduleSettings:
    model_dir, log_dir = setup
    return ScheduleSettings(
        model_source=str(model_dir),
        log_dir=str(log_dir),
        output_dir=str(tmp_path / "monitor"),
        state_file=str(tmp_path / "monitor" / "state.json"),
        every=STEP,
        delay=dt.timedelta(0),
        drift=DriftConfig.from_mapping(FAST),
        alerts=AlertSettings(model_name="tiny", env="test"),
        channels=channels,
        retry=QUICK,
        **kw,
    )


def test_pending_windows_are_aligned_and_complete():
    s = ScheduleSettings("m", "l", "o", "s", every=STEP, delay=dt.timedelta(seconds=30), backfill=2)
    now = T0 + dt.timedelta(minutes=45, seconds=20)  # the window ending 00:45 is complete at 00:45:30
    assert list(pending_windows(None, now, s)) == [(T0, T0 + STEP), (T0 + STEP, T0 + 2 * STEP)]
    later = now + dt.timedelta(minutes=15)  # 01:00:20: the window ending 01:00 is not complete yet
    assert list(pending_windows(T0 + 2 * STEP, later, s)) == [(T0 + 2 * STEP, T0 + 3 * STEP)]
    assert list(pending_windows(T0 + 3 * STEP, later, s)) == []


def test_restart_mid_run_neither_loses_nor_repeats_a_window(tmp_path, setup, monkeypatch):
    live = Receiver()
    channels = [
        {"type": "webhook", "name": "dead", "url": dead_url()},
        {"type": "webhook", "name": "live", "url": live.url},
    ]
    now = [T0 + 2 * STEP + dt.timedelta(seconds=1)]
    try:
        first = Monitor(_settings(tmp_path, setup, channels, backfill=2), clock=lambda: now[0])
        assert [r["id"] for r in first.run_once()] == [T0.isoformat(), (T0 + STEP).isoformat()]

        # the process dies while writing the reports of the 00:45 window: its state was never saved
        now[0] = T0 + 4 * STEP + dt.timedelta(seconds=1)
        real = schedule.write_reports

        def crash(report, folder):
            if "T004500Z" in str(folder):
                raise Killed
            return real(report, folder)

        monkeypatch.setattr(schedule, "write_reports", crash)
        with pytest.raises(Killed):
            first.run_once()
        monkeypatch.setattr(schedule, "write_reports", real)

        restarted = Monitor(_settings(tmp_path, setup, channels, backfill=2), clock=lambda: now[0])
        assert [r["id"] for r in restarted.run_once()] == [(T0 + 3 * STEP).isoformat()]
        assert Monitor(_settings(tmp_path, setup, channels), clock=lambda: now[0]).run_once() == []
    finally:
        live.close()

    state = json.loads((tmp_path / "monitor" / "state.json").read_text())
    assert [w["id"] for w in state["windows"]] == [(T0 + k * STEP).isoformat() for k in range(4)]
    assert [w["verdict"] for w in state["windows"]] == ["ok", "ok", "drift", "drift"]
    assert state["counters"]["windows"] == 4
    # the first drifted window (00:30) notified; after the restart nothing that fires was sent again
    first_note = live.bodies[0]
    assert (
        first_note["status"] == "firing"
        and first_note["commonAnnotations"]["window"] == (T0 + 2 * STEP).isoformat()
    )
    assert "SeismicFeatureDrift" in {a["labels"]["alertname"] for a in first_note["alerts"]}
    firing = [a["fingerprint"] for b in live.bodies for a in b["alerts"] if a["status"] == "firing"]
    assert len(firing) == len(set(firing))
    assert {a["annotations"]["model_version"] for a in first_note["alerts"]} == {"3"}
    n = len(live.bodies)
    assert state["counters"]["alerts_sent"] == {"live": n} and state["counters"]["alert_failures"] == {
        "dead": n
    }
    assert (tmp_path / "monitor" / "windows" / "20250101T003000Z" / "drift_report.html").is_file()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def test_run_forever_serves_metrics_and_stops(tmp_path, setup):
    port = _free_port()
    settings = _settings(tmp_path, setup, [], backfill=4, metrics_port=port, poll=dt.timedelta(seconds=0.2))
    monitor = Monitor(settings, clock=lambda: T0 + 4 * STEP + dt.timedelta(seconds=1))
    server = monitor.serve_metrics()
    stop = threading.Event()
    thread = threading.Thread(target=monitor.run_forever, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while monitor.state.data["counters"]["windows"] < 4:
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.1)
        text = _get(f"http://127.0.0.1:{port}/metrics")
    finally:
        stop.set()
        thread.join(30)
        server.shutdown()
    assert not thread.is_alive()
    assert "seismic_monitor_windows_processed_total 4.0" in text
    assert "seismic_drift_detected 1.0" in text and 'seismic_drift_windows{verdict="drift"} 1.0' in text
    assert 'seismic_monitor_active_alerts{alertname="SeismicFeatureDrift"} 1.0' in text
    assert "seismic_monitor_last_run_timestamp_seconds" in text


def test_cli_daemon_stops_on_sigterm_and_once_mode_does_not_repeat(tmp_path, setup):
    model_dir, _ = setup
    (tmp_path / "log").mkdir()
    port = _free_port()
    env = {**os.environ, "SEISMIC_ROOT": str(tmp_path)}
    args = [
        sys.executable,
        str(ROOT / "scripts/monitor.py"),
        f"model_dir={model_dir}",
        f"log_dir={tmp_path / 'log'}",
        f"workdir={tmp_path / 'monitor'}",
        "schedule.every=1h",
        "schedule.poll=1s",
        "hydra.run.dir=" + str(tmp_path / "h"),
        *(f"drift.{k}" for k in ("embedding.mmd.permutations=99", "calibration.n_chunks=8")),
    ]
    daemon = subprocess.Popen(
        [*args, f"metrics.port={port}"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert daemon.poll() is None, daemon.stderr.read()
            try:
                if "seismic_monitor_windows_processed_total 1.0" in _get(f"http://127.0.0.1:{port}/metrics"):
                    break  # the last complete hour: no rows in this log, recorded as no_data
            except OSError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.3)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert "monitor: stopped" in daemon.stderr.read()

    once = subprocess.run(
        [*args, "schedule.once=true"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert once.returncode == 0, once.stderr
    state = json.loads((tmp_path / "monitor" / "state.json").read_text())
    ids = [w["id"] for w in state["windows"]]
    assert len(ids) == len(set(ids)) >= 1 and {w["verdict"] for w in state["windows"]} == {"no_data"}
    assert json.loads(once.stdout) == [w for w in state["windows"][1:]]  # only hours the daemon had not done


class _Gateway(http.server.BaseHTTPRequestHandler):
    """A Pushgateway stand-in on 127.0.0.1: records each push's method, path and body."""

    pushes: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).pushes.append(("PUT", self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_once_mode_pushes_metrics_to_a_pushgateway_and_survives_an_unreachable_one(tmp_path, setup, caplog):
    from prometheus_client.parser import text_string_to_metric_families

    gateway = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{gateway.server_port}"
        settings = _settings(tmp_path, setup, [], backfill=4, pushgateway=url, push_job="cron-monitor")
        monitor = Monitor(settings, clock=lambda: T0 + 4 * STEP + dt.timedelta(seconds=1))
        assert len(monitor.run_once()) == 4
        assert monitor.push_metrics()
    finally:
        gateway.shutdown()
        thread.join(10)
    method, path, body = _Gateway.pushes[-1]
    assert (method, path) == ("PUT", "/metrics/job/cron-monitor")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["seismic_drift_detected"].samples[0].value == 1.0
    assert families["seismic_monitor_windows_processed"].samples[0].value == 4.0

    dead = _settings(tmp_path / "b", setup, [], backfill=1, pushgateway=f"http://127.0.0.1:{_free_port()}")
    monitor = Monitor(dead, clock=lambda: T0 + 4 * STEP + dt.timedelta(seconds=1))
    monitor.run_once()
    assert not monitor.push_metrics()
    assert "cannot push metrics to the Pushgateway http://127.0.0.1:" in caplog.text
