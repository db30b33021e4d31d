"""Shared fixtures: an isolated HQMS_HOME and a real S3 server (rclone) on loopback.

The tests choose the embedded S3 store (``HQMS_S3_ENDPOINT=embedded``) for the whole session and
every process they start: an unset variable is no store at all (the configuration fails closed).

``hqms_home``   fresh HQMS_HOME for one test; every other HQMS_* variable is removed so nothing
                leaks in from the developer's shell (external S3, registry URL, warehouse ...).
``s3_store``    the embedded rclone server of that home, as an ``ObjectStore``; stopped afterwards.
``shared_s3``   one rclone server for the whole session (start-up costs ~0.5 s per server).
``shared_s3_env`` points the current ``hqms_home`` at ``shared_s3`` as if it were an external
                endpoint, with bucket names unique to the test, so "the bucket is empty" still
                means something.
``pg_server``   one real PostgreSQL server for the session (PyPI ``pgserver``: its own binaries,
                a Unix socket under the session's temporary folder, stopped at the end).
``pg_url``      a fresh, empty database on it for one test (SQLAlchemy URL, psycopg2).
``registry_url`` the registry database of one test, parametrised: SQLite file and PostgreSQL
                (production parity: claims, SKIP LOCKED, partial unique index, masking).
``resend_week`` two hospitals' week of uploads with the 7-day re-send, and keys, for
                ``IngestHome``: a home whose ingest workers run as child processes.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hqms import config, embedded_s3, spec, validators
from hqms.objectstore import ObjectStore


#: Set here, before any test runs, so homes made without the fixtures choose it as well.
os.environ["HQMS_S3_ENDPOINT"] = config.EMBEDDED_S3


def clear_hqms_env(mp: pytest.MonkeyPatch) -> None:
    """Remove every HQMS_* variable (nothing leaks in from the developer's shell) but the tests'
    own choice of store: HQMS_S3_ENDPOINT=embedded."""
    for name in list(os.environ):
        if name.startswith("HQMS_"):
            mp.delenv(name)
    mp.setenv("HQMS_S3_ENDPOINT", config.EMBEDDED_S3)


def use_home(mp: pytest.MonkeyPatch, home: Path) -> None:
    """Point ``mp`` at ``home`` on its embedded store, every other HQMS_* variable removed."""
    clear_hqms_env(mp)
    mp.setenv("HQMS_HOME", str(home))


@pytest.fixture
def hqms_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary HQMS_HOME on its embedded S3 store (HQMS_S3_ENDPOINT=embedded, no other HQMS_*)."""
    home = tmp_path / "hqms_home"
    home.mkdir()
    use_home(monkeypatch, home)
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
        use_home(mp, home)
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


# --- PostgreSQL (production parity) ---------------------------------------------------------------

@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server for the whole session (≈ 1–5 s to start here).

    As root, pgserver runs PostgreSQL as a system user of its own, which must traverse the data
    folder's parents: so the folder is not under pytest's temporary tree (0700, and re-chmodded by
    any other pytest session starting meanwhile), and the files pgserver prepares are made with a
    umask it can read, whatever private umask (077) an HQMS test process has set by now."""
    pgserver = pytest.importorskip("pgserver")
    base = Path(tempfile.mkdtemp(prefix="hqms-pg-"))
    with _umask(0o022):
        server = pgserver.get_server(base / "pgdata", cleanup_mode="stop")
    try:
        yield server
    finally:
        with _umask(0o022):
            server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh database of its own for one test."""
    name = f"t{uuid.uuid4().hex[:12]}"
    pg_server.psql(f"CREATE DATABASE {name};")
    return pg_server.get_uri(name).replace("postgresql://", "postgresql+psycopg2://", 1)


@pytest.fixture(params=["sqlite", "postgres"])
def registry_url(request: pytest.FixtureRequest, hqms_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``HQMS_REGISTRY_URL`` of this test: the default SQLite file, or a PostgreSQL database."""
    if request.param == "postgres":
        monkeypatch.setenv("HQMS_REGISTRY_URL", request.getfixturevalue("pg_url"))
    return config.load().registry_url


# --- accounts: intake accepts uploads only for orgs with an active hospital account --------------

def provision_hospitals(*org_codes: str, login_prefix: str = "h") -> dict[str, str]:
    """Active hospital accounts for ``org_codes`` in the current HQMS_HOME's registry (idempotent);
    org → login name. Call it before submitting for an org (not autouse: a test about the
    ``unknown_org`` refusal needs an org without one)."""
    from hqms.accounts import Accounts

    accounts = Accounts(config.load())
    logins = {}
    for org in org_codes:
        login = f"{login_prefix}{org}"
        if accounts.get(login) is None:
            accounts.add(login, "hospital", org_code=org, password="Initial-pass-1")
        logins[org] = login
    return logins


def provision_plan(plan_csv: Path) -> dict[str, str]:
    """Hospital accounts for every org of a generator's ``upload_plan.csv``."""
    with plan_csv.open(encoding="utf-8", newline="") as fh:
        return provision_hospitals(*sorted({r["org_code"] for r in csv.DictReader(fh)}))


# --- synthetic uploads ----------------------------------------------------------------------------

def generate_day(out: Path, seed: int) -> dict:
    """One synthetic hospital's day of flu, fever and outpatient uploads under ``out``:
    ``{"dir": out, "org": its code, "zips": {stream: zip path}}`` (its own HQMS_HOME under ``out``)."""
    from hqms.cli import main as hqms

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HQMS_HOME", str(out / "home"))
        assert hqms(["generate", "--hospitals", "1", "--start", "2025-01-06", "--days", "1", "--seed", str(seed),
                     "--streams", "flu,fever,outpatient", "--out", str(out / "g"), "--quiet"]) == 0
    plan = {r["stream"]: r for r in csv.DictReader((out / "g" / "upload_plan.csv").open(encoding="utf-8"))}
    return {"dir": out, "org": plan["flu"]["org_code"], "zips": {s: out / "g" / r["zip"] for s, r in plan.items()}}


def generate_plan(out: Path, *, hospitals: int, seed: int, streams: str = "flu", days: int = 1) -> list[dict[str, str]]:
    """``days`` from 2025-01-06 of ``hqms generate`` into ``out``, the current home's demo keys and
    an account per hospital; returns the rows of the upload plan."""
    from hqms.cli import main as hqms

    assert hqms(["generate", "--hospitals", str(hospitals), "--start", "2025-01-06", "--days", str(days),
                 "--seed", str(seed), "--streams", streams, "--out", str(out), "--quiet"]) == 0
    assert hqms(["keys", "init"]) == 0
    provision_plan(out / "upload_plan.csv")
    with (out / "upload_plan.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def submit_plan(gen: Path) -> list[str]:
    """Submit every zip of a generated ``upload_plan.csv`` as planned (receipt time included)
    to the current HQMS_HOME; returns the upload ids in plan order."""
    import csv
    from datetime import datetime

    from hqms.intake.submit import submit

    provision_plan(gen / "upload_plan.csv")
    with (gen / "upload_plan.csv").open(encoding="utf-8") as fh:
        return [submit(gen / r["zip"], r["org_code"], r["uploader"],
                       received_at=datetime.fromisoformat(r["planned_received_at"])).upload_id
                for r in csv.DictReader(fh)]


def edit_csv_in_zip(src: Path, dst: Path, prefix: str, edit: Callable[[list[list[str]]], None]) -> Path:
    """Copy an upload, letting ``edit`` change the rows (header first) of its ``prefix`` CSVs in
    place; GBK and CRLF as the exporters write them."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.rsplit("/", 1)[-1].startswith(prefix):
                rows = list(csv.reader(io.StringIO(data.decode("gb18030"), newline="")))
                edit(rows)
                buf = io.StringIO()
                csv.writer(buf, lineterminator="\r\n").writerows(rows)
                data = buf.getvalue().encode("gb18030")
            zout.writestr(info, data)
    return dst


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


#: Names of the bad-zip corpus cases (known at collection time, for parametrisation).
BAD_ZIP_CASES = (
    "zip_slip", "absolute", "backslash", "drive", "encrypted", "symlink", "nested_zip",
    "zip_named_csv", "non_csv", "wrong_prefix", "duplicate", "too_large", "bomb", "empty",
    "only_folders", "not_a_zip", "truncated", "bad_crc", "rar_name", "mixed_streams")


def bad_zip_corpus(tmp: Path, org: str) -> dict[str, tuple[Path, str]]:
    """name → (zip path, expected intake rule): one zip per way an upload can be malformed."""
    good_csv = csv_bytes("flu_", org)
    inner = make_zip(tmp / "inner.zip", {"flu_1.csv": good_csv})
    truncated = make_zip(tmp / "src_trunc.zip", {"flu_1.csv": os.urandom(4000)}, zipfile.ZIP_STORED)
    encrypted = make_zip(tmp / "encrypted.zip", {"flu_1.csv": good_csv})
    _set_encrypted_flag(encrypted)
    return {
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
        "not_a_zip": (write_bytes(tmp / "plain.zip", good_csv), "not_a_zip"),
        "truncated": (write_bytes(tmp / "trunc.zip", truncated.read_bytes()[:2500]), "corrupt_zip"),
        "bad_crc": (_corrupt_crc(make_zip(tmp / "crc.zip", {"flu_1.csv": good_csv},
                                          zipfile.ZIP_STORED)), "corrupt_zip"),
        "rar_name": (write_bytes(tmp / "upload.rar", inner.read_bytes()), "not_zip_name"),
        "mixed_streams": (make_zip(tmp / "mixed.zip", [("flu_1.csv", good_csv),
                                                        (f"{spec.stream_datasets('fever')[0].prefix}1.csv", good_csv)]),
                          "mixed_streams"),
    }


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="session")
def bad_zips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    return bad_zip_corpus(tmp_path_factory.mktemp("bad_zips"), synthetic_org_code(1))


def generated_upload(out: Path, stream: str, start: str, days: int, seed: int,
                     scale: float | None = None) -> tuple[dict, Path]:
    """One synthetic hospital's first generated upload of ``stream`` (its upload-plan row and zip)
    under ``out``, with the keyring initialised, for tests that submit and ingest it (the caller's
    HQMS_HOME)."""
    from hqms.cli import main as hqms

    args = ["generate", "--hospitals", "1", "--start", start, "--days", str(days), "--seed", str(seed),
            "--streams", stream, "--out", str(out), "--quiet"]
    assert hqms(args + (["--scale", str(scale)] if scale else [])) == 0
    assert hqms(["keys", "init"]) == 0
    plan = next(csv.DictReader((out / "upload_plan.csv").open(encoding="utf-8")))
    provision_hospitals(plan["org_code"])
    return plan, out / plan["zip"]


# --- two ingest workers in child processes against one warehouse (tests/test_lake.py,
# tests/test_write_lock.py) --------------------------------------------------------------------

WORKER_CLAIM = ("import json, sys\nfrom hqms.ingest.run import claim\n"
                "json.dump(claim(), open(sys.argv[1], 'w'))\n")
WORKER_PROCESS = ("import json, sys\nfrom hqms.ingest.run import process\n"
                  "for batch in json.load(open(sys.argv[1])):\n    process(batch)\n")
WORKER_PROCESS_ALL = "from hqms.ingest.run import claim, process\nfor b in claim():\n    process(b)\n"
_IN_MERGE = ("import json, sys, time\nfrom pathlib import Path\nimport hqms.ingest.process as p\n"
             "real = p.record_ops\n"
             "def record_ops(con, records):\n"
             "    real(con, records)\n"
             "    Path(sys.argv[2]).touch()\n"
             "{wait}"
             "p.record_ops = record_ops\n"
             "from hqms.ingest.run import process\n"
             "for batch in json.load(open(sys.argv[1])):\n    process(batch)\n")
#: A worker that stops inside its merge transaction — every dw and ops statement done, COMMIT
#: not yet — says so with a marker file and waits to be killed.
WORKER_STOPS_IN_MERGE = _IN_MERGE.format(wait="    time.sleep(600)\n")
#: A worker that keeps its merge transaction open — every dw and ops statement done — until
#: the test lets it commit (file ``<marker>.go``), so another worker's merge overlaps it.
WORKER_HOLDS_ITS_MERGE = _IN_MERGE.format(wait="    go = Path(sys.argv[2] + '.go')\n"
                                               "    while not go.exists():\n"
                                               "        time.sleep(0.05)\n")


@pytest.fixture(scope="module")
def resend_week(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(generated uploads, a keys folder every home shares): two hospitals' week of flu uploads
    with the 7-day re-send (so later uploads replace earlier ones' records) and fever packages."""
    from hqms.cli import main as hqms

    root = tmp_path_factory.mktemp("resend_week")
    with pytest.MonkeyPatch.context() as mp:
        use_home(mp, root / "keyhome")
        mp.setenv("HQMS_KEYS_DIR", str(root / "keys"))
        assert hqms(["generate", "--hospitals", "2", "--start", "2025-01-06", "--days", "5", "--seed", "3",
                     "--streams", "flu,fever", "--out", str(root / "gen"), "--quiet"]) == 0
        assert hqms(["keys", "init"]) == 0
    return root / "gen", root / "keys"


class IngestHome:
    """One fresh home (embedded S3, registry, the warehouse ``warehouse_env`` names) whose ingest
    runs in child processes; same uploads and keys every time. Use as a context manager: the
    test process sees the home's HQMS_* settings inside it."""

    def __init__(self, root: Path, uploads: tuple[Path, Path], **warehouse_env: str) -> None:
        self.root, (self.gen, keys) = root, uploads
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HQMS_")}
        self.env.update(HQMS_HOME=str(root / "home"), HQMS_S3_ENDPOINT=config.EMBEDDED_S3, HQMS_KEYS_DIR=str(keys),
                        **warehouse_env)

    def __enter__(self) -> IngestHome:
        self._old = {k: os.environ.get(k) for k in self.env if k.startswith("HQMS_")}
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("HQMS_")})
        return self

    def __exit__(self, *exc) -> None:
        embedded_s3.stop(config.load())
        for k, v in self._old.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v

    def submit_all(self) -> list[str]:
        from datetime import datetime

        from hqms.intake.submit import submit

        provision_plan(self.gen / "upload_plan.csv")
        with (self.gen / "upload_plan.csv").open(encoding="utf-8") as fh:
            return [submit(self.gen / r["zip"], r["org_code"], r["uploader"],
                           received_at=datetime.fromisoformat(r["planned_received_at"])).upload_id
                    for r in csv.DictReader(fh)]

    def child(self, code: str, *args: str, **env: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", code, *args], env={**self.env, **env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def claim(self, batches: int, n: int) -> list[list[str]]:
        out = self.root / "batches.json"
        size = str(-(-n // batches))
        assert self.child(WORKER_CLAIM, str(out), HQMS_BATCH_MAX_UPLOADS=size).wait(timeout=120) == 0
        return json.loads(out.read_text())

    def worker(self, batches: list[list[str]], name: str, code: str = WORKER_PROCESS) -> subprocess.Popen:
        share = self.root / f"{name}.json"
        share.write_text(json.dumps(batches))
        return self.child(code, str(share), str(self.root / f"{name}.in_merge"))

    def two_workers(self, held_code: str, *, other_after_merge: bool = False
                    ) -> tuple[subprocess.Popen, subprocess.Popen, list[str], list[str]]:
        """Submit everything, claim it in an older and a newer half, start the newer half's
        worker running ``held_code`` and the older half's plainly (at once, or only once the
        first is in its merge: ``other_after_merge``); return once the first is inside its merge
        transaction: (held worker, other worker, older ids, newer ids)."""
        older, newer = self.claim(2, len(self.submit_all()))
        held = self.worker([newer], "held", held_code)
        other = None if other_after_merge else self.worker([older], "other")
        deadline = time.monotonic() + 600
        while not (self.root / "held.in_merge").exists():
            assert held.poll() is None and time.monotonic() < deadline, "the worker never reached its merge"
            time.sleep(0.05)
        return held, other or self.worker([older], "other"), older, newer

    def result(self) -> dict[str, list[tuple]]:
        """Every dw row and ops record, upload ids replaced by the upload's file name (ids differ
        between homes) and without what differs by nature: load times and the SM4-GCM
        ciphertext (a fresh nonce each time)."""
        from hqms import warehouse_attach
        from hqms.registry import TERMINAL, Registry

        statuses = {u["status"] for u in Registry.from_config().list_uploads()}
        assert statuses <= set(TERMINAL), statuses
        con = warehouse_attach.connect(config.load(), read_only=True)
        try:
            out = {}
            for table in ("flu", "fever", "drug", "lab", "examine"):
                cols = [c for (c,) in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_catalog = 'warehouse' "
                    "AND table_schema = 'dw' AND table_name = ? ORDER BY ordinal_position", [table]).fetchall()
                        if c not in ("_upload_id", "_loaded_at") and not c.endswith("_enc")]
                out[table] = con.execute(
                    f"SELECT u.file_name, {', '.join(f't.{c}' for c in cols)} FROM dw.{table} t "
                    "JOIN ops.uploads u ON u.upload_id = t._upload_id ORDER BY ALL").fetchall()
            out["uploads"] = con.execute(
                "SELECT * EXCLUDE (upload_id, processed_at) FROM ops.uploads ORDER BY ALL").fetchall()
            for table in ("upload_files", "upload_errors"):
                out[table] = con.execute(f"SELECT u.file_name, t.* EXCLUDE (upload_id) FROM ops.{table} t "
                                         "JOIN ops.uploads u USING (upload_id) ORDER BY ALL").fetchall()
            keys = con.execute("SELECT count(*), count(DISTINCT _nk) FROM dw.flu").fetchone()
            assert keys[0] == keys[1], "a natural key is in the warehouse twice"
            return out
        finally:
            con.close()

    def serial(self) -> dict[str, list[tuple]]:
        """One worker, every upload in claim order: what concurrent runs must equal."""
        ids = self.submit_all()
        assert self.child(WORKER_PROCESS_ALL).wait(timeout=900) == 0
        result = self.result()
        assert len(result["uploads"]) == len(ids) >= 10
        assert result["flu"] and result["fever"]
        return result
