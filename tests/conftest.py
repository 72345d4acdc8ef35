"""Shared fixtures: a real sandbox process reached over HTTP by boto3.

One sandbox serves the whole session (a cold start costs seconds); ``sandbox`` resets it before
each test that uses it, so every test starts with no resources, no faults and default speeds.
``airflow_stack`` likewise runs one real Airflow for the session, for end-to-end tests (marked slow).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from shipflow.runtime.local import AirflowStartError, LocalAirflow, free_port
from shipflow.runtime.rest import AirflowClient
from shipflow.sandbox import DEFAULT_REGION
from shipflow.sandbox.client import SANDBOX_CREDENTIALS, SandboxClient

ROOT = Path(__file__).resolve().parent.parent


def require_services() -> bool:
    """CI sets SHIPFLOW_REQUIRE_SERVICES=1: a missing service is then a failure, not a skip."""
    return os.environ.get("SHIPFLOW_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    if require_services():
        pytest.fail(f"{reason} (SHIPFLOW_REQUIRE_SERVICES=1: a missing service fails the run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def sandbox_process() -> Iterator[SandboxClient]:
    """Start ``shipflow sandbox up --port 0`` in a child process and wait until it answers."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "endpoint"
        log = open(Path(tmp) / "sandbox.log", "w+")  # noqa: SIM115 - closed below
        env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "shipflow", "sandbox", "up", "--port", "0", "--ready-file", str(ready)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            while not ready.exists() or not ready.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"sandbox did not start (exit {proc.poll()}):\n{log.read()[-4000:]}")
                time.sleep(0.05)
            client = SandboxClient(ready.read_text())
            client.wait_ready()
            yield client
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


@pytest.fixture
def sandbox(sandbox_process: SandboxClient) -> SandboxClient:
    """A sandbox with no resources, no faults and default lifecycle speeds."""
    sandbox_process.reset()
    return sandbox_process


@pytest.fixture
def seeded(sandbox: SandboxClient) -> SandboxClient:
    """The sandbox with the example services' resources, and AWS fast enough for end-to-end releases."""
    from shipflow.sandbox.seed import seed

    sandbox.set_lifecycle("time", service="codedeploy", seconds=0.5)
    sandbox.set_lifecycle("time", service="codebuild", seconds=0.2)
    seed(sandbox)
    return sandbox


def upload(sandbox: SandboxClient, service: str, version: str) -> str:
    """Put ``service``'s release bundle for ``version`` where its spec's artifact key says; returns the key."""
    from shipflow.sandbox.seed import bundle, bundle_key

    key = bundle_key(service, version)
    sandbox.boto3("s3").put_object(Bucket="shipflow-artifacts", Key=key, Body=bundle(service, version))
    return key


# -- a live Airflow ---------------------------------------------------------------------------------
AIRFLOW_DAGS = ROOT / "tests" / "airflow_dags"


class AirflowStack:
    """What ``airflow_stack`` yields: a running Airflow, logged-in clients, and its dags folder."""

    def __init__(self, airflow: LocalAirflow) -> None:
        self.airflow = airflow
        self.base_url = airflow.base_url
        self.dags_folder = airflow.dags_folder
        self._clients: dict[str, AirflowClient] = {}

    def client(self, username: str = "ci") -> AirflowClient:
        """A REST client logged in as ``username`` (one of shipflow.runtime.DEFAULT_USERS)."""
        if username not in self._clients:
            self._clients[username] = self.airflow.client(username)
        return self._clients[username]

    def add_dag_file(self, name: str, source: str) -> Path:
        """Write a DAG file into the dags folder; the dag-processor sees it within a few seconds.

        The file appears whole (written aside, then renamed) so a parse never reads half of it.
        Use a name unique to the test: the folder is shared by the whole session.
        """
        path = self.dags_folder / name
        staging = self.dags_folder.parent / f".{name}.tmp"
        staging.write_text(source)
        staging.replace(path)
        return path


def sandbox_connections(sandbox_process: SandboxClient) -> dict[str, str]:
    """The environment that points a stack's AWS connections at the sandbox, with fast polling."""
    connection = {
        "conn_type": "aws",
        "login": SANDBOX_CREDENTIALS["aws_access_key_id"],
        "password": SANDBOX_CREDENTIALS["aws_secret_access_key"],
        "extra": {"endpoint_url": sandbox_process.endpoint, "region_name": DEFAULT_REGION},
    }
    return {
        "AIRFLOW_CONN_AWS_SANDBOX": json.dumps(connection),
        # The example specs use the default connection: locally it is the sandbox too.
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(connection),
        # Release DAGs poll every second here (production default: 30 s).
        "SHIPFLOW_POLL_SECONDS": "1",
    }


@contextmanager
def running_airflow(
    sandbox_process: SandboxClient,
    tmp_path_factory: pytest.TempPathFactory,
    name: str = "airflow",
    timeout: float = 120,
    env: dict[str, str] | None = None,
    **options: Any,
) -> Iterator[AirflowStack]:
    """A started ``LocalAirflow`` over a copy of tests/airflow_dags/, connected to the sandbox.

    ``options`` go to ``LocalAirflow`` (e.g. ``executor="CeleryExecutor"``, ``database_url=...``);
    ``env`` is added to every component's environment.
    A stack that does not start fails the test with every component's last log lines; the stack
    is stopped when the block ends. Logs stay in the pytest temp dir for diagnosis.
    """
    home = tmp_path_factory.mktemp(name)
    dags = home.parent / f"{home.name}-dags"
    shutil.copytree(AIRFLOW_DAGS, dags, ignore=shutil.ignore_patterns("__pycache__"))
    extra_env = {**sandbox_connections(sandbox_process), **(env or {})}
    airflow = LocalAirflow(home, dags, free_port(), extra_env=extra_env, **options)
    try:
        airflow.start(timeout=timeout)
    except AirflowStartError as exc:
        pytest.fail(f"Airflow did not start (home {home}):\n{exc}", pytrace=False)
    try:
        yield AirflowStack(airflow)
    finally:
        airflow.stop()


@pytest.fixture(scope="session")
def airflow_stack(sandbox_process: SandboxClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    """A real Airflow 3 (api-server, scheduler, dag-processor, triggerer) for the whole session.

    Its dags folder is a copy of tests/airflow_dags/ (tests may add files to it); the connection
    ``aws_sandbox`` points at the session's sandbox. Logs stay in the pytest temp dir for diagnosis.
    A stack that does not start fails the test with every component's last log lines.
    """
    with running_airflow(sandbox_process, tmp_path_factory) as stack:
        yield stack
