"""SQL text built in Python: the one place a Python string becomes a SQL string literal.

Rules, macros, staging and de-identification all write values (column codes, patterns, check ids,
code lists) into generated DuckDB SQL; one quoting function means one place to get it right.
"""
from __future__ import annotations


def literal(value: str) -> str:
    """A Python string as a DuckDB (standard SQL) string literal: single quotes doubled."""
    return "'" + value.replace("'", "''") + "'"
