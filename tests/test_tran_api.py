"""``hqms tran`` against the hospital service's API (``HQMS_SERVER_URL``): real processes on both
sides — a uvicorn server (``hqms serve``) with its registry and S3, and the front-end machine with
a home of its own holding nothing but its account token. Delivery is exactly once across kill -9
of either side: every original arrives in exactly one accepted upload, no duplicate record, and
every original is deleted only after the server's record holds it."""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import use_home
from web_helpers import org_in_region

from hqms import config, embedded_s3, spec
from hqms.accounts import Accounts
from hqms.registry import ACCEPTED, Registry

pytestmark = pytest.mark.slow
ORG = org_in_region(31, "110105")
OTHER = org_in_region(32, "110105")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``hqms serve`` on a fixed free port, so the front-end machine's URL survives a restart."""

    def __init__(self, home: Path) -> None:
        self.home, self.port, self.proc = home, _free_port(), None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HQMS_")}
        self.env.update(HQMS_HOME=str(home), HQMS_S3_ENDPOINT=config.EMBEDDED_S3)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.home / "serve.log").open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "hqms.cli", "serve", "--port", str(self.port)],
                                     stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((self.home / "serve.log").read_text(errors="replace"))
                time.sleep(0.1)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def sides(tmp_path: Path):
    server_home, machine_home = tmp_path / "server", tmp_path / "machine"
    server_home.mkdir()
    machine_home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        use_home(mp, server_home)
        cfg = config.load()
        accounts = Accounts(cfg)
        accounts.add("qzj", "hospital", org_code=ORG, password="Initial-pass-1")
        accounts.add("other", "hospital", org_code=OTHER, password="Initial-pass-1")
        token = accounts.create_token("qzj", "前置机")
        server = Server(server_home)
        server.start()
        machine_env = {k: v for k, v in os.environ.items() if not k.startswith("HQMS_")}
        machine_env.update(HQMS_HOME=str(machine_home), HQMS_SERVER_URL=server.url, HQMS_SERVER_TOKEN=token)
        try:
            yield server, machine_env, cfg, tmp_path
        finally:
            if server.proc.poll() is None:
                server.kill9()
            embedded_s3.stop(cfg)


def _tran(env: dict[str, str], inbox: Path, *extra: str) -> subprocess.Popen:
    # the console script, not ``-m hqms.cli``: run as __main__, cli.py's UserError would be a
    # different class from the one the modules raise
    return subprocess.Popen([str(Path(sys.executable).parent / "hqms"), "tran", "watch", str(inbox), "--org", ORG,
                             "--user", "ignored", "--settle", "0.2", *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _noisy_csv(ds: spec.Dataset, rows: int) -> bytes:
    """The dataset's header, then rows with the org code and random text (compresses like real
    exports do, not like a zip bomb)."""
    lines = [",".join(ds.codes)]
    other = next(c for c in ds.codes if c != ds.org_column)
    for _ in range(rows):
        lines.append(",".join(ORG if c == ds.org_column else os.urandom(6).hex() if c == other else ""
                              for c in ds.codes))
    return ("\r\n".join(lines) + "\r\n").encode("gbk")


def _drop_files(inbox: Path, round_no: int) -> dict[str, bytes]:
    """One round of a day's files: flu and fever, ~1-2 MB each, distinct content per round."""
    files = {}
    for stream in ("flu", "fever"):
        ds = spec.stream_datasets(stream)[0]
        files[f"{ds.prefix}2026010{round_no}_{round_no}.csv"] = _noisy_csv(ds, 15000)
    for name, data in files.items():
        (inbox / name).write_bytes(data)
    return files


def _assert_exactly_once(cfg: config.Config, sent: dict[str, bytes], inbox: Path, machine_home: Path) -> None:
    uploads = Registry.from_config(cfg).list_uploads(org=ORG)
    assert not [u for u in uploads if u["status"] == "duplicate"], "a bundle was recorded twice"
    accepted = [u for u in uploads if u["status"] in ACCEPTED]
    assert len({u["sha256"] for u in accepted}) == len(accepted)
    received: list[str] = []
    for u in accepted:
        assert u["channel"] == "tran" and u["uploader"] == "qzj"
        store_zip = cfg.home / "check.zip"
        from hqms.objectstore import ObjectStore

        ObjectStore.from_config(cfg).get_file(cfg.buckets["landing"], u["object_key"], store_zip)
        with zipfile.ZipFile(store_zip) as zf:
            for name in zf.namelist():
                assert zf.read(name) == sent[name]
                received.append(name)
    assert sorted(received) == sorted(sent), "every original exactly once"
    assert not any(inbox.iterdir()), "every delivered original removed"
    assert not (machine_home / "s3").exists()  # the machine never touched S3


def test_tran_killed_repeatedly_delivers_exactly_once(sides) -> None:
    server, env, cfg, tmp = sides
    inbox = tmp / "inbox"
    inbox.mkdir()
    sent: dict[str, bytes] = {}
    rng = random.Random(7)
    for round_no in range(1, 5):
        sent.update(_drop_files(inbox, round_no))
        proc = _tran(env, inbox, "--interval", "0.3")
        time.sleep(rng.uniform(1.5, 4.0))  # somewhere in start-up, bundling, sending or cleaning up
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = _tran(env, inbox, "--once")
    assert final.wait(timeout=120) == 0, final.stderr.read().decode()
    _assert_exactly_once(cfg, sent, inbox, Path(env["HQMS_HOME"]))


def test_server_killed_mid_delivery_delivers_exactly_once(sides) -> None:
    server, env, cfg, tmp = sides
    inbox = tmp / "inbox"
    inbox.mkdir()
    sent: dict[str, bytes] = {}
    proc = _tran(env, inbox, "--interval", "0.3", "--retries", "8")
    try:
        for round_no in range(1, 4):
            sent.update(_drop_files(inbox, round_no))
            time.sleep(0.6 + 0.4 * round_no)  # the machine is bundling or sending
            server.kill9()
            time.sleep(1.0)
            server.start()
        deadline = time.monotonic() + 120
        while any(inbox.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    _assert_exactly_once(cfg, sent, inbox, Path(env["HQMS_HOME"]))


def test_crash_after_the_server_accepted_adopts_instead_of_resending(sides) -> None:
    """The window kill -9 rarely hits: the server has the bundle, the journal has no id yet."""
    import httpx

    from hqms import tran

    server, env, cfg, tmp = sides
    inbox = tmp / "inbox"
    inbox.mkdir()
    sent = _drop_files(inbox, 1)
    machine = {k: v for k, v in env.items()}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in machine.items():
            if name.startswith("HQMS_"):
                mp.setenv(name, value)
        mcfg = config.load()
        opts = tran.Options(watch_dir=inbox, org_code=ORG, user="x", settle=0.2, retries=2, backoff=0.05)
        journal = tran.Journal(tran.state_dir(mcfg, ORG, inbox))
        machine_tran = tran.Tran(opts, mcfg)
        current, _ = tran.scan(inbox)
        machine_tran._bundle(list(current.values()))  # journalled, upload id None
        for entry in journal.__class__(journal.dir).pending:  # "sent" by the run that then died
            bundle = journal.outbox / entry["bundle"]
            answer = httpx.post(f"{server.url}/api/v1/uploads", headers={
                "Authorization": f"Bearer {env['HQMS_SERVER_TOKEN']}", "Idempotency-Key": entry["sha256"]},
                data={"channel": "tran"}, files={"file": (bundle.name, bundle.read_bytes())})
            assert answer.status_code == 200 and not answer.json()["replayed"], answer.text
        result = tran.run_once(opts, mcfg)
    assert result.exit_code == 0 and len(result.uploaded) == 2
    _assert_exactly_once(cfg, sent, inbox, Path(env["HQMS_HOME"]))


def test_a_token_of_another_hospital_is_refused(sides) -> None:
    server, env, cfg, tmp = sides
    inbox = tmp / "inbox"
    inbox.mkdir()
    other = Accounts(cfg).create_token("other")
    for token, reason in ((other, "不属于该医疗机构"), ("hqms_nope_nope", "接口令牌无效")):
        proc = _tran({**env, "HQMS_SERVER_TOKEN": token}, inbox, "--once")
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 2 and reason in err, err
