"""Effective configuration, read from environment variables.

Everything the pipeline keeps on local disk lives under ``HQMS_HOME`` so two homes never share
state (embedded S3 data and its port, warehouse, keys, Airflow home, logs). Production points
``HQMS_S3_ENDPOINT`` at MinIO. The home's embedded S3 server (rclone) is a choice the local
tooling makes (``HQMS_S3_ENDPOINT=embedded``, or the record ``hqms demo`` / ``hqms up`` /
``hqms s3 start`` leave in the home), never a fallback: a process without either fails closed
(:meth:`Config.require_s3`), so a host that lost its environment lands nothing in a private store.

Every variable is documented in README.md ("Configuration"); ``hqms config --json`` prints the
effective values with secrets masked.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from hqms.errors import UserError

#: Repository root (the package lives in ``<root>/plugins/hqms``); DAGs, dbt project and
#: expectation suites are found relative to it.
REPO_ROOT = Path(__file__).resolve().parents[2]
#: China Standard Time: deadlines, receipt days and vault months are reckoned in it (no DST).
CHINA_TZ = ZoneInfo("Asia/Shanghai")

#: Buckets (names can be overridden for shared MinIO deployments).
DEFAULT_BUCKETS = {"landing": "hqms-landing", "vault": "hqms-vault", "marts": "hqms-marts"}
#: Default of ``HQMS_MAX_ZIP_BYTES``: the national upload page takes zips of at most 20 MB; the
#: generator splits its zips at the same size (:class:`hqms.generate.run.Options`).
MAX_ZIP_BYTES = 20 * 1024 * 1024
#: ``HQMS_S3_ENDPOINT=embedded``: this home's own S3 server (rclone on loopback), for local use —
#: the demo, the tests, the benches. Never implied by an unset variable (fail closed).
EMBEDDED_S3 = "embedded"
#: What a process without an object store says (``hqms doctor``'s config line, every refusal).
S3_UNSET = ("HQMS_S3_ENDPOINT is not set: no object store is configured, nothing is landed or processed"
            " / 未配置对象存储（HQMS_S3_ENDPOINT），不接收也不处理任何上传")


def _env(name: str, default: str | None = None) -> str | None:
    """The variable's value; ``default`` when it is unset or empty (the one place it is written)."""
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


#: Mode bits no private file or folder of a home may have (group and others: nothing).
PRIVATE_MASK = 0o077


def private_umask() -> None:
    """Files and folders this process creates from now on are its user's alone (0600 / 0700).

    Why process-wide: keys, landing zips (the embedded S3 data), staging work files and the
    registry are written by many modules, by rclone and by Airflow workers; one umask set where
    the home's folders are made covers them all, including files nobody thought of.
    """
    os.umask(PRIVATE_MASK)


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, mode 0600 from its first byte (secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mask(value: str | None) -> str | None:
    return None if value is None else (value[:2] + "***" if len(value) > 4 else "***")


@dataclass(frozen=True)
class AlertSettings:
    """Alert channels and the stuck-upload threshold (``hqms.alerts`` reads them from here)."""

    webhook_url: str | None
    smtp_host: str | None
    smtp_port: int
    smtp_user: str | None
    smtp_password: str | None
    sender: str
    recipients: tuple[str, ...]
    stuck_minutes: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AlertSettings:
        """From any mapping (the process environment, or a test's dict)."""
        def get(name: str) -> str | None:
            return env.get(name) or None

        return cls(
            webhook_url=get("HQMS_ALERT_WEBHOOK_URL"),
            smtp_host=get("HQMS_ALERT_SMTP_HOST"),
            smtp_port=int(get("HQMS_ALERT_SMTP_PORT") or 587),
            smtp_user=get("HQMS_ALERT_SMTP_USER"),
            smtp_password=get("HQMS_ALERT_SMTP_PASSWORD"),
            sender=get("HQMS_ALERT_FROM") or "hqms@localhost",
            recipients=tuple(a.strip() for a in (get("HQMS_ALERT_TO") or "").split(",") if a.strip()),
            stuck_minutes=int(get("HQMS_ALERT_STUCK_MINUTES") or 180),
        )

    def as_dict(self, mask_secrets: bool = True) -> dict[str, object]:
        return {"webhook_url": _mask(self.webhook_url) if mask_secrets else self.webhook_url,
                "smtp_host": self.smtp_host, "smtp_port": self.smtp_port, "smtp_user": self.smtp_user,
                "smtp_password": _mask(self.smtp_password) if mask_secrets else self.smtp_password,
                "from": self.sender, "to": list(self.recipients), "stuck_minutes": self.stuck_minutes}


#: Variables that override one key each (``<id>:<hex>``); read by ``hqms.keys``.
KEY_OVERRIDE_VARS = {"patient": "HQMS_KEY_PATIENT", "record": "HQMS_KEY_RECORD",
                     "field": "HQMS_KEY_FIELD", "vault": "HQMS_VAULT_PUBLIC_KEY"}


@dataclass(frozen=True)
class Config:
    """One resolved configuration; build it with :func:`load`."""

    home: Path
    #: ``HQMS_S3_ENDPOINT`` as set: an S3 server (``host:port`` or URL), :data:`EMBEDDED_S3`, or
    #: None (unset: the home's recorded choice decides, else nothing is configured).
    s3_endpoint: str | None
    s3_access_key: str | None
    s3_secret_key: str | None
    s3_secure: bool
    s3_region: str
    buckets: dict[str, str]
    warehouse_path: Path
    #: ``ducklake:postgres:<conninfo>`` when HQMS_WAREHOUSE names a DuckLake (hqms.warehouse_attach);
    #: its Parquet goes under ``warehouse_data_path`` (s3://bucket/prefix/ or a folder)
    warehouse_lake: str | None
    warehouse_data_path: str | None
    registry_url: str
    keys_dir: Path
    keyring_file: Path
    #: purpose → raw ``HQMS_KEY_*`` value (None when unset); secrets, masked in ``as_dict``.
    key_overrides: dict[str, str | None]
    airflow_home: Path
    #: Airflow's metadata DB (SQLite in the Airflow home; Postgres in production / compose).
    airflow_db_url: str
    #: Where the live system's Airflow api-server (UI and REST API) and the web service listen.
    airflow_host: str
    airflow_port: int
    #: The scheduler's task-log server (LocalExecutor); Airflow binds it on every interface and
    #: answers only requests signed with this home's secret.
    airflow_log_port: int
    web_host: str
    web_port: int
    log_dir: Path
    work_dir: Path
    marts_dir: Path
    gx_docs_dir: Path
    #: Ingest runs whose Data Docs sites are kept under ``gx_docs_dir`` (4–4.6 MB each).
    gx_docs_keep: int
    max_zip_bytes: int
    max_uncompressed_bytes: int
    max_ratio: int
    #: Largest CSV one zip entry may unpack to, refused at intake beyond (``file_too_large``):
    #: what ingest stages and merges within its memory bound — 500 MB works; a 2,000,000,000-byte
    #: CSV (a 13.9 MB zip) ran out of memory on every claim.
    max_file_bytes: int
    duckdb_memory_limit: str
    duckdb_threads: int
    #: A ``processing`` claim older than this is presumed dead (kill -9) and handed out again.
    stale_claim_seconds: int
    #: Failures an upload may cause alone (a crash, or a death while it alone was in flight)
    #: before it is marked ``failed``; deaths among several uploads charge none of them.
    max_attempts: int
    #: A run refreshes its claims' heartbeat every quarter of this; a claim without one for this
    #: long belongs to a dead run (of another host: same-host deaths are seen at once by lock).
    claim_lease_seconds: int
    #: One ingest batch (one mapped task) takes at most this many uploads, and stages at most
    #: this many bytes of CSV at a time (DuckDB holds staged text at ≈ 6x its CSV size).
    batch_max_uploads: int
    batch_max_bytes: int
    #: Ingest batches that run at once (slots of the Airflow pool ``hqms_ingest``): each holds
    #: the warehouse only for its merge, so the others fetch, stage and validate meanwhile.
    #: Memory grows with it: each batch stages up to ``batch_max_bytes`` within
    #: ``duckdb_memory_limit`` (docs/scaling.md).
    ingest_workers: int
    #: The live scheduler starts ``hqms_ingest`` this often (its DAG schedule).
    ingest_interval_minutes: int
    alerts: AlertSettings
    #: Signs CSRF tokens and keys mobile-number hashes; None → generated file under home.
    web_secret_key: str | None
    #: Session cookies' ``Secure`` flag: ``auto`` sets it on every request except plain http to
    #: a loopback host (the embedded default); ``true`` / ``false`` force it.
    web_cookie_secure: str
    #: Front-end machine (``hqms tran``) in API mode: the service's URL and its account token.
    server_url: str | None
    server_token: str | None
    #: Headless Chromium that prints the weekly bulletin's PDF (Debian's package; Playwright's own
    #: browser download cannot be used on the project's machines).
    chromium_path: Path

    @property
    def embedded_s3(self) -> bool:
        """True when this home's rclone server is the object store: ``HQMS_S3_ENDPOINT=embedded``,
        or the variable unset and the local tooling's choice recorded in the home. Looked up on
        every call, because ``hqms demo`` / ``hqms up`` make the choice in the running process."""
        if self.s3_endpoint is not None:
            return self.s3_endpoint == EMBEDDED_S3
        return self.embedded_s3_choice.exists()

    @property
    def embedded_s3_choice(self) -> Path:
        """The record that this home uses its embedded S3 server, written by the local tooling
        (:func:`hqms.embedded_s3.choose`); delete it to undo the choice."""
        return self.embedded_s3_dir / "chosen"

    @property
    def external_s3(self) -> bool:
        """``HQMS_S3_ENDPOINT`` names an S3 server other than this home's own (MinIO in production)."""
        return self.s3_endpoint not in (None, EMBEDDED_S3)

    @property
    def s3_configured(self) -> bool:
        """An S3 server is set, or this home's embedded store is chosen."""
        return self.external_s3 or self.embedded_s3

    def s3_unset_fix(self) -> str:
        """How to configure the store: the production setting, and the local choice."""
        return ("set HQMS_S3_ENDPOINT to the S3 server (MinIO: host:port or URL, with HQMS_S3_ACCESS_KEY and "
                f"HQMS_S3_SECRET_KEY); for local use choose {self.home}'s embedded store: "
                f"HQMS_S3_ENDPOINT={EMBEDDED_S3}, or `hqms s3 start` (records the choice in {self.embedded_s3_choice})")

    def require_s3(self) -> None:
        """Fail closed: refuse (:class:`~hqms.errors.UserError`, exit 2) before anything is recorded,
        landed or claimed when no object store is configured."""
        if not self.s3_configured:
            raise UserError(f"{S3_UNSET}; fix: {self.s3_unset_fix()}")

    @property
    def web_secret_key_file(self) -> Path:
        return self.home / "state" / "web_secret.key"

    @property
    def embedded_s3_dir(self) -> Path:
        return self.home / "s3"

    @property
    def registry_dir(self) -> Path | None:
        """The folder of a SQLite registry (None for a database server)."""
        if self.registry_url.startswith("sqlite:///"):
            return Path(self.registry_url.removeprefix("sqlite:///")).parent
        return None

    def private_dirs(self) -> list[Path]:
        """Folders holding keys, plaintext or personal data: 0700, their files 0600."""
        dirs = [self.home, self.keys_dir, self.embedded_s3_dir, self.work_dir,
                self.warehouse_path.parent, self.log_dir, self.airflow_home]
        return dirs + ([self.registry_dir] if self.registry_dir else [])

    def ensure_dirs(self) -> None:
        """Create the local state folders (idempotent), private to this user (umask 077; the
        private ones are put back to 0700 when an older home had them open)."""
        private_umask()
        for path in (self.home, self.warehouse_path.parent, self.keys_dir, self.log_dir,
                     self.work_dir, self.marts_dir, self.gx_docs_dir,
                     *([self.registry_dir] if self.registry_dir else [])):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        for path in self.private_dirs():
            if path.is_dir() and path.stat().st_mode & PRIVATE_MASK and path.stat().st_uid == os.getuid():
                path.chmod(0o700)

    def as_dict(self, mask_secrets: bool = True) -> dict[str, object]:
        """JSON-friendly view; secrets are masked unless asked otherwise."""

        def mask(value: str | None) -> str | None:
            return _mask(value) if mask_secrets else value

        return {
            "home": str(self.home),
            "s3": {
                "endpoint": "embedded (rclone serve s3, started on demand)" if self.embedded_s3
                else self.s3_endpoint or "not configured",
                "embedded": self.embedded_s3,
                "embedded_data_dir": str(self.embedded_s3_dir) if self.embedded_s3 else None,
                "access_key": mask(self.s3_access_key),
                "secret_key": mask(self.s3_secret_key),
                "secure": self.s3_secure,
                "region": self.s3_region,
                "buckets": dict(self.buckets),
            },
            "warehouse_path": str(self.warehouse_path),
            "warehouse_lake": _mask_conninfo(self.warehouse_lake) if mask_secrets else self.warehouse_lake,
            "warehouse_data_path": self.warehouse_data_path,
            "registry_url": _mask_url(self.registry_url) if mask_secrets else self.registry_url,
            "keys_dir": str(self.keys_dir),
            "keyring_file": str(self.keyring_file),
            "key_overrides": {KEY_OVERRIDE_VARS[p]: mask(v) for p, v in self.key_overrides.items()},
            "airflow_home": str(self.airflow_home),
            "airflow_db_url": _mask_url(self.airflow_db_url) if mask_secrets else self.airflow_db_url,
            "airflow_api": f"http://{self.airflow_host}:{self.airflow_port}",
            "airflow_log_port": self.airflow_log_port,
            "log_dir": str(self.log_dir),
            "work_dir": str(self.work_dir),
            "marts_dir": str(self.marts_dir),
            "gx_docs_dir": str(self.gx_docs_dir),
            "gx_docs_keep": self.gx_docs_keep,
            "limits": {
                "max_zip_bytes": self.max_zip_bytes,
                "max_uncompressed_bytes": self.max_uncompressed_bytes,
                "max_ratio": self.max_ratio,
                "max_file_bytes": self.max_file_bytes,
            },
            "duckdb": {"memory_limit": self.duckdb_memory_limit, "threads": self.duckdb_threads},
            "stale_claim_seconds": self.stale_claim_seconds,
            "max_attempts": self.max_attempts,
            "claim_lease_seconds": self.claim_lease_seconds,
            "batch": {"max_uploads": self.batch_max_uploads, "max_bytes": self.batch_max_bytes},
            "ingest_workers": self.ingest_workers,
            "ingest_interval_minutes": self.ingest_interval_minutes,
            "alerts": self.alerts.as_dict(mask_secrets),
            "web": {
                "url": f"http://{self.web_host}:{self.web_port}",
                "host": self.web_host,
                "port": self.web_port,
                "secret_key": mask(self.web_secret_key) if self.web_secret_key
                else f"generated: {self.web_secret_key_file}",
                "cookie_secure": self.web_cookie_secure,
            },
            "tran": {"server_url": self.server_url, "server_token": mask(self.server_token)},
            "chromium_path": str(self.chromium_path),
        }


def _mask_url(url: str) -> str:
    """Hide a password inside a database URL (``scheme://user:pw@host``)."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.split("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def _mask_conninfo(conninfo: str | None) -> str | None:
    """Hide ``password=…`` inside a libpq conninfo."""
    if conninfo is None:
        return None
    return " ".join("password=***" if part.startswith("password=") else part for part in conninfo.split())


def _s3_endpoint(value: str | None) -> str | None:
    """The setting, with the embedded choice spelled one way (``Embedded`` and `` embedded `` too)."""
    return EMBEDDED_S3 if value is not None and value.strip().lower() == EMBEDDED_S3 else value


def load() -> Config:
    """Resolve the configuration from the environment (cheap; call it where you need it)."""
    home = Path(_env("HQMS_HOME", str(Path.cwd() / ".hqms"))).expanduser().resolve()
    buckets = {
        role: _env(f"HQMS_BUCKET_{role.upper()}", name) or name
        for role, name in DEFAULT_BUCKETS.items()
    }
    warehouse_setting = _env("HQMS_WAREHOUSE", str(home / "warehouse" / "hqms.duckdb")) or ""
    lake = warehouse_setting if warehouse_setting.startswith("ducklake:") else None
    warehouse = Path(str(home / "warehouse" / "hqms.duckdb") if lake else warehouse_setting).expanduser()
    registry = _env("HQMS_REGISTRY_URL", f"sqlite:///{home / 'state' / 'registry.sqlite'}")
    keys_dir = Path(_env("HQMS_KEYS_DIR", str(home / "keys"))).expanduser()
    airflow_home = Path(_env("HQMS_AIRFLOW_HOME", str(home / "airflow"))).expanduser()
    # Compose sets Airflow's own variable for every Airflow container; HQMS_AIRFLOW_DB_URL is ours.
    airflow_db = (_env("HQMS_AIRFLOW_DB_URL") or _env("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
                  or f"sqlite:///{airflow_home / 'airflow.db'}")
    return Config(
        home=home,
        s3_endpoint=_s3_endpoint(_env("HQMS_S3_ENDPOINT")),
        s3_access_key=_env("HQMS_S3_ACCESS_KEY"),
        s3_secret_key=_env("HQMS_S3_SECRET_KEY"),
        s3_secure=_bool(_env("HQMS_S3_SECURE"), default=False),
        s3_region=_env("HQMS_S3_REGION", "us-east-1"),
        buckets=buckets,
        warehouse_path=warehouse,
        warehouse_lake=lake,
        warehouse_data_path=_env("HQMS_WAREHOUSE_DATA_PATH"),
        registry_url=registry or "",
        keys_dir=keys_dir,
        keyring_file=Path(_env("HQMS_KEYRING_FILE", str(keys_dir / "keyring.json"))).expanduser(),
        key_overrides={p: _env(name) for p, name in KEY_OVERRIDE_VARS.items()},
        airflow_home=airflow_home,
        airflow_db_url=airflow_db,
        airflow_host=_env("HQMS_AIRFLOW_HOST", "127.0.0.1"),
        airflow_port=int(_env("HQMS_AIRFLOW_PORT", "8080")),
        airflow_log_port=int(_env("HQMS_AIRFLOW_LOG_PORT", "8793")),
        web_host=_env("HQMS_WEB_HOST", "127.0.0.1"),
        web_port=int(_env("HQMS_WEB_PORT", "8800")),
        log_dir=Path(_env("HQMS_LOG_DIR", str(home / "logs"))).expanduser(),
        work_dir=Path(_env("HQMS_WORK_DIR", str(home / "work"))).expanduser(),
        marts_dir=Path(_env("HQMS_MARTS_DIR", str(home / "marts"))).expanduser(),
        gx_docs_dir=Path(_env("HQMS_GX_DOCS_DIR", str(home / "gx_docs"))).expanduser(),
        gx_docs_keep=int(_env("HQMS_GX_DOCS_KEEP", "20")),
        max_zip_bytes=int(_env("HQMS_MAX_ZIP_BYTES", str(MAX_ZIP_BYTES))),
        max_uncompressed_bytes=int(_env("HQMS_MAX_UNCOMPRESSED_BYTES", str(2 * 1024**3))),
        max_ratio=int(_env("HQMS_MAX_RATIO", "200")),
        max_file_bytes=int(_env("HQMS_MAX_FILE_BYTES", "500000000")),
        duckdb_memory_limit=_env("HQMS_DUCKDB_MEMORY_LIMIT", "768MB"),
        duckdb_threads=int(_env("HQMS_DUCKDB_THREADS", "2")),
        stale_claim_seconds=int(_env("HQMS_STALE_CLAIM_SECONDS", "7200")),
        max_attempts=int(_env("HQMS_MAX_ATTEMPTS", "3")),
        claim_lease_seconds=int(_env("HQMS_CLAIM_LEASE_SECONDS", "300")),
        batch_max_uploads=int(_env("HQMS_BATCH_MAX_UPLOADS", "200")),
        batch_max_bytes=int(_env("HQMS_BATCH_MAX_BYTES", str(128 * 1024 * 1024))),
        ingest_workers=max(1, int(_env("HQMS_INGEST_WORKERS", "2"))),
        ingest_interval_minutes=int(_env("HQMS_INGEST_INTERVAL_MINUTES", "10")),
        alerts=AlertSettings.from_env(os.environ),
        web_secret_key=_env("HQMS_WEB_SECRET_KEY"),
        web_cookie_secure=(_env("HQMS_WEB_COOKIE_SECURE", "auto") or "auto").strip().lower(),
        server_url=_env("HQMS_SERVER_URL"),
        server_token=_env("HQMS_SERVER_TOKEN"),
        chromium_path=Path(_env("HQMS_CHROMIUM", "/usr/bin/chromium")),
    )

