"""Monitor faults with real things: a monitor process SIGKILLed mid-window, a second monitor on a locked state
file, and alert mail over STARTTLS to a real SMTP server with a certificate from a throwaway CA."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from seismic.io.atomic import partial_files
from seismic.monitoring.alerting.channels import build_channels
from seismic.monitoring.job.schedule import Monitor
from seismic.monitoring.state import MonitorState, StateLockedError

sys.path.insert(0, str(Path(__file__).parent))  # the schedule tests' inference log, the alert tests' windows
from test_alerts import _engine, dead_url, judge, window
from test_schedule import STEP, T0, _settings, setup  # noqa: F401  (setup: a model and a log of 4 windows)

ROOT = Path(__file__).resolve().parents[2]

# A monitor in its own process: four 15-minute windows of the schedule tests' log, the third drifted, its
# alert posted to argv[3]. Prints the verdicts; a locked state file is one line on stderr, as in the CLI.
CHILD = """
import datetime as dt, json, sys
sys.path.insert(0, sys.argv[1])
from test_job import FAST
from seismic.monitoring.alerting.channels import RetryPolicy
from seismic.monitoring.alerting.engine import AlertSettings
from seismic.monitoring.drift.config import DriftConfig
from seismic.monitoring.job.schedule import Monitor, ScheduleSettings
model, log, out, url = sys.argv[2:6]
t0, step = dt.datetime(2025, 1, 1, tzinfo=dt.UTC), dt.timedelta(minutes=15)
settings = ScheduleSettings(
    model_source=model, log_dir=log, output_dir=out, state_file=out + "/state.json", every=step,
    delay=dt.timedelta(0), backfill=4, drift=DriftConfig.from_mapping(FAST),
    alerts=AlertSettings(model_name="tiny", env="test"), channels=[{"type": "webhook", "url": url}],
    retry=RetryPolicy(attempts=1, timeout_s=120),
)
try:
    monitor = Monitor(settings, clock=lambda: t0 + 4 * step + dt.timedelta(seconds=1))
except RuntimeError as err:
    sys.exit(f"monitor failed: {err}")
print(json.dumps([w["verdict"] for w in monitor.run_once()]))
"""


class StallingReceiver:
    """A webhook receiver on 127.0.0.1 that holds each request until ``release`` is set: a monitor posting
    to it is stuck mid-window (reports written, state not yet saved)."""

    def __init__(self) -> None:
        self.arrived, self.release = threading.Event(), threading.Event()
        self.bodies: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                owner.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                owner.arrived.set()
                owner.release.wait(60)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _child(models: tuple[Path, Path], out: Path, url: str) -> subprocess.Popen:
    model_dir, log_dir = models
    argv = [
        sys.executable,
        "-c",
        CHILD,
        str(Path(__file__).parent),
        str(model_dir),
        str(log_dir),
        str(out),
        url,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_window_then_a_second_monitor_on_the_locked_state(tmp_path, setup):  # noqa: F811
    out = tmp_path / "monitor"
    receiver = StallingReceiver()
    first = _child(setup, out, receiver.url)
    try:
        assert receiver.arrived.wait(120), first.communicate(timeout=5)
        # mid-window 3: its reports are written, its alert is in flight, the state says windows 1-2 are done
        second = subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts/monitor.py"),
                f"model_dir={setup[0]}",
                f"log_dir={setup[1]}",
                f"workdir={out}",
                "schedule.every=15min",
                "schedule.once=true",
                f"hydra.run.dir={tmp_path / 'h'}",
            ],
            env={**os.environ, "SEISMIC_ROOT": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"monitor failed: monitor state {out / 'state.json'} is in use by another monitor "
            f"(pid {first.pid}, lock {out / '.state.json.lock'}): run one monitor per state file"
        ]
        os.kill(first.pid, signal.SIGKILL)
        first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        receiver.release.set()
    assert first.returncode == -signal.SIGKILL
    state = json.loads((out / "state.json").read_text())  # the last complete write: valid, windows 1-2
    assert [w["verdict"] for w in state["windows"]] == ["ok", "ok"]
    assert len(receiver.bodies) == 1  # the post in flight when the monitor died: never answered

    # the kernel dropped the dead monitor's lock: a new one takes over, redoes window 3 and sends its alert
    rerun = _child(setup, out, receiver.url)
    stdout, stderr = rerun.communicate(timeout=180)
    receiver.close()
    assert rerun.returncode == 0, stderr[-2000:]
    assert json.loads(stdout) == ["drift", "drift"]
    state = json.loads((out / "state.json").read_text())
    ids = [w["id"] for w in state["windows"]]
    assert len(ids) == len(set(ids)) == 4
    assert [b["status"] for b in receiver.bodies][:2] == ["firing", "firing"]  # window 3's alert, again
    assert not list(out.rglob("*.partial"))


def test_registry_unreachable_while_the_monitor_polls_is_one_line_per_cycle(tmp_path, setup, caplog):  # noqa: F811
    registry = dead_url().removesuffix("/hook")  # a 127.0.0.1 port nothing listens on
    settings = dataclasses.replace(
        _settings(tmp_path, setup, []),
        model_source="models:/tiny@champion",
        tracking_uri=registry,
        poll=dt.timedelta(seconds=0.1),
    )
    monitor = Monitor(settings, clock=lambda: T0 + 4 * STEP + dt.timedelta(seconds=1))
    stop = threading.Event()
    daemon = threading.Thread(target=monitor.run_forever, args=(stop,))
    with caplog.at_level(logging.ERROR, logger="seismic.monitoring.job.schedule"):
        daemon.start()
        try:
            deadline = time.monotonic() + 30
            while len([r for r in caplog.records if r.name == "seismic.monitoring.job.schedule"]) < 2:
                assert daemon.is_alive() and time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            stop.set()
            daemon.join(30)
    lines = [r for r in caplog.records if r.name == "seismic.monitoring.job.schedule"]
    assert all(r.exc_info is None for r in lines)  # no traceback: the reason is known
    message = lines[0].getMessage()
    assert message.startswith(f"monitor: cycle failed: MLflow tracking server {registry} is unreachable (")
    assert message.endswith("; retried in 0 s") and "\n" not in message
    assert monitor.state.last_window_end is None  # no window was processed without its reference


def test_the_lock_holder_removes_partial_state_files_of_a_killed_monitor(tmp_path, caplog):
    path = tmp_path / "state.json"
    left = tmp_path / ".state.json.k7x2.partial"  # what a SIGKILL during save() leaves
    left.write_text('{"schema_version": 1, "last_wi')
    MonitorState.load(path, lock=True)
    assert not partial_files(path)
    assert f"removed 1 partial file(s) left by a killed monitor: {left}" in caplog.text


def test_lock_conflict_is_one_line_naming_the_state_file(tmp_path):
    path = tmp_path / "state.json"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from seismic.monitoring.state import MonitorState; "
            "MonitorState.load(sys.argv[1], lock=True); print('locked', flush=True); sys.stdin.read()",
            str(path),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StateLockedError, match=rf"^monitor state {path} is in use by another monitor "):
            MonitorState.load(path, lock=True)
    finally:
        holder.stdin.close()  # the holder exits and with it its lock
        holder.wait(30)
    MonitorState.load(path, lock=True)  # free again


@pytest.fixture()
def tls_smtp():
    """aiosmtpd on 127.0.0.1 that requires STARTTLS (and TLS before AUTH), with a certificate for 127.0.0.1
    from a throwaway CA; yields (port, CA PEM path, received mails)."""
    trustme = pytest.importorskip("trustme")
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    mails: list[tuple[bytes, bool]] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            mails.append((envelope.content, session.ssl is not None))
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        return AuthResult(success=auth_data.password == b"s3cret")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    smtp = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=port,
        tls_context=server_ctx,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    smtp.start()
    with ca.cert_pem.tempfile() as ca_file:
        yield port, ca_file, mails
    smtp.stop()


def _email(port: int, **extra) -> dict:
    return {
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "starttls": True,
        "sender": "monitor@test",
        "to": ["oncall@test"],
        "username_env": "TEST_SMTP_USER",
        "password_env": "TEST_SMTP_PASSWORD",
        **extra,
    }


def test_alert_mail_over_starttls_verifies_the_server(tmp_path, tls_smtp, monkeypatch, caplog):
    port, ca_file, mails = tls_smtp
    monkeypatch.setenv("TEST_SMTP_USER", "monitor")
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
    trusted = build_channels([_email(port, name="mail", ca_file=ca_file)], receiver="r")
    _, sent = judge(_engine(tmp_path), window(0, drift=("rms",)), trusted)
    assert sent == {"mail": True}
    assert len(mails) == 1 and mails[0][1]  # delivered, over TLS
    assert b"drift in window" in mails[0][0]

    # the same server checked against the system CAs: refused before any credential is sent, one line
    untrusted = build_channels([_email(port, name="mail")], receiver="r")
    _, sent = judge(_engine(tmp_path / "b"), window(0, drift=("rms",)), untrusted)
    assert sent == {"mail": False} and len(mails) == 1
    ours = [r for r in caplog.records if r.name == "seismic.monitoring.alerting.channels"]  # not aiosmtpd's
    failures = [r.getMessage() for r in ours if r.levelname == "ERROR"]
    assert len(failures) == 1
    assert failures[0].startswith(
        f"alert channel mail failed after 3 attempts: STARTTLS to 127.0.0.1:{port} failed against the "
        "system CAs: [SSL: CERTIFICATE_VERIFY_FAILED]"
    )
