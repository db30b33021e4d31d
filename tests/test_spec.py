"""The interface spec as data: every dataset YAML and reference CSV, checked against the sources.

Counts and key choices come from ``shared/reference/interface-fields.md``; the privacy tests guard the
de-identification contract (a personal column wrongly marked ``none`` would reach the warehouse in
clear text), so they look at the Chinese and English names, not at a hand-kept list of codes.
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from hqms import spec, validators
from hqms.spec import Column, Dataset

ROOT = Path(__file__).resolve().parents[1]

DATASETS = spec.datasets()
ALL_COLUMNS = [(ds, col) for ds in DATASETS.values() for col in ds.columns]

#: Column counts of the source lists. fever_: §4.1's heading says 52 but it names 50 columns, and so
#: does the exporter's model (Fever.java); we transcribe the 50 named ones.
#: hdr_ is ours (§3.4); hqms_ and mzsy_ are the counts of the lists in §1.3 and §2.2 (western page).
EXPECTED_COUNTS = {"flu": 61, "fever": 50, "drug": 37, "lab": 29, "examine": 21, "hda": 15, "pdr": 11,
                   "lis": 9, "hdr": 14, "hqms": 346, "mzsy": 122}

EXPECTED = {  # id: (prefix, stream, natural key, org column, event column)
    "flu": ("flu_", "flu", ("P7501", "P7502", "P7506"), "P900", "P7506"),
    "hqms": ("hqms_", "flu", ("P3", "P2"), "P900", "P25"),
    "hda": ("hda_", "flu", ("P3", "P22"), None, "P25"),
    "hdr": ("hdr_", "flu", ("P3",), None, "P8509"),
    "pdr": ("pdr_", "flu", ("P7501", "P7502", "P7506", "P7500"), None, "P7506"),
    "lis": ("lis_", "flu", ("P7501", "P7502", "P7506", "P8000"), None, "P7506"),
    "fever": ("fever_", "fever", ("P7000",), "P900", "P7506"),
    "drug": ("drug_", "fever", ("P7000", "P7800", "P7805"), None, "P7506"),
    "lab": ("lab_", "fever", ("P7000", "P7605", "P7613", "P7623"), None, "P7506"),
    "examine": ("examine_", "fever", ("P7000", "P7704", "P7708"), None, "P7506"),
    "mzsy": ("mzsy_", "outpatient", ("JZKH", "JZSJ", "JZKSDM"), "ZZJGDM", "JZSJ"),
}


def _ids(items: list[tuple[Dataset, Column]]) -> list[str]:
    return [f"{ds.id}.{col.code}" for ds, col in items]


# --- datasets as a whole --------------------------------------------------------------------------

def test_every_expected_dataset_loads_with_its_prefix_stream_and_keys():
    assert set(DATASETS) == set(EXPECTED)
    for ds_id, (prefix, stream, key, org, event) in EXPECTED.items():
        ds = DATASETS[ds_id]
        assert (ds.prefix, ds.stream, ds.natural_key, ds.org_column, ds.event_column) == \
            (prefix, stream, key, org, event), ds_id


@pytest.mark.parametrize("ds_id,count", sorted(EXPECTED_COUNTS.items()))
def test_column_count_matches_the_source(ds_id: str, count: int):
    assert len(DATASETS[ds_id].columns) == count


def test_front_page_repeated_blocks_are_complete():
    """hqms_ holds 10 other diagnoses (code, name, POA, outcome), 3 pathology and 3 external-cause
    pairs, 10 procedures of 13 items and 5 ICU stays, in the exporter's order."""
    codes = DATASETS["hqms"].codes
    names = [c.name for c in DATASETS["hqms"].columns]
    for n in range(1, 11):
        assert {f"other_dx{n}_code", f"other_dx{n}_name", f"other_dx{n}_poa", f"other_dx{n}_outcome"} <= set(names)
        assert sum(1 for name in names if name.startswith(f"op{n}_")) == 13
    assert sum(1 for name in names if re.fullmatch(r"icu[1-5]_(unit|in|out)", name)) == 15
    assert codes[:8] == ("P900", "P6891", "P686", "P800", "P1", "P2", "P3", "P4")
    assert codes[-1] == "P781"


def test_outpatient_page_is_the_western_page():
    mzsy = DATASETS["mzsy"]
    names = {c.name for c in mzsy.columns}
    assert {f"other_dx{n}_code" for n in range(1, 11)} <= names
    assert {f"proc{n}_code" for n in range(1, 6)} <= names
    tcm_only = {"MZD_ZB", "JBDM_ZB", "ZYZLCZBM1", "ZYZJSY", "CTYPSY", "PFKLSY", "ZCYLB1", "ZYZJF", "PFKLF"}
    assert not tcm_only & set(mzsy.codes)


def test_hdr_is_marked_as_defined_by_us_and_its_own_codes_say_so():
    hdr = DATASETS["hdr"]
    assert hdr.defined_by_us
    assert [ds.id for ds in DATASETS.values() if ds.defined_by_us] == ["hdr"]
    for col in hdr.columns:
        if not col.code.startswith("P"):
            assert re.fullmatch(r"HDR\d\d", col.code) and "defined by us" in col.note


# --- keys -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ds_id", sorted(EXPECTED))
def test_key_org_and_event_columns_exist_and_are_required(ds_id: str):
    """A natural key or event column that may be empty cannot identify or date a record. An
    optional column may only refine a key at its end (lab's result detail P7623: empty is one
    value, "no detail"), after required columns that identify the record on their own."""
    ds = DATASETS[ds_id]
    for code in (ds.event_column, *(c for k in ds.join_keys.values() for c in k)):
        assert ds.column(code).required, f"{ds_id}.{code}"
    required = [c for c in ds.natural_key if ds.column(c).required]
    assert required and list(ds.natural_key[:len(required)]) == required, f"{ds_id}: {ds.natural_key}"
    if ds.org_column:
        org = ds.column(ds.org_column)
        assert org.required and org.check == "medical_org_code"
        assert ds.org_column not in ds.natural_key, "the pipeline adds the uploader's org itself"
    assert ds.column(ds.event_column).type in ("date", "datetime")


def test_join_keys_have_the_same_columns_and_types_in_every_dataset():
    seen: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    users: dict[str, set[str]] = defaultdict(set)
    for ds in DATASETS.values():
        for name, key in ds.join_keys.items():
            shape = (key, tuple(ds.column(c).type for c in key))
            assert seen.setdefault(name, shape) == shape, f"{ds.id}.{name}"
            users[name].add(ds.id)
    assert users == {"visit": {"flu", "pdr", "lis"}, "admission": {"hqms", "hda", "hdr"},
                     "fever_visit": {"fever", "drug", "lab", "examine"}}


def test_natural_key_columns_survive_deidentification():
    """Dedupe across re-sends needs the key: it may be pseudonymised but never dropped."""
    for ds in DATASETS.values():
        for code in ds.natural_key:
            assert ds.column(code).privacy in ("none", "pseudonymise"), f"{ds.id}.{code}"


# --- columns ----------------------------------------------------------------------------------------

def test_every_code_table_exists_in_rc_codes():
    tables = spec.code_tables()
    used = {col.code_table for _, col in ALL_COLUMNS if col.code_table}
    assert used <= set(tables), used - set(tables)
    for _, col in ALL_COLUMNS:
        if col.code_table:
            assert spec.allowed_values(col)


def test_conditions_name_values_their_column_can_hold():
    """check_when / required_if conditions on a value the column can never take never fire."""
    for ds in DATASETS.values():
        conds = [(f"{ds.id}.{c.code}.check_when", c.check_when) for c in ds.columns if c.check_when]
        conds += [(r.id, r.when) for r in ds.rules if r.when]
        for where, cond in conds:
            allowed = spec.allowed_values(ds.column(cond.column))
            assert allowed and set(cond.values) <= set(allowed), where


def test_shared_codes_mean_the_same_everywhere():
    """A P-code used by several files has one type and one privacy treatment."""
    by_code: dict[str, set[tuple]] = defaultdict(set)
    for _, col in ALL_COLUMNS:
        by_code[col.code].add((col.type, col.privacy, col.pseudonym, col.encrypt, col.generalise, col.check))
    assert {code: shapes for code, shapes in by_code.items() if len(shapes) > 1} == {}


def test_date_columns_accept_the_documented_formats():
    for ds, col in ALL_COLUMNS:
        if col.type == "date":
            assert {"yyyy-MM-dd", "YYYYMMDD"} <= set(col.formats), f"{ds.id}.{col.code}"
        if col.type == "datetime":
            assert {"yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd"} <= set(col.formats), f"{ds.id}.{col.code}"


def test_money_and_counts_cannot_be_negative():
    for ds, col in ALL_COLUMNS:
        if col.type in ("integer", "decimal"):
            assert col.min is not None and col.min >= 0, f"{ds.id}.{col.code}"


def test_free_strings_have_a_length_and_chosen_lengths_are_said():
    for ds, col in ALL_COLUMNS:
        if col.type == "string" and not (col.code_table or col.values):
            assert col.max_length, f"{ds.id}.{col.code}"


def test_diagnosis_and_procedure_code_columns_are_checked():
    for ds, col in ALL_COLUMNS:
        zh = col.zh
        if re.search(r"(诊断|死因)编码\d*$|诊断代码\d*$", zh) and "病理" not in zh:
            assert col.check == "icd10", f"{ds.id}.{col.code} {zh}"
        if re.search(r"手术(及)?操作编码\d*$", zh):
            assert col.check == "icd9cm3", f"{ds.id}.{col.code} {zh}"


def test_id_numbers_are_checked_only_for_resident_id_cards_where_the_type_is_sent():
    assert DATASETS["flu"].column("P13").check_when == spec.Condition("P7503", ("01",))
    assert DATASETS["fever"].column("P13").check_when == spec.Condition("P7503", ("01",))
    assert DATASETS["mzsy"].column("ZJHM").check_when == spec.Condition("ZJLB", ("1",))
    for ds_id, code in (("flu", "P13"), ("fever", "P13"), ("hqms", "P13"), ("mzsy", "ZJHM"),
                        ("flu", "P800"), ("mzsy", "ZJLB")):
        assert "-" in DATASETS[ds_id].column(code).null_tokens, f"{ds_id}.{code}"


# --- privacy ------------------------------------------------------------------------------------

PERSONAL_ZH = re.compile(r"姓名|电话|地址|住址|主诉|现病史|体格检查|过敏药物|过敏源|过敏原|经过|医嘱$|症状描述")
PERSONAL_EN = re.compile(r"(^|_)(patient_name|contact_name|phone|address|complaint)($|_)")
STAFF_ZH = re.compile(r"(医师|护士|护师|编码员|科主任|术者|Ⅰ助|Ⅱ助|操作者)\d*$")


@pytest.mark.parametrize("ds,col", [(d, c) for d, c in ALL_COLUMNS
                                    if PERSONAL_ZH.search(c.zh) or PERSONAL_EN.search(c.name)],
                         ids=_ids([(d, c) for d, c in ALL_COLUMNS
                                   if PERSONAL_ZH.search(c.zh) or PERSONAL_EN.search(c.name)]))
def test_names_phones_addresses_and_free_text_are_never_kept_in_clear(ds: Dataset, col: Column):
    assert col.privacy != "none"


def test_there_are_personal_columns_to_check():
    """Guards the test above against a pattern that silently matches nothing."""
    hits = {c.code for d, c in ALL_COLUMNS if d.id == "hqms" and PERSONAL_ZH.search(c.zh)}
    assert {"P4", "P802", "P801", "P17", "P18", "P20", "P21", "P372"} <= hits


def test_staff_names_are_dropped():
    staff = [(d, c) for d, c in ALL_COLUMNS if STAFF_ZH.search(c.zh)]
    assert len(staff) > 50  # 9 front-page staff, 2 QC, 4 per procedure block, outpatient doctors
    assert [f"{d.id}.{c.code}" for d, c in staff if c.privacy != "drop"] == []
    assert DATASETS["mzsy"].column("JZYSZC").privacy == "none"  # a title, not a person


def test_encrypted_columns_are_pseudonymised_and_the_chart_finders_are_encrypted():
    for ds, col in ALL_COLUMNS:
        if col.encrypt:
            assert col.privacy == "pseudonymise", f"{ds.id}.{col.code}"
    encrypted = {col.code for _, col in ALL_COLUMNS if col.encrypt}
    assert encrypted == {"P13", "ZJHM", "P7502", "JZKH", "P3", "P7000"}


def test_id_numbers_share_the_patient_pseudonym_and_record_ids_the_record_pseudonym():
    for ds, col in ALL_COLUMNS:
        if col.check == "id_card":
            assert (col.privacy, col.pseudonym, col.encrypt) == ("pseudonymise", "patient", True), col.code
        elif col.privacy == "pseudonymise":
            assert col.pseudonym == "record", f"{ds.id}.{col.code}"


def test_quasi_identifiers_are_generalised():
    for ds, col in ALL_COLUMNS:
        if col.check == "postcode":
            assert col.generalise == "postcode", f"{ds.id}.{col.code}"
        if col.zh == "出生日期":
            assert col.generalise == "birth_date", f"{ds.id}.{col.code}"
        if col.zh == "现住址":
            assert col.generalise == "address", f"{ds.id}.{col.code}"


# --- cross-field rules ---------------------------------------------------------------------------

def test_rule_ids_are_unique_prefixed_and_explained_in_both_languages():
    ids = [(ds.id, r.id) for ds in DATASETS.values() for r in ds.rules]
    assert len({r for _, r in ids}) == len(ids)
    for ds_id, rule_id in ids:
        assert rule_id.startswith(f"{ds_id}_"), rule_id
    for ds in DATASETS.values():
        for r in ds.rules:
            assert r.zh and r.en, r.id


def test_le_rules_compare_like_with_like():
    for ds in DATASETS.values():
        for r in ds.rules:
            if r.kind == "le":
                kinds = {ds.column(c).type in ("date", "datetime") for c in (*r.left, r.right)}
                assert len(kinds) == 1, r.id
                if len(r.left) > 1:
                    assert all(ds.column(c).type in ("integer", "decimal") for c in r.left), r.id


@pytest.mark.parametrize("ds_id,rule_id", [
    ("flu", "flu_self_pay_le_total"), ("fever", "fever_self_pay_le_total"),
    ("hqms", "hqms_self_pay_le_total"), ("hqms", "hqms_antibacterial_le_western_drug"),
    ("hqms", "hqms_admission_le_discharge"), ("hda", "hda_admission_le_discharge"),
    ("mzsy", "mzsy_self_pay_le_total"), ("mzsy", "mzsy_antibacterial_le_western_drug"),
    ("mzsy", "mzsy_registration_le_checkin"), ("mzsy", "mzsy_checkin_le_visit"),
    *[("flu", f"flu_icu{n}_in_le_out") for n in range(1, 6)],
    ("flu", "flu_death_time_required"), ("hqms", "hqms_transfer_hospital_required"),
    ("mzsy", "mzsy_ed_triage_required"), ("mzsy", "mzsy_ed_disposition_required"),
    ("mzsy", "mzsy_admission_order_time_required"), ("mzsy", "mzsy_allergy_drugs_required"),
])
def test_required_rules_exist(ds_id: str, rule_id: str):
    assert rule_id in {r.id for r in DATASETS[ds_id].rules}


def test_required_if_targets_are_optional_columns():
    """A column that is always required needs no required_if; one that is would double-report."""
    for ds in DATASETS.values():
        for r in ds.rules:
            if r.kind == "required_if":
                assert not ds.column(r.column).required, r.id


# --- header aliases (hqms_ in the pinyin schemes) --------------------------------------------------

CORE_ALIASES = {"BAH": "P3", "XM": "P4", "SFZH": "P13", "RYSJ": "P22", "CYSJ": "P25", "ZFY": "P782",
                "ZFJE": "P751", "XB": "P5", "CSRQ": "P6", "ZYCS": "P2", "JBDM": "P321", "ZYZD": "P322",
                "LYFS": "P741", "JBDM1": "P324", "SSJCZBM1": "P490", "SSJCZRQ1": "P491", "KJYWF": "P770",
                "XYF": "P769"}


@pytest.mark.parametrize("scheme", ["pinyin2013", "pinyin2019"])
def test_pinyin_headers_of_core_fields_resolve(scheme: str):
    aliases = DATASETS["hqms"].header_aliases[scheme]
    assert {a: aliases.get(a) for a in CORE_ALIASES} == CORE_ALIASES


def test_edition_specific_renames_resolve():
    hqms = DATASETS["hqms"]
    a13, a19 = hqms.header_aliases["pinyin2013"], hqms.header_aliases["pinyin2019"]
    assert (a13["DH2"], a19["DH1"]) == ("P21", "P21")
    assert (a13["H23"], a19["JBBM1"]) == ("P361", "P361")
    assert (a13["JBMM"], a19["JBBM2"]) == ("P351", "P351")
    assert (a13["YLFUF"], a19["YLFWF"]) == ("P752", "P752")
    assert (a19["ZZJGDM"], a19["JGMC"]) == ("P900", "P6891")
    assert "SSJCZBM8" not in a13 and a19["SSJCZBM10"] == "P45050"


def test_unmappable_pinyin_headers_are_left_out():
    """Same name, different meaning: mapping these would load wrong values silently."""
    a13, a19 = (DATASETS["hqms"].header_aliases[s] for s in ("pinyin2013", "pinyin2019"))
    assert not {"BZYZSNL", "RYSJS", "CYSJS", "QKDJ1", "YWGM", "CSD", "GG", "RYQ_T"} & set(a13)
    assert not {"USERNAME", "RYSJ_S", "ZLLB", "QTZD11", "RYQ_FZ"} & set(a19)


def test_alias_maps_are_one_to_one_and_case_insensitive():
    hqms = DATASETS["hqms"]
    for scheme, mapping in hqms.header_aliases.items():
        targets = list(mapping.values())
        assert len(set(targets)) == len(targets), scheme
        assert not set(mapping) & set(hqms.codes)
    # alias_map keys are upper case: headers are looked up upper-cased, whatever the file's spelling
    assert hqms.alias_map["bah".upper()] == "P3"
    assert hqms.alias_map["p45004".upper()] == "P45004"  # the exporter writes p45004…p45061


def test_pinyin_date_columns_accept_2013_dates():
    hqms = DATASETS["hqms"]
    for alias in ("RYSJ", "CYSJ", "SSJCZRQ1", "ZKRQ", "CSRQ"):
        assert "YYYYMMDD" in hqms.column(hqms.header_aliases["pinyin2013"][alias]).formats, alias


# --- file names ---------------------------------------------------------------------------------

@pytest.mark.parametrize("ds_id", sorted(EXPECTED))
def test_dataset_for_filename_finds_every_prefix(ds_id: str):
    prefix = DATASETS[ds_id].prefix
    for name in (f"{prefix}20250106.csv", f"{prefix.upper()}20250106.CSV", f"Folder/{prefix.upper()}20250106.csv",
                 f"a\\b\\{prefix}20250106.csv"):
        assert spec.dataset_for_filename(name).id == ds_id, name


def test_unknown_and_non_csv_files_have_no_dataset():
    assert spec.dataset_for_filename("Folder/FLU_20250106.csv").id == "flu"
    for name in ("flu_20250106.xlsx", "readme.csv", "flu/notes.txt", "xflu_20250106.csv"):
        assert spec.dataset_for_filename(name) is None, name


def test_dbt_vars_are_the_spec_stream_table_and_the_pipeline_time_zone():
    """dbt reads its vars from dbt_project.yml; the stream table (hqms.spec.streams) and
    hqms.config.CHINA_TZ are where these facts are written, so the file must say the same."""
    from hqms.config import CHINA_TZ

    project = yaml.safe_load((ROOT / "dbt_project" / "dbt_project.yml").read_text(encoding="utf-8"))
    dbt_vars = project["vars"]
    assert tuple(dbt_vars["daily_streams"]) == spec.DAILY_STREAMS == ("flu", "fever")
    assert tuple(dbt_vars["monthly_streams"]) == spec.MONTHLY_STREAMS == ("outpatient",)
    assert dbt_vars["monthly_due_day"] == spec.monthly_due_day() == 15
    assert dbt_vars["local_timezone"] == CHINA_TZ.key


def test_every_stream_has_a_cadence_and_its_datasets():
    for s in spec.STREAM_TABLE:
        assert s.cadence in ("daily", "monthly"), s
        assert (s.due_day is not None) == s.monthly, s
        assert spec.stream_datasets(s.id), s
    assert {d.stream for d in spec.datasets().values()} == set(spec.STREAMS)


# --- reference CSVs ------------------------------------------------------------------------------

def test_rc_tables_hold_the_documented_values():
    t = spec.code_tables()
    assert len(t["RC035"]) == 58 and {"1", "56", "66", "99"} <= set(t["RC035"])
    assert set(t["RC036"]) == {str(i) for i in range(1, 36)}
    assert {"156", "344", "446", "158"} <= set(t["RC040"]) and len(t["RC040"]) >= 20
    numeric = {c for c in t["RC040"] if re.fullmatch(r"\d{3}", c)}
    alpha3 = {c for c in t["RC040"] if re.fullmatch(r"[A-Z]{3}", c)}
    assert numeric | alpha3 == set(t["RC040"]) and len(alpha3) >= 200  # both forms are seen
    assert t["RC040"]["CHN"] == t["RC040"]["156"] and t["RC040"]["HKG"] == t["RC040"]["344"]
    assert {"1602", "20", "28"} <= set(t["RC023"])
    assert {"1", "1.1", "3.2", "7", "9"} <= set(t["RC032"])
    assert t["RC016"] == {"1": "是", "2": "否"} and t["RC041"]["1"] == "急诊" and t["RC045"]["7"] == "急诊转入院"


def test_regions_are_a_consistent_gbt2260_tree():
    rows = spec.reference_csv("regions.csv")
    by_code = {r["region_code"]: r for r in rows}
    assert len(by_code) == len(rows)
    provinces = {r["region_code"][:2] for r in rows if r["level"] == "province"}
    assert provinces == set(validators.PROVINCES)
    for r in rows:
        code, current = r["region_code"], not r["valid_to"]
        assert re.fullmatch(r"\d{6}", code) and r["province_code"] == (r["city_code"] or code)[:2], code
        if r["level"] == "province":
            assert code.endswith("0000") and r["parent_code"] == "" and r["city_code"] == ""
            continue
        parent = by_code[r["parent_code"]]
        if current:  # a current unit sits in a current unit of the level above, which names its city
            assert not parent["valid_to"], code
            assert parent["level"] == {"city": "province", "county": "city"}[r["level"]], code
            assert r["city_code"] == (code if r["level"] == "city" else parent["region_code"]), code
        assert code.startswith(parent["region_code"][:2 if parent["level"] == "province" else 4]), code
        if r["city_code"]:  # mapped to a current prefecture-level unit
            assert by_code[r["city_code"]]["level"] == "city" and not by_code[r["city_code"]]["valid_to"], code
    cities = defaultdict(int)
    for r in rows:
        if r["level"] == "city" and not r["valid_to"] and r["region_code"][2:4] != "90":
            cities[r["province_code"]] += 1
    assert {p: cities[p] for p in ("51", "44", "42", "33")} == {"51": 21, "44": 21, "42": 13, "33": 11}
    assert by_code["440606"]["name_zh"] == "顺德区" and by_code["510107"]["parent_code"] == "510100"


def test_regions_hold_every_current_prefecture_and_map_former_codes():
    """The complete GB/T 2260 table: all 333 prefecture-level units (2023) and the county-level
    cities under a province; codes of earlier years find their current city."""
    by_code = {r["region_code"]: r for r in spec.reference_csv("regions.csv")}
    current = [r for r in by_code.values() if not r["valid_to"]]
    prefectures = [r for r in current if r["level"] == "city" and r["region_code"].endswith("00")
                   and r["region_code"][2:4] != "90" and not r["name_zh"].endswith(("市辖区", "县"))]
    assert len(prefectures) >= 333
    every_province = {r["province_code"] for r in prefectures}
    assert every_province == set(validators.PROVINCES) - {"11", "12", "31", "50", "71", "81", "82"}
    assert sum(1 for r in current if r["level"] == "county") > 2_800
    assert {"仙桃市", "济源市", "石河子市", "五指山市"} <= {r["name_zh"] for r in current if r["level"] == "city"}
    assert {c: by_code[c]["name_zh"] for c in ("710000", "810000", "820000")} == {
        "710000": "台湾省", "810000": "香港特别行政区", "820000": "澳门特别行政区"}
    # re-divisions: 大兴县 (until 2001) is in 北京市市辖区, 吐鲁番地区's city in today's 吐鲁番市,
    # 1997's 重庆 re-coded from 四川 (51) to 50
    assert by_code["110224"]["city_code"] == "110100" and by_code["110224"]["valid_to"] == "2001"
    assert by_code["652101"]["city_code"] == "650400"
    assert sum(1 for r in by_code.values() if r["valid_to"] and r["province_code"] == "50") > 30


def test_flu_diagnosis_prefixes_cover_j09_j10_j11_and_flag_pneumonia():
    rows = spec.reference_csv("flu_icd10.csv")
    assert all(validators.icd10_valid(r["code_prefix"]) for r in rows)
    assert {r["code_prefix"][:3] for r in rows} == {"J09", "J10", "J11"}
    pneumonia = {r["code_prefix"] for r in rows if r["is_pneumonia"] == "true"}
    assert {"J10.0", "J11.0"} <= pneumonia
    assert all(r["is_pneumonia"] in ("true", "false") for r in rows)


def test_flu_lab_items_match_the_lis_item_codes():
    items = {r["item_code"]: r["flu_type"] for r in spec.reference_csv("flu_lab_items.csv")}
    assert items == {"35": "A", "36": "B"}
    assert set(items) < set(DATASETS["lis"].column("P8005").values)


def test_antiviral_baseline_is_the_four_neuraminidase_and_endonuclease_inhibitors():
    rows = spec.reference_csv("flu_antivirals.csv")
    baseline = {r["name_en"] for r in rows if r["in_baseline"] == "true"}
    assert baseline == {"oseltamivir", "zanamivir", "peramivir", "baloxavir marboxil"}
    assert {r["name_en"] for r in rows if r["in_baseline"] == "false"} == {"onradivir"}
    assert any(r["pattern"] in "磷酸奥司他韦胶囊" for r in rows if r["name_en"] == "oseltamivir")
