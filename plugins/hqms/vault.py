"""Encrypted archive of original uploads: the only place a hospital's plaintext zip survives.

Why: the warehouse keeps only de-identified rows, yet an authorised investigation may need the
exact file a hospital sent. So before the plaintext landing object is deleted, the zip is
encrypted with a fresh SM4 data key (SM4-GCM, additional data = upload id, so a ciphertext
cannot be passed off as another upload), the data key is wrapped with the vault's SM2 *public*
key, and both go to bucket ``cfg.buckets["vault"]``:

    <stream>/<org_code>/<yyyy>/<mm>/<upload_id>.zip.sm4          nonce || ciphertext || tag
    <stream>/<org_code>/<yyyy>/<mm>/<upload_id>.manifest.json    how to decrypt and check it

(``yyyy/mm`` = month received, China Standard Time like the landing keys.) The pipeline cannot
read the vault back: only the holder of the SM2 private key can (``hqms vault decrypt``).

:func:`store_original` returns only after the object is *verified* (size by stat, SHA-256 of the
bytes the server returns) and the manifest reads back identically; the manifest is written
last, so a manifest means a complete copy. Re-running it for a stored upload writes nothing.
"""
from __future__ import annotations

import argparse
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from hqms import config, crypto
from hqms.errors import UserError
from hqms.keys import Keyring, load_keyring
from hqms.objectstore import ObjectStore

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "hqms-vault/1"
DATA_SUFFIX = ".zip.sm4"
MANIFEST_SUFFIX = ".manifest.json"


class VaultError(Exception):
    """The vault copy is missing, does not verify, or cannot be decrypted with what was given."""


@dataclass(frozen=True)
class VaultRecord:
    """Where an upload's encrypted original lives and what it must hash to."""

    upload_id: str
    bucket: str
    object_key: str
    manifest_key: str
    plaintext_sha256: str
    plaintext_size: int
    ciphertext_sha256: str
    ciphertext_size: int
    wrap_key_id: str
    written: bool  # False when an existing verified copy was found


def vault_keys(upload: dict) -> tuple[str, str]:
    """(object key, manifest key) of an upload: ``<stream>/<org>/<yyyy>/<mm>/<upload_id>…``."""
    for name in ("upload_id", "stream", "org_code", "received_at"):
        if not upload.get(name):
            raise VaultError(f"upload record lacks {name!r}; cannot place it in the vault")
    received = upload["received_at"]
    received = received if isinstance(received, datetime) else datetime.fromisoformat(received)
    if received.tzinfo is None:
        raise VaultError(f"upload {upload['upload_id']}: received_at has no time zone")
    month = received.astimezone(config.CHINA_TZ)
    base = f"{upload['stream']}/{upload['org_code']}/{month:%Y}/{month:%m}/{upload['upload_id']}"
    return base + DATA_SUFFIX, base + MANIFEST_SUFFIX


def _aad(upload_id: str) -> bytes:
    return upload_id.encode("ascii")


def _read_manifest(store: ObjectStore, bucket: str, key: str) -> dict | None:
    if store.stat(bucket, key) is None:
        return None
    try:
        manifest = json.loads(store.get_bytes(bucket, key))
    except ValueError:
        raise VaultError(f"vault manifest {bucket}/{key} is not valid JSON (corrupted)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise VaultError(f"{bucket}/{key} is not an HQMS vault manifest ({MANIFEST_FORMAT})")
    return manifest


def _record(manifest: dict, bucket: str, manifest_key: str, written: bool) -> VaultRecord:
    return VaultRecord(manifest["upload_id"], bucket, manifest["object_key"], manifest_key,
                       manifest["plaintext_sha256"], manifest["plaintext_size"],
                       manifest["ciphertext_sha256"], manifest["ciphertext_size"],
                       manifest["wrap_key_id"], written)


def _object_problem(store: ObjectStore, bucket: str, key: str, size: int, sha256: str) -> str | None:
    """Why the stored object is not the expected one, or None if it verifies."""
    info = store.stat(bucket, key)
    if info is None:
        return "object is missing"
    if info.size != size:
        return f"size {info.size} instead of {size}"
    actual = store.sha256(bucket, key)
    if actual != sha256:
        return f"sha256 {actual} instead of {sha256}"
    return None


def _verified(store: ObjectStore, cfg: config.Config, upload_id: str) -> tuple[dict, VaultRecord]:
    bucket = cfg.buckets["vault"]
    manifest_key = find_manifest(store, cfg, upload_id)
    manifest = _read_manifest(store, bucket, manifest_key)
    if manifest is None:
        raise VaultError(f"vault manifest of {upload_id} disappeared while reading it")
    record = _record(manifest, bucket, manifest_key, written=False)
    problem = _object_problem(store, bucket, record.object_key, record.ciphertext_size,
                              record.ciphertext_sha256)
    if problem:
        raise VaultError(f"vault copy of {upload_id} does not verify ({bucket}/{record.object_key}: "
                         f"{problem})")
    return manifest, record


def verify(store: ObjectStore, cfg: config.Config, upload_id: str) -> VaultRecord:
    """Check an upload's vault copy against its manifest (needs no key); raises VaultError."""
    return _verified(store, cfg, upload_id)[1]


def store_original(store: ObjectStore, cfg: config.Config, upload: dict, local_zip: Path,
                   keyring: Keyring | None = None) -> VaultRecord:
    """Encrypt ``local_zip`` into the vault and verify it; only then may the landing copy go.

    ``upload`` is the registry record (upload_id, stream, org_code, received_at; sha256 and
    file_name when known — a sha256 that does not match ``local_zip`` is refused).
    """
    local_zip = Path(local_zip)
    upload_id = upload["upload_id"]
    bucket = cfg.buckets["vault"]
    object_key, manifest_key = vault_keys(upload)

    existing = _read_manifest(store, bucket, manifest_key)
    if existing is not None:
        record = _record(existing, bucket, manifest_key, written=False)
        if upload.get("sha256") and upload["sha256"] != record.plaintext_sha256:
            raise VaultError(f"vault already holds a different file for {upload_id}; not replacing it")
        problem = _object_problem(store, bucket, object_key, record.ciphertext_size,
                                  record.ciphertext_sha256)
        if problem is None:
            log.info("vault: %s already stored and verified", upload_id)
            return record
        log.warning("vault: stored copy of %s does not verify (%s); writing it again", upload_id, problem)

    wrap_key = (keyring or load_keyring(cfg)).vault_public_key()
    data_key = crypto.generate_sm4_key()
    encrypted = local_zip.with_name(f".{local_zip.name}.{secrets.token_hex(4)}.sm4")
    try:
        digest = crypto.encrypt_file(data_key, local_zip, encrypted, _aad(upload_id))
        if upload.get("sha256") and upload["sha256"] != digest.plaintext_sha256:
            raise VaultError(f"{local_zip} is not the file recorded for {upload_id} (sha256 differs)")
        store.put_file(bucket, object_key, encrypted,
                       metadata={"upload_id": upload_id, "sha256": digest.ciphertext_sha256})
    finally:
        encrypted.unlink(missing_ok=True)
    problem = _object_problem(store, bucket, object_key, digest.ciphertext_size,
                              digest.ciphertext_sha256)
    if problem:
        raise VaultError(f"vault write of {upload_id} did not verify ({problem}); keep the landing copy")

    manifest = {
        "format": MANIFEST_FORMAT,
        "upload_id": upload_id,
        "org_code": upload["org_code"],
        "stream": upload["stream"],
        "file_name": upload.get("file_name"),
        "received_at": upload["received_at"],
        "object_key": object_key,
        "plaintext_sha256": digest.plaintext_sha256,
        "plaintext_size": digest.plaintext_size,
        "ciphertext_sha256": digest.ciphertext_sha256,
        "ciphertext_size": digest.ciphertext_size,
        "cipher_suite": {"data": crypto.SUITE_DATA, "key_wrap": crypto.SUITE_KEY_WRAP,
                         "digest": crypto.SUITE_DIGEST, "aad": "upload_id (ASCII)"},
        "wrapped_key": crypto.sm2_wrap(wrap_key.public_hex, data_key).hex(),
        "wrap_key_id": wrap_key.key_id,
        "wrap_public_key": wrap_key.public_hex,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    body = (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    store.put_bytes(bucket, manifest_key, body, metadata={"upload_id": upload_id})
    if store.get_bytes(bucket, manifest_key) != body:
        raise VaultError(f"vault manifest of {upload_id} did not read back; keep the landing copy")
    log.info("vault: stored %s as %s/%s (wrap key %s)", upload_id, bucket, object_key, wrap_key.key_id)
    return _record(manifest, bucket, manifest_key, written=True)


def find_manifest(store: ObjectStore, cfg: config.Config, upload_id: str) -> str:
    """The manifest key of ``upload_id``, found in the vault bucket itself.

    The registry (when it knows the upload) gives the exact key; otherwise the bucket is listed,
    so a restore works from the vault alone (e.g. a registry restored from an older backup).
    """
    bucket = cfg.buckets["vault"]
    try:
        from hqms.registry import Registry

        upload = Registry.from_config(cfg).get(upload_id)
    except Exception as exc:  # noqa: BLE001 — the registry is a shortcut, not a requirement
        log.debug("vault: registry lookup of %s failed (%s); listing the bucket", upload_id, exc)
        upload = None
    if upload and upload.get("stream"):
        _, key = vault_keys(upload)
        if store.stat(bucket, key) is not None:
            return key
    suffix = f"/{upload_id}{MANIFEST_SUFFIX}"
    for key in store.list(bucket):
        if key.endswith(suffix):
            return key
    raise VaultError(f"no vault copy of upload {upload_id} in bucket {bucket}")


def restore(store: ObjectStore, cfg: config.Config, upload_id: str, private_key_hex: str,
            out: Path) -> VaultRecord:
    """Decrypt an upload's original zip to ``out``; every check must pass before ``out`` exists."""
    out = Path(out)
    manifest, record = _verified(store, cfg, upload_id)
    try:
        public = crypto.sm2_public_from_private(private_key_hex)
    except crypto.CryptoError as exc:
        raise VaultError(f"private key: {exc}") from None
    if public != manifest.get("wrap_public_key"):
        raise VaultError(f"this private key does not belong to vault key {record.wrap_key_id}, "
                         f"which wrapped upload {upload_id}")
    try:
        data_key = crypto.sm2_unwrap(private_key_hex, bytes.fromhex(manifest["wrapped_key"]))
    except (crypto.CryptoError, ValueError) as exc:
        raise VaultError(f"cannot unwrap the data key of {upload_id}: {exc}") from None
    config.private_umask()  # the plaintext zip (and its partial) is 0600 from its first byte
    out.parent.mkdir(parents=True, exist_ok=True)
    downloaded = out.with_name(f".{out.name}.{secrets.token_hex(4)}.sm4")
    try:
        store.get_file(record.bucket, record.object_key, downloaded)
        try:
            result = crypto.decrypt_file(data_key, downloaded, out, _aad(upload_id))
        except crypto.DecryptionError as exc:
            raise VaultError(f"vault object of {upload_id} failed authentication: {exc}") from None
    finally:
        downloaded.unlink(missing_ok=True)
    if result.plaintext_sha256 != record.plaintext_sha256:
        out.unlink(missing_ok=True)
        raise VaultError(f"restored file's sha256 differs from the manifest for {upload_id}")
    out.chmod(0o600)
    return record


# --------------------------------------------------------------------------- CLI

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vault", help="encrypted originals: verify or decrypt an upload's zip")
    actions = p.add_subparsers(dest="vault_command", required=True, metavar="ACTION")
    dec = actions.add_parser("decrypt", help="decrypt an upload's original zip (needs the SM2 private key)")
    dec.add_argument("upload_id")
    dec.add_argument("--private-key", required=True, type=Path,
                     help="file holding the vault SM2 private key (64 hex digits)")
    dec.add_argument("--out", required=True, type=Path, help="where to write the zip")
    dec.set_defaults(func=_cli_decrypt)
    ver = actions.add_parser("verify", help="check an upload's vault copy against its manifest (no key)")
    ver.add_argument("upload_id")
    ver.set_defaults(func=_cli_verify)


def read_private_key_file(path: Path) -> str:
    """The SM2 private key hex an investigator passes with ``--private-key`` (the error names
    the file and the problem, never the content)."""
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read private key file {path}: {type(exc).__name__}") from None


def _cli_decrypt(args: argparse.Namespace) -> int:
    private_hex = read_private_key_file(args.private_key)
    if args.out.exists():
        raise UserError(f"{args.out} exists; not overwriting it")
    cfg = config.load()
    try:
        record = restore(ObjectStore.from_config(cfg), cfg, args.upload_id, private_hex, args.out)
    except VaultError as exc:
        raise UserError(str(exc)) from None
    print(f"{args.out}  ({record.plaintext_size} bytes, sha256 {record.plaintext_sha256} verified)")
    return 0


def _cli_verify(args: argparse.Namespace) -> int:
    cfg = config.load()
    try:
        record = verify(ObjectStore.from_config(cfg), cfg, args.upload_id)
    except VaultError as exc:
        raise UserError(str(exc)) from None
    print(f"{record.bucket}/{record.object_key}: verified ({record.ciphertext_size} bytes, "
          f"wrap key {record.wrap_key_id})")
    return 0
