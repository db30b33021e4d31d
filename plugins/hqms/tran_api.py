"""The front-end machine's (前置机) side of the JSON API: ``hqms tran`` with ``HQMS_SERVER_URL``.

A hospital's front-end machine then holds only its account's API token (``HQMS_SERVER_TOKEN``,
``hqms accounts token create``) — no S3, registry or warehouse credentials. The calls it needs:

* ``GET /api/v1/me`` — whose token this is (the org must be the one ``--org`` names);
* ``GET /api/v1/uploads?sha256=…`` — the org's accepted upload of a bundle's bytes (adopted
  after a crash, never re-sent);
* ``POST /api/v1/uploads`` with ``Idempotency-Key: <sha256>`` — a repeat of an accepted bundle
  answers the existing upload instead of recording a duplicate;
* ``GET /api/v1/uploads/{id}`` — the record the originals are deleted against.

A network failure or a 5xx is :class:`ServerUnavailable` (an ``ObjectStoreUnavailable``, so the
front-end machine's retry-with-backoff path handles it unchanged: nothing is deleted).
"""
from __future__ import annotations

from pathlib import Path

import httpx

from hqms import config
from hqms.errors import UserError
from hqms.objectstore import ObjectStoreUnavailable
from hqms.registry import ACCEPTED


class ServerUnavailable(ObjectStoreUnavailable):
    """The server could not be reached or failed (5xx): try again later."""


class ServerRefused(UserError):
    """The server refused the token (401/403): a configuration problem, not a transient one
    (the command stops with the reason; nothing is deleted)."""


class ApiChannel:
    """A small client of the hospital service's API, authenticated by one account token."""

    def __init__(self, base_url: str, token: str, timeout: float = 120.0) -> None:
        self.client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout,
                                   headers={"Authorization": f"Bearer {token}"})

    @classmethod
    def from_config(cls, cfg: config.Config) -> ApiChannel:
        if not cfg.server_token:
            raise ServerRefused("HQMS_SERVER_URL is set but HQMS_SERVER_TOKEN is not / 未配置接口令牌")
        return cls(cfg.server_url or "", cfg.server_token)

    def _call(self, method: str, path: str, **kw) -> httpx.Response:
        try:
            answer = self.client.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"{self.client.base_url}: {exc.__class__.__name__}: {exc}") from exc
        if answer.status_code in (401, 403):
            raise ServerRefused(f"the server refused the token ({answer.status_code}) / 接口令牌无效或已吊销")
        if answer.status_code >= 500:
            raise ServerUnavailable(f"{self.client.base_url}: HTTP {answer.status_code}")
        return answer

    def me(self) -> dict:
        return self._call("GET", "/api/v1/me").json()

    def find_accepted(self, sha256: str) -> dict | None:
        """The caller's accepted upload of exactly these bytes, if any."""
        items = self._call("GET", "/api/v1/uploads", params={"sha256": sha256, "size": 50}).json()["items"]
        return next((u for u in items if u["status"] in ACCEPTED), None)

    def get(self, upload_id: str) -> dict | None:
        answer = self._call("GET", f"/api/v1/uploads/{upload_id}")
        return answer.json() if answer.status_code == 200 else None

    def send(self, bundle: Path, stream: str, sha256: str) -> dict:
        """Post the bundle (channel ``tran``); the answer's status, message and upload id."""
        with bundle.open("rb") as fh:
            answer = self._call("POST", "/api/v1/uploads", headers={"Idempotency-Key": sha256},
                                data={"stream": stream, "channel": "tran"},
                                files={"file": (bundle.name, fh, "application/zip")})
        data = answer.json()
        if answer.status_code == 413:  # refused before intake: no record, report it as a refusal
            data.setdefault("upload_id", None)
        elif answer.status_code not in (200, 422):
            raise ServerUnavailable(f"unexpected answer {answer.status_code}: {data}")
        return data

    def verified(self, upload_id: str, sha256: str, size: int) -> bool:
        """The server's record holds exactly these bytes, accepted (a duplicate: its original)."""
        record = self.get(upload_id)
        if record and record["status"] == "duplicate" and record["duplicate_of"]:
            record = self.get(record["duplicate_of"])
        if record is None or record["sha256"] != sha256 or record["size_bytes"] != size:
            return False
        return record["stage"] != "intake" or record["status"] in ACCEPTED
