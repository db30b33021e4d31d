"""Streamed transcoding of hospital CSVs to UTF-8.

Hospital exporters write GBK (sometimes UTF-8, with or without BOM). DuckDB's own gb18030 path
garbled a valid 457 MB file at a buffer boundary (stack-notes), so decoding happens here with
Python's incremental decoders (≈ 184 MB/s) in bounded chunks, and DuckDB only ever reads UTF-8.

Which encoding: UTF-8 is tried first, because GBK text almost never passes as UTF-8 for long
while UTF-8 Chinese often passes as GB18030 (it would be accepted, garbled). When UTF-8 fails,
the file is read as GB18030 (a superset of GBK and GB2312) only if the UTF-8 read had not yet
shown that the file is UTF-8 (see :data:`UTF8_EVIDENCE`); otherwise the undecodable bytes are a
damaged row of a UTF-8 file and the file is refused at that row.

A file that starts with a UTF-16 byte-order mark is UTF-16 (neither GBK nor UTF-8 can start
with FF FE or FE FF): what Windows PowerShell's ``>`` and SQL Server's ``bcp -w`` write. It is
read as such, and a damaged one is refused at its line.

Cleaning, on the decoded text: a UTF-8 BOM is dropped (whatever the body turns out to be),
blank lines before the header are dropped (an exporter's leading empty line would otherwise be
read as an empty header, i.e. an empty file) and so is a DOS end-of-file mark (Ctrl-Z) at the
very end, and so is NUL padding there (either would otherwise become a data row). Record
numbers downstream count data records after the header, so none of this shifts them.
"""
from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import AnyStr, BinaryIO

CHUNK = 4 * 1024 * 1024
#: What we read when UTF-8 fails. GB18030 is a superset of GBK and GB2312.
FALLBACK = "gb18030"
#: UTF-8 characters of three or four bytes (U+0800 and up: every CJK ideograph, CJK and
#: full-width punctuation) that must decode before a UTF-8 failure for the file to count as
#: UTF-8 with bad bytes rather than as GBK. Two-byte sequences do not count: GBK pairs with a
#: lead byte C2–DF and a trail 80–BF are valid ones, and common whole values are valid UTF-8
#: (女, 住院, 医院, 未知 …), so a GBK file repeating one of them would pile up any amount of
#: such "evidence". A GBK pair can only start a three-byte sequence by chance chaining into the
#: next pair (斐济 decodes to one such character, then fails). In 600,000 simulated GBK files
#: (rows of random hanzi) two came before the failure in 1 file of 2,300–5,500, three in 2 files,
#: four never; with rows of real HQMS vocabulary one did in 1 file of 1,600, two never.
#: The cost: a real UTF-8 file whose damaged row comes before its fourth Chinese character is
#: read as GB18030 and is only refused if that read fails too.
UTF8_EVIDENCE = 4
#: Lead bytes of three- and four-byte sequences (in bytes known to be valid UTF-8).
_WIDE_LEAD = re.compile(rb"[\xe0-\xf4]")
#: Byte-order marks of UTF-16 and the codec that reads the text after them.
UTF16_BOMS = ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
#: What may trail the last line and is no data: DOS end-of-file marks (Ctrl-Z, written by some
#: old export tools) and NUL bytes (the zero padding of a pre-allocated or cut-off copy).
_TRAILERS = "\x1a\x00"
#: Blanks, other than line breaks, that DuckDB's plain ``TRIM`` keeps: TAB (written before long
#: numbers so that Excel shows them as text), other control separators, NEL, the line and
#: paragraph separators, the zero-width space and a BOM inside the text. Staging trims them
#: only in files that hold one (:attr:`Decoded.unusual_blanks`): looking for them costs per
#: cell, and a dozen scans of the text here cost ≈ 1.5 ms per MB.
UNUSUAL_BLANKS = "\t\x0b\x0c\x1c\x1d\x1e\x1f\x85\u2028\u2029\u200b\ufeff"


class DecodeError(ValueError):
    """The bytes cannot be decoded; ``line`` is the 1-based physical line of the first bad byte.

    ``detected`` is what the file evidently is: ``"utf-8"`` for a UTF-8 file with invalid bytes
    (``encoding`` is then ``"utf-8"`` too), ``"utf-16-le"``/``"utf-16-be"`` for a file with a
    UTF-16 byte-order mark, :data:`FALLBACK` when it is neither UTF-8 nor GB18030 (``encoding``
    is then the reading that got further, and ``line`` is where it failed).
    """

    def __init__(self, encoding: str, line: int, detected: str) -> None:
        self.encoding = encoding
        self.line = line
        self.detected = detected
        if self.known_encoding:
            super().__init__(f"{self.known_encoding} text with invalid bytes at line {line}")
        else:
            super().__init__(f"neither UTF-8 nor GB18030: the {encoding} reading fails at line {line}")

    @property
    def known_encoding(self) -> str | None:
        """The encoding the file evidently is, as people name it (``UTF-8``, ``UTF-16``), or
        None when it is neither UTF-8 nor GB18030."""
        return None if self.detected == FALLBACK else self.detected.upper().removesuffix("-LE").removesuffix("-BE")


@dataclass(frozen=True)
class Decoded:
    """What :func:`transcode` read and wrote (the encoding is kept on the staged file)."""

    encoding: str      # utf-8-sig | utf-8 | gb18030 (a BOM before a GB18030 body reports gb18030) | utf-16-le | utf-16-be
    bytes_in: int
    bytes_out: int
    unusual_blanks: bool = False   # the text holds one of :data:`UNUSUAL_BLANKS`
    lines: int = 0                 # physical lines written (LF, CRLF and CR each end one)
    text_formulas: bool = False    # the text holds ``="`` (an Excel text formula, see hqms.ingest.stage)


@dataclass(frozen=True)
class _Stop:
    """Where one reading of the file failed."""

    encoding: str
    offset: int        # of the first byte that does not decode, from the start of the file
    read: int          # bytes taken from the stream by then


def _line_breaks(chunk: AnyStr, after_cr: bool) -> int:
    """Line breaks in ``chunk`` (text or bytes): LF, CRLF and a lone CR (old Mac files) each end
    a line; ``after_cr``: the chunk before ended in CR, so a leading LF completes that CRLF."""
    lf, cr = ("\n", "\r") if isinstance(chunk, str) else (b"\n", b"\r")
    breaks = chunk.count(lf) + chunk.count(cr) - chunk.count(cr + lf)
    return breaks - 1 if after_cr and chunk.startswith(lf) else breaks


class _Sink:
    """Writes decoded text as UTF-8 without the leading blank lines (only whitespace, as
    ``str.isspace``, up to a CR or LF) and without the run of Ctrl-Z and NUL that ends the file
    (:data:`_TRAILERS`).

    Both are decided at chunk edges without buffering more than one line: the whitespace-only
    start of the current line while no header was seen (the header line keeps its own leading
    whitespace), and the trailer characters at the end of the last chunk, written only if more
    text follows. Whatever is held when the input ends is simply not written.
    """

    def __init__(self, dst: BinaryIO) -> None:
        self._dst = dst
        self.bytes_out = 0
        self._blank: str | None = ""   # whitespace since the last line break; None after the header starts
        self._held = ""  # trailer characters ending the text so far, written if more text follows
        self.unusual_blanks = False
        self.text_formulas = False
        self._last = ""  # the last character written: ``="`` may be split between two writes
        self._breaks = 0
        self._after_cr = False   # the text written so far ends with CR (a CRLF may be split)
        self._open_line = False  # the text written so far ends inside a line

    def write(self, text: str) -> None:
        if not text:
            return
        text, self._held = self._held + text, ""
        kept = text.rstrip(_TRAILERS)
        if len(kept) < len(text):
            text, self._held = kept, text[len(kept):]
        if self._blank is not None:
            text = self._skip_blank_lines(self._blank + text)
        if text:
            self.unusual_blanks = self.unusual_blanks or any(ch in text for ch in UNUSUAL_BLANKS)
            self.text_formulas = self.text_formulas or '="' in self._last + text[:1] or '="' in text
            self._last = text[-1]
            self._count_lines(text)
            out = text.encode("utf-8")
            self._dst.write(out)
            self.bytes_out += len(out)

    def _count_lines(self, text: str) -> None:
        self._breaks += _line_breaks(text, self._after_cr)
        self._after_cr = text.endswith("\r")
        self._open_line = not text.endswith(("\r", "\n"))

    @property
    def lines(self) -> int:
        """Physical lines written: line breaks, plus a last line without one."""
        return self._breaks + self._open_line

    def _skip_blank_lines(self, text: str) -> str:
        """``text`` from the start of its first line holding more than whitespace, or "" (then the
        whitespace of the unfinished last line is kept: it may be the header's indentation)."""
        body = text.lstrip()
        if not body:
            self._blank = text[max(text.rfind("\n"), text.rfind("\r")) + 1:]
            return ""
        start = len(text) - len(body)
        self._blank = None
        return text[max(text.rfind("\n", 0, start), text.rfind("\r", 0, start)) + 1:]


def _copy(first: bytes, src: BinaryIO, dst: BinaryIO, encoding: str,
          skip: int) -> tuple[int, int, bool, int, bool] | _Stop:
    """Decode ``first`` (the stream's first chunk, of which ``skip`` bytes are a BOM) and the rest
    of ``src`` into ``dst``; (bytes in, bytes out, unusual blanks seen, lines, text formulas
    seen), or where decoding failed.

    Reads nothing from ``src`` beyond the chunk being decoded, so when the failure is in ``first``
    (``read == len(first)``) the caller can go on with the same stream.
    """
    dst.seek(0)
    dst.truncate()  # a second reading replaces what a failed first one wrote
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    sink = _Sink(dst)
    chunk, start, final = first[skip:], skip, not first  # first[skip:] is empty if first is a BOM
    while True:
        try:
            text = decoder.decode(chunk, final=final)
        except UnicodeDecodeError as exc:
            # exc.object is the decoder's pending bytes from the previous chunk + this chunk
            data_start = start + len(chunk) - len(exc.object)
            return _Stop(encoding, data_start + exc.start, start + len(chunk))
        sink.write(text)
        if final:
            return start, sink.bytes_out, sink.unusual_blanks, sink.lines, sink.text_formulas
        start += len(chunk)
        chunk = src.read(CHUNK)
        final = not chunk


def _span(open_src: Callable[[], BinaryIO], start: int, end: int) -> Iterator[bytes]:
    """The file's bytes from ``start`` to ``end``, read again in chunks. Line numbers and the
    UTF-8 evidence are only needed once a reading failed, so the decoding loop (the cost of every
    valid file) keeps neither and a failure re-reads the bytes before it."""
    with open_src() as src:
        src.read(start)
        left = end - start
        while left > 0:
            chunk = src.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def _is_utf8(open_src: Callable[[], BinaryIO], start: int, offset: int) -> bool:
    """Whether the bytes from ``start`` (after a BOM) to where UTF-8 failed, which all decoded,
    hold :data:`UTF8_EVIDENCE` characters of three or four bytes."""
    found = 0
    with closing(_span(open_src, start, offset)) as chunks:
        for chunk in chunks:
            found += sum(1 for _ in islice(_WIDE_LEAD.finditer(chunk), UTF8_EVIDENCE - found))
            if found == UTF8_EVIDENCE:
                return True
    return False


def _line_at(open_src: Callable[[], BinaryIO], offset: int, encoding: str | None = None) -> int:
    """The 1-based physical line of the byte at ``offset``: LF, CRLF and a lone CR (old Mac
    files) each end a line, also when a CRLF is split between two reads. Counted in the bytes
    (ASCII-compatible encodings), or in the text an ``encoding`` reads from them (UTF-16, where
    a 0x0A byte may be half of another character)."""
    line = 1
    after_cr = False
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace") if encoding else None
    for chunk in _span(open_src, 0, offset):
        part = decoder.decode(chunk) if decoder else chunk
        if part:  # a decoder may hold a chunk's bytes back
            line += _line_breaks(part, after_cr)
            after_cr = part.endswith("\r" if decoder else b"\r")
    return line


def transcode(open_src: Callable[[], BinaryIO], dst_path: Path) -> Decoded:
    """Write the UTF-8 form of the bytes from ``open_src()`` (a callable returning a fresh binary
    stream, so a reading that fails late can restart) to ``dst_path``.

    Raises :class:`DecodeError` when the file is UTF-8 with invalid bytes, or neither UTF-8 nor
    GB18030 (see the module docstring for how that is told apart).
    """
    with dst_path.open("wb") as dst:
        with open_src() as src:
            first = src.read(max(CHUNK, len(codecs.BOM_UTF8)))
            for bom, encoding in UTF16_BOMS:
                if first.startswith(bom):
                    wide = _copy(first, src, dst, encoding, len(bom))
                    if isinstance(wide, _Stop):
                        raise DecodeError(encoding, _line_at(open_src, wide.offset, encoding), detected=encoding)
                    return Decoded(encoding, *wide)
            skip = len(codecs.BOM_UTF8) if first.startswith(codecs.BOM_UTF8) else 0
            utf8 = _copy(first, src, dst, "utf-8", skip)
            if not isinstance(utf8, _Stop):
                return Decoded("utf-8-sig" if skip else "utf-8", *utf8)
            is_utf8 = _is_utf8(open_src, skip, utf8.offset)
            # A GBK file normally fails UTF-8 in its first chunk: go on with the bytes in hand.
            in_hand = not is_utf8 and utf8.read == len(first)
            gb = _copy(first, src, dst, FALLBACK, skip) if in_hand else None
        if gb is None and not is_utf8:
            with open_src() as src:
                gb = _copy(src.read(len(first)), src, dst, FALLBACK, skip)
    if gb is None:
        raise DecodeError("utf-8", _line_at(open_src, utf8.offset), detected="utf-8")
    if not isinstance(gb, _Stop):
        return Decoded(FALLBACK, *gb)
    further = utf8 if utf8.offset > gb.offset else gb
    raise DecodeError(further.encoding, _line_at(open_src, further.offset), detected=FALLBACK)
