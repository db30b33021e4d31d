"""``hqms up`` / ``hqms down`` / ``hqms status``: the whole system live on one machine.

``hqms run`` processes what is pending once (``airflow dags test``) and returns. The live system
is what a deployment runs all the time: the embedded S3 server, Airflow 3's scheduler,
dag-processor, triggerer and api-server (LocalExecutor; the DAGs run on their schedules and
Asset triggers, the UI shows every run and task log) and the hospital web service — all from
the generated ``airflow.cfg`` of this ``HQMS_HOME`` (``hqms.airflow_env``).

Process discipline (why a SIGTERM to ``airflow standalone`` is not enough): every service is
started in a session of its own, with a PID file under ``$HQMS_HOME/run`` and its log under
``$HQMS_HOME/logs``; it and each process it spawns (LocalExecutor workers, task supervisors)
carry ``HQMS_LIVE_HOME=<home>`` in their environment. ``down`` stops each service's process
group and descendants, then sweeps any process still carrying this home's mark, so nothing is
left orphaned. ``up`` is idempotent: running services (PID alive, and marked for this home, so a
reused PID is never mistaken for ours) are kept.

The service list is data (:data:`SERVICES`): adding a service is one entry.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from hqms import airflow_env
from hqms import config as hqms_config
from hqms.filelock import exclusive

#: Environment mark of every process of the live system (value: the home's path).
MARK = "HQMS_LIVE_HOME"
START_TIMEOUT_S = 180.0  # the api-server takes ≈ 20–60 s on a busy 2-core machine
STOP_TIMEOUT_S = 30.0  # the scheduler lets its LocalExecutor workers finish their task first
HTTP_TIMEOUT_S = 15.0  # a busy 2-core machine (load 12 seen) answered the monitor in > 5 s


@dataclass(frozen=True)
class Service:
    """One long-running process of the live system."""

    name: str
    argv: Callable[[hqms_config.Config], list[str]]
    #: URL whose HTTP 200 means healthy; None: healthy as reported by Airflow's monitor.
    health_url: Callable[[hqms_config.Config], str] | None = None
    #: Key of this component in Airflow's ``/api/v2/monitor/health`` answer.
    monitor_key: str | None = None
    #: Where a person opens it (shown by ``up`` and ``status``).
    url: Callable[[hqms_config.Config], str] | None = None
    #: Start the services after this one only once it is healthy (the api-server: LocalExecutor
    #: workers report to its execution API from their first second).
    gate: bool = False


def _airflow(*args: str) -> Callable[[hqms_config.Config], list[str]]:
    return lambda cfg: [airflow_env.airflow_bin(), *args]


def _monitor_url(cfg: hqms_config.Config) -> str:
    return f"{airflow_env.api_url(cfg)}/api/v2/monitor/health"


def _web_url(cfg: hqms_config.Config) -> str:
    return f"http://{cfg.web_host}:{cfg.web_port}"


SERVICES: tuple[Service, ...] = (
    Service("api-server", lambda cfg: [airflow_env.airflow_bin(), "api-server", "--host", cfg.airflow_host,
                                       "--port", str(cfg.airflow_port)],
            health_url=_monitor_url, url=airflow_env.api_url, gate=True),
    Service("scheduler", _airflow("scheduler"), monitor_key="scheduler"),
    Service("dag-processor", _airflow("dag-processor"), monitor_key="dag_processor"),
    Service("triggerer", _airflow("triggerer"), monitor_key="triggerer"),
    # The hospital web service (``hqms serve``, plugins/hqms/web/).
    Service("web", lambda cfg: [str(Path(sys.executable).parent / "hqms"), "serve", "--host", cfg.web_host,
                                "--port", str(cfg.web_port)],
            health_url=lambda cfg: f"{_web_url(cfg)}/healthz", url=_web_url),
)


class LiveError(RuntimeError):
    """A service did not start or stop as it should (the message names its log)."""


# --------------------------------------------------------------------------- PID files

def run_dir(cfg: hqms_config.Config) -> Path:
    return cfg.home / "run"


def _pid_file(cfg: hqms_config.Config, name: str) -> Path:
    return run_dir(cfg) / f"{name}.pid"


def log_path(cfg: hqms_config.Config, name: str) -> Path:
    return cfg.log_dir / f"live-{name}.log"


def _locked(cfg: hqms_config.Config) -> contextlib.AbstractContextManager[None]:
    """One ``up``/``down`` of a home at a time."""
    return exclusive(run_dir(cfg) / "live.lock")


def _marked(proc: psutil.Process, home: Path) -> bool:
    """The process carries this home's mark in its environment. (Airflow's processes rename
    themselves with setproctitle, which blanks what ``/proc/PID/environ`` shows: for them the
    session is what tells.)"""
    try:
        return proc.environ().get(MARK) == str(home)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def _running(cfg: hqms_config.Config, name: str) -> psutil.Process | None:
    """The service's session leader, when the PID file names a live process started at the
    recorded time (a PID reused by another program is not ours)."""
    try:
        record = json.loads(_pid_file(cfg, name).read_text(encoding="utf-8"))
        proc = psutil.Process(int(record["pid"]))
        if abs(proc.create_time() - float(record["create_time"])) > 0.01:
            return None
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc
    except (FileNotFoundError, ValueError, KeyError, TypeError, psutil.NoSuchProcess):
        return None


def _leaders(cfg: hqms_config.Config) -> dict[str, psutil.Process]:
    return {s.name: proc for s in SERVICES if (proc := _running(cfg, s.name)) is not None}


def processes(cfg: hqms_config.Config, sessions: set[int] | None = None) -> list[psutil.Process]:
    """Every process of this home's live system: the services' sessions (leaders, LocalExecutor
    workers, task supervisors, dbt …) and anything else carrying the home's mark."""
    if sessions is None:
        sessions = {proc.pid for proc in _leaders(cfg).values()}
    me = os.getpid()
    found = []
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        if _session(proc.pid) in sessions or _marked(proc, cfg.home):
            found.append(proc)
    return found


# --------------------------------------------------------------------------- health

def _http_ok(url: str) -> tuple[bool, dict | None]:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            body = response.read()
            ok = response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False, None
    try:
        return ok, json.loads(body)
    except ValueError:
        return ok, None


def _health(cfg: hqms_config.Config) -> dict[str, bool]:
    """Service name → healthy, from one look at each health endpoint (Airflow's monitor asked
    up to twice: on a loaded machine the api-server sometimes misses one answer)."""
    result: dict[str, bool] = {}
    monitor_ok, monitor = _http_ok(_monitor_url(cfg))
    if not monitor_ok:
        monitor_ok, monitor = _http_ok(_monitor_url(cfg))
    for service in SERVICES:
        if service.monitor_key:
            result[service.name] = bool(monitor_ok and monitor and
                                        (monitor.get(service.monitor_key) or {}).get("status") == "healthy")
        elif service.health_url is _monitor_url:
            result[service.name] = monitor_ok
        elif service.health_url is not None:
            result[service.name] = _http_ok(service.health_url(cfg))[0]
    return result


def _s3_status(cfg: hqms_config.Config) -> dict[str, object]:
    from hqms import embedded_s3

    if not cfg.embedded_s3:
        note = "external S3 (HQMS_S3_ENDPOINT): not managed here" if cfg.s3_configured else hqms_config.S3_UNSET
        return {"name": "s3", "running": None, "healthy": None, "pid": None,
                "url": cfg.s3_endpoint, "note": note}
    info = embedded_s3.status(cfg)
    return {"name": "s3", "running": info["running"], "healthy": info["running"], "pid": info["pid"],
            "url": f"http://{info['endpoint']}" if info["endpoint"] else None, "log": info["log"]}


def status(cfg: hqms_config.Config | None = None) -> list[dict[str, object]]:
    """Every service: running (PID alive and ours), healthy (its health check), pid, URL, log."""
    cfg = cfg or hqms_config.load()
    rows = [_s3_status(cfg)]
    health = _health(cfg)
    for service in SERVICES:
        proc = _running(cfg, service.name)
        rows.append({"name": service.name, "running": proc is not None,
                     "healthy": bool(proc) and health.get(service.name, False),
                     "pid": proc.pid if proc else None,
                     "url": service.url(cfg) if service.url else None,
                     "log": str(log_path(cfg, service.name))})
    return rows


def scheduler_running(cfg: hqms_config.Config) -> bool:
    """This home's live scheduler runs (``hqms run`` must then leave the work to it)."""
    return _running(cfg, "scheduler") is not None


def still_running(cfg: hqms_config.Config) -> str | None:
    """For commands that leave services behind (the main job): what still runs, where, and how
    to stop it; None when nothing does."""
    rows = [r for r in status(cfg) if r["running"]]
    if not rows:
        return None
    lines = ["still running (stop everything with `hqms down`):"]
    lines += [f"  {r['name']:<14} {r.get('url') or ''}  pid {r['pid']}".rstrip() for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- up

def _service_env(cfg: hqms_config.Config) -> dict[str, str]:
    env = airflow_env.airflow_env(cfg)
    env[MARK] = str(cfg.home)
    return env


def _spawn(cfg: hqms_config.Config, service: Service) -> psutil.Process:
    log = log_path(cfg, service.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(service.argv(cfg), env=_service_env(cfg), cwd=cfg.home,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    leader = psutil.Process(proc.pid)
    hqms_config.write_private(_pid_file(cfg, service.name),
                              json.dumps({"pid": proc.pid, "create_time": leader.create_time(),
                                          "argv": service.argv(cfg)}))
    return leader


def _wait_healthy(cfg: hqms_config.Config, started: dict[str, psutil.Process]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    pending = set(started)
    while pending:
        for name in list(pending):
            if not started[name].is_running() or started[name].status() == psutil.STATUS_ZOMBIE:
                raise LiveError(f"{name} exited during start-up; see {log_path(cfg, name)}")
        health = _health(cfg)
        pending = {name for name in pending if not health.get(name)}
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(sorted(pending))
            raise LiveError(f"not healthy after {START_TIMEOUT_S:.0f} s: {names}; see "
                            + ", ".join(str(log_path(cfg, n)) for n in sorted(pending)))
        time.sleep(1.0)


def up(cfg: hqms_config.Config | None = None) -> list[dict[str, object]]:
    """Start whatever of the live system is not running yet; wait until all of it is healthy.
    Without an S3 setting the live system of this machine runs on the home's embedded store
    (the local tooling's choice, recorded in the home)."""
    from hqms import embedded_s3
    from hqms.ingest.cli import bootstrap_local

    cfg = cfg or hqms_config.load()
    with _locked(cfg):
        embedded_s3.choose(cfg)
        bootstrap_local(cfg)  # folders (umask 077), demo keys, embedded S3 and its buckets
        starting_airflow = not any(_running(cfg, s.name) for s in SERVICES if s.monitor_key)
        airflow_env.prepare(cfg)
        if starting_airflow:
            airflow_env.drop_queued_asset_triggers(cfg)
        started: dict[str, psutil.Process] = {}
        try:
            for service in SERVICES:
                if _running(cfg, service.name) is None:
                    started[service.name] = _spawn(cfg, service)
                    if service.gate:
                        _wait_healthy(cfg, {service.name: started[service.name]})
            _wait_healthy(cfg, started)
        except LiveError:
            _stop_all(cfg)
            raise
    return status(cfg)


# --------------------------------------------------------------------------- down

def _terminate(procs: list[psutil.Process]) -> None:
    """SIGTERM every process; SIGKILL what still runs after the timeout."""
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=STOP_TIMEOUT_S)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


def _stop_all(cfg: hqms_config.Config) -> list[str]:
    """Stop every service: the leaders first (the scheduler lets its workers finish their task),
    then whatever of their sessions is left, then a sweep for stragglers carrying the mark."""
    leaders = _leaders(cfg)
    sessions = {proc.pid for proc in leaders.values()}
    for proc in reversed(leaders.values()):  # the api-server last: workers report to it
        _terminate([proc])
    _terminate(processes(cfg, sessions))
    _terminate(processes(cfg, sessions))  # anything forked while the last round was stopping
    for service in SERVICES:
        _pid_file(cfg, service.name).unlink(missing_ok=True)
    return list(leaders)


def down(cfg: hqms_config.Config | None = None) -> list[str]:
    """Stop every service of the live system and the embedded S3 server; names what was stopped."""
    from hqms import embedded_s3

    cfg = cfg or hqms_config.load()
    with _locked(cfg):
        stopped = _stop_all(cfg)
        if embedded_s3.stop(cfg):  # whatever the setting says now: no process of this home is left
            stopped.append("s3")
    return stopped


# --------------------------------------------------------------------------- CLI

def register(sub: argparse._SubParsersAction) -> None:
    for name, text, func in (
            ("up", "start the live system: S3, Airflow (scheduler, UI) and the web service", _cli_up),
            ("down", "stop the live system of this HQMS_HOME (no process left behind)", _cli_down),
            ("status", "which services of the live system run, are healthy, and where", _cli_status)):
        p = sub.add_parser(name, help=text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=func)


def describe(rows: list[dict[str, object]], cfg: hqms_config.Config) -> str:
    """Status lines for people, with the UI's login and how to stop."""
    lines = []
    for row in rows:
        state = ("healthy" if row["healthy"] else "running, not healthy" if row["running"]
                 else row.get("note") or "stopped")
        where = f"  {row['url']}" if row.get("url") else ""
        pid = f"  pid {row['pid']}" if row.get("pid") else ""
        lines.append(f"  {row['name']:<14} {state}{pid}{where}")
    if any(r["running"] for r in rows):
        lines.append(f"Airflow UI login: {airflow_env.ADMIN_USER} / password in "
                     f"{airflow_env.passwords_path(cfg)}")
        lines.append(f"logs: {cfg.log_dir}/live-*.log, task logs {cfg.log_dir / 'airflow'}; "
                     "stop everything with `hqms down`")
    return "\n".join(lines)


def _cli_up(args: argparse.Namespace) -> int:
    from hqms.errors import UserError

    cfg = hqms_config.load()
    try:
        rows = up(cfg)
    except (LiveError, RuntimeError) as exc:
        raise UserError(f"hqms up failed (everything it started is stopped again): {exc}") from exc
    print(json.dumps(rows, ensure_ascii=False, indent=2) if args.json
          else "live system of " + str(cfg.home) + ":\n" + describe(rows, cfg))
    return 0


def _cli_down(args: argparse.Namespace) -> int:
    cfg = hqms_config.load()
    stopped = down(cfg)
    if args.json:
        print(json.dumps({"stopped": stopped}))
    else:
        print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def _cli_status(args: argparse.Namespace) -> int:
    cfg = hqms_config.load()
    rows = status(cfg)
    print(json.dumps(rows, ensure_ascii=False, indent=2) if args.json else describe(rows, cfg))
    return 0 if all(r["healthy"] or r.get("note") for r in rows) else 1
