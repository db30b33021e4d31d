"""``hqms marts build|publish|summary|sources|freshness|docs``.

Heavy modules are imported inside the handlers so ``hqms --help`` stays fast.
"""
from __future__ import annotations

import argparse
import json

from hqms.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("marts", help="dbt marts: build, publish for analysts, summarise")
    verbs = p.add_subparsers(dest="verb", required=True)

    b = verbs.add_parser("build", help="dbt build (seeds, models, data and unit tests) on the warehouse")
    b.add_argument("--select", choices=("all", "daily", "monthly"), default="all",
                   help="daily: flu/fever/submission_daily marts; monthly: outpatient/submission_monthly")
    b.add_argument("--full-refresh", action="store_true", help="rebuild incremental marts from scratch")
    b.add_argument("--unit-tests", action="store_true", help="also run dbt unit tests (CI; slower)")
    b.add_argument("--quiet", action="store_true", help="print only the outcome, not dbt's log")
    b.set_defaults(func=_build)

    pub = verbs.add_parser("publish", help="export the analysts' aggregates (small cells suppressed) to Parquet + DuckDB snapshot")
    pub.add_argument("--no-upload", action="store_true", help="write local files only, skip the marts bucket")
    pub.add_argument("--json", action="store_true")
    pub.set_defaults(func=_publish)

    s = verbs.add_parser("summary", help="short summary of the marts")
    s.add_argument("--source", choices=("warehouse", "snapshot"), default="warehouse",
                   help="warehouse: exact counts (read-only); snapshot: what analysts see")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_summary)

    src = verbs.add_parser("sources", help="regenerate dbt_project/models/sources.yml from the spec")
    src.add_argument("--check", action="store_true", help="exit 1 if the committed file is out of date")
    src.set_defaults(func=_sources)

    f = verbs.add_parser("freshness", help="age of the newest row per source table (dbt source freshness)")
    f.set_defaults(func=_freshness)

    d = verbs.add_parser("docs", help="dbt docs generate (index.html + catalog under HQMS_HOME); --serve to browse")
    d.add_argument("--serve", action="store_true", help="then serve them on 127.0.0.1 until Ctrl-C")
    d.add_argument("--port", type=int, default=0, help="port for --serve (default: any free port)")
    d.set_defaults(func=_docs)


def _build(args: argparse.Namespace) -> int:
    from hqms.marts import dbt

    try:
        result = dbt.build(args.select, full_refresh=args.full_refresh, unit_tests=args.unit_tests,
                           echo=not args.quiet)
    except dbt.DbtError as exc:
        raise UserError(str(exc)) from exc
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result.counts().items()))
    print(f"dbt build ({args.select}) ok: {counts}")
    return 0


def _publish(args: argparse.Namespace) -> int:
    from hqms.marts import publish

    result = publish.publish(upload=not args.no_upload)
    if args.json:
        print(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
        return 0
    for mart in result.marts:
        where = mart.object_key or mart.parquet_path
        masked = (f"; {mart.primary_cells} cells of 1–4 + {mart.complementary_cells} complementary masked"
                  if mart.primary_cells else "")
        print(f"{mart.name:<16} {mart.rows:>8} rows ({mart.suppressed_rows} with masked cells{masked}) → {where}")
    if result.not_built:
        print(f"not built yet (skipped): {', '.join(result.not_built)}")
    print(f"snapshot: {result.snapshot_path}")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from hqms.marts import summary

    data = summary.collect(source=args.source)
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else summary.render(data))
    return 0


def _sources(args: argparse.Namespace) -> int:
    from hqms.marts import sources

    if args.check:
        if sources.is_current():
            print(f"{sources.SOURCES_FILE} is up to date")
            return 0
        print(f"{sources.SOURCES_FILE} is out of date: run `hqms marts sources`")
        return 1
    print(f"wrote {sources.write()}")
    return 0


def _docs(args: argparse.Namespace) -> int:
    from hqms.marts import dbt

    try:
        folder = dbt.docs_generate()
    except dbt.DbtError as exc:
        raise UserError(str(exc)) from exc
    print(f"dbt docs: {folder / 'index.html'}")
    if args.serve:
        from hqms.marts.docs_server import make_server

        server = make_server(folder, args.port)
        print(f"serving on http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)", flush=True)
        try:
            server.serve_forever()
        finally:
            server.server_close()
    return 0


def _freshness(args: argparse.Namespace) -> int:
    from hqms.marts import dbt

    for row in dbt.freshness():
        age = "no rows" if row["age_hours"] is None else f"{row['age_hours']} h old"
        print(f"{row['source']:<16} {row['status']:<6} {age}")
    return 0
