"""Accounts, roles, sessions, API tokens and the audit log of the hospital service.

《发热门诊医疗服务监测系统数据对接 用户操作说明》 §3.1: the web page and the front-end machine (前置机) use **the same account and
password**; 《流感医疗服务监测 工作说明》 names three account levels (national, provincial, institution), 川卫办医政便函〔2025〕2号
has provincial and city administrators watching their hospitals. Roles here:

===================  ==========================================  ===========================
role                 scope                                        may upload
===================  ==========================================  ===========================
``hospital``         its one 医疗机构代码 (``org_code``)           yes, for that org only
``city_admin``       hospitals whose region starts with a 4-digit  no
                     GB/T 2260 city prefix
``province_admin``   … a 2-digit province prefix                  no
``national_admin``   everything                                   no
``operator``         everything (the data team)                   no
===================  ==========================================  ===========================

Accounts are provisioned by administrators (``hqms accounts add|import``); the seeds' stamped-paper
approval stays outside the system. The tables live in the upload registry's database (same
``HQMS_REGISTRY_URL``: SQLite locally, PostgreSQL in production), so intake's "is this org
allowed to send?" is one indexed look-up in the database it already writes to.

What is stored, and why that way:

* passwords as argon2id hashes (``argon2-cffi``), never the password;
* a mobile number only as HMAC-SHA256 under the web secret key (login by mobile needs an exact
  look-up; the number itself is personal data we do not need) plus its last four digits for
  administrators to recognise it. Changing ``HQMS_WEB_SECRET_KEY`` therefore requires
  re-entering mobile numbers (``hqms accounts add … --mobile`` again; docs/web.md);
* API tokens and session ids as SHA-256 of a 256-bit random secret (fast to check on every
  request, useless if the table leaks);
* an audit log of logins, uploads, downloads and account changes with the login name, action and
  object only — no passwords, mobile numbers, IP addresses or file contents.

Brute force: after :data:`BACKOFF_AFTER` consecutive failures each further attempt must wait
:data:`BACKOFF_SECONDS` × 2^(n - BACKOFF_AFTER) seconds after the previous failure (attempts in
that window are refused unchecked and not counted); after :data:`LOCK_AFTER` the account is
locked for :data:`LOCK_MINUTES` minutes (or until ``hqms accounts reset-password``).
"""
from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import hmac
import os
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from hqms import config
from hqms.registry import Registry, utc_iso
from hqms.validators import medical_org_code_valid, mobile_valid

ROLES = ("hospital", "city_admin", "province_admin", "national_admin", "operator")
ROLE_ZH = {"hospital": "医疗机构", "city_admin": "市级管理员", "province_admin": "省级管理员",
           "national_admin": "国家级管理员", "operator": "数据运维"}
#: Digits of the GB/T 2260 code an administrator's scope is a prefix of.
REGION_DIGITS = {"city_admin": 4, "province_admin": 2}
ADMIN_ROLES = ("city_admin", "province_admin", "national_admin", "operator")
BACKOFF_AFTER = 3
BACKOFF_SECONDS = 3
LOCK_AFTER = 5
LOCK_MINUTES = 15
SESSION_IDLE = timedelta(minutes=30)
SESSION_MAX = timedelta(hours=12)
TOKEN_TOUCH = timedelta(minutes=1)
MIN_PASSWORD = 10

metadata = sa.MetaData()

accounts = sa.Table(
    "accounts", metadata,
    sa.Column("account_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("login", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("org_code", sa.String(22)),  # hospital accounts
    sa.Column("region_code", sa.String(6)),  # hospital: its 6-digit region; admins: the prefix
    sa.Column("display_name", sa.String(128)),
    sa.Column("mobile_hmac", sa.String(64), unique=True),
    sa.Column("mobile_hint", sa.String(4)),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("must_change", sa.Boolean, nullable=False, default=True),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("failed_count", sa.Integer, nullable=False, default=0),
    sa.Column("last_failed_at", sa.String(32)),
    sa.Column("locked_until", sa.String(32)),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
)
sa.Index("ix_accounts_org", accounts.c.org_code, accounts.c.active)

api_tokens = sa.Table(
    "api_tokens", metadata,
    sa.Column("token_id", sa.String(16), primary_key=True),
    sa.Column("account_id", sa.Integer, nullable=False),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("label", sa.String(128)),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("last_used_at", sa.String(32)),
    sa.Column("revoked_at", sa.String(32)),
)

web_sessions = sa.Table(
    "web_sessions", metadata,
    sa.Column("session_sha256", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.Integer, nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("last_seen_at", sa.String(32), nullable=False),
)

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),  # login name, or "-" / "cli"
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("target", sa.String(128)),  # an upload id, account login, file name …
    sa.Column("outcome", sa.String(32), nullable=False),
)
sa.Index("ix_audit_at", audit_log.c.at)


class AccountError(ValueError):
    """A provisioning request that cannot be carried out (message says why)."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: what every route's scope check reads."""

    account_id: int
    login: str
    role: str
    org_code: str | None
    region_code: str | None
    must_change: bool = False

    @property
    def is_hospital(self) -> bool:
        return self.role == "hospital"

    @property
    def sees_everything(self) -> bool:
        return self.role in ("national_admin", "operator")

    def region_prefix(self) -> str | None:
        """The GB/T 2260 prefix an administrator's hospitals' region codes start with."""
        digits = REGION_DIGITS.get(self.role)
        return (self.region_code or "")[:digits] if digits else None


@dataclass(frozen=True)
class LoginResult:
    principal: Principal | None
    reason: str  # ok | bad_credentials | locked | backoff
    wait_seconds: int = 0


@functools.cache
def _ensure_schema(url: str) -> None:
    engine = Registry(url).engine
    with engine.connect() as con:
        con.execution_options(write=True)
        with con.begin():
            metadata.create_all(con)


_hasher = PasswordHasher()  # argon2id, the library's RFC 9106 low-memory profile


class Accounts:
    """Account store on the registry database. Cheap to construct."""

    def __init__(self, cfg: config.Config | None = None, registry: Registry | None = None) -> None:
        self.cfg = cfg or config.load()
        self.registry = registry or Registry.from_config(self.cfg)
        self.engine = self.registry.engine
        _ensure_schema(self.registry.url)

    def _write(self):
        return self.registry._write()

    # --- provisioning -------------------------------------------------------------------------

    def add(self, login: str, role: str, *, org_code: str | None = None,
            region_code: str | None = None, mobile: str | None = None,
            display_name: str | None = None, password: str | None = None,
            actor: str = "cli") -> str:
        """Create an account; returns its initial password (generated unless given). The
        account must change it at first login."""
        login = login.strip()
        if not login or len(login) > 64 or any(c.isspace() for c in login):
            raise AccountError(f"login name {login!r}: 1–64 characters without blanks / 登录名无效")
        if role not in ROLES:
            raise AccountError(f"role {role!r} not one of {', '.join(ROLES)}")
        if role == "hospital":
            if not org_code or not medical_org_code_valid(org_code):
                raise AccountError(f"a hospital account needs a valid 医疗机构代码 (--org), got {org_code!r}")
            region_code = region_code or org_code[9:15]
        else:
            org_code = None
        if role in REGION_DIGITS:
            digits = REGION_DIGITS[role]
            if not region_code or not region_code.isdigit() or len(region_code) < digits:
                raise AccountError(f"a {role} account needs a GB/T 2260 region code of at least "
                                   f"{digits} digits (--region)")
            region_code = region_code[:digits]
        elif role != "hospital":
            region_code = None
        password = password or generate_password()
        now = utc_iso()
        row = dict(login=login, role=role, org_code=org_code, region_code=region_code,
                   display_name=display_name, password_hash=_hasher.hash(password),
                   must_change=True, active=True, failed_count=0, created_at=now, updated_at=now,
                   **self._mobile_fields(mobile))
        try:
            with self._write() as con:
                con.execute(accounts.insert().values(**row))
        except sa.exc.IntegrityError:
            raise AccountError(f"login name or mobile number already in use: {login} / 登录名或手机号已存在") from None
        self.audit(actor, "account_add", login, role)
        return password

    def _mobile_fields(self, mobile: str | None) -> dict:
        if not mobile:
            return {"mobile_hmac": None, "mobile_hint": None}
        mobile = _normal_mobile(mobile)
        if not mobile_valid(mobile):
            raise AccountError("mobile number is not a mainland mobile number / 手机号无效")
        return {"mobile_hmac": self.mobile_hmac(mobile), "mobile_hint": mobile[-4:]}

    def mobile_hmac(self, mobile: str) -> str:
        return hmac.new(web_secret_key(self.cfg), _normal_mobile(mobile).encode(), "sha256").hexdigest()

    def import_csv(self, path: Path, actor: str = "cli") -> list[tuple[str, str]]:
        """Accounts from a CSV (login, role, org_code, region_code, mobile, display_name; UTF-8):
        all or none. Returns (login, initial password) pairs."""
        with path.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.DictReader(fh))
        missing = {"login", "role"} - set(rows[0] if rows else {})
        if missing:
            raise AccountError(f"{path}: missing columns {', '.join(sorted(missing))}")
        existing = {a["login"] for a in self.list()}
        for n, rec in enumerate(rows, start=2):
            if rec["login"].strip() in existing:
                raise AccountError(f"{path}: line {n}: login {rec['login']!r} already exists; nothing imported")
        created = []
        for n, rec in enumerate(rows, start=2):
            try:
                created.append((rec["login"].strip(), self.add(
                    rec["login"], rec["role"].strip(), org_code=(rec.get("org_code") or "").strip() or None,
                    region_code=(rec.get("region_code") or "").strip() or None,
                    mobile=(rec.get("mobile") or "").strip() or None,
                    display_name=(rec.get("display_name") or "").strip() or None, actor=actor)))
            except AccountError as exc:
                for login, _ in created:  # all or none
                    self._delete(login)
                raise AccountError(f"{path}: line {n}: {exc}; nothing imported") from None
        return created

    def _delete(self, login: str) -> None:
        with self._write() as con:
            con.execute(accounts.delete().where(accounts.c.login == login))

    def list(self, role: str | None = None) -> list[dict]:
        query = sa.select(accounts).order_by(accounts.c.login)
        if role:
            query = query.where(accounts.c.role == role)
        with self.engine.connect() as con:
            return [dict(r._mapping) for r in con.execute(query)]

    def get(self, login: str) -> dict | None:
        with self.engine.connect() as con:
            row = con.execute(sa.select(accounts).where(accounts.c.login == login)).first()
        return dict(row._mapping) if row else None

    def _require(self, login: str) -> dict:
        account = self.get(login)
        if account is None:
            raise AccountError(f"no account {login!r} / 无此账号")
        return account

    def set_active(self, login: str, active: bool, actor: str = "cli") -> None:
        """Disable (or re-enable) an account; disabling ends its sessions at once (its tokens
        stop working with it)."""
        account = self._require(login)
        with self._write() as con:
            con.execute(accounts.update().where(accounts.c.login == login)
                        .values(active=active, updated_at=utc_iso()))
            if not active:
                con.execute(web_sessions.delete().where(web_sessions.c.account_id == account["account_id"]))
        self.audit(actor, "account_enable" if active else "account_disable", login)

    def reset_password(self, login: str, actor: str = "cli") -> str:
        """New initial password (to be changed at next login); unlocks; ends sessions."""
        account = self._require(login)
        password = generate_password()
        with self._write() as con:
            con.execute(accounts.update().where(accounts.c.login == login).values(
                password_hash=_hasher.hash(password), must_change=True, failed_count=0,
                locked_until=None, last_failed_at=None, updated_at=utc_iso()))
            con.execute(web_sessions.delete().where(web_sessions.c.account_id == account["account_id"]))
        self.audit(actor, "password_reset", login)
        return password

    def change_password(self, principal: Principal, old: str, new: str) -> None:
        """The account's own change (the forced one after an initial password, too)."""
        account = self._require(principal.login)
        if not _verify(account["password_hash"], old):
            raise AccountError("原密码不正确 / the current password is wrong")
        problem = password_problem(new, principal.login, old)
        if problem:
            raise AccountError(problem)
        with self._write() as con:
            con.execute(accounts.update().where(accounts.c.login == principal.login).values(
                password_hash=_hasher.hash(new), must_change=False, updated_at=utc_iso()))
        self.audit(principal.login, "password_change", principal.login)

    # --- who may upload -----------------------------------------------------------------------

    def org_accepts_uploads(self, org_code: str) -> bool:
        """An active hospital account exists for ``org_code`` (intake's ``unknown_org`` rule)."""
        query = sa.select(accounts.c.account_id).where(
            accounts.c.org_code == org_code, accounts.c.role == "hospital",
            accounts.c.active.is_(True)).limit(1)
        with self.engine.connect() as con:
            return con.execute(query).first() is not None

    def orgs_in_scope(self, principal: Principal) -> set[str] | None:
        """Org codes ``principal`` may see; None means all."""
        if principal.sees_everything:
            return None
        if principal.is_hospital:
            return {principal.org_code} if principal.org_code else set()
        prefix = principal.region_prefix() or "\x00"  # no region: nothing
        query = sa.select(accounts.c.org_code, accounts.c.region_code).where(
            accounts.c.role == "hospital").distinct()
        with self.engine.connect() as con:
            return {org for org, region in con.execute(query) if (region or "").startswith(prefix)}

    def hospital_accounts(self, orgs: set[str] | None) -> list[dict]:
        query = sa.select(accounts).where(accounts.c.role == "hospital").order_by(accounts.c.org_code)
        with self.engine.connect() as con:
            rows = [dict(r._mapping) for r in con.execute(query)]
        return [r for r in rows if orgs is None or r["org_code"] in orgs]

    # --- login --------------------------------------------------------------------------------

    def authenticate(self, name: str, password: str) -> LoginResult:
        """Login by login name or mobile number, with back-off and lock-out (module docstring)."""
        name = name.strip()
        query = sa.select(accounts).where(accounts.c.login == name)
        if mobile_valid(_normal_mobile(name)):
            query = sa.select(accounts).where(sa.or_(accounts.c.login == name,
                                                     accounts.c.mobile_hmac == self.mobile_hmac(name)))
        with self.engine.connect() as con:
            row = con.execute(query.limit(1)).first()
        account = dict(row._mapping) if row else None
        now = datetime.now(UTC)
        if account is None or not account["active"]:
            _verify(_dummy_hash(), password)  # same cost as a real check: no timing oracle
            # the login name, never what was typed (it may be a mobile number)
            self.audit(account["login"] if account else "-", "login", None, "bad_credentials")
            return LoginResult(None, "bad_credentials")
        if account["locked_until"] and datetime.fromisoformat(account["locked_until"]) > now:
            self.audit(account["login"], "login", None, "locked")
            return LoginResult(None, "locked", _seconds(datetime.fromisoformat(account["locked_until"]) - now))
        wait = _backoff_wait(account, now)
        if wait:
            self.audit(account["login"], "login", None, "backoff")
            return LoginResult(None, "backoff", wait)
        if not _verify(account["password_hash"], password):
            failed = (account["failed_count"] or 0) + 1
            locked = utc_iso(now + timedelta(minutes=LOCK_MINUTES)) if failed >= LOCK_AFTER else None
            with self._write() as con:
                con.execute(accounts.update().where(accounts.c.account_id == account["account_id"])
                            .values(failed_count=0 if locked else failed, last_failed_at=utc_iso(now),
                                    locked_until=locked))
            self.audit(account["login"], "login", None, "locked" if locked else "bad_credentials")
            return LoginResult(None, "locked", LOCK_MINUTES * 60) if locked else \
                LoginResult(None, "bad_credentials")
        with self._write() as con:
            con.execute(accounts.update().where(accounts.c.account_id == account["account_id"])
                        .values(failed_count=0, last_failed_at=None, locked_until=None))
        self.audit(account["login"], "login", None, "ok")
        return LoginResult(_principal(account), "ok")

    # --- sessions -----------------------------------------------------------------------------

    def new_session(self, principal: Principal) -> tuple[str, str]:
        """(cookie value, CSRF token) of a fresh session."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = utc_iso()
        with self._write() as con:
            con.execute(web_sessions.insert().values(
                session_sha256=_sha256(token), account_id=principal.account_id, csrf=csrf,
                created_at=now, last_seen_at=now))
        return token, csrf

    def session(self, token: str) -> tuple[Principal, str] | None:
        """The session's principal and CSRF token, or None (unknown, idle or too old, account
        disabled). Touches last-seen."""
        now = datetime.now(UTC)
        query = (sa.select(web_sessions, accounts).join(
            accounts, accounts.c.account_id == web_sessions.c.account_id)
            .where(web_sessions.c.session_sha256 == _sha256(token)))
        with self.engine.connect() as con:
            row = con.execute(query).first()
        if row is None:
            return None
        data = dict(row._mapping)
        if (not data["active"] or now - datetime.fromisoformat(data["last_seen_at"]) > SESSION_IDLE
                or now - datetime.fromisoformat(data["created_at"]) > SESSION_MAX):
            self.end_session(token)
            return None
        with self._write() as con:
            con.execute(web_sessions.update().where(web_sessions.c.session_sha256 == _sha256(token))
                        .values(last_seen_at=utc_iso(now)))
        return _principal(data), data["csrf"]

    def end_session(self, token: str) -> None:
        with self._write() as con:
            con.execute(web_sessions.delete().where(web_sessions.c.session_sha256 == _sha256(token)))

    # --- API tokens ---------------------------------------------------------------------------

    def create_token(self, login: str, label: str | None = None, actor: str = "cli") -> str:
        """A new token ``hqms_<id>_<secret>``; shown once, stored as SHA-256 of the secret."""
        account = self._require(login)
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        with self._write() as con:
            con.execute(api_tokens.insert().values(
                token_id=token_id, account_id=account["account_id"], secret_sha256=_sha256(secret),
                label=label, created_at=utc_iso()))
        self.audit(actor, "token_create", f"{login}/{token_id}")
        return f"hqms_{token_id}_{secret}"

    def revoke_token(self, token_id: str, actor: str = "cli") -> None:
        token_id = token_id.removeprefix("hqms_").split("_", 1)[0]
        with self._write() as con:
            done = con.execute(api_tokens.update().where(api_tokens.c.token_id == token_id,
                                                         api_tokens.c.revoked_at.is_(None))
                               .values(revoked_at=utc_iso())).rowcount
        if not done:
            raise AccountError(f"no active token {token_id} / 无此令牌")
        self.audit(actor, "token_revoke", token_id)

    def tokens(self, login: str | None = None) -> list[dict]:
        query = (sa.select(api_tokens.c.token_id, api_tokens.c.label, api_tokens.c.created_at,
                           api_tokens.c.last_used_at, api_tokens.c.revoked_at, accounts.c.login)
                 .join(accounts, accounts.c.account_id == api_tokens.c.account_id)
                 .order_by(api_tokens.c.created_at))
        if login:
            query = query.where(accounts.c.login == login)
        with self.engine.connect() as con:
            return [dict(r._mapping) for r in con.execute(query)]

    def token_principal(self, token: str) -> Principal | None:
        """The account a Bearer token belongs to, if the token is live and the account active."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "hqms":
            return None
        query = (sa.select(api_tokens.c.secret_sha256, api_tokens.c.revoked_at, api_tokens.c.last_used_at,
                           accounts)
                 .join(accounts, accounts.c.account_id == api_tokens.c.account_id)
                 .where(api_tokens.c.token_id == parts[1]))
        with self.engine.connect() as con:
            row = con.execute(query).first()
        if row is None:
            return None
        data = dict(row._mapping)
        if (data["revoked_at"] or not data["active"]
                or not hmac.compare_digest(data["secret_sha256"], _sha256(parts[2]))):
            return None
        now = datetime.now(UTC)
        if not data["last_used_at"] or now - datetime.fromisoformat(data["last_used_at"]) > TOKEN_TOUCH:
            with self._write() as con:  # at most once a minute: not a write per request
                con.execute(api_tokens.update().where(api_tokens.c.token_id == parts[1])
                            .values(last_used_at=utc_iso(now)))
        return _principal({**data, "must_change": False})  # machines never get the password form

    # --- audit --------------------------------------------------------------------------------

    def audit(self, actor: str, action: str, target: str | None = None, outcome: str = "ok") -> None:
        """One audit line: who (login name), what, on which object, how it went."""
        with self._write() as con:
            con.execute(audit_log.insert().values(at=utc_iso(), actor=actor[:64], action=action[:32],
                                                  target=(target or None) and target[:128],
                                                  outcome=outcome[:32]))

    def audit_entries(self, limit: int = 100) -> list[dict]:
        query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        with self.engine.connect() as con:
            return [dict(r._mapping) for r in con.execute(query)]


def _principal(row: dict) -> Principal:
    return Principal(account_id=row["account_id"], login=row["login"], role=row["role"],
                     org_code=row["org_code"], region_code=row["region_code"],
                     must_change=bool(row["must_change"]))


def _backoff_wait(account: dict, now: datetime) -> int:
    failed = account["failed_count"] or 0
    if failed < BACKOFF_AFTER or not account["last_failed_at"]:
        return 0
    until = datetime.fromisoformat(account["last_failed_at"]) + timedelta(seconds=BACKOFF_SECONDS * 2 ** (failed - BACKOFF_AFTER))
    return _seconds(until - now) if until > now else 0


def _seconds(delta: timedelta) -> int:
    return max(1, int(delta.total_seconds() + 0.999))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    """Hashed on first use, not at import: intake imports this module, and an argon2id hash
    costs 64 MiB of memory and tens of milliseconds."""
    return _hasher.hash(secrets.token_hex(8))


def _normal_mobile(text: str) -> str:
    text = text.strip().replace(" ", "").replace("-", "")
    for prefix in ("+86", "0086"):
        text = text.removeprefix(prefix)
    return text


#: Generated initial passwords: no look-alike characters (clerks type them from a letter).
_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI")


def generate_password(length: int = 14) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def password_problem(new: str, login: str, old: str | None = None) -> str | None:
    """Why ``new`` is not acceptable as a password (None when it is)."""
    if len(new) < MIN_PASSWORD:
        return f"新密码至少 {MIN_PASSWORD} 位 / at least {MIN_PASSWORD} characters"
    if new == old:
        return "新密码不能与原密码相同 / the new password must differ from the current one"
    if login.lower() in new.lower():
        return "密码不能包含登录名 / the password must not contain the login name"
    if sum(any(c in group for c in new) for group in
           (string.ascii_lowercase, string.ascii_uppercase, string.digits)) < 2 and \
            not any(not c.isalnum() for c in new):
        return "密码须包含字母和数字 / use letters and digits (or symbols)"
    return None


# --- the web secret key ----------------------------------------------------------------------------

def web_secret_key(cfg: config.Config) -> bytes:
    """``HQMS_WEB_SECRET_KEY``, or on the embedded default a key generated once into
    ``$HQMS_HOME/state/web_secret.key`` (mode 0600). Signs CSRF tokens and keys mobile hashes."""
    if cfg.web_secret_key:
        return cfg.web_secret_key.encode()
    path = cfg.web_secret_key_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process generated it meanwhile
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


# --- hospital registry look-up ---------------------------------------------------------------------

def registry_region(cfg: config.Config, org_code: str) -> str | None:
    """The hospital's region from ``ref.hospitals`` (its city code), None when the warehouse or
    the hospital is not there. Opened read-only: provisioning never waits for an ingest's lock
    longer than DuckDB's open."""
    import duckdb

    if not cfg.warehouse_path.exists():
        return None
    try:
        con = duckdb.connect(str(cfg.warehouse_path), read_only=True)
    except duckdb.Error:
        return None
    try:
        row = con.execute("SELECT city_code FROM ref.hospitals WHERE org_code = ?", [org_code]).fetchone()
    except duckdb.Error:
        row = None
    finally:
        con.close()
    return row[0] if row and row[0] else None


# --- CLI -------------------------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("accounts", help="accounts of the hospital service (web page, API, 前置机)")
    verbs = p.add_subparsers(dest="verb", required=True)
    a = verbs.add_parser("add", help="create an account; prints its initial password once")
    a.add_argument("login")
    a.add_argument("--role", choices=ROLES, required=True)
    a.add_argument("--org", help="医疗机构代码 (hospital accounts; must be in ref.hospitals when loaded)")
    a.add_argument("--region", help="GB/T 2260 code: a city (4+ digits) or province (2+ digits) admin's scope")
    a.add_argument("--mobile", help="mobile number the account may log in with (stored only as a keyed hash)")
    a.add_argument("--name", help="display name (e.g. the hospital's name)")
    a.set_defaults(func=_run_add)
    i = verbs.add_parser("import", help="create accounts from a CSV (login,role,org_code,region_code,mobile,display_name)")
    i.add_argument("file", type=Path)
    i.add_argument("--passwords", type=Path, required=True,
                   help="write the initial passwords here (created with mode 0600)")
    i.set_defaults(func=_run_import)
    ls = verbs.add_parser("list", help="accounts (no passwords, no mobile numbers)")
    ls.add_argument("--role", choices=ROLES)
    ls.set_defaults(func=_run_list)
    d = verbs.add_parser("disable", help="disable an account (sessions end, tokens stop working)")
    d.add_argument("login")
    d.add_argument("--enable", action="store_true", help="re-enable instead")
    d.set_defaults(func=_user_errors(lambda a: Accounts().set_active(a.login, a.enable) or 0))
    r = verbs.add_parser("reset-password", help="new initial password (changed at next login); unlocks")
    r.add_argument("login")
    r.set_defaults(func=_user_errors(lambda a: print(Accounts().reset_password(a.login)) or 0))
    t = verbs.add_parser("token", help="API tokens for machines (前置机)")
    tverbs = t.add_subparsers(dest="token_verb", required=True)
    tc = tverbs.add_parser("create", help="a new token for LOGIN; printed once")
    tc.add_argument("login")
    tc.add_argument("--label", help="what it is for (e.g. 前置机 host name)")
    tc.set_defaults(func=_user_errors(lambda a: print(Accounts().create_token(a.login, a.label)) or 0))
    tr = tverbs.add_parser("revoke", help="revoke a token (its id, or the whole token)")
    tr.add_argument("token_id")
    tr.set_defaults(func=_user_errors(lambda a: Accounts().revoke_token(a.token_id) or 0))
    tl = tverbs.add_parser("list", help="tokens (ids and labels; never the secrets)")
    tl.add_argument("--login")
    tl.set_defaults(func=_run_token_list)


def _user_errors(func):
    """AccountError → the CLI's UserError (exit 2, no traceback)."""
    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        from hqms.errors import UserError

        try:
            return func(args)
        except AccountError as exc:
            raise UserError(str(exc)) from None
    return run


@_user_errors
def _run_add(args: argparse.Namespace) -> int:
    cfg = config.load()
    region = args.region
    if args.role == "hospital" and args.org and not region:
        region = registry_region(cfg, args.org)
        if region is None and _registry_loaded(cfg):
            raise AccountError(f"{args.org} is not in the hospital registry (ref.hospitals); "
                               "load it with `hqms hospitals load FILE` first / 医院信息汇总表中无此机构")
    password = Accounts(cfg).add(args.login, args.role, org_code=args.org, region_code=region,
                                 mobile=args.mobile, display_name=args.name)
    print(password)
    return 0


def _registry_loaded(cfg: config.Config) -> bool:
    import duckdb

    if not cfg.warehouse_path.exists():
        return False
    try:
        con = duckdb.connect(str(cfg.warehouse_path), read_only=True)
        try:
            return bool(con.execute("SELECT count(*) FROM ref.hospitals").fetchone()[0])
        finally:
            con.close()
    except duckdb.Error:
        return False


@_user_errors
def _run_import(args: argparse.Namespace) -> int:
    created = Accounts().import_csv(args.file)
    write_private_csv(args.passwords, ("login", "initial_password"), created)
    print(f"{len(created)} accounts created; initial passwords in {args.passwords} (0600)")
    return 0


def write_private_csv(path: Path, header: tuple[str, ...], rows: Iterable[tuple]) -> None:
    """A CSV only the owner can read (initial passwords)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def _run_list(args: argparse.Namespace) -> int:
    for a in Accounts().list(args.role):
        state = "active" if a["active"] else "disabled"
        if a["locked_until"] and datetime.fromisoformat(a["locked_until"]) > datetime.now(UTC):
            state = "locked"
        print("\t".join([a["login"], a["role"], a["org_code"] or a["region_code"] or "-", state,
                         "must-change" if a["must_change"] else "",
                         f"mobile …{a['mobile_hint']}" if a["mobile_hint"] else ""]).rstrip())
    return 0


def _run_token_list(args: argparse.Namespace) -> int:
    for t in Accounts().tokens(args.login):
        print("\t".join([t["token_id"], t["login"], t["label"] or "", t["created_at"],
                         f"revoked {t['revoked_at']}" if t["revoked_at"] else "active"]))
    return 0
