"""Check-digit and shape validators for the codes hospitals upload, and makers for synthetic data.

Pure Python, no I/O. The same rules run inside DuckDB as SQL macros (:mod:`hqms.sqlmacros`), which
build their SQL from the constants below (patterns, weights, code alphabets), so the two
implementations cannot drift apart; a test checks they agree value for value.

Patterns are written with ``[0-9]`` rather than ``\\d`` and are always applied as *full* matches:
Python's ``\\d`` also matches non-ASCII digits and ``$`` tolerates a trailing newline, while DuckDB's
RE2 does neither. Every pattern here must mean the same in Python ``re`` and RE2.

Sources and the choices made where the standards leave room are in
``shared/reference/interface-fields.md`` §5; the main ones:

* Identifiers are normalised before they are judged (:func:`canonical_code`): surrounding blanks
  and letter case never decide validity — published 统一社会信用代码 are often written in lower
  case (``…3222e``) — and the warehouse stores the upper-case form.
* ID numbers (GB 11643) may carry a lower-case ``x`` check character; the first two digits must be
  one of the 34 province-level codes of GB/T 2260 (the 83 prefix of Taiwan residents' residence
  permits is a different document type and is rejected). Birth dates run from 1900-01-01 to today.
* USCC (GB 32100), organisation codes (GB 11714) and 医疗机构代码 (WS 218) are checked upper-cased.
* ICD codes: the *shape* of the national editions (医保版 2.0, 国家临床版 2.0/3.0), derived from
  the structure of their dictionaries (see :data:`ICD10_PATTERN`, :data:`ICD9CM3_PATTERN`); any
  letter case. Whether a well-shaped code is in the dictionary is a warning, not a shape error
  (:mod:`hqms.codes`).
* Postcodes: six digits whose first digit is 0–8 — mainland postal zones are numbered 0
  (Inner Mongolia, Shanxi, Hebei) to 8 (Xinjiang, Tibet, Qinghai); 9 is unassigned.
* Date strings: strict, zero-padded, real calendar dates with years 1000–9999, nothing trailing.
"""
from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterable
from datetime import date, datetime

# --- patterns (shared with the SQL macros) --------------------------------------------------------

#: GB/T 2260 province-level codes (the first two digits of a region code).
PROVINCES = ("11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
             "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
             "65", "71", "81", "82")

ID18_PATTERN = r"[0-9]{17}[0-9Xx]"
ID15_PATTERN = r"[0-9]{15}"
#: ISO 7064 MOD 11-2 weights (2^(18-i) mod 11) and check characters indexed by the sum mod 11.
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"
ID_MIN_BIRTH = date(1900, 1, 1)

#: GB 11714: body characters 0-9A-Z have values 0-35; check char indexed by (11 - sum mod 11) mod 11.
ORG_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
ORG_CHECK_CHARS = "0123456789X"
ORG_PATTERN = r"[0-9A-Z]{8}-?[0-9X]"

#: GB 32100: 31 characters (no I, O, S, V, Z) with values 0-30; weights 3^(i-1) mod 31.
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
USCC_PATTERN = r"[0-9A-HJ-NP-RTUW-Y]{18}"

#: WS 218 医疗机构代码: 9-char organisation code + region (6) + economic type (2) + institution
#: category (letter + 3 digits, e.g. A100) + management class (1 非营利, 2 营利, 9 其他).
MEDICAL_ORG_PATTERN = r"[0-9A-Z]{8}[0-9X][0-9]{6}[0-9]{2}[A-Z][0-9]{3}[129]"

#: Extension of the national editions: ``x`` + 3 digits (``J10.100x005``, ``13.4100x001``); 4 occur
#: too (医保版 2.0 ``86.700x0013``).
_EXTENSION = r"(x[0-9]{3,4})?"
#: ICD-10 (医保版 2.0 / 国家临床版 2.0). A code is a category (letter + 2 digits: ``J10``), then
#: optionally ``.`` and a subcategory: the 4th character (a digit, or ``x`` where the category has
#: no 4th-character subdivision: ``J90.x00``), alone (``J10.1``) or with the two-digit national
#: extension (``J10.100``), which may carry a further ``x`` extension (``J10.100x005``,
#: ``A35.x00x001``). A dagger code may be followed by its asterisk code, ``+`` code ``*``
#: (``J10.800x003+I41.1*``, ``A01.002+G01*``). Any letter case (``j06.900``, ``J06.900X001``):
#: exporters differ, the marts compare codes upper-cased, and a case slip is no reason to hold
#: back a whole visit. Still refused: ``J10.10``, ``J10.100x05``, a lone ``J10.802*``.
_ICD10_CORE = r"[A-Z][0-9]{2}(\.([0-9]|[0-9x][0-9]{2}))?"
ICD10_PATTERN = (rf"(?i)[A-Z][0-9]{{2}}(\.([0-9]|[0-9x][0-9]{{2}}{_EXTENSION}))?"
                 rf"(\+{_ICD10_CORE}\*)?")
#: ICD-9-CM-3 (医保版 2.0 / 国家临床版 3.0). A category of 2 digits (``13``), then optionally ``.``
#: and one of: the 3rd digit (``13.4``); 3rd and 4th digit (``13.41``, ``13.41x001``); 3rd and 4th
#: character with the two-digit national extension (``13.4100``, ``13.4100x001``), the 4th being
#: ``x`` where ICD-9-CM-3 has no 4th-digit subdivision (``74.1x01`` 剖宫产术, ``57.0x00x005``);
#: 3rd, 4th and one extension digit before an ``x`` extension (``86.700x0013``). Or a 中医操作
#: code of the 17.9 block (其他杂项操作): five characters after the point, the 4th a digit or a
#: letter (``17.91100``, ``17.912A0``). Any letter case. Still refused: ``13.410``, ``13.41000``,
#: ``13.4x001``, ``74.1x`` (an extension cut short or a placeholder with nothing after it).
ICD9CM3_PATTERN = (r"(?i)([0-9]{2}(\.([0-9]"
                   rf"|[0-9]{{2}}{_EXTENSION}"
                   rf"|[0-9][0-9x][0-9]{{2}}{_EXTENSION}"
                   r"|[0-9][0-9x][0-9]x[0-9]{3,4}))?"
                   rf"|17\.9[0-9]{{2}}[0-9A-Z][0-9]{_EXTENSION})")

MOBILE_PATTERN = r"(\+86|0086)?1[3-9][0-9]{9}"
LANDLINE_PATTERN = r"(0[0-9]{2,3}-?)?[0-9]{7,8}(-[0-9]{1,6})?"
POSTCODE_PATTERN = r"[0-8][0-9]{5}"

_YEAR, _MONTH, _DAY = r"[1-9][0-9]{3}", r"(0[1-9]|1[0-2])", r"(0[1-9]|[12][0-9]|3[01])"
_HH, _MM = r"([01][0-9]|2[0-3])", r"[0-5][0-9]"

#: Spec format name → (full-match pattern, strptime format). The pattern enforces padding and
#: field ranges; strptime then rejects dates that do not exist (2025-02-30).
DATE_FORMATS: dict[str, tuple[str, str]] = {
    "yyyy-MM-dd": (rf"{_YEAR}-{_MONTH}-{_DAY}", "%Y-%m-%d"),
    "yyyy-MM-dd HH:mm:ss": (rf"{_YEAR}-{_MONTH}-{_DAY} {_HH}:{_MM}:{_MM}", "%Y-%m-%d %H:%M:%S"),
    "YYYYMMDD": (rf"{_YEAR}{_MONTH}{_DAY}", "%Y%m%d"),
    "yyyy-MM-dd HH:mm": (rf"{_YEAR}-{_MONTH}-{_DAY} {_HH}:{_MM}", "%Y-%m-%d %H:%M"),
    "yyyy/MM/dd": (rf"{_YEAR}/{_MONTH}/{_DAY}", "%Y/%m/%d"),
    "yyyy/MM/dd HH:mm:ss": (rf"{_YEAR}/{_MONTH}/{_DAY} {_HH}:{_MM}:{_MM}", "%Y/%m/%d %H:%M:%S"),
}

#: What may surround an identifier without deciding its validity: ASCII blanks and the
#: ideographic space a Chinese input method types.
BLANKS = " \t\r\n\u3000"
#: Identifiers are upper-cased letter by letter over ASCII only (as SQL ``translate`` does), so
#: no non-ASCII character can turn into a valid one (Python upper-cases ``ſ`` to ``S``).
_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)
#: Checks whose values are identifiers judged and stored in :func:`canonical_code` form.
CANONICAL_CHECKS = ("id_card", "uscc", "org_code", "medical_org_code")

_compile = functools.cache(re.compile)


def _full(pattern: str, s: str) -> bool:
    return _compile(pattern).fullmatch(s) is not None


def canonical_code(s: str) -> str:
    """An identifier (统一社会信用代码, 组织机构代码, 医疗机构代码, ID number) as it is judged and
    stored: surrounding :data:`BLANKS` removed, ASCII letters upper-cased. Published codes are
    often written in lower case (``…3222e``) and the ID number's check character as ``x``; neither
    makes a code another one, so neither may decide validity or split one hospital in two."""
    return s.strip(BLANKS).translate(_ASCII_UPPER)


# --- dates -----------------------------------------------------------------------------------------

def parse_datetime(s: str, fmt: str | Iterable[str]) -> datetime | None:
    """``s`` parsed by the first of the format names (see :data:`DATE_FORMATS`) that fits, else None.

    Accepts one format name or the column's list of accepted formats. Unknown names raise
    ``ValueError``: they are a spec error, not a data error.
    """
    names = (fmt,) if isinstance(fmt, str) else tuple(fmt)
    unknown = [name for name in names if name not in DATE_FORMATS]
    if unknown or not names:
        raise ValueError(f"unknown date formats {unknown}; known: {list(DATE_FORMATS)}")
    for pattern, strp in (DATE_FORMATS[name] for name in names):
        if _full(pattern, s):
            try:
                return datetime.strptime(s, strp)
            except ValueError:  # matches the shape but is no calendar date (Feb 30)
                continue
    return None


def parse_date(s: str, fmt: str | Iterable[str]) -> date | None:
    """Like :func:`parse_datetime` but returns the date (a datetime format's time is dropped)."""
    parsed = parse_datetime(s, fmt)
    return parsed.date() if parsed else None


# --- resident ID numbers (GB 11643) --------------------------------------------------------------------

def id_card_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character for the first 17 digits of an ID number."""
    if not _full(r"[0-9]{17}", first17):
        raise ValueError("an ID number body is 17 ASCII digits")
    total = sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS))
    return ID_CHECK_CHARS[total % 11]


def _birth_ok(born: date | None) -> bool:
    return born is not None and ID_MIN_BIRTH <= born <= date.today()


def id_card_birth_date(s: str) -> date | None:
    """Birth date of a valid 18- or 15-digit ID number (15-digit ones are 19YY), else None."""
    return parse_date(normalise_id_card(s)[6:14], "YYYYMMDD") if id_card_valid(s) else None


def id_card_sex(s: str) -> str | None:
    """GB/T 2261.1 sex code of a valid ID number: "1" (odd sequence digit, male) or "2", else None."""
    canonical = normalise_id_card(s)
    if canonical is None:
        return None
    return "1" if int(canonical[16]) % 2 else "2"


def id_card_valid(s: str) -> bool:
    """True for a valid 18-digit GB 11643 number (``x`` accepted) or a valid legacy 15-digit one,
    judged in :func:`canonical_code` form."""
    s = canonical_code(s)
    if _full(ID18_PATTERN, s):
        return (s[:2] in PROVINCES and _birth_ok(parse_date(s[6:14], "YYYYMMDD"))
                and id_card_check_char(s[:17]) == s[17].upper())
    if _full(ID15_PATTERN, s):
        return s[:2] in PROVINCES and _birth_ok(parse_date("19" + s[6:12], "YYYYMMDD"))
    return False


def normalise_id_card(s: str) -> str | None:
    """The canonical 18-character upper-case form of a valid ID number, else None.

    Pseudonyms are keyed hashes of this form, so a person keeps one pseudonym whether a hospital
    sends the 18-digit number, its lower-case-x spelling or the legacy 15-digit number.
    """
    if not id_card_valid(s):
        return None
    s = canonical_code(s)
    if len(s) == 18:
        return s
    body = s[:6] + "19" + s[6:]
    return body + id_card_check_char(body)


def make_id_card(region6: str, birth: date, seq3: str) -> str:
    """A valid 18-digit ID number for synthetic data (the region must start with a province code)."""
    if not _full(r"[0-9]{6}", region6) or region6[:2] not in PROVINCES:
        raise ValueError(f"region {region6!r} is not a 6-digit code of a known province")
    if not _full(r"[0-9]{3}", seq3):
        raise ValueError(f"sequence {seq3!r} is not 3 digits")
    body = f"{region6}{birth.year:04d}{birth.month:02d}{birth.day:02d}{seq3}"
    number = body + id_card_check_char(body)
    if not id_card_valid(number):
        raise ValueError(f"birth date {birth} outside {ID_MIN_BIRTH}..today")
    return number


# --- organisation codes (GB 11714) ----------------------------------------------------------------

def org_code_check_char(body8: str) -> str:
    """The GB 11714 check character (0-9 or X) for an 8-character body of 0-9A-Z."""
    if not _full(r"[0-9A-Z]{8}", body8):
        raise ValueError("an organisation code body is 8 characters 0-9A-Z")
    total = sum(ORG_ALPHABET.index(c) * w for c, w in zip(body8, ORG_WEIGHTS))
    return ORG_CHECK_CHARS[(11 - total % 11) % 11]


def org_code_valid(s: str) -> bool:
    """True for a 9-character GB 11714 code with a correct check, also printed as ``XXXXXXXX-X``
    (judged in :func:`canonical_code` form)."""
    s = canonical_code(s)
    return _full(ORG_PATTERN, s) and org_code_check_char(s[:8]) == s[-1]


def make_org_code(body8: str) -> str:
    """``body8`` plus its check character (9 characters, no hyphen)."""
    return body8 + org_code_check_char(body8)


# --- unified social credit codes (GB 32100) ----------------------------------------------------------

def uscc_check_char(first17: str) -> str:
    """The GB 32100 check character for the first 17 characters of a USCC."""
    if not _full(r"[0-9A-HJ-NP-RTUW-Y]{17}", first17):
        raise ValueError("a USCC body is 17 characters of 0-9A-Z without I, O, S, V, Z")
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def uscc_valid(s: str) -> bool:
    """True for an 18-character USCC with a correct check whose characters 9-17 are a valid org code
    (judged in :func:`canonical_code` form)."""
    s = canonical_code(s)
    return (_full(USCC_PATTERN, s) and uscc_check_char(s[:17]) == s[17]
            and org_code_valid(s[8:17]))


def make_uscc(reg_dept: str, org_type: str, region6: str, org_code9: str) -> str:
    """A USCC from its parts: 登记管理部门 (1 char), 机构类别 (1 char), region, organisation code."""
    if len(org_code9) != 9 or not org_code_valid(org_code9):
        raise ValueError(f"{org_code9!r} is not a valid 9-character organisation code")
    if len(reg_dept) != 1 or len(org_type) != 1 or not _full(r"[0-9]{6}", region6):
        raise ValueError("registration department and type are 1 character, region 6 digits")
    return (body := reg_dept + org_type + region6 + org_code9) + uscc_check_char(body)


# --- 医疗机构代码 (WS 218) ----------------------------------------------------------------------------

def medical_org_code_valid(s: str) -> bool:
    """True for a 22-character 医疗机构代码 whose embedded organisation code has a correct check
    (judged in :func:`canonical_code` form)."""
    s = canonical_code(s)
    return _full(MEDICAL_ORG_PATTERN, s) and org_code_valid(s[:9])


def make_medical_org_code(org_code9: str, region6: str, econ2: str, category4: str,
                          mgmt1: str) -> str:
    """A 医疗机构代码 from its parts; raises ``ValueError`` when the result would not validate."""
    code = org_code9 + region6 + econ2 + category4 + mgmt1
    if not medical_org_code_valid(code):
        raise ValueError(f"parts do not form a valid 医疗机构代码: {code!r}")
    return code


# --- classification codes and contact details ---------------------------------------------------------

def icd10_valid(s: str) -> bool:
    """ICD-10 国家临床版2.0 shape (see :data:`ICD10_PATTERN`); no dictionary look-up."""
    return _full(ICD10_PATTERN, s)


def icd9cm3_valid(s: str) -> bool:
    """ICD-9-CM-3 国家临床版3.0 shape (see :data:`ICD9CM3_PATTERN`); no dictionary look-up."""
    return _full(ICD9CM3_PATTERN, s)


def mobile_valid(s: str) -> bool:
    """Mainland mobile number, optionally prefixed +86 or 0086."""
    return _full(MOBILE_PATTERN, s)


def phone_valid(s: str) -> bool:
    """Mobile number, or landline with optional area code and extension (010-12345678-123)."""
    return mobile_valid(s) or _full(LANDLINE_PATTERN, s)


def postcode_valid(s: str) -> bool:
    """Six digits, the first 0-8 (mainland postal zones)."""
    return _full(POSTCODE_PATTERN, s)
