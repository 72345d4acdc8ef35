"""docker-compose.yaml and the Dockerfile agree with the native Celery stack that the tests run.

There is no Docker engine where Shipflow is developed and tested, so the compose file is never
started here. tests/runtime/test_distributed.py proves the topology with real processes
(``LocalAirflow(executor="CeleryExecutor")``); these tests make sure the compose file describes that
same stack: the same components running the same ``airflow`` commands (checked against the
installed Airflow's own CLI parser), the same executor, users and settings, mounts where the code
expects them, connections to the sandbox service, and the image on the same Airflow and Python.
A setting added to one and not the other fails here until it is added, or listed below with why.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import yaml

from shipflow.cli import build_parser
from shipflow.runtime import DEFAULT_USERS
from shipflow.runtime.local import LocalAirflow, celery_worker_name
from shipflow.sandbox import CONTROL_PREFIX, DEFAULT_PORT
from tests.conftest import ROOT, sandbox_connections

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
# Native component -> the compose service that runs it.
SERVICE_OF = {
    "api-server": "airflow-apiserver",
    "scheduler": "airflow-scheduler",
    "dag-processor": "airflow-dag-processor",
    "triggerer": "airflow-triggerer",
    celery_worker_name(1): "airflow-worker",
    celery_worker_name(2): "airflow-worker",
}
AIRFLOW_SERVICES = {"airflow-init", *SERVICE_OF.values()}
# Worker flags of the native stack that compose expresses otherwise.
NATIVE_ONLY_FLAGS = {
    "--celery-hostname": "each compose worker is a container with its own host name",
    "--concurrency": "compose sets AIRFLOW__CELERY__WORKER_CONCURRENCY",
}
# Settings only one side needs, and why.
NATIVE_ONLY_SETTINGS = {
    "AIRFLOW_HOME": "per-stack temp dir natively; the image's /opt/airflow in compose",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "tests add DAG files at run time and need them seen in seconds",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "as above",
    "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "as above",
    "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": "several stacks share one machine's temp dir natively",
}
COMPOSE_ONLY_SETTINGS = {
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "workers reach the api-server by service name, browsers by localhost",
    "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "the scheduler container's healthcheck",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "natively the --concurrency flag",
}


@pytest.fixture(scope="module")
def native(tmp_path_factory) -> LocalAirflow:
    """The native Celery stack as test_distributed.py configures it (not started)."""
    home = tmp_path_factory.mktemp("compose-native")
    sandbox = SimpleNamespace(endpoint="http://127.0.0.1:4566")
    return LocalAirflow(
        home, home / "dags", 8080, extra_env=sandbox_connections(sandbox), executor="CeleryExecutor",
        database_url="postgresql+psycopg2://postgres@127.0.0.1:5432/shipflow_dist_0",
        broker_url="redis://127.0.0.1:6379/7",
    )  # fmt: skip


def common_env() -> dict[str, str]:
    return SERVICES["airflow-scheduler"]["environment"]


def command(service: str) -> list[str]:
    value = SERVICES[service]["command"]
    return shlex.split(value) if isinstance(value, str) else list(value)


def without_native_only_flags(tokens: tuple[str, ...]) -> list[str]:
    kept, skip = [], False
    for token in tokens:
        if skip:
            skip = False
        elif token in NATIVE_ONLY_FLAGS:
            skip = True  # the flag's value goes with it
        else:
            kept.append(token)
    return kept


def test_the_services_are_the_native_components_plus_their_backends(native):
    assert set(SERVICES) == {*SERVICE_OF.values(), "airflow-init", "postgres", "redis", "sandbox"}
    assert {SERVICE_OF[component] for component in native.components} == set(SERVICE_OF.values())
    # As many worker replicas as the native stack has workers.
    assert SERVICES["airflow-worker"]["deploy"]["replicas"] == native.celery_workers == 2


def test_each_service_runs_the_same_airflow_command_as_its_native_component(native):
    for component, tokens in native.commands.items():
        assert command(SERVICE_OF[component]) == without_native_only_flags(tokens), component


def test_the_commands_exist_in_the_installed_airflow(tmp_path):
    """Every ``airflow`` command compose runs parses with Airflow's own CLI (celery ones need the executor)."""
    commands = [command(service) for service in sorted(SERVICE_OF.values())]
    commands += [["db", "migrate"], ["version"], ["jobs", "check", "--job-type", "DagProcessorJob", "--hostname", "h"]]
    commands += [["jobs", "check", "--job-type", "TriggererJob", "--hostname", "h"]]
    script = (
        "import json, sys\n"
        "from airflow.cli.cli_parser import get_parser\n"
        "from airflow.configuration import conf\n"
        "parser = get_parser()\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    parser.parse_args(argv)\n"
        "print(conf.get('api_auth', 'jwt_secret'))\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env |= {
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__EXECUTOR": common_env()["AIRFLOW__CORE__EXECUTOR"],
        # Compose reads the JWT secret through a command; check Airflow honours `_CMD` for it.
        "AIRFLOW__API_AUTH__JWT_SECRET_CMD": "echo secret-from-a-command",
    }
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(commands)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "secret-from-a-command"


def test_every_airflow_service_shares_one_configuration():
    for name in AIRFLOW_SERVICES - {"airflow-worker"}:
        assert SERVICES[name]["environment"] == common_env(), name
    # The worker adds one variable, for Celery's warm shutdown.
    worker = dict(SERVICES["airflow-worker"]["environment"])
    assert worker.pop("DUMB_INIT_SETSID") == "0" and worker == common_env()


def test_settings_do_not_drift_from_the_native_stack(native):
    def names(env) -> set[str]:
        return {
            key.removesuffix("_CMD")  # a secret read through a command is the same setting
            for key in env
            if key.startswith(("AIRFLOW", "SHIPFLOW_")) or key == "PYTHONPATH"
        }

    # What LocalAirflow sets, not what it passes on from the caller's shell (e.g. SHIPFLOW_REQUIRE_SERVICES).
    set_natively = {key for key in native.env if key not in os.environ or key.startswith("AIRFLOW")}
    set_natively |= {"PYTHONPATH", *native.extra_env}
    native_names = names(set_natively) - set(NATIVE_ONLY_SETTINGS)
    compose_names = names(common_env()) - set(COMPOSE_ONLY_SETTINGS)
    assert sorted(native_names - compose_names) == [], "set in the native stack, missing in docker-compose.yaml"
    assert sorted(compose_names - native_names) == [], "set in docker-compose.yaml, not in the native stack"
    for same in (
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__CORE__AUTH_MANAGER",
        "AIRFLOW__CORE__LOAD_EXAMPLES",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION",
        "AIRFLOW__CELERY__OPERATION_TIMEOUT",
    ):
        assert common_env()[same] == native.env[same], same


def test_the_users_are_the_native_users():
    expected = ",".join(f"{user}:{role}" for user, role in DEFAULT_USERS.items())
    assert common_env()["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == expected
    # airflow-init writes the passwords file and the JWT secret where the settings say.
    init = "\n".join(command("airflow-init"))
    assert common_env()["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] in init
    assert common_env()["AIRFLOW__API_AUTH__JWT_SECRET_CMD"].split()[-1] in init
    assert "airflow db migrate" in init


def test_code_and_specs_are_mounted_where_airflow_and_the_builder_look():
    env = common_env()
    mounts = dict(volume.split(":")[::-1] for volume in SERVICES["airflow-scheduler"]["volumes"])  # target -> source
    assert mounts[env["AIRFLOW__CORE__DAGS_FOLDER"]] == "./dags"
    assert mounts[env["AIRFLOW__CORE__PLUGINS_FOLDER"]] == "./plugins"
    assert env["PYTHONPATH"] == env["AIRFLOW__CORE__PLUGINS_FOLDER"]  # the mounted package wins
    # The builder and the sandbox seed find include/ beside plugins/, as in the repository.
    include = str(PurePosixPath(env["AIRFLOW__CORE__PLUGINS_FOLDER"]).parent / "include")
    assert mounts[include] == "./include"
    for source in ("./dags", "./plugins", "./include"):
        assert (ROOT / source).is_dir(), source
    # Task logs: one volume for every Airflow container, so the api-server reads workers' logs.
    log_mounts = {
        next(v for v in SERVICES[name]["volumes"] if v.endswith(":" + env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"]))
        for name in AIRFLOW_SERVICES
    }
    assert log_mounts == {"airflow-logs:/opt/airflow/logs"} and "airflow-logs" in COMPOSE["volumes"]


def test_database_and_broker_are_the_compose_services(native):
    env = common_env()
    database = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    postgres = SERVICES["postgres"]["environment"]
    assert database.scheme == urlsplit(native.database_url).scheme == "postgresql+psycopg2"
    assert (database.hostname, database.username, database.password, database.path) == (
        "postgres", postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], "/" + postgres["POSTGRES_DB"],
    )  # fmt: skip
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert native.env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + native.database_url  # the same rule
    broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
    assert (broker.scheme, broker.hostname) == ("redis", "redis")
    assert SERVICES["postgres"]["image"] == "postgres:16" and SERVICES["redis"]["image"] == "redis:7"


def test_the_aws_connections_point_at_the_sandbox_service():
    program, *arguments = command("sandbox")
    assert program == "shipflow"  # the console script the image installs
    sandbox_cli = build_parser().parse_args(arguments)
    assert (sandbox_cli.host, sandbox_cli.port, sandbox_cli.seed) == ("0.0.0.0", DEFAULT_PORT, True)
    native = sandbox_connections(SimpleNamespace(endpoint=f"http://sandbox:{DEFAULT_PORT}"))
    for name in ("AIRFLOW_CONN_AWS_DEFAULT", "AIRFLOW_CONN_AWS_SANDBOX"):
        assert json.loads(common_env()[name]) == json.loads(native[name]), name
    assert f"http://localhost:{DEFAULT_PORT}{CONTROL_PREFIX}/health" in SERVICES["sandbox"]["healthcheck"]["test"]


def test_every_long_running_service_has_a_healthcheck_and_waits_for_init():
    for name, service in SERVICES.items():
        if name != "airflow-init":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in SERVICE_OF.values():
        assert SERVICES[name]["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}
    assert SERVICES["airflow-apiserver"]["ports"] == ["8080:8080"]
    assert common_env()["AIRFLOW__API__PORT"] == "8080"


def test_the_image_is_the_installed_airflow_on_this_python():
    airflow_version = version("apache-airflow")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    [base] = [line for line in dockerfile if line.startswith("FROM ")]
    assert base == f"FROM apache/airflow:{airflow_version}-python{python}"
    assert COMPOSE["x-airflow-common"]["image"].endswith(f":{airflow_version}}}")
    assert "RUN pip install --no-cache-dir -r /opt/shipflow/requirements.txt" in dockerfile
    # What the image copies is not excluded by .dockerignore.
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"}
    for copied in ("requirements.txt", "pyproject.toml", "README.md", "plugins", "dags", "include"):
        assert copied not in ignored and (ROOT / copied).exists(), copied
    assert Path(ROOT / "requirements.txt").read_text().count(f"apache-airflow=={airflow_version}") == 1
