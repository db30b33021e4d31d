"""A zero report (零报告): on a day without cases a hospital uploads its files with the header
and no record. That is a report, so it must end ``processed`` (counted as received by the
submission marts), while header-only files that carry an error are still refused.

Reports come from the real dry-run validation (:func:`hqms.ingest.validate.validate_zip`), so the
severities are the ones staging gives (``empty_file`` is a warning for a header without rows).
The same upload through intake and the Airflow ingest: ``tests/test_ingest_e2e.py``.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import csv_bytes, make_zip, synthetic_org_code
from hqms import spec
from hqms.ingest.process import decide_status
from hqms.ingest.validate import validate_zip

ORG = synthetic_org_code(3)
FLU = spec.stream_datasets("flu")
ZERO = ("processed", "零报告：文件只有表头，没有记录", "zero report: the files hold a header and no records")
REFUSED = ("rejected", "没有符合接口标准的记录（1 个错误），请修正后重新上传",
           "no record conforms (1 errors); please correct and upload again")


def _header_only(ds: spec.Dataset) -> bytes:
    """The file an exporter writes on a day without cases: the spec's header line, no record."""
    return csv_bytes(ds.prefix, ORG, rows=0)


def _without_first_required(ds: spec.Dataset) -> bytes:
    """A header-only file whose header lacks a required column: the whole file is refused."""
    first = next(c.code for c in ds.columns if c.required)
    return (",".join(c for c in ds.codes if c != first) + "\r\n").encode("gbk")


def _files(first: Callable[[spec.Dataset], bytes]) -> dict[str, bytes]:
    """Every file of the flu stream header-only, the first one made by ``first``."""
    return {f"{ds.prefix}20250108.csv": (first if n == 0 else _header_only)(ds) for n, ds in enumerate(FLU)}


@pytest.mark.parametrize(("first", "expected"), [
    (_header_only, ZERO),
    (_without_first_required, REFUSED),
    (lambda ds: b"", REFUSED),  # no header either: empty_file is an error
], ids=["zero_report", "missing_required_column", "no_header"])
def test_header_only_files_are_a_zero_report_unless_a_file_has_an_error(
        tmp_path: Path, first: Callable[[spec.Dataset], bytes], expected: tuple[str, str, str]) -> None:
    report = validate_zip(make_zip(tmp_path / "flu_20250108.zip", _files(first)), ORG)
    assert (report.record_count, report.conforming_count) == (0, 0)
    assert decide_status(report) == expected
