"""Receiving an upload over HTTP without ever holding the body in memory.

The web page and the API post the zip as ``multipart/form-data`` (field ``file``). Two limits
guard the 20 MB rule (《发热门诊医疗服务监测系统数据对接 用户操作说明》: "zip文件不能超过20M") before intake's own check sees the file:

1. a ``Content-Length`` above the limit (plus room for the form's other fields) is refused
   before a byte of the body is read;
2. a body without one (chunked) is counted while it streams and refused the moment it passes
   the limit.

The parser (Starlette's, on ``python-multipart``) spools the file part to a temporary file past
1 MB, and :func:`receive_upload` copies it under ``HQMS_WORK_DIR`` while hashing it. A refused
body whose size was found out while streaming is read on and discarded up to :data:`DRAIN_FACTOR`
times the limit, so a browser gets the refusal page instead of a reset connection; a larger one
is cut off. (The upload page also checks the size in the browser before sending.)
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from typing import BinaryIO
from dataclasses import dataclass
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from hqms import config
from hqms.registry import redact_identifiers

#: Room for the multipart envelope and the small fields (CSRF token, stream, channel).
FORM_OVERHEAD = 64 * 1024
DRAIN_FACTOR = 2
COPY_CHUNK = 1024 * 1024


class BodyTooLarge(Exception):
    """The request body passed the upload limit; ``declared``: known from Content-Length, before
    any of it was read (then nothing is drained: an ``Expect: 100-continue`` client never sends it)."""

    def __init__(self, declared: bool = False) -> None:
        super().__init__("upload too large")
        self.declared = declared


class BadForm(Exception):
    """Not a multipart form with a ``file`` part."""


@dataclass
class Received:
    path: Path  # under HQMS_WORK_DIR/web; the caller deletes it
    file_name: str  # as the hospital named it (identifiers masked, folders dropped)
    sha256: str
    size: int
    fields: dict[str, str]

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def declared_too_large(request: Request, cfg: config.Config) -> bool:
    """Rule 1: the declared length already says no."""
    length = request.headers.get("content-length")
    return bool(length and length.isdigit() and int(length) > cfg.max_zip_bytes + FORM_OVERHEAD)


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise BodyTooLarge()
        yield chunk


async def drain(request: Request, cfg: config.Config) -> None:
    """Read and discard what is left of a refused body, up to a bound (see module docstring)."""
    budget = DRAIN_FACTOR * (cfg.max_zip_bytes + FORM_OVERHEAD)
    try:
        async for chunk in request.stream():
            budget -= len(chunk)
            if budget < 0:
                return
    except Exception:  # noqa: BLE001 — the stream was consumed or the client went away
        return


async def receive_upload(request: Request, cfg: config.Config) -> Received:
    """Parse the form as it streams, the file part onto disk; raises BodyTooLarge or BadForm."""
    if declared_too_large(request, cfg):
        raise BodyTooLarge(declared=True)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadForm("multipart/form-data expected")
    parser = MultiPartParser(request.headers, _limited(request, cfg.max_zip_bytes + FORM_OVERHEAD),
                             max_files=1, max_fields=8)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise BadForm(str(exc)) from None
    except ClientDisconnect:  # the browser went away mid-upload: nothing to answer, nothing kept
        raise BadForm("the upload was interrupted") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise BadForm("no file chosen")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        path, sha, size = await run_in_threadpool(_copy_hashed, upload.file, cfg.work_dir / "web")
        return Received(path, upload_name(upload.filename), sha, size, fields)
    finally:
        await form.close()


def _copy_hashed(source: BinaryIO, work: Path) -> tuple[Path, str, int]:
    """The spooled part copied under ``work`` while hashing it (off the event loop)."""
    work.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="upload-", suffix=".zip", dir=work)
    digest, size = hashlib.sha256(), 0
    with os.fdopen(fd, "wb") as out:
        source.seek(0)
        while chunk := source.read(COPY_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return Path(tmp), digest.hexdigest(), size


def upload_name(raw: str) -> str:
    """The name as the system stores it: the last path component only (browsers on Windows send
    ``C:\\fakepath\\x.zip``; a crafted one ``../../x``), control characters dropped, identifiers
    masked, at most 200 characters."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip() or "upload.zip"
    return redact_identifiers(name)[:200]
