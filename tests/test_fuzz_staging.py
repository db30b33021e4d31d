"""Mutated exports (inserted quotes, line breaks, NUL, stray bytes, BOMs, truncation, repeated
spans) through staging and validation: every one ends in a report — never an exception, which
would leave the upload to fail its retries. Seeded, so a failure reproduces; the same mutations
through the full ingest (vault, de-identify, merge) ran clean for 210 uploads when this was written."""
from __future__ import annotations

import random
import zipfile

import pytest

from conftest import generate_day
from hqms.ingest.validate import validate_zip

TOKENS = [b'"', b",", b"\r\n", b"\n", b"\r", b"\x00", b"\xff", b"\xef\xbb\xbf", b"\t", b'""', b"\\",
          b"\x1a", "中".encode("gbk"), b"\x81", b"NULL", b"E+17", b";", b"-"]
CASES = 30  # per stream


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict:
    return generate_day(tmp_path_factory.mktemp("fuzz"), seed=3)


def _mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice([1, 3, 10, 30])):
        op, pos = rng.random(), rng.randrange(len(buf) + 1)
        if op < 0.45:
            buf[pos:pos] = rng.choice(TOKENS)
        elif op < 0.65 and len(buf) > 1:
            del buf[pos:pos + rng.randrange(1, 50)]
        elif op < 0.85 and len(buf) > 1:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op < 0.9:
            del buf[pos:]
        else:
            buf[pos:pos] = buf[pos:pos + rng.randrange(1, 400)]
    return bytes(buf)


def _each_ends_in_a_report(generated: dict, tmp_path, stream: str, mutate, seed: str, cases: int) -> None:
    """``cases`` uploads of the stream's files, each file damaged by ``mutate``: every one is
    validated without raising, into a consistent report."""
    with zipfile.ZipFile(generated["zips"][stream]) as zf:
        files = {i.filename: zf.read(i) for i in zf.infolist()}
    rng = random.Random(seed)
    for n in range(cases):
        path = tmp_path / f"{n}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in files.items():
                zf.writestr(name, mutate(data, rng))
        report = validate_zip(path, generated["org"])  # must not raise
        assert 0 <= report.conforming_count <= report.record_count, n
        assert all(e.file_name and e.rule for e in report.errors), n


@pytest.mark.parametrize("stream", ["flu", "fever", "outpatient"])
def test_mutated_exports_always_end_in_a_report(generated, tmp_path, monkeypatch, stream):
    monkeypatch.setenv("HQMS_HOME", str(generated["dir"] / "home"))
    _each_ends_in_a_report(generated, tmp_path, stream, _mutate, f"hqms-fuzz-{stream}", CASES)


def _mutate_header(data: bytes, rng: random.Random) -> bytes:
    """Damage the header line only: quotes, a huge cell, a lost line end, NUL and stray bytes."""
    end = data.find(b"\n") + 1 or len(data)
    header, rest = bytearray(data[:end]), data[end:]
    for _ in range(rng.choice([1, 2, 4])):
        op, pos = rng.random(), rng.randrange(len(header) + 1)
        if op < 0.4:
            header[pos:pos] = rng.choice(TOKENS)
        elif op < 0.55:
            header[pos:pos] = b"x" * rng.choice([1_000, 131_072, 140_000])
        elif op < 0.7:
            header = header.rstrip(b"\r\n")  # the header runs into the first record
        elif op < 0.85 and len(header) > 1:
            del header[pos:pos + rng.randrange(1, 30)]
        else:
            header[pos:pos] = b'"' + b"y" * rng.randrange(0, 200)
    if rng.random() < 0.3:  # a file over 128 KiB, where an unclosed quote used to raise
        rest = rest * (1 + 140_000 // max(len(rest), 1))
    return bytes(header) + rest


@pytest.mark.parametrize("stream", ["flu", "fever", "outpatient"])
def test_damaged_headers_always_end_in_a_report(generated, tmp_path, monkeypatch, stream):
    monkeypatch.setenv("HQMS_HOME", str(generated["dir"] / "home"))
    _each_ends_in_a_report(generated, tmp_path, stream, _mutate_header, f"hqms-fuzz-header-{stream}", 6)
