"""Shared fixtures: an isolated HQMS_HOME and a real S3 server (rclone) on loopback.

``hqms_home``   fresh HQMS_HOME for one test; every other HQMS_* variable is removed so nothing
                leaks in from the developer's shell (external S3, registry URL, warehouse ...).
``s3_store``    the embedded rclone server of that home, as an ``ObjectStore``; stopped afterwards.
``shared_s3``   one rclone server for the whole session (start-up costs ~0.5 s per server).
``shared_s3_env`` points the current ``hqms_home`` at ``shared_s3`` as if it were an external
                endpoint, with bucket names unique to the test, so "the bucket is empty" still
                means something.
"""
from __future__ import annotations

import os
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hqms import config, embedded_s3, spec, validators
from hqms.objectstore import ObjectStore


def _clear_hqms_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HQMS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def hqms_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary HQMS_HOME (embedded S3 mode: all HQMS_S3_* unset)."""
    _clear_hqms_env(monkeypatch)
    home = tmp_path / "hqms_home"
    home.mkdir()
    monkeypatch.setenv("HQMS_HOME", str(home))
    return home


@pytest.fixture
def s3_store(hqms_home: Path) -> Iterator[ObjectStore]:
    """This test's own embedded S3 server (buckets created), stopped at teardown."""
    cfg = config.load()
    store = ObjectStore.from_config(cfg)
    try:
        yield store
    finally:
        embedded_s3.stop(cfg)


@pytest.fixture(scope="session")
def _shared_s3_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[config.Config]:
    """Configuration of the session-wide server's own home (server started, stopped at end)."""
    home = tmp_path_factory.mktemp("shared_s3_home")
    with pytest.MonkeyPatch.context() as mp:
        _clear_hqms_env(mp)
        mp.setenv("HQMS_HOME", str(home))
        cfg = config.load()
    embedded_s3.ensure_running(cfg)
    try:
        yield cfg
    finally:
        embedded_s3.stop(cfg)


@pytest.fixture(scope="session")
def shared_s3(_shared_s3_config: config.Config) -> ObjectStore:
    """One embedded server for the whole session (default bucket names, shared by tests)."""
    return ObjectStore.from_config(_shared_s3_config)


@pytest.fixture
def shared_s3_env(hqms_home: Path, _shared_s3_config: config.Config,
                  monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    """Point the current home at the shared server as an external endpoint, with fresh buckets."""
    endpoint, access, secret = embedded_s3.ensure_running(_shared_s3_config)
    suffix = uuid.uuid4().hex[:10]
    monkeypatch.setenv("HQMS_S3_ENDPOINT", f"http://{endpoint}")
    monkeypatch.setenv("HQMS_S3_ACCESS_KEY", access)
    monkeypatch.setenv("HQMS_S3_SECRET_KEY", secret)
    for role in config.DEFAULT_BUCKETS:
        monkeypatch.setenv(f"HQMS_BUCKET_{role.upper()}", f"t{suffix}-{role}")
    store = ObjectStore.from_config(config.load())
    store.ensure_buckets()
    return store


# --- synthetic uploads ----------------------------------------------------------------------------

def make_zip(path: Path, entries: list[tuple[str, bytes]] | dict[str, bytes],
             compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """Write a zip with the given (name, bytes) entries, names exactly as given."""
    items = entries.items() if isinstance(entries, dict) else entries
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in items:
            zf.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 2, 3, 4, 5)), data,
                        compress_type=compression)
    return path


def synthetic_org_code(seed: int = 0) -> str:
    """A well-formed, check-valid 医疗机构代码 that names no real institution."""
    body = f"{9000_0000 + seed:08d}"
    return validators.make_medical_org_code(validators.make_org_code(body), "110101", "11",
                                            "A100", "1")


def csv_bytes(prefix: str, org_code: str, rows: int = 2) -> bytes:
    """A small CSV of the dataset with ``prefix``: spec header, org column filled, rest empty."""
    ds = next(d for d in spec.datasets().values() if d.prefix == prefix)
    lines = [",".join(ds.codes)]
    for _ in range(rows):
        lines.append(",".join(org_code if c == ds.org_column else "" for c in ds.codes))
    return ("\r\n".join(lines) + "\r\n").encode("gbk")


@pytest.fixture
def org_code() -> str:
    return synthetic_org_code(1)
