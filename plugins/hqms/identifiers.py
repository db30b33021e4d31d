"""What a personal identifier looks like inside text — one definition for the warehouse's
free-text redaction (:mod:`hqms.ingest.deidentify`) and the masking of reported values
(:func:`hqms.registry.looks_identifying`).

Why a module of its own: the two used to disagree. The warehouse matched ASCII runs of eleven
digits while error reports masked any digit run, so an ID number typed in full-width digits
(``１１０１…``), grouped (GB 11643's own example: ``110105 19491231 002X``,
``110105，19491231，002X``), a landline
(``0830-23231357``, ``(0830)2323 1357``) or a dotted mobile (``138.0013.8000``) was masked in the
report and kept in plain text in ``dw.*``.

How a text is read: each character is NFKC-normalised on its own (full-width and circled digits
become ASCII digits, ``，`` becomes ``,``, ``（`` becomes ``(``), every other decimal digit
(Arabic-Indic, Devanagari …) becomes its ASCII digit, and invisible format characters (zero-width
space, bidi marks, soft hyphen) are dropped. Positions are kept, so what is replaced is the
span of the original text. Then runs of digits joined by at most three separator characters (blanks, dashes,
``_ . , ， 、 。 · / ( )``) are judged as a whole:

* **eleven or more digits, or ten starting with 0** (a mobile; a landline with its area code;
  an ID, card or insurance number; optionally ``+`` before and the ID's check ``X`` after) — unless the run is only dates
  and a time (``2026-12-01 2026-12-05``), or it is a list of small numbers or decimals
  (``5.6,7.8,120,3.4,4.5``: a dot, comma, slash or ``、`` with a group under three digits);
* **seven or eight digits in two or three groups of three or more** joined by blanks or dashes
  (``2323-1357``): a landline without its area code;
* **seven or more digits right after a word that announces a number** (电话, 手机, 联系, 座机,
  传真, tel, phone, mobile, fax): ``电话23231357``.

What is deliberately *not* an identifier: bare runs of seven to ten digits (counts and viral
loads such as ``12300000`` IU/mL, dose units such as ``800000`` U), dates, amounts, lab values
(``5.6×10^9/L``), codes (``J11.101``). Digits written as Chinese numerals (``一三八…``) are not
recognised. The error reports mask more (:func:`may_identify`), because masking a shown value
costs nothing while redacting a stored one loses data.
"""
from __future__ import annotations

import re
import unicodedata

#: What an identifier in kept free text becomes in the warehouse.
REDACTED = "[已脱敏]"

#: A date (and time) standing alone, not inside a longer run of digits such as an ID number's
#: birth date: ``2026-12-01``, ``2026/12/1 08:00``, ``20261201``, ``2026年12月1日``.
STANDALONE_DATE = re.compile(
    r"(?<!\d)(?:19|20)\d\d(?:"
    r"(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?:(?:[01]\d|2[0-3])[0-5]\d(?:[0-5]\d)?)?"  # 8, 12 or 14 digits
    r"|[-/.年](?:0?[1-9]|1[0-2])[-/.月](?:0?[1-9]|[12]\d|3[01])日?"
    r"(?:[ T]\d{1,2}[:时]\d{1,2}(?:[:分]\d{1,2}(?:\.\d+)?秒?)?)?)(?!\d)", re.ASCII)

_STRONG = r"\s\-\u2010-\u2015\u2212\u30fc_"
_WEAK = r".,、。·・/()"
_SEP = f"[{_STRONG}{_WEAK}]"
#: Digits joined by at most three separator characters (`` - ``); ``+`` or an area code's ``(`` before, the ID's ``X`` after.
_CANDIDATE = re.compile(rf"(?:\+|\((?=[0-9]{{2,4}}\)))?[0-9](?:{_SEP}{{0,3}}[0-9])*(?:{_SEP}{{0,3}}[Xx](?![0-9A-Za-z]))?")
_WEAK_SEP = re.compile(r"[.,、。·・/]")
_GROUP = re.compile(r"[0-9]+[Xx]?")  # an ID's check X counts as its digit
_ANNOUNCED = re.compile(r"(?:电话|手机|联系|座机|传真|tel|phone|mobile|fax)\W{0,4}$", re.IGNORECASE)
#: Six or more digits with single blanks or dashes between them: any number long enough to be
#: someone's (the error reports' wider net, :func:`may_identify`).
_DIGIT_RUN = re.compile(rf"[0-9](?:[{_STRONG}]?[0-9]){{5,}}")

#: Leading digits that make a run an ID, phone or card number; fewer when the text announces a
#: phone (``电话``) or the run is grouped like a local landline.
LONG_RUN = 11
SHORT_RUN = 7


def normalise(text: str) -> tuple[str, list[int]]:
    """``text`` as it is matched (see the module doc), and for each of its characters the index
    of the original character it came from."""
    if text.isascii():
        return text, list(range(len(text)))
    out: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        if ch.isascii():
            out.append(ch)
            where.append(i)
            continue
        if unicodedata.category(ch) == "Cf":
            continue
        for c in unicodedata.normalize("NFKC", ch):
            digit = unicodedata.decimal(c, None)
            out.append(c if digit is None else str(digit))
            where.append(i)
    return "".join(out), where


def _only_dates(run: str, digits: int) -> bool:
    """True when the run is dates (and a time or short count): at most four digits outside them."""
    outside = digits - sum(sum(c.isdigit() for c in m.group(0)) for m in STANDALONE_DATE.finditer(run))
    return outside <= 4


def _is_identifier(run: str, before: str) -> bool:
    groups = _GROUP.findall(run)
    digits = sum(map(len, groups))
    if digits < SHORT_RUN or _only_dates(run, digits):
        return False
    if _ANNOUNCED.search(before):
        return True
    grouped = groups[1:] if run.startswith("+") else groups  # +86 is a country code, not a group
    if _WEAK_SEP.search(run) and min(map(len, grouped)) < 3:
        return False  # decimals or a list of small numbers
    if digits >= LONG_RUN or (digits >= LONG_RUN - 1 and groups[0].startswith("0")):
        return True
    return (digits <= 8 and 2 <= len(groups) <= 3 and min(map(len, groups)) >= 3
            and not _WEAK_SEP.search(run) and "(" not in run)


def identifier_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each identifier in ``text``, as indexes into ``text`` itself."""
    norm, where = normalise(text)
    spans = []
    for m in _CANDIDATE.finditer(norm):
        run = m.group(0)
        if _is_identifier(run, norm[max(0, m.start() - 12):m.start()]):
            spans.append((where[m.start()], where[m.end() - 1] + 1))
    return spans


def contains_identifier(text: str) -> bool:
    return bool(identifier_spans(text))


def redact(text: str | None) -> str | None:
    """``text`` with each identifier replaced by :data:`REDACTED` (None stays None)."""
    if not text:
        return text
    spans = identifier_spans(text)
    if not spans:
        return text
    parts, last = [], 0
    for start, end in spans:
        parts += [text[last:start], REDACTED]
        last = end
    parts.append(text[last:])
    return "".join(parts)


def may_identify(text: str) -> bool:
    """Whether a shown value holds a number that may be someone's: an identifier as above, or any
    run of six or more digits that is not a date standing alone (``0012345678``)."""
    if contains_identifier(text):
        return True
    norm, _ = normalise(text)
    return _DIGIT_RUN.search(STANDALONE_DATE.sub(" ", norm)) is not None


#: Code point ranges none of whose characters normalises to a digit other than the ASCII and
#: full-width digits themselves (the tests check this over all of Unicode): Latin, Greek, general
#: punctuation, arrows and symbols, CJK punctuation, kana, CJK ideographs, full-width forms.
PLAIN_RANGES = ((0x0, 0xB1), (0xB4, 0xB8), (0xBA, 0xBB), (0xBF, 0x2FF), (0x370, 0x3FF), (0x2010, 0x2027),
                (0x2030, 0x205E), (0x20A0, 0x214F), (0x2190, 0x245F), (0x2500, 0x2775), (0x2794, 0x2BFF),
                (0x3000, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xFE30, 0xFE4F),
                (0xFF00, 0xFFEF))
_PLAIN_CLASS = "".join(f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in PLAIN_RANGES)
#: RE2 (DuckDB) pre-filter, true for every text :func:`identifier_spans` may find something in:
#: seven ASCII or full-width digits with at most eight other characters between neighbours
#: (three separators, the rest invisible format characters), or any character outside
#: :data:`PLAIN_RANGES` (a digit of another script, ⑳, ㉑, ½ …). Most free text fails it and
#: never leaves DuckDB; its character classes are spelt out because RE2 takes ~0.1 s to compile
#: ``\pN`` for every statement.
SQL_GUARD = rf"[0-9０-９](?:[^0-9０-９]{{0,8}}[0-9０-９]){{6}}|[^{_PLAIN_CLASS}]"
