"""A batch is staged in rounds bounded by CSV bytes, so memory does not grow with the batch."""
from __future__ import annotations

import zipfile
from pathlib import Path

from hqms.ingest.process import _rounds


def _zip(path: Path, size: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("d/lis_1.csv", b"x" * size)
    return path


def test_rounds_respect_the_csv_byte_budget(tmp_path):
    sizes = [5, 5, 5, 30, 1, 1]
    fetched = [({"upload_id": f"u{i}", "suspect": 0}, _zip(tmp_path / f"u{i}.zip", n)) for i, n in enumerate(sizes)]
    rounds = _rounds(fetched, max_bytes=12)
    assert [[u["upload_id"] for u, _ in r] for r in rounds] == [["u0", "u1"], ["u2"], ["u3"], ["u4", "u5"]]
    assert _rounds([], 12) == []


def test_suspects_of_a_death_come_last_in_halves(tmp_path):
    """Uploads in flight together when a run died (``suspect`` = how many) are bisected: groups
    of half that size after the innocent ones, so the one that kills ends up alone."""
    suspect = {"u1": 4, "u2": 4, "u4": 4, "u5": 4, "u6": 2, "u7": 2}
    fetched = [({"upload_id": f"u{i}", "suspect": suspect.get(f"u{i}", 0)}, _zip(tmp_path / f"u{i}.zip", 1))
               for i in range(8)]
    rounds = _rounds(fetched, max_bytes=100)
    assert [[u["upload_id"] for u, _ in r] for r in rounds] == \
        [["u0", "u3"], ["u6"], ["u7"], ["u1", "u2"], ["u4", "u5"]]
