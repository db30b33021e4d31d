"""docs/upload-report.md — what hospital data managers read — names every status, every intake
refusal and every rule the code can report, and nothing else."""
from __future__ import annotations

import re
from pathlib import Path

from hqms.intake.cli import STATUS_ZH
from hqms.intake.zipcheck import _MESSAGES
from hqms.registry import STATUSES
from hqms.spec import COLUMN_RULES, FILE_RULES, ROW_RULES

DOC = (Path(__file__).resolve().parents[1] / "docs" / "upload-report.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    return DOC.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _first_cells(section: str) -> set[str]:
    """Backticked names in the first cell of each table row."""
    return {name for line in section.splitlines() if line.startswith("| `")
            for name in re.findall(r"`([a-z_]+)`", line.split("|")[1])}


def test_every_status_with_its_chinese_label():
    rows = _section("处理状态").splitlines()
    assert _first_cells(_section("处理状态")) == set(STATUSES)
    for status in STATUSES:
        assert any(f"| `{status}` | {STATUS_ZH[status]} |" in row for row in rows), status


def test_every_intake_refusal():
    assert _first_cells(_section("拒收原因")) == set(_MESSAGES)


def test_every_rule_of_an_accepted_upload():
    assert _first_cells(_section("错误与警告")) == set(COLUMN_RULES + ROW_RULES + FILE_RULES)
