"""``hqms generate``: real zips and CSV bytes, checked with the project's validators and rules.

Two module-scoped runs of the brief's command (clean, and with ``--errors 0.02``) feed most tests;
determinism uses a smaller pair of runs. The defect manifest is checked cell by cell with the
Python validators and, for a sample of files, against the DuckDB validation SQL of
:mod:`hqms.rules` (exactly the manifest's errors, nothing else).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import zipfile
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from hqms import cli, spec, sqlmacros, validators
from hqms.rules import failures_sql
from hqms.spec import Column, Dataset

ARGS = ["--hospitals", "20", "--start", "2025-01-06", "--days", "7", "--seed", "1"]
MAX_ZIP = 20 * 1024 * 1024
PREFIXES = {s: tuple(d.prefix for d in spec.stream_datasets(s)) for s in spec.STREAMS}
CHECKS = {
    "id_card": validators.id_card_valid, "uscc": validators.uscc_valid,
    "org_code": validators.org_code_valid, "medical_org_code": validators.medical_org_code_valid,
    "icd10": validators.icd10_valid, "icd9cm3": validators.icd9cm3_valid,
    "phone": validators.phone_valid, "mobile": validators.mobile_valid,
    "postcode": validators.postcode_valid,
}


def _generate(out: Path, *extra: str) -> Path:
    assert cli.main(["generate", *ARGS, "--out", str(out), "--quiet", *extra]) == 0
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate(tmp_path_factory.mktemp("gen") / "clean")


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _generate(tmp_path_factory.mktemp("gen") / "dirty", "--errors", "0.02")


def _plan(out: Path) -> list[dict[str, str]]:
    with (out / "upload_plan.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _csv_files(out: Path, encoding: str = "gbk"):
    """(plan row, entry name, dataset, header, data rows as dicts) for every CSV of the run."""
    for row in _plan(out):
        with zipfile.ZipFile(out / row["zip"]) as zf:
            for info in zf.infolist():
                raw = zf.read(info)
                text = raw.decode(encoding)
                ds = spec.dataset_for_filename(info.filename)
                records = list(csv.reader(io.StringIO(text, newline="")))
                yield row, info.filename, ds, raw, records


def _row_dict(ds: Dataset, header: list[str], values: list[str]) -> dict[str, str]:
    return dict(zip(header, values))


def test_zips_decode_as_gbk_with_crlf_and_spec_headers(clean: Path) -> None:
    streams = set()
    for row, entry, ds, raw, records in _csv_files(clean):
        streams.add(row["stream"])
        assert ds is not None and ds.stream == row["stream"], entry
        assert entry.rsplit("/", 1)[-1].startswith(PREFIXES[row["stream"]])
        assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n"), entry
        header = records[0]
        assert header[: len(ds.codes)] == list(ds.codes), entry
        assert header[len(ds.codes):] in ([], ["serialVersionUID"]), entry
        assert len(records) > 1 and all(len(r) == len(header) for r in records), entry
    assert streams == set(spec.STREAMS)


def test_zips_are_java_style_and_within_the_limit(clean: Path) -> None:
    plan = _plan(clean)
    zips = sorted((clean / "uploads").rglob("*.zip"))
    assert {str(p.relative_to(clean)) for p in zips} == {r["zip"] for r in plan}
    folders = 0
    for path in zips:
        assert path.stat().st_size <= MAX_ZIP
        with zipfile.ZipFile(path) as zf:
            assert zf.testzip() is None
            for info in zf.infolist():
                assert info.compress_type == zipfile.ZIP_DEFLATED
                assert info.flag_bits & 0x08, "streamed entry with a data descriptor"
                folders += "/" in info.filename
    assert folders, "some hospitals put the entries in a folder"


def test_upload_plan_and_layout(clean: Path) -> None:
    plan = _plan(clean)
    hospitals = {r["org_code"]: r for r in csv.DictReader((clean / "registry/hospitals.csv").open())}
    for r in plan:
        stream, org, period, name = r["zip"].split("/")[1:]
        assert (stream, org, period) == (r["stream"], r["org_code"], r["period"])
        assert org in hospitals and r["uploader"]
        received = r["planned_received_at"]
        assert received.endswith("+08:00") and received[:10] > period
    daily = [r for r in plan if r["stream"] == "flu"]
    assert len({r["period"] for r in daily}) == 7
    next_day = sum(1 for r in daily if _days_between(r["period"], r["planned_received_at"][:10]) == 1)
    assert next_day / len(daily) > 0.8, "most daily uploads arrive the next day"
    assert any(_days_between(r["period"], r["planned_received_at"][:10]) >= 2 for r in daily)
    monthly = [r for r in plan if r["stream"] == "outpatient"]
    assert {r["period"] for r in monthly} == {"2025-01"} and len(monthly) == 20
    assert sum(r["planned_received_at"][:10] <= "2025-02-15" for r in monthly) >= 15


def _days_between(a: str, b: str) -> int:
    from datetime import date
    return (date.fromisoformat(b) - date.fromisoformat(a)).days


def test_registry_codes_are_valid(clean: Path) -> None:
    rows = list(csv.DictReader((clean / "registry/hospitals.csv").open(encoding="utf-8")))
    assert len(rows) == 20 and len({r["org_code"] for r in rows}) == 20
    for r in rows:
        assert validators.medical_org_code_valid(r["org_code"])
        assert validators.org_code_valid(r["org_code9"]) and r["org_code"].startswith(r["org_code9"])
        assert validators.uscc_valid(r["uscc"]) and r["uscc"][8:17] == r["org_code9"]
        assert validators.mobile_valid(r["data_manager_phone"])
        assert r["province_code"] in ("51", "44") and r["city_code"].startswith(r["province_code"])
        assert r["medicine_type"] in ("中医", "西医") and r["level"] in ("三级", "二级")
        assert r["grade"] in ("甲等", "乙等", "未定等")


def _cell_ok(col: Column, value: str, row: dict[str, str]) -> bool:
    """Independent of the generator: the Python validators and the spec's lists and bounds."""
    if value == "":
        return not col.required
    if value in col.null_tokens:
        return True
    if col.max_length and len(value) > col.max_length:
        return False
    if col.type in ("date", "datetime"):
        return validators.parse_datetime(value, col.formats) is not None
    if col.type in ("integer", "decimal"):
        number = Decimal(value)
        if (col.min is not None and number < Decimal(str(col.min))) or \
                (col.max is not None and number > Decimal(str(col.max))):
            return False
    codes = spec.allowed_values(col)
    if codes and value not in codes:
        return False
    applies = col.check_when is None or row.get(col.check_when.column) in col.check_when.values
    return not (col.check and applies and not CHECKS[col.check](value))


def test_clean_rows_pass_the_python_validators(clean: Path) -> None:
    checked = 0
    seen: set[tuple[str, ...]] = set()  # flu rows are re-sent seven times: check each once
    for row, entry, ds, _, records in _csv_files(clean):
        header = records[0]
        for values in records[1:]:
            if (key := (row["org_code"], *values)) in seen:
                continue
            seen.add(key)
            cells = _row_dict(ds, header, values)
            bad = [c.code for c in ds.columns if not _cell_ok(c, cells[c.code], cells)]
            assert not bad, (entry, bad)
            if ds.org_column:
                assert cells[ds.org_column] == row["org_code"]
            checked += 1
    assert checked > 10_000


def test_people_are_consistent(clean: Path) -> None:
    """ID numbers encode the birth date and sex written beside them, in the hospital's province."""
    people = set()
    for row, _entry, ds, _, records in _csv_files(clean):
        if ds.id in ("flu", "fever"):
            header = records[0]
            at = [header.index(c) for c in ("P7503", "P13", "P6", "P5")]
            people |= {(row["org_code"][9:11], *(v[i] for i in at)) for v in records[1:]}
    assert len(people) > 3000
    for province, id_type, idn, birth, sex in people:
        if id_type == "01":
            assert validators.id_card_birth_date(idn).isoformat() == birth
            assert validators.id_card_sex(idn) == sex
            assert idn[:2] == province


def test_flu_records_are_resent_for_seven_days(clean: Path) -> None:
    ds = spec.dataset("flu")
    keys_by_file: dict[tuple[str, str], set[tuple[str, ...]]] = {}
    for row, _entry, d, _, records in _csv_files(clean):
        if d.id != "flu":
            continue
        header = records[0]
        pos = [header.index(c) for c in ds.natural_key]
        keys_by_file[(row["org_code"], row["period"])] = {tuple(v[p] for p in pos) for v in records[1:]}
    assert keys_by_file
    checked = 0
    for (org, period), keys in keys_by_file.items():
        for key in keys:
            visit_day = key[ds.natural_key.index("P7506")][:10]
            if visit_day < "2025-01-06":
                continue
            for later in ("2025-01-06", "2025-01-07", "2025-01-08", "2025-01-09", "2025-01-10",
                          "2025-01-11", "2025-01-12"):
                if visit_day <= later and _days_between(visit_day, later) < 7 and (org, later) in keys_by_file:
                    assert key in keys_by_file[(org, later)], (org, key, later)
                    checked += 1
        # and nothing older than the look-back window
        day_at = ds.natural_key.index("P7506")
        assert all(_days_between(k[day_at][:10], period) < 7 for k in keys)
    assert checked > 1000


def test_same_arguments_give_identical_bytes(tmp_path: Path) -> None:
    small = ["--hospitals", "3", "--start", "2025-03-30", "--days", "3", "--seed", "7", "--quiet",
             "--errors", "0.05"]

    def digest(out: Path) -> dict[str, str]:
        assert cli.main(["generate", *small, "--out", str(out)]) == 0
        return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(out.rglob("*")) if p.is_file()}

    first, second = digest(tmp_path / "a"), digest(tmp_path / "b")
    assert first == second and any(k.endswith(".zip") for k in first)
    assert any(k.endswith("mzsy_202504.zip") for k in first), "a run across months has two pages"


def _manifest(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]


def _fails(ds: Dataset, entry: dict[str, object], cells: dict[str, str]) -> bool:
    """Does the named cell break the named rule, judged by the validators and the spec?"""
    code, rule = str(entry["column"]), entry["rule"]
    col = ds.column(code)
    value = cells[code]
    if rule == "required":
        return value == "" and col.required
    if rule == "format":
        return value != "" and validators.parse_datetime(value, col.formats) is None
    if rule == "code_table":
        return value not in (spec.allowed_values(col) or {}) and len(value) <= (col.max_length or len(value))
    if rule == "check":
        return not CHECKS[col.check](value)
    if rule == "org_mismatch":
        return validators.medical_org_code_valid(value) and value != entry["org_code"]
    if rule == "cross_field":
        for r in ds.rules:
            if (r.kind == "required_if" and r.column == code and value == ""
                    and cells[r.when.column] in r.when.values):
                return True
            if r.kind == "le" and r.left[0] == code:
                ops = [ds.column(c) for c in (*r.left, r.right)]
                if all(cells[c.code] and _cell_ok(c, cells[c.code], cells) for c in ops):
                    typed = [validators.parse_datetime(cells[c.code], c.formats) if c.type in ("date", "datetime")
                             else Decimal(cells[c.code]) for c in ops]
                    left = typed[0] if len(typed) == 2 else sum(typed[:-1])
                    if left > typed[-1]:
                        return True
    return False


def test_manifest_defects_are_real(dirty: Path) -> None:
    manifest = _manifest(dirty)
    summary = json.loads((dirty / "summary.json").read_text(encoding="utf-8"))
    records = summary["totals"]["records"]
    assert 0.01 < len(manifest) / records < 0.03
    assert {e["kind"] for e in manifest} == {"missing_required", "unknown_code", "bad_date",
                                             "bad_check_digit", "cross_field", "wrong_org"}
    by_file = defaultdict(list)
    for e in manifest:
        by_file[(e["zip"], e["file"])].append(e)
    seen = 0
    clean_rows: set[tuple[str, ...]] = set()
    for row, entry, ds, _, recs in _csv_files(dirty):
        base = entry.rsplit("/", 1)[-1]
        defects = {int(e["row"]): e for e in by_file.get((row["zip"], base), [])}
        info = summary["zips"][row["zip"]]["files"][entry]
        assert info == {"records": len(recs) - 1, "defects": len(defects)}
        header = recs[0]
        for i, values in enumerate(recs[1:], start=1):
            if i in defects:
                assert _fails(ds, defects[i], _row_dict(ds, header, values)), defects[i]
                seen += 1
            elif (key := (row["org_code"], *values)) not in clean_rows:
                clean_rows.add(key)
                cells = _row_dict(ds, header, values)
                assert all(_cell_ok(c, cells[c.code], cells) for c in ds.columns), (entry, i)
    assert seen == len(manifest)


def test_manifest_equals_the_pipeline_rules(dirty: Path, tmp_path: Path) -> None:
    """For three hospitals, the validation SQL reports exactly the manifest's errors.

    Each dataset's files go into one table (``_row`` = file number * 10^6 + data row) so the
    compiled checks run once per dataset.
    """
    orgs = sorted({r["org_code"] for r in _plan(dirty)})[:3]
    expected = set()
    files: dict[tuple[str, str], int] = {}
    con = duckdb.connect()
    sqlmacros.install(con)
    for row, entry, ds, raw, recs in _csv_files(dirty):
        if row["org_code"] not in orgs:
            continue
        n = files.setdefault((row["zip"], entry.rsplit("/", 1)[-1]), len(files) + 1)
        utf8 = tmp_path / f"{n}.csv"
        utf8.write_text(raw.decode("gbk"), encoding="utf-8")
        columns = ", ".join(f"'{h}': 'VARCHAR'" for h in recs[0])
        select = (f"SELECT {n} * 1000000 + row_number() OVER () AS _row, {', '.join(ds.codes)}, "
                  f"'{row['org_code']}' AS _uploader_org "
                  f"FROM read_csv('{utf8}', header=true, columns={{{columns}}})")
        exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                             [ds.id]).fetchone()[0]
        con.execute(f"INSERT INTO {ds.id} {select}" if exists else f"CREATE TABLE {ds.id} AS {select}")
    for e in _manifest(dirty):
        if (e["zip"], e["file"]) in files:
            expected.add((files[(e["zip"], e["file"])] * 1000000 + e["row"], e["column"], e["rule"]))
    got = set()
    for ds in spec.datasets().values():
        if con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                       [ds.id]).fetchone()[0]:
            got |= {(r, c, rule) for r, _, c, rule in con.execute(failures_sql(ds, ds.id)).fetchall()}
    assert len(files) > 100 and len(expected) > 20
    assert got == expected


def test_big_files_are_split_across_zips(tmp_path: Path) -> None:
    """A CSV larger than the zip limit becomes parts, each with its header, each zip ≤ limit."""
    from datetime import datetime

    from hqms.generate.writer import ZipSeries

    rng = random.Random(5)
    lines = [f'"{i}","{rng.getrandbits(256):x}",{rng.random():.6f}' for i in range(40_000)]
    limit = 400_000
    series = ZipSeries(tmp_path, "uploads/x", "flu_20250106", limit=limit, encoding="utf-8-sig",
                       timestamp=datetime(2025, 1, 7, 1, 0))
    parts = series.write_csv("flu_20250106", "A,B,C", lines)
    zips = series.close()
    assert len(zips) > 2 and [p.entry for p in parts][:2] == ["flu_20250106.csv", "flu_20250106_2.csv"]
    rows = []
    for rel in zips:
        assert (tmp_path / rel).stat().st_size <= limit
        with zipfile.ZipFile(tmp_path / rel) as zf:
            for name in zf.namelist():
                text = zf.read(name)
                assert text.startswith(b"\xef\xbb\xbfA,B,C\r\n")
                rows += text.decode("utf-8-sig").split("\r\n")[1:-1]
    assert rows == lines
    assert sum(p.rows for p in parts) == len(lines)
