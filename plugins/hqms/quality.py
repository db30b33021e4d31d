"""Great Expectations 1.24 suites generated from the spec, run for real on the DuckDB staging database.

Each rule of a dataset (``required``, ``length``, ``type``, ``format``, ``range``, ``code_table``,
``check``, ``cross_field``, ``org_mismatch``) becomes one ``UnexpectedRowsExpectation`` whose query
returns ``(_row, check_id)`` for every failing cell of that rule — the union of the rule's
:class:`hqms.rules.Check` predicates. Native column expectations cannot express the rule
precedence (and the regex ones do not execute on DuckDB), and GX costs tens of milliseconds of
Python per expectation whatever the data size, so one expectation per rule (≤ 9 per dataset,
instead of up to 522 per check) keeps a small daily upload at a fraction of a second while GX
still evaluates every check on every row. Suites live in ``expectations/<dataset>.json`` (``hqms gx suites`` regenerates
them; a test keeps the committed files equal to the spec).

GX is slow to import, so it is imported inside functions only: DAG files may import this module.
"""
from __future__ import annotations

import argparse
import importlib
import json
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from hqms import config, rules, sqlmacros
from hqms.config import REPO_ROOT
from hqms.spec import COLUMN_RULES, ROW_RULES, Dataset, datasets
from hqms.sqltext import literal
from hqms.stagedb import StageDB

SUITES_DIR = REPO_ROOT / "expectations"


class QualityError(RuntimeError):
    """GX could not evaluate the suite (an errored expectation is never a passed one)."""


@dataclass(frozen=True)
class RuleResult:
    """GX's verdict on one rule's expectation (all the rule's checks of a dataset)."""

    rule: str
    success: bool
    unexpected_count: int                    # failing (row, check) pairs GX counted
    sample: tuple[tuple[str, int, str], ...]  # (_src, _row, check_id) GX itself returned (≤ 200)
    query: str                               # the expectation's query, with GX's {batch} placeholder


def failures_table(table: str) -> str:
    """Name of the stage-DB table holding every failing ``(_src, _row, check_id, column, rule)``
    of a staged table after :func:`run`."""
    return f"{table}__failures"


@dataclass
class QualityResult:
    """One GX validation of one staged table; every failing row is in ``failures_table``."""

    dataset: str
    table: str
    run_id: str
    failures_table: str
    rules: list[RuleResult] = field(default_factory=list)
    failure_count: int = 0
    check_counts: dict[str, int] = field(default_factory=dict)
    docs_index: Path | None = None
    seconds: float = 0.0

    @property
    def success(self) -> bool:
        return all(r.success for r in self.rules)

    def counts(self) -> dict[str, int]:
        """Failing row count per check id (failing checks only)."""
        return dict(self.check_counts)


# ---------------------------------------------------------------- the DuckDB patch

class _DialectName(str):
    """A dialect name usable where GX expects a ``GXSqlDialect`` member (has ``.value``)."""

    @property
    def value(self) -> str:
        return str(self)


def enable_duckdb() -> None:
    """Make GX keep one persisted connection for DuckDB, as it does for SQLite (idempotent).

    GX's SQL engine otherwise hands out a pooled connection per metric and closes it before the
    rows are fetched; on duckdb-engine every metric then fails with ``IndexError`` (GX issues
    #10738, #11579). GX decides this from the private ``_PERSISTED_CONNECTION_DIALECTS``, checked
    both as ``dialect_name in ...`` (a str) and ``url.startswith(member.value)``; a ``str``
    subclass with ``.value`` satisfies both. ``tests/test_quality.py`` fails if an upgrade moves it.
    """
    from great_expectations.execution_engine import sqlalchemy_execution_engine as engine

    if "duckdb" not in engine._PERSISTED_CONNECTION_DIALECTS:
        engine._PERSISTED_CONNECTION_DIALECTS = (
            *engine._PERSISTED_CONNECTION_DIALECTS, _DialectName("duckdb"))


# ---------------------------------------------------------------- suites

def _escape_braces(sql: str) -> str:
    """GX formats the query with ``str.format`` to place ``{batch}``; keep literal braces."""
    return sql.replace("{", "{{").replace("}", "}}")


def rule_groups(ds: Dataset) -> list[tuple[str, list[rules.Check]]]:
    """The dataset's checks grouped by rule, in reporting order (rules without checks omitted)."""
    groups: dict[str, list[rules.Check]] = {}
    for check in rules.compile_checks(ds):
        groups.setdefault(check.rule, []).append(check)
    order = [*COLUMN_RULES, *ROW_RULES]
    return sorted(groups.items(), key=lambda item: order.index(item[0]))


def expectation_query(checks: list[rules.Check]) -> str:
    """The GX query of one rule: ``(_src, _row, check_id)`` of every failing cell, one scan per
    check (``{batch}`` is GX's placeholder for the table; ``_src`` names the staged file's table
    when several files of a dataset are validated as one batch)."""
    parts = [f"SELECT _src, _row, {literal(c.check_id)} AS check_id FROM {{batch}} "
             f"WHERE {_escape_braces(c.fail_sql)}" for c in checks]
    return "SELECT _src, _row, check_id FROM (\n" + "\nUNION ALL\n".join(parts) + "\n) AS failing"


def suite_dict(ds: Dataset) -> dict[str, Any]:
    """The GX 1.x suite for a dataset as plain JSON data (deterministic: no ids, no timestamps)."""
    expectations = []
    for rule, checks in rule_groups(ds):
        columns = sorted({c.column for c in checks if c.column})
        expectations.append({
            "type": "unexpected_rows_expectation",
            "kwargs": {"unexpected_rows_query": expectation_query(checks)},
            "meta": {"rule": rule, "check_ids": [c.check_id for c in checks]},
            "description": (f"{ds.id}: no cell fails the '{rule}' rule ({len(checks)} checks on "
                            f"{', '.join(columns) or 'row level'})"),
        })
    return {
        "name": ds.id,
        "expectations": expectations,
        "meta": {"dataset": ds.id, "title_zh": ds.title_zh, "title_en": ds.title_en,
                 "generated_by": "hqms gx suites (from plugins/hqms/spec)"},
        "notes": "Generated from the spec; do not edit by hand.",
    }


def suite_json(ds: Dataset) -> str:
    return json.dumps(suite_dict(ds), ensure_ascii=False, indent=2) + "\n"


def suite_path(dataset_id: str, suites_dir: Path = SUITES_DIR) -> Path:
    return suites_dir / f"{dataset_id}.json"


def write_suites(suites_dir: Path = SUITES_DIR) -> list[Path]:
    """(Re)write the suite of every dataset in the spec; returns the files written."""
    suites_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for ds in datasets().values():
        path = suite_path(ds.id, suites_dir)
        path.write_text(suite_json(ds), encoding="utf-8")
        written.append(path)
    return written


def stale_suites(suites_dir: Path = SUITES_DIR,
                 among: Iterable[Dataset] | None = None) -> list[str]:
    """Ids of datasets (default: all in the spec) whose suite file differs from what the spec
    generates now, or is missing."""
    stale = []
    for ds in datasets().values() if among is None else among:
        path = suite_path(ds.id, suites_dir)
        if not path.exists() or path.read_text(encoding="utf-8") != suite_json(ds):
            stale.append(ds.id)
    return stale


def load_suite(dataset_id: str, suites_dir: Path = SUITES_DIR):  # -> gx.ExpectationSuite
    """The committed suite as a GX object; refuses a suite GX would silently shrink."""
    import great_expectations as gx

    data = json.loads(suite_path(dataset_id, suites_dir).read_text(encoding="utf-8"))
    suite = gx.ExpectationSuite(**data)
    if len(suite.expectations) != len(data["expectations"]):
        # GX logs and drops expectations whose configuration is invalid.
        raise QualityError(f"suite {dataset_id}: GX rejected "
                           f"{len(data['expectations']) - len(suite.expectations)} expectations")
    return suite


# ---------------------------------------------------------------- running

_preload: threading.Thread | None = None


def preload() -> None:
    """Start importing GX in a background thread (≈ 5 s of Python, once per process) so it
    overlaps the download, vault and CSV load that come before validation."""
    global _preload
    if _preload is None:
        _preload = threading.Thread(target=importlib.import_module, args=("great_expectations",),
                                    name="hqms-gx-import", daemon=True)
        _preload.start()


def _release(source) -> None:
    """Close GX's persisted DuckDB connection (see :func:`enable_duckdb`) and its engines."""
    engine = source.get_execution_engine()
    if engine._connection is not None:
        engine._connection.close()
        engine._connection = None
    engine.engine.dispose()
    source.get_engine().dispose()  # the datasource's own engine, used to look up the table


def prune_docs(root: Path, keep: int, keep_also: Path | None = None) -> list[Path]:
    """Delete all but the ``keep`` newest run folders of Data Docs under ``root`` (one folder
    per ingest run, ``$HQMS_GX_DOCS_DIR/<run id>``); ``keep_also`` is never deleted. Returns
    the folders deleted.

    Why: each round's site is 4–4.6 MB and nothing else ever removes one, so the docs folder
    grew without bound. The reports a hospital reads live in the registry, not here; the sites
    are for the data team's look at recent rounds (``HQMS_GX_DOCS_KEEP``, default 20).
    """
    runs = sorted((p for p in root.iterdir() if p.is_dir() and p != keep_also),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    old = runs[max(keep - (keep_also is not None), 0):]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return old


def _gx_validate(stage: StageDB, tables: list[tuple[str, Any]], docs_dir: Path | None,
                 run_id: str) -> tuple[list, Path | None]:
    """Run each (table, suite) with GX in ONE context and checkpoint.

    One context per batch, not per table: building a GX context, datasource and checkpoint
    costs about a second of Python, independent of the data. Returns the validation results in
    the order of ``tables`` and the Data Docs index.
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    enable_duckdb()
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)  # keep task logs readable
    site = "hqms"
    if docs_dir is not None:
        docs_dir.mkdir(parents=True, exist_ok=True)
        ctx.add_data_docs_site(site_name=site, site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": str(docs_dir)},
        })
    source = ctx.data_sources.add_sql(name="stage", connection_string=stage.sqlalchemy_url)
    try:
        definitions = []
        suites: dict[str, Any] = {}
        for table, suite in tables:
            if suite.name not in suites:
                suites[suite.name] = ctx.suites.add(suite)
            batch = source.add_table_asset(name=table, table_name=table) \
                .add_batch_definition_whole_table("whole_table")
            definitions.append(ctx.validation_definitions.add(
                gx.ValidationDefinition(name=f"{suite.name}:{table}", data=batch, suite=suites[suite.name])))
        checkpoint = ctx.checkpoints.add(gx.Checkpoint(
            name="hqms", validation_definitions=definitions, actions=[],
            result_format={"result_format": "COMPLETE"}))
        result = checkpoint.run(run_id=RunIdentifier(run_name=run_id))
        if docs_dir is not None:
            # once for the whole checkpoint (UpdateDataDocsAction rebuilds the site per validation)
            ctx.build_data_docs(site_names=[site])
            cfg = config.load()
            if docs_dir.parent.resolve() == cfg.gx_docs_dir.resolve():  # a run folder of ours
                prune_docs(cfg.gx_docs_dir, cfg.gx_docs_keep, keep_also=docs_dir)
    finally:
        _release(source)
    ordered = _in_order(result, definitions)
    index = docs_dir / "index.html" if docs_dir else None
    return ordered, index


def _in_order(result, definitions: list) -> list:
    """Checkpoint results keyed by validation definition, in the order they were given."""
    results = list(result.run_results.values())
    if len(results) != len(definitions):
        raise QualityError(f"GX returned {len(results)} validation results for {len(definitions)} tables")
    lookup = {}
    for vr in results:
        asset = (vr.meta.get("active_batch_definition") or {}).get("data_asset_name")
        lookup[asset] = vr
    return [lookup[d.data.data_asset.name] for d in definitions]


def _exception_messages(er) -> list[str]:
    """Why an expectation errored: GX puts ``exception_info`` either flat or keyed by metric."""
    info = er.exception_info or {}
    found = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    return [str(i.get("exception_message") or "error") for i in found if i.get("raised_exception")]


def _rule_results(validation_result) -> list[RuleResult]:
    """Per-rule verdicts; raises when any expectation errored instead of evaluating."""
    out: list[RuleResult] = []
    errored: list[str] = []
    for er in validation_result.results:
        meta = er.expectation_config.meta or {}
        res = er.result or {}
        messages = _exception_messages(er)
        if messages or "observed_value" not in res:
            errored.append(f"{meta.get('rule')}: {(messages or ['no result'])[0][:300]}")
            continue
        rows = (res.get("details") or {}).get("unexpected_rows") or []
        out.append(RuleResult(
            rule=meta["rule"], success=bool(er.success), unexpected_count=int(res["observed_value"]),
            sample=tuple((str(r["_src"]), int(r["_row"]), str(r["check_id"])) for r in rows),
            query=er.expectation_config.kwargs["unexpected_rows_query"]))
    if errored:
        raise QualityError(f"{len(errored)} expectations raised instead of evaluating: "
                           + "; ".join(errored[:5]))
    return out


def _write_failures(con: duckdb.DuckDBPyConnection, table: str, ds: Dataset,
                    results: list[RuleResult]) -> dict[str, int]:
    """Materialise every failing cell of a validated table into its failures table (GX itself
    returns at most 200 rows per expectation); returns the count per check id.

    Each failed expectation's own query runs again without limit (``{batch}`` → the table); its
    row count must equal GX's count.
    """
    target = rules.ident(failures_table(table))
    con.execute(f"CREATE OR REPLACE TABLE {target} "
                "(_src VARCHAR, _row BIGINT, check_id VARCHAR, \"column\" VARCHAR, rule VARCHAR)")
    con.execute("CREATE OR REPLACE TEMP TABLE hqms_checks (check_id VARCHAR, \"column\" VARCHAR, rule VARCHAR)")
    con.executemany("INSERT INTO hqms_checks VALUES (?, ?, ?)",
                    [(c.check_id, c.column, c.rule) for c in rules.compile_checks(ds)])
    for res in results:
        if res.success:
            continue
        query = res.query.format(batch=rules.ident(table))
        (n,) = con.execute(f"INSERT INTO {target} SELECT f._src, f._row, f.check_id, c.\"column\", c.rule "
                           f"FROM ({query}) AS f JOIN hqms_checks AS c USING (check_id)").fetchone()
        if n != res.unexpected_count:
            raise QualityError(f"{ds.id}.{res.rule}: GX counted {res.unexpected_count} "
                               f"failing cells, the query returns {n}")
    return dict(con.execute(f"SELECT check_id, count(*) FROM {target} GROUP BY 1").fetchall())


def run_tables(stage: StageDB, tables: list[tuple[str, Dataset]], *, docs_dir: Path | None = None,
               run_id: str, suites_dir: Path = SUITES_DIR) -> list[QualityResult]:
    """Validate staged tables in one GX checkpoint, each with its dataset's committed suite.

    A table may hold the files of many uploads (``_src`` tells them apart): GX's cost is per
    expectation and table, not per row. Every failing cell is written to the stage-DB table
    ``failures_table(table)`` (replaced on each run). Raises :class:`QualityError` when a suite
    is out of date with the spec or any expectation errors.
    """
    if not tables:
        return []
    started = time.perf_counter()
    involved = {ds.id: ds for _, ds in tables}
    stale = stale_suites(suites_dir, involved.values())
    if stale:
        raise QualityError(f"suites {', '.join(stale)} differ from the spec (run `hqms gx suites`)")
    suites = {ds_id: load_suite(ds_id, suites_dir) for ds_id in involved}
    sqlmacros.install(stage.con)  # stored in the stage database, so GX's connection sees them
    validations, index = _gx_validate(stage, [(t, suites[ds.id]) for t, ds in tables], docs_dir, run_id)
    out = []
    for (table, ds), validation in zip(tables, validations):
        results = _rule_results(validation)
        counts = _write_failures(stage.con, table, ds, results)
        out.append(QualityResult(dataset=ds.id, table=table, run_id=run_id,
                                 failures_table=failures_table(table), rules=results,
                                 failure_count=sum(counts.values()), check_counts=counts,
                                 docs_index=index))
    elapsed = time.perf_counter() - started
    for result in out:
        result.seconds = elapsed
    return out


# ---------------------------------------------------------------- CLI

def _cmd_suites(args: argparse.Namespace) -> int:
    from hqms.errors import UserError

    suites_dir = Path(args.dir)
    if args.check:
        stale = stale_suites(suites_dir)
        if stale:
            raise UserError(f"suites out of date with the spec: {', '.join(stale)} "
                            "(run `hqms gx suites`)")
        print(f"all {len(datasets())} suites match the spec")
        return 0
    for path in write_suites(suites_dir):
        print(path)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("gx", help="Great Expectations suites generated from the spec")
    sub = parser.add_subparsers(dest="gx_command", required=True, metavar="ACTION")
    suites = sub.add_parser("suites", help="write expectations/<dataset>.json from the spec")
    suites.add_argument("--dir", default=str(SUITES_DIR), help="output folder (default: %(default)s)")
    suites.add_argument("--check", action="store_true",
                        help="only verify the files equal what the spec generates (exit 2 if not)")
    suites.set_defaults(func=_cmd_suites)
