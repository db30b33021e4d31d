"""Domain errors shared by the pipeline, the DAG tasks and the command line.

Why a module of its own: the pipeline's modules raise :class:`UserError` for problems a person can
fix (a missing key, a damaged registry, an unknown upload id). The command line prints it without a
traceback (exit 2) and an Airflow task fails with it as its message; neither the pipeline nor a DAG
task should import the command line to do so.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the CLI prints it without a traceback, exit code 2."""
