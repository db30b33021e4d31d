"""Key management: the keyring (pseudonym, field and vault keys) comes from configuration.

Keys never live in code, in the :class:`hqms.config.Config` object (which gets printed), in logs
or in Airflow XComs. Each process loads them itself with :func:`load_keyring`:

* the keyring file ``$HQMS_KEYS_DIR/keyring.json`` (or ``$HQMS_KEYRING_FILE``), mode 0600, with
  one or more *versions* per purpose and one ``active`` version each;
* environment overrides ``HQMS_KEY_PATIENT`` / ``HQMS_KEY_RECORD`` / ``HQMS_KEY_FIELD`` (hex,
  optionally ``<key_id>:<hex>``) and ``HQMS_VAULT_PUBLIC_KEY`` (SM2 public point hex): an
  override becomes the active version; versions from the file stay readable.

Purposes: ``patient`` (HMAC-SM3 of normalised ID numbers, links a person across hospitals),
``record`` (HMAC-SM3 of record ids salted by the org code), ``field`` (SM4-GCM key for the
identifier ciphertext investigators may decrypt), ``vault`` (SM2 *public* key that wraps the
per-upload data keys of archived zips). The SM2 private key is not in the keyring.

:func:`load_keyring` never invents keys: missing keys are an error that says how to provision
them. Only :func:`ensure_demo_keys` generates keys (first local run; never overwrites). See
docs/keys.md for rotation.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from hqms import config, crypto
from hqms.errors import UserError
from hqms.filelock import exclusive

log = logging.getLogger(__name__)

SECRET_PURPOSES = ("patient", "record", "field")
VAULT = "vault"
PURPOSES = (*SECRET_PURPOSES, VAULT)
#: Generated key sizes; HMAC keys are SM3-output sized, the field key is an SM4 key.
KEY_BYTES = {"patient": 32, "record": 32, "field": crypto.SM4_KEY_BYTES}
MIN_HMAC_KEY_BYTES = 16
ENV_OVERRIDES = config.KEY_OVERRIDE_VARS
KEYRING_FILE_ENV = "HQMS_KEYRING_FILE"
KEYRING_FORMAT = "hqms-keyring/1"
PRIVATE_KEY_FILENAME = "vault_sm2_private.hex"
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

_DEMO_README = """\
DEMO KEYS — NOT FOR PRODUCTION

keyring.json            pseudonym keys (patient, record), field key, vault SM2 public key.
vault_sm2_private.hex   SM2 PRIVATE key that unwraps every archived upload in the vault.

The private key is here only so a laptop demo can run `hqms vault decrypt`. In production it is
generated and kept OFFLINE by the investigators (see docs/keys.md); the pipeline only ever
needs the public key (HQMS_VAULT_PUBLIC_KEY). Anyone holding this file and read access to the
vault bucket can read every original upload.
"""


class KeyringError(UserError):
    """Keys missing, malformed or unsafely stored: fixable by whoever provisions the keys."""


class Key(bytes):
    """One key version: the key material itself (a ``bytes`` value, so it goes straight into
    :mod:`hqms.crypto`), labelled with purpose and id, that never shows itself in ``repr``/``str``
    (and so in logs or tracebacks) and refuses to be pickled (XCom, multiprocessing)."""

    purpose: str
    key_id: str
    created_at: str | None
    source: str  # file | env

    def __new__(cls, purpose: str, key_id: str, material: bytes, created_at: str | None = None,
                source: str = "file") -> Key:
        self = super().__new__(cls, material)
        self.__dict__.update(purpose=purpose, key_id=key_id, created_at=created_at, source=source)
        return self

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Key is immutable")

    def __repr__(self) -> str:
        return (f"Key(purpose={self.purpose!r}, key_id={self.key_id!r}, "
                f"material=<{len(self)} bytes hidden>, source={self.source!r})")

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("hqms key objects cannot be pickled; load the keyring in each process")

    def __reduce_ex__(self, protocol):
        return self.__reduce__()

    @property
    def public_hex(self) -> str:
        """The SM2 public point as hex (vault keys only: the only material that is not secret)."""
        if self.purpose != VAULT:
            raise KeyringError(f"{self.purpose} keys are secret; there is no public form")
        return self.hex()


@dataclass(frozen=True)
class _Versions:
    active: str
    keys: dict[str, Key] = field(default_factory=dict)


def key_id_for(purpose: str, material: bytes) -> str:
    """Deterministic id ``<purpose>-<8 hex>``: a keyed hash, so it reveals nothing of the key,
    and every process that is given the same env key derives the same id."""
    return f"{purpose}-{crypto.hmac_sm3(material, b'hqms key id').hex()[:8]}"


def _decode_material(purpose: str, text: str, where: str) -> bytes:
    """Validate hex key material for ``purpose``; errors name where it came from, never the value."""
    try:
        material = bytes.fromhex(text.strip())
    except ValueError:
        raise KeyringError(f"{where}: {purpose} key is not valid hex") from None
    if purpose == VAULT:
        try:
            return bytes.fromhex(crypto.sm2_public_point(material.hex()))
        except crypto.CryptoError as exc:
            raise KeyringError(f"{where}: {exc}") from None
    if purpose == "field" and len(material) != crypto.SM4_KEY_BYTES:
        raise KeyringError(f"{where}: field key must be {crypto.SM4_KEY_BYTES} bytes (SM4)")
    if purpose != "field" and len(material) < MIN_HMAC_KEY_BYTES:
        raise KeyringError(f"{where}: {purpose} key must be at least {MIN_HMAC_KEY_BYTES} bytes")
    return material


class Keyring:
    """Loaded keys: every version of every purpose, one active each. Holds no file handle."""

    def __init__(self, purposes: dict[str, _Versions], path: Path) -> None:
        self._purposes = purposes
        self.path = path

    def __repr__(self) -> str:
        active = ", ".join(f"{p}={v.active}" for p, v in self._purposes.items())
        return f"Keyring({self.path}, active: {active})"

    def __reduce__(self):
        raise TypeError("a Keyring cannot be pickled; load it in each process")

    def key(self, purpose: str, key_id: str | None = None) -> Key:
        """The active key of ``purpose``, or a specific version (to read older data)."""
        if purpose not in self._purposes:
            raise KeyringError(f"unknown key purpose {purpose!r} (expected one of {PURPOSES})")
        versions = self._purposes[purpose]
        wanted = key_id or versions.active
        if wanted not in versions.keys:
            raise KeyringError(f"{purpose} key {wanted!r} is not in the keyring "
                               f"(known: {', '.join(versions.keys)})")
        return versions.keys[wanted]

    def pseudonym_key(self, purpose: str, key_id: str | None = None) -> Key:
        """HMAC-SM3 key for ``patient`` or ``record`` pseudonyms."""
        if purpose not in ("patient", "record"):
            raise KeyringError(f"{purpose!r} is not a pseudonym purpose (patient | record)")
        return self.key(purpose, key_id)

    def field_key(self, key_id: str | None = None) -> tuple[str, Key]:
        """``(key_id, key)`` for identifier ciphertext: the arguments ``crypto.encrypt_array`` takes."""
        key = self.key("field", key_id)
        return key.key_id, key

    def field_keys(self) -> dict[str, Key]:
        """Every field key version by id, for ``crypto.decrypt_field``."""
        return dict(self._purposes["field"].keys)

    def vault_public_key(self, key_id: str | None = None) -> Key:
        """The SM2 public key that wraps vault data keys (``.public_hex``, ``.key_id``)."""
        return self.key(VAULT, key_id)

    def active_id(self, purpose: str) -> str:
        return self.key(purpose).key_id

    def key_ids(self, purpose: str) -> list[str]:
        self.key(purpose)  # validates the purpose
        return list(self._purposes[purpose].keys)

    def describe(self) -> dict[str, dict[str, object]]:
        """Ids, sources and dates only — safe to print."""
        return {p: {"active": v.active,
                    "versions": [{"key_id": k.key_id, "source": k.source, "created_at": k.created_at}
                                 for k in v.keys.values()]}
                for p, v in self._purposes.items()}


# --------------------------------------------------------------------------- locating and loading

def keyring_path(cfg: config.Config) -> Path:
    return cfg.keyring_file


def private_key_path(cfg: config.Config) -> Path:
    """Where the *demo* writes the SM2 private key (production keeps it offline)."""
    return cfg.keys_dir / PRIVATE_KEY_FILENAME


def _check_private_mode(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyringError(f"{path} is readable by other users (mode {mode:04o}); "
                           f"run: chmod 600 {path}")


def _read_file(path: Path) -> dict[str, _Versions]:
    _check_private_mode(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KeyringError(f"cannot read keyring {path}: {type(exc).__name__}") from None
    if not isinstance(data, dict) or data.get("format") != KEYRING_FORMAT:
        raise KeyringError(f"{path} is not an HQMS keyring (format {KEYRING_FORMAT!r} expected)")
    purposes: dict[str, _Versions] = {}
    for purpose, entry in (data.get("keys") or {}).items():
        if purpose not in PURPOSES:
            raise KeyringError(f"{path}: unknown key purpose {purpose!r}")
        keys = {}
        for key_id, version in (entry.get("versions") or {}).items():
            material = _decode_material(purpose, str(version.get("hex", "")),
                                        f"{path} ({purpose}/{key_id})")
            keys[key_id] = Key(purpose, key_id, material, version.get("created_at"), "file")
        if entry.get("active") not in keys:
            raise KeyringError(f"{path}: active {purpose} key {entry.get('active')!r} has no version")
        purposes[purpose] = _Versions(entry["active"], keys)
    return purposes


def _env_override(cfg: config.Config, purpose: str) -> Key | None:
    name = ENV_OVERRIDES[purpose]
    raw = (cfg.key_overrides.get(purpose) or "").strip()
    if not raw:
        return None
    key_id, sep, text = raw.partition(":")
    if not sep:
        key_id, text = "", raw
    material = _decode_material(purpose, text, f"${name}")
    if key_id and not _KEY_ID.match(key_id):
        raise KeyringError(f"${name}: key id must match {_KEY_ID.pattern}")
    return Key(purpose, key_id or key_id_for(purpose, material), material, None, "env")


def _apply_override(purposes: dict[str, _Versions], key: Key) -> None:
    current = purposes.get(key.purpose)
    keys = dict(current.keys) if current else {}
    known = keys.get(key.key_id)
    if known is not None and bytes(known) != bytes(key):
        raise KeyringError(f"${ENV_OVERRIDES[key.purpose]}: key id {key.key_id!r} already names a "
                           "different key in the keyring file")
    keys[key.key_id] = known or key
    purposes[key.purpose] = _Versions(key.key_id, keys)


def load_keyring(cfg: config.Config | None = None) -> Keyring:
    """File plus environment overrides; raises :class:`KeyringError` if any purpose is missing.

    Never generates keys: a production process with no keys must stop, not pseudonymise with
    keys nobody else has.
    """
    cfg = cfg or config.load()
    path = keyring_path(cfg)
    purposes = _read_file(path) if path.exists() else {}
    for purpose in PURPOSES:
        override = _env_override(cfg, purpose)
        if override is not None:
            _apply_override(purposes, override)
    missing = [p for p in PURPOSES if p not in purposes]
    if missing:
        env = ", ".join(ENV_OVERRIDES[p] for p in missing)
        raise KeyringError(
            f"keys missing for: {', '.join(missing)}. Looked in {path} "
            f"({'found' if path.exists() else 'absent'}) and ${env}. Production: provision them "
            "as described in docs/keys.md. Local demo: run `hqms keys init`.")
    return Keyring({p: purposes[p] for p in PURPOSES}, path)


# --------------------------------------------------------------------------- writing

def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _locked(directory: Path) -> contextlib.AbstractContextManager[None]:
    """Serialise keyring writers (parallel Airflow tasks may all run the demo bootstrap)."""
    return exclusive(directory / ".keyring.lock")


def _write_private(path: Path, text: str, *, replace: bool) -> None:
    """Write a 0600 file; without ``replace`` an existing file is an error (never overwritten)."""
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(partial, path)
        else:
            os.link(partial, path)  # atomic and fails if the target exists
    finally:
        partial.unlink(missing_ok=True)


def _serialise(purposes: dict[str, _Versions]) -> str:
    return json.dumps({
        "format": KEYRING_FORMAT,
        "keys": {p: {"active": v.active,
                     "versions": {kid: {"hex": k.hex(), "created_at": k.created_at}
                                  for kid, k in v.keys.items()}}
                 for p, v in purposes.items()},
    }, indent=2) + "\n"


def _new_secret(purpose: str) -> Key:
    material = secrets.token_bytes(KEY_BYTES[purpose])
    return Key(purpose, key_id_for(purpose, material), material, _now())


def _new_public(public_hex: str) -> Key:
    material = _decode_material(VAULT, public_hex, "vault public key")
    return Key(VAULT, key_id_for(VAULT, material), material, _now())


def ensure_demo_keys(cfg: config.Config | None = None) -> bool:
    """Create demo keys on the first local run; True if created, False if keys are provisioned.

    Idempotent and never overwrites: an existing keyring is left untouched, and a stray
    private key without a keyring is refused rather than replaced. When any key comes from the
    environment (``HQMS_KEY_*``, ``HQMS_VAULT_PUBLIC_KEY``) keys are being provisioned by
    configuration, so nothing is generated — above all no private key on a production host.
    """
    cfg = cfg or config.load()
    provisioned = [ENV_OVERRIDES[p] for p, raw in cfg.key_overrides.items() if (raw or "").strip()]
    if provisioned:
        log.info("keys provisioned via %s: no demo keys generated", ", ".join(provisioned))
        return False
    path = keyring_path(cfg)
    private_path = private_key_path(cfg)
    with _locked(cfg.keys_dir):
        if path.exists():
            return False
        if private_path.exists():
            raise KeyringError(f"{private_path} exists but {path} does not; refusing to generate "
                               "a new vault key pair over it (restore the keyring or move the file)")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        private_hex, public_hex = crypto.sm2_generate_keypair()
        vault = _new_public(public_hex)
        purposes = {key.purpose: _Versions(key.key_id, {key.key_id: key})
                    for key in (*map(_new_secret, SECRET_PURPOSES), vault)}
        _write_private(private_path, private_hex + "\n", replace=False)
        readme = cfg.keys_dir / "README.txt"
        if not readme.exists():
            readme.write_text(_DEMO_README, encoding="utf-8")
        _write_private(path, _serialise(purposes), replace=False)
    log.warning("generated DEMO keys in %s (vault key %s); production must provision keys "
                "and keep the SM2 private key offline, see docs/keys.md", cfg.keys_dir, vault.key_id)
    return True


def _edit_file(cfg: config.Config, change) -> str:
    """Apply ``change(purposes) -> message`` to the keyring file under the lock."""
    path = keyring_path(cfg)
    with _locked(cfg.keys_dir):
        if not path.exists():
            raise KeyringError(f"no keyring at {path}")
        purposes = _read_file(path)
        message = change(purposes)
        _write_private(path, _serialise(purposes), replace=True)
    return message


def add_key_version(cfg: config.Config, purpose: str, public_hex: str | None = None,
                    activate: bool = True) -> str:
    """Rotation step 1: add a new version (generated; for ``vault`` the given SM2 public key)."""
    if purpose not in PURPOSES:
        raise KeyringError(f"unknown key purpose {purpose!r}")
    if (purpose == VAULT) != (public_hex is not None):
        raise KeyringError("a vault key version needs --public-key (the private key stays offline); "
                           "other purposes are generated here")
    key = _new_public(public_hex) if public_hex is not None else _new_secret(purpose)

    def change(purposes: dict[str, _Versions]) -> str:
        current = purposes.get(purpose)
        keys = {**(current.keys if current else {}), key.key_id: key}
        active = key.key_id if activate or current is None else current.active
        purposes[purpose] = _Versions(active, keys)
        return key.key_id

    key_id = _edit_file(cfg, change)
    log.info("added %s key version %s (active: %s)", purpose, key_id, activate)
    return key_id


def activate_key_version(cfg: config.Config, purpose: str, key_id: str) -> None:
    """Make an existing version the active one (rotation after an ``--inactive`` add)."""
    def change(purposes: dict[str, _Versions]) -> str:
        current = purposes.get(purpose)
        if current is None or key_id not in current.keys:
            raise KeyringError(f"{purpose} key {key_id!r} is not in the keyring file")
        purposes[purpose] = _Versions(key_id, current.keys)
        return key_id

    _edit_file(cfg, change)
    log.info("activated %s key version %s", purpose, key_id)


def retire_key_version(cfg: config.Config, purpose: str, key_id: str) -> None:
    """Rotation last step: drop an old version once nothing needs it (never the active one)."""
    def change(purposes: dict[str, _Versions]) -> str:
        current = purposes.get(purpose)
        if current is None or key_id not in current.keys:
            raise KeyringError(f"{purpose} key {key_id!r} is not in the keyring file")
        if current.active == key_id:
            raise KeyringError(f"{key_id} is the active {purpose} key; activate another first")
        purposes[purpose] = _Versions(current.active,
                                      {k: v for k, v in current.keys.items() if k != key_id})
        return key_id

    _edit_file(cfg, change)
    log.info("retired %s key version %s", purpose, key_id)


# --------------------------------------------------------------------------- CLI

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="keyring: demo keys, status, rotation (never prints secrets)")
    actions = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    actions.add_parser("init", help="generate demo keys on first local run (never overwrites)"
                       ).set_defaults(func=_cli_init)
    status = actions.add_parser("status", help="key ids, active versions and sources")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_cli_status)
    rotate = actions.add_parser("rotate", help="add a new active version of a key")
    rotate.add_argument("purpose", choices=PURPOSES)
    rotate.add_argument("--public-key", help="vault only: new SM2 public key hex (04||x||y)")
    rotate.add_argument("--inactive", action="store_true", help="add without activating")
    rotate.set_defaults(func=_cli_rotate)
    activate = actions.add_parser("activate", help="make an existing key version the active one")
    activate.add_argument("purpose", choices=PURPOSES)
    activate.add_argument("key_id")
    activate.set_defaults(func=_cli_activate)
    retire = actions.add_parser("retire", help="remove an old, inactive key version")
    retire.add_argument("purpose", choices=PURPOSES)
    retire.add_argument("key_id")
    retire.set_defaults(func=_cli_retire)


def _cli_init(args: argparse.Namespace) -> int:
    cfg = config.load()
    created = ensure_demo_keys(cfg)
    print(f"{'created demo keys in' if created else 'keyring already exists:'} {keyring_path(cfg)}")
    if created:
        print(f"DEMO ONLY: the vault SM2 private key is in {private_key_path(cfg)}; "
              "production keeps it offline (docs/keys.md)")
    return 0


def _cli_status(args: argparse.Namespace) -> int:
    keyring = load_keyring()
    info = keyring.describe()
    if args.json:
        print(json.dumps({"path": str(keyring.path), "keys": info}, indent=2))
        return 0
    print(f"keyring: {keyring.path}")
    for purpose, entry in info.items():
        print(f"{purpose}: active {entry['active']}")
        for version in entry["versions"]:
            print(f"  {version['key_id']}  source={version['source']}  created={version['created_at']}")
    return 0


def _cli_rotate(args: argparse.Namespace) -> int:
    key_id = add_key_version(config.load(), args.purpose, args.public_key, not args.inactive)
    print(key_id)
    return 0


def _cli_activate(args: argparse.Namespace) -> int:
    activate_key_version(config.load(), args.purpose, args.key_id)
    return 0


def _cli_retire(args: argparse.Namespace) -> int:
    retire_key_version(config.load(), args.purpose, args.key_id)
    return 0
