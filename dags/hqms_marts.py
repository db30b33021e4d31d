"""hqms_marts_daily and hqms_marts_monthly: dbt build on the warehouse, then publish for analysts.

Thin on purpose: the work is in ``hqms.marts`` (imported inside the tasks, so parsing this file
stays cheap). Both DAGs run dbt in the one-slot ``hqms_warehouse`` pool (two builds at once
would re-create the same views); each build also takes the warehouse's write lock, so it waits
for an ingest merge and the merges wait for it (``hqms.warehouse_attach.write_lock``).
Publishing reads the warehouse under the lock's shared side, in the same pool.

* hqms_marts_daily — when the flu or the fever Asset is updated by the ingest, and every day at
  02:30 China Standard Time as a safety net (a day without uploads still gets its submission
  rows and a fresh publication).
  After publishing, the weekly bulletin (流感监测周报, hqms.bulletin) of the newest week whose
  reports are all due is built once (Tuesday's run), as HTML + PDF into the marts bucket.
* hqms_marts_monthly — on the 16th at 02:30 China Standard Time (outpatient pages are due by the
  15th), and again whenever the outpatient Asset is updated (late monthly data).
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from hqms.alerts import on_failure_callback
from hqms.assets import STREAM_ASSETS

WAREHOUSE_POOL = "hqms_warehouse"
LOCAL_TZ = "Asia/Shanghai"
DEFAULT_ARGS = {"retries": 1, "retry_delay": timedelta(minutes=5), "on_failure_callback": on_failure_callback}

SCHEDULES = {
    "daily": AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("30 2 * * *", timezone=LOCAL_TZ),
        assets=(STREAM_ASSETS["flu"] | STREAM_ASSETS["fever"]),
    ),
    "monthly": AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("30 2 16 * *", timezone=LOCAL_TZ),
        assets=STREAM_ASSETS["outpatient"],
    ),
}


def marts_dag(selection: str) -> None:
    """One marts DAG: ``dbt build --select <selection>`` → publish."""

    @dag(
        dag_id=f"hqms_marts_{selection}",
        schedule=SCHEDULES[selection],
        start_date=pendulum.datetime(2025, 1, 1, tz=LOCAL_TZ),
        catchup=False,
        max_active_runs=1,
        tags=["hqms", "marts"],
        default_args=DEFAULT_ARGS,
        doc_md=__doc__,
    )
    def marts() -> None:
        @task(pool=WAREHOUSE_POOL)
        def dbt_build() -> dict[str, int]:
            """Seeds, models and data tests of the selection (incremental marts)."""
            from hqms.marts import dbt

            return dbt.build(selection).counts()

        @task(pool=WAREHOUSE_POOL)
        def publish() -> dict[str, int]:
            """Parquet to the marts bucket + read-only DuckDB snapshot (small cells suppressed)."""
            from hqms.marts.publish import publish as publish_marts

            return {m.name: m.rows for m in publish_marts().marts}

        @task(pool=WAREHOUSE_POOL)
        def bulletin() -> list[str]:
            """The weekly bulletin once its week's reports are all due (reads the warehouse: pool)."""
            from hqms.bulletin.render import build_due

            return [str(f.html) for f in build_due()]

        published = dbt_build() >> publish()
        if selection == "daily":
            published >> bulletin()

    marts()


for _selection in SCHEDULES:
    marts_dag(_selection)
