"""The staging database of one batch: an in-memory DuckDB that Great Expectations can reach.

Why in memory: the staged rows are scratch data (rebuilt from the vaulted zip after any crash),
and writing them to a file cost a full copy plus a checkpoint per batch — as much time as the
whole CSV load. Why *named*: GX connects through SQLAlchemy (``duckdb:///:memory:<name>``); a
named in-memory database is shared by every connection of this process that opens that name,
so GX validates the very tables the loader wrote, and the merge then attaches the warehouse to
the same database instance and copies conforming rows in without leaving DuckDB.

DuckDB refuses a second connection to one database with a different configuration, and
``duckdb_engine`` always sets ``custom_user_agent``; :func:`open_stage` sets the same value, so
both connections agree. Memory stays bounded: ``memory_limit`` applies to the instance, and
in-memory tables spill to ``temp_directory`` when they outgrow it.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import duckdb

_counter = itertools.count()


def _user_agent() -> str:
    """The ``custom_user_agent`` duckdb_engine's dialect passes to ``duckdb.connect``."""
    import duckdb_engine
    import sqlalchemy

    return f"duckdb_engine/{duckdb_engine.__version__}(sqlalchemy/{sqlalchemy.__version__})"


@dataclass
class StageDB:
    """A named in-memory database and our connection to it (which keeps it alive)."""

    name: str
    con: duckdb.DuckDBPyConnection

    @property
    def sqlalchemy_url(self) -> str:
        return f"duckdb:///:memory:{self.name}"

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> StageDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_stage(temp_dir: Path, *, memory_limit: str = "1GB", threads: int = 2) -> StageDB:
    """A fresh, empty staging database unique to this call."""
    name = f"hqms_stage_{os.getpid()}_{next(_counter)}"
    temp_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(f":memory:{name}", config={"custom_user_agent": _user_agent()})
    # no progress bar: DuckDB draws one on stdout for long queries, which is where `hqms ingest`
    # prints its JSON result and what task logs keep
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET threads = {int(threads)}")
    con.execute(f"SET temp_directory = '{temp_dir}'")
    return StageDB(name, con)
