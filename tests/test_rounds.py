"""A batch is staged in rounds bounded by CSV bytes, so memory does not grow with the batch."""
from __future__ import annotations

import zipfile
from pathlib import Path

from hqms.ingest.process import _rounds
from hqms.ingest.upload import Fetched, Upload


def _zip(path: Path, size: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("d/lis_1.csv", b"x" * size)
    return path


def _fetched(path: Path, upload_id: str, suspect: int) -> Fetched:
    upload = Upload(upload_id=upload_id, stream="hqms", org_code="o", file_name=path.name, sha256="",
                    size_bytes=path.stat().st_size, received_at="2026-01-01T00:00:00+00:00",
                    object_key=path.name, suspect=suspect)
    return Fetched(upload, path)


def test_rounds_respect_the_csv_byte_budget(tmp_path):
    sizes = [5, 5, 5, 30, 1, 1]
    fetched = [_fetched(_zip(tmp_path / f"u{i}.zip", n), f"u{i}", 0) for i, n in enumerate(sizes)]
    rounds = _rounds(fetched, max_bytes=12)
    assert [[f.upload.upload_id for f in r] for r in rounds] == [["u0", "u1"], ["u2"], ["u3"], ["u4", "u5"]]
    assert _rounds([], 12) == []


def test_suspects_of_a_death_come_last_in_halves(tmp_path):
    """Uploads in flight together when a run died (``suspect`` = how many) are bisected: groups
    of half that size after the innocent ones, so the one that kills ends up alone."""
    suspect = {"u1": 4, "u2": 4, "u4": 4, "u5": 4, "u6": 2, "u7": 2}
    fetched = [_fetched(_zip(tmp_path / f"u{i}.zip", 1), f"u{i}", suspect.get(f"u{i}", 0)) for i in range(8)]
    rounds = _rounds(fetched, max_bytes=100)
    assert [[f.upload.upload_id for f in r] for r in rounds] == \
        [["u0", "u3"], ["u6"], ["u7"], ["u1", "u2"], ["u4", "u5"]]
