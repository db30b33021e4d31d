"""Effective configuration, read from environment variables.

Everything the pipeline keeps on local disk lives under ``HQMS_HOME`` so two homes never share
state (embedded S3 data and its port, warehouse, keys, Airflow home, logs). Production points
``HQMS_S3_ENDPOINT`` at MinIO; when it is unset the embedded S3 server (rclone) is used.

Every variable is documented in README.md ("Configuration"); ``hqms config --json`` prints the
effective values with secrets masked.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

#: Repository root (the package lives in ``<root>/plugins/hqms``); DAGs, dbt project and
#: expectation suites are found relative to it.
REPO_ROOT = Path(__file__).resolve().parents[2]
#: China Standard Time: deadlines, receipt days and vault months are reckoned in it (no DST).
CHINA_TZ = ZoneInfo("Asia/Shanghai")

#: Buckets (names can be overridden for shared MinIO deployments).
DEFAULT_BUCKETS = {"landing": "hqms-landing", "vault": "hqms-vault", "marts": "hqms-marts"}


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Config:
    """One resolved configuration; build it with :func:`load`."""

    home: Path
    s3_endpoint: str | None  # None → embedded rclone server under home
    s3_access_key: str | None
    s3_secret_key: str | None
    s3_secure: bool
    s3_region: str
    buckets: dict[str, str] = field(default_factory=dict)
    warehouse_path: Path = Path()
    registry_url: str = ""
    keys_dir: Path = Path()
    airflow_home: Path = Path()
    log_dir: Path = Path()
    work_dir: Path = Path()
    marts_dir: Path = Path()
    gx_docs_dir: Path = Path()
    max_zip_bytes: int = 20 * 1024 * 1024
    max_uncompressed_bytes: int = 2 * 1024 * 1024 * 1024
    max_ratio: int = 200
    duckdb_memory_limit: str = "768MB"
    duckdb_threads: int = 2
    #: A ``processing`` claim older than this is presumed dead (kill -9) and handed out again.
    stale_claim_seconds: int = 7200
    #: Claims an upload gets; one whose claim goes stale this often is marked ``failed``.
    max_attempts: int = 3
    #: One ingest batch (one mapped task) takes at most this many uploads, and stages at most
    #: this many bytes of CSV at a time (DuckDB holds staged text at ≈ 6x its CSV size).
    batch_max_uploads: int = 200
    batch_max_bytes: int = 128 * 1024 * 1024
    #: The hospital service (``hqms serve``): loopback by default; TLS belongs to a reverse proxy.
    web_host: str = "127.0.0.1"
    web_port: int = 8800
    #: Signs CSRF tokens and keys mobile-number hashes; None → generated file under home.
    web_secret_key: str | None = None
    #: Session cookies' ``Secure`` flag: ``auto`` sets it on every request except plain http to
    #: a loopback host (the embedded default); ``true`` / ``false`` force it.
    web_cookie_secure: str = "auto"
    #: Front-end machine (``hqms tran``) in API mode: the service's URL and its account token.
    server_url: str | None = None
    server_token: str | None = None

    @property
    def embedded_s3(self) -> bool:
        """True when no external endpoint is configured and the local rclone server serves S3."""
        return self.s3_endpoint is None

    @property
    def web_secret_key_file(self) -> Path:
        return self.home / "state" / "web_secret.key"

    @property
    def embedded_s3_dir(self) -> Path:
        return self.home / "s3"

    def ensure_dirs(self) -> None:
        """Create the local state folders (idempotent)."""
        for path in (self.home, self.warehouse_path.parent, self.keys_dir, self.log_dir,
                     self.work_dir, self.marts_dir, self.gx_docs_dir):
            path.mkdir(parents=True, exist_ok=True)
        if self.registry_url.startswith("sqlite:///"):
            Path(self.registry_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)

    def as_dict(self, mask_secrets: bool = True) -> dict[str, object]:
        """JSON-friendly view; secrets are masked unless asked otherwise."""

        def mask(value: str | None) -> str | None:
            if value is None or not mask_secrets:
                return value
            return value[:2] + "***" if len(value) > 4 else "***"

        return {
            "home": str(self.home),
            "s3": {
                "endpoint": self.s3_endpoint or "embedded (rclone serve s3, started on demand)",
                "embedded": self.embedded_s3,
                "embedded_data_dir": str(self.embedded_s3_dir) if self.embedded_s3 else None,
                "access_key": mask(self.s3_access_key),
                "secret_key": mask(self.s3_secret_key),
                "secure": self.s3_secure,
                "region": self.s3_region,
                "buckets": dict(self.buckets),
            },
            "warehouse_path": str(self.warehouse_path),
            "registry_url": _mask_url(self.registry_url) if mask_secrets else self.registry_url,
            "keys_dir": str(self.keys_dir),
            "airflow_home": str(self.airflow_home),
            "log_dir": str(self.log_dir),
            "work_dir": str(self.work_dir),
            "marts_dir": str(self.marts_dir),
            "gx_docs_dir": str(self.gx_docs_dir),
            "limits": {
                "max_zip_bytes": self.max_zip_bytes,
                "max_uncompressed_bytes": self.max_uncompressed_bytes,
                "max_ratio": self.max_ratio,
            },
            "duckdb": {"memory_limit": self.duckdb_memory_limit, "threads": self.duckdb_threads},
            "stale_claim_seconds": self.stale_claim_seconds,
            "max_attempts": self.max_attempts,
            "web": {
                "host": self.web_host,
                "port": self.web_port,
                "secret_key": mask(self.web_secret_key) if self.web_secret_key
                else f"generated: {self.web_secret_key_file}",
                "cookie_secure": self.web_cookie_secure,
            },
            "tran": {"server_url": self.server_url, "server_token": mask(self.server_token)},
        }


def _mask_url(url: str) -> str:
    """Hide a password inside a database URL (``scheme://user:pw@host``)."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.split("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def load() -> Config:
    """Resolve the configuration from the environment (cheap; call it where you need it)."""
    home = Path(_env("HQMS_HOME", str(Path.cwd() / ".hqms"))).expanduser().resolve()
    buckets = {
        role: _env(f"HQMS_BUCKET_{role.upper()}", name) or name
        for role, name in DEFAULT_BUCKETS.items()
    }
    warehouse = Path(_env("HQMS_WAREHOUSE", str(home / "warehouse" / "hqms.duckdb"))).expanduser()
    registry = _env("HQMS_REGISTRY_URL", f"sqlite:///{home / 'state' / 'registry.sqlite'}")
    return Config(
        home=home,
        s3_endpoint=_env("HQMS_S3_ENDPOINT"),
        s3_access_key=_env("HQMS_S3_ACCESS_KEY"),
        s3_secret_key=_env("HQMS_S3_SECRET_KEY"),
        s3_secure=_bool(_env("HQMS_S3_SECURE"), default=False),
        s3_region=_env("HQMS_S3_REGION", "us-east-1") or "us-east-1",
        buckets=buckets,
        warehouse_path=warehouse,
        registry_url=registry or "",
        keys_dir=Path(_env("HQMS_KEYS_DIR", str(home / "keys"))).expanduser(),
        airflow_home=Path(_env("HQMS_AIRFLOW_HOME", str(home / "airflow"))).expanduser(),
        log_dir=Path(_env("HQMS_LOG_DIR", str(home / "logs"))).expanduser(),
        work_dir=Path(_env("HQMS_WORK_DIR", str(home / "work"))).expanduser(),
        marts_dir=Path(_env("HQMS_MARTS_DIR", str(home / "marts"))).expanduser(),
        gx_docs_dir=Path(_env("HQMS_GX_DOCS_DIR", str(home / "gx_docs"))).expanduser(),
        max_zip_bytes=int(_env("HQMS_MAX_ZIP_BYTES", str(20 * 1024 * 1024)) or 0),
        max_uncompressed_bytes=int(_env("HQMS_MAX_UNCOMPRESSED_BYTES", str(2 * 1024**3)) or 0),
        max_ratio=int(_env("HQMS_MAX_RATIO", "200") or 200),
        duckdb_memory_limit=_env("HQMS_DUCKDB_MEMORY_LIMIT", "768MB") or "768MB",
        duckdb_threads=int(_env("HQMS_DUCKDB_THREADS", "2") or 2),
        stale_claim_seconds=int(_env("HQMS_STALE_CLAIM_SECONDS", "7200") or 7200),
        max_attempts=int(_env("HQMS_MAX_ATTEMPTS", "3") or 3),
        batch_max_uploads=int(_env("HQMS_BATCH_MAX_UPLOADS", "200") or 200),
        batch_max_bytes=int(_env("HQMS_BATCH_MAX_BYTES", str(128 * 1024 * 1024)) or 128 * 1024 * 1024),
        web_host=_env("HQMS_WEB_HOST", "127.0.0.1") or "127.0.0.1",
        web_port=int(_env("HQMS_WEB_PORT", "8800") or 8800),
        web_secret_key=_env("HQMS_WEB_SECRET_KEY"),
        web_cookie_secure=(_env("HQMS_WEB_COOKIE_SECURE", "auto") or "auto").strip().lower(),
        server_url=_env("HQMS_SERVER_URL"),
        server_token=_env("HQMS_SERVER_TOKEN"),
    )
