"""A full work disk costs only the upload that does not fit (issue 16, item 3): the ingest runs
on a real, small tmpfs mounted over HQMS_WORK_DIR (in a private mount namespace), one upload's
CSV is larger than that filesystem, and the small uploads of its round must still be processed."""
from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import submit_plan
from hqms import config
from hqms.cli import main as hqms
from hqms.registry import Registry

pytestmark = pytest.mark.slow

#: The work folder's filesystem: room for the small uploads, not for the large one's CSV.
TMPFS_MB = 12
LARGE_CSV_MB = 24
RUN = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from hqms.ingest.process import BatchIncomplete
from hqms.ingest.run import claim, process
for batch in claim():
    try:
        process(batch)
    except BatchIncomplete as exc:
        print("incomplete:", exc, file=sys.stderr)
"""
#: Mount a private tmpfs over the work folder (user + mount namespace: no privilege needed where
#: unprivileged user namespaces are allowed), then run the ingest inside it.
MOUNT = 'mount -t tmpfs -o size={mb}m tmpfs "$HQMS_WORK_DIR" && exec "$0" "$@"'


def _inflate(zip_path: Path, megabytes: int) -> None:
    """Rewrite the upload with its largest CSV's data rows repeated to ``megabytes`` (same names,
    same encoding): a real export, only large."""
    with zipfile.ZipFile(zip_path) as zf:
        entries = [(info, zf.read(info)) for info in zf.infolist()]
    largest = max(entries, key=lambda entry: len(entry[1]))[0]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            if info is largest:
                header, *rows = data.decode("gb18030").splitlines(keepends=True)
                body = "".join(rows).encode("gb18030")
                data = header.encode("gb18030") + body * (megabytes * 2**20 // len(body) + 1)
            zf.writestr(info.filename, data)
    zip_path.write_bytes(out.getvalue())


def test_an_upload_larger_than_the_work_disk_fails_alone_with_its_reason(s3_store, tmp_path, monkeypatch):
    if not shutil.which("unshare") or subprocess.run(
            ["unshare", "-Urm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {tmp_path}"]).returncode != 0:
        pytest.skip("no mount namespace here: cannot mount a small tmpfs")
    monkeypatch.setenv("HQMS_MAX_RATIO", "100000")  # the large CSV repeats itself: it packs tightly
    monkeypatch.setenv("HQMS_MAX_ATTEMPTS", "1")  # one failure alone is enough to see the outcome
    gen = tmp_path / "gen"
    assert hqms(["generate", "--hospitals", "3", "--start", "2025-01-06", "--days", "1", "--seed", "7",
                 "--streams", "flu", "--out", str(gen), "--quiet"]) == 0
    assert hqms(["keys", "init"]) == 0
    with (gen / "upload_plan.csv").open(encoding="utf-8") as fh:
        large = list(csv.DictReader(fh))[1]
    _inflate(gen / large["zip"], LARGE_CSV_MB)
    ids = submit_plan(gen)
    large_id = ids[1]
    cfg = config.load()
    cfg.work_dir.mkdir(parents=True, exist_ok=True)

    run = subprocess.run(["unshare", "-Urm", "sh", "-c", MOUNT.format(mb=TMPFS_MB), sys.executable, "-c", RUN],
                         env={**os.environ, "HQMS_WORK_DIR": str(cfg.work_dir)}, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]

    registry = Registry.from_config(cfg)
    states = {i: registry.get(i) for i in ids}
    assert all(states[i]["status"] == "processed" for i in ids if i != large_id), \
        {i: (u["status"], u["message_en"]) for i, u in states.items()}
    large_upload = states[large_id]
    assert large_upload["status"] == "failed" and large_upload["failures"] == 1
    # the hospital reads that it did not fit (and need not send it again); operators get the disk
    assert "工作空间" in large_upload["message_zh"] and "无需重新上传" in large_upload["message_zh"]
    assert "work space" in large_upload["message_en"]
    assert f"upload {large_id}: the work disk filled up" in run.stderr
    assert "MB free of" in run.stderr and "HQMS_WORK_DIR" in run.stderr
    assert f"incomplete: {len(ids) - 1} of {len(ids)} uploads processed; 1 handed back" in run.stderr
