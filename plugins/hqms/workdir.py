"""Private, locked folders for plaintext work files, and the sweep that removes dead runs' ones.

An ingest run (and ``hqms reprocess``) holds fetched zips, decoded CSVs and DuckDB spill files —
plaintext identifiers — in a folder of its own under :func:`runs_dir`. The run holds an
exclusive ``flock`` on it for its whole life and removes it when it ends. A run that dies
(kill -9, OOM, Airflow timeout, reboot) cannot clean up, but the kernel drops its lock, so the
next run's :func:`sweep_work` sees the folder is nobody's and removes it; a live run's folder is
never touched. ``HQMS_WORK_DIR`` must be a local filesystem (each Celery worker sweeps its own).
"""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hqms import config as hqms_config

log = logging.getLogger(__name__)


def runs_dir(cfg: hqms_config.Config) -> Path:
    """The parent of every run folder and of nothing else: the sweep removes what it finds here,
    so anything else in ``work_dir`` (the warehouse connection's ``duckdb_tmp``) is safe."""
    return cfg.work_dir / "runs"


def _lock_folder(folder: Path, *, wait: bool) -> int | None:
    """A descriptor of ``folder`` holding its exclusive flock, or None when ``folder`` is gone
    or (``wait=False``) a live run holds it. The lock is checked to be on the folder still at
    ``folder``: a sweep may have removed it between opening and locking."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        here = folder.stat()
        held = os.fstat(fd)
        if (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino):
            return fd
    except (BlockingIOError, FileNotFoundError):
        pass
    os.close(fd)
    return None


@contextmanager
def run_folder(cfg: hqms_config.Config, run_id: str) -> Iterator[Path]:
    """A new private folder (mode 0700) for one run's plaintext, locked while the run lives and
    removed when it ends, however it ends short of dying. Each run gets its own folder, so a
    batch reclaimed while its first run still works never touches that run's files."""
    parent = runs_dir(cfg)
    parent.mkdir(parents=True, exist_ok=True)
    fd = None
    while fd is None:  # again only if a sweep removed the new folder before it was locked
        work = Path(tempfile.mkdtemp(prefix=f"{run_id}.", dir=parent))
        fd = _lock_folder(work, wait=True)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.close(fd)


def run_owner(work: Path) -> str:
    """How a run names itself as the owner of its registry claims: host and run folder (the
    absolute path: workers of one host may have different ``HQMS_WORK_DIR``). On the same host
    the folder's lock tells whether the owner lives (:func:`owner_alive`)."""
    return f"{socket.gethostname()}|{work.resolve()}"


def owner_alive(owner: str) -> bool | None:
    """Whether the run ``owner`` (:func:`run_owner`) is alive: True while its run folder is
    locked, False once the lock is gone (the run ended or died: the kernel drops a dead
    process's lock at once), None for a run of another host (only its heartbeat can tell)."""
    host, _, path = owner.partition("|")
    folder = Path(path)
    if host != socket.gethostname() or not folder.is_absolute():
        return None
    fd = _lock_folder(folder, wait=False)
    if fd is not None:
        os.close(fd)
        return False
    return folder.is_dir()  # locked by its live run; gone: ended or swept


def sweep_work(cfg: hqms_config.Config) -> int:
    """Remove the run folders of dead runs (kill -9, OOM, reboot): the plaintext zips, CSVs and
    spill files they left. A folder whose lock can be taken without waiting has no live owner;
    a live run's folder is skipped. Each worker sweeps its own (local) ``work_dir``."""
    parent = runs_dir(cfg)
    removed = 0
    for folder in list(parent.iterdir()) if parent.is_dir() else []:
        fd = _lock_folder(folder, wait=False)
        if fd is None:
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)
        if folder.exists():
            log.error("could not remove the work folder %s of a dead ingest run", folder.name)
        else:
            removed += 1
    if removed:
        log.info("removed %d work folders of dead ingest runs", removed)
    return removed
