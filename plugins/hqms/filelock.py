"""One process at a time: an exclusive ``flock`` on a lock file.

Why a module: the embedded S3 server's start/stop, the live system's up/down and the keyring's
writers each serialise across processes the same way; the lock file's folder is made private
(0700) first, as every folder of a home is.
"""
from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """Hold ``lock`` exclusively (waiting for another holder) for the ``with`` block."""
    lock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
