"""Why an upload's processing did not finish, told twice: to its hospital (registry message, no
internals) and to operators (the log: where it failed, the disk's state — never the exception's
message, which may quote a row of the upload).

A failure the upload caused alone is charged to it (:meth:`hqms.registry.Registry.release`); its
*cause* here is what the hospital reads, followed by "will be retried" or, once
``HQMS_MAX_ATTEMPTS`` is reached, "the data team has been alerted".
"""
from __future__ import annotations

import errno
import logging
import shutil
import traceback
from pathlib import Path

import duckdb

log = logging.getLogger("hqms.ingest.process")

#: Why an upload is handed back: None = not its fault (S3 down), else the (zh, en) cause of its
#: failing alone — a failure charged to it.
Reason = tuple[str, str] | None
#: An upload that broke a round alone, for no reason the pipeline knows (a bug meeting its file).
CRASHED = ("处理本上传时出现内部错误", "processing this upload raised an internal error")
#: An upload whose stored bytes do not verify or could not be vaulted.
NOT_STORED = ("接收的原始文件校验或加密存档未成功", "the received file could not be verified or vaulted")
#: An upload whose unpacked data did not fit in the work folder while it ran alone.
DISK_FULL = ("本上传解压后的数据超出处理服务器的工作空间，暂时无法处理",
             "this upload's unpacked data did not fit in the processing server's work space")
_DISK_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_DISK_TEXTS = ("no space left on device", "file too large", "disk quota exceeded")


def log_failure(what: str, exc: BaseException) -> None:
    """Log where processing failed, without the exception's message: DuckDB and the csv module
    quote the offending line of the upload there, and logs must never hold personal data."""
    log.error("%s: %s (message withheld: it may quote uploaded data)\n%s", what, type(exc).__name__,
              "".join(traceback.format_tb(exc.__traceback__)).rstrip())


def disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is the work disk running out: an ``OSError`` with
    ENOSPC, EFBIG (a file size limit) or EDQUOT, or a DuckDB I/O error saying so."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
            return True
        if isinstance(exc, duckdb.Error) and any(t in str(exc).lower() for t in _DISK_TEXTS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def lone_failure(upload_id: str, work: Path, exc: BaseException, csv_bytes: int) -> tuple[str, str]:
    """Log why an upload failed alone (in its round folder ``work``) and return the cause its
    hospital reads. Disk details go to the log only: free and total space, the upload's CSV size."""
    if not disk_full(exc):
        log_failure(f"upload {upload_id} could not be processed; left for retry", exc)
        return CRASHED
    usage = shutil.disk_usage(work.parent)
    log.error("upload %s: the work disk filled up while it was processed alone (%s; %d MB free of %d MB "
              "at %s, its zip holds %d MB of CSV); left for retry — give HQMS_WORK_DIR more space",
              upload_id, type(exc).__name__, usage.free // 2**20, usage.total // 2**20, work.parent,
              csv_bytes // 2**20)
    return DISK_FULL
