"""Great Expectations really executes the generated suites on a DuckDB staging database.

One GX run (module fixture) over a table with known-bad rows, > 200 failures of one check and
randomly mutated rows; its per-check counts must equal the direct ``failures_sql`` path. A second
run validates a table holding two files of one dataset and must attribute every failure to its file.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from hqms import cli, quality, rules
from hqms.spec import datasets
from hqms.stagedb import StageDB, open_stage
from test_rules import BAD_ID, DS, OTHER_ORG, clean_row, stage

TABLE = "t_20250106"
MANY = 450  # rows failing one check: more than GX's 200-row cap


def _run(stage: StageDB, table: str, ds, *, docs_dir: Path | None = None, run_id: str,
         suites_dir: Path = quality.SUITES_DIR) -> quality.QualityResult:
    """Validate one staged table, as the ingest validates a round of one file."""
    (res,) = quality.run_tables(stage, [(table, ds)], docs_dir=docs_dir, run_id=run_id, suites_dir=suites_dir)
    return res


def _rows() -> list[dict[str, str | None]]:
    rng = random.Random(11)
    junk = ["", "abc", "1e3", "2025-02-30", "99", "x" * 30, "-1", BAD_ID, OTHER_ORG, "3", None]
    rows = [clean_row(i) for i in range(3000)]
    rows[6] = {**rows[6], "ID": BAD_ID}                       # the known-bad row: _row 7
    for i in range(100, 100 + MANY):                          # AGE out of range on MANY rows
        rows[i] = {**rows[i], "AGE": "151"}
    for i in range(1000, 3000, 2):
        for code in rng.sample([c for c in DS.codes if c not in ("AGE", "K")], rng.randint(1, 3)):
            rows[i][code] = rng.choice(junk)
    return rows


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> tuple[StageDB, Path]:
    """A stage database with the test table and the test dataset's suite in its own folder."""
    tmp = tmp_path_factory.mktemp("quality")
    db = open_stage(tmp / "duckdb_tmp")
    stage(db.con, _rows(), TABLE)
    suites = tmp / "suites"
    suites.mkdir()
    quality.suite_path(DS.id, suites).write_text(quality.suite_json(DS), encoding="utf-8")
    yield db, suites
    db.close()


@pytest.fixture(scope="module")
def result(staged, tmp_path_factory) -> quality.QualityResult:
    db, suites = staged
    docs = tmp_path_factory.mktemp("docs")
    return _run(db, TABLE, DS, docs_dir=docs, run_id="test-run", suites_dir=suites)


def test_enable_duckdb_makes_gx_persist_the_connection():
    """Fails when a GX upgrade renames or changes what the patch relies on."""
    from great_expectations.execution_engine import sqlalchemy_execution_engine as engine

    quality.enable_duckdb()
    quality.enable_duckdb()
    members = [m for m in engine._PERSISTED_CONNECTION_DIALECTS if m == "duckdb"]
    assert len(members) == 1 and members[0].value == "duckdb"
    assert engine._dialect_requires_persisted_connection(connection_string="duckdb:///x.duckdb")
    assert not engine._dialect_requires_persisted_connection(connection_string="postgresql://h/d")


def test_gx_reports_a_known_bad_row_by_number(result):
    by_rule = {r.rule: r for r in result.rules}
    check = by_rule["check"]
    assert not check.success and (TABLE, 7, "t.ID.check") in check.sample
    assert by_rule["required"].success is False  # mutated rows blank required columns
    assert not any(cid == "t.K.required" for r in result.rules for _, _, cid in r.sample)


def test_more_than_200_failures_come_back_complete(result, staged):
    by_rule = {r.rule: r for r in result.rules}
    assert by_rule["range"].unexpected_count >= MANY and len(by_rule["range"].sample) == 200
    rows = staged[0].con.execute(f"SELECT _row FROM {result.failures_table} "
                                 "WHERE check_id = 't.AGE.range' ORDER BY 1").fetchall()
    assert [r for (r,) in rows] == list(range(101, 101 + MANY))


def test_gx_counts_equal_failures_sql(result, staged):
    con = staged[0].con
    direct = dict(con.execute(f"SELECT check_id, count(*) FROM ({rules.failures_sql(DS, TABLE)}) "
                              "GROUP BY ALL").fetchall())
    stored = con.execute(f"SELECT _row, check_id, \"column\", rule FROM {result.failures_table} "
                         "ORDER BY ALL").fetchall()
    expected = con.execute(f"SELECT * FROM ({rules.failures_sql(DS, TABLE)}) ORDER BY ALL").fetchall()
    assert result.counts() == direct
    assert len(direct) >= 15 and result.failure_count == sum(direct.values())
    assert stored == expected
    assert sum(r.unexpected_count for r in result.rules) == result.failure_count
    assert {r.rule for r in result.rules} == {c.rule for c in rules.compile_checks(DS)}


def test_files_of_one_dataset_validate_as_one_table(staged):
    """Two files of one dataset in one table and one GX run: each failure keeps its file."""
    db, suites = staged
    rows = [clean_row(i) for i in range(20)]
    stage(db.con, [{**r, "ID": BAD_ID} if i == 4 else r for i, r in enumerate(rows)], "u0_f0")
    stage(db.con, [{**r, "AGE": "151"} if i in (0, 19) else r for i, r in enumerate(rows)], "u1_f0")
    db.con.execute("CREATE OR REPLACE TABLE two_files AS SELECT * FROM u0_f0 UNION ALL SELECT * FROM u1_f0")
    result = _run(db, "two_files", DS, run_id="batch", suites_dir=suites)
    assert result.counts() == {"t.ID.check": 1, "t.AGE.range": 2}
    assert db.con.execute(f"SELECT _src, _row, check_id FROM {result.failures_table} ORDER BY ALL").fetchall() == \
        [("u0_f0", 5, "t.ID.check"), ("u1_f0", 1, "t.AGE.range"), ("u1_f0", 20, "t.AGE.range")]


def test_data_docs_written(result):
    assert result.docs_index is not None and result.docs_index.is_file()
    pages = list((result.docs_index.parent / "validations").rglob("*.html"))
    assert len(pages) == 1 and "no cell fails the 'check' rule" in pages[0].read_text(encoding="utf-8")


def test_an_erroring_expectation_makes_run_raise(staged):
    """A table without column SEX: its expectations error in GX (not fail, not pass)."""
    db, suites = staged
    db.con.execute(f"CREATE OR REPLACE TABLE no_sex AS SELECT * EXCLUDE (SEX) FROM {TABLE} LIMIT 10")
    with pytest.raises(quality.QualityError, match=r"expectations raised.*SEX"):
        _run(db, "no_sex", DS, run_id="broken", suites_dir=suites)


def test_a_suite_out_of_date_with_the_spec_is_refused(staged, tmp_path):
    db, _ = staged
    suite = quality.suite_dict(DS)
    del suite["expectations"][1]
    quality.suite_path(DS.id, tmp_path).write_text(json.dumps(suite), encoding="utf-8")
    with pytest.raises(quality.QualityError, match="differ from the spec"):
        _run(db, TABLE, DS, run_id="stale", suites_dir=tmp_path)


def test_committed_suites_equal_the_spec(tmp_path):
    assert datasets() and quality.stale_suites() == []
    assert cli.main(["gx", "suites", "--check"]) == 0
    assert cli.main(["gx", "suites", "--dir", str(tmp_path)]) == 0
    assert sorted(p.stem for p in tmp_path.glob("*.json")) == sorted(datasets())
    (tmp_path / "flu.json").write_text("{}", encoding="utf-8")
    assert quality.stale_suites(tmp_path) == ["flu"]
    assert cli.main(["gx", "suites", "--check", "--dir", str(tmp_path)]) == 2


def test_every_committed_suite_loads_in_gx():
    for ds_id in datasets():
        suite = quality.load_suite(ds_id)
        assert [cid for e in suite.expectations for cid in e.meta["check_ids"]] == \
            [c.check_id for rule, checks in quality.rule_groups(datasets()[ds_id]) for c in checks]
        assert len(suite.expectations) <= len(quality.COLUMN_RULES) + len(quality.ROW_RULES)


@pytest.mark.slow
def test_data_docs_keep_only_the_newest_runs(staged, hqms_home, monkeypatch):
    """Each run's site is 4–4.6 MB: only the newest ``HQMS_GX_DOCS_KEEP`` run folders stay,
    and folders outside the configured docs root are never touched."""
    import os
    import time

    from hqms import config

    db, suites = staged
    monkeypatch.setenv("HQMS_GX_DOCS_KEEP", "2")
    root = config.load().gx_docs_dir
    for n in range(3):  # earlier rounds, oldest first
        (root / f"old-{n}" / "validations").mkdir(parents=True)
        os.utime(root / f"old-{n}", (time.time() - 100 + n, time.time() - 100 + n))
    outside = hqms_home / "other"
    outside.mkdir()
    _run(db, TABLE, DS, docs_dir=root / "new-run", run_id="new-run", suites_dir=suites)
    assert sorted(p.name for p in root.iterdir()) == ["new-run", "old-2"]
    assert (root / "new-run" / "index.html").is_file() and outside.is_dir()
    _run(db, TABLE, DS, docs_dir=hqms_home / "elsewhere" / "docs", run_id="x", suites_dir=suites)
    assert sorted(p.name for p in root.iterdir()) == ["new-run", "old-2"]
