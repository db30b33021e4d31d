"""A batch is staged in rounds bounded by CSV bytes, so memory does not grow with the batch."""
from __future__ import annotations

import zipfile
from pathlib import Path

import duckdb
import pytest

from hqms import config
from hqms.ingest.process import _rounds, stage_memory_limit


def _zip(path: Path, size: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("d/lis_1.csv", b"x" * size)
    return path


def test_rounds_respect_the_csv_byte_budget(tmp_path):
    sizes = [5, 5, 5, 30, 1, 1]
    fetched = [({"upload_id": f"u{i}"}, _zip(tmp_path / f"u{i}.zip", n)) for i, n in enumerate(sizes)]
    rounds = _rounds(fetched, max_bytes=12)
    assert [[u["upload_id"] for u, _ in r] for r in rounds] == [["u0", "u1"], ["u2"], ["u3"], ["u4", "u5"]]
    assert _rounds([], 12) == []


@pytest.mark.parametrize("limit, share", [("768MB", 384_000_000), ("1GiB", 2**29), ("1.5 GB", 750_000_000)])
def test_the_two_staging_databases_share_the_duckdb_memory_budget(monkeypatch, limit, share):
    """Two at once (a round merging, the next one staged), so each gets half: the task's DuckDB
    memory stays what HQMS_DUCKDB_MEMORY_LIMIT says; a round alone keeps it all."""
    monkeypatch.setenv("HQMS_DUCKDB_MEMORY_LIMIT", limit)
    assert stage_memory_limit(config.load(), at_once=2) == f"{share}B"
    assert stage_memory_limit(config.load(), at_once=1) == f"{share * 2}B"  # a batch of one round
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{share}B'")  # DuckDB takes the form


@pytest.mark.parametrize("text", ["lots", "MB", "1XB", "-"])
def test_a_size_that_is_no_size_is_refused(text):
    with pytest.raises(ValueError, match="not a size"):
        config.size_bytes(text)
