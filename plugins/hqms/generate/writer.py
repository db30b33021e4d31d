"""CSV bytes and zip files the way hospital exporters produce them.

The zips imitate Java's ``ZipOutputStream`` (what the front-end program and most HIS exporters
use): DEFLATED entries streamed with data descriptors and no directory entries. Python's
``zipfile`` writes data descriptors exactly when its target cannot seek, so the zip is written
through :class:`_Unseekable`. Uploads are capped at 20 MB; a CSV that does not fit is cut into
parts (``flu_20250106.csv``, ``flu_20250106_2.csv`` …) carried by further zips
(``flu_20250106.zip``, ``flu_20250106_2.zip`` …), each part with its own header row.
"""
from __future__ import annotations

import codecs
import io
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

ENCODINGS = ("gbk", "utf-8", "utf-8-sig")
CRLF = "\r\n"
#: Lines are encoded and deflated in chunks of about this many characters.
CHUNK_CHARS = 256 * 1024
#: Room kept free in a zip for the deflater's pending output, descriptors and central directory.
ZIP_RESERVE = 64 * 1024


def quote(value: str) -> str:
    """A text cell: double-quoted with ``""`` escaping; empty stays empty (null)."""
    return '"' + value.replace('"', '""') + '"' if value else ""


def quote_all(values: Iterable[str]) -> list[str]:
    """:func:`quote` over a column (the hot path of text columns)."""
    return ['"' + v.replace('"', '""') + '"' if v else "" for v in values]


def encode_csv_text(text: str, encoding: str) -> bytes:
    """Encode CSV text; ``utf-8-sig`` is handled by the caller (one BOM per file, not per chunk)."""
    return text.encode("utf-8" if encoding == "utf-8-sig" else encoding)


class _Unseekable(io.RawIOBase):
    """A write-only file wrapper that can tell but not seek, so ``zipfile`` streams like Java."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._pos = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def seek(self, *_args: object) -> int:
        raise io.UnsupportedOperation("streamed zip")

    def tell(self) -> int:
        return self._pos

    def write(self, data) -> int:  # type: ignore[override]
        n = self._fh.write(data)
        self._pos += n
        return n

    def flush(self) -> None:
        self._fh.flush()


@dataclass(frozen=True)
class Part:
    """Where a run of a CSV's data rows landed: ``rows`` rows starting at data row ``first``
    (0-based over the whole logical file) are rows 1… of ``entry`` in ``zip_rel``."""

    zip_rel: str
    entry: str
    first: int
    rows: int


class ZipSeries:
    """Writes one upload's CSVs into ``<stem>.zip``, ``<stem>_2.zip`` … each at most ``limit`` bytes."""

    def __init__(self, root: Path, rel_dir: str, stem: str, *, limit: int, encoding: str,
                 timestamp: datetime, folder: str | None = None) -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding {encoding!r} not in {ENCODINGS}")
        self.root = root
        self.rel_dir = rel_dir
        self.stem = stem
        self.limit = limit
        self.encoding = encoding
        self.date_time = timestamp.timetuple()[:6]
        self.folder = folder
        self.zips: list[str] = []
        self._fh: BinaryIO | None = None
        self._raw: _Unseekable | None = None
        self._zip: zipfile.ZipFile | None = None

    # -- zip rotation --------------------------------------------------------------------
    def _open_next(self) -> None:
        self._close_zip()
        n = len(self.zips) + 1
        name = f"{self.stem}.zip" if n == 1 else f"{self.stem}_{n}.zip"
        rel = f"{self.rel_dir}/{name}"
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("wb")
        self._raw = _Unseekable(self._fh)
        self._zip = zipfile.ZipFile(self._raw, "w", compression=zipfile.ZIP_DEFLATED)
        self.zips.append(rel)

    def _close_zip(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._fh.close()  # type: ignore[union-attr]
        self._zip = self._fh = self._raw = None

    def _room(self, nbytes: int) -> bool:
        assert self._raw is not None
        return self._raw.tell() + nbytes + ZIP_RESERVE <= self.limit

    def close(self) -> list[str]:
        """Finish the last zip; returns the zip paths written (relative to the root)."""
        self._close_zip()
        return self.zips

    # -- CSV entries ---------------------------------------------------------------------
    def _entry_name(self, base: str, part: int) -> str:
        name = f"{base}.csv" if part == 1 else f"{base}_{part}.csv"
        return f"{self.folder}/{name}" if self.folder else name

    def write_csv(self, base: str, header: str, lines: Iterable[str]) -> list[Part]:
        """Write ``header`` + ``lines`` (each without line end) as ``<base>.csv``, splitting into
        parts when the current zip fills up. Returns where each run of rows went."""
        head = encode_csv_text(header + CRLF, self.encoding)
        if self.encoding == "utf-8-sig":
            head = codecs.BOM_UTF8 + head
        parts: list[Part] = []
        row = 0
        part_no = 0
        stream = None
        entry = ""
        first = 0

        def start_part() -> None:
            nonlocal part_no, stream, entry, first
            part_no += 1
            if self._zip is None or not self._room(len(head) * 2):
                self._open_next()
            entry = self._entry_name(base, part_no)
            info = zipfile.ZipInfo(entry, date_time=self.date_time)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 0  # "made by" MS-DOS/FAT, as java.util.zip writes it
            stream = self._zip.open(info, "w")  # type: ignore[union-attr]
            stream.write(head)
            first = row

        def end_part() -> None:
            stream.close()  # type: ignore[union-attr]
            parts.append(Part(self.zips[-1], entry, first, row - first))

        start_part()
        for count, data in self._chunks(lines):
            if not self._room(len(data)) and row > first:
                end_part()
                self._open_next()
                start_part()
            stream.write(data)  # type: ignore[union-attr]
            row += count
        end_part()
        return parts

    def _chunks(self, lines: Iterable[str]) -> Iterator[tuple[int, bytes]]:
        buf: list[str] = []
        size = 0
        for line in lines:
            buf.append(line)
            size += len(line) + 2
            if size >= CHUNK_CHARS:
                yield len(buf), encode_csv_text(CRLF.join(buf) + CRLF, self.encoding)
                buf, size = [], 0
        if buf:
            yield len(buf), encode_csv_text(CRLF.join(buf) + CRLF, self.encoding)
