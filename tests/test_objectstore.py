"""ObjectStore against real S3 servers (rclone serve s3, moto), and the embedded server's life cycle."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hqms import config, embedded_s3
from hqms.objectstore import ObjectStore, ObjectStoreUnavailable


@pytest.fixture
def moto_store() -> Iterator[ObjectStore]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        store = ObjectStore(f"http://{host}:{port}", "testing", "testing-secret",
                            buckets={"landing": "l-bucket", "vault": "v-bucket", "marts": "m-bucket"})
        store.ensure_buckets()
        yield store
    finally:
        server.stop()


@pytest.fixture(params=["rclone", "moto"])
def any_store(request: pytest.FixtureRequest) -> ObjectStore:
    store = request.getfixturevalue("s3_store" if request.param == "rclone" else "moto_store")
    store.ensure_buckets()
    return store


def test_round_trip(any_store: ObjectStore, tmp_path: Path) -> None:
    bucket = any_store.buckets["landing"]
    data = os.urandom(300_000)
    meta = {"Org": "医院 A 100%", "sha256": hashlib.sha256(data).hexdigest()}

    written = any_store.put_bytes(bucket, "flu/ORG1/2026/01/02/u1.zip", data, meta)
    info = any_store.stat(bucket, "flu/ORG1/2026/01/02/u1.zip")

    assert info is not None
    assert info.size == len(data) == written.size
    assert info.etag == hashlib.md5(data).hexdigest() == written.etag
    assert info.metadata == {"org": "医院 A 100%", "sha256": meta["sha256"]}
    assert any_store.get_bytes(bucket, "flu/ORG1/2026/01/02/u1.zip") == data
    assert any_store.sha256(bucket, "flu/ORG1/2026/01/02/u1.zip") == meta["sha256"]

    src = tmp_path / "src.bin"
    src.write_bytes(b"second object")
    any_store.put_file(bucket, "flu/ORG2/x.zip", src)
    any_store.get_file(bucket, "flu/ORG2/x.zip", tmp_path / "out" / "x.zip")
    assert (tmp_path / "out" / "x.zip").read_bytes() == b"second object"

    assert list(any_store.list(bucket)) == ["flu/ORG1/2026/01/02/u1.zip", "flu/ORG2/x.zip"]
    assert list(any_store.list(bucket, prefix="flu/ORG2/")) == ["flu/ORG2/x.zip"]

    any_store.delete(bucket, "flu/ORG1/2026/01/02/u1.zip")
    assert any_store.stat(bucket, "flu/ORG1/2026/01/02/u1.zip") is None
    assert list(any_store.list(bucket)) == ["flu/ORG2/x.zip"]


def test_ensure_buckets_is_idempotent(any_store: ObjectStore) -> None:
    any_store.ensure_buckets()
    any_store.put_bytes(any_store.buckets["vault"], "k", b"v")
    any_store.ensure_buckets()
    assert list(any_store.list(any_store.buckets["vault"])) == ["k"]


def test_stopped_server_raises_unavailable(s3_store: ObjectStore) -> None:
    embedded_s3.stop(config.load())
    with pytest.raises(ObjectStoreUnavailable):
        s3_store.stat(s3_store.buckets["landing"], "anything")
    with pytest.raises(ObjectStoreUnavailable):
        s3_store.put_bytes(s3_store.buckets["landing"], "k", b"x")


def test_embedded_server_persists_and_reuses_port(s3_store: ObjectStore, hqms_home: Path) -> None:
    cfg = config.load()
    bucket = s3_store.buckets["landing"]
    s3_store.put_bytes(bucket, "keep/me.zip", b"persisted")
    endpoint_before = embedded_s3.status(cfg)["endpoint"]

    assert embedded_s3.stop(cfg) is True
    assert embedded_s3.status(cfg)["running"] is False
    restarted = ObjectStore.from_config(cfg)

    assert restarted.get_bytes(bucket, "keep/me.zip") == b"persisted"
    assert embedded_s3.status(cfg)["endpoint"] == endpoint_before
    creds = hqms_home / "s3" / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert (hqms_home / "logs" / "s3.log").exists()


def test_two_homes_never_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               s3_store: ObjectStore) -> None:
    cfg_a = config.load()
    monkeypatch.setenv("HQMS_HOME", str(tmp_path / "other_home"))
    cfg_b = config.load()
    try:
        store_b = ObjectStore.from_config(cfg_b)
        assert store_b.endpoint != s3_store.endpoint
        assert embedded_s3.credentials(cfg_a) != embedded_s3.credentials(cfg_b)
        s3_store.put_bytes(s3_store.buckets["landing"], "only-in-a", b"a")
        assert list(store_b.list(store_b.buckets["landing"])) == []
    finally:
        embedded_s3.stop(cfg_b)


def test_concurrent_processes_start_one_server(hqms_home: Path) -> None:
    """Several processes asking at once end up on the same server (file lock + reuse)."""
    code = ("from hqms import embedded_s3, config, objectstore;"
            "s = objectstore.ObjectStore.from_config();"
            "print(embedded_s3.status()['pid'])")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    try:
        pids = {p.communicate(timeout=60)[0].strip() for p in procs}
        assert len(pids) == 1 and pids != {"None"}
        state = json.loads((hqms_home / "s3" / "server.json").read_text())
        assert str(state["pid"]) in pids
    finally:
        embedded_s3.stop(config.load())
    assert embedded_s3.status(config.load())["running"] is False


def test_external_endpoint_configuration(shared_s3_env: ObjectStore) -> None:
    """HQMS_S3_ENDPOINT as a URL, with per-test bucket names, reaches the server."""
    cfg = config.load()
    assert not cfg.embedded_s3
    store = ObjectStore.from_config(cfg)
    store.put_bytes(cfg.buckets["marts"], "m.parquet", b"p")
    assert list(shared_s3_env.list(cfg.buckets["marts"])) == ["m.parquet"]
