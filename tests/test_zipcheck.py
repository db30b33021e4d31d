"""Intake zip rules on real zip files built here: each bad zip is refused for its own reason."""
from __future__ import annotations

import os
import random
import stat
import struct
import unicodedata
import zipfile
import zlib
from pathlib import Path

import pytest
from conftest import BAD_ZIP_CASES, csv_bytes, make_zip, synthetic_org_code, write_bytes

from hqms import config
from hqms.intake.zipcheck import (INTAKE_RULES, RATIO_MIN_BYTES, UNICODE_PATH_FIELD, ZipRejected,
                                  check_zip, data_entries, entry_basename, sha256_file)

ORG = synthetic_org_code(1)


def _limits(**over: int) -> dict[str, int]:
    cfg = config.load()
    limits = dict(max_zip_bytes=cfg.max_zip_bytes, max_uncompressed_bytes=cfg.max_uncompressed_bytes,
                  max_ratio=cfg.max_ratio, max_file_bytes=cfg.max_file_bytes)
    limits.update(over)
    return limits


def test_corpus_covers_every_structural_rule(bad_zips: dict[str, tuple[Path, str]]) -> None:
    assert set(bad_zips) == set(BAD_ZIP_CASES)
    covered = {rule for _, rule in bad_zips.values()}
    # bad_org_code and unknown_org are submit-level rules; stream_mismatch and too_much_data have own tests.
    covered |= {rule for _, rule in HOSTILE_CASES.values()}
    assert covered >= set(INTAKE_RULES) - {"bad_org_code", "unknown_org", "stream_mismatch", "too_much_data"}


@pytest.mark.parametrize("case", BAD_ZIP_CASES)
def test_bad_zip_is_rejected_with_its_reason(bad_zips: dict, case: str, hqms_home: Path) -> None:
    path, rule = bad_zips[case]
    with pytest.raises(ZipRejected) as info:
        check_zip(path, **_limits())
    assert info.value.rule == rule
    assert info.value.message_zh and info.value.message_en
    assert info.value.entry  # every refusal names the zip or the entry at fault


def test_good_zip_passes(tmp_path: Path, hqms_home: Path) -> None:
    path = make_zip(tmp_path / "ok.zip", [("data/", b""), ("data/flu_20260101.csv",
                                                             csv_bytes("flu_", ORG, rows=5))])
    summary = check_zip(path, **_limits())
    assert summary.stream == "flu"
    assert [e.base_name for e in summary.entries] == ["flu_20260101.csv"]
    assert summary.uncompressed_bytes == len(csv_bytes("flu_", ORG, rows=5))
    assert check_zip(path, stream="flu", **_limits()).stream == "flu"


def test_stream_must_agree(tmp_path: Path, hqms_home: Path) -> None:
    path = make_zip(tmp_path / "ok.zip", {"flu_1.csv": csv_bytes("flu_", ORG)})
    with pytest.raises(ZipRejected) as info:
        check_zip(path, stream="fever", **_limits())
    assert info.value.rule == "stream_mismatch"


def test_total_uncompressed_limit(tmp_path: Path, hqms_home: Path) -> None:
    path = make_zip(tmp_path / "two.zip", [("flu_1.csv", os.urandom(6000)),
                                           ("flu_2.csv", os.urandom(6000))])
    with pytest.raises(ZipRejected) as info:
        check_zip(path, **_limits(max_uncompressed_bytes=10_000))
    assert (info.value.rule, info.value.entry) == ("too_much_data", "flu_2.csv")


def test_lying_size_header_is_caught_while_streaming(tmp_path: Path, hqms_home: Path) -> None:
    """A central directory that under-declares the size cannot inflate past it."""
    path = make_zip(tmp_path / "liar.zip", {"flu_1.csv": b"A" * 500_000})
    data = bytearray(path.read_bytes())
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 1000)  # uncompressed size in the central record
    path.write_bytes(bytes(data))
    with pytest.raises(ZipRejected) as info:
        check_zip(path, **_limits())
    assert info.value.rule in ("corrupt_zip", "too_much_data")


def test_sha256_file(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "x.bin", b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_legacy_gbk_entry_names_are_shown_as_written(tmp_path: Path, hqms_home: Path) -> None:
    """Chinese Windows zip tools store GBK names without the UTF-8 flag; refusals must name the
    file the way the hospital sees it."""
    path = make_zip(tmp_path / "gbk.zip", {"XXXX_1.csv": b"a\r\n"})
    path.write_bytes(path.read_bytes().replace(b"XXXX", "病例".encode("gbk")))
    with pytest.raises(ZipRejected) as info:
        check_zip(path, **_limits())
    assert (info.value.rule, info.value.entry) == ("unknown_prefix", "病例_1.csv")
    assert "病例_1.csv" in info.value.message_zh


# --- damaged entry data ---------------------------------------------------------------------------

def _damage(data: bytearray, how: str) -> None:
    """Break the first entry's data so that its decompressor notices (see the cases below)."""
    name_len, extra_len = struct.unpack_from("<HH", data, 26)
    at = 30 + name_len + extra_len  # first byte of the entry's data
    if how == "stored":
        data[at + 100] ^= 0xFF  # content: the CRC no longer matches
    elif how == "deflate":
        data[at] |= 0b110  # block type 3, reserved
    elif how == "bzip2":
        data[at] ^= 0xFF  # the "BZh" stream magic
    elif how == "lzma":
        data[at + 9] ^= 0xFF  # after zip's 4-byte LZMA header and 5 properties: must be 0
    elif how == "deflate64":  # method 9 in the local and central headers; zipfile cannot read it
        struct.pack_into("<H", data, 8, 9)
        struct.pack_into("<H", data, data.find(b"PK\x01\x02") + 10, 9)


@pytest.mark.parametrize(("how", "method"), [
    ("stored", zipfile.ZIP_STORED),  # zipfile.BadZipFile: bad CRC
    ("deflate", zipfile.ZIP_DEFLATED),  # zlib.error
    ("bzip2", zipfile.ZIP_BZIP2),  # OSError
    ("lzma", zipfile.ZIP_LZMA),  # lzma.LZMAError
    ("deflate64", zipfile.ZIP_DEFLATED),  # NotImplementedError
], ids=["stored", "deflate", "bzip2", "lzma", "deflate64"])
def test_damaged_entry_data_is_a_corrupt_zip(tmp_path: Path, hqms_home: Path, how: str,
                                             method: int) -> None:
    """Whatever the decompressor raises on damaged data, the upload is refused as corrupt and
    the message names the damaged entry; nothing escapes as a crash."""
    path = make_zip(tmp_path / "damaged.zip", [("data/flu_1.csv", csv_bytes("flu_", ORG, rows=50)),
                                               ("data/flu_2.csv", csv_bytes("flu_", ORG))], method)
    data = bytearray(path.read_bytes())
    _damage(data, how)
    path.write_bytes(bytes(data))
    with pytest.raises(ZipRejected) as info:
        check_zip(path, **_limits())
    assert (info.value.rule, info.value.entry) == ("corrupt_zip", "damaged.zip")
    assert "data/flu_1.csv" in info.value.message_en and "data/flu_1.csv" in info.value.message_zh


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                                    zipfile.ZIP_LZMA], ids=["stored", "deflate", "bzip2", "lzma"])
def test_random_damage_is_refused_not_a_crash(tmp_path: Path, hqms_home: Path,
                                              method: int) -> None:
    """Seeded byte flips anywhere in a small zip: each check ends in a verdict, never in a
    decompressor's or zipfile's own exception — a refusal with a reason code, or an acceptance
    of a zip whose every entry still reads back as sent."""
    rnd = random.Random(method)
    original = make_zip(tmp_path / "src.zip", [("flu_1.csv", csv_bytes("flu_", ORG, rows=30)),
                                               ("flu_2.csv", csv_bytes("flu_", ORG))],
                        method).read_bytes()
    with zipfile.ZipFile(tmp_path / "src.zip") as zf:
        contents = [zf.read(i) for i in zf.infolist()]
    path = tmp_path / "flipped.zip"
    refused = 0
    for _ in range(60):
        data = bytearray(original)
        for _ in range(rnd.randint(1, 3)):
            data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
        path.write_bytes(bytes(data))
        try:
            summary = check_zip(path, **_limits())
        except ZipRejected as exc:
            assert exc.rule in INTAKE_RULES and exc.entry and exc.message_zh
            refused += 1
            continue
        # accepted: only a harmless field was hit (a time, a version), every byte is as sent
        with zipfile.ZipFile(path) as zf:
            assert [zf.read(i) for i in data_entries(zf.infolist())] == contents
        assert len(summary.entries) == len(contents)
    assert refused > 0


# --- zip-bomb ratio over the whole archive --------------------------------------------------------

def _many_small_bombs(path: Path, count: int = 40) -> Path:
    """``count`` entries of exactly RATIO_MIN_BYTES of one repeated CSV row (each ~400:1): no
    single entry is large enough for the per-entry ratio check."""
    row = f"{ORG},1,2025-01-06 08:00:00,,,,,,\r\n".encode()
    content = (row * (RATIO_MIN_BYTES // len(row) + 1))[:RATIO_MIN_BYTES]
    return make_zip(path, [(f"flu_{i}.csv", content) for i in range(count)])


def test_many_entries_under_the_ratio_floor_are_still_a_bomb(tmp_path: Path,
                                                             hqms_home: Path) -> None:
    path = _many_small_bombs(tmp_path / "bomb.zip")
    with pytest.raises(ZipRejected) as info:
        check_zip(path, **_limits())
    assert (info.value.rule, info.value.entry) == ("compression_ratio", "bomb.zip")
    assert f"> {config.load().max_ratio}:1" in info.value.message_en


def test_overstated_compressed_sizes_do_not_dilute_the_ratio(tmp_path: Path,
                                                             hqms_home: Path) -> None:
    """Central records claiming 1 MB of compressed data each (the archive is ~100 KB): the
    archive's compressed total counts at most the zip's own size."""
    path = _many_small_bombs(tmp_path / "liar.zip")
    data = bytearray(path.read_bytes())
    start = 0
    while (central := data.find(b"PK\x01\x02", start)) >= 0:
        struct.pack_into("<I", data, central + 20, 1_000_000)  # compressed size
        start = central + 4
    path.write_bytes(bytes(data))
    with pytest.raises(ZipRejected) as info:
        check_zip(path, **_limits())
    assert (info.value.rule, info.value.entry) == ("compression_ratio", "liar.zip")


def test_compressible_real_csv_passes_the_ratio_checks(tmp_path: Path, hqms_home: Path) -> None:
    """Real extracts compress 5-15:1; three files under 1 MB each, 1.5 MB in all, must pass."""
    rnd = random.Random(7)
    files = []
    for n in range(3):
        rows = [f"{ORG},{rnd.randrange(10**9):09d},2025-01-{rnd.randint(1, 28):02d} "
                f"{rnd.randrange(24):02d}:{rnd.randrange(60):02d}:00,{rnd.choice('12')},"
                f"{rnd.randint(0, 99)},J{rnd.randint(0, 99):02d}.{rnd.randint(0, 9)},"
                f"{rnd.uniform(36, 41):.1f},,{rnd.choice(['流感', '发热', '咳嗽', ''])}\r\n"
                for _ in range(7000)]
        files.append((f"flu_{n}.csv", "".join(rows).encode("gbk")))
    path = make_zip(tmp_path / "real.zip", files)
    summary = check_zip(path, **_limits())
    ratio = summary.uncompressed_bytes / sum(e.compressed_size for e in summary.entries)
    assert summary.uncompressed_bytes > RATIO_MIN_BYTES and 3 < ratio < 20
    assert all(e.size < RATIO_MIN_BYTES for e in summary.entries)


# --- OS artefacts ---------------------------------------------------------------------------------

def test_os_artefacts_are_ignored(tmp_path: Path, hqms_home: Path) -> None:
    """A folder zipped on a Mac or by Windows Explorer: the junk is skipped, the CSVs count."""
    csv = csv_bytes("flu_", ORG)
    path = make_zip(tmp_path / "mac.zip", [
        ("data/", b""), ("data/flu_2.csv", csv), ("data/.DS_Store", b"\0\0\0\1Bud1"),
        ("data/._flu_2.csv", b"\0\5\26\7"), ("__MACOSX/", b""), ("__MACOSX/data/", b""),
        ("__MACOSX/data/._flu_2.csv", b"\0\5\26\7"), ("data/flu_1.csv", csv),
        ("Thumbs.db", b"\xd0\xcf"), ("data\\Desktop.ini", b"[.ShellClassInfo]"),
        ("old/__MACOSX/notes.txt", b"x")])
    summary = check_zip(path, **_limits())
    assert [e.name for e in summary.entries] == ["data/flu_2.csv", "data/flu_1.csv"]
    with zipfile.ZipFile(path) as zf:
        assert [i.filename for i in data_entries(zf.infolist())] == ["data/flu_2.csv",
                                                                      "data/flu_1.csv"]


def test_data_entries_skips_folders_of_either_separator(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "win.zip", [("data\\", b""), ("data/", b""),
                                           ("data\\fever_1.csv", b"a"), ("notes.txt", b"b")])
    with zipfile.ZipFile(path) as zf:
        assert [i.filename for i in data_entries(zf.infolist())] == ["data\\fever_1.csv",
                                                                      "notes.txt"]


def test_only_os_artefacts_is_an_empty_zip(tmp_path: Path, hqms_home: Path) -> None:
    path = make_zip(tmp_path / "junk.zip", {"__MACOSX/._flu_1.csv": b"x", ".DS_Store": b"x"})
    with pytest.raises(ZipRejected) as info:
        check_zip(path, **_limits())
    assert info.value.rule == "empty_zip"


def test_ignored_entries_must_still_be_safe(tmp_path: Path, hqms_home: Path) -> None:
    """The archive is kept as uploaded and may be unpacked whole later: an artefact's name is
    held to the same path rules."""
    path = make_zip(tmp_path / "slip.zip", [("flu_1.csv", csv_bytes("flu_", ORG)),
                                            ("__MACOSX/../../._flu_1.csv", b"x")])
    with pytest.raises(ZipRejected) as info:
        check_zip(path, **_limits())
    assert (info.value.rule, info.value.entry) == ("unsafe_path", "__MACOSX/../../._flu_1.csv")


# --- Windows backslashes --------------------------------------------------------------------------

def test_backslash_separates_folders(tmp_path: Path, hqms_home: Path) -> None:
    """Windows zip tools write ``data\\fever_20250106.csv``: a file in folder ``data``."""
    path = make_zip(tmp_path / "win.zip", [("data\\", b""), ("data\\fever_20250106.csv",
                                                             csv_bytes("fever_", ORG))])
    summary = check_zip(path, **_limits())
    assert summary.stream == "fever"
    assert [(e.name, e.base_name) for e in summary.entries] == [
        ("data\\fever_20250106.csv", "fever_20250106.csv")]


@pytest.mark.parametrize("name", ["..\\flu_1.csv", "data\\..\\..\\flu_1.csv", "C:\\flu_1.csv",
                                  "\\flu_1.csv", "\\\\server\\share\\flu_1.csv", "data\\..\\"])
def test_backslash_tricks_stay_unsafe(tmp_path: Path, hqms_home: Path, name: str) -> None:
    path = make_zip(tmp_path / "trick.zip", [("flu_0.csv", csv_bytes("flu_", ORG)), (name, b"")])
    with pytest.raises(ZipRejected) as info:
        check_zip(path, **_limits())
    assert (info.value.rule, info.value.entry) == ("unsafe_path", name)


def test_duplicates_are_found_across_separators(tmp_path: Path, hqms_home: Path) -> None:
    csv = csv_bytes("flu_", ORG)
    path = make_zip(tmp_path / "dup.zip", [("a/flu_1.csv", csv), ("a\\FLU_1.csv", csv)])
    with pytest.raises(ZipRejected) as info:
        check_zip(path, **_limits())
    assert (info.value.rule, info.value.entry) == ("duplicate_entry", "a\\FLU_1.csv")


def _gbk_named_zip(path: Path, placeholder: str, name: str, data: bytes) -> Path:
    """A zip whose entry name is stored as GBK bytes without the UTF-8 flag (Chinese Windows
    tools), made by swapping same-length ASCII placeholders for the GBK bytes."""
    make_zip(path, {placeholder: data}, zipfile.ZIP_STORED)
    raw = path.read_bytes()
    assert raw.count(placeholder.encode()) == 2  # local and central header, nowhere else
    path.write_bytes(raw.replace(placeholder.encode(), name.encode("gbk")))
    return path


def test_entry_basename_of_a_gbk_name_in_a_windows_folder(tmp_path: Path) -> None:
    path = _gbk_named_zip(tmp_path / "gbk.zip", "QQQQ\\WWWW_1.csv", "数据\\病例_1.csv", b"a\r\n")
    with zipfile.ZipFile(path) as zf:
        [info] = zf.infolist()
    assert entry_basename(info) == "病例_1.csv"


def test_gbk_byte_0x5c_inside_a_character_is_not_a_separator(tmp_path: Path,
                                                              hqms_home: Path) -> None:
    """The second GBK byte of 誠 is 0x5C (a backslash in ASCII): split the decoded name."""
    path = _gbk_named_zip(tmp_path / "gbk.zip", "flu_QQ.csv", "flu_誠.csv",
                          csv_bytes("flu_", ORG))
    summary = check_zip(path, **_limits())
    assert [(e.name, e.base_name) for e in summary.entries] == [("flu_誠.csv", "flu_誠.csv")]


# --- Info-ZIP Unicode Path extra field (0x7075) ---------------------------------------------------

def _unicode_path_field(name: str, header: bytes) -> bytes:
    """A Unicode Path extra field as Info-ZIP zip writes it: version 1, the CRC-32 of the
    header's name bytes, the name in UTF-8."""
    payload = b"\x01" + struct.pack("<I", zlib.crc32(header)) + name.encode()
    return struct.pack("<HH", UNICODE_PATH_FIELD, len(payload)) + payload


def _unicode_path_zip(path: Path, header: bytes, field: bytes, *, central: bool = True,
                      local: bool = True) -> Path:
    """One flu entry whose name field holds ``header`` (no UTF-8 flag) and whose extra block is
    ``field`` in the central directory, the local header or both. zipfile writes the local
    header at ``writestr`` and the central one at close, so ``extra`` set in between differs."""
    placeholder = b"Q" * len(header)
    info = zipfile.ZipInfo(placeholder.decode(), date_time=(2026, 1, 2, 3, 4, 5))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        info.extra = field if local else b""
        zf.writestr(info, csv_bytes("flu_", ORG))
        info.extra = field if central else b""
    raw = path.read_bytes()
    assert raw.count(placeholder) == 2  # local and central header, nowhere else
    path.write_bytes(raw.replace(placeholder, header))
    return path


@pytest.mark.parametrize(("central", "local"), [(True, True), (True, False), (False, True)],
                         ids=["both", "central", "local"])
def test_unicode_path_field_is_held_to_the_path_rules(tmp_path: Path, hqms_home: Path,
                                                      central: bool, local: bool) -> None:
    """The audit's zip: the header says flu_20261101.csv, the field (which unzip unpacks under)
    says ../../evil/flu_20261101.csv. Refused, naming the path unzip would have written."""
    header = b"flu_20261101.csv"
    field = _unicode_path_field("../../evil/flu_20261101.csv", header)
    path = _unicode_path_zip(tmp_path / "slip.zip", header, field, central=central, local=local)
    with pytest.raises(ZipRejected) as info:
        check_zip(path, **_limits())
    assert (info.value.rule, info.value.entry) == ("unsafe_path", "../../evil/flu_20261101.csv")


def test_unicode_path_field_naming_another_file_is_refused(tmp_path: Path,
                                                           hqms_home: Path) -> None:
    """Two harmless names that disagree: which file (and which dataset) it is would depend on
    the tool that unpacks it."""
    header = b"flu_20261101.csv"
    path = _unicode_path_zip(tmp_path / "two.zip", header,
                             _unicode_path_field("fever_20261101.csv", header))
    with pytest.raises(ZipRejected) as info:
        check_zip(path, **_limits())
    assert (info.value.rule, info.value.entry) == ("unsafe_path", "flu_20261101.csv")
    assert "two different names" in info.value.message_en


@pytest.mark.parametrize("encoding", ["gbk", "utf-8"])
def test_unicode_path_field_as_info_zip_writes_it_passes(tmp_path: Path, hqms_home: Path,
                                                         encoding: str) -> None:
    """Info-ZIP zip stores a Chinese name in the local code page without the UTF-8 flag (GBK on
    Chinese Windows, UTF-8 on Linux) plus a Unicode Path field naming the same, CRC matching."""
    name = "数据/flu_病例_1.csv"
    header = name.encode(encoding)
    path = _unicode_path_zip(tmp_path / "infozip.zip", header, _unicode_path_field(name, header))
    assert check_zip(path, **_limits()).stream == "flu"


def _field(payload: bytes, size: int | None = None) -> bytes:
    return struct.pack("<HH", UNICODE_PATH_FIELD, len(payload) if size is None else size) + payload


_CRC = struct.pack("<I", zlib.crc32(b"flu_1.csv"))


@pytest.mark.parametrize(("field", "central", "local"), [
    (_field(b"\x01\x00\x00"), True, False),  # shorter than its version and CRC
    (_field(b"\x01\x00\x00"), False, True),
    (_field(b"\x01" + _CRC + b"flu_1.csv", size=40), False, True),  # runs past the block
    (_field(b"\x01" + _CRC + b"flu_1.csv", size=40), True, False),
    (_field(b"\x01" + _CRC + b"flu_\xff.csv"), True, True),  # the name is not UTF-8
    (_field(b"\x02" + _CRC + b"flu_1.csv"), True, True),  # a version we cannot read
], ids=["short-central", "short-local", "overrun-local", "overrun-central", "not-utf8",
        "version-2"])
def test_unreadable_unicode_path_field_is_a_corrupt_zip(tmp_path: Path, hqms_home: Path,
                                                        field: bytes, central: bool,
                                                        local: bool) -> None:
    """A name that cannot be read cannot be judged: a clean refusal, not a crash."""
    path = _unicode_path_zip(tmp_path / "bad.zip", b"flu_1.csv", field, central=central,
                             local=local)
    with pytest.raises(ZipRejected) as info:
        check_zip(path, **_limits())
    assert (info.value.rule, info.value.entry) == ("corrupt_zip", "bad.zip")


def test_local_header_name_must_be_the_central_one(tmp_path: Path, hqms_home: Path) -> None:
    """Streaming extractors name an entry by its local header. zipfile compares the two names
    only for the entries it opens; a folder's local name is checked too."""
    path = make_zip(tmp_path / "local.zip", [("data/", b""), ("data/flu_1.csv",
                                                             csv_bytes("flu_", ORG))])
    raw = bytearray(path.read_bytes())
    assert raw[30:35] == b"data/"  # the first local header's name
    raw[30:35] = b"../x/"
    path.write_bytes(bytes(raw))
    with pytest.raises(ZipRejected) as info:
        check_zip(path, **_limits())
    assert (info.value.rule, info.value.entry) == ("unsafe_path", "../x/")


# --- hostile archives: each trick a red team used, each refused with its reason code --------------

def _patch(path: Path, name: bytes, edit) -> Path:
    """Call ``edit(data, header_offset, header_kind)`` for the local and central headers of the
    entry called ``name`` (kind "local" or "central")."""
    data = bytearray(path.read_bytes())
    for signature, kind, name_len_at, name_at in ((b"PK\x03\x04", "local", 26, 30), (b"PK\x01\x02", "central", 28, 46)):
        start = 0
        while (pos := data.find(signature, start)) >= 0:
            (length,) = struct.unpack_from("<H", data, pos + name_len_at)
            if bytes(data[pos + name_at:pos + name_at + length]) == name:
                edit(data, pos, kind)
            start = pos + 4
    path.write_bytes(bytes(data))
    return path


def _linked(path: Path, create_system: int, external_attr: int = 0, extra: bytes = b"") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("flu_1.csv", csv_bytes("flu_", ORG))
        info = zipfile.ZipInfo("flu_2.csv", date_time=(2026, 1, 2, 3, 4, 5))
        info.create_system, info.external_attr, info.extra = create_system, external_attr, extra
        zf.writestr(info, "../../etc/passwd")
    return path


def _unix_extra(link: bytes) -> bytes:  # PKWARE Unix: atime, mtime, uid, gid, then the link target
    body = struct.pack("<IIHH", 0, 0, 0, 0) + link
    return struct.pack("<HH", 0x000D, len(body)) + body


def _asi_extra(mode: int) -> bytes:  # Info-ZIP ASi Unix: CRC, mode, sizdev, uid, gid (no link name)
    body = struct.pack("<IHIHH", 0, mode, 0, 0, 0)
    return struct.pack("<HH", 0x756E, len(body)) + body


def _local_only(path: Path, hidden: str, at_end: bool) -> Path:
    """An entry written with its local header and then left out of the central directory."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("flu_1.csv", csv_bytes("flu_", ORG))
        if not at_end:
            zf.writestr(hidden, b"x")
            zf.writestr("flu_2.csv", csv_bytes("flu_", ORG))
        else:
            zf.writestr("flu_2.csv", csv_bytes("flu_", ORG))
            zf.writestr(hidden, b"x")
        info = zf.NameToInfo.pop(hidden)
        zf.filelist.remove(info)
    return path


def _method(data: bytearray, pos: int, kind: str) -> None:
    if kind == "local":
        struct.pack_into("<H", data, pos + 8, zipfile.ZIP_DEFLATED)


def _control_name(path: Path, char: bytes) -> Path:
    make_zip(path, {"flu_1.csv": csv_bytes("flu_", ORG), "flu_2.csvQ../../x": csv_bytes("flu_", ORG)})
    return write_bytes(path, path.read_bytes().replace(b"flu_2.csvQ", b"flu_2.csv" + char))


def _encrypted_artefact(path: Path) -> Path:
    make_zip(path, {"flu_1.csv": csv_bytes("flu_", ORG), "__MACOSX/._flu_1.csv": b"\x00\x05\x16\x07" + b"\0" * 60})

    def flag(data: bytearray, pos: int, kind: str) -> None:
        at = pos + (6 if kind == "local" else 8)
        struct.pack_into("<H", data, at, struct.unpack_from("<H", data, at)[0] | 0x1)
    return _patch(path, b"__MACOSX/._flu_1.csv", flag)


def _tar(payload: bytes) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("flu_1.csv")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def hostile_corpus(tmp: Path) -> dict[str, tuple[Path, str]]:
    import gzip

    good = csv_bytes("flu_", ORG)
    inner = make_zip(tmp / "inner.zip", {"flu_1.csv": good}).read_bytes()
    nfc, nfd = "flu_1é.csv", unicodedata.normalize("NFD", "flu_1é.csv")
    return {
        "symlink_msdos": (_linked(tmp / "l0.zip", 0, (stat.S_IFLNK | 0o777) << 16), "symlink"),
        "symlink_macos": (_linked(tmp / "l19.zip", 19, (stat.S_IFLNK | 0o755) << 16), "symlink"),
        "symlink_unix_extra": (_linked(tmp / "lx.zip", 0, 0, _unix_extra(b"/etc/passwd")), "symlink"),
        "symlink_asi_extra": (_linked(tmp / "la.zip", 0, 0, _asi_extra(stat.S_IFLNK | 0o777)), "symlink"),
        "local_only_between": (_local_only(tmp / "h1.zip", "../../x.csv", at_end=False), "hidden_entry"),
        "local_only_at_end": (_local_only(tmp / "h2.zip", "../../x.csv", at_end=True), "hidden_entry"),
        "method_mismatch": (_patch(make_zip(tmp / "m.zip", {"flu_1.csv": good}, zipfile.ZIP_STORED),
                                   b"flu_1.csv", _method), "header_mismatch"),
        "nul_in_name": (_control_name(tmp / "n0.zip", b"\x00"), "bad_name"),
        "line_break_in_name": (_control_name(tmp / "n1.zip", b"\n"), "bad_name"),
        "nfc_nfd_twins": (make_zip(tmp / "nf.zip", [(nfc, good), (nfd, good)]), "duplicate_entry"),
        "case_twins": (make_zip(tmp / "case.zip", [("flu_1.csv", good), ("FLU_1.CSV", good)]), "duplicate_entry"),
        "encrypted_artefact": (_encrypted_artefact(tmp / "enc.zip"), "encrypted"),
        "gzip_named_csv": (make_zip(tmp / "gz.zip", {"flu_1.csv": gzip.compress(good)}), "nested_archive"),
        "tar_named_csv": (make_zip(tmp / "tar.zip", {"flu_1.csv": _tar(good)}), "nested_archive"),
        "zip_after_bom": (make_zip(tmp / "bom.zip", {"flu_1.csv": b"\xef\xbb\xbf" + inner}), "nested_archive"),
        "zip_in_artefact": (make_zip(tmp / "art.zip", {"flu_1.csv": good, "__MACOSX/flu_1.csv": inner}),
                            "nested_archive"),
        "file_too_large": (_declared_huge(tmp / "big.zip"), "file_too_large"),
    }


def _declared_huge(path: Path) -> Path:
    """A zip whose entry declares 2,000,000,000 bytes (the red team's 13.9 MB zip, without
    writing it): refused from the directory before a byte is inflated."""
    make_zip(path, {"flu_1.csv": csv_bytes("flu_", ORG)})

    def size(data: bytearray, pos: int, kind: str) -> None:
        struct.pack_into("<I", data, pos + (22 if kind == "local" else 24), 2_000_000_000)
        struct.pack_into("<I", data, pos + (18 if kind == "local" else 20), 14_000_000)
    return _patch(path, b"flu_1.csv", size)


@pytest.fixture(scope="module")
def hostile_zips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    return hostile_corpus(tmp_path_factory.mktemp("hostile"))


HOSTILE_CASES = {name: (None, rule) for name, rule in [
    ("symlink_msdos", "symlink"), ("symlink_macos", "symlink"), ("symlink_unix_extra", "symlink"),
    ("symlink_asi_extra", "symlink"), ("local_only_between", "hidden_entry"), ("local_only_at_end", "hidden_entry"),
    ("method_mismatch", "header_mismatch"), ("nul_in_name", "bad_name"), ("line_break_in_name", "bad_name"),
    ("nfc_nfd_twins", "duplicate_entry"), ("case_twins", "duplicate_entry"), ("encrypted_artefact", "encrypted"),
    ("gzip_named_csv", "nested_archive"), ("tar_named_csv", "nested_archive"), ("zip_after_bom", "nested_archive"),
    ("zip_in_artefact", "nested_archive"), ("file_too_large", "file_too_large")]}


@pytest.mark.parametrize("case", list(HOSTILE_CASES))
def test_hostile_zip_is_refused_with_its_reason(hostile_zips: dict, case: str, hqms_home: Path) -> None:
    assert set(hostile_zips) == set(HOSTILE_CASES)
    path, rule = hostile_zips[case]
    with pytest.raises(ZipRejected) as info:
        check_zip(path, **_limits())
    assert info.value.rule == rule == HOSTILE_CASES[case][1]
    assert info.value.entry and "\x00" not in info.value.message_zh and "\n" not in info.value.message_en


def test_a_file_over_the_per_file_limit_is_caught_while_streaming(tmp_path: Path, hqms_home: Path) -> None:
    """The per-file limit holds when the directory under-declares the size, too."""
    rows = b"".join(random.Random(5).randbytes(400).hex().encode() + b"\r\n" for _ in range(1500))
    path = make_zip(tmp_path / "big.zip", {"flu_1.csv": csv_bytes("flu_", ORG) + rows})
    assert check_zip(path, **_limits()).entries  # within the default limit
    with pytest.raises(ZipRejected) as info:
        check_zip(path, **_limits(max_file_bytes=1_000_000))
    assert info.value.rule == "file_too_large" and "flu_1.csv" in info.value.message_zh

    def understate(data: bytearray, pos: int, kind: str) -> None:
        struct.pack_into("<I", data, pos + (22 if kind == "local" else 24), 900_000)
    _patch(path, b"flu_1.csv", understate)
    with pytest.raises(ZipRejected) as info:
        check_zip(path, **_limits(max_file_bytes=1_000_000))
    assert info.value.rule in ("file_too_large", "corrupt_zip", "too_much_data")


def test_regular_files_of_every_creator_system_pass(tmp_path: Path, hqms_home: Path) -> None:
    """Ordinary attributes of every creator system pass: MS-DOS archive bit, Unix 0644, macOS."""
    for system, attr in ((0, 0x20), (3, (stat.S_IFREG | 0o644) << 16), (19, (stat.S_IFREG | 0o644) << 16)):
        path = make_zip(tmp_path / f"plain{system}.zip", {"flu_1.csv": csv_bytes("flu_", ORG)})
        with zipfile.ZipFile(path, "a") as zf:
            info = zipfile.ZipInfo("flu_2.csv", date_time=(2026, 1, 2, 3, 4, 5))
            info.create_system, info.external_attr = system, attr
            zf.writestr(info, csv_bytes("flu_", ORG))
        assert len(check_zip(path, **_limits()).entries) == 2
