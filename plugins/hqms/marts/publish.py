"""Publish the marts for analysts: Parquet in the marts bucket and a read-only DuckDB snapshot.

Analysts never open the live warehouse (DuckDB allows one writer, and the ingest or a dbt build
may hold it at any time). After each build this module copies the analysts' tables out of the
warehouse, suppressing small cells, into

* ``<marts bucket>/<table>/<table>.parquet`` (and a local copy under ``marts_dir/parquet``),
* ``marts_dir/hqms_marts.duckdb`` — written to a temporary file, made read-only, then atomically
  renamed over the previous snapshot, so a reader sees the old file or the new one, never half;
  every table and column carries the description of the dbt YAML (``COMMENT ON``),
* ``marts_dir/publish.json`` / ``<bucket>/manifest.json`` — what was published, when, how many rows.

What is published: the models with ``config.meta.publish: analysts`` — the aggregates by area and
period (country, 南方/北方, province, city × day, epidemiological week, month), the date and week
dimensions and the hospital list. Hospital-level marts (one hospital's day or month) stay in the
warehouse for the roles allowed to read them (administrators, through the web service).

Small cells (docs/marts.md): the aggregates are computed from the exact counts and suppressed
only here, at the published grain, with complementary suppression (:mod:`hqms.marts.suppression`)
so a masked count cannot be recomputed from its row, its parent area or its week and month.
Which columns are counts, which values derive from which count and which columns add up to which
total is declared in the dbt YAML, so the documentation and this code read one definition.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import yaml

from hqms import config as hqms_config
from hqms import warehouse_attach
from hqms.errors import UserError
from hqms.marts.dbt import PROJECT_DIR
from hqms.marts.suppression import SMALL_CELL, RowTotal, SuppressionResult, SuppressionSpec, suppress

SNAPSHOT_NAME = "hqms_marts.duckdb"
#: The administrators' snapshot: the hospital-level marts (``config.meta.publish: administrators``)
#: and the hospital list, exact, for the web service's administrators' pages, which scope every
#: query to the reader's region. Private to the service's owner (0400) and never put in the marts
#: bucket: hospital-level tables only where the reader's role allows them.
ADMIN_SNAPSHOT_NAME = "hqms_marts_admin.duckdb"
MODELS_DIR = PROJECT_DIR / "models"
#: the audience whose tables this module publishes
AUDIENCE = "analysts"
ADMIN_AUDIENCE = "administrators"
PUBLISH_INFO_COLUMNS = {
    "mart": "Published table.", "row_count": "Its rows.", "suppressed_rows": "Its rows with a masked value.",
    "small_cell_threshold": "Counts from 1 to this minus one are masked.",
    "published_at": "When the snapshot was written (UTC).",
}
FLAG_COMMENT = "true when at least one value of this row is suppressed (NULL): a count of 1–4 or a cell masked with it."


@dataclass(frozen=True)
class MartSpec:
    """One published table: its descriptions and small-cell rules (from the dbt YAML)."""

    name: str
    suppression: SuppressionSpec = field(default_factory=SuppressionSpec)
    description: str = ""
    columns: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishedMart:
    name: str
    rows: int
    suppressed_rows: int
    parquet_path: str
    object_key: str | None
    primary_cells: int = 0
    complementary_cells: int = 0


@dataclass(frozen=True)
class PublishResult:
    published_at: str
    snapshot_path: str
    marts: list[PublishedMart]
    not_built: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


#: ``'{{ doc("name") }}'`` in a description, and the ``{% docs name %}…{% enddocs %}`` blocks of the
#: models folder's Markdown files it names (dbt's doc blocks: columns several models share)
_DOC_REF = re.compile(r"""\{\{\s*doc\(\s*["'](\w+)["']\s*\)\s*\}\}""")
_DOC_BLOCK = re.compile(r"\{%-?\s*docs\s+(\w+)\s*-?%\}(.*?)\{%-?\s*enddocs\s*-?%\}", re.S)


def doc_blocks(models_dir: Path = MODELS_DIR) -> dict[str, str]:
    """Every doc block under ``models_dir`` by name, as dbt reads them for ``doc()``."""
    return {m[1]: m[2].strip() for path in sorted(models_dir.rglob("*.md"))
            for m in _DOC_BLOCK.finditer(path.read_text(encoding="utf-8"))}


def _description(text: object, docs: dict[str, str]) -> str:
    """A description as dbt renders it (doc() references resolved), on one line."""
    resolved = _DOC_REF.sub(lambda m: docs[m[1]], str(text or ""))
    return " ".join(resolved.split())


def _spec(model: dict, docs: dict[str, str]) -> MartSpec:
    meta = (model.get("config") or {}).get("meta") or {}
    counts, derived, columns = [], {}, {}
    for col in model.get("columns") or []:
        col_meta = (col.get("config") or {}).get("meta") or {}
        columns[col["name"]] = _description(col.get("description"), docs)
        if col_meta.get("small_cell") == "count":
            counts.append(col["name"])
        if base := col_meta.get("small_cell_base"):
            derived[col["name"]] = tuple([base] if isinstance(base, str) else base)
    totals = tuple(RowTotal(r["total"], tuple(r["parts"])) for r in meta.get("row_totals") or [])
    return MartSpec(model["name"], SuppressionSpec(tuple(counts), derived, totals),
                    _description(model.get("description"), docs), columns)


def catalog(models_dir: Path = MODELS_DIR, audience: str = AUDIENCE) -> list[MartSpec]:
    """Models with ``config.meta.publish: <audience>`` in the dbt YAML (one file per model,
    beside its SQL), in path order."""
    specs: list[MartSpec] = []
    docs = doc_blocks(models_dir)
    for path in sorted(models_dir.rglob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for model in doc.get("models") or []:
            if ((model.get("config") or {}).get("meta") or {}).get("publish") == audience:
                specs.append(_spec(model, docs))
    return specs


def _table_columns(con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_catalog = 'wh' "
        "AND table_schema = 'marts' AND table_name = ? ORDER BY ordinal_position", [name]).fetchall()
    return [r[0] for r in rows]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _comment(con: duckdb.DuckDBPyConnection, spec: MartSpec, *, suppressed: bool = True) -> None:
    """The dbt YAML's descriptions as COMMENT ON the snapshot's table and columns
    (``duckdb_tables()`` / ``duckdb_columns()`` and DBeaver show them to analysts)."""
    if spec.description:
        con.execute(f"COMMENT ON TABLE marts.{spec.name} IS {_literal(spec.description)}")
    flag = {"small_cells_suppressed": FLAG_COMMENT} if suppressed else {}
    for column, text in {**spec.columns, **flag}.items():
        if text:
            con.execute(f'COMMENT ON COLUMN marts.{spec.name}."{column}" IS {_literal(text)}')


def _attach_warehouse(con: duckdb.DuckDBPyConnection, cfg: hqms_config.Config) -> None:
    """The live warehouse, read-only, as catalog ``wh`` (fails fast while a writer holds it)."""
    try:
        warehouse_attach.attach(con, cfg, "wh", read_only=True)
    except warehouse_attach.WarehouseUnavailable as exc:
        raise UserError(str(exc)) from exc


@contextlib.contextmanager
def _new_snapshot(cfg: hqms_config.Config, name: str, mode: int) -> Iterator[duckdb.DuckDBPyConnection]:
    """A snapshot file under ``marts_dir`` written through a temporary file: the body fills
    ``marts`` from the attached warehouse (``wh``); then it is checkpointed, given ``mode`` and
    renamed over the previous one, so a reader sees the old file or the new one, never half."""
    cfg.marts_dir.mkdir(parents=True, exist_ok=True)
    tmp = cfg.marts_dir / f".{name}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        _attach_warehouse(con, cfg)
        con.execute("CREATE SCHEMA marts")
        yield con
        con.execute("DETACH wh")
        con.execute("CHECKPOINT")
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        raise
    con.close()
    tmp.chmod(mode)
    os.replace(tmp, cfg.marts_dir / name)


def write_exports(cfg: hqms_config.Config, specs: list[MartSpec], published_at: str
                  ) -> tuple[Path, list[tuple[MartSpec, SuppressionResult, Path]]]:
    """Suppressed copies of the published tables: the snapshot file (readable by everyone: the
    analysts') and one Parquet file each.

    Marts not built yet are left out (the daily DAG may publish before the first monthly build).
    """
    parquet_dir = cfg.marts_dir / "parquet"
    written: list[tuple[MartSpec, SuppressionResult, Path]] = []
    with _new_snapshot(cfg, SNAPSHOT_NAME, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH) as con:
        parquet_dir.mkdir(exist_ok=True)
        for spec in specs:
            columns = _table_columns(con, spec.name)
            if not columns:  # not built yet (e.g. monthly marts before the first monthly build)
                continue
            outcome = suppress(con, f"wh.marts.{spec.name}", f"marts.{spec.name}", spec.suppression, columns)
            _comment(con, spec)
            parquet = parquet_dir / f"{spec.name}.parquet"
            part = parquet.with_suffix(f".parquet.{os.getpid()}.tmp")
            con.execute(f"COPY marts.{spec.name} TO '{part}' (FORMAT parquet, COMPRESSION zstd)")
            os.replace(part, parquet)
            written.append((spec, outcome, parquet))
        con.execute("CREATE TABLE marts.publish_info (mart VARCHAR, row_count BIGINT, "
                    "suppressed_rows BIGINT, small_cell_threshold INTEGER, published_at TIMESTAMPTZ)")
        con.execute("COMMENT ON TABLE marts.publish_info IS 'What this snapshot holds: per table its rows, "
                    "the rows with masked cells, the small-cell threshold and when it was published.'")
        for column, text in PUBLISH_INFO_COLUMNS.items():
            con.execute(f"COMMENT ON COLUMN marts.publish_info.{column} IS {_literal(text)}")
        con.executemany("INSERT INTO marts.publish_info VALUES (?, ?, ?, ?, CAST(? AS TIMESTAMPTZ))",
                        [[s.name, o.rows, o.rows_with_masks, SMALL_CELL, published_at] for s, o, _ in written])
    return cfg.marts_dir / SNAPSHOT_NAME, written


def write_admin_snapshot(cfg: hqms_config.Config) -> Path:
    """The administrators' snapshot (:data:`ADMIN_SNAPSHOT_NAME`, the owner's alone): exact copies
    of the hospital-level marts built so far and the hospital list."""
    specs = [s for s in catalog() if s.name == "hospitals"] + catalog(audience=ADMIN_AUDIENCE)
    with _new_snapshot(cfg, ADMIN_SNAPSHOT_NAME, stat.S_IRUSR) as con:
        for spec in specs:
            if _table_columns(con, spec.name):
                con.execute(f"CREATE TABLE marts.{spec.name} AS SELECT * FROM wh.marts.{spec.name}")
                _comment(con, spec, suppressed=False)
    return cfg.marts_dir / ADMIN_SNAPSHOT_NAME


def publish(cfg: hqms_config.Config | None = None, *, upload: bool = True) -> PublishResult:
    """Export every published mart (suppressed) locally and, unless ``upload`` is off, to S3;
    refresh the administrators' snapshot beside it."""
    cfg = cfg or hqms_config.load()
    specs = catalog()
    published_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    # a DuckDB file refuses even read-only attaches while an ingest merges: wait for it
    with warehouse_attach.read_lock(cfg, "marts publish"):
        snapshot, written = write_exports(cfg, specs, published_at)
        write_admin_snapshot(cfg)
    store = None
    bucket = cfg.buckets["marts"]
    if upload:
        from hqms.objectstore import ObjectStore

        store = ObjectStore.from_config(cfg)
        store.ensure_buckets()
    marts = []
    for spec, outcome, path in written:
        key = None
        if store is not None:
            key = f"{spec.name}/{spec.name}.parquet"
            store.put_file(bucket, key, path, metadata={
                "rows": str(outcome.rows), "published-at": published_at, "small-cell-threshold": str(SMALL_CELL)})
        marts.append(PublishedMart(spec.name, outcome.rows, outcome.rows_with_masks, str(path), key,
                                   outcome.primary_cells, outcome.complementary_cells))
    built = {m.name for m in marts}
    result = PublishResult(published_at, str(snapshot), marts, [s.name for s in specs if s.name not in built])
    manifest = cfg.marts_dir / "publish.json"
    manifest.write_text(json.dumps(result.as_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
    if store is not None:
        store.put_file(bucket, f"snapshot/{SNAPSHOT_NAME}", snapshot, metadata={"published-at": published_at})
        store.put_file(bucket, "manifest.json", manifest, metadata={"published-at": published_at})
    return result
