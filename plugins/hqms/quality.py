"""Great Expectations 1.24 suites generated from the spec, run for real on the DuckDB staging file.

Each :class:`hqms.rules.Check` becomes one ``UnexpectedRowsExpectation`` selecting the failing
``_row`` numbers: native column expectations cannot express the rule precedence (and the regex
ones do not execute on DuckDB), so one uniform form keeps GX and :func:`hqms.rules.failures_sql`
provably equal. Suites live in ``expectations/<dataset>.json`` (``hqms gx suites`` regenerates
them; a test keeps the committed files equal to the spec).

GX is slow to import, so it is imported inside functions only: DAG files may import this module.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from hqms import rules, sqlmacros
from hqms.config import REPO_ROOT
from hqms.spec import Dataset, datasets

SUITES_DIR = REPO_ROOT / "expectations"



class QualityError(RuntimeError):
    """GX could not evaluate the suite (an errored expectation is never a passed one)."""


@dataclass(frozen=True)
class CheckResult:
    """GX's verdict on one check."""

    check_id: str
    column: str | None
    rule: str
    success: bool
    unexpected_count: int
    sample_rows: tuple[int, ...]  # the _row numbers GX itself returned (at most 200)
    query: str                    # the expectation's query, with GX's {batch} placeholder


def failures_table(table: str) -> str:
    """Name of the stage-DB table holding every failing ``(_row, check_id, column, rule)`` of a
    staged table after :func:`run`."""
    return f"{table}__failures"


@dataclass
class QualityResult:
    """One GX run over one staged table; every failing row is in ``failures_table``."""

    dataset: str
    table: str
    run_id: str
    failures_table: str
    checks: list[CheckResult] = field(default_factory=list)
    failure_count: int = 0
    docs_index: Path | None = None
    seconds: float = 0.0

    @property
    def success(self) -> bool:
        return all(c.success for c in self.checks)

    def counts(self) -> dict[str, int]:
        """Unexpected row count per check id (failing checks only)."""
        return {c.check_id: c.unexpected_count for c in self.checks if c.unexpected_count}


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


def expectation_query(check: rules.Check) -> str:
    """The GX query of a check (``{batch}`` is GX's placeholder for the table)."""
    return f"SELECT _row FROM {{batch}} WHERE {_escape_braces(check.fail_sql)}"


def suite_dict(ds: Dataset) -> dict[str, Any]:
    """The GX 1.x suite for a dataset as plain JSON data (deterministic: no ids, no timestamps)."""
    expectations = [
        {
            "type": "unexpected_rows_expectation",
            "kwargs": {"unexpected_rows_query": expectation_query(check)},
            "meta": {"check_id": check.check_id, "column": check.column, "rule": check.rule},
            "description": f"{check.en} / {check.zh}",
        }
        for check in rules.compile_checks(ds)
    ]
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

def _install_macros(stage_db: Path) -> None:
    """Persist the validator macros in the stage DB so GX's read-only connection has them."""
    with duckdb.connect(str(stage_db)) as con:
        sqlmacros.install(con)


def _release(source) -> None:
    """Close GX's persisted DuckDB connection so the file can be reopened read-write.

    DuckDB refuses a second connection to one file with a different configuration in the same
    process, and GX keeps its connection (see :func:`enable_duckdb`) until the engine is disposed.
    """
    engine = source.get_execution_engine()
    if engine._connection is not None:
        engine._connection.close()
        engine._connection = None
    engine.engine.dispose()
    source.get_engine().dispose()  # the datasource's own engine, used to look up the table


def _gx_validate(stage_db: Path, table: str, suite, docs_dir: Path | None, run_id: str):
    """Run the suite with GX on a read-only connection; returns (validation result, docs index)."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
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
    source = ctx.data_sources.add_sql(
        name="stage", connection_string=f"duckdb:///{stage_db}",
        kwargs={"connect_args": {"read_only": True}})
    try:
        batch = source.add_table_asset(name=table, table_name=table) \
            .add_batch_definition_whole_table("whole_table")
        suite = ctx.suites.add(suite)
        validation = ctx.validation_definitions.add(
            gx.ValidationDefinition(name=f"{suite.name}:{table}", data=batch, suite=suite))
        actions = [UpdateDataDocsAction(name="docs", site_names=[site])] if docs_dir else []
        checkpoint = ctx.checkpoints.add(gx.Checkpoint(
            name="hqms", validation_definitions=[validation], actions=actions,
            result_format={"result_format": "COMPLETE"}))
        result = checkpoint.run(run_id=RunIdentifier(run_name=run_id))
    finally:
        _release(source)
    (validation_result,) = result.run_results.values()
    index = docs_dir / "index.html" if docs_dir else None
    return validation_result, index


def _exception_messages(er) -> list[str]:
    """Why an expectation errored: GX puts ``exception_info`` either flat or keyed by metric."""
    info = er.exception_info or {}
    found = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    return [str(i.get("exception_message") or "error") for i in found if i.get("raised_exception")]


def _check_results(validation_result) -> list[CheckResult]:
    """Per-expectation verdicts; raises when any expectation errored instead of evaluating."""
    out: list[CheckResult] = []
    errored: list[str] = []
    for er in validation_result.results:
        meta = er.expectation_config.meta or {}
        res = er.result or {}
        messages = _exception_messages(er)
        if messages or "observed_value" not in res:
            errored.append(f"{meta.get('check_id')}: {(messages or ['no result'])[0][:300]}")
            continue
        rows = (res.get("details") or {}).get("unexpected_rows") or []
        out.append(CheckResult(
            check_id=meta["check_id"], column=meta.get("column"), rule=meta["rule"],
            success=bool(er.success), unexpected_count=int(res["observed_value"]),
            sample_rows=tuple(int(r["_row"]) for r in rows),
            query=er.expectation_config.kwargs["unexpected_rows_query"]))
    if errored:
        raise QualityError(f"{len(errored)} expectations raised instead of evaluating: "
                           + "; ".join(errored[:5]))
    return out


def _write_failures(stage_db: Path, table: str, results: list[CheckResult]) -> int:
    """Materialise every failing row into ``failures_table(table)``: GX returns at most 200.

    Each failed expectation's own query runs again without limit (``{batch}`` → the table); its
    row count must equal GX's count.
    """
    target = rules.ident(failures_table(table))
    with duckdb.connect(str(stage_db)) as con:
        con.execute(f"CREATE OR REPLACE TABLE {target} "
                    "(_row BIGINT, check_id VARCHAR, \"column\" VARCHAR, rule VARCHAR)")
        total = 0
        for res in results:
            if res.success:
                continue
            query = res.query.format(batch=rules.ident(table))
            (n,) = con.execute(f"INSERT INTO {target} SELECT _row, ?, ?, ? FROM ({query})",
                               [res.check_id, res.column, res.rule]).fetchone()
            if n != res.unexpected_count:
                raise QualityError(f"{res.check_id}: GX counted {res.unexpected_count} "
                                   f"failing rows, the query returns {n}")
            total += n
    return total


def run(stage_db: Path, table: str, ds: Dataset, *, docs_dir: Path | None = None,
        run_id: str, suites_dir: Path = SUITES_DIR) -> QualityResult:
    """Validate one staged table with its dataset's committed GX suite.

    Returns GX's count and verdict per check; every failing row is written to the stage-DB table
    ``failures_table(table)`` (``_row, check_id, column, rule``; replaced on each run). Raises
    :class:`QualityError` when the suite is out of date with ``ds`` or any expectation errors.
    """
    started = time.perf_counter()
    if ds.id in stale_suites(suites_dir, [ds]):
        raise QualityError(f"suite {suite_path(ds.id, suites_dir)} differs from the spec "
                           "(run `hqms gx suites`)")
    suite = load_suite(ds.id, suites_dir)
    stage_db = Path(stage_db).resolve()
    _install_macros(stage_db)
    validation_result, index = _gx_validate(stage_db, table, suite, docs_dir, run_id)
    checks = _check_results(validation_result)
    failures = _write_failures(stage_db, table, checks)
    return QualityResult(dataset=ds.id, table=table, run_id=run_id,
                         failures_table=failures_table(table), checks=checks,
                         failure_count=failures, docs_index=index,
                         seconds=time.perf_counter() - started)


# ---------------------------------------------------------------- CLI

def _cmd_suites(args: argparse.Namespace) -> int:
    from hqms.cli import UserError

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
