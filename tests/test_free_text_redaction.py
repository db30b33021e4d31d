"""An ID or phone number a hospital typed into free text, or into a file name, never reaches the
warehouse or the upload records in plain text."""
from __future__ import annotations

import random
import unicodedata
import zipfile
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from hqms import config
from hqms.ingest.run import claim, process
from hqms.intake.submit import submit
from hqms.identifiers import PLAIN_RANGES, REDACTED, SQL_GUARD, redact
from hqms.ingest import deidentify
from hqms.ingest.deidentify import install_redaction
from hqms.registry import Registry, looks_identifying, mask_value, shown_value
from hqms.spec import datasets
from hqms.validators import make_id_card
from hqms.warehouse import table_columns
from conftest import edit_csv_in_zip, generate_plan

ID_NUMBER = "11010519491231002X"   # valid check character
PHONE = "13912345678"


def test_identifiers_in_free_text_and_file_names_are_redacted(s3_store, tmp_path: Path) -> None:
    gen = tmp_path / "gen"
    [plan] = generate_plan(gen, hospitals=1, seed=3)

    def type_identifiers(rows: list[list[str]]) -> None:
        at = rows[0].index("P8003")
        rows[1][at] = f"阳性 患者身份证{ID_NUMBER} 电话 139-1234-5678"
        rows[2][at] = f"复核电话{PHONE}"
        for row, (text, _) in zip(rows[3:], FORMS):  # full-width, grouped, landlines …
            row[at] = text

    edited = edit_csv_in_zip(gen / plan["zip"], tmp_path / "edited.zip", "lis_", type_identifiers)
    named = tmp_path / f"flu_20250106_{ID_NUMBER}.zip"
    with zipfile.ZipFile(edited) as zin, zipfile.ZipFile(named, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():  # the lis file named after the patient, as a re-send might be
            name = info.filename.replace("lis_20250106", f"lis_20250106_{PHONE}")
            zout.writestr(name, zin.read(info))
    upload_id = submit(named, plan["org_code"], plan["uploader"],
                       received_at=datetime.fromisoformat("2025-01-07T09:00:00+08:00")).upload_id
    for batch in claim():
        process(batch)

    cfg = config.load()
    con = duckdb.connect(str(cfg.warehouse_path), read_only=True)
    texts = [t for (t,) in con.execute("SELECT result_text FROM dw.lis WHERE _upload_id = ? AND result_text "
                                       "LIKE '%已脱敏%' ORDER BY _source_row", [upload_id]).fetchall()]
    assert texts == ["阳性 患者身份证[已脱敏] 电话 [已脱敏]", "复核电话[已脱敏]"] + [kept for _, kept in FORMS]
    dumped = []
    for (schema, table) in con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall():
        dumped += [repr(r) for r in con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()]
    dumped += [repr(Registry.from_config(cfg).get(upload_id)), repr(Registry.from_config(cfg).errors(upload_id))]
    text = "\n".join(dumped)
    assert ID_NUMBER not in text and PHONE not in text and "139-1234-5678" not in text
    assert not any(form in text for form, _ in FORMS)
    assert "lis_20250106_1*********8.csv" in text  # the name is kept, its number masked


# --- property test: every written form of an identifier, in every free-text column --------------

FULL_WIDTH = str.maketrans("0123456789Xx", "０１２３４５６７８９Ｘｘ")
STRONG_SEPS = [" ", "-", "－", "—", "_", "　", " - "]
WEAK_SEPS = ["，", ",", "、", ".", "．", "。"]
BEFORE = ["", "患者身份证", "复核：", "阳性 ", "电话", "联系人手机:", "Tel ", "（", "诊断为肺炎，身份证号"]
AFTER = ["", "。", "，已复核", " 阴性", "号", "）"]
AREA_CODES = ["010", "020", "021", "0830", "0755", "0571", "0931"]


def _id_number(rng: random.Random) -> str:
    region = rng.choice(["510104", "110105", "440305", "330106", "620102", "510502"])
    birth = date(1930, 1, 1) + timedelta(days=rng.randrange(33_000))
    return make_id_card(region, birth, f"{rng.randrange(1000):03d}")


def _groups(digits: str, rng: random.Random, min_size: int) -> list[str]:
    """``digits`` cut at random places into groups of at least ``min_size``."""
    groups, rest = [], digits
    while len(rest) >= 2 * min_size and rng.random() < 0.7:
        cut = rng.randrange(min_size, len(rest) - min_size + 1)
        groups.append(rest[:cut])
        rest = rest[cut:]
    return groups + [rest]


def _written(number: str, rng: random.Random) -> str:
    """One way a person types ``number``: grouped by blanks, dashes or punctuation, in half,
    full or mixed width."""
    style = rng.random()
    if style < 0.3:
        text = number
    elif style < 0.7:
        text = rng.choice(STRONG_SEPS).join(_groups(number, rng, 1))
    else:
        text = rng.choice(WEAK_SEPS).join(_groups(number, rng, 3))
    width = rng.random()
    if width < 0.05:  # mathematical bold digits, NFKC-equal to ASCII ones
        return "".join(chr(0x1D7CE + int(c)) if c.isdigit() else c for c in text)
    if width < 0.3:
        return text.translate(FULL_WIDTH)
    if width < 0.5:
        return "".join(c.translate(FULL_WIDTH) if rng.random() < 0.5 else c for c in text)
    return text


def _identifier_form(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        number = _id_number(rng)
        return _written(number.lower() if rng.random() < 0.5 else number, rng)
    if kind == 1:
        mobile = f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"
        return ("+86 " if rng.random() < 0.2 else "") + _written(mobile, rng)
    local = f"{rng.randrange(2, 9)}{rng.randrange(10**6, 10**7) if rng.random() < 0.7 else rng.randrange(10**5, 10**6)}"
    area = rng.choice(AREA_CODES)
    if kind == 2:
        return rng.choice([f"{area}-{local}", f"({area}){local}", f"（{area}）{local}", f"{area} {local}",
                           f"{area}{local}", _written(area + local, rng)])
    if kind == 3:  # a local number grouped like one
        cut = rng.randrange(3, len(local) - 2)
        return f"{local[:cut]}{rng.choice(['-', ' ', '－'])}{local[cut:]}"
    return local  # announced: only redacted after 电话 / Tel


def identifier_cases(n: int, seed: str) -> list[tuple[str, str]]:
    """(text holding one identifier, what the warehouse must keep of it)."""
    rng = random.Random(seed)
    cases = []
    while len(cases) < n:
        form = _identifier_form(rng)
        before = rng.choice(["电话", "座机：", "Tel "]) if form.isdigit() and len(form) < 9 else rng.choice(BEFORE)
        after = rng.choice(AFTER)
        cases.append((before + form + after, before + REDACTED + after))
    return cases


ORDINARY = [
    "2026-12-01", "2026/12/1 08:00", "20261201", "2026年12月1日", "2026-12-01 2026-12-05", "2026.12.01-2026.12.05",
    "1,234.56元", "12,345,678.90", "费用 3456.78", "5.6×10^9/L", "3.5-9.5", "(3.5-9.5)×10^9/L", "120/80mmHg",
    "5.6,7.8,120,3.4,4.5", "J11.101", "I10.x00", "86.0401", "0.25g*24片", "注射用青霉素钠 800000U", "12300000 IU/mL",
    "HBV-DNA 1.23E+07", "ICU-3床", "第12345号病区", "阳性(+)", "甲型流感病毒核酸检测", "NULL",
]


@pytest.mark.parametrize("text,kept", identifier_cases(400, "hqms-identifier-forms"))
def test_every_written_form_of_an_identifier_is_redacted_and_masked(text: str, kept: str) -> None:
    assert redact(text) == kept
    assert looks_identifying(text) and shown_value(text, personal=False) == mask_value(text)


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_values_are_not_redacted(text: str) -> None:
    assert redact(text) == text


@pytest.mark.slow
def test_every_free_text_column_is_redacted_by_the_warehouse_sql() -> None:
    """The expression :func:`hqms.ingest.deidentify.select_sql` uses for each kept free-text
    column, run on DuckDB over generated forms: each is redacted, ordinary values are not."""
    columns = [(ds, wc) for ds in datasets().values() for wc in table_columns(ds)
               if wc.role == "value" and wc.source.free_text]
    assert len(columns) > 100 and {ds.id for ds, _ in columns} >= {"flu", "fever", "mzsy", "hqms", "lab", "lis"}
    rng = random.Random("hqms-warehouse-columns")
    cases = identifier_cases(3000, "hqms-warehouse-forms")
    con = duckdb.connect()
    install_redaction(con)
    for ds, wc in columns:
        sample = rng.sample(cases, 40) + [(t, t) for t in ORDINARY]
        rows = pa.table({wc.source.code: [t for t, _ in sample], "kept": [k for _, k in sample]})  # noqa: F841 — DuckDB reads it by name below
        con.execute("CREATE OR REPLACE TABLE s AS SELECT * FROM rows")
        expr = deidentify._expr(wc, ds, None)
        wrong = con.execute(f"SELECT \"{wc.source.code}\", {expr}, kept FROM s WHERE {expr} IS DISTINCT FROM kept").fetchall()
        assert wrong == [], (ds.id, wc.name)


@pytest.mark.slow
def test_the_sql_guard_lets_through_every_character_that_normalises_to_a_digit() -> None:
    """The guard's second branch trusts :data:`hqms.identifiers.PLAIN_RANGES` to hold no
    character that becomes a digit (apart from ASCII and full-width ones, which its first branch
    counts); checked over all of Unicode, so a new Unicode version cannot open a gap unnoticed."""
    def plain(cp: int) -> bool:
        return any(lo <= cp <= hi for lo, hi in PLAIN_RANGES)
    digits = {ord(c) for c in "0123456789０１２３４５６７８９"}
    leaks = [hex(cp) for cp in range(0x110000) if cp not in digits and plain(cp) and any(
        unicodedata.decimal(c, None) is not None for c in unicodedata.normalize("NFKC", chr(cp)))]
    assert leaks == []
    con = duckdb.connect()
    assert con.execute("SELECT regexp_matches('⑳⑳ ⒇', ?), regexp_matches('0.5g*12片/盒', ?)",
                       [SQL_GUARD, SQL_GUARD]).fetchone() == (True, False)


#: Forms typed into the lab results of the end-to-end test above.
FORMS = [case for case in identifier_cases(40, "hqms-e2e-forms") if REDACTED in case[1]][:8]


def test_a_file_name_holding_a_full_width_id_number_is_stored_masked() -> None:
    from hqms.registry import redact_identifiers

    number = make_id_card("510104", date(1990, 1, 2), "001").translate(FULL_WIDTH)
    stored = redact_identifiers(f"flu_20250106_{number}.zip")
    assert number not in stored and stored == f"flu_20250106_{mask_value(number)}.zip"
