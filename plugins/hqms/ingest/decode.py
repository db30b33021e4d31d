"""Streamed transcoding of hospital CSVs to UTF-8.

Hospital exporters write GBK (sometimes UTF-8, with or without BOM). DuckDB's own gb18030 path
garbled a valid 457 MB file at a buffer boundary (stack-notes), so decoding happens here with
Python's incremental decoders (≈ 184 MB/s) in bounded chunks, and DuckDB only ever reads UTF-8.
"""
from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK = 4 * 1024 * 1024
#: What we try, in order, when there is no BOM. GB18030 is a superset of GBK and GB2312.
FALLBACK = "gb18030"


class DecodeError(ValueError):
    """The bytes are neither UTF-8 nor GB18030; ``line`` is the 1-based physical line."""

    def __init__(self, encoding: str, line: int) -> None:
        super().__init__(f"not valid {encoding} text near line {line}")
        self.encoding = encoding
        self.line = line


@dataclass(frozen=True)
class Decoded:
    encoding: str      # utf-8-sig | utf-8 | gb18030
    bytes_in: int
    bytes_out: int


def sniff_encoding(head: bytes) -> str:
    """Guess from the first chunk: BOM → utf-8-sig; strict UTF-8 → utf-8; else gb18030.

    The guess can still be wrong for a file whose first chunk is pure ASCII; :func:`transcode`
    restarts with the fallback when UTF-8 fails later.
    """
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        return FALLBACK


def _copy(src: BinaryIO, dst: BinaryIO, encoding: str) -> tuple[int, int]:
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    bytes_in = bytes_out = 0
    lines = 1
    while True:
        chunk = src.read(CHUNK)
        final = not chunk
        try:
            text = decoder.decode(chunk, final=final)
        except UnicodeDecodeError as exc:
            raise DecodeError(encoding, lines + chunk[: exc.start].count(b"\n")) from exc
        lines += chunk.count(b"\n")
        out = text.encode("utf-8")
        dst.write(out)
        bytes_in += len(chunk)
        bytes_out += len(out)
        if final:
            return bytes_in, bytes_out


def transcode(open_src, dst_path: Path) -> Decoded:
    """Write the UTF-8 form of the bytes from ``open_src()`` (a callable returning a fresh binary
    stream, so a wrong UTF-8 guess can restart) to ``dst_path``."""
    with open_src() as src:
        head = src.read(CHUNK)
    encoding = sniff_encoding(head)
    tried = [encoding] if encoding == FALLBACK else [encoding, FALLBACK]
    for attempt, enc in enumerate(tried):
        try:
            with open_src() as src, dst_path.open("wb") as dst:
                n_in, n_out = _copy(src, dst, enc)
            return Decoded(enc, n_in, n_out)
        except DecodeError:
            if attempt == len(tried) - 1:
                raise
    raise AssertionError("unreachable")
