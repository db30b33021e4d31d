"""Airflow Assets that connect the ingest DAG to the marts DAGs (one per upload stream).

Kept in its own tiny module so DAG files can import it without pulling in the pipeline.
"""
from __future__ import annotations

from airflow.sdk import Asset

from hqms.spec.streams import STREAMS

STREAM_ASSETS: dict[str, Asset] = {
    stream: Asset(name=f"hqms_dw_{stream}", uri=f"hqms://warehouse/dw/{stream}")
    for stream in STREAMS
}
