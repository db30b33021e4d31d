"""Staging: encodings, header mapping and exact row numbers, including malformed CSVs."""
from __future__ import annotations

import zipfile
from pathlib import Path

import duckdb
import pytest

from hqms.ingest.stage import StagedFile, stage_uploads
from hqms.spec import dataset

ORG = "12345678X12345612A1001"
LIS = dataset("lis")  # 9 columns: P7501 P7502 P7506 P8000 P8001 P8002 P8003 P8004 P8005


def stage_zip(zip_path: Path, org_code: str, con: duckdb.DuckDBPyConnection, work: Path) -> list[StagedFile]:
    """Stage one zip, as the ingest stages a round of one upload."""
    return stage_uploads(con, [("upload", zip_path, org_code)], work)["upload"]


def _row(n: int, result: str = "阴性") -> list[str]:
    return ["01", f"MZ{n:05d}", "2025-01-06 09:00:00", f"S{n:05d}", "1", "2025-01-06 10:00:00", result, "2", "35"]


def _csv(header: list[str], rows: list[list[str]], *, quote_all: bool = True) -> str:
    def cell(v: str) -> str:
        return '"' + v.replace('"', '""') + '"' if quote_all and v else v

    return "\r\n".join([",".join(header)] + [",".join(cell(v) for v in r) for r in rows]) + "\r\n"


def _stage(tmp_path: Path, name: str, payload: bytes) -> tuple[list, duckdb.DuckDBPyConnection]:
    zpath = tmp_path / "u.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, payload)
    con = duckdb.connect(str(tmp_path / "stage.duckdb"))
    return stage_zip(zpath, ORG, con, tmp_path / "work"), con


@pytest.mark.parametrize("encoding", ["gbk", "utf-8", "utf-8-sig", "gb18030", "utf-16"])
def test_encodings_decode_to_the_same_rows(tmp_path, encoding):
    text = _csv(list(LIS.codes), [_row(i, "甲型流感病毒抗原阳性（胶体金）") for i in range(1, 4)])
    (sf,), con = _stage(tmp_path, "20250106/lis_20250106.csv", text.encode(encoding))
    assert (sf.record_count, sf.parsed_count, sf.fatal, sf.errors) == (3, 3, False, [])
    assert con.execute(f'SELECT _row, "P8003" FROM {sf.table} WHERE _src = ? ORDER BY _row', [sf.src]).fetchall() == \
        [(i, "甲型流感病毒抗原阳性（胶体金）") for i in (1, 2, 3)]


def test_multiline_quoted_values_keep_record_numbers(tmp_path):
    rows = [_row(i) for i in range(1, 6)]
    rows[1][6] = "第一行\r\n第二行"  # a result text spanning lines is still one record
    (sf,), con = _stage(tmp_path, "lis_1.csv", _csv(list(LIS.codes), rows).encode("gbk"))
    assert sf.record_count == 5 and sf.errors == []
    assert con.execute(f'SELECT _row, "P8000" FROM {sf.table} WHERE _src = ? ORDER BY _row', [sf.src]).fetchall() == \
        [(i, f"S{i:05d}") for i in range(1, 6)]


def test_malformed_rows_are_reported_by_row_and_the_rest_keep_their_numbers(tmp_path):
    good = [_csv_line(_row(i)) for i in range(1, 7)]
    good[2] = _csv_line(_row(3)) + ',"extra"'          # row 3: one field too many
    good[4] = ",".join(_csv_line(_row(5)).split(",")[:5])  # row 5: fields missing
    text = ",".join(LIS.codes) + "\r\n" + "\r\n".join(good) + "\r\n"
    (sf,), con = _stage(tmp_path, "lis_2.csv", text.encode("gbk"))
    parse = [(e.row, e.rule) for e in sf.errors]
    assert parse == [(3, "csv_parse"), (5, "csv_parse")]
    assert sf.record_count == 6 and sf.parsed_count == 4
    assert con.execute(f'SELECT _row, "P8000" FROM {sf.table} WHERE _src = ? ORDER BY _row', [sf.src]).fetchall() == \
        [(i, f"S{i:05d}") for i in (1, 2, 4, 6)]


def _csv_line(values: list[str]) -> str:
    return ",".join('"' + v + '"' for v in values)


def test_header_aliases_extra_and_missing_columns(tmp_path):
    header = [c.lower() for c in LIS.codes[:-1]] + ["serialVersionUID", "MYSTERY"]
    rows = [r[:-1] + ["", "x"] for r in (_row(1), _row(2))]
    (sf,), con = _stage(tmp_path, "LIS_3.csv", _csv(header, rows).encode("gbk"))
    by_rule = {(e.rule, e.column, e.severity) for e in sf.errors}
    assert ("unknown_column", "MYSTERY", "warning") in by_rule
    assert ("unknown_column", "serialVersionUID", "warning") in by_rule
    missing = [e for e in sf.errors if e.rule == "missing_column"]
    assert [(e.column, e.severity) for e in missing] == [("P8005", "error" if LIS.column("P8005").required else "warning")]
    assert sf.fatal == LIS.column("P8005").required


def test_undecodable_bytes_make_a_file_level_error(tmp_path):
    payload = _csv(list(LIS.codes), [_row(1)]).encode("gbk") + b"\x81\x20\xff\xfe\r\n"
    (sf,), _ = _stage(tmp_path, "lis_4.csv", payload)
    assert sf.fatal and [e.rule for e in sf.errors] == ["encoding"]


def test_header_only_file_is_empty_not_an_error(tmp_path):
    (sf,), _ = _stage(tmp_path, "lis_5.csv", (",".join(LIS.codes) + "\r\n").encode("gbk"))
    assert sf.record_count == 0 and [(e.rule, e.severity) for e in sf.errors] == [("empty_file", "warning")]


def test_a_batch_of_many_files_keeps_each_files_own_row_numbers(tmp_path):
    """Files of one dataset are read together; row numbers must still restart per file, also
    for a file with a malformed row (re-read alone) and one with its columns in another order."""
    from hqms.ingest.stage import stage_uploads

    uploads, expected = [], {}
    for u in range(3):
        zpath = tmp_path / f"u{u}.zip"
        with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in range(3):
                n = 5 + 7 * u + 3 * f
                rows = [_row(1000 * u + 100 * f + i) for i in range(1, n + 1)]
                header = list(LIS.codes)
                lines = [_csv_line(r) for r in rows]
                if (u, f) == (1, 1):                          # malformed row 3
                    lines[2] += ',"extra"'
                if (u, f) == (2, 0):                          # same columns, another order
                    header = header[::-1]
                    lines = [_csv_line(r[::-1]) for r in rows]
                zf.writestr(f"d/lis_{f}.csv", ("\r\n".join([",".join(header), *lines]) + "\r\n").encode("gbk"))
                expected[(f"k{u}", f"lis_{f}.csv")] = [
                    (i, f"S{1000 * u + 100 * f + i:05d}") for i in range(1, n + 1) if (u, f, i) != (1, 1, 3)]
        uploads.append((f"k{u}", zpath, ORG))
    con = duckdb.connect()
    staged = stage_uploads(con, uploads, tmp_path / "work")
    for key, files in staged.items():
        for sf in files:
            got = con.execute(f'SELECT _row, "P8000" FROM {sf.table} WHERE _src = ? ORDER BY _row',
                              [sf.src]).fetchall()
            assert got == expected[(key, sf.file_name)], (key, sf.file_name)
            assert sf.record_count == len(expected[(key, sf.file_name)]) + (sf.errors != [])
    (bad,) = [sf for sf in staged["k1"] if sf.file_name == "lis_1.csv"]
    assert [(e.row, e.rule) for e in bad.errors] == [(3, "csv_parse")]
    assert not list((tmp_path / "work").iterdir())


def test_a_stray_quote_costs_one_row_and_the_rest_are_staged(tmp_path):
    """An unquoted export with a value starting with '"' far into the file: DuckDB refuses the
    file (its error text, cut mid-character, is not even decodable), the exact path must then
    report that one row and stage every other row with its own number."""
    rows = [",".join(_row(i, "阴性（胶体金法）")) for i in range(1, 401)]
    rows[249] = rows[249].replace(",S00250,", ',"S00250,', 1)
    text = ",".join(LIS.codes) + "\r\n" + "\r\n".join(rows) + "\r\n"
    (sf,), con = _stage(tmp_path, "lis_3.csv", text.encode("gbk"))
    assert [(e.row, e.rule) for e in sf.errors] == [(250, "csv_parse")]
    assert (sf.record_count, sf.parsed_count) == (400, 399)
    staged = con.execute(f'SELECT _row, "P8000" FROM {sf.table} ORDER BY _row').fetchall()
    assert staged == [(i, f"S{i:05d}") for i in range(1, 401) if i != 250]


def test_a_huge_cell_is_staged_for_the_length_rule_and_later_rows_are_kept(tmp_path):
    """A 3 MB cell is over DuckDB's line limit and Python's default field limit; the row is
    staged (the length rule reports it) and no row after it goes missing."""
    rows = [_row(i) for i in range(1, 11)]
    rows[4][6] = "阳" * 1_000_000
    (sf,), con = _stage(tmp_path, "lis_4.csv", _csv(list(LIS.codes), rows).encode("gbk"))
    assert (sf.record_count, sf.parsed_count, sf.errors) == (10, 10, [])
    assert con.execute(f'SELECT _row, length("P8003") FROM {sf.table} ORDER BY _row').fetchall() == \
        [(i, 1_000_000 if i == 5 else 2) for i in range(1, 11)]


@pytest.mark.parametrize("quote_all", [False, True])
def test_null_markers_of_other_exporters_stage_as_null(tmp_path, quote_all):
    rows = [_row(i) for i in range(1, 7)]
    for row, marker in zip(rows, ["NULL", "null", "\\N", "Null", "\u3000", "NULLS"]):
        row[7] = marker
    rows[0][6] = "\u3000阴性 "
    (sf,), con = _stage(tmp_path, "lis_5.csv", _csv(list(LIS.codes), rows, quote_all=quote_all).encode("gbk"))
    assert con.execute(f'SELECT _row, "P8003", "P8004" FROM {sf.table} ORDER BY _row').fetchall() == \
        [(i, "阴性", None) for i in range(1, 6)] + [(6, "阴性", "NULLS")]


@pytest.mark.parametrize("exact_path", [False, True])
def test_values_are_trimmed_of_tabs_line_breaks_and_invisible_spaces_at_their_ends(tmp_path, exact_path):
    """Exporters write a TAB before long numbers (so Excel keeps an ID number as text); a value
    copied from a text box ends in a line break; a BOM or zero-width space is invisible. None of
    them is part of the value; inside a value they are kept. The exact (Python csv) path, taken
    when a file has a malformed row, trims the same way."""
    rows = [_row(i) for i in range(1, 7)]
    rows[0][3] = "\tS00001"
    rows[1][3] = "S00002\t"
    rows[2][6] = "阴性\r\n"
    rows[3][6] = "\u200b\ufeff阴性\u3000"
    rows[4][6] = "\t \r\n"                     # only blanks: no value
    rows[5][6] = "阴\t性\r\n（复查）"          # inside the value: kept
    text = _csv(list(LIS.codes), rows)
    if exact_path:
        text += '"01","MZ9","2025-01-06"\r\n'   # row 7: too few fields
    (sf,), con = _stage(tmp_path, "lis_9.csv", text.encode("gb18030"))
    assert sf.unusual_blanks and [e.row for e in sf.errors] == ([7] if exact_path else [])
    assert con.execute(f'SELECT _row, "P8000", "P8003" FROM {sf.table} ORDER BY _row').fetchall() == [
        (1, "S00001", "阴性"), (2, "S00002", "阴性"), (3, "S00003", "阴性"), (4, "S00004", "阴性"),
        (5, "S00005", None), (6, "S00006", "阴\t性\r\n（复查）")]


def test_a_line_break_ending_a_quoted_value_is_trimmed_in_a_file_without_other_blanks(tmp_path):
    rows = [_row(i) for i in range(1, 4)]
    rows[0][6] = "阴性\r\n"
    rows[1][6] = "\n阴性"
    (sf,), con = _stage(tmp_path, "lis_10.csv", _csv(list(LIS.codes), rows).encode("gbk"))
    assert not sf.unusual_blanks
    assert con.execute(f'SELECT "P8003" FROM {sf.table} ORDER BY _row').fetchall() == [("阴性",)] * 3


def test_plain_trim_keeps_exactly_the_blanks_staging_handles_apart():
    """Staging uses DuckDB's cheap ``TRIM`` unless a cell holds a blank it keeps; if a DuckDB
    upgrade changes which blanks those are, this fails rather than values going untrimmed."""
    from hqms.ingest.stage import EDGE_BLANKS, KEPT_BY_TRIM

    con = duckdb.connect()
    kept = [ch for ch in EDGE_BLANKS if con.execute("SELECT TRIM(?)", [f"{ch}a{ch}"]).fetchone()[0] != "a"]
    assert sorted(kept) == sorted(KEPT_BY_TRIM)


@pytest.mark.parametrize("delim", ["\t", ";", "|", "，"])
def test_a_file_separated_by_another_character_gets_one_clear_error(tmp_path, delim):
    text = "\r\n".join(delim.join(r) for r in [list(LIS.codes), _row(1), _row(2)]) + "\r\n"
    (sf,), _ = _stage(tmp_path, "lis_6.csv", text.encode("gbk"))
    assert sf.fatal and sf.record_count == 2
    assert [(e.rule, e.row) for e in sf.errors] == [("csv_parse", None)]
    assert "commas" in sf.errors[0].message_en


def test_a_repeated_header_line_is_one_row_error_not_a_record(tmp_path):
    header = ",".join(LIS.codes)
    text = "\r\n".join([header, ",".join(_row(1)), ",".join(_row(2)), header.lower(), ",".join(_row(3))]) + "\r\n"
    (sf,), con = _stage(tmp_path, "lis_7.csv", text.encode("gbk"))
    assert [(e.rule, e.row) for e in sf.errors] == [("csv_parse", 3)]
    assert (sf.record_count, sf.parsed_count) == (4, 3)
    assert con.execute(f"SELECT _row FROM {sf.table} ORDER BY _row").fetchall() == [(1,), (2,), (4,)]


def test_windows_zip_names_and_os_artefacts(tmp_path):
    """A GBK-named entry without the UTF-8 flag, in a backslash folder, beside macOS artefacts."""
    zpath = tmp_path / "u.zip"
    payload = _csv(list(LIS.codes), [_row(1)]).encode("gbk")
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("SJ\\lis_JYJY_20250106.csv", payload)  # placeholders as long as the GBK bytes
        zf.writestr("__MACOSX/SJ/._lis_20250106.csv", b"\x00\x05\x16\x07")
        zf.writestr(".DS_Store", b"\x00\x00\x00\x01Bud1")
    raw = zpath.read_bytes().replace(b"JYJY", "检验".encode("gbk")).replace(b"SJ\\", "数".encode("gbk") + b"\\")
    zpath.write_bytes(raw)
    con = duckdb.connect(str(tmp_path / "stage.duckdb"))
    (sf,) = stage_zip(zpath, ORG, con, tmp_path / "work")
    assert (sf.file_name, sf.record_count, sf.errors) == ("lis_检验_20250106.csv", 1, [])


def test_a_utf8_file_with_a_gbk_row_is_an_encoding_error_at_that_line_with_its_records_counted(tmp_path):
    rows = [",".join(_row(i, "甲型流感病毒抗原阳性")) for i in range(1, 6)]
    payload = (",".join(LIS.codes) + "\r\n" + "\r\n".join(rows[:3]) + "\r\n").encode("utf-8")
    payload += (rows[3] + "\r\n").encode("gbk") + (rows[4] + "\r\n").encode("utf-8")
    (sf,), _ = _stage(tmp_path, "lis_8.csv", payload)
    assert sf.fatal and sf.record_count == 5
    assert [(e.rule, e.row) for e in sf.errors] == [("encoding", None)]
    assert "UTF-8 but line 5" in sf.errors[0].message_en


def test_chinese_column_names_as_headers(tmp_path):
    """Some exporters write the standard's Chinese column names (full-width brackets or not)."""
    names = [LIS.column(c).zh for c in LIS.codes]
    names[0] = names[0].replace("（", "(").replace("）", ")") + " "
    (sf,), con = _stage(tmp_path, "lis_9.csv", _csv(names, [_row(1)]).encode("gbk"))
    assert (sf.fatal, sf.errors, sf.record_count) == (False, [], 1)
    assert con.execute(f'SELECT "P8000" FROM {sf.table}').fetchall() == [("S00001",)]


@pytest.mark.parametrize("spell", [
    lambda c, zh: f"{c}({zh})", lambda c, zh: f"{zh}（{c}）", lambda c, zh: f"{c}_{zh}", lambda c, zh: f"{c} {zh}",
    lambda c, zh: f"{c}-{zh}",
], ids=["code(name)", "name（code）", "code_name", "code name", "code-name"])
def test_headers_naming_each_column_by_code_and_chinese_name(tmp_path, spell):
    names = [spell(c, LIS.column(c).zh) for c in LIS.codes]
    (sf,), con = _stage(tmp_path, "lis_11.csv", _csv(names, [_row(1)]).encode("gbk"))
    assert (sf.fatal, sf.errors, sf.record_count) == (False, [], 1)
    assert con.execute(f'SELECT "P8000" FROM {sf.table}').fetchall() == [("S00001",)]


def test_a_header_whose_code_and_name_disagree_is_an_unknown_column(tmp_path):
    names = list(LIS.codes)
    names[-1] = f"{LIS.codes[-1]}({LIS.column(LIS.codes[0]).zh})"   # P8005 with the name of P7501
    (sf,), _ = _stage(tmp_path, "lis_12.csv", _csv(names, [_row(1)]).encode("gbk"))
    assert [(e.rule, e.severity) for e in sf.errors if e.column == names[-1]] == [("unknown_column", "warning")]


def test_lines_of_spaces_are_blank_lines_not_records(tmp_path):
    text = _csv(list(LIS.codes), [_row(1), _row(2)]) + "   \r\n\t\r\n"
    (sf,), _ = _stage(tmp_path, "lis_10.csv", text.encode("gbk"))
    assert (sf.record_count, sf.parsed_count, sf.errors) == (2, 2, [])


def test_a_file_without_header_is_one_error_and_echoes_no_value(tmp_path):
    rows = [_row(i) for i in range(1, 4)]
    rows[0][1] = "110101199003077777"  # a value that must not come back as a "column name"
    text = "\r\n".join(",".join(r) for r in rows) + "\r\n"
    (sf,), _ = _stage(tmp_path, "lis_11.csv", text.encode("gbk"))
    assert sf.fatal and sf.record_count == 3
    assert [(e.rule, e.column) for e in sf.errors] == [("missing_column", None)]
    assert "110101199003077777" not in repr(sf.errors)


def test_a_short_data_line_first_is_headerless_too(tmp_path):
    """Two fields of a patient's values (name, phone) must not come back as column names."""
    text = "顾霞宁,13912345678\r\n" + ",".join(_row(1)) + "\r\n"
    (sf,), _ = _stage(tmp_path, "lis_13.csv", text.encode("gbk"))
    assert sf.fatal and [(e.rule, e.column) for e in sf.errors] == [("missing_column", None)]
    assert "顾霞宁" not in repr(sf.errors) and "13912345678" not in repr(sf.errors)


def test_a_full_header_with_more_extra_columns_than_standard_ones_is_a_header(tmp_path):
    """A hospital system that appends its own columns (科室, 床号, …) after the standard ones:
    warnings for the extras, every record staged, the header not counted as one."""
    extras = [f"院内字段{i}" for i in range(len(LIS.codes) + 1)]
    rows = [[*_row(n), *("x" for _ in extras)] for n in (1, 2, 3)]
    (sf,), con = _stage(tmp_path, "lis_14.csv", _csv([*LIS.codes, *extras], rows).encode("gbk"))
    assert not sf.fatal and (sf.record_count, sf.parsed_count) == (3, 3)
    assert {(e.rule, e.severity) for e in sf.errors} == {("unknown_column", "warning")}
    assert len(sf.errors) == len(extras)
    assert con.execute(f"SELECT count(*) FROM {sf.table}").fetchone() == (3,)


def test_an_unknown_column_that_looks_like_a_value_is_masked(tmp_path):
    header = [*LIS.codes, "13912345678"]
    text = _csv(header, [[*_row(1), "x"]])
    (sf,), _ = _stage(tmp_path, "lis_12.csv", text.encode("gbk"))
    assert [(e.rule, e.column) for e in sf.errors] == [("unknown_column", "1*********8")]
    assert "13912345678" not in repr(sf.errors)


def test_trailing_nameless_columns_get_one_warning(tmp_path):
    text = _csv([*LIS.codes, "", "", ""], [[*_row(1), "", "", ""]], quote_all=False)
    (sf,), _ = _stage(tmp_path, "lis_13.csv", text.encode("gbk"))
    assert [(e.rule, e.severity) for e in sf.errors] == [("unknown_column", "warning")]
    assert sf.record_count == 1 and not sf.fatal


@pytest.mark.parametrize("rows_end", ["", ",", ',"x"'], ids=["no-comma", "empty", "value"])
def test_a_header_ending_in_a_comma_takes_records_with_or_without_the_nameless_field(tmp_path, rows_end):
    """An exporter writes a comma after the last header name; its records may or may not have
    the matching empty field (or even a value there): no named column can shift, so every
    record stays, and the nameless column gets one warning, not one error per row."""
    lines = [",".join(LIS.codes) + ","] + [",".join(_row(i)) + rows_end for i in range(1, 6)]
    (sf,), con = _stage(tmp_path, "lis_14.csv", ("\r\n".join(lines) + "\r\n").encode("gbk"))
    assert (sf.record_count, sf.parsed_count, sf.fatal) == (5, 5, False)
    assert [(e.rule, e.severity, e.message_en) for e in sf.errors] == [
        ("unknown_column", "warning", "header field 10 has no name (an extra comma?); the column is ignored")]
    assert con.execute(f'SELECT _row, "P8000", "P8005" FROM {sf.table} ORDER BY _row').fetchall() == \
        [(i, f"S{i:05d}", "35") for i in range(1, 6)]


def test_records_ending_in_a_comma_the_header_lacks_are_whole(tmp_path):
    lines = [",".join(LIS.codes)] + [",".join(_row(i)) + "," for i in range(1, 4)]
    (sf,), con = _stage(tmp_path, "lis_15.csv", ("\r\n".join(lines) + "\r\n").encode("gbk"))
    assert (sf.record_count, sf.parsed_count, sf.errors) == (3, 3, [])


def test_a_second_bom_before_a_quoted_header_is_not_part_of_the_first_name(tmp_path):
    """Decoding drops one BOM; an exporter that wrote its own before a library's leaves a
    second one outside the first field's quotes."""
    header = ",".join(f'"{c}"' for c in LIS.codes)
    payload = b"\xef\xbb\xbf" + ("\ufeff" + header + "\r\n" + _csv(list(LIS.codes), [_row(1)]).split("\r\n", 1)[1]
                                  ).encode("utf-8")
    (sf,), con = _stage(tmp_path, "lis_16.csv", payload)
    assert (sf.fatal, sf.errors, sf.record_count) == (False, [], 1)
    assert con.execute(f'SELECT "P7501" FROM {sf.table}').fetchall() == [("01",)]


def test_a_lone_carriage_return_inside_a_value_survives_the_exact_path(tmp_path):
    """Found by fuzzing: the exact path re-wrote such a value unquoted (its line terminator is
    LF), and DuckDB then refused the whole re-written file — the upload could not be staged."""
    rows = [_row(i) for i in range(1, 5)]
    rows[1][5] = "2025-\r01-06 10:00:00"
    text = _csv(list(LIS.codes), rows) + '"01","MZ9"\r\n'     # row 5: too few fields → exact path
    (sf,), con = _stage(tmp_path, "lis_17.csv", text.encode("gbk"))
    assert [(e.rule, e.row) for e in sf.errors] == [("csv_parse", 5)]
    assert con.execute(f'SELECT _row, "P8002" FROM {sf.table} ORDER BY _row').fetchall() == [
        (1, "2025-01-06 10:00:00"), (2, "2025-\r01-06 10:00:00"), (3, "2025-01-06 10:00:00"), (4, "2025-01-06 10:00:00")]


@pytest.mark.parametrize("exact_path", [False, True])
def test_rows_of_commas_are_not_records_and_later_rows_keep_their_numbers(tmp_path, exact_path):
    """Excel saves the empty rows of a sheet's used range as lines of commas: one warning, not
    one record with an error per required column. Blank or null-marker cells count as empty."""
    empty = [""] * len(LIS.codes)
    rows = [_row(1), empty, _row(3), ["  ", "NULL"] + [""] * (len(LIS.codes) - 2), _row(5), empty, empty]
    if exact_path:
        rows[4] = _row(5) + ["one field too many"]  # a malformed row sends the file to the exact path
    (sf,), con = _stage(tmp_path, "lis_11.csv", _csv(list(LIS.codes), rows, quote_all=False).encode("gbk"))
    warnings = [(e.rule, e.row, e.severity) for e in sf.errors if e.rule == "blank_rows"]
    assert warnings == [("blank_rows", 2, "warning")]
    assert "4 rows hold no value" in sf.errors[[e.rule for e in sf.errors].index("blank_rows")].message_en
    assert sf.record_count == 3
    assert con.execute(f'SELECT _row, "P8000" FROM {sf.table} WHERE _src = ? ORDER BY _row', [sf.src]).fetchall() == \
        ([(1, "S00001"), (3, "S00003")] if exact_path else [(1, "S00001"), (3, "S00003"), (5, "S00005")])


def test_a_file_of_only_rows_of_commas_is_empty(tmp_path):
    (sf,), _ = _stage(tmp_path, "lis_12.csv", _csv(list(LIS.codes), [[""] * len(LIS.codes)] * 3).encode("gbk"))
    assert (sf.record_count, sf.parsed_count) == (0, 0)
    assert sorted((e.rule, e.severity) for e in sf.errors) == [("blank_rows", "warning"), ("empty_file", "warning")]


def test_a_damaged_utf16_file_is_one_encoding_error_naming_utf16_and_its_line(tmp_path):
    rows = [_row(1), _row(2), _row(3)]
    rows[1][6] = "BAD"
    text = _csv(list(LIS.codes), rows).encode("utf-16").replace("BAD".encode("utf-16-le"), b"\x00\xd8A\x00")
    (sf,), _ = _stage(tmp_path, "lis_13.csv", text)  # a lone surrogate in row 2, on line 3
    assert sf.fatal and [(e.rule, e.row) for e in sf.errors] == [("encoding", None)]
    assert "the file is UTF-16 but line 3" in sf.errors[0].message_en and sf.record_count == 3


def test_excel_text_formulas_are_read_as_the_text_inside_with_one_warning_per_column(tmp_path):
    """``="MZ00001"`` read as written would pass every rule and be pseudonymised as is, never
    linking with the visit's other rows. Unquoted or quoted the CSV way, empty, padded."""
    rows = [_row(i) for i in range(1, 5)]
    for r in rows:
        r[1] = f'="{r[1]}"'
    rows[2][8] = '="35"'
    rows[3][6] = '=" 阴性 "'
    rows[0][6] = '=""'
    rows[1][6] = 'x="y"'  # not a formula: kept
    text = ",".join(LIS.codes) + "\r\n" + "\r\n".join(
        ",".join(f'"{v.replace(chr(34), chr(34) * 2)}"' if n % 2 else v for n, v in enumerate(r)) for r in rows) + "\r\n"
    (sf,), con = _stage(tmp_path, "lis_14.csv", text.encode("gbk"))
    assert sf.text_formulas and sf.record_count == 4
    assert sorted((e.rule, e.column, e.severity) for e in sf.errors) == [
        ("text_formula", "P7502", "warning"), ("text_formula", "P8003", "warning"), ("text_formula", "P8005", "warning")]
    assert "4 values are written as Excel text formulas" in next(e for e in sf.errors if e.column == "P7502").message_en
    assert con.execute(f'SELECT _row, "P7502", "P8003", "P8005" FROM {sf.table} ORDER BY _row').fetchall() == [
        (1, "MZ00001", None, "35"), (2, "MZ00002", 'x="y"', "35"), (3, "MZ00003", "阴性", "35"), (4, "MZ00004", "阴性", "35")]


@pytest.mark.parametrize("damage", ["huge_cell", "unclosed_quote", "unclosed_quote_small"])
def test_a_damaged_header_line_is_one_report_naming_row_1(tmp_path, damage):
    """A header cell over 131,072 characters, or an unclosed quote on the header line (which made
    the csv module read on into the data: over 128 KiB a ``_csv.Error`` and a traceback)."""
    rows = [_row(i) for i in range(1, 2001)]
    body = "".join(",".join(r) + "\r\n" for r in rows)
    header = {"huge_cell": ",".join(LIS.codes) + ",\"" + "x" * 140_000 + "\"",
              "unclosed_quote": ",".join(LIS.codes[:-1]) + ',"' + LIS.codes[-1],
              "unclosed_quote_small": ",".join(LIS.codes[:-1]) + ',"' + LIS.codes[-1]}[damage]
    if damage == "unclosed_quote_small":
        body = "".join(",".join(r) + "\r\n" for r in rows[:3])
    assert damage.endswith("small") or len(body) > 128 * 1024
    (sf,), _ = _stage(tmp_path, "lis_20.csv", (header + "\r\n" + body).encode("gbk"))
    assert sf.fatal and [(e.file_name, e.row, e.rule) for e in sf.errors] == [("lis_20.csv", 1, "csv_parse")]
    assert ("131,072" if damage == "huge_cell" else "引号") in sf.errors[0].message_zh
    assert sf.record_count == (3 if damage.endswith("small") else 2000)


def test_a_name_in_place_of_a_header_name_is_masked_and_its_position_named(tmp_path):
    header = [*LIS.codes, "顾霞宁"]
    (sf,), _ = _stage(tmp_path, "lis_15.csv", _csv(header, [[*_row(1), "x"]]).encode("gbk"))
    assert [(e.rule, e.column) for e in sf.errors] == [("unknown_column", "顾*宁")]
    assert "顾霞宁" not in repr(sf.errors) and f"第 {len(header)} 列" in sf.errors[0].message_zh
