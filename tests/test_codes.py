"""The national code dictionaries as shipped reference data, the flu case definition checked
against them, ``hqms codes`` and the hospital registry's identifiers in canonical form."""
from __future__ import annotations

import csv
import json

import pytest

from hqms import codes, spec
from hqms.cli import main as hqms
from hqms.generate.registry import REGISTRY_COLUMNS, build_registry
from hqms.hospitals import read_registry


def test_dictionaries_are_shipped_with_their_origin():
    readme = (spec.REFERENCE_DIR / "README.md").read_text(encoding="utf-8")
    assert "OpenDRG/DRG_Python" in readme and "5d523a26" in readme and "python-stdnum" in readme
    assert len(codes.dictionary("icd10")) == 33_304 and len(codes.dictionary("icd9cm3")) == 13_686
    assert codes.dictionary("icd9cm3")["74.1X01"] == ("74.1x01", "剖宫产术，子宫下段横切口")


def test_every_dictionary_flu_code_is_a_flu_diagnosis_labelled_by_the_dictionary():
    """Every J09–J11 code of the dictionary matches a case-definition prefix, those that are
    dictionary codes carry the dictionary's label, and every J1x.0 code is flu pneumonia."""
    rows = spec.reference_csv("flu_icd10.csv")
    prefixes = [r["code_prefix"].upper() for r in rows]
    flu = {key: value for key, value in codes.dictionary("icd10").items() if key[:3] in ("J09", "J10", "J11")}
    assert len(flu) >= 40
    for key, (code, name) in flu.items():
        assert any(key.startswith(p) for p in prefixes), code
    pneumonia = {r["code_prefix"].upper() for r in rows if r["is_pneumonia"] == "true"}
    for r in rows:
        key = r["code_prefix"].upper()
        if key in flu:
            assert r["description_zh"] == flu[key][1], key
            assert (r["is_pneumonia"] == "true") == (key[:5] in pneumonia), key
        else:  # the groups: a category or subcategory of ICD-10 itself
            assert len(key) in (3, 5) and key[:3] in ("J09", "J10", "J11"), key
    assert {k for k in flu if k[4:5] == "0" and k[:3] != "J09"} <= {r["code_prefix"].upper() for r in rows
                                                                    if r["is_pneumonia"] == "true"}


def test_nearest_codes_come_from_the_same_category():
    assert [c for c, _ in codes.nearest("icd10", "j11.101")] == ["J11.100", "J11.102", "J11.000"]
    assert codes.nearest("icd9cm3", "74.1001")[0][0] == "74.1x01"
    assert codes.nearest("icd10", "U99.999") == []


@pytest.mark.parametrize(("argv", "expected"), [
    (["codes", "RC040", "--search", "中国"], {("156", "中国"), ("CHN", "中国")}),
    (["codes", "icd10", "j10.80"], {("J10.800x003+I41.1*", "已知病毒的流感性心肌炎")}),
    (["codes", "icd9cm3", "74.1"], {("74.1x01", "剖宫产术，子宫下段横切口")}),
])
def test_codes_command_lists_codes_and_names(capsys, argv, expected):
    assert hqms(argv) == 0
    listed = {tuple(line.split("\t")) for line in capsys.readouterr().out.splitlines()}
    assert expected <= listed
    assert all(code.upper().startswith(argv[2].upper()) for code, _ in listed if argv[2][0] != "-")


def test_codes_command_lists_tables_and_refuses_unknown_ones(capsys):
    assert hqms(["codes", "--json"]) == 0
    tables = {t["table"]: t["codes"] for t in json.loads(capsys.readouterr().out)}
    assert tables["icd10"] == 33_304 and tables["RC040"] > 30
    assert hqms(["codes", "RC999"]) == 2
    assert "hqms codes" in capsys.readouterr().err


def test_registry_identifiers_are_stored_upper_case(tmp_path):
    """A registry typed with lower-case codes and stray blanks loads in canonical form."""
    (h,) = build_registry(1, seed=3)
    path = tmp_path / "registry.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.DictWriter(fh, REGISTRY_COLUMNS, extrasaction="ignore")
        out.writeheader()
        row = {c: str(getattr(h, c)) for c in REGISTRY_COLUMNS}
        out.writerow(row | {c: f" {row[c].lower()} " for c in ("org_code", "org_code9", "uscc", "licence_no")})
    (loaded,) = read_registry(path)
    assert loaded[:4] == (h.org_code, h.org_code9, h.uscc, h.licence_no)
    assert any(c.isalpha() for c in h.uscc + h.org_code)  # the case really changed something
