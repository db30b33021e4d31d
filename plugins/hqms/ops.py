"""Operations commands (docs/operations.md): reprocess an upload (from landing, or from its vault
original), re-register what a lost registry forgot, and rebuild marts for a date range or a month.

Why these exist: after a rule fix or a key rotation the data team must be able to run an upload
again exactly as the hospital sent it — the plaintext is gone from landing by design, so the only
source is the encrypted vault, opened with the SM2 private key the investigators hold. The
restored bytes must hash to what intake recorded before anything is re-landed; ingest then
replaces the upload's own rows (never doubles them), so a reprocess is safe to repeat.

Key rotation is ``hqms keys rotate|activate|retire`` (docs/keys.md); nothing here duplicates it.
"""
from __future__ import annotations

import argparse
import calendar
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from hqms import config
from hqms.errors import UserError
from hqms.workdir import run_folder

#: States an upload can be reprocessed from: it was landed once (so the vault holds it).
REPROCESSABLE = ("processed", "partially_accepted", "rejected", "processing", "landed", "failed")


@dataclass(frozen=True)
class Reprocessed:
    upload_id: str
    object_key: str
    size_bytes: int
    previous_status: str


def reprocess(upload_id: str, private_key_hex: str | None, cfg: config.Config | None = None) -> Reprocessed:
    """Land ``upload_id``'s original again, verified, and mark it ``landed`` (failures cleared).

    Without a private key the plaintext landing object is used while it is still there (a
    ``failed`` upload keeps it until it is processed): no offline key is needed to retry what
    crashed. With the key (or when landing no longer holds it) the vault original is restored
    and re-landed. Either way the bytes must hash to what intake recorded. The next
    ``hqms_ingest`` run (or ``hqms ingest ID``) processes it again.
    """
    from hqms.objectstore import ObjectStore
    from hqms.registry import Registry

    cfg = cfg or config.load()
    registry = Registry.from_config(cfg)
    upload = registry.get(upload_id)
    if upload is None:
        raise UserError(f"unknown upload {upload_id} (if the registry was lost, run `hqms registry recover` first)")
    if upload["status"] not in REPROCESSABLE or not upload.get("object_key"):
        raise UserError(f"upload {upload_id} is {upload['status']} at {upload['stage']}: it was never "
                        "landed, so there is no original to reprocess")
    store = ObjectStore.from_config(cfg)
    bucket = cfg.buckets["landing"]
    if private_key_hex is None:
        if store.stat(bucket, upload["object_key"]) is None:
            raise UserError(f"the landing copy of {upload_id} is gone (it was processed); restore it from "
                            "the vault with --private-key")
        if store.sha256(bucket, upload["object_key"]) != upload["sha256"]:
            raise UserError(f"the landing copy of {upload_id} does not match the sha256 recorded at intake; "
                            "restore it from the vault with --private-key")
        zh, en = "运维重新处理：使用仍在接收区的原始文件", "reprocess requested: the original still in landing is used"
    else:
        _reland_from_vault(store, cfg, upload, private_key_hex)
        zh, en = "运维重新处理：已从加密存档恢复原始文件", "reprocess requested: original restored from the vault"
    registry.reset_for_reprocess(upload_id, message_zh=zh, message_en=en)
    return Reprocessed(upload_id, upload["object_key"], int(upload["size_bytes"]), upload["status"])


def _reland_from_vault(store, cfg: config.Config, upload: dict, private_key_hex: str) -> None:
    """Decrypt the vault original (plaintext only in a private run folder) and land it, verified."""
    from hqms import vault
    from hqms.intake.zipcheck import sha256_file

    upload_id = upload["upload_id"]
    with run_folder(cfg, f"reprocess-{upload_id}") as work:  # the decrypted original is plaintext
        local = work / "original.zip"
        try:
            vault.restore(store, cfg, upload_id, private_key_hex, local)
        except vault.VaultError as exc:
            raise UserError(str(exc)) from None
        if sha256_file(local) != upload["sha256"]:
            raise UserError(f"the vault original of {upload_id} does not match the sha256 recorded "
                            "at intake; not re-landing it")
        bucket = cfg.buckets["landing"]
        store.put_file(bucket, upload["object_key"], local)
        if store.sha256(bucket, upload["object_key"]) != upload["sha256"]:
            raise UserError(f"re-landed object of {upload_id} does not verify; try again")


# --------------------------------------------------------------------------- marts backfill

def parse_month(text: str) -> tuple[date, date]:
    """``YYYY-MM`` → first and last day of that month."""
    try:
        year, month = (int(part) for part in text.split("-"))
        first = date(year, month, 1)
    except ValueError:
        raise UserError(f"month must be YYYY-MM, not {text!r}") from None
    return first, first.replace(day=calendar.monthrange(year, month)[1])


def selections_for(date_from: date, date_to: date) -> tuple[str, ...]:
    """Which mart selections cover a period: daily marts always; the monthly ones as well, since
    every range lies in at least one month whose outpatient and timeliness marts it touches."""
    if date_from > date_to:
        raise UserError(f"--from {date_from} is after --to {date_to}")
    if date_from > date.today():
        raise UserError(f"--from {date_from} is in the future")
    return ("daily", "monthly")


def backfill(date_from: date, date_to: date, cfg: config.Config | None = None,
             publish: bool = True) -> list[str]:
    """Re-run the marts for a period: a full refresh of the selections that cover it, then publish.

    The incremental marts rebuild only periods touched since their previous build (plus the
    lookback), so a backfill of an older period must rebuild them from the warehouse; the result
    equals an incremental history because the marts are pure functions of the warehouse.
    """
    from hqms.marts import dbt

    built = []
    for selection in selections_for(date_from, date_to):
        try:
            dbt.build(selection, full_refresh=True, cfg=cfg)
        except dbt.DbtError as exc:
            raise UserError(str(exc)) from exc
        built.append(selection)
    if publish:
        from hqms.marts import publish as publisher

        publisher.publish()
    return built


# --------------------------------------------------------------------------- CLI

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reprocess", help="restore an upload's original from the vault and land it again")
    p.add_argument("upload_id")
    p.add_argument("--private-key", type=Path,
                   help="file holding the vault SM2 private key (64 hex digits); without it the "
                        "original still in landing is used (a failed upload keeps it)")
    p.set_defaults(func=_cli_reprocess)

    r = sub.add_parser("registry", help="registry loss: list or re-register uploads the registry does not know")
    verbs = r.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    verbs.add_parser("orphans", help="landing objects and vault copies the registry does not know "
                                     "(exit 1 if any)").set_defaults(func=_cli_orphans)
    rec = verbs.add_parser("recover", help="re-register them from S3 metadata, vault manifests and "
                                           "the warehouse's ops records")
    rec.add_argument("--dry-run", action="store_true", help="show what would be registered")
    rec.set_defaults(func=_cli_recover)

    b = sub.add_parser("backfill", help="rebuild and publish the marts for a date range or a month")
    period = b.add_mutually_exclusive_group(required=True)
    period.add_argument("--from", dest="date_from", type=date.fromisoformat, help="first day (YYYY-MM-DD)")
    period.add_argument("--month", help="one month (YYYY-MM): the monthly rebuild")
    b.add_argument("--to", dest="date_to", type=date.fromisoformat, help="last day (YYYY-MM-DD)")
    b.add_argument("--no-publish", action="store_true", help="build only; publish later")
    b.set_defaults(func=_cli_backfill)


def _cli_reprocess(args: argparse.Namespace) -> int:
    from hqms.vault import read_private_key_file

    key = read_private_key_file(args.private_key) if args.private_key else None
    done = reprocess(args.upload_id, key)
    source = "restored from the vault and landed again" if key else "still in landing, verified"
    print(f"{done.upload_id}: was {done.previous_status}; original {source} ({done.size_bytes} bytes); "
          "the next hqms_ingest run processes it")
    return 0


def _cli_orphans(args: argparse.Namespace) -> int:
    from hqms import recover
    from hqms.objectstore import ObjectStore
    from hqms.registry import Registry

    cfg = config.load()
    orphans = recover.find_orphans(cfg, ObjectStore.from_config(cfg), Registry.from_config(cfg).known,
                                   vault=True)
    for orphan in orphans:
        print(f"{orphan.upload_id}\t{orphan.bucket}\t{orphan.key}")
    print(f"{len(orphans)} object(s) the registry does not know"
          + ("; run `hqms registry recover`" if orphans else ""))
    return 1 if orphans else 0


def _cli_recover(args: argparse.Namespace) -> int:
    from hqms import recover

    done = recover.recover(dry_run=args.dry_run)
    for item in done:
        print(f"{item.upload_id}\t{item.status}\t{item.source}")
    verb = "would be re-registered" if args.dry_run else "re-registered"
    print(f"{len(done)} upload(s) {verb}"
          + ("; landed ones are processed by the next hqms_ingest run" if done and not args.dry_run else ""))
    return 0


def _cli_backfill(args: argparse.Namespace) -> int:
    if args.month:
        date_from, date_to = parse_month(args.month)
    else:
        if args.date_to is None:
            raise UserError("--from needs --to")
        date_from, date_to = args.date_from, args.date_to
    built = backfill(date_from, date_to, publish=not args.no_publish)
    print(f"marts rebuilt for {date_from} … {date_to}: {', '.join(built)}"
          + ("" if args.no_publish else "; published"))
    return 0
