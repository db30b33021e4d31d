"""Publish the marts for analysts: Parquet in the marts bucket and a read-only DuckDB snapshot.

Analysts never open the live warehouse (DuckDB allows one writer, and the ingest or a dbt build
may hold it at any time). After each build this module copies every published mart out of the
warehouse, applying the small-cell rule, into

* ``<marts bucket>/<mart>/<mart>.parquet`` (and a local copy under ``marts_dir/parquet``),
* ``marts_dir/hqms_marts.duckdb`` — written to a temporary file, made read-only, then atomically
  renamed over the previous snapshot, so a reader sees the old file or the new one, never half,
* ``marts_dir/publish.json`` / ``<bucket>/manifest.json`` — what was published, when, how many rows.

Small-cell rule (documented in docs/marts.md): in everything published, a count of patients or
records between 1 and ``SMALL_CELL - 1`` is replaced by NULL, and so is every value derived from
such a count (costs, averages, rates); the row's ``small_cells_suppressed`` flag says it
happened. Zero is not suppressed. The warehouse marts keep exact counts for the secure zone.
Which columns are counts, and which values derive from which count, is declared in the marts'
dbt YAML (``config.meta.small_cell: count`` / ``config.meta.small_cell_base: <count column>``),
so the documentation and this code read one definition.
"""
from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import yaml

from hqms import config as hqms_config
from hqms import warehouse_attach
from hqms.cli import UserError
from hqms.marts.dbt import PROJECT_DIR

#: Counts below this (and above zero) are suppressed in published exports.
SMALL_CELL = 5
SNAPSHOT_NAME = "hqms_marts.duckdb"
MARTS_MODELS_DIR = PROJECT_DIR / "models" / "marts"


@dataclass(frozen=True)
class MartSpec:
    """One published mart and its small-cell columns (from the dbt YAML)."""

    name: str
    counts: tuple[str, ...] = ()
    #: column → the counts it derives from (a rate: numerator and denominator), suppressed when
    #: any of them is small — a published rate times a published denominator gives the numerator
    derived: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishedMart:
    name: str
    rows: int
    suppressed_rows: int
    parquet_path: str
    object_key: str | None


@dataclass(frozen=True)
class PublishResult:
    published_at: str
    snapshot_path: str
    marts: list[PublishedMart]
    not_built: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


def catalog(models_dir: Path = MARTS_MODELS_DIR) -> list[MartSpec]:
    """Marts with ``config.meta.publish: true`` in the dbt YAML, in file order.

    ``meta.small_cell_like: <mart>`` (region roll-ups) inherits that mart's small-cell columns,
    so a count added to the per-hospital mart is suppressed in its roll-up too.
    """
    specs: list[MartSpec] = []
    like: dict[str, str] = {}
    for path in sorted(models_dir.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for model in doc.get("models") or []:
            meta = (model.get("config") or {}).get("meta") or {}
            if not meta.get("publish"):
                continue
            counts, derived = [], {}
            for col in model.get("columns") or []:
                col_meta = (col.get("config") or {}).get("meta") or {}
                if col_meta.get("small_cell") == "count":
                    counts.append(col["name"])
                if base := col_meta.get("small_cell_base"):
                    derived[col["name"]] = tuple([base] if isinstance(base, str) else base)
            if meta.get("small_cell_like"):
                like[model["name"]] = meta["small_cell_like"]
            specs.append(MartSpec(model["name"], tuple(counts), derived))
    by_name = {s.name: s for s in specs}
    return [MartSpec(s.name, s.counts + by_name[like[s.name]].counts,
                     {**by_name[like[s.name]].derived, **s.derived})
            if s.name in like else s for s in specs]


def _small(column: str) -> str:
    return f'("{column}" BETWEEN 1 AND {SMALL_CELL - 1})'


def suppressed_select(spec: MartSpec, columns: list[str], source: str) -> str:
    """SELECT over ``source`` with the small-cell rule applied and the row flag appended."""
    unknown = (set(spec.counts) | set(spec.derived) | {b for bases in spec.derived.values() for b in bases}) \
        - set(columns)
    if unknown:
        raise ValueError(f"{spec.name}: small-cell columns not in the table: {sorted(unknown)}")
    exprs = []
    for col in columns:
        if col in spec.counts:
            exprs.append(f'CASE WHEN {_small(col)} THEN NULL ELSE "{col}" END AS "{col}"')
        elif col in spec.derived:
            small = " OR ".join(_small(base) for base in spec.derived[col])
            exprs.append(f'CASE WHEN {small} THEN NULL ELSE "{col}" END AS "{col}"')
        else:
            exprs.append(f'"{col}"')
    flag = " OR ".join(_small(c) for c in spec.counts) or "FALSE"
    exprs.append(f"coalesce({flag}, FALSE) AS small_cells_suppressed")
    return "SELECT " + ", ".join(exprs) + f" FROM {source}"


def _table_columns(con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_catalog = 'wh' "
        "AND table_schema = 'marts' AND table_name = ? ORDER BY ordinal_position", [name]).fetchall()
    return [r[0] for r in rows]


def _attach_warehouse(con: duckdb.DuckDBPyConnection, cfg: hqms_config.Config) -> None:
    """The live warehouse, read-only, as catalog ``wh`` (fails fast while a writer holds it)."""
    try:
        warehouse_attach.attach(con, cfg, "wh", read_only=True)
    except warehouse_attach.WarehouseUnavailable as exc:
        raise UserError(str(exc)) from exc


def _make_read_only(path: Path) -> None:
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def write_exports(cfg: hqms_config.Config, specs: list[MartSpec], published_at: str
                  ) -> tuple[Path, list[tuple[MartSpec, int, int, Path]]]:
    """Suppressed copies of the marts: the snapshot file and one Parquet file per mart.

    Marts not built yet are left out (the daily DAG may publish before the first monthly build).
    """
    cfg.marts_dir.mkdir(parents=True, exist_ok=True)
    parquet_dir = cfg.marts_dir / "parquet"
    parquet_dir.mkdir(exist_ok=True)
    final = cfg.marts_dir / SNAPSHOT_NAME
    tmp = cfg.marts_dir / f".{SNAPSHOT_NAME}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    written: list[tuple[MartSpec, int, int, Path]] = []
    con = duckdb.connect(str(tmp))
    try:
        _attach_warehouse(con, cfg)
        con.execute("CREATE SCHEMA marts")
        for spec in specs:
            columns = _table_columns(con, spec.name)
            if not columns:  # not built yet (e.g. monthly marts before the first monthly build)
                continue
            con.execute(f"CREATE TABLE marts.{spec.name} AS "
                        + suppressed_select(spec, columns, f"wh.marts.{spec.name}"))
            rows, suppressed = con.execute(
                f"SELECT count(*), count(*) FILTER (WHERE small_cells_suppressed) FROM marts.{spec.name}"
            ).fetchone()
            parquet = parquet_dir / f"{spec.name}.parquet"
            part = parquet.with_suffix(f".parquet.{os.getpid()}.tmp")
            con.execute(f"COPY marts.{spec.name} TO '{part}' (FORMAT parquet, COMPRESSION zstd)")
            os.replace(part, parquet)
            written.append((spec, rows, suppressed, parquet))
        con.execute("CREATE TABLE marts.publish_info (mart VARCHAR, row_count BIGINT, "
                    "suppressed_rows BIGINT, small_cell_threshold INTEGER, published_at TIMESTAMPTZ)")
        con.executemany("INSERT INTO marts.publish_info VALUES (?, ?, ?, ?, CAST(? AS TIMESTAMPTZ))",
                        [[s.name, n, sup, SMALL_CELL, published_at] for s, n, sup, _ in written])
        con.execute("DETACH wh")
        con.execute("CHECKPOINT")
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        raise
    con.close()
    _make_read_only(tmp)
    os.replace(tmp, final)
    return final, written


def publish(cfg: hqms_config.Config | None = None, *, upload: bool = True) -> PublishResult:
    """Export every published mart (suppressed) locally and, unless ``upload`` is off, to S3."""
    cfg = cfg or hqms_config.load()
    specs = catalog()
    published_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    snapshot, written = write_exports(cfg, specs, published_at)
    store = None
    bucket = cfg.buckets["marts"]
    if upload:
        from hqms.objectstore import ObjectStore

        store = ObjectStore.from_config(cfg)
        store.ensure_buckets()
    marts = []
    for spec, rows, suppressed, path in written:
        key = None
        if store is not None:
            key = f"{spec.name}/{spec.name}.parquet"
            store.put_file(bucket, key, path, metadata={
                "rows": str(rows), "published-at": published_at, "small-cell-threshold": str(SMALL_CELL)})
        marts.append(PublishedMart(spec.name, rows, suppressed, str(path), key))
    built = {m.name for m in marts}
    result = PublishResult(published_at, str(snapshot), marts, [s.name for s in specs if s.name not in built])
    manifest = cfg.marts_dir / "publish.json"
    manifest.write_text(json.dumps(result.as_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
    if store is not None:
        store.put_file(bucket, f"snapshot/{SNAPSHOT_NAME}", snapshot, metadata={"published-at": published_at})
        store.put_file(bucket, "manifest.json", manifest, metadata={"published-at": published_at})
    return result
