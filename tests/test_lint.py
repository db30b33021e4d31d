"""The code passes ruff with the project's configuration (pyproject.toml ``[tool.ruff]``).

Why a test: CI runs the README's test command and nothing else, so lint that is not part of the
suite is lint nobody runs. The dbt models are SQL with Jinja; they are checked by dbt's parse, its
data tests and unit tests in the suite, not by sqlfluff (its dbt templater would compile the whole
project once more for every run, and the plain Jinja templater misreads the models' macros).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> str:
    found = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert found, "ruff is part of the test set-up (pyproject.toml [project.optional-dependencies] test)"
    return found


def test_ruff_finds_nothing() -> None:
    done = subprocess.run([_ruff(), "check", "--no-cache", "plugins", "dags", "tests", "bench", "scripts"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_ruff_reports_what_it_should(tmp_path: Path) -> None:
    """The configuration really selects rules: an unused import and a dead noqa are found."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nx = 1  # noqa: F401\n", encoding="utf-8")
    done = subprocess.run([_ruff(), "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), str(bad)],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "F401" in done.stdout and "RUF100" in done.stdout
