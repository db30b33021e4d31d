"""``hqms config --json`` shows every setting the code reads, with secrets masked."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hqms import alerts, cli, config

ROOT = Path(__file__).resolve().parents[1]
#: Values that must never be printed in full.
SECRETS = {
    "HQMS_S3_SECRET_KEY": "s3-secret-value-0123456789",
    "HQMS_S3_ACCESS_KEY": "s3-access-value-0123456789",
    "HQMS_ALERT_SMTP_PASSWORD": "smtp-password-value-0123",
    "HQMS_ALERT_WEBHOOK_URL": "https://chat.example.invalid/hook/token-0123456789",
    "HQMS_KEY_PATIENT": "patient-01:" + "ab" * 32,
    "HQMS_KEY_RECORD": "record-01:" + "cd" * 32,
    "HQMS_KEY_FIELD": "field-01:" + "ef" * 16,
    "HQMS_WEB_SECRET_KEY": "web-secret-value-0123456789",
    "HQMS_SERVER_TOKEN": "server-token-value-0123456789",
}


def read_variables() -> set[str]:
    """Every HQMS_* variable the package reads: config.py's ``_env("…")`` calls plus the names
    it builds (buckets, key overrides, alert settings)."""
    source = (ROOT / "plugins" / "hqms" / "config.py").read_text(encoding="utf-8")
    names = set(re.findall(r'_env\("(HQMS_[A-Z0-9_]+)"', source))
    names |= {f"HQMS_BUCKET_{role.upper()}" for role in config.DEFAULT_BUCKETS}
    names |= set(config.KEY_OVERRIDE_VARS.values()) | set(alerts.ENV_VARS)
    return names - {"HQMS_HOME"}


def test_no_module_reads_the_environment_behind_configs_back() -> None:
    offenders = []
    for path in (ROOT / "plugins" / "hqms").rglob("*.py"):
        if path.name == "config.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"os\.environ(\.get)?\(|os\.getenv\(|os\.environ\[", line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert offenders == []


def test_every_setting_is_printed_and_secrets_are_masked(hqms_home: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    values: dict[str, str] = {}
    for n, name in enumerate(sorted(read_variables())):
        if name in SECRETS:
            values[name] = SECRETS[name]
        elif name.endswith(("_BYTES", "_SECONDS", "_ATTEMPTS", "_UPLOADS", "_MINUTES", "_PORT", "_RATIO", "_KEEP",
                            "_THREADS", "_WORKERS")):
            values[name] = str(40000 + n)
        elif name in ("HQMS_S3_SECURE",):
            values[name] = "true"
        elif name == "HQMS_VAULT_PUBLIC_KEY":
            values[name] = "vault-01:04" + "12" * 64
        else:
            values[name] = f"v{n}-{name.lower()}"
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    values["HQMS_REGISTRY_URL"] = "postgresql+psycopg2://hqms:pw-in-url-0123@db:5432/reg"
    monkeypatch.setenv("HQMS_REGISTRY_URL", values["HQMS_REGISTRY_URL"])

    assert cli.main(["config", "--json"]) == 0
    text = capsys.readouterr().out
    shown = json.dumps(json.loads(text), ensure_ascii=False)
    missing = [name for name, value in values.items()
               if name not in (*SECRETS, "HQMS_VAULT_PUBLIC_KEY", "HQMS_REGISTRY_URL") and value not in shown]
    assert missing == []
    leaked = [name for name, value in SECRETS.items() if value in shown or value.split(":")[-1] in shown]
    assert leaked == [] and "pw-in-url-0123" not in shown
    data = json.loads(text)
    assert data["alerts"]["smtp_password"].endswith("***") and data["key_overrides"]["HQMS_KEY_FIELD"] == "fi***"
    assert data["batch"] == {"max_uploads": int(values["HQMS_BATCH_MAX_UPLOADS"]),
                             "max_bytes": int(values["HQMS_BATCH_MAX_BYTES"])}
