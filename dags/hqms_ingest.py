"""hqms_ingest: every landed upload → validated, de-identified, encrypted, merged (exactly once).

Thin on purpose: the work is in ``hqms.ingest.run``; nothing heavy is imported at parse time.
One mapped task per batch of uploads (validating many small uploads together is what keeps
Great Expectations' per-table cost down); the batches run ``HQMS_INGEST_WORKERS`` at a time (pool
``hqms_ingest``) and hold the warehouse only for their merges, which take turns on its write lock
(``hqms.warehouse_attach.write_lock``) with each other and with the dbt builds. Each stream's Asset is
updated when at least one of its uploads was merged; the marts DAGs are scheduled on them.
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from hqms import config
from hqms.alerts import on_failure_callback
from hqms.assets import STREAM_ASSETS

INGEST_POOL = "hqms_ingest"


@dag(
    dag_id="hqms_ingest",
    schedule=timedelta(minutes=config.load().ingest_interval_minutes),  # HQMS_INGEST_INTERVAL_MINUTES
    start_date=pendulum.datetime(2025, 1, 1, tz=config.CHINA_TZ.key),
    catchup=False,
    max_active_runs=1,
    tags=["hqms", "ingest"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "on_failure_callback": on_failure_callback},
    doc_md=__doc__,
)
def hqms_ingest() -> None:
    @task
    def claim_uploads() -> list[list[str]]:
        """Sweep leftovers, alert on landing objects the registry does not know, hand dead runs'
        claims back, then plan the landed uploads in batches (each ``process`` task acquires its own)."""
        from hqms.ingest.run import claim

        return claim()

    @task(pool=INGEST_POOL, map_index_template="{{ task.op_kwargs['upload_ids'][0] }}")
    def process(upload_ids: list[str]) -> list[dict]:
        from hqms.ingest.run import process

        return process(upload_ids)

    @task
    def merged_streams(outcomes: list[list[dict]]) -> list[str]:
        """Streams with at least one upload that put rows into the warehouse."""
        return sorted({o["stream"] for batch in outcomes for o in batch if o["conforming_count"] > 0})

    @task
    def watch_stuck() -> int:
        """Alert (no personal data) on uploads stuck in a non-terminal state past the threshold."""
        from hqms.alerts import check_stuck

        alert = check_stuck()
        return len(alert.items) if alert else 0

    watch_stuck()
    outcomes = process.expand(upload_ids=claim_uploads())
    streams = merged_streams(outcomes)

    for stream, asset in STREAM_ASSETS.items():

        @task.short_circuit(task_id=f"changed_{stream}", ignore_downstream_trigger_rules=False)
        def changed(names: list[str], stream: str = stream) -> bool:
            return stream in names

        @task(task_id=f"publish_{stream}", outlets=[asset])
        def publish(stream: str = stream) -> None:
            """Marks the stream's Asset as updated (the marts DAGs are scheduled on it)."""

        changed(streams) >> publish()


hqms_ingest()
