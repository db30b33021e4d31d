"""Intake zip rules on real zip files built here: each bad zip is refused for its own reason."""
from __future__ import annotations

import os
import stat
import struct
import zipfile
from pathlib import Path

import pytest
from conftest import csv_bytes, make_zip

from hqms import config, spec
from hqms.intake.zipcheck import INTAKE_RULES, ZipRejected, check_zip, sha256_file

ORG = "90000001411010111A1001"


def _limits(**over: int) -> dict[str, int]:
    cfg = config.load()
    limits = dict(max_zip_bytes=cfg.max_zip_bytes,
                  max_uncompressed_bytes=cfg.max_uncompressed_bytes, max_ratio=cfg.max_ratio)
    limits.update(over)
    return limits


def _prefix(stream: str) -> str:
    return spec.stream_datasets(stream)[0].prefix


def _set_encrypted_flag(path: Path) -> None:
    """Set bit 0 (encrypted) of the general-purpose flags in local and central headers."""
    data = bytearray(path.read_bytes())
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (pos := data.find(signature, start)) >= 0:
            (flags,) = struct.unpack_from("<H", data, pos + flag_at)
            struct.pack_into("<H", data, pos + flag_at, flags | 0x1)
            start = pos + 4
    path.write_bytes(bytes(data))


def _symlink_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("flu_link.csv")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    return path


def _corrupt_crc(path: Path) -> Path:
    """Flip one byte of stored content: the archive opens, the CRC test must fail."""
    data = bytearray(path.read_bytes())
    pos = data.find(b"P900")
    data[pos] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _corpus(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name → (zip path, expected rule)."""
    good_csv = csv_bytes("flu_", ORG)
    inner = make_zip(tmp / "inner.zip", {"flu_1.csv": good_csv})
    truncated = make_zip(tmp / "src_trunc.zip", {"flu_1.csv": os.urandom(4000)}, zipfile.ZIP_STORED)
    encrypted = make_zip(tmp / "encrypted.zip", {"flu_1.csv": good_csv})
    _set_encrypted_flag(encrypted)
    cases = {
        "zip_slip": (make_zip(tmp / "slip.zip", {"../../flu_1.csv": good_csv}), "unsafe_path"),
        "absolute": (make_zip(tmp / "abs.zip", {"/tmp/flu_1.csv": good_csv}), "unsafe_path"),
        "backslash": (make_zip(tmp / "bs.zip", {"..\\flu_1.csv": good_csv}), "unsafe_path"),
        "drive": (make_zip(tmp / "drive.zip", {"C:/flu_1.csv": good_csv}), "unsafe_path"),
        "encrypted": (encrypted, "encrypted"),
        "symlink": (_symlink_zip(tmp / "link.zip"), "symlink"),
        "nested_zip": (make_zip(tmp / "nested.zip", {"flu_1.zip": inner.read_bytes()}),
                       "nested_archive"),
        "zip_named_csv": (make_zip(tmp / "disguised.zip", {"flu_1.csv": inner.read_bytes()}),
                          "nested_archive"),
        "non_csv": (make_zip(tmp / "txt.zip", {"flu_1.txt": good_csv}), "not_csv"),
        "wrong_prefix": (make_zip(tmp / "prefix.zip", {"hqmsx_1.csv": good_csv}), "unknown_prefix"),
        "duplicate": (make_zip(tmp / "dup.zip", [("flu_1.csv", good_csv), ("a/FLU_1.csv", good_csv)]),
                      "duplicate_entry"),
        "too_large": (make_zip(tmp / "big.zip", {"flu_1.csv": os.urandom(21 * 1024 * 1024)},
                               zipfile.ZIP_STORED), "zip_too_large"),
        "bomb": (make_zip(tmp / "bomb.zip", {"flu_1.csv": b"\0" * (60 * 1024 * 1024)}),
                 "compression_ratio"),
        "empty": (make_zip(tmp / "empty.zip", {}), "empty_zip"),
        "only_folders": (make_zip(tmp / "folders.zip", {"data/": b""}), "empty_zip"),
        "not_a_zip": (_write(tmp / "plain.zip", good_csv), "not_a_zip"),
        "truncated": (_write(tmp / "trunc.zip", truncated.read_bytes()[:2500]), "corrupt_zip"),
        "bad_crc": (_corrupt_crc(make_zip(tmp / "crc.zip", {"flu_1.csv": good_csv},
                                          zipfile.ZIP_STORED)), "corrupt_zip"),
        "rar_name": (_write(tmp / "upload.rar", inner.read_bytes()), "not_zip_name"),
        "mixed_streams": (make_zip(tmp / "mixed.zip", [("flu_1.csv", good_csv),
                                                        (f"{_prefix('fever')}1.csv", good_csv)]),
                          "mixed_streams"),
    }
    return cases


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    return _corpus(tmp_path_factory.mktemp("corpus"))


def test_corpus_covers_every_structural_rule(corpus: dict[str, tuple[Path, str]]) -> None:
    covered = {rule for _, rule in corpus.values()}
    # bad_org_code is a submit-level rule; stream_mismatch and too_much_data have own tests.
    assert covered >= set(INTAKE_RULES) - {"bad_org_code", "stream_mismatch", "too_much_data"}


@pytest.mark.parametrize("case", [
    "zip_slip", "absolute", "backslash", "drive", "encrypted", "symlink", "nested_zip",
    "zip_named_csv", "non_csv", "wrong_prefix", "duplicate", "too_large", "bomb", "empty",
    "only_folders", "not_a_zip", "truncated", "bad_crc", "rar_name", "mixed_streams"])
def test_bad_zip_is_rejected_with_its_reason(corpus: dict, case: str, hqms_home: Path) -> None:
    path, rule = corpus[case]
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
    path = _write(tmp_path / "x.bin", b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
