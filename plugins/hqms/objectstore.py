"""The one module that talks to object storage (S3 API via the ``minio`` SDK).

Everything else (intake, ingest, vault, marts export, the front-end machine) goes through
:class:`ObjectStore`, so the pipeline stays S3-generic: production MinIO, the embedded rclone
server, or moto in tests. MinIO community edition is frozen upstream (see stack-notes), which is
exactly why nothing outside this file may depend on the SDK.

User metadata values must be ASCII in HTTP headers; non-ASCII (and ``%``) is percent-encoded on
write and decoded on read, so callers pass and get plain ``str``.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError

from hqms import config

META_PREFIX = "x-amz-meta-"
#: Objects up to this size go in one PUT (ETag = MD5 on every S3 server); larger ones multipart.
PART_SIZE = 64 * 1024 * 1024
CHUNK = 1024 * 1024
#: Printable ASCII except ``%``: left as is by the metadata encoding.
_META_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in "%")


class ObjectStoreUnavailable(Exception):
    """Connection refused, timeout or a 5xx answer: the store is down, callers retry later."""


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str
    metadata: dict[str, str] = field(default_factory=dict)  # lower-case keys, no x-amz-meta-


def _encode_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    return {k.lower(): quote(str(v), safe=_META_SAFE) for k, v in (metadata or {}).items()}


def _decode_metadata(headers: object) -> dict[str, str]:
    items = headers.items() if hasattr(headers, "items") else []
    return {k.lower().removeprefix(META_PREFIX): unquote(v)
            for k, v in items if k.lower().startswith(META_PREFIX)}


def _unavailable(exc: BaseException) -> bool:
    """Errors that mean "server down or failing", as opposed to a wrong request."""
    if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, ServerError)):
        return True
    if isinstance(exc, S3Error):
        return exc.response is not None and exc.response.status >= 500
    if isinstance(exc, InvalidResponseError):
        return True
    return False


class ObjectStore:
    """A thin, typed face over one S3 endpoint (bucket names come from the configuration)."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, *, secure: bool = False,
                 region: str = "us-east-1", buckets: dict[str, str] | None = None,
                 retries: int = 3) -> None:
        if "://" in endpoint:  # accept http(s)://host:port as well as host:port
            parts = urlsplit(endpoint)
            secure = parts.scheme == "https"
            endpoint = parts.netloc
        self.endpoint = endpoint
        self.buckets = dict(buckets or config.DEFAULT_BUCKETS)
        # Short connect timeout and few retries: an outage should surface as
        # ObjectStoreUnavailable within seconds so callers (the front-end machine) can back off.
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5.0, read=120.0),
            maxsize=8,
            retries=urllib3.Retry(total=retries, backoff_factor=0.2,
                                  status_forcelist=[500, 502, 503, 504]),
        )
        self._client = Minio(endpoint, access_key=access_key, secret_key=secret_key,
                             secure=secure, region=region, http_client=self._http)

    @classmethod
    def from_config(cls, cfg: config.Config | None = None, *, retries: int = 3) -> ObjectStore:
        """The configured endpoint, or this home's embedded server when chosen (started if needed);
        :class:`~hqms.errors.UserError` when none is configured (fail closed, nothing lands).
        ``retries``: quick in-SDK retries; callers with their own backoff pass 0."""
        cfg = cfg or config.load()
        cfg.require_s3()
        if cfg.embedded_s3:
            from hqms import embedded_s3

            endpoint, access, secret = embedded_s3.ensure_running(cfg)
            return cls(endpoint, access, secret, region=cfg.s3_region, buckets=cfg.buckets,
                       retries=retries)
        return cls(cfg.s3_endpoint or "", cfg.s3_access_key or "", cfg.s3_secret_key or "",
                   secure=cfg.s3_secure, region=cfg.s3_region, buckets=cfg.buckets,
                   retries=retries)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn "server down" failures into :class:`ObjectStoreUnavailable`."""
        try:
            yield
        except Exception as exc:
            if _unavailable(exc):
                raise ObjectStoreUnavailable(f"object store {self.endpoint} unavailable: "
                                             f"{type(exc).__name__}: {exc}") from exc
            raise

    def _call(self, fn, *args, **kwargs):
        with self._guard():
            return fn(*args, **kwargs)

    def ensure_buckets(self) -> None:
        """Create the landing, vault and marts buckets when missing (idempotent, race-safe)."""
        for name in self.buckets.values():
            if self._call(self._client.bucket_exists, name):
                continue
            try:
                self._call(self._client.make_bucket, name)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def put_file(self, bucket: str, key: str, path: Path | str,
                 metadata: dict[str, str] | None = None) -> ObjectInfo:
        path = Path(path)
        size = path.stat().st_size
        with path.open("rb") as fh:
            return self._put(bucket, key, fh, size, metadata)

    def put_bytes(self, bucket: str, key: str, data: bytes,
                  metadata: dict[str, str] | None = None) -> ObjectInfo:
        return self._put(bucket, key, io.BytesIO(data), len(data), metadata)

    def _put(self, bucket: str, key: str, stream, size: int,
             metadata: dict[str, str] | None) -> ObjectInfo:
        encoded = _encode_metadata(metadata)
        result = self._call(self._client.put_object, bucket, key, stream, size,
                            content_type="application/octet-stream", metadata=encoded,
                            part_size=PART_SIZE)
        return ObjectInfo(bucket, key, size, (result.etag or "").strip('"'),
                          {k: unquote(v) for k, v in encoded.items()})

    def get_file(self, bucket: str, key: str, path: Path | str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._call(self._client.fget_object, bucket, key, str(path))

    def get_bytes(self, bucket: str, key: str) -> bytes:
        response = self._call(self._client.get_object, bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        """The object's size, ETag and user metadata; None when it does not exist."""
        try:
            st = self._call(self._client.stat_object, bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound", "ResourceNotFound"):
                return None
            raise
        return ObjectInfo(bucket, key, int(st.size or 0), (st.etag or "").strip('"'),
                          _decode_metadata(st.metadata))

    def sha256(self, bucket: str, key: str) -> str:
        """SHA-256 of the stored bytes, streamed: proves what the server holds before deletes."""
        digest = hashlib.sha256()
        response = self._call(self._client.get_object, bucket, key)
        try:
            with self._guard():
                for chunk in response.stream(CHUNK):
                    digest.update(chunk)
        finally:
            response.close()
            response.release_conn()
        return digest.hexdigest()

    def delete(self, bucket: str, key: str) -> None:
        self._call(self._client.remove_object, bucket, key)

    def list_modified(self, bucket: str, prefix: str = "") -> Iterator[tuple[str, datetime]]:
        """(key, last modified) under ``prefix``: how old an object is, e.g. to tell one a
        submit is recording right now from one nobody recorded (hqms.recover)."""
        with self._guard():
            for obj in self._client.list_objects(bucket, prefix=prefix, recursive=True):
                yield obj.object_name, obj.last_modified

    def list(self, bucket: str, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix`` (recursive), in the server's (lexicographic) order."""
        with self._guard():
            for obj in self._client.list_objects(bucket, prefix=prefix, recursive=True):
                yield obj.object_name
