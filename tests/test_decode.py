"""Transcoding to UTF-8: which encoding a file is, where it breaks, and the cleaning on the way.

Chunk edges matter (pending multi-byte sequences, a CRLF split between reads, a Ctrl-Z at the end
of a chunk that is not the end of the file), so many cases also run with tiny chunks.
"""
from __future__ import annotations

import codecs
import io
import zipfile
from pathlib import Path

import duckdb
import pytest

from hqms.ingest import decode
from hqms.ingest.decode import FALLBACK, DecodeError, Decoded, transcode
from test_stage import stage_zip
from hqms.spec import dataset

#: Chinese whose UTF-8 bytes are also valid GB18030: a wrong fallback succeeds, garbled.
UTF8_AS_GB18030 = ["三级手术", "上级医院", "上传成功", "不得大于"]
BOM = codecs.BOM_UTF8


def _transcode(tmp_path: Path, data: bytes) -> tuple[Decoded, bytes]:
    out = tmp_path / "out.csv"
    return transcode(lambda: io.BytesIO(data), out), out.read_bytes()


def _error(tmp_path: Path, data: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        transcode(lambda: io.BytesIO(data), tmp_path / "out.csv")
    return info.value


@pytest.fixture(params=[None, 1, 3, 16], ids=lambda n: f"chunk={n or 'default'}")
def chunk(request, monkeypatch) -> int | None:
    """Runs a test with the real chunk size and with chunks so small that every edge case
    (split characters, split CRLF, Ctrl-Z at a chunk end) happens somewhere."""
    if request.param:
        monkeypatch.setattr(decode, "CHUNK", request.param)
    return request.param


def _utf8_with_a_gbk_row() -> bytes:
    """UTF-8 Chinese on lines 1–4, a row pasted from a GBK export on line 5."""
    lines = [f"{i},{w}".encode() for i, w in enumerate(UTF8_AS_GB18030, 1)]
    lines += ["5,男性".encode("gbk"), b"6,x"]
    return b"\r\n".join(lines) + b"\r\n"


# --- which encoding ----------------------------------------------------------------------------

@pytest.mark.parametrize("encoding, reported", [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"),
                                                ("gbk", FALLBACK), ("gb18030", FALLBACK)])
def test_valid_files_come_out_as_the_same_text(tmp_path, chunk, encoding, reported):
    text = "P7501,P8003\r\n01,甲型流感病毒抗原阳性（胶体金）\r\n02,阴性\r\n"
    got, out = _transcode(tmp_path, text.encode(encoding))
    assert (got.encoding, out.decode("utf-8")) == (reported, text)
    assert (got.bytes_in, got.bytes_out) == (len(text.encode(encoding)), len(out))


@pytest.mark.parametrize("bom, codec", [(codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")])
def test_utf16_with_its_byte_order_mark_is_read_as_utf16(tmp_path, chunk, bom, codec):
    """What Windows PowerShell's ``>`` and ``bcp -w`` write; 上 is 0A 4E in UTF-16-LE, a byte
    that must not count as a line break."""
    text = "P7501,P8003\r\n01,上呼吸道感染（甲型流感病毒抗原阳性）\r\n02,阴性\r\n"
    got, out = _transcode(tmp_path, bom + text.encode(codec))
    assert (got.encoding, out.decode("utf-8"), got.lines) == (codec, text, 3)


@pytest.mark.parametrize("damage", [b"\x00\xd8A\x00", b"\x00"], ids=["lone surrogate", "odd length"])
def test_damaged_utf16_is_refused_at_its_line(tmp_path, chunk, damage):
    lines = "P7501,P8003\r\n上,上\r\n上,上\r\n".encode("utf-16-le")
    exc = _error(tmp_path, codecs.BOM_UTF16_LE + lines + damage)
    assert (exc.encoding, exc.detected, exc.line) == ("utf-16-le", "utf-16-le", 4)


@pytest.mark.parametrize("text, formulas", [("a,b\r\n=\"01\",x\r\n", True), ("a,b\r\n\"=\"\"01\"\"\",x\r\n", True),
                                             ("a,b\r\n=,\"x\"\r\n", False), ("a,b\r\n01,x=1\r\n", False)])
def test_excel_text_formulas_are_noticed_also_across_chunk_edges(tmp_path, chunk, text, formulas):
    got, _ = _transcode(tmp_path, text.encode("gbk"))
    assert got.text_formulas is formulas


def test_utf8_file_with_a_gbk_row_is_refused_at_that_row_not_read_as_gb18030(tmp_path, chunk):
    data = _utf8_with_a_gbk_row()
    data.decode("gb18030")  # the whole file passes as GB18030: falling back would garble it silently
    exc = _error(tmp_path, data)
    assert (exc.encoding, exc.detected, exc.line) == ("utf-8", "utf-8", 5)


def test_utf8_file_with_a_gbk_row_after_a_bom_is_refused_too(tmp_path):
    exc = _error(tmp_path, BOM + _utf8_with_a_gbk_row())
    assert (exc.encoding, exc.detected, exc.line) == ("utf-8", "utf-8", 5)


def test_gbk_after_an_ascii_first_chunk_falls_back(tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "CHUNK", 64)
    text = "A,B\r\n" + "".join(f"{i},x\r\n" for i in range(40)) + "1,男性\r\n"
    got, out = _transcode(tmp_path, text.encode("gbk"))
    assert (got.encoding, out.decode("utf-8")) == (FALLBACK, text)


def test_gbk_that_passes_as_utf8_for_a_while_is_still_gbk(tmp_path, chunk):
    """GBK 女 and 住院 are valid two-byte UTF-8 and GBK 斐济 starts with a valid three-byte one:
    a rule counting any non-ASCII UTF-8 as proof would refuse this valid GBK file."""
    text = "A,B\r\n" + "1,女\r\n2,住院\r\n" * 30 + "3,斐济\r\n4,男\r\n"
    got, out = _transcode(tmp_path, text.encode("gbk"))
    assert (got.encoding, out.decode("utf-8")) == (FALLBACK, text)


def test_bom_before_a_gbk_body_is_read_as_gb18030_without_the_bom(tmp_path, chunk):
    text = "A,B\r\n1,男性\r\n"
    got, out = _transcode(tmp_path, BOM + text.encode("gbk"))
    assert (got.encoding, out.decode("utf-8")) == (FALLBACK, text)


def test_a_gbk_file_is_decoded_in_one_pass(tmp_path):
    """It fails UTF-8 in its first chunk and GB18030 goes on from the bytes in hand; only the
    bytes before its first Chinese character are read again (to look for UTF-8 in them)."""
    data = ("A,B\r\n" + "1,男性\r\n" * 1000).encode("gbk")
    taken: list[int] = []

    class Counted(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            out = super().read(size)
            taken.append(len(out))
            return out

    assert transcode(lambda: Counted(data), tmp_path / "out.csv").encoding == FALLBACK
    assert sum(taken) == len(data) + len(b"A,B\r\n1,")


# --- where it breaks ---------------------------------------------------------------------------

def test_neither_encoding_reports_the_reading_that_got_further(tmp_path, chunk):
    # one Chinese character is too little to call the file UTF-8; as GB18030 it breaks on line 2
    data = b"A,B\r\n" + "1,中".encode() + b"\r\n3,x\r\n4,x\r\n5,\xff\r\n"
    exc = _error(tmp_path, data)
    assert (exc.encoding, exc.detected, exc.line) == ("utf-8", FALLBACK, 5)


def test_neither_encoding_gb18030_further(tmp_path, chunk):
    data = "A,B\r\n1,男性\r\n".encode("gbk") + b"3,x\r\n4,x\r\n5,x\r\n6,\xff\r\n"
    exc = _error(tmp_path, data)
    assert (exc.encoding, exc.detected, exc.line) == (FALLBACK, FALLBACK, 6)
    assert str(exc) == "neither UTF-8 nor GB18030: the gb18030 reading fails at line 6"


@pytest.mark.parametrize("eol", ["\r", "\n", "\r\n"])
def test_lines_end_at_cr_lf_and_crlf(tmp_path, chunk, eol):
    utf8 = eol.join(["A,B", *UTF8_AS_GB18030, "6,x"]).encode() + (eol + "7,").encode() + "男".encode("gbk")
    exc = _error(tmp_path, utf8 + eol.encode())
    assert (exc.detected, exc.line) == ("utf-8", 7)
    gbk = eol.join(["A,B", *UTF8_AS_GB18030, "6,x", "7,"]).encode("gbk") + b"\xff" + eol.encode()
    assert _error(tmp_path, gbk).line == 7


def test_mixed_line_ends_split_between_chunks(tmp_path, monkeypatch):
    data = b"A,B\r\n1,x\r2,x\n3,x\r\n" + "4,中文".encode("gbk") + b"\r\n\r\n\r6,\xff\r\n"
    for size in range(1, len(data)):  # every CRLF is split between two reads for some size
        monkeypatch.setattr(decode, "CHUNK", size)
        exc = _error(tmp_path, data)
        assert (exc.encoding, exc.line) == (FALLBACK, 8), size


def test_line_of_a_bad_byte_right_after_a_character_split_between_chunks(tmp_path, monkeypatch):
    head = "A,B\r\n1,三级手术\r\n2,上级".encode()
    data = head + b"\xff\r\n\r\n\r\n"
    monkeypatch.setattr(decode, "CHUNK", len(head) - 1)  # the last 上/级 is split, then 0xFF
    exc = _error(tmp_path, data)
    assert (exc.encoding, exc.detected, exc.line) == ("utf-8", "utf-8", 3)


def test_truncated_utf8_at_the_end_is_refused_on_its_line(tmp_path, chunk):
    data = "\n".join(["A,B", *UTF8_AS_GB18030, "6,中"]).encode()[:-1]
    exc = _error(tmp_path, data)
    assert (exc.encoding, exc.detected, exc.line) == ("utf-8", "utf-8", 6)


def test_bom_before_an_undecodable_body_is_refused_on_the_right_line(tmp_path, chunk):
    data = BOM + "A,B\r\n1,男性\r\n2,".encode("gbk") + b"\xff\r\n"
    exc = _error(tmp_path, data)
    assert (exc.encoding, exc.detected, exc.line) == (FALLBACK, FALLBACK, 3)


# --- cleaning ----------------------------------------------------------------------------------

@pytest.mark.parametrize("data, expected", [
    (b"\r\n\r\nA,B\r\n1,2\r\n", "A,B\r\n1,2\r\n"),
    (b"\n \t\nA,B\n1,2\n", "A,B\n1,2\n"),
    (b"\r\r  \rA,B\r1,2\r", "A,B\r1,2\r"),
    (b"\r\n  A,B\r\n", "  A,B\r\n"),                         # the header keeps its indentation
    (BOM + b"\r\n\r\nA,B\r\n", "A,B\r\n"),
    ("\u3000\r\n  \r\n甲,乙\r\n".encode("gbk"), "甲,乙\r\n"),
    ("\r\n甲,乙\r\n\r\n1,2\r\n".encode(), "甲,乙\r\n\r\n1,2\r\n"),  # only leading ones go
])
def test_blank_lines_before_the_header_are_dropped(tmp_path, chunk, data, expected):
    assert _transcode(tmp_path, data)[1].decode("utf-8") == expected


@pytest.mark.parametrize("data", [b"", b"\r\n", b"\r\n  \r\n\t\n", b"\r\r\r", BOM + b"\r\n", b"\r\n\x1a",
                                  "\u3000\r\n".encode("gbk")])
def test_a_file_of_blank_lines_comes_out_empty(tmp_path, chunk, data):
    got, out = _transcode(tmp_path, data)
    assert (out, got.bytes_out) == (b"", 0)


@pytest.mark.parametrize("data, expected", [
    (b"A,B\r\n1,2\r\n\x1a", b"A,B\r\n1,2\r\n"),
    (b"A,B\r\n1,2\x1a", b"A,B\r\n1,2"),
    (b"A,B\r\n1,2\r\n\x1a\x1a\x1a", b"A,B\r\n1,2\r\n"),      # CP/M padded the last record with them
    ("A,B\r\n1,男\r\n".encode("gbk") + b"\x1a", "A,B\r\n1,男\r\n".encode()),
    (b"A,B\r\n1,\x1a2\r\n", b"A,B\r\n1,\x1a2\r\n"),           # not at the end: data, kept
    (b"A,B\r\n\x1a\r\n1,2\r\n", b"A,B\r\n\x1a\r\n1,2\r\n"),
    (b"A,B\r\n1,2\r\n\x1a\r\n", b"A,B\r\n1,2\r\n\x1a\r\n"),
    (b"A,B\r\n1,2\r\n" + b"\x00" * 100, b"A,B\r\n1,2\r\n"),   # the zero padding of a cut-off copy
    (b"A,B\r\n1,2\r\n\x1a\x00\x1a\x00", b"A,B\r\n1,2\r\n"),
    (b"A,B\r\n1,\x002\r\n\x00", b"A,B\r\n1,\x002\r\n"),      # inside: data, kept
])
def test_a_dos_end_of_file_mark_or_nul_padding_is_dropped_only_at_the_very_end(tmp_path, chunk, data, expected):
    assert _transcode(tmp_path, data)[1] == expected


def test_staging_reads_a_file_with_blank_lines_first_and_a_ctrl_z_last(tmp_path):
    """The symptoms downstream: the file was refused as empty, and ended with a bogus row."""
    lis = dataset("lis")
    rows = [["01", f"MZ{n:05d}", "2025-01-06 09:00:00", f"S{n:05d}", "1", "2025-01-06 10:00:00",
             "阴性", "2", "35"] for n in (1, 2)]
    text = "\r\n \r\n" + "\r\n".join([",".join(lis.codes), *(",".join(r) for r in rows)]) + "\r\n\x1a"
    zpath = tmp_path / "u.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("lis_1.csv", text.encode("gbk"))
    con = duckdb.connect()
    (sf,) = stage_zip(zpath, "12345678X12345612A1001", con, tmp_path / "work")
    assert (sf.fatal, sf.errors, sf.record_count) == (False, [], 2)
    assert con.execute(f'SELECT _row, "P8000" FROM {sf.table} ORDER BY _row').fetchall() == \
        [(1, "S00001"), (2, "S00002")]


# --- what staging learns about the text --------------------------------------------------------

@pytest.mark.parametrize("data", [
    b"A,B\r\n1,2\r\n3,4\r\n", b"A,B\n1,2\n3,4", b"A,B\r1,2\r3,4\r", b"A,B\r\n1,2\n3,4\r",
    b"\r\n\r\nA,B\r\n1,2\r\n3,4\r\n\x1a", BOM + b"A,B\r\n1,2\r\n3,4",
])
def test_physical_lines_are_counted_whatever_the_line_ends_and_chunk_edges(tmp_path, chunk, data):
    """Staging compares them with the records DuckDB read: more lines than records means a
    value spans lines (and may end in a line break to trim)."""
    got, out = _transcode(tmp_path, data)
    assert got.lines == 3 == len(out.decode().splitlines())


@pytest.mark.parametrize("text, unusual", [
    ("A,B\r\n1,\t11010519491231002X\r\n", True), ("A,B\r\n1,2\u200b\r\n", True),
    ("A,B\r\n1,\ufeff2\r\n", True), ("A,B\r\n1,2\u3000\r\n", False), ('A,B\r\n1,"x\r\ny"\r\n', False),
])
def test_blanks_that_plain_trim_keeps_are_noticed(tmp_path, chunk, text, unusual):
    assert _transcode(tmp_path, text.encode("gb18030"))[0].unusual_blanks is unusual
