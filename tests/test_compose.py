"""docker-compose.yml: valid Compose, and wired to the names the code actually reads.

No Docker engine runs here, so the file is checked two ways: against the Compose
specification's JSON schema (vendored in deploy/compose-spec), and against the code — every
``HQMS_*`` variable a service sets must be one the package reads, every dependency, volume and
secret must exist, the warehouse pool created at init must be the one the DAGs use, and the
effective environment must load through ``hqms.config`` to the production shape.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess

import jsonschema
import pytest
import yaml

from hqms import airflow_env, alerts, config, keys

ROOT = config.REPO_ROOT
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMA = ROOT / "deploy" / "compose-spec" / "compose-spec.json"
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
#: Where the image puts the repository (deploy/Dockerfile WORKDIR).
APP_DIR = "/opt/hqms/app"
MINIO_IMAGE = "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"
_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$`` (as the engine does)."""
    def replace(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        current = env.get(name, "")
        if op and op.endswith("?") and not current:
            raise KeyError(f"{name} required: {arg}")
        if op and op.endswith("-") and not current:
            return arg
        return current
    return _INTERPOLATION.sub(replace, value).replace("$$", "$")


def known_hqms_variables() -> set[str]:
    """Every HQMS_* name the package reads: config.py's ``_env("…")`` calls, the bucket names it
    builds from DEFAULT_BUCKETS, the keyring's variables and the alert channels'."""
    source = (ROOT / "plugins" / "hqms" / "config.py").read_text(encoding="utf-8")
    names = set(re.findall(r'_env\("(HQMS_[A-Z0-9_]+)"', source))
    names |= {f"HQMS_BUCKET_{role.upper()}" for role in config.DEFAULT_BUCKETS}
    names |= {*keys.ENV_OVERRIDES.values(), keys.KEYRING_FILE_ENV}
    names |= set(alerts.ENV_VARS)
    return names


def service_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def test_vendored_schema_is_the_published_one() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256


def test_compose_file_conforms_to_the_compose_specification(compose: dict) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # ... and the validator does reject what Compose rejects (a misspelt key, a bad condition).
    def mutated(change) -> dict:
        copy = json.loads(json.dumps(compose))
        change(copy["services"])
        return copy

    assert not validator.is_valid(mutated(lambda s: s["postgres"].update(depend_on=["minio"])))
    assert not validator.is_valid(mutated(
        lambda s: s["airflow-scheduler"]["depends_on"]["postgres"].update(condition="service_ready")))


def test_required_services_and_executor_profiles(compose: dict) -> None:
    services = compose["services"]
    for name in ("postgres", "minio", "minio-init", "airflow-init", "airflow-apiserver",
                 "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "hqms-web"):
        assert name in services and "profiles" not in services[name], name
    assert {n for n, s in services.items() if "celery" in s.get("profiles", [])} == {"redis", "airflow-worker"}
    assert services["airflow-worker"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert services["airflow-scheduler"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == \
        "${AIRFLOW_EXECUTOR:-LocalExecutor}"
    assert services["minio"]["image"] == MINIO_IMAGE
    for name, service in services.items():
        if name in ("minio-init", "airflow-init"):
            assert service.get("restart") == "no", f"{name} is one-shot"
        else:
            assert "healthcheck" in service, f"{name} has no health check"


def test_images_are_pinned(compose: dict) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        if "build" in service:
            continue  # our own image, built from deploy/Dockerfile
        tag = image.rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else ""
        assert tag and tag != "latest", f"{name}: image {image} is not pinned"
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    assert MINIO_IMAGE in dockerfile  # mc comes from the same frozen release


def test_dependencies_exist_and_respect_profiles(compose: dict) -> None:
    services = compose["services"]
    for name, service in services.items():
        deps = service.get("depends_on") or {}
        for dep in deps:
            assert dep in services, f"{name} depends on unknown service {dep}"
            # a service that always runs must not wait for one that only runs in a profile
            if not service.get("profiles"):
                assert not services[dep].get("profiles"), f"{name} needs profile-only {dep}"
        assert name not in deps


def test_volumes_and_secrets_are_declared_and_used(compose: dict) -> None:
    declared = set(compose.get("volumes") or {})
    used: set[str] = set()
    for name, service in compose["services"].items():
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0] if isinstance(mount, str) else mount.get("source", "")
            if source.startswith(("/", ".", "$")):
                if source.startswith("./"):
                    target = ROOT / source
                    assert target.exists() or source.startswith(("./secrets", "./config")), \
                        f"{name}: bind mount {source} does not exist in the repository"
                continue
            assert source in declared, f"{name}: volume {source} is not declared"
            used.add(source)
        for secret in service.get("secrets") or []:
            assert secret in (compose.get("secrets") or {}), f"{name}: secret {secret} not declared"
    assert used == declared, f"declared but unused volumes: {declared - used}"


def test_hqms_variables_are_read_by_the_code(compose: dict) -> None:
    known = known_hqms_variables()
    seen = set()
    for name, service in compose["services"].items():
        for var in service_env(service):
            if var.startswith("HQMS_"):
                seen.add(var)
                assert var in known, f"{name} sets {var}, which nothing in hqms reads"
    # the production essentials are actually set
    assert {"HQMS_S3_ENDPOINT", "HQMS_REGISTRY_URL", "HQMS_WAREHOUSE", "HQMS_KEYRING_FILE"} <= seen


def _use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Exactly the service's HQMS_* variables, nothing from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("HQMS_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("HQMS_"):
            monkeypatch.setenv(name, value)


def test_effective_environment_loads_as_production(compose: dict, env_example: dict[str, str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler's environment, with .env.example substituted, through hqms.config."""
    scheduler = compose["services"]["airflow-scheduler"]
    env = {k: interpolate(v, env_example) for k, v in service_env(scheduler).items()}
    _use_env(monkeypatch, env)
    cfg = config.load()
    assert not cfg.embedded_s3 and cfg.s3_endpoint == "http://minio:9000"
    assert cfg.registry_url.startswith("postgresql+psycopg2://hqms:") and "@postgres:5432/" in cfg.registry_url
    mounts = {m.split(":")[1] for m in scheduler["volumes"] if not m.startswith(".")}
    assert any(str(cfg.warehouse_path).startswith(m + "/") for m in mounts), "warehouse not on a volume"
    assert any(str(cfg.home).startswith(m) for m in mounts), "HQMS_HOME not on a volume"
    assert env["HQMS_KEYRING_FILE"] == "/run/secrets/" + scheduler["secrets"][0]
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == f"{APP_DIR}/dags"


def test_web_service_is_loopback_behind_tls_with_its_own_secret(compose: dict, env_example: dict[str, str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The hospital service: published on loopback only (the TLS proxy is the public door), Secure
    cookies, a secret key from .env, health on /healthz, the registry and HQMS_HOME of the pipeline,
    no keyring and no warehouse volume."""
    web = compose["services"]["hqms-web"]
    assert web["entrypoint"][:2] == ["hqms", "serve"]
    port = web["entrypoint"][web["entrypoint"].index("--port") + 1]
    assert all(p.startswith("127.0.0.1:") and p.endswith(f":{port}") for p in web["ports"])
    assert web["healthcheck"]["test"][-1] == f"http://localhost:{port}/healthz"
    env = {k: interpolate(v, env_example) for k, v in service_env(web).items()}
    assert env["HQMS_WEB_COOKIE_SECURE"] == "true"
    assert web["environment"]["HQMS_WEB_SECRET_KEY"].startswith("${HQMS_WEB_SECRET_KEY:?")
    assert "secrets" not in web and not any("warehouse" in v for v in web["volumes"])
    _use_env(monkeypatch, env)
    cfg = config.load()
    assert cfg.registry_url.startswith("postgresql+psycopg2://hqms:") and cfg.web_cookie_secure == "true"
    assert any(str(cfg.marts_dir).startswith(v.split(":")[1]) for v in web["volumes"])


def test_every_required_variable_is_in_env_example(compose: dict, env_example: dict[str, str]) -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    referenced = {m.group(1) for m in _INTERPOLATION.finditer(text)}
    required = {m.group(1) for m in _INTERPOLATION.finditer(text) if m.group(2) == ":?"}
    assert required <= set(env_example), f"missing from .env.example: {required - set(env_example)}"
    assert set(env_example) <= referenced, f"unused in compose: {set(env_example) - referenced}"
    # only placeholders for secrets: real values live in .env, which is never committed
    for name, value in env_example.items():
        if re.search(r"PASSWORD|SECRET|FERNET|_KEY$", name):
            assert value in ("change-me", ""), f"{name} has a value in .env.example"
    with pytest.raises(KeyError):
        interpolate("${POSTGRES_PASSWORD:?set it}", {})


def test_pools_match_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    init = (ROOT / "deploy" / "airflow" / "init.sh").read_text(encoding="utf-8")
    pools = dict(re.findall(r"^airflow pools set (\S+) (\S+) ", init, re.M))
    assert pools.get(airflow_env.WAREHOUSE_POOL[0]) == airflow_env.WAREHOUSE_POOL[1]
    # the ingest pool's size is the compose setting HQMS_INGEST_WORKERS, default as in the code
    assert pools.get(airflow_env.INGEST_POOL) == '"${HQMS_INGEST_WORKERS:-2}"'
    monkeypatch.delenv("HQMS_INGEST_WORKERS", raising=False)
    default = config.load().ingest_workers
    assert "HQMS_INGEST_WORKERS: ${HQMS_INGEST_WORKERS:-%d}" % default in (ROOT / "docker-compose.yml").read_text()
    assert f'WAREHOUSE_POOL = "{airflow_env.WAREHOUSE_POOL[0]}"' in (ROOT / "dags" / "hqms_marts.py").read_text()
    assert f'INGEST_POOL = "{airflow_env.INGEST_POOL}"' in (ROOT / "dags" / "hqms_ingest.py").read_text()


def test_entrypoint_scripts_exist_and_parse(compose: dict) -> None:
    scripts = []
    for name, service in compose["services"].items():
        for part in service.get("entrypoint") or []:
            if part.startswith(APP_DIR + "/"):
                path = ROOT / part.removeprefix(APP_DIR + "/")
                assert path.is_file(), f"{name}: {part} is not in the repository"
                scripts.append(path)
    scripts.append(ROOT / "deploy" / "postgres" / "init-registry.sh")
    assert len(scripts) == 3
    for path in scripts:
        done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, f"{path}: {done.stderr}"


def test_minio_init_confines_each_hospital_with_the_code_policy() -> None:
    """The init script renders hospital policies with ``hqms policy`` (never hand-written) and
    turns versioning on for the vault."""
    init = (ROOT / "deploy" / "minio" / "init.sh").read_text(encoding="utf-8")
    assert 'hqms policy --org "${org}"' in init
    assert 'mc version enable "hqms/${HQMS_BUCKET_VAULT}"' in init
    assert "read_registry" in init  # org codes are validated before they reach an ARN
