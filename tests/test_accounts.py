"""Accounts on the registry database: provisioning (``hqms accounts …``), argon2id hashes, login by
name or mobile, tokens stored hashed, an audit log without personal data, and intake's
``unknown_org`` rule for every org without an active hospital account."""
from __future__ import annotations

import csv
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import csv_bytes, make_zip, synthetic_org_code

from hqms import cli, config
from hqms.accounts import Accounts, AccountError
from hqms.registry import Registry

MOBILE = "139" + "0" * 7 + "1"


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_list_and_nothing_secret_is_stored(hqms_home: Path, capsys: pytest.CaptureFixture) -> None:
    org = synthetic_org_code(1)
    code, out, _ = _run(capsys, "accounts", "add", "dm1", "--role", "hospital", "--org", org, "--mobile", MOBILE)
    password = out.strip()
    assert code == 0 and len(password) >= 12
    code, out, _ = _run(capsys, "accounts", "add", "bj", "--role", "city_admin", "--region", "110100")
    assert code == 0
    _, listing, _ = _run(capsys, "accounts", "list")
    assert "dm1\thospital\t" + org in listing and "bj\tcity_admin\t1101" in listing
    assert MOBILE not in listing and "…0001" in listing and password not in listing
    # the database holds an argon2id hash, a keyed hash of the mobile: never the values
    engine = Registry.from_config().engine
    with engine.connect() as con:
        dumped = repr([tuple(r) for t in ("accounts", "audit_log") for r in con.execute(sa.text(f"SELECT * FROM {t}"))])
    assert password not in dumped and MOBILE not in dumped and "$argon2id$" in dumped
    # login by mobile number (also written with +86 and blanks), initial password must change
    accounts = Accounts()
    for name in (MOBILE, f"+86 {MOBILE[:3]} {MOBILE[3:7]} {MOBILE[7:]}", "dm1"):
        result = accounts.authenticate(name, password)
        assert result.reason == "ok" and result.principal.must_change and result.principal.org_code == org


def test_bad_requests_are_refused_with_a_reason(hqms_home: Path, capsys: pytest.CaptureFixture) -> None:
    for argv, reason in (
            (("x", "--role", "hospital", "--org", "123"), "医疗机构代码"),
            (("x", "--role", "city_admin"), "region code"),
            (("x y", "--role", "operator"), "登录名无效"),
            (("x", "--role", "operator", "--mobile", "12345"), "手机号无效")):
        code, _, err = _run(capsys, "accounts", "add", *argv)
        assert code == 2 and reason in err and "Traceback" not in err
    _run(capsys, "accounts", "add", "dup", "--role", "operator")
    code, _, err = _run(capsys, "accounts", "add", "dup", "--role", "operator")
    assert code == 2 and "already in use" in err
    code, _, err = _run(capsys, "accounts", "disable", "nobody")
    assert code == 2 and "无此账号" in err


def test_import_is_all_or_nothing_and_passwords_file_is_private(hqms_home: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    rows = [("login", "role", "org_code", "region_code", "mobile", "display_name"),
            ("h1", "hospital", synthetic_org_code(1), "", "", "一院"),
            ("h2", "hospital", synthetic_org_code(2), "", "", "二院"),
            ("p1", "province_admin", "", "51", "", "")]
    source = tmp_path / "accounts.csv"
    with source.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows + [("bad", "hospital", "not-a-code", "", "", "")])
    out = tmp_path / "pw.csv"
    code, _, err = _run(capsys, "accounts", "import", str(source), "--passwords", str(out))
    assert code == 2 and "line 5" in err and "nothing imported" in err
    assert Accounts().list() == [] and not out.exists()
    with source.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    assert _run(capsys, "accounts", "import", str(source), "--passwords", str(out))[0] == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    created = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["login"] for r in created] == ["h1", "h2", "p1"]
    assert Accounts().authenticate("p1", created[2]["initial_password"]).reason == "ok"


def test_tokens_reset_and_disable(hqms_home: Path, capsys: pytest.CaptureFixture) -> None:
    accounts = Accounts()
    accounts.add("h1", "hospital", org_code=synthetic_org_code(1), password="Initial-pass-1")
    _, token, _ = _run(capsys, "accounts", "token", "create", "h1", "--label", "前置机")
    token = token.strip()
    assert accounts.token_principal(token).login == "h1"
    assert accounts.token_principal(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    _, listing, _ = _run(capsys, "accounts", "token", "list")
    assert token.split("_")[1] in listing and token.split("_")[2] not in listing
    assert _run(capsys, "accounts", "disable", "h1")[0] == 0
    assert accounts.token_principal(token) is None  # a disabled account's token stops working
    assert accounts.authenticate("h1", "Initial-pass-1").reason == "bad_credentials"
    assert _run(capsys, "accounts", "disable", "h1", "--enable")[0] == 0
    _, new, _ = _run(capsys, "accounts", "reset-password", "h1")
    assert accounts.authenticate("h1", "Initial-pass-1").reason == "bad_credentials"
    assert accounts.authenticate("h1", new.strip()).principal.must_change
    actions = [(e["action"], e["target"]) for e in accounts.audit_entries()]
    assert ("account_disable", "h1") in actions and ("password_reset", "h1") in actions


def test_password_rules(hqms_home: Path) -> None:
    accounts = Accounts()
    accounts.add("h1", "hospital", org_code=synthetic_org_code(1), password="Initial-pass-1")
    who = accounts.authenticate("h1", "Initial-pass-1").principal
    for new in ("short1", "Initial-pass-1", "abcdefghijk", "h1-and-more-123"):
        with pytest.raises(AccountError):
            accounts.change_password(who, "Initial-pass-1", new)
    with pytest.raises(AccountError):
        accounts.change_password(who, "wrong", "Another-pass-9")
    accounts.change_password(who, "Initial-pass-1", "Another-pass-9")
    assert not accounts.authenticate("h1", "Another-pass-9").principal.must_change


def test_unknown_org_refused_at_the_door(s3_store, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """No account (or only a disabled one, or only an administrator's): refused with a reason a
    clerk understands, recorded like every refusal, nothing lands."""
    org = synthetic_org_code(5)
    zipped = make_zip(tmp_path / "flu.zip", {"flu_20260101.csv": csv_bytes("flu_", org)})
    code, _, err = _run(capsys, "submit", str(zipped), "--org", org, "--user", "clerk")
    assert code == 1 and "[unknown_org]" in err and "开通账号" in err
    [record] = Registry.from_config().list_uploads()
    assert (record["status"], record["object_key"]) == ("rejected", None)
    assert Registry.from_config().errors(record["upload_id"])[0]["rule"] == "unknown_org"
    assert list(s3_store.list(s3_store.buckets["landing"])) == []
    accounts = Accounts()
    accounts.add("admin", "national_admin")
    accounts.add("h5", "hospital", org_code=org)
    accounts.set_active("h5", False)
    assert _run(capsys, "submit", str(zipped), "--org", org, "--user", "clerk")[0] == 1
    accounts.set_active("h5", True)
    code, out, _ = _run(capsys, "submit", str(zipped), "--org", org, "--user", "clerk")
    assert code == 0 and Registry.from_config().get(out.strip())["status"] == "landed"


def test_config_shows_web_settings_masked(hqms_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HQMS_WEB_SECRET_KEY", "s3cr3t-value-xyz")
    monkeypatch.setenv("HQMS_SERVER_TOKEN", "hqms_abc_secretsecret")
    shown = config.load().as_dict()
    assert shown["web"]["secret_key"] == "s3***" and shown["tran"]["server_token"] == "hq***"
    assert shown["web"]["host"] == "127.0.0.1" and shown["web"]["cookie_secure"] == "auto"


def test_audit_never_holds_what_was_typed_at_login(hqms_home: Path) -> None:
    """A login by mobile number is audited under the login name, also when it fails."""
    accounts = Accounts()
    accounts.add("dm1", "hospital", org_code=synthetic_org_code(1), mobile=MOBILE, password="Initial-pass-1")
    accounts.authenticate(MOBILE, "wrong-password")
    accounts.set_active("dm1", False)
    accounts.authenticate(MOBILE, "Initial-pass-1")
    accounts.authenticate("13700000000", "whatever")  # nobody's number
    entries = accounts.audit_entries()
    assert [e["actor"] for e in entries if e["action"] == "login"] == ["-", "dm1", "dm1"]
    assert MOBILE not in repr(entries) and "13700000000" not in repr(entries)


def test_hospital_accounts_come_from_the_hospital_registry(hqms_home: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    """Once ref.hospitals is loaded, a hospital account needs a registered org, and takes its
    region (city code) from there."""
    gen = tmp_path / "gen"
    assert cli.main(["generate", "--hospitals", "1", "--start", "2025-01-06", "--days", "1", "--seed", "4",
                     "--streams", "flu", "--out", str(gen), "--quiet"]) == 0
    assert cli.main(["hospitals", "load", str(gen / "registry" / "hospitals.csv")]) == 0
    [hospital] = list(csv.DictReader((gen / "registry" / "hospitals.csv").open(encoding="utf-8")))
    capsys.readouterr()
    assert _run(capsys, "accounts", "add", "dm", "--role", "hospital", "--org", hospital["org_code"])[0] == 0
    assert Accounts().get("dm")["region_code"] == hospital["city_code"]
    code, _, err = _run(capsys, "accounts", "add", "dm2", "--role", "hospital", "--org", synthetic_org_code(7))
    assert code == 2 and "hqms hospitals load" in err and Accounts().get("dm2") is None
