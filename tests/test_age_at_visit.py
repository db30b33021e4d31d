"""Age is counted in completed years at the visit date (docs/marts.md, "Conventions"): the age band
the flu and fever marts count comes from the birth date P6 and the visit date P7506, through the
real ingest (generator → submit → ingest), at the edges of the bands."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from hqms import config
from hqms.ingest.run import claim, process
from hqms.intake.submit import submit
from conftest import edit_csv_in_zip, generated_upload

pytestmark = pytest.mark.slow

#: (birth date P6, age P7 as the hospital would write it, band at a visit on 2025-01-06)
BIRTHDAYS = [
    ("2020-01-07", "4", "0-4"),      # 5th birthday tomorrow: still 4
    ("2020-01-06", "5", "5-14"),     # 5th birthday today
    ("1965-01-31", "59", "25-59"),   # born on the 31st, birthday later in the month
    ("1965-01-06", "60", "60+"),     # 60th birthday today
    ("2000-02-29", "24", "15-24"),   # born on 29 February: 24 until the birthday in 2025
]


def test_age_bands_count_completed_years_at_the_visit_date(s3_store, tmp_path: Path) -> None:
    plan, generated = generated_upload(tmp_path / "gen", "fever", "2025-01-06", days=1, seed=23)

    def birthdays(rows: list[list[str]]) -> None:
        header = rows[0]
        assert len(rows) > len(BIRTHDAYS)
        for n, (row, (birth, age, _)) in enumerate(zip(rows[1:], BIRTHDAYS)):
            row[header.index("P6")], row[header.index("P7")] = birth, age
            row[header.index("P7506")] = f"2025-01-06 10:00:0{n}"

    upload = edit_csv_in_zip(generated, tmp_path / "birthdays.zip", "fever_", birthdays)
    submit(upload, plan["org_code"], plan["uploader"], received_at=datetime.fromisoformat("2025-01-07T09:00:00+08:00"))
    for batch in claim():
        process(batch)

    con = duckdb.connect(str(config.load().warehouse_path), read_only=True)
    try:
        bands = con.execute("""SELECT birth_date_age_band FROM dw.fever
                               WHERE visit_time BETWEEN TIMESTAMP '2025-01-06 10:00:00' AND TIMESTAMP '2025-01-06 10:00:09'
                               ORDER BY visit_time""").fetchall()
    finally:
        con.close()
    assert [b for (b,) in bands] == [band for _, _, band in BIRTHDAYS]
