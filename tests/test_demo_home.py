"""A home the main job (``hqms demo``) leaves behind, looked at as its users would.

* Analysts: the README's analyst section works as written on the demo's data — with the DuckDB
  CLI the set-up installs, the city query returns city rows only, on dates that exist, and the
  docs' "last 7 days" example answers.
* Security: no key, secret or plaintext is readable by group or others, and no secret stands on
  any process's command line.
* The main job says what it leaves running and how to stop it.
* No configuration: the main job chooses its home's embedded S3 store, and later commands in a
  shell without any setting follow that choice.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from hqms import config, doctor

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HQMS_", "AIRFLOW"))}
    env["HQMS_HOME"] = str(home)
    return env


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    """``hqms demo`` (3 hospitals × 2 days) in ``<tmp>/.hqms``, the README's default home."""
    cwd = tmp_path_factory.mktemp("analyst")
    home = cwd / ".hqms"
    env = _env(home)
    done = subprocess.run([str(BIN / "hqms"), "demo", "--hospitals", "3", "--days", "2"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=1200)
    try:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        yield {"cwd": cwd, "home": home, "env": env, "stdout": done.stdout}
    finally:
        subprocess.run([str(BIN / "hqms"), "down"], cwd=cwd, env=env, capture_output=True, timeout=120)


def _analyst_section(path: Path, heading: str) -> str:
    text = path.read_text(encoding="utf-8")
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)


def _statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def _duckdb_cli(cwd: Path, snapshot: str, statement: str) -> list[dict]:
    """The statement through the ``duckdb`` command the set-up installs (JSON rows)."""
    done = subprocess.run([str(BIN / "duckdb"), "-readonly", "-json", snapshot, "-c", statement],
                          cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout or "[]")


@pytest.mark.slow
def test_readme_analyst_sql_answers_on_the_demo_data(demo) -> None:
    section = _analyst_section(ROOT / "README.md", "## For analysts")
    command = _blocks(section, "bash")[0].split()
    assert command[0] == "duckdb" and shutil.which("duckdb", path=str(BIN))
    version = subprocess.run([str(BIN / "duckdb"), "--version"], capture_output=True, text=True).stdout
    import duckdb
    assert version.split()[0].lstrip("v") == duckdb.__version__  # the CLI is the library's version
    snapshot = command[-1]
    statements = _statements(_blocks(section, "sql")[0])
    assert len(statements) >= 2
    results = [_duckdb_cli(demo["cwd"], snapshot, s) for s in statements]
    assert all(results), "every README query returns rows on the demo's data"

    # "per city" means city rows only: no province among the flu query's regions.
    provinces = {r["region_name"] for r in _duckdb_cli(
        demo["cwd"], snapshot, "SELECT DISTINCT region_name FROM marts.agg_flu "
                               "WHERE region_level = 'province'")}
    assert provinces and not provinces & {r["region_name"] for r in results[0]}
    assert not provinces & {r["region_name"] for r in results[1]}

    for block in _blocks(section, "python"):
        ran = subprocess.run([sys.executable, "-c", block], cwd=demo["cwd"], capture_output=True, text=True,
                             timeout=60)
        assert ran.returncode == 0 and "region_name" in ran.stdout, ran.stderr


@pytest.mark.slow
def test_docs_last_seven_days_example_answers_on_the_demo_data(demo) -> None:
    sql = _blocks(_analyst_section(ROOT / "docs" / "marts.md", "### DuckDB CLI, snapshot"), "sql")[0]
    last_week = next(s for s in _statements(sql) if "7" in s and "antiviral" in s)
    snapshot = str(demo["home"] / "marts" / "hqms_marts.duckdb")
    assert _duckdb_cli(demo["cwd"], snapshot, last_week)


@pytest.mark.slow
def test_demo_home_keeps_keys_secrets_and_plaintext_private(demo) -> None:
    home: Path = demo["home"]
    published = home / "marts"  # suppressed aggregates for analysts, read-only on purpose
    open_to_others = []
    for folder, dirs, files in os.walk(home):
        dirs[:] = [d for d in dirs if Path(folder, d) != published]
        for path in (Path(folder), *(Path(folder) / f for f in files)):
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                open_to_others.append(f"{path.relative_to(home)} {stat.S_IMODE(mode):04o}")
    assert open_to_others == []
    # The places the issue named, explicitly: keys, landing zips (plaintext), secrets.
    for private in ("keys", "s3/data", "work", "state"):
        assert stat.S_IMODE((home / private).stat().st_mode) == 0o700, private
    assert any((home / "s3" / "data").rglob("*")), "the demo landed something"

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HQMS_HOME", str(home))
        checks = {c.name: c for c in doctor.run_checks(config.load())}
    assert checks["permissions"].status == doctor.OK, checks["permissions"].message


@pytest.mark.slow
def test_no_secret_on_any_command_line(demo) -> None:
    credentials = json.loads((demo["home"] / "s3" / "credentials.json").read_text(encoding="utf-8"))
    secret = credentials["secret_key"]
    rclone = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        assert secret not in cmdline, f"pid {proc.pid} shows the S3 secret in ps"
        if "rclone" in cmdline and str(demo["home"]) in cmdline:
            rclone.append(cmdline)
    assert rclone, "the demo's S3 server still runs (and the message below says so)"


@pytest.mark.slow
def test_main_job_says_what_still_runs_and_how_to_stop_it(demo) -> None:
    out = demo["stdout"]
    assert "still running" in out and "hqms down" in out
    assert re.search(r"s3\s+http://127\.0\.0\.1:\d+", out)


@pytest.mark.slow
def test_later_commands_follow_the_demos_store_without_a_setting(demo) -> None:
    """README: after `bash scripts/demo.sh`, `hqms uploads`, `hqms serve` … work in a fresh shell:
    the main job recorded its choice of the embedded store in the home."""
    assert "HQMS_S3_ENDPOINT" not in demo["env"]
    assert (demo["home"] / "s3" / "chosen").is_file()
    done = subprocess.run([str(BIN / "hqms"), "doctor", "--json"], cwd=demo["cwd"], env=demo["env"],
                          capture_output=True, text=True, timeout=300)
    checks = {c["name"]: c for c in json.loads(done.stdout)}
    assert (checks["config"]["status"], checks["s3"]["status"]) == ("OK", "OK"), checks
