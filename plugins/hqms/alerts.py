"""Failure alerts: a failed DAG task or an upload stuck before a terminal state reaches a person.

Why a module of its own: the data team must learn about a broken ingest before hospitals do, on
whatever channel the deployment has (always the log; a webhook and/or SMTP when configured), and
an alert leaves the trust boundary — chat rooms, mail servers. So an :class:`Alert` carries only
allow-listed, non-personal fields (DAG/task/run ids, upload ids, org codes, states, counts,
exception *class* names, log links). Exception messages and file names are never copied: either
may quote a value from an uploaded row.

Channels are pluggable: anything with ``send(alert)``. Configuration is by environment
(:data:`ENV_VARS`); an empty value switches a channel off. A channel that fails is logged and
skipped, so alerting can never turn one failure into two.

Airflow wiring: ``default_args={"on_failure_callback": hqms.alerts.on_failure_callback}``; the
stuck-upload check runs as ``hqms alerts check`` (cron, or a task calling :func:`check_stuck`).
"""
from __future__ import annotations

import argparse
import json
import logging
import smtplib
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Protocol

from hqms import config

log = logging.getLogger(__name__)

ENV_VARS = ("HQMS_ALERT_WEBHOOK_URL", "HQMS_ALERT_SMTP_HOST", "HQMS_ALERT_SMTP_PORT",
            "HQMS_ALERT_SMTP_USER", "HQMS_ALERT_SMTP_PASSWORD", "HQMS_ALERT_FROM", "HQMS_ALERT_TO",
            "HQMS_ALERT_STUCK_MINUTES")
DEFAULT_STUCK_MINUTES = config.AlertSettings.from_env({}).stuck_minutes
#: Registry states an upload passes through on its way to a terminal one.
NON_TERMINAL = ("landed", "processing")
#: The state of an upload the ingest gave up on: it waits for a person (``hqms reprocess``).
FAILED = "failed"
#: The only upload fields an alert may carry (no file name, uploader or message text).
UPLOAD_FIELDS = ("upload_id", "org_code", "stream", "status", "updated_at", "attempts")
WEBHOOK_TIMEOUT_S = 10


@dataclass(frozen=True)
class Alert:
    """What went wrong, in words and ids only."""

    kind: str  # dag_failure | stuck_uploads
    summary: str
    details: dict[str, object] = field(default_factory=dict)
    items: tuple[dict[str, object], ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "summary": self.summary, "details": self.details,
                "items": list(self.items)}

    def text(self) -> str:
        lines = [f"[hqms] {self.summary}"]
        lines += [f"{k}: {v}" for k, v in self.details.items()]
        lines += [" ".join(f"{k}={v}" for k, v in item.items()) for item in self.items]
        return "\n".join(lines)


class Channel(Protocol):
    name: str

    def send(self, alert: Alert) -> None: ...


class LogChannel:
    name = "log"

    def send(self, alert: Alert) -> None:
        log.error("ALERT %s", alert.text())


class WebhookChannel:
    """POSTs the alert as JSON (``{"text": …, "alert": {…}}``: chat tools show ``text``)."""

    name = "webhook"

    def __init__(self, url: str) -> None:
        self.url = url

    def send(self, alert: Alert) -> None:
        body = json.dumps({"text": alert.text(), "alert": alert.as_dict()}, ensure_ascii=False,
                          default=str).encode("utf-8")
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json; charset=utf-8"})
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
            if response.status >= 300:
                raise OSError(f"webhook answered HTTP {response.status}")


class SmtpChannel:
    """One plain-text mail per alert; STARTTLS when the server offers it."""

    name = "smtp"

    def __init__(self, host: str, port: int, sender: str, recipients: list[str],
                 user: str | None = None, password: str | None = None) -> None:
        self.host, self.port, self.sender, self.recipients = host, port, sender, recipients
        self.user, self.password = user, password

    def send(self, alert: Alert) -> None:
        message = EmailMessage()
        message["Subject"] = f"[hqms] {alert.summary}"
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message.set_content(alert.text())
        with smtplib.SMTP(self.host, self.port, timeout=30) as smtp:
            smtp.ehlo()
            if smtp.has_extn("starttls"):
                smtp.starttls()
                smtp.ehlo()
            if self.user:
                smtp.login(self.user, self.password or "")
            smtp.send_message(message)


def channels_from_env(env: Mapping[str, str] | None = None) -> list[Channel]:
    """The log channel plus every channel whose variables are set."""
    settings = config.load().alerts if env is None else config.AlertSettings.from_env(env)
    channels: list[Channel] = [LogChannel()]
    if settings.webhook_url:
        channels.append(WebhookChannel(settings.webhook_url))
    if settings.smtp_host and settings.recipients:
        channels.append(SmtpChannel(settings.smtp_host, settings.smtp_port, settings.sender,
                                    list(settings.recipients), settings.smtp_user, settings.smtp_password))
    return channels


def send(alert: Alert, channels: Iterable[Channel] | None = None) -> list[str]:
    """Deliver on every channel; returns the names of channels that failed (never raises)."""
    failed = []
    for channel in channels if channels is not None else channels_from_env():
        try:
            channel.send(alert)
        except Exception as exc:  # noqa: BLE001 - alerting must not fail the caller
            log.warning("alert channel %s failed: %s", channel.name, type(exc).__name__)
            failed.append(channel.name)
    return failed


# --------------------------------------------------------------------------- DAG failures

def failure_alert(context: Mapping[str, object]) -> Alert:
    """An :class:`Alert` from an Airflow callback context: ids and the exception's class only."""
    ti = context.get("task_instance") or context.get("ti")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    exception = context.get("exception")
    details: dict[str, object] = {
        "dag_id": dag_id,
        "task_id": task_id,
        "map_index": getattr(ti, "map_index", -1),
        "run_id": context.get("run_id") or getattr(ti, "run_id", "?"),
        "try_number": getattr(ti, "try_number", "?"),
        "exception": type(exception).__name__ if exception is not None else "unknown",
    }
    log_url = getattr(ti, "log_url", None)
    if log_url:
        details["log"] = log_url
    return Alert("dag_failure", f"task {dag_id}.{task_id} failed", details)


def on_failure_callback(context: Mapping[str, object]) -> None:
    """Airflow ``on_failure_callback``: alert on every configured channel."""
    send(failure_alert(context))


# --------------------------------------------------------------------------- stuck uploads

def stuck_minutes(env: Mapping[str, str] | None = None) -> int:
    return (config.load().alerts if env is None else config.AlertSettings.from_env(env)).stuck_minutes


def stuck_uploads(registry, threshold: timedelta, now: datetime | None = None) -> list[dict]:
    """Uploads in a non-terminal state whose last change is older than ``threshold``, and every
    ``failed`` one (until an operator reprocesses it, however old)."""
    from hqms.registry import utc_iso

    cutoff = utc_iso((now or datetime.now(UTC)) - threshold)
    stuck = [u for status in NON_TERMINAL for u in registry.list_uploads(status=status)
             if u["updated_at"] <= cutoff]
    stuck += registry.list_uploads(status=FAILED)
    return sorted(({k: u[k] for k in UPLOAD_FIELDS} for u in stuck), key=lambda u: u["updated_at"])


def check_stuck(cfg: config.Config | None = None, threshold: timedelta | None = None,
                channels: Iterable[Channel] | None = None,
                now: datetime | None = None) -> Alert | None:
    """Alert when uploads are stuck; returns the alert sent, or None when all is well."""
    from hqms.registry import Registry

    threshold = threshold or timedelta(minutes=stuck_minutes())
    stuck = stuck_uploads(Registry.from_config(cfg or config.load()), threshold, now)
    if not stuck:
        return None
    minutes = int(threshold.total_seconds() // 60)
    by_status = {s: n for s in (*NON_TERMINAL, FAILED) if (n := sum(u["status"] == s for u in stuck))}
    alert = Alert("stuck_uploads", f"{len(stuck)} upload(s) not finished after {minutes} min or failed",
                  {"threshold_minutes": minutes, "by_status": by_status},
                  tuple(stuck))
    send(alert, channels)
    return alert


# --------------------------------------------------------------------------- CLI

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("alerts", help="failure alerts: check for stuck uploads, send a test alert")
    verbs = p.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    check = verbs.add_parser("check", help="alert on uploads stuck in landed/processing or failed (exit 1 if any)")
    check.add_argument("--minutes", type=int, help=f"threshold (default $HQMS_ALERT_STUCK_MINUTES "
                                                   f"or {DEFAULT_STUCK_MINUTES})")
    check.set_defaults(func=_cli_check)
    verbs.add_parser("test", help="send a test alert on every configured channel").set_defaults(func=_cli_test)


def _cli_check(args: argparse.Namespace) -> int:
    threshold = timedelta(minutes=args.minutes) if args.minutes else None
    alert = check_stuck(threshold=threshold)
    if alert is None:
        print("no stuck uploads")
        return 0
    print(alert.text())
    return 1


def _cli_test(args: argparse.Namespace) -> int:
    channels = channels_from_env()
    failed = send(Alert("test", "test alert (hqms alerts test)"), channels)
    for channel in channels:
        print(f"{channel.name}: {'FAILED' if channel.name in failed else 'sent'}")
    return 1 if failed else 0
