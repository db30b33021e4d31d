"""``hqms doctor``: is this installation able to work, and if not, what exactly to fix.

One line per check — configuration, object store and buckets, keys, warehouse, registry, uploads
the registry does not know (orphans), Airflow metadata DB — each ``OK``, ``WARN`` (works, but look) or ``FAIL`` with the fix; exit 1 on any
FAIL. Run it after deploying (the compose init does), after changing ``.env``, and first when
something breaks.

The doctor reports and never repairs: it starts no embedded S3 server (``ObjectStore.from_config``
would), creates no bucket, key, warehouse or registry table, so what it says is the state the
pipeline would find — not one the doctor just made.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import sqlalchemy as sa

from hqms import config

OK, WARN, FAIL = "OK", "WARN", "FAIL"
#: Short connect timeouts: a doctor that hangs on a dead server is no help.
DB_CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK | WARN | FAIL
    message: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4} {self.name:<10} {self.message}"
        return f"{text} — fix: {self.fix}" if self.fix else text


class _Failed(Exception):
    """Raised inside a check to report FAIL with a fix."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


# --------------------------------------------------------------------------- checks

def _require_s3(cfg: config.Config) -> None:
    """No object store configured: the pipeline refuses everything (fail closed); say which
    setting is missing and how to choose the embedded store for local use."""
    if not cfg.s3_configured:
        raise _Failed(config.S3_UNSET, cfg.s3_unset_fix())


def check_config(cfg: config.Config) -> Check:
    _require_s3(cfg)
    if not cfg.embedded_s3 and not (cfg.s3_access_key and cfg.s3_secret_key):
        raise _Failed(f"HQMS_S3_ENDPOINT is {cfg.s3_endpoint} but the credentials are missing",
                      "set HQMS_S3_ACCESS_KEY and HQMS_S3_SECRET_KEY")
    s3 = "embedded S3 (rclone)" if cfg.embedded_s3 else f"S3 at {cfg.s3_endpoint}"
    registry = cfg.registry_url.split(":", 1)[0]
    return Check("config", OK, f"home {cfg.home}; {s3}; registry {registry}")


def _store(cfg: config.Config):
    """An ObjectStore for the configured endpoint, without starting the embedded server."""
    from hqms import embedded_s3
    from hqms.objectstore import ObjectStore

    _require_s3(cfg)
    if not cfg.embedded_s3:
        return ObjectStore.from_config(cfg, retries=0)
    if not (cfg.embedded_s3_dir / "credentials.json").exists():
        raise _Failed(f"S3 unreachable: the embedded S3 server of {cfg.home} has never been started",
                      "run `hqms s3 start` (or set HQMS_S3_ENDPOINT to your S3 server)")
    state = embedded_s3.status(cfg)
    if not state["running"]:
        raise _Failed(f"S3 unreachable: the embedded S3 server of {cfg.home} is not running",
                      "run `hqms s3 start` (log: " + str(state["log"]) + ")")
    access, secret = embedded_s3.credentials(cfg)
    return ObjectStore(str(state["endpoint"]), access, secret, region=cfg.s3_region,
                       buckets=cfg.buckets, retries=0)


def check_s3(cfg: config.Config) -> Check:
    from minio.error import S3Error

    from hqms.objectstore import ObjectStoreUnavailable

    store = _store(cfg)
    try:
        # HEAD per bucket (ObjectStore has no public existence test; ask its owner for one)
        missing = [b for b in cfg.buckets.values() if not store._call(store._client.bucket_exists, b)]
    except ObjectStoreUnavailable as exc:
        raise _Failed(f"S3 unreachable at {store.endpoint} ({exc.__cause__.__class__.__name__})",
                      "start the S3 server or correct HQMS_S3_ENDPOINT / HQMS_S3_SECURE") from None
    except S3Error as exc:
        raise _Failed(f"S3 at {store.endpoint} refused the request ({exc.code})",
                      "check HQMS_S3_ACCESS_KEY / HQMS_S3_SECRET_KEY and the user's policy") from None
    if missing:
        raise _Failed(f"S3 at {store.endpoint} reachable, bucket(s) missing: {', '.join(missing)}",
                      "run the compose minio-init service, or `hqms run` on the embedded default")
    return Check("s3", OK, f"{store.endpoint} reachable; buckets {', '.join(cfg.buckets.values())}")


def check_keys(cfg: config.Config) -> Check:
    """Load the keyring and use every key once: an HMAC, an SM4-GCM round trip, the SM2 point."""
    from hqms import crypto
    from hqms.keys import KeyringError, load_keyring

    try:
        keyring = load_keyring(cfg)
    except KeyringError as exc:
        raise _Failed(f"keys unusable: {exc}", "provision the keys as docs/keys.md describes "
                      "(local demo: `hqms keys init`)") from None
    probe = secrets.token_hex(8)
    for purpose in ("patient", "record"):
        if len(crypto.pseudonym(keyring.pseudonym_key(purpose), probe)) != 64:
            raise _Failed(f"{purpose} key gives a malformed HMAC-SM3", "replace the key (docs/keys.md)")
    key_id, field_key = keyring.field_key()
    blob = crypto.sm4_gcm_encrypt(field_key, probe.encode(), b"hqms doctor")
    if crypto.sm4_gcm_decrypt(field_key, blob, b"hqms doctor") != probe.encode():
        raise _Failed(f"field key {key_id}: SM4-GCM round trip failed", "replace the key (docs/keys.md)")
    vault = keyring.vault_public_key()
    try:
        crypto.sm2_public_point(vault.public_hex)
    except crypto.CryptoError as exc:
        raise _Failed(f"vault key {vault.key_id}: {exc}", "provision a valid SM2 public key") from None
    active = ", ".join(f"{p} {keyring.active_id(p)}" for p in ("patient", "record", "field", "vault"))
    return Check("keys", OK, f"{keyring.path}: HMAC-SM3, SM4-GCM and SM2 usable ({active})")


def check_lake(cfg: config.Config) -> Check:
    """A DuckLake warehouse: its extensions load, the catalog answers, its tables are listed."""
    from hqms import warehouse_attach

    try:
        con = warehouse_attach.connect(cfg, read_only=True)
    except warehouse_attach.WarehouseUnavailable as exc:
        raise _Failed(str(exc),
                      "check HQMS_WAREHOUSE (ducklake:postgres:<conninfo>), that the PostgreSQL database "
                      "exists and HQMS_WAREHOUSE_DATA_PATH; the first ingest creates the tables") from None
    try:
        tables = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = 'warehouse'").fetchone()[0]
    finally:
        con.close()
    return Check("warehouse", OK, f"{warehouse_attach.describe(cfg)}: {tables} tables, several writers allowed")


def check_warehouse(cfg: config.Config) -> Check:
    import duckdb

    if cfg.warehouse_lake:
        return check_lake(cfg)
    path = cfg.warehouse_path
    if not path.exists():
        parent = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
        if not os.access(parent, os.W_OK):
            raise _Failed(f"{path} does not exist and {parent} is not writable",
                          f"create {path.parent} writable for this user, or set HQMS_WAREHOUSE")
        return Check("warehouse", OK, f"{path} not created yet (first ingest creates it); "
                     f"{parent} writable")
    try:
        con = duckdb.connect(str(path))
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            return Check("warehouse", WARN, f"{path} is locked by a writer (normal while an ingest or "
                         "dbt build runs)", f"if none runs, find the holder with `fuser {path}`")
        raise _Failed(f"{path} cannot be opened for writing ({type(exc).__name__})",
                      "check the file's permissions and free disk space") from None
    except duckdb.Error as exc:
        raise _Failed(f"{path} is not a usable DuckDB database ({type(exc).__name__})",
                      "restore the warehouse from backup (docs/operations.md)") from None
    con.close()
    return Check("warehouse", OK, f"{path} writable")


def _probe_database(url: str, marker_table: str) -> bool:
    """Connect and tell whether ``marker_table`` exists; never creates anything."""
    args = {"connect_timeout": DB_CONNECT_TIMEOUT_S} if url.startswith("postgres") else {}
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=args)
    try:
        with engine.connect() as con:
            con.execute(sa.text("select 1"))
            return sa.inspect(con).has_table(marker_table)
    finally:
        engine.dispose()


def _sqlite_file(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def _database_check(name: str, url: str, marker: str, created_by: str, fix: str) -> Check:
    shown = config._mask_url(url)
    sqlite = _sqlite_file(url)
    if sqlite is not None and not sqlite.exists():
        return Check(name, OK, f"{sqlite} not created yet ({created_by} creates it)")
    try:
        ready = _probe_database(url, marker)
    except Exception as exc:  # noqa: BLE001 - any driver error means "unreachable"
        raise _Failed(f"{shown} unreachable ({type(exc).__name__})", fix) from None
    if not ready:
        return Check(name, WARN, f"{shown} reachable but not initialised (no {marker} table)",
                     f"{created_by} creates it")
    return Check(name, OK, f"{shown} reachable")


def check_registry(cfg: config.Config) -> Check:
    sqlite = _sqlite_file(cfg.registry_url)
    if sqlite is not None and sqlite.exists():
        try:
            _probe_database(cfg.registry_url, "uploads")
        except sa.exc.DatabaseError as exc:
            if "not a database" in str(exc.orig) or "malformed" in str(exc.orig):
                raise _Failed(f"{sqlite} is damaged: not a readable SQLite database",
                              "stop ingest, move the file aside, restore the newest backup (or start "
                              "empty), then `hqms registry recover` (docs/operations.md, Registry loss)") from None
    return _database_check("registry", cfg.registry_url, "uploads", "the first submit",
                           "start the database or correct HQMS_REGISTRY_URL")


def _known_ids(url: str) -> Callable[[list[str]], set[str]]:
    """Which upload ids the registry holds, read without creating anything (no table: none)."""
    def known(ids: list[str]) -> set[str]:
        sqlite = _sqlite_file(url)
        if not ids or (sqlite is not None and not sqlite.exists()):
            return set()
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as con:
                if not sa.inspect(con).has_table("uploads"):
                    return set()
                table = sa.table("uploads", sa.column("upload_id"))
                found: set[str] = set()
                for start in range(0, len(ids), 500):
                    found.update(con.scalars(sa.select(table.c.upload_id)
                                             .where(table.c.upload_id.in_(ids[start:start + 500]))))
                return found
        finally:
            engine.dispose()
    return known


def check_orphans(cfg: config.Config) -> Check:
    """Landing objects (and, when the registry is empty, vault copies) the registry does not
    know: a registry deleted or restored from an older backup. Nothing else would notice —
    ingest only reads the registry."""
    from hqms import recover

    try:
        store = _store(cfg)
    except _Failed:
        return Check("orphans", WARN, "not checked: S3 unreachable (see the s3 line)")
    known = _known_ids(cfg.registry_url)
    try:
        orphans = recover.find_orphans(cfg, store, known, vault=False)
        if not orphans and not _registry_has_uploads(cfg.registry_url):
            vaulted = next((k for k in store.list(cfg.buckets["vault"]) if k.endswith(".manifest.json")), None)
            if vaulted:
                orphans = recover.find_orphans(cfg, store, known, vault=True)
    except sa.exc.DatabaseError:
        return Check("orphans", WARN, "not checked: registry unreadable (see the registry line)")
    if orphans:
        raise _Failed(f"{len(orphans)} upload(s) in the object store unknown to the registry (lost or restored "
                      f"from an older backup?): {recover.describe(orphans)}",
                      "run `hqms registry recover` (docs/operations.md, Registry loss)")
    return Check("orphans", OK, "every landed upload is known to the registry")


def _registry_has_uploads(url: str) -> bool:
    sqlite = _sqlite_file(url)
    if sqlite is not None and not sqlite.exists():
        return False
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as con:
            if not sa.inspect(con).has_table("uploads"):
                return False
            return con.execute(sa.text("SELECT 1 FROM uploads LIMIT 1")).first() is not None
    finally:
        engine.dispose()


def airflow_db_url(cfg: config.Config) -> str | None:
    """The Airflow metadata DB in use (``hqms config``: ``airflow_db_url``)."""
    return cfg.airflow_db_url


def check_airflow(cfg: config.Config) -> Check:
    return _database_check("airflow-db", airflow_db_url(cfg) or "", "alembic_version",
                           "`airflow db migrate` (hqms run / the compose airflow-init)",
                           "start the database or correct AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")


def check_vault_private_key(cfg: config.Config) -> Check:
    """The vault's SM2 private key belongs offline with the investigators (docs/keys.md); on a
    server, whoever reads the vault bucket and the key folder reads every original upload."""
    from hqms.keys import private_key_path

    path = private_key_path(cfg)
    if not path.exists():
        return Check("vault-key", OK, "no vault private key on this machine")
    if cfg.embedded_s3:
        return Check("vault-key", OK, f"{path} present: the embedded demo's key (demo only)")
    return Check("vault-key", WARN, f"the vault private key sits on this server ({path})",
                 "move it to the offline key holder (docs/keys.md) and delete it here")


def _airflow_rows(cfg: config.Config, sql: str) -> list | None:
    """Rows of a query on Airflow's metadata DB; None when it is unreachable or not initialised."""
    url = cfg.airflow_db_url
    sqlite = _sqlite_file(url)
    if sqlite is not None and not sqlite.exists():
        return None
    args = {"connect_timeout": DB_CONNECT_TIMEOUT_S} if url.startswith("postgres") else {}
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=args)
    try:
        with engine.connect() as con:
            if not sa.inspect(con).has_table("job"):
                return None
            return list(con.execute(sa.text(sql)))
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def _age_minutes(moment) -> float:
    from datetime import UTC, datetime

    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (datetime.now(UTC) - moment).total_seconds() / 60


#: A scheduler heartbeat older than this means no scheduler runs (Airflow's own health
#: threshold is 30 s; the doctor allows for a busy machine).
SCHEDULER_STALE_MINUTES = 2


def check_scheduler(cfg: config.Config) -> Check:
    """Without a running scheduler nothing is ingested: uploads wait in ``landed``."""
    rows = _airflow_rows(cfg, "SELECT max(latest_heartbeat) FROM job "
                              "WHERE job_type = 'SchedulerJob' AND state = 'running'")
    fix = "start it: `hqms up` (embedded default) or the compose airflow-scheduler service"
    if not rows or rows[0][0] is None:
        return Check("scheduler", WARN, "no Airflow scheduler runs: uploads are not ingested until one does", fix)
    age = _age_minutes(rows[0][0])
    if age > SCHEDULER_STALE_MINUTES:
        return Check("scheduler", WARN, f"the Airflow scheduler's last heartbeat is {age:.0f} min old", fix)
    return Check("scheduler", OK, "an Airflow scheduler runs (heartbeat within a minute)")


def check_last_ingest(cfg: config.Config) -> Check:
    """The newest successful ``hqms_ingest`` run is recent enough for its schedule (three
    intervals: one may be running, one may have failed and been retried)."""
    rows = _airflow_rows(cfg, "SELECT max(end_date) FROM dag_run "
                              "WHERE dag_id = 'hqms_ingest' AND state = 'success'")
    allowed = 3 * cfg.ingest_interval_minutes
    if not rows or rows[0][0] is None:
        return Check("last-ingest", WARN, "hqms_ingest has never succeeded on this installation",
                     "start the scheduler (`hqms up`) or run `hqms run`; see docs/operations.md")
    age = _age_minutes(rows[0][0])
    if age > allowed:
        return Check("last-ingest", WARN, f"the last successful hqms_ingest ended {age:.0f} min ago "
                     f"(schedule: every {cfg.ingest_interval_minutes} min)",
                     "look at its failed runs in the Airflow UI (docs/operations.md, Watching the DAGs)")
    return Check("last-ingest", OK, f"last successful hqms_ingest {age:.0f} min ago")


def open_files(cfg: config.Config, limit: int = 5) -> list[str]:
    """Up to ``limit`` files or folders under the private folders that group or others may
    read, write or enter (keys, landing zips, work files, registry, logs). The published marts
    (suppressed aggregates, a read-only snapshot meant for analysts) are not private."""
    found: list[str] = []
    public = {cfg.marts_dir}
    for top in dict.fromkeys(cfg.private_dirs()):
        if not top.exists():
            continue
        for folder, dirs, files in os.walk(top):
            for path in (Path(folder), *(Path(folder) / f for f in files)):
                try:
                    mode = path.lstat().st_mode
                except FileNotFoundError:
                    continue
                if mode & config.PRIVATE_MASK and not stat.S_ISLNK(mode):
                    found.append(f"{path} ({stat.S_IMODE(mode):04o})")
                    if len(found) >= limit:
                        return found
            dirs[:] = [d for d in dirs if Path(folder, d) not in {*cfg.private_dirs(), *public}]
    return list(dict.fromkeys(found))


def check_permissions(cfg: config.Config) -> Check:
    found = open_files(cfg)
    if found:
        return Check("permissions", WARN, "readable by group or others: " + ", ".join(found),
                     f"chmod -R go-rwx {cfg.home} (and the folders HQMS_KEYS_DIR, HQMS_WORK_DIR … name)")
    return Check("permissions", OK, "keys, S3 data, work, registry and logs are private (0700/0600)")


CHECKS: tuple[tuple[str, Callable[[config.Config], Check]], ...] = (
    ("config", check_config),
    ("s3", check_s3),
    ("keys", check_keys),
    ("warehouse", check_warehouse),
    ("registry", check_registry),
    ("orphans", check_orphans),
    ("airflow-db", check_airflow),
    ("vault-key", check_vault_private_key),
    ("scheduler", check_scheduler),
    ("last-ingest", check_last_ingest),
    ("permissions", check_permissions),
)


def run_checks(cfg: config.Config | None = None) -> list[Check]:
    """Every check, in order; a check that crashes is a FAIL, never a traceback."""
    try:
        cfg = cfg or config.load()
    except ValueError as exc:
        return [Check("config", FAIL, f"configuration does not parse: {exc}",
                      "correct the HQMS_* variable named above (README, Configuration)")]
    results = []
    for name, check in CHECKS:
        try:
            results.append(check(cfg))
        except _Failed as exc:
            results.append(Check(name, FAIL, str(exc), exc.fix))
        except Exception as exc:  # noqa: BLE001 - report, keep checking the rest
            results.append(Check(name, FAIL, f"check crashed: {type(exc).__name__}",
                                 "run with a debugger or report it; other checks still ran"))
    return results


# --------------------------------------------------------------------------- CLI

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check configuration and reachability; say what to fix")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    results = run_checks()
    if args.json:
        print(json.dumps([asdict(r) for r in results], ensure_ascii=False, indent=2))
    else:
        for result in results:
            print(result.line())
    return 1 if any(r.status == FAIL for r in results) else 0
