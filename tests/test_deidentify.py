"""Pseudonyms and ciphertext computed once per distinct identifier equal the per-value results."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from hqms import config, crypto, keys
from hqms.ingest.deidentify import KeyedMemo


def _ring(hqms_home: Path) -> keys.Keyring:
    cfg = config.load()
    keys.ensure_demo_keys(cfg)
    return keys.load_keyring(cfg)


def test_memoised_pseudonyms_equal_direct_ones_across_calls(hqms_home: Path) -> None:
    ring = _ring(hqms_home)
    memo = KeyedMemo(ring)
    record = ring.pseudonym_key("record")
    calls = [(["A", "A", "B"], ["1", "2", "1"]), (["B", "A", "C"], ["1", "1", "3"])]
    for orgs, values in calls:
        expected = crypto.pseudonym_array(record, pa.array(values), context=pa.array(orgs)).to_pylist()
        assert memo.outputs("record", orgs, values) == expected
    assert len(memo.cache["record"]) == 4  # ("B", "1") and ("A", "1") were computed once
    patient = memo.outputs("patient", ["", ""], ["110101199003071234", "110101199003071234"])
    assert patient == [crypto.pseudonym(ring.pseudonym_key("patient"), "110101199003071234")] * 2


def test_memoised_ciphertext_decrypts_to_each_value_under_its_column(hqms_home: Path) -> None:
    ring = _ring(hqms_home)
    memo = KeyedMemo(ring)
    cells = memo.outputs("enc", ["P13", "P7502", "P13"], ["110101199003071234", "MZ1", "110101199003071234"])
    assert cells[0] == cells[2] and cells[0] != cells[1]
    field_keys = ring.field_keys()
    assert crypto.decrypt_field(field_keys, cells[0], "P13") == "110101199003071234"
    assert crypto.decrypt_field(field_keys, cells[1], "P7502") == "MZ1"


def test_a_full_memo_starts_over_and_still_answers_right(hqms_home: Path) -> None:
    ring = _ring(hqms_home)
    memo = KeyedMemo(ring, limit=3)
    patient = ring.pseudonym_key("patient")
    for values in (["a", "b"], ["b", "c", "d"], ["e", "f", "g", "h"], ["a"]):
        expected = [crypto.pseudonym(patient, v) for v in values]
        assert memo.outputs("patient", [""] * len(values), values) == expected
        assert len(memo.cache["patient"]) <= 3
