"""Front-end machine mode (前置机, HQMSTran): watch a folder, bundle, upload, verify, clean up.

What the national program does (《流感医疗服务监测系统 前置机程序使用说明》) and how we do it:

- picks up ``<prefix>_*.csv`` files of known prefixes in the watched folder; files matching no
  rule are logged and left alone — never deleted (the original deletes them; we will not destroy
  data we did not deliver);
- a file is taken only when its size and mtime are unchanged across two scans (still being
  written otherwise);
- bundles per stream into zips within the upload limit and submits them through the same code as
  ``hqms submit`` (channel ``tran``);
- verifies delivery — the registry's record for the bytes, and while the object is in landing its
  size and sha256 re-read from S3 — and only then deletes the originals (or moves them to
  ``--keep``);
- S3 unreachable: retry with exponential backoff, delete nothing.

Exactly-once across crashes: each bundle is written to an outbox and journalled (files, sha256)
before it is sent, and its upload id is journalled as soon as it is known. A later run resumes
the journal instead of re-bundling; if the crash came after landing but before the id was
journalled, the registry's sha256 look-up finds the upload and adopts it. Nothing is re-sent as
a new upload.

API mode: with ``HQMS_SERVER_URL`` (and ``HQMS_SERVER_TOKEN``) set, every look-up, send and
verification goes through the hospital service's JSON API (:mod:`hqms.tran_api`) instead of the
registry and S3: the machine holds only its account token. The journal, the adoption of a landed
bundle by its sha256 and verify-before-delete work the same, against the API's record; the token's
account decides the org (it must be ``--org``) and the uploader.

Run log (运行日志): ``$HQMS_LOG_DIR/tran/<org_code>.log``, rotating.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import logging.handlers
import os
import shutil
import sys
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from hqms import config, spec
from hqms.config import CHINA_TZ
from hqms.intake.submit import submit
from hqms.intake.zipcheck import sha256_file
from hqms.objectstore import ObjectStore, ObjectStoreUnavailable
from hqms.registry import ACCEPTED, Registry
from hqms.textsafe import printable
from hqms.validators import canonical_code

#: Room left in each bundle for zip headers (local + central record per entry, end record).
ENTRY_OVERHEAD = 200
LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 5


@dataclass(frozen=True)
class Options:
    watch_dir: Path
    org_code: str
    user: str
    keep_dir: Path | None = None
    interval: float = 30.0  # seconds between scans in watch mode
    settle: float = 2.0  # --once: seconds between the two scans of the stable-file rule
    retries: int = 5  # attempts per cycle while S3 is unreachable
    backoff: float = 1.0  # first retry delay; doubles each time
    max_backoff: float = 300.0


@dataclass(frozen=True)
class FileSig:
    """What a file looked like when bundled; it is deleted only if it still looks the same."""

    name: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileSig:
        st = path.stat()
        return cls(path.name, st.st_size, st.st_mtime_ns)


@dataclass
class CycleResult:
    uploaded: list[str] = field(default_factory=list)  # upload ids delivered this cycle
    rejected: list[str] = field(default_factory=list)  # upload ids refused at intake
    pending: int = 0  # bundles still waiting (store unavailable)
    unknown: list[str] = field(default_factory=list)  # files matching no rule

    @property
    def exit_code(self) -> int:
        if self.pending:
            return 3
        return 1 if self.rejected else 0


# --- state: outbox + journal, one per (org, watched folder) ----------------------------------------

class Journal:
    """Bundles in flight and files refused at intake, persisted atomically after every change."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.outbox = state_dir / "outbox"
        self.outbox.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / "journal.json"
        data = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else {}
        self.pending: list[dict] = data.get("pending", [])
        self.rejected: dict[str, dict] = data.get("rejected", {})

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pending": self.pending, "rejected": self.rejected},
                                  ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)

    def is_rejected(self, sig: FileSig) -> bool:
        seen = self.rejected.get(sig.name)
        return bool(seen) and (seen["size"], seen["mtime_ns"]) == (sig.size, sig.mtime_ns)


def state_dir(cfg: config.Config, org_code: str, watch_dir: Path) -> Path:
    tag = hashlib.sha256(str(watch_dir.resolve()).encode()).hexdigest()[:10]
    return cfg.home / "tran" / f"{org_code}-{tag}"


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """One front-end process per watched folder (a second one would double-send)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            from hqms.errors import UserError

            raise UserError(f"another front-end process is watching this folder ({path.parent})"
                            " / 已有前置机进程在监控该目录") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- logging ---------------------------------------------------------------------------------------

class _PrintableFormatter(logging.Formatter):
    """Log lines with the message's control and invisible characters escaped
    (:func:`hqms.textsafe.printable`): file names in the watched folder and S3 error texts
    are not ours, and a name holding a line break forged run-log lines, an ESC sequence acted
    on the operator's terminal."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 — logging.Formatter's name
        return printable(super().formatMessage(record))


@contextlib.contextmanager
def run_log(cfg: config.Config, org_code: str, console: bool = True) -> Iterator[logging.Logger]:
    """The rotating run log (运行日志) for ``org_code``, plus the console when interactive."""
    path = cfg.log_dir / "tran" / f"{org_code}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"hqms.tran.{org_code}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    fmt = _PrintableFormatter("%(asctime)s %(levelname)s %(message)s")
    handlers: list[logging.Handler] = [logging.handlers.RotatingFileHandler(
        path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")]
    if console:
        handlers.append(logging.StreamHandler(sys.stderr))
    for h in handlers:
        h.setFormatter(fmt)
        logger.addHandler(h)
    try:
        yield logger
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()


# --- scanning and bundling -------------------------------------------------------------------------

def scan(watch_dir: Path) -> tuple[dict[str, FileSig], list[str]]:
    """Known-prefix CSVs (name → signature) and the names of files matching no rule."""
    known: dict[str, FileSig] = {}
    unknown: list[str] = []
    for path in sorted(watch_dir.iterdir()):
        if not path.is_file() or path.is_symlink():
            continue
        if spec.dataset_for_filename(path.name) is None:
            unknown.append(path.name)
            continue
        with contextlib.suppress(FileNotFoundError):  # removed between listing and stat
            known[path.name] = FileSig.of(path)
    return known, unknown


def stable(previous: dict[str, FileSig], current: dict[str, FileSig]) -> list[FileSig]:
    """Files whose size and mtime did not change between two scans."""
    return [sig for name, sig in current.items() if previous.get(name) == sig]


def deflated_size(path: Path) -> int:
    """Size of the file once deflated exactly as :func:`write_bundle` will (same zlib level)."""
    comp = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    total = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            total += len(comp.compress(chunk))
    return total + len(comp.flush())


def plan_bundles(watch_dir: Path, files: list[FileSig], max_bytes: int) -> list[list[FileSig]]:
    """Group one stream's files into bundles whose zip stays within ``max_bytes`` (first fit in
    name order). A file too big on its own gets its own bundle; intake refuses it visibly."""
    bundles: list[list[FileSig]] = []
    sizes: list[int] = []
    for sig in sorted(files, key=lambda s: s.name):
        need = deflated_size(watch_dir / sig.name) + ENTRY_OVERHEAD + 2 * len(sig.name.encode())
        for i, used in enumerate(sizes):
            if used + need <= max_bytes:
                bundles[i].append(sig)
                sizes[i] += need
                break
        else:
            bundles.append([sig])
            sizes.append(need + 22)  # end-of-central-directory record
    return bundles


def write_bundle(watch_dir: Path, files: list[FileSig], target: Path) -> bool:
    """Zip ``files`` into ``target``; False (and no zip) if any file changed meanwhile."""
    try:
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
            for sig in files:
                zf.write(watch_dir / sig.name, arcname=sig.name)
        unchanged = all(FileSig.of(watch_dir / sig.name) == sig for sig in files)
    except FileNotFoundError:  # removed by the hospital meanwhile
        unchanged = False
    if not unchanged:
        target.unlink(missing_ok=True)
    return unchanged


# --- one cycle -------------------------------------------------------------------------------------

class Tran:
    """The front-end machine for one hospital and one watched folder."""

    def __init__(self, opts: Options, cfg: config.Config | None = None,
                 log: logging.Logger | None = None) -> None:
        self.opts = opts
        self.cfg = cfg or config.load()
        self.api = _api_channel(self.cfg, opts.org_code)
        if not self.api:
            self.cfg.require_s3()  # delivering straight to S3: refuse before any bundle is made
        self.registry = None if self.api else Registry.from_config(self.cfg)
        self.journal = Journal(state_dir(self.cfg, opts.org_code, opts.watch_dir))
        self.log = log or logging.getLogger(f"hqms.tran.{opts.org_code}")
        self._reported_unknown: set[str] = set()

    # The store is looked up per attempt: in embedded mode that also restarts a stopped server.
    def _store(self) -> ObjectStore:
        from hqms.embedded_s3 import EmbeddedS3Error

        try:
            return ObjectStore.from_config(self.cfg, retries=0)  # we back off ourselves
        except EmbeddedS3Error as exc:
            raise ObjectStoreUnavailable(str(exc)) from exc

    def cycle(self, previous: dict[str, FileSig], current: dict[str, FileSig],
              unknown: list[str]) -> CycleResult:
        """Deliver the journal's pending bundles, then bundle and deliver newly stable files."""
        result = CycleResult(unknown=unknown)
        for name in unknown:
            if name not in self._reported_unknown:
                self.log.warning("不符合命名规则，未处理（保留原文件）/ no naming rule matches, "
                                 "left in place: %s", name)
                self._reported_unknown.add(name)
        in_flight = {f["name"] for entry in self.journal.pending for f in entry["files"]}
        fresh = [s for s in stable(previous, current)
                 if s.name not in in_flight and not self.journal.is_rejected(s)]
        self._bundle(fresh)
        for entry in list(self.journal.pending):
            if not self._deliver(entry, result):
                break  # store unreachable: the other bundles would only wait out the same backoff
        result.pending = len(self.journal.pending)
        return result

    def _bundle(self, files: list[FileSig]) -> None:
        by_stream: dict[str, list[FileSig]] = {}
        for sig in files:
            by_stream.setdefault(spec.dataset_for_filename(sig.name).stream, []).append(sig)
        stamp = datetime.now(CHINA_TZ).strftime("%Y%m%d%H%M%S")
        for stream, group in sorted(by_stream.items()):
            for n, bundle in enumerate(plan_bundles(self.opts.watch_dir, group,
                                                    self.cfg.max_zip_bytes), start=1):
                target = _free_name(self.journal.outbox / f"{stream}_{self.opts.org_code}_{stamp}_{n}.zip")
                name = target.name
                if not write_bundle(self.opts.watch_dir, bundle, target):
                    self.log.info("文件仍在变化，下次再处理 / files changed while bundling, retry "
                                  "next scan: %s", ", ".join(s.name for s in bundle))
                    continue
                self.journal.pending.append({
                    "bundle": name, "stream": stream, "sha256": sha256_file(target),
                    "size": target.stat().st_size, "upload_id": None,
                    "files": [vars(s) for s in bundle]})
                self.journal.save()
                self.log.info("打包 bundled %s: %s", name, ", ".join(s.name for s in bundle))

    def _deliver(self, entry: dict, result: CycleResult) -> bool:
        """Send (or adopt), verify, clean up — retrying while the store is unreachable.
        False when the store stayed unreachable."""
        delay = self.opts.backoff
        for attempt in range(1, self.opts.retries + 1):
            try:
                self._deliver_once(entry, result)
                return True
            except ObjectStoreUnavailable as exc:
                self.log.warning("对象存储不可用（第 %d 次）/ object store unavailable (attempt %d): "
                                 "%s", attempt, attempt, exc)
                if attempt < self.opts.retries:
                    time.sleep(delay)
                    delay = min(delay * 2, self.opts.max_backoff)
        self.log.error("暂未送达，原文件保留，下次运行继续 / not delivered yet; originals kept, "
                       "the next run resumes: %s", entry["bundle"])
        return False

    def _deliver_once(self, entry: dict, result: CycleResult) -> None:
        bundle = self.journal.outbox / entry["bundle"]
        if entry["upload_id"] is None:
            known = (self.api.find_accepted(entry["sha256"]) if self.api
                     else self.registry.find_by_sha(self.opts.org_code, entry["sha256"]))
            if known is not None:  # landed before a crash lost the id: adopt, do not re-send
                entry["upload_id"] = known["upload_id"]
            elif self.api:
                sent = self.api.send(bundle, entry["stream"], entry["sha256"])
                entry["upload_id"] = sent["upload_id"]
                if sent["status"] == "rejected":
                    self._refused(entry, sent["message"], sent["message_en"], result)
                    return
            else:
                sent = submit(bundle, self.opts.org_code, self.opts.user, channel="tran",
                              stream=entry["stream"], cfg=self.cfg, registry=self.registry,
                              store=self._store())
                entry["upload_id"] = sent.upload_id
                if sent.status == "rejected":
                    self._refused(entry, sent.message_zh, sent.message_en, result)
                    return
            self.journal.save()
        if not self._verified(entry):
            self.log.error("校验未通过，原文件保留 / delivery not verified, originals kept: %s (%s)",
                           entry["bundle"], entry["upload_id"])
            return
        self._clean_up(entry)
        result.uploaded.append(entry["upload_id"])

    def _verified(self, entry: dict) -> bool:
        """The registry holds these bytes for us; while the object is still in landing, its size
        and sha256 are re-read from S3. Once ingest has taken it (and checked its sha256), the
        registry record is the proof. In API mode the server's record is (its sha256 is of the
        bytes the server received and landed)."""
        if self.api:
            return self.api.verified(entry["upload_id"], entry["sha256"], entry["size"])
        record = self.registry.get(entry["upload_id"])
        if record and record["status"] == "duplicate":
            record = self.registry.get(record["duplicate_of"])
        if record is None or record["sha256"] != entry["sha256"]:
            return False
        if record["stage"] == "intake" and record["status"] not in ACCEPTED:
            return False
        bucket = self.cfg.buckets["landing"]
        store = self._store()
        info = store.stat(bucket, record["object_key"]) if record["object_key"] else None
        if info is None:
            return record["status"] != "landed"
        return info.size == entry["size"] and store.sha256(bucket, record["object_key"]) == entry["sha256"]

    def _refused(self, entry: dict, zh: str, en: str, result: CycleResult) -> None:
        """Intake refused the bundle: keep the originals and do not resend them until changed."""
        for f in entry["files"]:
            self.journal.rejected[f["name"]] = {**f, "upload_id": entry["upload_id"]}
        self._drop(entry)
        result.rejected.append(entry["upload_id"])
        self.log.error("拒收，原文件保留 rejected, originals kept: %s (%s): %s / %s",
                       entry["bundle"], entry["upload_id"], zh, en)

    def _clean_up(self, entry: dict) -> None:
        for f in entry["files"]:
            path = self.opts.watch_dir / f["name"]
            if not path.exists():
                continue
            if FileSig.of(path) != FileSig(**f):
                self.log.warning("文件在上传后被修改，保留 / changed after upload, kept: %s", f["name"])
                continue
            if self.opts.keep_dir:
                self.opts.keep_dir.mkdir(parents=True, exist_ok=True)
                shutil.move(path, _free_name(self.opts.keep_dir / f["name"]))
            else:
                path.unlink()
        self._drop(entry)
        self.log.info("上传成功 delivered %s as %s (%d files); originals %s", entry["bundle"],
                      entry["upload_id"], len(entry["files"]),
                      f"moved to {self.opts.keep_dir}" if self.opts.keep_dir else "deleted")

    def _drop(self, entry: dict) -> None:
        (self.journal.outbox / entry["bundle"]).unlink(missing_ok=True)
        self.journal.pending.remove(entry)
        self.journal.save()


def _api_channel(cfg: config.Config, org_code: str):
    """The API client when ``HQMS_SERVER_URL`` is set (its token must belong to ``org_code``)."""
    if not cfg.server_url:
        return None
    from hqms.errors import UserError
    from hqms.tran_api import ApiChannel, ServerUnavailable

    api = ApiChannel.from_config(cfg)  # a refused token stops here (ServerRefused: a UserError)
    try:
        me = api.me()
    except ServerUnavailable:
        return api  # the server answers for the token's org anyway; the cycle's backoff waits
    if me.get("org_code") != org_code:
        raise UserError(f"the token belongs to {me.get('login')} ({me.get('org_code')}), not {org_code}"
                        " / 接口令牌不属于该医疗机构")
    return api


def _free_name(path: Path) -> Path:
    n = 1
    candidate = path
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
        n += 1
    return candidate


# --- entry points ----------------------------------------------------------------------------------

def run_once(opts: Options, cfg: config.Config | None = None, console: bool = False) -> CycleResult:
    """Two scans ``settle`` seconds apart, then one delivery cycle (``--once``)."""
    cfg = cfg or config.load()
    with _exclusive(state_dir(cfg, opts.org_code, opts.watch_dir) / "lock"), \
            run_log(cfg, opts.org_code, console) as log:
        tran = Tran(opts, cfg, log)
        first, _ = scan(opts.watch_dir)
        time.sleep(opts.settle)
        second, unknown = scan(opts.watch_dir)
        return tran.cycle(first, second, unknown)


def watch(opts: Options, cfg: config.Config | None = None) -> None:
    """Scan every ``interval`` seconds until interrupted."""
    cfg = cfg or config.load()
    with _exclusive(state_dir(cfg, opts.org_code, opts.watch_dir) / "lock"), \
            run_log(cfg, opts.org_code) as log:
        tran = Tran(opts, cfg, log)
        log.info("开始监控 watching %s for %s", opts.watch_dir, opts.org_code)
        previous: dict[str, FileSig] = {}
        while True:
            current, unknown = scan(opts.watch_dir)
            tran.cycle(previous, current, unknown)
            previous = current
            time.sleep(opts.interval)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tran", help="front-end machine mode (前置机): watch a folder and upload")
    tsub = p.add_subparsers(dest="tran_command", required=True)
    w = tsub.add_parser("watch", help="watch DIR, bundle known CSVs, upload, verify, remove")
    w.add_argument("dir", type=Path, help="the watched folder (数据监控目录)")
    w.add_argument("--org", required=True, type=canonical_code, help="医疗机构代码")
    w.add_argument("--user", required=True, help="uploading account")
    w.add_argument("--once", action="store_true", help="one cycle (two scans), then exit")
    w.add_argument("--keep", type=Path, metavar="DIR",
                   help="move delivered originals here instead of deleting them")
    w.add_argument("--interval", type=float, default=30.0, help="seconds between scans (30)")
    w.add_argument("--settle", type=float, default=2.0,
                   help="--once: seconds between the two scans of the stable-file rule (2)")
    w.add_argument("--retries", type=int, default=5,
                   help="attempts per bundle while S3 is unreachable (5; backoff doubles)")
    w.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hqms.errors import UserError
    from hqms.validators import medical_org_code_valid

    if not args.dir.is_dir():
        raise UserError(f"not a folder: {args.dir} / 监控目录不存在")
    if not medical_org_code_valid(args.org):
        raise UserError(f"invalid 医疗机构代码: {args.org}")
    opts = Options(watch_dir=args.dir, org_code=args.org, user=args.user, keep_dir=args.keep,
                   interval=args.interval, settle=args.settle, retries=args.retries)
    if args.once:
        return run_once(opts, console=True).exit_code
    watch(opts)
    return 0
