"""Where notifications go: webhook (Alertmanager v4 body), Slack incoming webhook, email (SMTP), log/file.

Channels come from config (``alerts.channels`` of ``configs/monitor.yaml``, by default the environment's
``env.alert_channels``), one mapping each::

    {type: webhook, name: alertmanager, url_env: SEISMIC_ALERT_WEBHOOK_URL, token_env: null}
    {type: slack, url_env: SEISMIC_SLACK_WEBHOOK_URL}
    {type: email, host: smtp.example.com, port: 587, starttls: true, sender: a@b, to: [c@d],
     username_env: SEISMIC_SMTP_USER, password_env: SEISMIC_SMTP_PASSWORD,
     ca_file: null}   # a PEM bundle to verify the server against instead of the system CAs (a private CA)
    {type: log, path: outputs/monitor/alerts.jsonl}      # path optional: the log line alone

Secrets (webhook URLs carry tokens, SMTP credentials) are read from the environment variables that the
config names, never from the config itself: a literal ``url`` is allowed for local receivers only
(127.0.0.1 and localhost), so a real token cannot end up in a YAML file. A channel whose variable is unset
is skipped with a warning at start-up.

:func:`deliver` retries a failing send with exponential backoff, then logs the failure and returns False:
one channel's outage never stops the monitor or the other channels.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import ssl
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from seismic.monitoring.alerting.engine import Notification, rfc3339

log = logging.getLogger(__name__)
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    backoff_s: float = 1.0  # wait before the 2nd attempt; multiplied by `factor` after each failure
    factor: float = 2.0
    max_backoff_s: float = 30.0
    timeout_s: float = 10.0  # per attempt (HTTP and SMTP)


class Channel(Protocol):
    name: str

    def send(self, notification: Notification, timeout: float) -> None: ...


def alertmanager_payload(n: Notification, receiver: str) -> dict[str, Any]:
    """The body Alertmanager's webhook receiver sends (``version: "4"``), so existing receivers take it."""
    alerts = [
        {
            "status": a.status,
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": rfc3339(a.starts_at),
            "endsAt": rfc3339(a.ends_at),
            "generatorURL": a.generator_url,
            "fingerprint": a.fingerprint,
        }
        for a in n.alerts
    ]

    def common(key: str) -> dict[str, str]:
        first = dict(alerts[0][key])
        return {k: v for k, v in first.items() if all(a[key].get(k) == v for a in alerts)}

    return {
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": n.status,
        "receiver": receiver,
        "groupLabels": n.group_labels,
        "commonLabels": common("labels"),
        "commonAnnotations": common("annotations"),
        "externalURL": n.settings.external_url,
        "alerts": alerts,
    }


def slack_payload(n: Notification) -> dict[str, Any]:
    """``text`` (notifications, old clients) and Block Kit ``blocks`` with the same facts."""
    fields = [
        f"*Verdict*\n{'drift' if n.status == 'firing' else 'drift cleared'}",
        f"*Model*\n{n.settings.model_name} v{n.model.get('version') or '?'} ({n.settings.env})",
        f"*Window*\n{n.window.get('start', n.window.get('id'))} .. {n.window.get('end', '')}",
        f"*Since*\n{min(rfc3339(a.starts_at) for a in n.alerts)}",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": n.title()[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    for a in n.alerts:
        line = f"*{a.status.upper()} {a.labels['alertname']}*: {a.annotations['description']}"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": line[:3000]}})
    report = n.report or "not written"
    link = f"<{report}|drift report>" if report.startswith(("http://", "https://")) else f"`{report}`"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Report: {link}"}]})
    return {"text": n.text(), "blocks": blocks}


def post_json(url: str, body: Mapping[str, Any], timeout: float, headers: Mapping[str, str]) -> None:
    data = json.dumps(body, sort_keys=True).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json", **headers}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # raises HTTPError on 4xx/5xx
        response.read()


class WebhookChannel:
    def __init__(self, name: str, url: str, receiver: str, token: str | None = None) -> None:
        self.name, self.url, self.receiver, self._token = name, url, receiver, token

    def send(self, notification: Notification, timeout: float) -> None:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        post_json(self.url, alertmanager_payload(notification, self.receiver), timeout, headers)


class SlackChannel:
    def __init__(self, name: str, url: str) -> None:
        self.name, self.url = name, url

    def send(self, notification: Notification, timeout: float) -> None:
        post_json(self.url, slack_payload(notification), timeout, {})


class EmailChannel:
    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        sender: str,
        to: list[str],
        starttls: bool,
        credentials: tuple[str, str] | None,
        ca_file: str | None = None,
    ) -> None:
        self.name, self.host, self.port, self.sender, self.to = name, host, port, sender, to
        self.starttls, self._credentials, self.ca_file = starttls, credentials, ca_file

    def message(self, notification: Notification) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = notification.title()
        msg["From"], msg["To"] = self.sender, ", ".join(self.to)
        msg.set_content(notification.text() + "\n")
        return msg

    def send(self, notification: Notification, timeout: float) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=timeout) as smtp:
            if self.starttls:
                try:  # the certificate is verified (chain and host name) before any credential is sent
                    smtp.starttls(context=ssl.create_default_context(cafile=self.ca_file))
                except ssl.SSLError as err:
                    ca = self.ca_file or "the system CAs"
                    raise OSError(f"STARTTLS to {self.host}:{self.port} failed against {ca}: {err}") from None
            if self._credentials:
                smtp.login(*self._credentials)
            smtp.send_message(self.message(notification))


class LogChannel:
    """A log line per notification (level WARNING when firing) and, with ``path``, a JSON line per alert
    group (the Alertmanager body plus the text), appended: an audit trail that needs no receiver."""

    def __init__(self, name: str, path: str | None, receiver: str) -> None:
        self.name, self.path, self.receiver = name, Path(path) if path else None, receiver

    def send(self, notification: Notification, timeout: float) -> None:
        level = logging.WARNING if notification.status == "firing" else logging.INFO
        log.log(level, "%s", notification.text())
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            record = {**alertmanager_payload(notification, self.receiver), "text": notification.text()}
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, sort_keys=True) + "\n")


def dispatch(channels: list[Channel], notification: Notification, retry: RetryPolicy) -> dict[str, bool]:
    """Every channel in turn (each with its retries); ``{channel name: delivered}``."""
    return {channel.name: deliver(channel, notification, retry) for channel in channels}


def deliver(
    channel: Channel,
    notification: Notification,
    retry: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Send with retries and exponential backoff; a final failure is logged, never raised."""
    wait = retry.backoff_s
    for attempt in range(1, retry.attempts + 1):
        try:
            channel.send(notification, retry.timeout_s)
            return True
        except Exception as err:  # any failure of one channel (HTTP, SMTP, a bad URL) stays its own
            if attempt == retry.attempts:
                log.error("alert channel %s failed after %d attempts: %s", channel.name, attempt, err)
                return False
            log.warning(
                "alert channel %s attempt %d failed (%s); retrying in %.1f s",
                channel.name,
                attempt,
                err,
                wait,
            )
            sleep(wait)
            wait = min(wait * retry.factor, retry.max_backoff_s)
    return False


def receiver_url(spec: Mapping[str, Any], what: str) -> str | None:
    """``spec["url_env"]`` names an environment variable; a literal ``spec["url"]`` only for local hosts."""
    if spec.get("url_env"):
        return os.environ.get(spec["url_env"]) or None
    value = spec.get("url")
    if value and urlparse(str(value)).hostname not in _LOCAL_HOSTS:
        raise ValueError(
            f"{what}: a literal url is allowed for local receivers only; name an environment variable in "
            "url_env (such URLs carry tokens)"
        )
    return None if value is None else str(value)


_KEYS = {
    "webhook": {"url", "url_env", "token_env", "receiver"},
    "slack": {"url", "url_env"},
    "email": {"host", "port", "sender", "to", "starttls", "username_env", "password_env", "ca_file"},
    "log": {"path"},
}

_REQUIRED = {"email": {"host", "sender", "to"}}


def build_channels(specs: list[Mapping[str, Any]] | None, receiver: str) -> list[Channel]:
    """Channels from config; a channel whose secret is not in the environment is skipped with a warning."""
    out: list[Channel] = []
    for spec in specs or []:
        kind = spec.get("type")
        if kind not in _KEYS:
            raise ValueError(f"alert channel type must be one of {sorted(_KEYS)}, got {kind!r}")
        unknown = sorted(set(spec) - _KEYS[kind] - {"type", "name"})
        if unknown:
            raise ValueError(f"alert channel {kind}: unknown key(s) {unknown}; known: {sorted(_KEYS[kind])}")
        name = str(spec.get("name") or kind)
        missing = sorted(_REQUIRED.get(kind, set()) - set(spec))
        if missing:
            raise ValueError(f"alert channel {name}: missing key(s) {missing}")
        if kind == "log":
            out.append(LogChannel(name, spec.get("path"), receiver))
            continue
        if kind == "email":
            user, password = (spec.get(k) for k in ("username_env", "password_env"))
            creds = (os.environ.get(user, ""), os.environ.get(password, "")) if user and password else None
            if creds is not None and not all(creds):
                log.warning(
                    "alert channel %s skipped: set %s and %s in the environment", name, user, password
                )
                continue
            to = spec.get("to") or []
            out.append(
                EmailChannel(
                    name,
                    str(spec["host"]),
                    int(spec.get("port", 25)),
                    str(spec["sender"]),
                    [to] if isinstance(to, str) else list(to),
                    bool(spec.get("starttls", False)),
                    creds,
                    str(spec["ca_file"]) if spec.get("ca_file") else None,
                )
            )
            continue
        url = receiver_url(spec, f"alert channel {name}")
        if url is None:
            log.warning(
                "alert channel %s skipped: %s is not set in the environment", name, spec.get("url_env")
            )
            continue
        if kind == "slack":
            out.append(SlackChannel(name, url))
        else:
            token = os.environ.get(spec["token_env"]) if spec.get("token_env") else None
            out.append(WebhookChannel(name, url, str(spec.get("receiver") or receiver), token))
    return out
