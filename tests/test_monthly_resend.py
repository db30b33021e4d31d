"""A corrected re-send of a monthly page file replaces the earlier file, through real incremental
builds (audit of the monthly page, finding 1; docs/marts.md "De-duplication").

The merge replaces a record only by its key (JZKH + JZSJ + JZKSDM): a page re-sent with a
corrected JZSJ is a new key beside the old one, and a page left out of the correction stays. The
marts read only the newest version of each file, as the upload record (ops.upload_files) has it
(macros/resent_files.sql), and the incremental outpatient marts rebuild every month of the
earlier version — also a month none of the re-sent pages falls in, here February, whose only pages
were late visits inside the March file; it is left empty, so a tombstone clears it.

Starts from ``test_marts_incremental``'s built synthetic warehouse and writes what the ingest
would write (``hqms.ingest.merge``): new rows, re-sent keys updated in place, and the uploads'
records. tests/test_withdrawn_pages.py drives the real ingest.
"""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from hqms import config as hqms_config
from hqms.spec import filenames
from hqms.marts import dbt
from test_dbt_marts import CST, HOSPITALS, Rows, _differences, _meta, _query
from test_marts_incremental import _copy, _write, built  # noqa: F401  (built: the module fixture)

pytestmark = pytest.mark.slow

ORG = HOSPITALS[2][0]
MACROS = Path(__file__).parents[1] / "dbt_project" / "macros"
MARCH, FEBRUARY, JANUARY = date(2025, 3, 1), date(2025, 2, 1), date(2025, 1, 1)

#: the marts against the pages int_outpatient_visits keeps (a view: always current)
MONTHLY = "SELECT month, org_code, visits, total_cost FROM marts.outpatient_monthly"
MONTHLY_FROM_PAGES = """SELECT visit_month, org_code, count(*), sum(total_cost)
                        FROM intermediate.int_outpatient_visits GROUP BY ALL"""
CHAPTERS = "SELECT month, org_code, dx_chapter, visits FROM marts.outpatient_monthly_dx_chapters"
CHAPTERS_FROM_PAGES = """SELECT visit_month, org_code, dx_chapter, count(*)
                         FROM intermediate.int_outpatient_visits GROUP BY ALL"""


def _page(rows: Rows, rng: random.Random, card: str, visit_time: datetime, upload: str, file_name: str,
          received: datetime, loaded: datetime) -> None:
    rows.add("dw.mzsy", **_meta(rng, ORG, received, loaded) | {"_upload_id": upload, "_source_file": file_name},
             visit_card_no_pid=card, visit_time=visit_time, visit_type="2", revisit="2", iv_infusion="2",
             chronic_special_disease="2", principal_dx_code="J06.900", total_cost=100.0, self_pay=10.0,
             antibacterial_fee=0.0)


def _record(rows: Rows, upload: str, file_name: str, received: datetime, processed: datetime, pages: int) -> None:
    """The upload record the merge writes in the same transaction as the rows (ops.uploads and
    ops.upload_files): the marts read which upload holds a file's newest version from it."""
    rows.add("ops.uploads", upload_id=upload, stream="outpatient", org_code=ORG, file_name=f"{upload}.zip",
             received_at=received, status="processed", record_count=pages, conforming_count=pages,
             processed_at=processed)
    rows.add("ops.upload_files", upload_id=upload, file_name=file_name, dataset="mzsy", stream="outpatient",
             record_count=pages, conforming_count=pages)


def _counted(cfg: hqms_config.Config) -> dict[date, int]:
    return dict(_query(cfg, f"SELECT month, visits FROM marts.outpatient_monthly WHERE org_code = '{ORG}'"))


def test_a_corrected_resend_replaces_its_part_and_clears_the_months_it_left(
        built: hqms_config.Config, tmp_path: Path) -> None:
    cfg = _copy(built, tmp_path)
    rng = random.Random(1010)
    march = [datetime(2025, 3, day, 9, 30) for day in range(1, 11)]
    late_february = [datetime(2025, 2, 27, 16), datetime(2025, 2, 28, 18)]
    # March in two parts, in two zips: part 1 (10 March pages and 2 late February visits) on
    # 3 April, part 2 (3 pages) on 4 April; loaded a month ago, beyond the incremental lookback.
    loaded = datetime.now(timezone.utc) - timedelta(days=30)
    first, second = (datetime(2025, 4, day, 9, tzinfo=CST) for day in (3, 4))
    rows = Rows({})
    for n, jzsj in enumerate(march + late_february):
        _page(rows, rng, f"part1-{n}", jzsj, "u1", "mzsy_202503_1.csv", first, loaded)
    for n in range(3):
        _page(rows, rng, f"part2-{n}", datetime(2025, 3, 20 + n, 10), "u2", "mzsy_202503_2.csv", second, loaded)
    _record(rows, "u1", "mzsy_202503_1.csv", first, loaded, 12)
    _record(rows, "u2", "mzsy_202503_2.csv", second, loaded, 3)
    _write(cfg, rows)
    dbt.build("monthly", full_refresh=True, cfg=cfg)
    assert {m: v for m, v in _counted(cfg).items() if m >= FEBRUARY} == {FEBRUARY: 2, MARCH: 13}
    january_built = _query(cfg, f"SELECT _built_at FROM marts.outpatient_monthly WHERE month = DATE '{JANUARY}'")

    # Part 1 re-sent corrected on 10 April under a copy's name in capitals: pages 0-6 unchanged
    # (the merge updates their rows in place), pages 7 and 8 with JZSJ corrected by a minute (new
    # keys: the old rows stay), page 9 and both February visits left out.
    now = datetime.now(timezone.utc)
    resent, name = datetime(2025, 4, 10, 9, tzinfo=CST), "MZSY_202503_1(1).csv"
    rows = Rows({})
    for n in (7, 8):
        _page(rows, rng, f"part1-{n}", march[n] + timedelta(minutes=1), "u3", name, resent, now)
    _record(rows, "u3", name, resent, now, 9)
    _write(cfg, rows, ("UPDATE dw.mzsy SET _upload_id = 'u3', _source_file = ?, _received_at = ?, _loaded_at = ? "
                       "WHERE _org_code = ? AND visit_card_no_pid IN ('part1-0', 'part1-1', 'part1-2', "
                       "'part1-3', 'part1-4', 'part1-5', 'part1-6')", [name, resent, now, ORG]))
    assert _query(cfg, f"SELECT count(*) FROM dw.mzsy WHERE _upload_id LIKE 'u_' AND _org_code = '{ORG}'") == [(17,)]

    dbt.build("monthly", cfg=cfg)

    # March: part 1's 9 pages as corrected + part 2's 3; February cleared (no row, no chapters)
    assert {m: v for m, v in _counted(cfg).items() if m >= FEBRUARY} == {MARCH: 12}
    pages = _query(cfg, f"""SELECT m.visit_card_no_pid, m.visit_time FROM intermediate.int_outpatient_visits AS i
                            JOIN dw.mzsy AS m ON m._org_code = i.org_code AND m._nk = i.record_key
                            WHERE i.org_code = '{ORG}' AND i.visit_month >= DATE '{FEBRUARY}'""")
    assert sorted(pages) == sorted([(f"part1-{n}", march[n] + timedelta(minutes=n // 7)) for n in range(9)]
                                   + [(f"part2-{n}", datetime(2025, 3, 20 + n, 10)) for n in range(3)])
    assert _query(cfg, f"SELECT count(*) FROM marts.outpatient_monthly_dx_chapters "
                       f"WHERE month = DATE '{FEBRUARY}'") == [(0,)]
    assert _differences(cfg, MONTHLY, MONTHLY_FROM_PAGES) == []
    assert _differences(cfg, CHAPTERS, CHAPTERS_FROM_PAGES) == []
    # a month no file of the re-send touched was not rebuilt
    assert _query(cfg, f"SELECT _built_at FROM marts.outpatient_monthly WHERE month = DATE '{JANUARY}'") == january_built


def test_the_copy_marks_are_the_ones_file_name_date_reads() -> None:
    """macros/file_names.sql strips the copy marks hqms.ingest.hints (and file_name_date) read:
    the generated macro of hqms.spec.filenames.COPY_MARKS."""
    assert f"'copy_marks': '{filenames.COPY_MARKS}'," in (MACROS / "file_name_patterns.sql").read_text(encoding="utf-8")
    assert 'hqms.file_name_pattern("copy_marks")' in (MACROS / "file_names.sql").read_text(encoding="utf-8")
