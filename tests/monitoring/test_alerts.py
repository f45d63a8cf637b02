"""Alert channels against real receivers on 127.0.0.1 (HTTP for webhook and Slack, aiosmtpd for mail), and
the notification rules: dedup, repeat interval, cooldown, resolve, retries, a dead receiver."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import threading
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from seismic.monitoring.alerting.channels import (
    RetryPolicy,
    build_channels,
    deliver,
    dispatch,
)
from seismic.monitoring.alerting.engine import AlertEngine, AlertSettings
from seismic.monitoring.drift import adaptive
from seismic.monitoring.state import MonitorState

T0 = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
STEP = dt.timedelta(minutes=15)
MODEL = {"name": "seismic-facies", "version": "7"}
FAST = RetryPolicy(attempts=3, backoff_s=0.01, factor=2.0, max_backoff_s=0.05, timeout_s=5.0)
AM_ALERT_KEYS = {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
AM_KEYS = {
    "version",
    "groupKey",
    "truncatedAlerts",
    "status",
    "receiver",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "alerts",
}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class Receiver:
    """An HTTP server on a free 127.0.0.1 port that keeps every JSON body; the first ``fail`` requests get a
    500 (a receiver having a bad minute)."""

    def __init__(self, fail: int = 0) -> None:
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.fail = fail
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if owner.fail > 0:
                    owner.fail -= 1
                    self.send_response(500)
                else:
                    owner.bodies.append(json.loads(body))
                    owner.paths.append(self.path)
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver():
    r = Receiver()
    yield r
    r.close()


def dead_url() -> str:
    """A 127.0.0.1 port that nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def _test(stat: float, thr: float, p: float | None = 1e-6) -> dict:
    return {
        "test": "x",
        "statistic": stat,
        "p_value": p,
        "p_adjusted": p,
        "effect_size": stat,
        "threshold": thr,
        "drifted": bool(stat >= thr and (p is None or p < 0.05)),
    }


def window(
    k: int, drift: tuple[str, ...] = (), status: str = "ok", embedding: bool = False, rows: int = 500
) -> dict:
    """A report window entry as the job writes it: features ``rms`` and ``spectral_centroid``, ``drift``
    naming the ones that drifted; ``embedding``: MMD and classifier drifted too."""
    start = T0 + k * STEP
    features = []
    for name in ("rms", "spectral_centroid"):
        psi = 0.9 if name in drift else 0.02
        features.append(
            {
                "name": name,
                "drifted": name in drift,
                "gate": "psi",
                "tests": {
                    "psi": _test(psi, 0.12, None),
                    "ks": _test(0.3, 0.1, 1e-6 if name in drift else 0.5),
                },
            }
        )
    info = {
        "id": start.isoformat(),
        "start": start.isoformat(),
        "end": (start + STEP).isoformat(),
        "quality": {
            "rows": rows,
            "nonfinite_fraction": 0.0,
            "dead_fraction": 0.0,
            "out_of_range_fraction": 0.01,
        },
    }
    emb = {
        "mmd": _test(0.03 if embedding else 0.0005, 0.002),
        "classifier": _test(0.9 if embedding else 0.5, 0.56),
    }
    return {
        "window": info,
        "status": status,
        "drifted": bool(drift or embedding),
        "n_current": rows if status == "ok" else 10,
        "raw": {"drifted": bool(drift), "drifted_features": list(drift), "features": features},
        "predictions": {
            "drifted": False,
            "tests": {
                "js": _test(0.01, 0.05, None),
                "chi2": _test(1.0, 0.0, 0.9),
                "share": _test(0.01, 0.06, 0.9),
            },
            "share_class": 0,
        },
        "embedding": {"drifted": embedding, "combine": "any", "tests": emb},
    }


def judge(engine: AlertEngine, w: dict, channels, report: str = "/reports/w/drift_report.html"):
    """What the scheduler does per window: decisions, evaluate, dispatch, record the delivery."""
    decisions = adaptive.decide(w, {}, adaptive.AdaptiveConfig(), 0.05)
    note = engine.evaluate(w, decisions, model=MODEL, report=report)
    if note is None:
        return None, {}
    sent = dispatch(channels, note, FAST)
    if any(sent.values()):
        engine.delivered(note, dt.datetime.fromisoformat(w["window"]["end"]))
    return note, sent


def _engine(tmp_path, **kw) -> AlertEngine:
    settings = AlertSettings(env="test", external_url="http://monitor.local", **kw)
    return AlertEngine(settings, MonitorState.load(tmp_path / "state.json"))


def _check_alertmanager_v4(body: dict, status: str) -> None:
    assert set(body) == AM_KEYS and body["version"] == "4" and body["status"] == status
    assert body["receiver"] == "seismic-monitor" and body["externalURL"] == "http://monitor.local"
    assert body["groupKey"] == '{}:{env="test", model="seismic-facies"}'
    assert body["groupLabels"] == {"env": "test", "model": "seismic-facies"}
    assert body["commonLabels"]["model"] == "seismic-facies" and body["truncatedAlerts"] == 0
    for alert in body["alerts"]:
        assert set(alert) == AM_ALERT_KEYS
        assert re.fullmatch(r"[0-9a-f]{16}", alert["fingerprint"])
        assert RFC3339.match(alert["startsAt"]) and RFC3339.match(alert["endsAt"])
        assert {"alertname", "severity", "model", "env"} <= set(alert["labels"])
        assert {"summary", "description", "model_version", "report"} <= set(alert["annotations"])


def test_webhook_slack_email_and_log_file_carry_the_same_facts(tmp_path, receiver, monkeypatch):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    mails: list[bytes] = []
    logins: list[tuple[bytes, bytes]] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            mails.append(envelope.content)
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cret")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        smtp_port = sock.getsockname()[1]
    smtp = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=smtp_port,
        authenticator=authenticator,
        auth_require_tls=False,  # no certificate here; production uses starttls: true
    )
    smtp.start()
    monkeypatch.setenv("TEST_SMTP_USER", "monitor")
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
    monkeypatch.setenv("TEST_SLACK_URL", receiver.url + "/slack")
    try:
        channels = build_channels(
            [
                {"type": "webhook", "name": "am", "url": receiver.url + "/am"},
                {"type": "slack", "url_env": "TEST_SLACK_URL"},
                {
                    "type": "email",
                    "host": "127.0.0.1",
                    "port": smtp_port,
                    "sender": "monitor@test",
                    "to": ["oncall@test"],
                    "username_env": "TEST_SMTP_USER",
                    "password_env": "TEST_SMTP_PASSWORD",
                },
                {"type": "log", "path": str(tmp_path / "alerts.jsonl")},
            ],
            receiver="seismic-monitor",
        )
        engine = _engine(tmp_path)
        note, sent = judge(engine, window(0, drift=("rms",), embedding=True), channels)
    finally:
        smtp.stop()
    assert sent == {"am": True, "slack": True, "email": True, "log": True}

    am = receiver.bodies[receiver.paths.index("/am")]
    _check_alertmanager_v4(am, "firing")
    names = sorted(a["labels"]["alertname"] for a in am["alerts"])
    assert names == ["SeismicEmbeddingDrift", "SeismicFeatureDrift"]  # one group per window
    feature = next(a for a in am["alerts"] if a["labels"]["alertname"] == "SeismicFeatureDrift")
    assert feature["endsAt"] == "0001-01-01T00:00:00Z" and feature["startsAt"] == "2025-03-01T00:00:00Z"
    assert feature["annotations"]["description"] == "1 raw feature(s) drifted: rms 0.9 (threshold 0.12)"
    assert feature["annotations"]["model_version"] == "7"
    assert feature["annotations"]["report"] == "/reports/w/drift_report.html"

    slack = receiver.bodies[receiver.paths.index("/slack")]
    assert slack["text"] == note.text() and slack["blocks"][0]["type"] == "header"
    flat = json.dumps(slack["blocks"])
    assert "seismic-facies v7" in flat and "rms 0.9" in flat and "/reports/w/drift_report.html" in flat

    assert logins == [(b"monitor", b"s3cret")] and len(mails) == 1
    mail = message_from_bytes(mails[0], policy=policy.default)  # unfolds the long subject
    subject = mail["Subject"].strip()  # folded right after "Subject:": unfolding leaves a blank
    assert subject.startswith("[FIRING:2] seismic-facies (test): drift in window 2025-03-01T00:00")
    body = mail.get_content()
    assert (
        "version 7" in body
        and "MMD^2 0.03 (threshold 0.002)" in body
        and "since 2025-03-01T00:00:00Z" in body
    )

    logged = json.loads((tmp_path / "alerts.jsonl").read_text())
    assert logged["text"] == note.text() and logged["status"] == "firing"


def test_text_is_deterministic(tmp_path):
    texts = []
    for run in range(2):
        engine = _engine(tmp_path / str(run))
        w = window(0, drift=("spectral_centroid", "rms"))
        texts.append(
            engine.evaluate(
                w, adaptive.decide(w, {}, adaptive.AdaptiveConfig(), 0.05), model=MODEL, report="r"
            ).text()
        )
    assert texts[0] == texts[1]
    assert "2 raw feature(s) drifted: rms 0.9 (threshold 0.12), spectral_centroid 0.9" in texts[0]


def test_dedup_repeat_interval_and_resolved_notice(tmp_path, receiver):
    channels = build_channels([{"type": "webhook", "url": receiver.url}], receiver="seismic-monitor")
    engine = _engine(tmp_path, repeat_interval=dt.timedelta(hours=1))
    statuses = []
    for k, drift in enumerate([("rms",), ("rms",), ("rms",), ("rms",), ("rms",), (), ()]):
        note, _ = judge(engine, window(k, drift=drift), channels)
        statuses.append(None if note is None else note.status)
    # fired at window 0, deduped for the next 3 (45 min < 1 h), repeated at window 4 (1 h), resolved once
    assert statuses == ["firing", None, None, None, "firing", "resolved", None]
    assert [b["status"] for b in receiver.bodies] == ["firing", "firing", "resolved"]
    resolved = receiver.bodies[-1]
    _check_alertmanager_v4(resolved, "resolved")
    assert resolved["alerts"][0]["endsAt"] == "2025-03-01T01:30:00Z"  # the end of the first clean window
    assert resolved["alerts"][0]["startsAt"] == "2025-03-01T00:00:00Z"  # since the first drifted window
    fingerprints = {a["fingerprint"] for b in receiver.bodies for a in b["alerts"]}
    assert len(fingerprints) == 1  # one alert across windows

    # the state survives a restart: a new engine on the same file keeps deduplicating
    engine.state.save()
    again = _engine(tmp_path, repeat_interval=dt.timedelta(hours=1))
    assert judge(again, window(7, drift=("rms",)), channels)[0].status == "firing"  # resolved before: new
    assert judge(_engine(tmp_path, repeat_interval=dt.timedelta(hours=1)), window(8), channels)[0] is None


def test_insufficient_window_neither_fires_nor_resolves(tmp_path, receiver):
    channels = build_channels([{"type": "webhook", "url": receiver.url}], receiver="seismic-monitor")
    engine = _engine(tmp_path)
    judge(engine, window(0, drift=("rms",)), channels)
    assert judge(engine, window(1, status="insufficient_data"), channels)[0] is None
    assert engine.state.data["alerts"] and all(
        a["status"] == "firing" for a in engine.state.data["alerts"].values()
    )


def test_cooldown_holds_back_a_flapping_alert(tmp_path, receiver):
    channels = build_channels([{"type": "webhook", "url": receiver.url}], receiver="seismic-monitor")
    engine = _engine(tmp_path, cooldown=dt.timedelta(minutes=40))
    pattern = [("rms",), (), ("rms",), (), ("rms",), ("rms",)]
    notes = [judge(engine, window(k, drift=d), channels)[0] for k, d in enumerate(pattern)]
    statuses = [None if n is None else n.status for n in notes]
    # resolved at the end of window 1 (00:30): cooldown to 01:10; the flaps at windows 2 and 3 stay silent
    # (nothing was notified, so nothing to resolve); window 4 ends at 01:15, after the cooldown: fires again
    assert statuses == ["firing", "resolved", None, None, "firing", None]


def test_retries_with_backoff_then_delivers(tmp_path):
    flaky = Receiver(fail=2)
    try:
        channel = build_channels([{"type": "webhook", "url": flaky.url}], receiver="r")[0]
        engine = _engine(tmp_path)
        w = window(0, drift=("rms",))
        note = engine.evaluate(
            w, adaptive.decide(w, {}, adaptive.AdaptiveConfig(), 0.05), model=MODEL, report=None
        )
        waits: list[float] = []
        policy = RetryPolicy(attempts=4, backoff_s=1.0, factor=3.0, max_backoff_s=5.0, timeout_s=5.0)
        assert deliver(channel, note, policy, sleep=waits.append)
        assert waits == [1.0, 3.0] and len(flaky.bodies) == 1  # two 500s, then delivered
        waits.clear()
        flaky.fail = 10
        assert not deliver(channel, note, policy, sleep=waits.append)  # gives up, logs, does not raise
        assert waits == [1.0, 3.0, 5.0]  # capped at max_backoff_s
    finally:
        flaky.close()


def test_a_dead_receiver_does_not_stop_the_others_and_an_outage_is_retried(tmp_path, receiver):
    dead = {"type": "webhook", "name": "dead", "url": dead_url()}
    live = {"type": "slack", "name": "live", "url": receiver.url}
    engine = _engine(tmp_path)
    note, sent = judge(engine, window(0, drift=("rms",)), build_channels([dead, live], receiver="r"))
    assert sent == {"dead": False, "live": True} and len(receiver.bodies) == 1

    # every channel down: nothing counts as notified, so the next window sends the alert again
    engine2 = _engine(tmp_path / "b")
    only_dead = build_channels([dead], receiver="r")
    assert judge(engine2, window(0, drift=("rms",)), only_dead)[1] == {"dead": False}
    note, sent = judge(engine2, window(1, drift=("rms",)), build_channels([live], receiver="r"))
    assert note is not None and note.status == "firing" and sent == {"live": True}


def test_secrets_come_from_the_environment_only(monkeypatch):
    with pytest.raises(ValueError, match="local receivers only"):
        build_channels([{"type": "slack", "url": "https://hooks.slack.com/services/T/B/x"}], receiver="r")
    with pytest.raises(ValueError, match="unknown key"):
        build_channels([{"type": "webhook", "url": "http://127.0.0.1:1", "password": "x"}], receiver="r")
    monkeypatch.delenv("NOPE_URL", raising=False)
    assert build_channels([{"type": "slack", "url_env": "NOPE_URL"}], receiver="r") == []  # skipped, warned
    monkeypatch.setenv("NOPE_URL", "https://hooks.slack.com/services/T/B/x")
    assert [c.name for c in build_channels([{"type": "slack", "url_env": "NOPE_URL"}], receiver="r")] == [
        "slack"
    ]
    email = {
        "type": "email",
        "host": "h",
        "sender": "a@b",
        "to": "c@d",
        "username_env": "T_NO_USER",
        "password_env": "T_NO_PASS",
    }
    monkeypatch.delenv("T_NO_USER", raising=False)
    assert build_channels([email], receiver="r") == []
