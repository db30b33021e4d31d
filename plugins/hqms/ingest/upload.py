"""The types the ingest's busiest path carries: an upload, a fetched upload, a round and what
each upload came to.

The registry hands out rows as dicts (its columns are many and most are the registry's own
bookkeeping); the ingest reads only the few fields below, so it converts each claimed row once
(:meth:`Upload.from_row`) and from then on a misspelt field is an AttributeError at the first
run, not a KeyError in the middle of a round.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hqms import config as hqms_config

if TYPE_CHECKING:  # annotations only: merge and process import this module
    from hqms.ingest.merge import FileResult
    from hqms.ingest.validate import ValidationReport
    from hqms.keys import Keyring
    from hqms.objectstore import ObjectStore
    from hqms.registry import Registry


@dataclass(frozen=True)
class Upload:
    """The fields of a claimed registry row the ingest uses."""

    upload_id: str
    stream: str
    org_code: str
    file_name: str
    sha256: str
    size_bytes: int
    received_at: str          # ISO 8601 with offset, as the registry stores it
    object_key: str           # of the landing object
    channel: str | None = None
    suspect: int = 0          # >0: in flight with this many when a run died (run in halves)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Upload:
        return cls(upload_id=row["upload_id"], stream=row["stream"], org_code=row["org_code"],
                   file_name=row["file_name"], sha256=row["sha256"], size_bytes=int(row["size_bytes"]),
                   received_at=row["received_at"], object_key=row["object_key"],
                   channel=row.get("channel"), suspect=int(row.get("suspect") or 0))

    def as_row(self) -> dict[str, Any]:
        """The record form :mod:`hqms.vault` takes (it also serves recovery and operators' tools,
        which hold registry rows)."""
        return asdict(self)

    @property
    def received_day(self) -> date:
        """The day it was received, in China: what "received on the due day" means."""
        return datetime.fromisoformat(self.received_at).astimezone(hqms_config.CHINA_TZ).date()


@dataclass(frozen=True)
class Fetched:
    """An upload whose original is verified and vaulted, and its local copy."""

    upload: Upload
    path: Path


@dataclass(frozen=True)
class Batch:
    """What every round of one batch shares: settings, services and the run's id."""

    cfg: hqms_config.Config
    registry: Registry
    store: ObjectStore
    keyring: Keyring
    run_id: str


@dataclass(frozen=True)
class Round:
    """Uploads staged, validated and merged together, and the folder for their plaintext."""

    round_id: str
    items: list[Fetched]
    work: Path

    @property
    def upload_ids(self) -> list[str]:
        return [f.upload.upload_id for f in self.items]


@dataclass
class UploadResult:
    """What one upload of a round came to: its report, the decision, the merged files."""

    upload: Upload
    report: ValidationReport
    status: str
    message: tuple[str, str]                  # (zh, en), what its data manager reads
    files: list[FileResult] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return sum(1 for e in self.report.errors if e.severity == "error")
