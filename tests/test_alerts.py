"""Failure alerts through real channels on loopback (an HTTP webhook receiver, an SMTP server),
stuck uploads from a real registry — and no personal data in anything sent."""
from __future__ import annotations

import json
import logging
import threading
import warnings
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from hqms import alerts, config
from hqms.registry import Registry

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import asyncore
    import smtpd


def synthetic_id_number() -> str:
    """An ID-number-shaped string made up at test time (region 999999 does not exist)."""
    import random

    return "999999" + "".join(random.choice("0123456789") for _ in range(11)) + "X"


@pytest.fixture
def webhook() -> list[dict]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's naming
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    received_url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield received, received_url
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def smtp_server():
    received: list[bytes] = []

    class Sink(smtpd.SMTPServer):
        def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
            received.append(data)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server = Sink(("127.0.0.1", 0), None)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            asyncore.loop(timeout=0.05, count=1)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield received, server.socket.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        server.close()


def failing_context(secret_value: str) -> dict:
    """What Airflow hands an on_failure_callback: the task instance and the exception."""
    ti = SimpleNamespace(dag_id="hqms_ingest", task_id="process", map_index=3, run_id="scheduled__x",
                         try_number=2, log_url="http://airflow.local/log?x=1")
    return {"task_instance": ti, "run_id": "scheduled__x",
            "exception": ValueError(f"bad value {secret_value} in row 7")}


def test_dag_failure_reaches_webhook_and_smtp_without_personal_data(
        webhook, smtp_server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    posts, url = webhook
    mails, smtp_port = smtp_server
    monkeypatch.setenv("HQMS_ALERT_WEBHOOK_URL", url)
    monkeypatch.setenv("HQMS_ALERT_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("HQMS_ALERT_SMTP_PORT", str(smtp_port))
    monkeypatch.setenv("HQMS_ALERT_TO", "data-team@example.invalid")
    secret = synthetic_id_number()
    with caplog.at_level(logging.ERROR, logger="hqms.alerts"):
        alerts.on_failure_callback(failing_context(secret))
    assert len(posts) == 1 and len(mails) == 1
    alert = posts[0]["alert"]
    assert alert["kind"] == "dag_failure"
    assert alert["details"]["dag_id"] == "hqms_ingest" and alert["details"]["map_index"] == 3
    assert alert["details"]["exception"] == "ValueError"
    mail = mails[0].decode() if isinstance(mails[0], bytes) else mails[0]
    assert "task hqms_ingest.process failed" in mail and "ALERT" in caplog.text
    for sent in (json.dumps(posts[0], ensure_ascii=False), mail, caplog.text):
        assert secret not in sent and "row 7" not in sent


def test_a_failing_channel_does_not_stop_the_others(webhook, caplog: pytest.LogCaptureFixture) -> None:
    posts, url = webhook
    dead = alerts.WebhookChannel("http://127.0.0.1:9/unreachable")
    with caplog.at_level(logging.ERROR, logger="hqms.alerts"):
        failed = alerts.send(alerts.Alert("test", "probe"),
                             [dead, alerts.WebhookChannel(url), alerts.LogChannel()])
    assert failed == ["webhook"] and len(posts) == 1 and "probe" in caplog.text


def test_only_log_channel_without_configuration() -> None:
    assert [c.name for c in alerts.channels_from_env({})] == ["log"]
    env = {"HQMS_ALERT_SMTP_HOST": "mail.example.invalid"}  # no recipient: no SMTP channel
    assert [c.name for c in alerts.channels_from_env(env)] == ["log"]


def _upload(registry: Registry, org: str, n: int, received: datetime) -> str:
    return registry.new_upload(org_code=org, uploader=f"user{n}", channel="web",
                               file_name=f"flu_{n}.zip", sha256=f"{n:064x}", size_bytes=10,
                               status="landed", stream="flu", received_at=received,
                               object_key=f"flu/{org}/k{n}")


def test_stuck_uploads_alert_lists_ids_only(registry_url: str, webhook, org_code: str) -> None:
    posts, url = webhook
    registry = Registry.from_config(config.load())
    now = datetime.now(UTC)
    landed = _upload(registry, org_code, 1, now)
    processing = _upload(registry, org_code, 2, now)
    registry.set_status(processing, "processing")
    done = _upload(registry, org_code, 3, now)
    registry.set_status(done, "processed")
    channel = alerts.WebhookChannel(url)

    assert alerts.check_stuck(threshold=timedelta(minutes=30), channels=[channel]) is None
    later = now + timedelta(minutes=31)
    alert = alerts.check_stuck(threshold=timedelta(minutes=30), channels=[channel], now=later)
    assert alert is not None and alert.kind == "stuck_uploads"
    assert {i["upload_id"] for i in alert.items} == {landed, processing}
    assert alert.details["by_status"] == {"landed": 1, "processing": 1}
    # an upload the ingest gave up on is reported at once, whatever the threshold
    registry.set_status(done, "failed")
    alert = alerts.check_stuck(threshold=timedelta(minutes=30), channels=[channel])
    assert alert is not None and [i["upload_id"] for i in alert.items] == [done]
    assert alert.details["by_status"] == {"failed": 1}
    assert all(set(i) == set(alerts.UPLOAD_FIELDS) for i in alert.items)
    sent = json.dumps(posts, ensure_ascii=False)
    assert len(posts) == 2 and "flu_1.zip" not in sent and "user1" not in sent


def test_cli_check_exit_code(hqms_home: Path, org_code: str, capsys: pytest.CaptureFixture) -> None:
    import argparse

    from hqms.registry import uploads, utc_iso

    parser = argparse.ArgumentParser()
    alerts.register(parser.add_subparsers())
    args = parser.parse_args(["alerts", "check", "--minutes", "60"])
    registry = Registry.from_config(config.load())
    upload_id = _upload(registry, org_code, 1, datetime.now(UTC))
    assert args.func(args) == 0 and "no stuck uploads" in capsys.readouterr().out
    with registry.engine.begin() as con:  # the record last changed two hours ago
        con.execute(uploads.update().values(updated_at=utc_iso(datetime.now(UTC) - timedelta(hours=2))))
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert upload_id in out and "not finished after 60 min" in out
