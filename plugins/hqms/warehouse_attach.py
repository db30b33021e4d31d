"""Where the warehouse lives, and the one way a DuckDB connection attaches it.

``HQMS_WAREHOUSE`` is either

* a DuckDB file path — the embedded default: one writing process at a time (DuckDB's file
  lock); the writers take turns on :func:`write_lock` (an ``flock`` beside the file) and hold
  it only while they have the file attached — an ingest batch for its merge alone; or
* ``ducklake:postgres:<libpq conninfo>`` — a DuckLake: the catalog (snapshots, schemas, file
  lists) in PostgreSQL, the rows as Parquet under ``HQMS_WAREHOUSE_DATA_PATH`` — an
  ``s3://bucket/prefix/`` in the configured object store (the embedded server or MinIO) or a
  local folder. Several processes write it at once: each commit is a new snapshot, and DuckLake
  retries a commit that raced another when their changes do not conflict (docs/scaling.md).

Why one module: the ingest merge, the marts publisher, dbt (through its plugin,
:mod:`hqms.marts.dbt_lake`), ``hqms doctor`` and ``hqms marts summary`` all open the warehouse;
what a lake needs — extensions loaded from the PyPI wheels (nothing can be downloaded at run
time), an S3 secret for the data path, DDL without the constraints DuckLake does not have, SQL
macros kept per connection — must be decided in one place.
"""
from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import duckdb

from hqms import config as hqms_config
from hqms import sqlmacros
from hqms.warehouse import ensure_schema

LAKE_PREFIX = "ducklake:"
#: DuckDB extension → the PyPI package shipping its signed binary for the pinned DuckDB.
EXTENSION_PACKAGES = {
    "ducklake": "duckdb_extension_ducklake",
    "postgres_scanner": "duckdb_extension_postgres_scanner",
    "httpfs": "duckdb_extension_httpfs",
}
#: Name of the S3 secret a lake connection creates for its data path.
SECRET = "hqms_lake_s3"
#: PostgreSQL advisory-lock key of the lake's merge lock (any constant; "HQMS" in ASCII).
MERGE_LOCK_KEY = 0x48514D53

log = logging.getLogger(__name__)


class WarehouseUnavailable(RuntimeError):
    """The warehouse cannot be attached (locked by a writer, catalog or store unreachable)."""


def is_lake(cfg: hqms_config.Config) -> bool:
    return bool(cfg.warehouse_lake)


def describe(cfg: hqms_config.Config) -> str:
    """The warehouse for messages: the file path, or the lake with its data path (the catalog's
    conninfo may hold a password, so only its database name is shown)."""
    if not is_lake(cfg):
        return str(cfg.warehouse_path)
    conninfo = (cfg.warehouse_lake or "").removeprefix(LAKE_PREFIX).split(":", 1)[-1]
    fields = dict(part.split("=", 1) for part in conninfo.split() if "=" in part)
    return f"DuckLake (catalog {fields.get('dbname', '?')}, data {cfg.warehouse_data_path})"


def extension_path(name: str) -> Path:
    """The extension binary inside its PyPI wheel (``<pkg>/extensions/v<duckdb>/<name>.duckdb_extension``)."""
    spec = importlib.util.find_spec(EXTENSION_PACKAGES[name])
    if spec is None or not spec.submodule_search_locations:
        raise WarehouseUnavailable(f"the DuckDB extension {name} is not installed: "
                                   f"pip install {EXTENSION_PACKAGES[name].replace('_', '-')}=={duckdb.__version__}")
    return Path(spec.submodule_search_locations[0]) / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"


def load_extensions(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    """LOAD extensions by file path (signature checked); ``INSTALL`` by name would download."""
    loaded = {r[0] for r in con.execute("SELECT extension_name FROM duckdb_extensions() WHERE loaded").fetchall()}
    for name in names:
        if name not in loaded:
            con.execute(f"LOAD '{extension_path(name)}'")


def _s3_endpoint(cfg: hqms_config.Config) -> tuple[str, str, str, bool]:
    """(host:port, access key, secret key, TLS) of the object store — the embedded server is
    started if needed, as for every other object-store client."""
    cfg.require_s3()
    if cfg.embedded_s3:
        from hqms import embedded_s3

        endpoint, access, secret = embedded_s3.ensure_running(cfg)
        return endpoint, access, secret, False
    endpoint, secure = cfg.s3_endpoint or "", cfg.s3_secure
    if "://" in endpoint:
        secure, endpoint = endpoint.startswith("https://"), endpoint.split("://", 1)[1]
    return endpoint, cfg.s3_access_key or "", cfg.s3_secret_key or "", secure


def _s3_secret(con: duckdb.DuckDBPyConnection, cfg: hqms_config.Config, *, create_bucket: bool) -> None:
    """A temporary S3 secret scoped to the data path's bucket (created when missing)."""
    from hqms.objectstore import ObjectStore

    endpoint, access, secret, secure = _s3_endpoint(cfg)
    bucket = (cfg.warehouse_data_path or "").removeprefix("s3://").split("/", 1)[0]
    if create_bucket:
        ObjectStore(endpoint, access, secret, secure=secure, region=cfg.s3_region,
                    buckets={"lake": bucket}).ensure_buckets()
    con.execute(f"CREATE OR REPLACE TEMPORARY SECRET {SECRET} (TYPE s3, KEY_ID {_lit(access)}, "
                f"SECRET {_lit(secret)}, ENDPOINT {_lit(endpoint)}, URL_STYLE 'path', "
                f"USE_SSL {str(secure).lower()}, REGION {_lit(cfg.s3_region)}, SCOPE {_lit('s3://' + bucket)})")


def _lit(text: str) -> str:
    """A SQL string literal (CREATE SECRET takes no prepared parameters)."""
    return "'" + text.replace("'", "''") + "'"


def _lake_options(cfg: hqms_config.Config, read_only: bool) -> str:
    data_path = cfg.warehouse_data_path
    if not data_path:
        raise WarehouseUnavailable("HQMS_WAREHOUSE is a DuckLake but HQMS_WAREHOUSE_DATA_PATH is not set "
                                   "(s3://bucket/prefix/ or a folder)")
    if not data_path.startswith("s3://"):
        Path(data_path).mkdir(parents=True, exist_ok=True)
    options = [f"DATA_PATH {_lit(data_path)}", "METADATA_SCHEMA 'ducklake'"]
    if read_only:
        options.append("READ_ONLY")
    return ", ".join(options)


def attach(con: duckdb.DuckDBPyConnection, cfg: hqms_config.Config, alias: str = "warehouse", *,
           read_only: bool = False) -> None:
    """ATTACH the configured warehouse to ``con`` as ``alias`` (file or lake).

    Raises :class:`WarehouseUnavailable` when a writer holds the file (read-only attaches of a
    file fail then too), or the lake's catalog cannot be reached."""
    if not is_lake(cfg):
        if read_only and not cfg.warehouse_path.exists():
            raise WarehouseUnavailable(f"no warehouse at {cfg.warehouse_path}; run the ingest or "
                                       "`hqms marts build` first")
        cfg.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con.execute(f"ATTACH {_lit(str(cfg.warehouse_path))} AS {alias}" + (" (READ_ONLY)" if read_only else ""))
        except duckdb.IOException as exc:
            raise WarehouseUnavailable(f"warehouse {cfg.warehouse_path} is in use by a writer; retry later "
                                       f"({exc})") from exc
        return
    load_extensions(con, "ducklake", "postgres_scanner")
    try:
        if (cfg.warehouse_data_path or "").startswith("s3://"):
            load_extensions(con, "httpfs")
            _s3_secret(con, cfg, create_bucket=not read_only)
        con.execute(f"ATTACH {_lit(cfg.warehouse_lake or '')} AS {alias} ({_lake_options(cfg, read_only)})")
    except duckdb.Error as exc:
        raise _unavailable(cfg, exc) from None


def _unavailable(cfg: hqms_config.Config, exc: duckdb.Error) -> WarehouseUnavailable:
    """The catalog's or the store's error, without the conninfo's password that it may quote."""
    message = re.sub(r"password=\S+", "password=***", str(exc))
    return WarehouseUnavailable(f"{describe(cfg)} cannot be attached: {type(exc).__name__}: {message}")


def use(con: duckdb.DuckDBPyConnection, cfg: hqms_config.Config, alias: str = "warehouse") -> None:
    """Make ``alias`` the default catalog with every table and the SQL macros in place.

    On a lake the macros are temporary (per connection): a stored macro is catalog state that
    every writer would re-create on attach, and two creates of one name are a DuckLake write
    conflict; nothing stored (dbt models, analysts' views) calls them."""
    con.execute(f"USE {alias}")
    ensure_schema(con, constraints=not is_lake(cfg))
    sqlmacros.install(con, temporary=is_lake(cfg))


def _catalog_conninfo(cfg: hqms_config.Config) -> str:
    prefix = LAKE_PREFIX + "postgres:"
    if not (cfg.warehouse_lake or "").startswith(prefix):
        raise WarehouseUnavailable(f"HQMS_WAREHOUSE must be {prefix}<libpq conninfo>: the writers' merge "
                                   "lock lives in the PostgreSQL catalog")
    return (cfg.warehouse_lake or "").removeprefix(prefix)


def merge_lock(cfg: hqms_config.Config) -> duckdb.DuckDBPyConnection:
    """Wait for, then hold, the lake's merge lock; close the returned connection to release it.

    Why a lock on a lake that takes concurrent commits: DuckLake runs each transaction on a
    snapshot and only refuses a commit whose changes conflict on the same data file. Two merges
    that replace the same natural keys delete nothing of each other's (neither sees the other's
    rows) and both insert — a key would end up twice. So the merges (one transaction each) take
    turns, and everything before them — fetching, vaulting, staging, validation, keyed crypto —
    runs in parallel. The lock is a PostgreSQL transaction-level advisory lock in the catalog's
    database, held by a connection of its own: when a worker dies (kill -9), PostgreSQL ends
    its session and the lock with it."""
    lock = duckdb.connect()
    try:
        load_extensions(lock, "postgres_scanner")
        lock.execute(f"ATTACH {_lit(_catalog_conninfo(cfg))} AS hqms_lock (TYPE postgres)")
        lock.execute("BEGIN TRANSACTION")
        lock.execute(f"SELECT * FROM postgres_query('hqms_lock', 'SELECT pg_advisory_xact_lock({MERGE_LOCK_KEY})')")
    except duckdb.Error as exc:
        lock.close()
        raise _unavailable(cfg, exc) from None
    except BaseException:
        lock.close()
        raise
    return lock


def lock_path(cfg: hqms_config.Config) -> Path:
    """The DuckDB file's write-lock file: ``<warehouse>.lock`` beside it."""
    return cfg.warehouse_path.with_name(cfg.warehouse_path.name + ".lock")


#: How deep this thread is inside :func:`write_lock` / :func:`read_lock` (re-entry is free:
#: ``hqms marts build`` holds the lock and prepares the warehouse through :func:`connect`).
_depth = threading.local()


@contextmanager
def _file_lock(cfg: hqms_config.Config, mode: int, who: str) -> Iterator[None]:
    """``flock`` on :func:`lock_path`: waited for (logged, naming the holder), and released by
    the kernel when the holder's process ends however it ends — a kill -9 frees it at once."""
    path = lock_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    exclusive = mode == fcntl.LOCK_EX
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            # a writer names itself in the file while it holds the lock; readers do not
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "readers"
            log.info("%s (pid %d) waits for the warehouse write lock %s, held by %s", who, os.getpid(),
                     path, holder)
            started = time.monotonic()
            fcntl.flock(fd, mode)
            log.info("%s got the warehouse write lock after %.1f s", who, time.monotonic() - started)
        if exclusive:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{who} (pid {os.getpid()})\n".encode(), 0)
        try:
            yield
        finally:
            if exclusive:
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


@contextmanager
def write_lock(cfg: hqms_config.Config, who: str = "a warehouse writer") -> Iterator[None]:
    """Hold the warehouse's write lock for the block — every writer takes it, and only while it
    has the warehouse attached, so everything else an ingest batch does (fetching, vaulting,
    staging, validation, keyed crypto) runs while another batch merges.

    * DuckDB file: an exclusive ``flock`` on ``<warehouse>.lock`` (0600). DuckDB's own file lock
      would refuse a second writer with an error; this one queues it.
    * DuckLake: the catalog's advisory lock (:func:`merge_lock`), dbt builds included. Their
      commits touch no table a merge writes, but measured (2026-12-07, a dbt build beside an
      ingest merge under Airflow): a view dbt created in schema ``intermediate`` in one snapshot
      was catalogued in schema ``staging`` while a merge committed the next one, and the build's
      data test failed on the missing view. So catalog commits of dbt and merges take turns.

    Re-entrant within a thread."""
    depth = getattr(_depth, "n", 0)
    if depth:
        _depth.n = depth + 1
        try:
            yield
        finally:
            _depth.n = depth
        return
    with ExitStack() as stack:
        if is_lake(cfg):
            stack.callback(merge_lock(cfg).close)
        else:
            stack.enter_context(_file_lock(cfg, fcntl.LOCK_EX, who))
        _depth.n = 1
        try:
            yield
        finally:
            _depth.n = 0


@contextmanager
def read_lock(cfg: hqms_config.Config, who: str = "a warehouse reader") -> Iterator[None]:
    """For readers that must not fail while a writer holds a DuckDB file (DuckDB refuses even a
    read-only attach then): a shared ``flock``, so readers wait for the writer and not for each
    other. A lake's readers read a snapshot and need nothing."""
    if getattr(_depth, "n", 0) or is_lake(cfg):
        yield
        return
    with _file_lock(cfg, fcntl.LOCK_SH, who):
        yield


#: merge connection (id) → what holds its write lock (:func:`open_for_merge`).
_held: dict[int, ExitStack] = {}


def open_for_merge(con: duckdb.DuckDBPyConnection, cfg: hqms_config.Config, who: str = "an ingest merge") -> None:
    """Attach the warehouse to ``con`` (a staging connection) as its default catalog, for one
    merge, after taking the :func:`write_lock` (released by :func:`close_for_merge`)."""
    with ExitStack() as stack:
        stack.enter_context(write_lock(cfg, who))
        attach(con, cfg)
        use(con, cfg)
        _held[id(con)] = stack.pop_all()


def close_for_merge(con: duckdb.DuckDBPyConnection, alias: str = "warehouse") -> None:
    """Detach the warehouse from ``con`` and release its merge lock."""
    try:
        con.execute("USE memory")
        con.execute(f"DETACH {alias}")
    finally:
        held = _held.pop(id(con), None)
        if held is not None:
            held.close()


def connect(cfg: hqms_config.Config, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection whose default catalog is the warehouse (``warehouse``); schema and macros
    in place when writable (on a lake, created under the merge lock: two first attaches would
    both create the tables).

    A writer of a DuckDB file holds the file until it closes the connection: open it inside
    ``with write_lock(cfg):``, and close it there."""
    con = duckdb.connect()
    try:
        if read_only:
            attach(con, cfg, read_only=True)
            con.execute("USE warehouse")
        else:
            with write_lock(cfg):
                attach(con, cfg)
                use(con, cfg)
    except BaseException:
        con.close()
        raise
    return con
