"""The upload page's zip rules, checked before a single byte lands.

The national system accepts "a zip of CSV files, at most 20 MB, named by prefix" (《发热门诊医疗服务监测系统数据对接 用户操作说明》,
§3.5.2). We add the checks any service unpacking untrusted archives needs: real zip, CRCs good,
no encryption, no path tricks (zip slip), no symlinks, no nested archives, no duplicate names,
and zip-bomb limits on declared sizes *and* while streaming. The path rules cover every name a
tool may unpack an entry under, not only the header's (see :func:`_check_paths`).

Files an operating system adds when a folder is zipped (``__MACOSX/``, ``.DS_Store``, ...) are
not data: :func:`data_entries` leaves them out, here and in ingest staging, so a hospital is not
refused for zipping on a Mac. They still have to be harmless (safe names, no links, sizes within
the limits), since the archive is kept as uploaded and may be unpacked whole later.

Each refusal is a :class:`ZipRejected` with a reason code (the ``rule`` in the upload's error
list), the offending entry, and a message in Chinese and English a data manager can act on.
"""
from __future__ import annotations

import hashlib
import lzma
import re
import stat
import struct
import unicodedata
import zipfile
import zlib
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from hqms import spec
from hqms.textsafe import UNSEEN, printable

#: Intake rule names (reason codes), in the order they are checked.
INTAKE_RULES = ("bad_org_code", "unknown_org", "not_zip_name", "zip_too_large", "not_a_zip", "corrupt_zip",
                "unsafe_path", "bad_name", "symlink", "hidden_entry", "header_mismatch", "empty_zip",
                "encrypted", "duplicate_entry", "nested_archive", "not_csv", "unknown_prefix",
                "mixed_streams", "stream_mismatch", "file_too_large", "too_much_data", "compression_ratio")
#: Entry extensions that are archives (refused as nested archives rather than "not CSV").
ARCHIVE_SUFFIXES = {".zip", ".rar", ".7z", ".gz", ".tgz", ".tar", ".bz2", ".xz", ".jar", ".cab"}
#: Magic numbers of archives hidden behind a .csv name: zip (an entry, an empty or a spanned
#: zip), rar, 7z, gzip, bzip2, xz, zstd, lz4, compress (.Z), cab; tar is found by its ``ustar``
#: at offset 257 (:func:`_is_archive`).
ARCHIVE_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08", b"Rar!", b"7z\xbc\xaf", b"\x1f\x8b", b"BZh",
                 b"\xfd7zXZ", b"\x28\xb5\x2f\xfd", b"\x04\x22\x4d\x18", b"\x1f\x9d", b"MSCF")
#: The ratio limit only applies to entries (and archives) larger than this: a 50 KB CSV of
#: repeated rows can compress 300x, and a small upload cannot exhaust anything.
RATIO_MIN_BYTES = 1024 * 1024
#: Base names (lower case) of files Windows and macOS drop into folders: thumbnail cache, folder
#: view settings, Finder state. AppleDouble resource forks (``._name``) and everything under a
#: ``__MACOSX`` folder are artefacts too (see :func:`_is_os_artefact`).
OS_ARTEFACT_NAMES = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})
#: What decompressing damaged or unreadable entry data raises: bad CRC, header or file-name
#: mismatch (BadZipFile), data ending early (EOFError), damaged deflate (zlib.error), bzip2
#: (OSError) or LZMA (LZMAError) streams, a compression method zipfile cannot read such as
#: deflate64 (NotImplementedError), an undecodable local-header name (UnicodeDecodeError).
#: Deliberately not ``Exception``: anything else is a bug here, not a bad upload.
_DAMAGED = (zipfile.BadZipFile, EOFError, OSError, zlib.error, lzma.LZMAError,
            NotImplementedError, UnicodeDecodeError)
CHUNK = 1024 * 1024
#: Header id of the Info-ZIP Unicode Path extra field (APPNOTE 4.6.9): version 1, CRC-32 of the
#: header's name bytes, the entry's name in UTF-8. Info-ZIP unzip and Commons Compress, among
#: others, unpack the entry under that name instead of the header's. Its sibling, the Unicode
#: Comment field (0x6375), names nothing and is left alone.
UNICODE_PATH_FIELD = 0x7075
#: A local file header (APPNOTE 4.3.7): signature, version, flags, method, time, date, CRC-32,
#: compressed and uncompressed size, name length, extra field length.
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
#: Extra fields that make an entry a symbolic link for Info-ZIP unzip whatever its attributes:
#: PKWARE Unix (0x000d: times, uid, gid in 12 bytes, then the link target) and Info-ZIP's ASi
#: Unix (0x756e: CRC, mode, device size, uid, gid in 14 bytes, then the link target).
_PKWARE_UNIX, _ASI_UNIX = 0x000D, 0x756E


_MESSAGES: dict[str, tuple[str, str]] = {
    "bad_org_code": ("医疗机构代码“{detail}”无效（应为22位，含正确校验位的组织机构代码）",
                     "medical institution code '{detail}' is invalid (22 characters with a valid "
                     "organisation-code check character expected)"),
    "unknown_org": ("医疗机构代码“{detail}”没有已开通的医疗机构账号，不能接收上传：请联系所在省（市）管理员"
                    "开通账号（或核对代码）后再上传",
                    "no active hospital account exists for institution code '{detail}', so nothing "
                    "can be received for it: ask your provincial or city administrator to open one "
                    "(or check the code), then upload again"),
    "not_zip_name": ("上传文件必须是扩展名为 .zip 的压缩包：{entry}",
                     "the upload must be a file with the .zip extension: {entry}"),
    "zip_too_large": ("压缩包大小 {detail} 超过上限 20M，请拆分后分别上传：{entry}",
                      "zip size {detail} exceeds the 20 MB limit; split it and upload the parts: "
                      "{entry}"),
    "not_a_zip": ("文件不是 zip 压缩包：{entry}", "the file is not a zip archive: {entry}"),
    "corrupt_zip": ("压缩包已损坏或不完整（{detail}），请重新压缩后上传：{entry}",
                    "the zip is damaged or incomplete ({detail}); re-create it and upload again: "
                    "{entry}"),
    "empty_zip": ("压缩包内没有文件：{entry}", "the zip contains no files: {entry}"),
    "encrypted": ("压缩包内文件已加密（设置了密码），请去掉密码后上传：{entry}",
                  "the entry is encrypted (password-protected); upload it without a password: "
                  "{entry}"),
    "unsafe_path": ("压缩包内文件路径不安全（绝对路径、盘符、“..”，或同一文件有两个不同的文件名）："
                    "{entry}",
                    "unsafe path inside the zip (absolute, drive letter, '..', or two different "
                    "names for one entry): {entry}"),
    "bad_name": ("压缩包内文件名含有控制字符（如空字符、换行）：{entry}",
                 "an entry name holds a control character (NUL, line break, direction override): {entry}"),
    "symlink": ("压缩包内不允许包含符号链接：{entry}", "symbolic links are not allowed: {entry}"),
    "hidden_entry": ("压缩包内有目录中未列出的文件（逐个解压的工具会解出它）：{entry}",
                     "the zip holds an entry its directory does not list (a streaming unzip would "
                     "unpack it): {entry}"),
    "header_mismatch": ("压缩包的目录与文件头不一致（{detail}），请重新压缩后上传：{entry}",
                        "the entry's two headers disagree ({detail}); re-create the zip and upload "
                        "again: {entry}"),
    "duplicate_entry": ("压缩包内文件重名：{entry}", "two entries have the same name: {entry}"),
    "nested_archive": ("压缩包内不允许再包含压缩包，请直接放入 csv 文件：{entry}",
                       "archives inside the zip are not allowed; put the csv files in directly: "
                       "{entry}"),
    "not_csv": ("压缩包内只能包含 csv 格式文件：{entry}",
                "the zip may contain only .csv files: {entry}"),
    "unknown_prefix": ("文件名不符合命名规则（应以 {detail} 开头）：{entry}",
                       "file name does not follow the naming rule (must start with {detail}): "
                       "{entry}"),
    "mixed_streams": ("一个压缩包只能包含同一类监测数据（发现 {detail}）：{entry}",
                      "one zip may hold files of one surveillance stream only (found {detail}): "
                      "{entry}"),
    "stream_mismatch": ("文件属于 {detail} 数据，与指定的上传类别不符：{entry}",
                        "the file belongs to stream {detail}, not the stream given: {entry}"),
    "file_too_large": ("单个文件解压后超过上限 {detail}，请按日期或科室拆分成多个文件后上传：{entry}",
                       "one file unpacks to more than the limit of {detail}; split it (by day or "
                       "department) into several files and upload again: {entry}"),
    "too_much_data": ("解压后数据量超过上限 {detail}：{entry}",
                      "uncompressed content exceeds the limit of {detail}: {entry}"),
    "compression_ratio": ("压缩比异常（{detail}），疑似压缩炸弹：{entry}",
                          "abnormal compression ratio ({detail}), suspected zip bomb: {entry}"),
}


class ZipRejected(Exception):
    """An upload refused at intake: ``rule`` names the reason, ``entry`` the offending file."""

    def __init__(self, rule: str, entry: str, detail: str = "") -> None:
        zh, en = _MESSAGES[rule]
        self.rule = rule
        self.entry = entry
        self.message_zh = zh.format(entry=entry, detail=detail)
        self.message_en = en.format(entry=entry, detail=detail)
        super().__init__(f"{rule}: {self.message_en}")


@dataclass(frozen=True)
class Entry:
    name: str  # as shown to people (GBK-encoded legacy names decoded)
    base_name: str
    dataset_id: str
    size: int
    compressed_size: int


@dataclass(frozen=True)
class ZipSummary:
    stream: str
    entries: tuple[Entry, ...]

    @property
    def uncompressed_bytes(self) -> int:
        return sum(e.size for e in self.entries)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _human(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n} B"


def display_name(info: zipfile.ZipInfo) -> str:
    """The entry name as the hospital wrote it: Chinese Windows tools store GBK names without
    the UTF-8 flag, which Python reads as cp437."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("gbk")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def _path_parts(name: str) -> list[str]:
    """Folders and base name of an entry name. Windows zip tools write ``data\\x.csv``, so a
    backslash separates folders just like a slash (a name ending in either is a folder)."""
    return re.split(r"[/\\]", name)


def entry_basename(info: zipfile.ZipInfo) -> str:
    """The entry's file name without its folders, as the hospital wrote it (GBK decoded, either
    separator). Split after decoding: a GBK character's second byte can be 0x5C, a backslash."""
    return _path_parts(display_name(info))[-1]


def _is_os_artefact(info: zipfile.ZipInfo) -> bool:
    """Files an operating system adds when zipping a folder, which hold no data of ours."""
    *folders, base = (part.lower() for part in _path_parts(display_name(info)))
    return "__macosx" in folders or base in OS_ARTEFACT_NAMES or base.startswith("._")


def data_entries(infos: list[zipfile.ZipInfo]) -> list[zipfile.ZipInfo]:
    """The entries that carry data, in zip order: not folders, not OS artefacts. Intake checks
    these and ingest stages these; this is the one definition both use, so they cannot drift."""
    return [i for i in infos if entry_basename(i) and not _is_os_artefact(i)]


def _unsafe(name: str) -> bool:
    """Would some unzip tool write ``name`` outside the folder it extracts into (zip slip)?"""
    if "\x00" in name or name.startswith(("/", "\\")):  # absolute: /x, \x, \\server\share
        return True
    if len(name) >= 2 and name[1] == ":":  # C:relative or C:\absolute
        return True
    return ".." in _path_parts(name)


def _unsafe_entry(info: zipfile.ZipInfo) -> bool:
    """Judge the name both as stored and as decoded from GBK: unzip tools read it either way."""
    return _unsafe(info.filename) or _unsafe(display_name(info))


def _is_symlink(info: zipfile.ZipInfo, local_extra: bytes) -> bool:
    """A link for some unzip tool: Unix mode bits saying so (whatever ``create_system`` claims:
    Info-ZIP honours them for MS-DOS and macOS creators too), or an extra field carrying a link
    target or a link mode, in either header."""
    if stat.S_ISLNK(info.external_attr >> 16):
        return True
    for field_id, data in _extra_fields(info.extra) + _extra_fields(local_extra):
        if field_id == _PKWARE_UNIX and len(data) > 12:
            return True
        if field_id == _ASI_UNIX and len(data) >= 6 and (
                stat.S_ISLNK(struct.unpack_from("<H", data, 4)[0]) or len(data) > 14):
            return True
    return False


def _open(path: Path) -> zipfile.ZipFile:
    with path.open("rb") as fh:
        head = fh.read(4)
    if head not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise ZipRejected("not_a_zip", path.name)
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError,
            NotImplementedError) as exc:  # "zip file version 8.4": a format zipfile cannot read
        raise ZipRejected("corrupt_zip", path.name, str(exc)) from None


def check_zip(path: Path, *, max_zip_bytes: int, max_uncompressed_bytes: int, max_ratio: int,
              max_file_bytes: int, stream: str | None = None, upload_name: str | None = None) -> ZipSummary:
    """Apply every intake rule to the zip at ``path``; return what it holds or raise
    :class:`ZipRejected` naming the first problem. ``upload_name`` is the name the file was
    uploaded under (defaults to the path's name); ``max_file_bytes`` bounds each entry
    uncompressed (what ingest can hold), ``max_uncompressed_bytes`` the whole archive."""
    path = Path(path)
    name = upload_name or path.name
    if not name.lower().endswith(".zip"):
        raise ZipRejected("not_zip_name", name)
    size = path.stat().st_size
    if size > max_zip_bytes:
        raise ZipRejected("zip_too_large", name, _human(size))
    with _open(path) as zf:
        listed = zf.infolist()
        _check_paths(path, listed, name)
        infos = data_entries(listed)
        if not infos:
            raise ZipRejected("empty_zip", name)
        entries = _check_entries(infos, stream)
        _check_sizes(listed, max_uncompressed_bytes, max_ratio, name, size, max_file_bytes)
        _check_local_chain(path, listed, zf.start_dir)
        _test_content(zf, listed, max_uncompressed_bytes, name, max_file_bytes)
    streams = {spec.dataset(e.dataset_id).stream for e in entries}
    return ZipSummary(stream=streams.pop(), entries=tuple(entries))


def _check_paths(path: Path, listed: list[zipfile.ZipInfo], zip_name: str) -> None:
    """Every entry, folders and ignored artefacts included, must be safe to unpack: the archive
    is kept as uploaded, and whoever unpacks it later uses a tool that writes them all.

    Tools do not agree on an entry's name: Info-ZIP unzip and others take a Unicode Path field
    (0x7075) over the header's name, streaming extractors read the local header instead of the
    central directory. So every such name must be safe, and all must be the header's name, up
    to its encoding (:func:`_header_readings`). An entry with two different names is refused as
    ``unsafe_path`` even when both are harmless: where it lands, and which dataset it is, would
    depend on the tool, and no zip tool writes that (a zip whose entries' names disagree is
    hostile or broken). The fields' CRC is not consulted: unzip ignores a field whose CRC does
    not match the header's name, not every tool checks it, so the name is judged either way;
    and a field naming the header's name is harmless whatever its CRC. A header or field that
    cannot be read is a ``corrupt_zip``: a name we cannot read is a name we cannot judge.
    """
    with path.open("rb") as fh:
        for info in listed:
            shown = display_name(info)
            # no file name holds a control or invisible character (:data:`UNSEEN`): NUL ends the
            # name in C tools, which then write another file than the one checked; a line break
            # forges log lines; a direction override shows ``flu_1\u202ecsv.exe`` as another name
            if UNSEEN.search(info.orig_filename) or UNSEEN.search(shown):
                raise ZipRejected("bad_name", printable(shown))
            if _unsafe_entry(info):
                raise ZipRejected("unsafe_path", shown)
            try:
                local = _local_header(fh, info)
                others = _other_names(info, local)
            except ValueError as exc:
                raise ZipRejected("corrupt_zip", zip_name, f"{shown}: {exc}") from None
            for name in others:
                if UNSEEN.search(name):
                    raise ZipRejected("bad_name", printable(name))
                if _unsafe(name):
                    raise ZipRejected("unsafe_path", name)
            if not _header_readings(info).issuperset(others):
                raise ZipRejected("unsafe_path", shown)
            if _is_symlink(info, local.extra):
                raise ZipRejected("symlink", shown)
            if local.method != info.compress_type:
                raise ZipRejected("header_mismatch", shown,
                                  f"compression method {info.compress_type} / {local.method}, 压缩方法")
            if (info.flag_bits | local.flags) & 0x1:  # ignored entries too: nobody can check them
                raise ZipRejected("encrypted", shown)


@dataclass(frozen=True)
class _Local:
    """What a local file header says (the fields the checks compare with the directory)."""

    flags: int
    method: int
    name: bytes
    extra: bytes

    @property
    def size(self) -> int:
        return _LOCAL_HEADER.size + len(self.name) + len(self.extra)


def _read_local(fh: BinaryIO, offset: int) -> _Local | None:
    """The local file header at ``offset``, None when none starts there. Raises ValueError for
    one cut short."""
    fh.seek(offset)
    head = fh.read(_LOCAL_HEADER.size)
    if len(head) < _LOCAL_HEADER.size or not head.startswith(b"PK\x03\x04"):
        return None
    _, _, flags, method, *_, name_len, extra_len = _LOCAL_HEADER.unpack(head)
    name, extra = fh.read(name_len), fh.read(extra_len)
    if len(name) < name_len or len(extra) < extra_len:
        raise ValueError("local file header cut short")
    return _Local(flags, method, name, extra)


def _local_header(fh: BinaryIO, info: zipfile.ZipInfo) -> _Local:
    local = _read_local(fh, info.header_offset)
    if local is None:
        raise ValueError("no local file header where the central directory points")
    return local


def _other_names(info: zipfile.ZipInfo, local: _Local) -> list[str]:
    """Names the entry has besides the central directory's name field: the Unicode Path fields
    of both headers, and the local header's name when its bytes differ from the central one's
    (zipfile compares the two only for the entries it opens, not for folders and artefacts).
    Raises ValueError for an extra field that does not parse."""
    names = _unicode_paths(info.extra) + _unicode_paths(local.extra)
    if local.name != _raw_name(info):
        names.append(_local_name(local))
    return names


def _local_name(local: _Local) -> str:
    return local.name.decode("utf-8" if local.flags & 0x800 else "cp437", errors="replace")


def _extra_fields(extra: bytes) -> list[tuple[int, bytes]]:
    """(id, data) of each field of an extra block: id and size (2 bytes each), then the data
    (APPNOTE 4.5.1). One to three stray bytes after the last field are tolerated, as zipfile
    does (alignment padding). Raises ValueError for a field running past the block."""
    fields = []
    at = 0
    while at + 4 <= len(extra):
        field_id, size = struct.unpack_from("<HH", extra, at)
        data = extra[at + 4:at + 4 + size]
        if len(data) < size:
            raise ValueError(f"extra field 0x{field_id:04x} runs past the end of its block")
        fields.append((field_id, data))
        at += 4 + size
    return fields


def _unicode_paths(extra: bytes) -> list[str]:
    """The names in the Unicode Path fields of an extra block. Raises ValueError for a field
    too short for its version and CRC, of a version other than 1 (a layout we cannot read) or
    whose name is not UTF-8."""
    names: list[str] = []
    for field_id, data in _extra_fields(extra):
        if field_id == UNICODE_PATH_FIELD:
            if len(data) < 5 or data[0] != 1:
                raise ValueError("unreadable Unicode Path extra field (0x7075)")
            names.append(data[5:].decode("utf-8"))
    return names


def _check_local_chain(path: Path, listed: list[zipfile.ZipInfo], directory_at: int) -> None:
    """Walk the local headers one after another, as a streaming extractor (Java's
    ZipInputStream, ``unzip -`` from a pipe, many upload scanners) does, and require exactly
    the entries the central directory lists, at the offsets it gives.

    Why: such a tool never reads the directory, so an entry present only in the local headers
    (``../../x`` between two listed ones), entries overlapping each other, or a local header in
    the gap before the directory would be unpacked though every check here passed on the
    directory's view. Sizes come from the directory (a local header may leave them to a data
    descriptor, which is skipped with its optional signature and Zip64 sizes)."""
    by_offset = {info.header_offset: info for info in listed}
    at = reached = 0
    with path.open("rb") as fh:
        while True:
            try:
                local = _read_local(fh, at)
            except ValueError:
                local = None
            if local is None:
                break
            info = by_offset.get(at)
            if info is None:
                raise ZipRejected("hidden_entry", printable(_local_name(local)))
            reached += 1
            at += local.size + info.compress_size
            if local.flags & 0x8:  # a data descriptor follows the data
                fh.seek(at)
                at += (4 if fh.read(4) == b"PK\x07\x08" else 0) + 4
                zip64 = any(fid == 0x0001 for fid, _ in _extra_fields(local.extra))
                at += 16 if zip64 else 8
        if reached != len(listed) or len(by_offset) != len(listed):
            missed = next((i for i in listed if i.header_offset >= at), listed[-1])
            raise ZipRejected("header_mismatch", display_name(missed),
                              "entries overlap, or are not where the directory says")
        if at < directory_at:
            fh.seek(at)
            gap = fh.read(directory_at - at)
            if (found := gap.find(b"PK\x03\x04")) >= 0:
                local = _read_local(fh, at + found)
                raise ZipRejected("hidden_entry", printable(_local_name(local)) if local else path.name)


def _raw_name(info: zipfile.ZipInfo) -> bytes:
    """The name field's bytes as stored: zipfile decoded them as UTF-8 when flagged, otherwise
    as cp437, which maps every byte to one character and back."""
    return info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")


def _header_readings(info: zipfile.ZipInfo) -> set[str]:
    """The ways unzip tools read the header's name: as stored (UTF-8 when flagged, otherwise
    cp437), as GBK (:func:`display_name`), and as UTF-8 without the flag, which Info-ZIP zip
    writes on a UTF-8 Unix system (next to a Unicode Path field naming the same)."""
    readings = {info.filename, display_name(info)}
    with suppress(UnicodeError):
        readings.add(info.filename.encode("cp437").decode("utf-8"))
    return readings


def _check_entries(infos: list[zipfile.ZipInfo], stream: str | None) -> list[Entry]:
    """The data entries: readable, unique by base name (case-insensitive, either separator),
    CSV files of known prefixes, all of one stream."""
    seen: set[str] = set()
    entries: list[Entry] = []
    first_stream: str | None = None
    prefixes = "、".join(sorted(d.prefix for d in spec.datasets().values()))
    for info in infos:
        shown = display_name(info)
        if info.flag_bits & 0x1:
            raise ZipRejected("encrypted", shown)
        base = entry_basename(info)
        # twins by case (Windows, macOS) or by Unicode normal form (macOS writes NFD): one file
        # system would unpack both as one file, and which one wins depends on the tool
        key = unicodedata.normalize("NFC", base).casefold()
        if key in seen:
            raise ZipRejected("duplicate_entry", shown)
        seen.add(key)
        suffix = PurePosixPath(base.lower()).suffix
        if suffix in ARCHIVE_SUFFIXES:
            raise ZipRejected("nested_archive", shown)
        if suffix != ".csv":
            raise ZipRejected("not_csv", shown)
        ds = spec.dataset_for_filename(base)
        if ds is None:
            raise ZipRejected("unknown_prefix", shown, prefixes)
        if stream and ds.stream != stream:
            raise ZipRejected("stream_mismatch", shown, ds.stream)
        if first_stream and ds.stream != first_stream:
            raise ZipRejected("mixed_streams", shown, f"{first_stream}, {ds.stream}")
        first_stream = first_stream or ds.stream
        entries.append(Entry(shown, base, ds.id, info.file_size, info.compress_size))
    return entries


def _check_sizes(listed: list[zipfile.ZipInfo], max_total: int, max_ratio: int, zip_name: str,
                 zip_bytes: int, max_file: int) -> None:
    """Declared sizes: refuse bombs before decompressing anything.

    The ratio is checked per entry and for the archive as a whole, or many entries just under
    :data:`RATIO_MIN_BYTES` would pass one by one. The archive's compressed total counts at most
    the zip's own size: entries that overlap or overstate their compressed size cannot dilute
    the ratio. Every entry counts, ignored ones included (they are small when genuine).
    """
    total = packed = 0
    for info in listed:
        total += info.file_size
        packed += info.compress_size
        if info.file_size > max_file:
            raise ZipRejected("file_too_large", display_name(info), _human(max_file))
        if total > max_total:
            raise ZipRejected("too_much_data", display_name(info), _human(max_total))
        if info.file_size > RATIO_MIN_BYTES:
            _check_ratio(info.file_size, info.compress_size, max_ratio, display_name(info))
    if total > RATIO_MIN_BYTES:
        _check_ratio(total, min(packed, zip_bytes), max_ratio, zip_name)


def _check_ratio(size: int, compressed: int, max_ratio: int, entry: str) -> None:
    ratio = size / max(compressed, 1)
    if ratio > max_ratio:
        raise ZipRejected("compression_ratio", entry, f"{ratio:.0f}:1 > {max_ratio}:1")


def _is_archive(first: bytes) -> bool:
    """Whether an entry's first bytes (up to 512) are an archive's, a UTF-8 BOM allowed before."""
    return first.removeprefix(b"\xef\xbb\xbf").startswith(ARCHIVE_MAGIC) or first[257:262] == b"ustar"


def _test_content(zf: zipfile.ZipFile, listed: list[zipfile.ZipInfo], max_total: int,
                  zip_name: str, max_file: int) -> None:
    """Decompress every entry once, ignored ones included (the archive is kept as uploaded, and
    may be unpacked whole later): CRCs must match, archives must not hide behind any name, and
    the real output must stay within the declared sizes and the per-file limit (zipfile stops at
    the declared size and then fails the CRC, so a lying header cannot inflate past it; the
    counters are the belt to those braces)."""
    total = 0
    for info in listed:
        if info.is_dir():
            continue
        shown = display_name(info)
        produced = 0
        try:
            with zf.open(info) as fh:
                first = fh.read(512)
                if _is_archive(first):
                    raise ZipRejected("nested_archive", shown)
                produced = len(first)
                while chunk := fh.read(CHUNK):
                    produced += len(chunk)
                    if produced > max_file:
                        raise ZipRejected("file_too_large", shown, _human(max_file))
                    if produced > info.file_size or total + produced > max_total:
                        raise ZipRejected("too_much_data", shown, _human(max_total))
        except _DAMAGED as exc:
            raise ZipRejected("corrupt_zip", zip_name, f"{shown}: {exc}") from None
        total += produced
