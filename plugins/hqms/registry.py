"""Upload registry: the system of record for every upload's state and its error list.

SQLAlchemy Core on ``cfg.registry_url``: a SQLite file under HQMS_HOME by default (WAL + busy
timeout, so many CLI/Airflow processes submit and read at once), Postgres in production. It is
deliberately not the DuckDB warehouse: DuckDB admits one writing process, and a hospital's submit
or a data manager's ``hqms uploads`` must never wait for (or fail because of) an ingest.

Timestamps are stored as ISO-8601 UTC strings (``2026-01-02T03:04:05+00:00``): identical on every
backend and they sort as text.

Status life cycle::

    intake ── rejected                      (zip rules, bad org code; nothing landed)
           ── duplicate                     (same bytes already accepted for the org)
           ── landed → processing → processed | partially_accepted | rejected   (ingest)
                  ↑            ├──→ landed   (its run died or left it for retry: claimed again)
                  └────────────┴──→ failed   (it alone broke a run HQMS_MAX_ATTEMPTS times:
                                              the data team's turn; ``hqms reprocess`` re-lands it)

Claims and deaths (why the columns ``claimed_by``, ``heartbeat_at``, ``in_flight``, ``suspect``
and ``failures`` exist): a run that dies (kill -9, OOM, reboot) cannot say which of its uploads
killed it, and charging all of them spent the attempts of up to 200 innocent uploads. So a run
*owns* its claims (``claimed_by``: host and locked run folder, :mod:`hqms.workdir`), keeps them
alive with a heartbeat, and marks each upload ``in_flight`` exactly while it fetches, stages,
validates or merges it. :meth:`Registry.release_dead` hands a dead run's claims back at once
(same host: its folder lock is gone; other hosts: no heartbeat for ``lease``; always: the stale
backstop) and charges a *failure* only to an upload that was alone in flight; uploads that were in
flight together become *suspects* and are run in halves (bisection) until the one that kills
runs alone. ``attempts`` counts claims (information only); ``failures`` decides ``failed``.

At most one *accepted* upload (landed, processing, processed, partially_accepted) exists per
(org_code, sha256): a partial unique index enforces it, so two concurrent submits of the same
bytes cannot both land.
"""
from __future__ import annotations

import contextlib
import functools
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hqms import config, identifiers
from hqms.errors import UserError
from hqms.validators import id_card_valid

STATUSES = ("landed", "processing", "processed", "partially_accepted", "rejected", "duplicate", "failed")
TERMINAL = ("processed", "partially_accepted", "rejected", "duplicate")
#: Statuses that "own" their bytes: a later upload of the same sha256 by the org is a duplicate.
ACCEPTED = ("landed", "processing", "processed", "partially_accepted")
STAGES = ("intake", "ingest")
CHANNELS = ("web", "tran")
SEVERITIES = ("error", "warning")
#: A ``processing`` claim older than this is presumed crashed and handed out again.
_INSERT_CHUNK = 5000

metadata = sa.MetaData()

uploads = sa.Table(
    "uploads", metadata,
    sa.Column("upload_id", sa.String(32), primary_key=True),
    sa.Column("stream", sa.String(16)),  # NULL when the zip was rejected before it was known
    sa.Column("org_code", sa.String(64), nullable=False),
    sa.Column("uploader", sa.String(128), nullable=False),
    sa.Column("channel", sa.String(8), nullable=False),
    sa.Column("file_name", sa.String(255), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("received_at", sa.String(32), nullable=False),
    sa.Column("object_key", sa.String(512)),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("stage", sa.String(8), nullable=False),
    sa.Column("message_zh", sa.Text),
    sa.Column("message_en", sa.Text),
    sa.Column("record_count", sa.Integer),
    sa.Column("conforming_count", sa.Integer),
    sa.Column("duplicate_of", sa.String(32)),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),  # claims, for information
    sa.Column("updated_at", sa.String(32), nullable=False),
    # failures charged to this upload alone (a death or crash while it ran alone); see the top
    sa.Column("failures", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("claimed_by", sa.String(512)),  # owner of a processing claim: host|run folder
    sa.Column("heartbeat_at", sa.String(32)),  # the owner's last sign of life
    sa.Column("in_flight", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column("suspect", sa.Integer, nullable=False, default=0, server_default="0"),  # died among N
)
sa.Index("ix_uploads_org_received", uploads.c.org_code, uploads.c.received_at)
sa.Index("ix_uploads_status_received", uploads.c.status, uploads.c.received_at)
sa.Index("ix_uploads_received", uploads.c.received_at)
_accepted = uploads.c.status.in_(ACCEPTED)
sa.Index("uq_uploads_accepted_sha", uploads.c.org_code, uploads.c.sha256, unique=True,
         sqlite_where=_accepted, postgresql_where=_accepted)

upload_errors = sa.Table(
    "upload_errors", metadata,
    sa.Column("upload_id", sa.String(32), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("file_name", sa.String(255)),
    sa.Column("row", sa.Integer),  # 1-based data row (header excluded); NULL = file level
    sa.Column("column_code", sa.String(64)),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("check_id", sa.String(128)),
    sa.Column("severity", sa.String(8), nullable=False),
    sa.Column("message_zh", sa.Text, nullable=False),
    sa.Column("message_en", sa.Text, nullable=False),
    sa.Column("value_masked", sa.Text),
)


@dataclass(frozen=True)
class ErrorRecord:
    """One reported problem: a file (row None), a row (column None) or a cell."""

    file_name: str
    row: int | None
    column: str | None
    rule: str
    message_zh: str
    message_en: str
    severity: str = "error"
    check_id: str | None = None
    value_masked: str | None = None


class AlreadyAccepted(Exception):
    """The same bytes are already accepted for this org (raised by :meth:`Registry.new_upload`)."""

    def __init__(self, original: dict) -> None:
        super().__init__(f"already accepted as {original['upload_id']}")
        self.original = original


#: Longest mask shown in full; a longer value (a damaged cell of 100,000 characters) is shown as
#: its first and last character around eight ``*`` and its length.
MASK_CAP = 32


def mask_value(value: str) -> str:
    """Personal value as shown in error reports: first and last character kept, rest ``*``."""
    if len(value) <= 2:
        return "*" * len(value)
    if len(value) > MASK_CAP:
        return f"{value[0]}{'*' * 8}{value[-1]}（共{len(value):,}字符）"
    return value[0] + "*" * (len(value) - 2) + value[-1]


_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_LATIN_NAME = re.compile(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}")


def looks_identifying(value: str) -> bool:
    """Whether a value may identify a person whatever column it was sent in.

    Why: an export whose header labels are shifted against its data (or a hand-edited file) puts
    names, ID and phone numbers into columns the spec calls non-personal, and those values then
    fail code, length or type rules and would be echoed in full. Shapes caught: an identifier, or six
    or more digits in a row, in any width or grouping (:func:`hqms.identifiers.may_identify`), any
    Chinese character (a name or an address), two Latin words (a name in pinyin), or more than 40
    characters (free text). Cost: such values are shown masked even when harmless (``急诊``, ``35岁``); the rule and the file-level hints still
    say what is wrong.
    """
    if len(value) > 40 or _HAN.search(value) or _LATIN_NAME.search(value):
        return True
    return identifiers.may_identify(value)


#: An 18- or 15-digit run (an ID number when it passes its check) or an 11-digit mobile number,
#: standing alone (not inside a longer code such as a 统一社会信用代码).
_ID_OR_MOBILE = re.compile(r"(?<![0-9A-Za-z])(?:\d{17}[\dXx]|\d{15}|1[3-9]\d{9})(?![0-9A-Za-z])")


def redact_identifiers(name: str) -> str:
    """A file name as the system stores it: valid ID numbers and mobile numbers in it masked.

    Why: a re-send of one patient's record is sometimes named after the patient, and the name is
    stored everywhere (registry, ``ops``, every warehouse row's ``_source_file``, the vault
    manifest). Only shapes that cannot be a date or an org code are touched, so the day and
    prefix the pipeline reads from a name survive; a person's name in Chinese cannot be told
    from a word and stays (docs/upload-report.md)."""
    def masked(m: re.Match[str]) -> str:
        text = m.group(0)
        return mask_value(text) if len(text) == 11 or id_card_valid(identifiers.normalise(text)[0]) else text
    return _ID_OR_MOBILE.sub(masked, name)


def shown_value(value: str, personal: bool) -> str:
    """A failing cell's value as error reports store and show it: masked when its column is
    personal or the value itself looks identifying (:func:`looks_identifying`)."""
    return mask_value(value) if personal or looks_identifying(value) else value


def utc_iso(moment: datetime | None = None) -> str:
    """The stored timestamp form; naive datetimes are refused (their zone is unknown)."""
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def make_upload_id(received_at: datetime | None = None) -> str:
    """``u`` + UTC yyyymmddHHMMSS + 8 random hex: unique, and sorts by receipt time."""
    moment = (received_at or datetime.now(UTC)).astimezone(UTC)
    return f"u{moment:%Y%m%d%H%M%S}{secrets.token_hex(4)}"


_BUSY_WAIT_S = 30


def _switch_to_wal(cur: sqlite3.Cursor) -> None:
    """Put the file in WAL mode (a persistent property of the file: a no-op on one already in
    it; an in-memory database stays as it is). Retried here because SQLite answers "database is
    locked" at once, without its busy wait, when another process holds a write transaction on a
    file still in rollback mode (waiting could deadlock): processes racing on a fresh registry
    met that."""
    deadline = time.monotonic() + _BUSY_WAIT_S
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@functools.cache
def _engine(url: str) -> Engine:
    """One engine per URL and process. SQLite: no pooling (fork-safe under Airflow), WAL, 30 s
    busy wait, and BEGIN IMMEDIATE for writes so read-then-write never hits SQLITE_BUSY."""
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool,
                              connect_args={"timeout": _BUSY_WAIT_S})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_con, _record) -> None:
        dbapi_con.isolation_level = None  # let the "begin" hook below issue BEGIN itself
        cur = dbapi_con.cursor()
        cur.execute(f"PRAGMA busy_timeout={_BUSY_WAIT_S * 1000}")
        _switch_to_wal(cur)
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(con: Connection) -> None:
        con.exec_driver_sql("BEGIN IMMEDIATE" if con.get_execution_options().get("write")
                            else "BEGIN")

    return engine


class RegistryCorrupt(UserError):
    """The registry database cannot be read (garbage bytes, a truncated or damaged file).

    A :class:`~hqms.errors.UserError`: the CLI prints it without a traceback (exit 2) and an Airflow
    task fails with it as its message."""

    def __init__(self, url: str, exc: BaseException) -> None:
        detail = str(getattr(exc, "orig", exc)).splitlines()[0][:200]
        super().__init__(
            f"the upload registry {config._mask_url(url)} is damaged and cannot be read ({detail}). "
            "Nothing was changed. Recover: stop ingest, move the file aside (keep it for analysis), "
            "restore the newest backup (or start empty), then run `hqms registry recover` to "
            "re-register every landed or vaulted upload the registry does not know "
            "(docs/operations.md, Registry loss)")


#: What SQLite says about a file that is not (or no longer) a database.
_CORRUPT_MARKERS = ("file is not a database", "malformed", "file is encrypted", "not a database")


@contextlib.contextmanager
def _guard(url: str) -> Iterator[None]:
    """Turn a damaged registry's driver errors into :class:`RegistryCorrupt`."""
    try:
        yield
    except sa.exc.DatabaseError as exc:
        if any(m in str(exc.orig).lower() for m in _CORRUPT_MARKERS):
            raise RegistryCorrupt(url, exc) from None
        raise


#: PostgreSQL advisory-lock key of schema creation (any constant; "HQMS" in ASCII).
_SCHEMA_LOCK = 0x48514D53


@functools.cache
def _ensure_schema(url: str) -> None:
    """Create missing tables and columns once per process (inside a write transaction:
    processes racing on a fresh SQLite file take turns; on PostgreSQL an advisory lock makes them).
    Columns added by later versions are added to an existing table with a plain
    ``ALTER TABLE … ADD COLUMN`` (SQLite and Postgres)."""
    with _guard(url), _engine(url).connect() as con:
        con.execution_options(write=True)
        with con.begin():
            if con.dialect.name == "postgresql":
                con.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
            metadata.create_all(con)
            present = {c["name"] for c in sa.inspect(con).get_columns(uploads.name)}
            for column in uploads.columns:
                if column.name not in present:
                    ddl = sa.schema.CreateColumn(column).compile(dialect=con.dialect)
                    con.exec_driver_sql(f"ALTER TABLE {uploads.name} ADD COLUMN {ddl}")


class Registry:
    """Upload records and their errors. Cheap to construct; share or re-create freely."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)
        _ensure_schema(url)

    @classmethod
    def from_config(cls, cfg: config.Config | None = None) -> Registry:
        cfg = cfg or config.load()
        cfg.ensure_dirs()
        return cls(cfg.registry_url)

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with _guard(self.url), self.engine.connect() as con:
            con.execution_options(write=True)
            with con.begin():
                yield con

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with _guard(self.url), self.engine.connect() as con:
            yield con

    # --- uploads ------------------------------------------------------------------------------

    def new_upload(self, *, org_code: str, uploader: str, channel: str, file_name: str,
                   sha256: str, size_bytes: int, status: str, stage: str = "intake",
                   stream: str | None = None, received_at: datetime | None = None,
                   object_key: str | None = None, message_zh: str | None = None,
                   message_en: str | None = None, duplicate_of: str | None = None,
                   upload_id: str | None = None) -> str:
        """Insert an upload record and return its id.

        Raises :class:`AlreadyAccepted` when ``status`` is an accepted one and the org already
        has an accepted upload with the same sha256 (the loser of a concurrent double submit).
        """
        _check(status, STATUSES, "status")
        _check(stage, STAGES, "stage")
        _check(channel, CHANNELS, "channel")
        received = received_at or datetime.now(UTC)
        upload_id = upload_id or make_upload_id(received)
        row = dict(upload_id=upload_id, stream=stream, org_code=org_code[:64],
                   uploader=uploader[:128], channel=channel, file_name=file_name[:255],
                   sha256=sha256, size_bytes=size_bytes, received_at=utc_iso(received),
                   object_key=object_key, status=status, stage=stage, message_zh=message_zh,
                   message_en=message_en, duplicate_of=duplicate_of, attempts=0,
                   updated_at=utc_iso())
        try:
            with self._write() as con:
                con.execute(uploads.insert().values(**row))
        except sa.exc.IntegrityError:
            original = self.find_by_sha(org_code, sha256) if status in ACCEPTED else None
            if original is None:
                raise
            raise AlreadyAccepted(original) from None
        return upload_id

    def get(self, upload_id: str) -> dict | None:
        with self._read() as con:
            row = con.execute(sa.select(uploads).where(uploads.c.upload_id == upload_id)).first()
        return dict(row._mapping) if row else None

    def known(self, upload_ids: Iterable[str]) -> set[str]:
        """Which of these upload ids the registry holds (in chunks: a landing bucket may hold
        thousands of objects)."""
        ids, found = list(upload_ids), set()
        with self._read() as con:
            for start in range(0, len(ids), 500):
                found.update(con.scalars(sa.select(uploads.c.upload_id)
                                         .where(uploads.c.upload_id.in_(ids[start:start + 500]))))
        return found

    def find_by_sha(self, org_code: str, sha256: str) -> dict | None:
        """The org's accepted upload of exactly these bytes, if any."""
        query = (sa.select(uploads)
                 .where(uploads.c.org_code == org_code, uploads.c.sha256 == sha256, _accepted)
                 .order_by(uploads.c.received_at, uploads.c.upload_id).limit(1))
        with self._read() as con:
            row = con.execute(query).first()
        return dict(row._mapping) if row else None

    def list_uploads(self, org: str | None = None, since: datetime | None = None,
                     status: str | None = None, stream: str | None = None,
                     limit: int | None = None) -> list[dict]:
        """Upload records, newest first (by receipt time)."""
        query = sa.select(uploads).order_by(uploads.c.received_at.desc(),
                                            uploads.c.upload_id.desc())
        if org:
            query = query.where(uploads.c.org_code == org)
        if since:
            query = query.where(uploads.c.received_at >= utc_iso(since))
        if status:
            query = query.where(uploads.c.status == status)
        if stream:
            query = query.where(uploads.c.stream == stream)
        if limit:
            query = query.limit(limit)
        with self._read() as con:
            return [dict(r._mapping) for r in con.execute(query)]

    def pending(self, limit: int | None = None) -> list[str]:
        """Ids of ``landed`` uploads, oldest first: what the next runs should acquire."""
        query = (sa.select(uploads.c.upload_id).where(uploads.c.status == "landed")
                 .order_by(uploads.c.received_at, uploads.c.upload_id))
        if limit:
            query = query.limit(limit)
        with self._read() as con:
            return list(con.scalars(query))

    def release_dead(self, alive: Callable[[str], bool | None], max_attempts: int,
                     lease: timedelta, stale_after: timedelta) -> list[dict]:
        """Hand the claims of dead runs back (``landed``, or ``failed`` when exhausted).

        A claim is dead when ``alive(claimed_by)`` says False (same host: the run folder's lock
        is gone), when its owner gave no heartbeat for ``lease`` (another host, or no owner yet),
        or, as the backstop, when it made no progress for ``stale_after`` (a hung run). Deaths
        are charged as the module docstring says; returns the released rows as they are now.
        """
        now = datetime.now(UTC)
        with self._write() as con:
            rows = [dict(r._mapping) for r in con.execute(
                sa.select(uploads).where(uploads.c.status == "processing")
                .with_for_update(skip_locked=True))]  # rows a live run is writing: it lives
            dead = [r for r in rows if _claim_dead(r, alive, now, lease, stale_after)]
            return self._after_death(con, dead, max_attempts, status="landed")

    def acquire(self, upload_ids: Iterable[str], owner: str, alive: Callable[[str], bool | None],
                max_attempts: int) -> list[dict]:
        """Claim these uploads for the live run ``owner`` (attempts + 1): landed ones, and
        processing ones whose owner is dead or unknown (their death charged first, as in
        :meth:`release_dead`). Uploads a live run holds, or in any other state, are skipped.
        One transaction, rows locked (FOR UPDATE on Postgres), statuses re-checked."""
        now = utc_iso()
        with self._write() as con:
            rows = [dict(r._mapping) for r in con.execute(
                sa.select(uploads).where(uploads.c.upload_id.in_(list(upload_ids)),
                                         uploads.c.status.in_(("landed", "processing")))
                .with_for_update(skip_locked=True))]  # rows another run is taking right now
            taken = [r for r in rows if r["status"] == "landed"
                     or not r["claimed_by"] or alive(r["claimed_by"]) is not True]
            dead = [r for r in taken if r["status"] == "processing"]
            failed = {r["upload_id"] for r in self._after_death(con, dead, max_attempts, status="processing")
                      if r["status"] == "failed"}
            ids = [r["upload_id"] for r in taken if r["upload_id"] not in failed]
            if not ids:
                return []
            stmt = (uploads.update()
                    .where(uploads.c.upload_id.in_(ids), uploads.c.status.in_(("landed", "processing")))
                    .values(status="processing", stage="ingest", attempts=uploads.c.attempts + 1,
                            claimed_by=owner, heartbeat_at=now, in_flight=False, updated_at=now)
                    .returning(*uploads.c))
            acquired = [dict(r._mapping) for r in con.execute(stmt)]
        return sorted(acquired, key=lambda r: (r["received_at"], r["upload_id"]))

    def _after_death(self, con: Connection, dead: list[dict], max_attempts: int, status: str) -> list[dict]:
        """Apply a dead owner's accounting to its claims: a failure to the upload alone in
        flight, suspicion (how many were in flight) to uploads in flight together, ``failed``
        once failures reach ``max_attempts``; the rest become ``status``."""
        released = []
        for upload_id, values in _death_values(dead, max_attempts).items():
            if values.get("status") != "failed":
                values["status"] = status  # a charged one not yet exhausted goes the same way
            stmt = (uploads.update()
                    .where(uploads.c.upload_id == upload_id, uploads.c.status == "processing")
                    .values(**values, updated_at=utc_iso()).returning(*uploads.c))
            released += [dict(r._mapping) for r in con.execute(stmt)]
        return released

    def heartbeat(self, owner: str) -> int:
        """The live run ``owner`` still holds its claims; returns how many."""
        with self._write() as con:
            return con.execute(uploads.update()
                               .where(uploads.c.claimed_by == owner, uploads.c.status == "processing")
                               .values(heartbeat_at=utc_iso())).rowcount

    def set_in_flight(self, upload_ids: Iterable[str], flying: bool) -> None:
        """Mark uploads as being worked on right now (or no longer): what a death charges."""
        ids = list(upload_ids)
        with self._write() as con:
            con.execute(uploads.update()
                        .where(uploads.c.upload_id.in_(ids), uploads.c.status == "processing")
                        .values(in_flight=flying, updated_at=utc_iso()))

    def release(self, left: dict[str, tuple[str, str] | None], max_attempts: int) -> list[dict]:
        """A live run hands back uploads it could not finish. ``left`` maps each id to None (not
        its fault: an S3 outage; nothing charged) or to the (zh, en) cause of its failing alone
        (a failure charged; the cause is what its hospital reads, ``failed`` once exhausted)."""
        with self._write() as con:
            rows = [dict(r._mapping) for r in con.execute(
                sa.select(uploads).where(uploads.c.upload_id.in_(list(left)), uploads.c.status == "processing")
                .with_for_update())]
            for row in rows:
                values: dict[str, object] = dict(status="landed", claimed_by=None, in_flight=False,
                                                 updated_at=utc_iso())
                if (cause := left[row["upload_id"]]) is not None:
                    values.update(_charge(row["failures"] + 1, cause, max_attempts))
                con.execute(uploads.update().where(uploads.c.upload_id == row["upload_id"]).values(**values))
        return [self.get(r["upload_id"]) for r in rows]

    def claim_pending(self, limit: int | None = None,
                      stale_after: timedelta | None = None) -> list[dict]:
        """Hand out uploads to ingest, oldest first, marking them ``processing`` (attempts + 1).

        Takes ``landed`` uploads and ``processing`` ones whose claim is older than
        ``stale_after`` (the worker crashed). The pick (SKIP LOCKED on Postgres) and the UPDATE …
        RETURNING run in one transaction, with the status re-checked in the UPDATE's WHERE, so two
        schedulers never claim the same upload. Its claims have no owner, so they end with the
        heartbeat lease (:meth:`release_dead`); the ingest itself no longer uses it but
        :meth:`acquire`, whose owner's death is seen at once. ``stale_after`` defaults to
        ``HQMS_STALE_CLAIM_SECONDS`` (:class:`hqms.config.Config`, where every default lives).
        """
        if stale_after is None:
            stale_after = timedelta(seconds=config.load().stale_claim_seconds)
        now = utc_iso()
        stale = utc_iso(datetime.now(UTC) - stale_after)
        claimable = sa.or_(uploads.c.status == "landed",
                           sa.and_(uploads.c.status == "processing", uploads.c.updated_at <= stale))
        pick = (sa.select(uploads.c.upload_id).where(claimable)
                .order_by(uploads.c.received_at, uploads.c.upload_id))
        if limit:
            pick = pick.limit(limit)
        pick = pick.with_for_update(skip_locked=True)
        # Pick, then update, in one transaction: as a subquery of the UPDATE, PostgreSQL re-ran
        # the LIMITed pick for rows a concurrent claim had changed and handed out more than
        # ``limit`` (tests/test_registry.py on PostgreSQL).
        with self._write() as con:
            ids = list(con.execute(pick).scalars())
            stmt = (uploads.update()
                    .where(uploads.c.upload_id.in_(ids), claimable)
                    .values(status="processing", stage="ingest", attempts=uploads.c.attempts + 1,
                            claimed_by=None, heartbeat_at=now, in_flight=False, updated_at=now)
                    .returning(*uploads.c))
            rows = [dict(r._mapping) for r in con.execute(stmt)] if ids else []
        return sorted(rows, key=lambda r: (r["received_at"], r["upload_id"]))

    def set_status(self, upload_id: str, status: str, message_zh: str | None = None,
                   message_en: str | None = None, record_count: int | None = None,
                   conforming_count: int | None = None, stage: str = "ingest") -> None:
        """Record an ingest outcome (or progress). Only the given fields change."""
        _check(status, STATUSES, "status")
        _check(stage, STAGES, "stage")
        values: dict[str, object] = dict(status=status, stage=stage, updated_at=utc_iso())
        if status != "processing":  # the claim ends with its outcome
            values.update(claimed_by=None, in_flight=False)
        for name, value in (("message_zh", message_zh), ("message_en", message_en),
                            ("record_count", record_count), ("conforming_count", conforming_count)):
            if value is not None:
                values[name] = value
        with self._write() as con:
            result = con.execute(uploads.update().where(uploads.c.upload_id == upload_id)
                                 .values(**values))
        if result.rowcount != 1:
            raise KeyError(f"unknown upload {upload_id}")

    def reset_for_reprocess(self, upload_id: str, message_zh: str, message_en: str) -> None:
        """An operator lands the upload again: ``landed``, its failures and suspicion cleared
        (the data team has looked at it), no owner."""
        with self._write() as con:
            con.execute(uploads.update().where(uploads.c.upload_id == upload_id)
                        .values(status="landed", stage="ingest", failures=0, suspect=0, claimed_by=None,
                                in_flight=False, message_zh=message_zh, message_en=message_en,
                                updated_at=utc_iso()))

    # --- errors -------------------------------------------------------------------------------

    def replace_errors(self, upload_id: str, errors: Iterable[ErrorRecord]) -> None:
        """Make ``errors`` the upload's complete error list (delete + insert in one transaction,
        so a repeated ingest never doubles it). Inserted in chunks: 100 k rows take seconds."""
        numbered = (_error_row(upload_id, seq, e) for seq, e in enumerate(errors, start=1))
        with self._write() as con:
            con.execute(upload_errors.delete().where(upload_errors.c.upload_id == upload_id))
            insert = self._plain_insert(upload_errors)
            while chunk := list(islice(numbered, _INSERT_CHUNK)):
                con.exec_driver_sql(insert, chunk)

    def _plain_insert(self, table: sa.Table) -> str:
        """``INSERT`` in the driver's own placeholder style, run with ``executemany`` on plain
        tuples: about 5x faster than Core's per-row parameter processing."""
        marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(self.engine.dialect.paramstyle)
        if marker is None:
            raise NotImplementedError(f"paramstyle {self.engine.dialect.paramstyle}")
        quote = self.engine.dialect.identifier_preparer.quote
        cols = ", ".join(quote(c.name) for c in table.columns)
        return f"INSERT INTO {quote(table.name)} ({cols}) VALUES ({', '.join([marker] * len(table.columns))})"

    def errors(self, upload_id: str) -> list[dict]:
        """The upload's errors in report order; ``column_code`` is also given as ``column``."""
        query = (sa.select(upload_errors).where(upload_errors.c.upload_id == upload_id)
                 .order_by(upload_errors.c.seq))
        with self._read() as con:
            return [{**r._mapping, "column": r.column_code} for r in con.execute(query)]


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} {value!r} not in {allowed}")


def _error_row(upload_id: str, seq: int, e: ErrorRecord) -> tuple:
    """One ``upload_errors`` row, in table column order."""
    _check(e.severity, SEVERITIES, "severity")
    return (upload_id, seq, e.file_name, e.row, e.column, e.rule, e.check_id, e.severity,
            e.message_zh, e.message_en, e.value_masked)


#: What follows the cause of a charged failure: a retry comes, or (exhausted) people take over.
_RETRY = ("，将自动重试，无需重新上传", "; it will be retried — there is no need to send it again")
_GIVEN_UP = ("；多次处理均未成功，已通知数据管理团队处理，无需重新上传",
             "; processing failed repeatedly: the data team has been alerted and will reprocess it "
             "— there is no need to send it again")
#: The cause of a death while an upload ran alone (no exception to read: the process was killed).
DIED_ALONE = ("处理进程在处理本上传时意外终止", "the ingest process died while processing this upload alone")


def _charge(failures: int, cause: tuple[str, str], max_attempts: int) -> dict[str, object]:
    """Column values of an upload charged its ``failures``-th failure for ``cause``."""
    given_up = failures >= max_attempts
    tail = _GIVEN_UP if given_up else _RETRY
    return dict(failures=failures, status="failed" if given_up else "landed",
                message_zh=cause[0] + tail[0], message_en=cause[1] + tail[1])


def _claim_dead(row: dict, alive: Callable[[str], bool | None], now: datetime,
                lease: timedelta, stale_after: timedelta) -> bool:
    """Whether a ``processing`` claim's owner is gone (see :meth:`Registry.release_dead`)."""
    if row["updated_at"] <= utc_iso(now - stale_after):
        return True
    verdict = alive(row["claimed_by"]) if row["claimed_by"] else None
    if verdict is not None:
        return not verdict
    return (row["heartbeat_at"] or row["updated_at"]) <= utc_iso(now - lease)


def _death_values(dead: list[dict], max_attempts: int) -> dict[str, dict]:
    """Column values for the claims of dead owners, per upload id: the one upload in flight
    alone is charged a failure; uploads in flight together become suspects of that group size
    (the next run bisects them); uploads not in flight are innocent. ``status`` is set only for
    a charged upload (landed or failed); the caller decides the others'."""
    by_owner: dict[str | None, list[dict]] = {}
    for row in dead:
        by_owner.setdefault(row["claimed_by"], []).append(row)
    values: dict[str, dict] = {}
    for rows in by_owner.values():
        flying = sum(1 for r in rows if r["in_flight"])
        for row in rows:
            change: dict[str, object] = dict(claimed_by=None, in_flight=False)
            if row["in_flight"] and flying == 1:
                change.update(_charge(row["failures"] + 1, DIED_ALONE, max_attempts))
            elif row["in_flight"]:
                change["suspect"] = flying
            values[row["upload_id"]] = change
    return values
