"""Code validators and makers: public known-good examples, and the edge cases hospitals get wrong.

ID numbers other than the GB 11643 standard's own published example are built at test time with
the makers, so no realistic identifier is committed.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from hqms import validators as v
from hqms.spec import DATE_FORMATS as SPEC_DATE_FORMATS

STANDARD_ID = "11010519491231002X"  # the example printed in GB 11643, check character X
STANDARD_ID_15 = "110105491231002"  # the same person's legacy 15-digit number


def id_with_check(body17: str) -> str:
    return body17 + v.id_card_check_char(body17)


def wrong_last(code: str, alphabet: str) -> list[str]:
    """Every variant of ``code`` with a different last character from ``alphabet``."""
    return [code[:-1] + c for c in alphabet if c != code[-1]]


# --- ID numbers ------------------------------------------------------------------------------------

def test_standard_example_valid_in_every_spelling():
    assert v.id_card_valid(STANDARD_ID)
    assert v.id_card_valid(STANDARD_ID.lower())
    assert v.id_card_check_char(STANDARD_ID[:17]) == "X"
    assert v.normalise_id_card(STANDARD_ID.lower()) == STANDARD_ID


def test_fifteen_digit_number_upgrades_to_the_known_eighteen_digit_one():
    assert v.id_card_valid(STANDARD_ID_15)
    assert v.normalise_id_card(STANDARD_ID_15) == STANDARD_ID
    assert v.id_card_birth_date(STANDARD_ID_15) == date(1949, 12, 31)
    assert v.id_card_sex(STANDARD_ID_15) == v.id_card_sex(STANDARD_ID) == "2"


def test_public_mock_with_wrong_check_digit_is_rejected():
    # interface-fields.md §5: this number circulates in public mocks; its check digit should be 6.
    assert not v.id_card_valid("110101198005201234")
    assert v.id_card_valid("110101198005201236")


@pytest.mark.parametrize("bad", wrong_last(STANDARD_ID, "0123456789X"))
def test_every_wrong_check_character_is_rejected(bad):
    assert not v.id_card_valid(bad)
    assert v.normalise_id_card(bad) is None


def test_made_number_round_trips_birth_date_and_sex():
    born = date(1987, 6, 15)
    odd, even = v.make_id_card("440106", born, "123"), v.make_id_card("440106", born, "124")
    assert v.id_card_valid(odd) and v.id_card_valid(even)
    assert v.id_card_birth_date(odd) == born
    assert (v.id_card_sex(odd), v.id_card_sex(even)) == ("1", "2")


def test_birth_date_bounds():
    today = date.today()
    assert v.id_card_valid(v.make_id_card("310101", today, "001"))
    assert v.id_card_valid(v.make_id_card("310101", date(1900, 1, 1), "001"))
    for born in (today + timedelta(days=1), date(1899, 12, 31)):
        assert not v.id_card_valid(id_with_check(f"310101{born:%Y%m%d}001"))
        with pytest.raises(ValueError):
            v.make_id_card("310101", born, "001")


@pytest.mark.parametrize(("born", "ok"), [("20000229", True), ("20240229", True),
                                          ("20230229", False), ("19000229", False),
                                          ("20240230", False), ("20241301", False),
                                          ("20240400", False), ("20240431", False)])
def test_birth_date_must_exist(born, ok):
    assert v.id_card_valid(id_with_check(f"510104{born}007")) is ok


@pytest.mark.parametrize(("yymmdd", "ok"), [("960229", True), ("970229", False), ("000229", False),
                                            ("991231", True), ("991301", False)])
def test_fifteen_digit_dates_are_in_the_1900s(yymmdd, ok):
    # 1900 was not a leap year, so 00-02-29 does not exist.
    assert v.id_card_valid(f"510104{yymmdd}007") is ok


@pytest.mark.parametrize(("province", "ok"), [("11", True), ("44", True), ("82", True), ("00", False),
                                             ("10", False), ("20", False), ("66", False),
                                             ("83", False), ("91", False), ("99", False)])
def test_region_must_start_with_a_province_code(province, ok):
    assert v.id_card_valid(id_with_check(f"{province}010419800101001")) is ok
    assert v.id_card_valid(f"{province}0104800101001") is ok


@pytest.mark.parametrize("bad", [
    "", STANDARD_ID[:17], STANDARD_ID + "1", STANDARD_ID[:16], STANDARD_ID_15[:14],
    STANDARD_ID_15 + "0", STANDARD_ID_15 + "X", STANDARD_ID[:9] + " " + STANDARD_ID[9:],
    STANDARD_ID.replace("1", "１", 1),  # full-width digit
    STANDARD_ID[:17] + "Y", "11010519491231-02X", STANDARD_ID[:6] + "1949-12-31" + "002X"])
def test_malformed_id_numbers(bad):
    assert not v.id_card_valid(bad)
    assert v.normalise_id_card(bad) is None
    assert v.id_card_birth_date(bad) is None and v.id_card_sex(bad) is None


@pytest.mark.parametrize(("region", "seq"), [("11010", "001"), ("990101", "001"), ("11010a", "001"),
                                             ("110101", "01"), ("110101", "0a1")])
def test_make_id_card_refuses_bad_parts(region, seq):
    with pytest.raises(ValueError):
        v.make_id_card(region, date(1980, 1, 1), seq)


@pytest.mark.parametrize("bad", ["1101051949123100", "1101051949123100x", "１１０１０５１９４９１２３１００２"])
def test_id_check_char_needs_17_ascii_digits(bad):
    with pytest.raises(ValueError):
        v.id_card_check_char(bad)


# --- organisation codes ---------------------------------------------------------------------------

def body_with_check(check: str) -> str:
    """The first 8-digit body (in a fixed order) whose GB 11714 check character is ``check``."""
    return next(body for n in range(10_000_000, 10_001_000)
                if v.org_code_check_char(body := str(n)) == check)


@pytest.mark.parametrize("good", ["736798027", "776049653", "73679802-7", "77604965-3", "MA5CJQ4N5"])
def test_known_org_codes(good):
    assert v.org_code_valid(good)


@pytest.mark.parametrize("check", ["X", "0"])
def test_org_code_check_x_and_zero(check):
    # 11 - (sum mod 11) = 10 prints as X, = 11 prints as 0.
    code = v.make_org_code(body := body_with_check(check))
    assert code[-1] == check and v.org_code_valid(code) and v.org_code_valid(f"{body}-{check}")


@pytest.mark.parametrize("bad", [*wrong_last("736798027", "0123456789X"), "73679802", "7367 98027",
                                 "7367980277", "7367-98027", "73679802--7", "73679802-",
                                 "MA5CJQ4ſ5", "-73679802", "73679802x"])
def test_bad_org_codes(bad):
    assert not v.org_code_valid(bad)


def test_org_check_char_needs_8_upper_case_characters():
    assert v.org_code_check_char("MA5CJQ4N") == "5"
    for bad in ("MA5CJQ4", "ma5cjq4n", "MA5CJQ4N5", "MA5C-Q4N"):
        with pytest.raises(ValueError):
            v.org_code_check_char(bad)


# --- unified social credit codes ---------------------------------------------------------------------

@pytest.mark.parametrize("good", ["91350200776049653A", "91440101MA5CJQ4N59"])
def test_known_usccs(good):
    assert v.uscc_valid(good)
    assert v.uscc_check_char(good[:17]) == good[-1]
    assert v.make_uscc(good[0], good[1], good[2:8], good[8:17]) == good


@pytest.mark.parametrize("letter", list("IOSVZ"))
def test_uscc_with_excluded_letters_is_never_valid(letter):
    good = "91440101MA5CJQ4N59"
    for pos in range(18):
        assert not v.uscc_valid(good[:pos] + letter + good[pos + 1:])
    with pytest.raises(ValueError):
        v.uscc_check_char(letter + good[1:17])


def test_uscc_needs_a_valid_embedded_org_code():
    body = "12440101" + "MA5CJQ4N" + "6"  # organisation code with a wrong check character
    assert not v.org_code_valid(body[8:])
    assert not v.uscc_valid(body + v.uscc_check_char(body))
    with pytest.raises(ValueError):
        v.make_uscc("1", "2", "440101", body[8:])


@pytest.mark.parametrize("bad", [*wrong_last("91350200776049653A", v.USCC_ALPHABET),
                                 "9135020077604965 3A", "91440101MA5CJQ4ſ59", "91350200776049653",
                                 "91350200776049653AA", "9135020077604965-3A", ""])
def test_bad_usccs(bad):
    assert not v.uscc_valid(bad)


def test_make_uscc_refuses_bad_parts():
    for args in (("91", "", "440101", "MA5CJQ4N5"), ("9", "1", "44010", "MA5CJQ4N5"),
                 ("9", "1", "440101", "MA5CJQ4N-5"), ("9", "I", "440101", "MA5CJQ4N5")):
        with pytest.raises(ValueError):
            v.make_uscc(*args)


# --- 医疗机构代码 ------------------------------------------------------------------------------------

MEDICAL = v.make_medical_org_code("776049653", "440101", "11", "A100", "1")


def test_made_medical_org_code_layout():
    assert MEDICAL == "776049653" "440101" "11" "A100" "1" and len(MEDICAL) == 22
    assert v.medical_org_code_valid(MEDICAL)
    assert v.medical_org_code_valid(v.make_medical_org_code("MA5CJQ4N5", "510104", "19", "B100", "9"))


@pytest.mark.parametrize("org_code", wrong_last(MEDICAL[:9], "0123456789X"))
def test_medical_org_code_with_wrong_embedded_check_char(org_code):
    assert not v.medical_org_code_valid(org_code + MEDICAL[9:])


@pytest.mark.parametrize("bad", [
    MEDICAL[:-1], MEDICAL + "1", MEDICAL[:-1] + "3", MEDICAL[:-1] + "0",  # management class 1/2/9
    MEDICAL.replace("A100", "A 100"), MEDICAL.replace("A100", "AA00"), MEDICAL.replace("A100", "1100"),
    MEDICAL.replace("440101", "44010A"), MEDICAL.replace("11A", "1XA"), "77604965-3" + MEDICAL[9:],
    MEDICAL[:21] + "\u00a0" + MEDICAL[21:], "776049653", ""])
def test_bad_medical_org_codes(bad):
    assert not v.medical_org_code_valid(bad)


def test_make_medical_org_code_refuses_invalid_parts():
    with pytest.raises(ValueError):
        v.make_medical_org_code("776049654", "440101", "11", "A100", "1")
    with pytest.raises(ValueError):
        v.make_medical_org_code("776049653", "440101", "11", "A100", "3")


# --- ICD, phone, postcode ----------------------------------------------------------------------------

@pytest.mark.parametrize("good", ["J10", "J10.1", "J11.101", "J10.000", "J90.x00", "I10.x00",
                                  "J10.100x005", "J90.x00x002", "J10.802+I41.1*",
                                  "A17.000+G01.x00*", "A17.0+G01*",
                                  # any letter case: exporters differ, the marts upper-case codes
                                  "j10", "J10.X00", "J10.100X005", "j06.900x001"])
def test_icd10_valid(good):
    """Good forms of the national editions, ``x`` placeholders and dagger/asterisk pairs included."""
    assert v.icd10_valid(good)


@pytest.mark.parametrize("bad", ["", "J1", "J100", "J10.", "J10.10", "J10.1000", "J10.100x05", "J10.1x005", "J10.802+I41.1",
                                 "J10.802+I41.1*+", "J10.802*", "J10 ", " J10", "J10\n", "M8140/3",
                                 "J10.x", "J10.800x003+I41.1", "J10.800x003+", "J10.x0x001", "J10.800x00003",
                                 "J10.800x003*", "JJ0.800", "J10.800x003+I41.1*x001", "J1O.800"])
def test_icd10_invalid(bad):
    assert not v.icd10_valid(bad)


@pytest.mark.parametrize("good", ["13", "13.4", "13.41", "13.4100", "13.4100x001", "13.41x001", "13.4100X001",
                                  # no 4th-digit subdivision: x as the 4th character (医保版 2.0)
                                  "74.1x01", "73.6x01", "38.7x04", "57.0x00x005", "74.1X01",
                                  # 中医操作 (17.9 block), a 4-digit extension
                                  "17.91100", "17.912A0", "17.912a0", "86.700x0013"])
def test_icd9cm3_valid(good):
    assert v.icd9cm3_valid(good)


@pytest.mark.parametrize("bad", ["", "1", "134", "13.", "13.410", "13.41000", "13.4x001",
                                 "13.4100x01", "a13.41", "13.41 ", "74.1x", "74.1x0", "74.xx01", "74.1x01x",
                                 "7x.1x01", "74.1x01x01", "13.912A0", "17.912AA", "17.91A00", "17.912A",
                                 "17.91100x1", "74.1x01+", "13.4100x00001", "１3.41"])
def test_icd9cm3_invalid(bad):
    assert not v.icd9cm3_valid(bad)


@pytest.mark.parametrize(("s", "mobile", "phone"), [
    ("13800000000", True, True), ("+8619912345678", True, True), ("008615012345678", True, True),
    ("12800000000", False, False), ("1380000000", False, False), ("138000000000", False, False),
    ("+86 13800000000", False, False), ("86138000000000", False, False),
    ("010-12345678", False, True), ("01012345678", False, True), ("0755-1234567", False, True),
    ("12345678", False, True), ("010-12345678-8001", False, True), ("010-123456", False, False),
    ("(010)12345678", False, False), ("", False, False), ("１３８００００００００", False, False)])
def test_mobile_and_phone(s, mobile, phone):
    assert (v.mobile_valid(s), v.phone_valid(s)) == (mobile, phone)


@pytest.mark.parametrize(("s", "ok"), [("010010", True), ("100000", True), ("830000", True),
                                       ("900000", False), ("10000", False), ("1000000", False),
                                       ("10000a", False), ("", False), ("100 00", False)])
def test_postcode(s, ok):
    assert v.postcode_valid(s) is ok


# --- dates ----------------------------------------------------------------------------------------

def test_formats_cover_the_spec():
    assert tuple(v.DATE_FORMATS) == SPEC_DATE_FORMATS


VALID = {
    "yyyy-MM-dd": ("2024-02-29", datetime(2024, 2, 29)),
    "yyyy-MM-dd HH:mm:ss": ("2024-02-29 23:59:59", datetime(2024, 2, 29, 23, 59, 59)),
    "YYYYMMDD": ("20240229", datetime(2024, 2, 29)),
    "yyyy-MM-dd HH:mm": ("2024-02-29 00:00", datetime(2024, 2, 29)),
    "yyyy/MM/dd": ("2024/02/29", datetime(2024, 2, 29)),
    "yyyy/MM/dd HH:mm:ss": ("2024/02/29 07:05:09", datetime(2024, 2, 29, 7, 5, 9)),
}


def variants(text: str) -> list[str]:
    """Invalid spellings of a valid value of any format: bad month/day/time, padding, extra text."""
    sep = "" if text[4].isdigit() else text[4]
    month_at, day_at = 4 + len(sep), 6 + 2 * len(sep)
    out = [text[:month_at] + "13" + text[month_at + 2:],  # month 13
           text[:month_at] + "00" + text[month_at + 2:],
           text[:day_at] + "30" + text[day_at + 2:],  # Feb 30
           text[:day_at] + "00" + text[day_at + 2:],
           text.replace("2024", "2023", 1),  # Feb 29 in a non-leap year
           text.replace("2024", "1900", 1),  # 1900 was not a leap year
           text[:month_at] + "2" + text[month_at + 2:],  # unpadded month
           text + " ", text + "Z", " " + text, text + "\n", text[:-1], text + "0"]
    if sep:
        out.append(text.replace(sep, "."))
    if " " in text:  # the time starts after "yyyy-MM-dd "
        out += [text.replace(" ", "T"), text.replace(" ", "  "), text[:11] + "24" + text[13:],
                text[:14] + "60" + text[16:], text[:11] + text[12:]]  # hour 24, minute 60, "7:05"
    return out


@pytest.mark.parametrize("fmt", list(VALID))
def test_every_format_valid_and_invalid(fmt):
    text, expected = VALID[fmt]
    assert v.parse_datetime(text, fmt) == expected
    assert v.parse_date(text, fmt) == expected.date()
    for bad in variants(text):
        assert v.parse_datetime(bad, fmt) is None, bad


@pytest.mark.parametrize("fmt", list(VALID))
def test_formats_do_not_accept_each_other(fmt):
    for other, (text, _) in VALID.items():
        assert (v.parse_datetime(text, fmt) is not None) is (other == fmt)


def test_format_list_takes_the_first_that_fits():
    formats = ("yyyy-MM-dd", "YYYYMMDD")
    assert v.parse_date("20250106", formats) == date(2025, 1, 6)
    assert v.parse_date("2025-01-06", formats) == date(2025, 1, 6)
    assert v.parse_date("2025-01-06 10:00:00", formats) is None
    assert v.parse_date("2025-1-6", formats) is None


@pytest.mark.parametrize("text", ["0999-01-01", "0000-01-01", "10000-01-01", "2025-01-06 10:00"])
def test_year_must_have_four_digits_from_1000(text):
    assert v.parse_date(text, "yyyy-MM-dd") is None


def test_unknown_format_is_a_spec_error():
    with pytest.raises(ValueError):
        v.parse_date("2025-01-06", "dd/MM/yyyy")
    with pytest.raises(ValueError):
        v.parse_date("2025-01-06", ["yyyy-MM-dd", "dd/MM/yyyy"])


# --- identifiers are normalised before they are judged --------------------------------------------

@pytest.mark.parametrize(("valid", "value"), [
    (v.org_code_valid, "ma5cjq4n5"), (v.org_code_valid, " 73679802-7\t"),
    (v.uscc_valid, "91440101ma5cjq4n59"), (v.uscc_valid, "\u300091350200776049653a "),
    (v.medical_org_code_valid, MEDICAL.lower()), (v.medical_org_code_valid, MEDICAL.replace("A100", "a100") + " "),
    (v.id_card_valid, " " + STANDARD_ID.lower() + "\n")])
def test_case_and_blanks_never_decide_validity(valid, value):
    """Published codes are often written in lower case (``…3222e``) or copied with blanks."""
    assert valid(value)


def test_canonical_code_is_upper_case_and_trimmed():
    assert v.canonical_code(" 91440101ma5cjq4n59\u3000") == "91440101MA5CJQ4N59"
    assert v.normalise_id_card(" " + STANDARD_ID.lower()) == STANDARD_ID
    # only ASCII letters change: no other character can become a valid one
    assert v.canonical_code("ma5cjq4ſ5") == "MA5CJQ4ſ5" and not v.org_code_valid("ma5cjq4ſ5")
