"""Intake zip rules on real zip files built here: each bad zip is refused for its own reason."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from conftest import BAD_ZIP_CASES, csv_bytes, make_zip, synthetic_org_code, write_bytes

from hqms import config
from hqms.intake.zipcheck import INTAKE_RULES, ZipRejected, check_zip, sha256_file

ORG = synthetic_org_code(1)


def _limits(**over: int) -> dict[str, int]:
    cfg = config.load()
    limits = dict(max_zip_bytes=cfg.max_zip_bytes,
                  max_uncompressed_bytes=cfg.max_uncompressed_bytes, max_ratio=cfg.max_ratio)
    limits.update(over)
    return limits


def test_corpus_covers_every_structural_rule(bad_zips: dict[str, tuple[Path, str]]) -> None:
    assert set(bad_zips) == set(BAD_ZIP_CASES)
    covered = {rule for _, rule in bad_zips.values()}
    # bad_org_code is a submit-level rule; stream_mismatch and too_much_data have own tests.
    assert covered >= set(INTAKE_RULES) - {"bad_org_code", "stream_mismatch", "too_much_data"}


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
