"""``shipflow up`` / ``status`` / ``down``: the local stack as a developer starts and stops it.

The live tests share one stack for the module (Airflow's start-up costs ~45 s), started exactly as
``make up`` does (``shipflow up`` in a child process) but on free ports with a temporary home, and
use it as a developer would: the printed addresses, the logins, the seeded sandbox. The last one
stops it and checks that no process of it is left.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from shipflow.runtime.local import free_port
from shipflow.runtime.rest import AirflowClient
from shipflow.runtime.stack import STATE_FILE, kill_leftovers, read_state
from shipflow.sandbox.client import SandboxClient
from shipflow.sandbox.seed import bundle_key
from tests.conftest import ROOT

RELEASE_DAGS = {"release__inventory-worker", "release__payments-api", "release__storefront-web"}


# The stacks started here record to this store, not to the default one in the user's home.
AUDIT_URL = f"sqlite:///{tempfile.mkdtemp(prefix='shipflow-stack-tests-')}/audit.db"


def shipflow(*args: str, timeout: float = 480) -> subprocess.CompletedProcess[str]:
    """The ``shipflow`` command in a child process, with none of the caller's AIRFLOW_* settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env["SHIPFLOW_AUDIT_URL"] = AUDIT_URL
    return subprocess.run(
        [sys.executable, "-m", "shipflow", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT / "plugins")},
    )


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def processes_under(home: Path) -> list[str]:
    """Processes whose command line or working directory is inside ``home`` (the stack's own)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "cwd"]):
        cmdline, cwd = " ".join(process.info["cmdline"] or []), process.info["cwd"] or ""
        if str(home) in cmdline or cwd.startswith(str(home)):
            found.append(f"{process.info['pid']} {cmdline[:120]}")
    return found


@dataclass
class Started:
    home: Path
    port: int
    sandbox_port: int
    output: str
    state: dict


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("stack")
    port, sandbox_port = free_port(), free_port()
    result = shipflow("up", "--home", str(home), "--port", str(port), "--sandbox-port", str(sandbox_port))
    state = read_state(home) or {}
    try:
        if result.returncode != 0:
            pytest.fail(f"shipflow up exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
        yield Started(home, port, sandbox_port, result.stdout, state)
    finally:
        shipflow("down", "--home", str(home), timeout=120)  # "not running" once the last test stopped it
        # Should `down` itself be broken, leave nothing behind for the rest of the session.
        if state.get("pid") and alive(state["pid"]):
            os.kill(state["pid"], 9)
        kill_leftovers(state)


@pytest.mark.slow
def test_up_starts_a_stack_reachable_at_the_printed_addresses(stack: Started):
    out = stack.output
    ui = re.search(r"Airflow UI\s+(\S+)", out).group(1)
    endpoint = re.search(r"AWS sandbox\s+(\S+)", out).group(1)
    assert (ui, endpoint) == (f"http://127.0.0.1:{stack.port}", f"http://127.0.0.1:{stack.sandbox_port}")
    for login in ("admin/admin", "approver1/approver1", "approver2/approver2", "ci/ci", "viewer/viewer"):
        assert login in out
    assert "shipflow release inventory-worker" in out and "shipflow down" in out

    # The address and a printed login work: CI sees every release DAG, parsed and unpaused.
    ci = AirflowClient.login(ui, "ci", "ci")
    dags = ci.get("/api/v2/dags", dag_id_pattern="release__")["dags"]
    assert {dag["dag_id"]: dag["is_paused"] for dag in dags} == {dag_id: False for dag_id in RELEASE_DAGS}

    # The sandbox is seeded from the specs, and holds the example artifacts the printed commands release.
    sandbox = SandboxClient(endpoint)
    groups = sandbox.boto3("codedeploy").list_deployment_groups(applicationName="inventory-worker")
    assert sorted(groups["deploymentGroups"]) == ["inventory-worker-production", "inventory-worker-staging"]
    sandbox.boto3("s3").head_object(Bucket="shipflow-artifacts", Key=bundle_key("inventory-worker", "1.1.0"))

    # The state file names the supervisor and every Airflow component, all alive.
    assert stack.state["status"] == "running"
    assert set(stack.state["components"]) >= {"api-server", "scheduler", "dag-processor", "triggerer"}
    assert all(alive(pid) for pid in [stack.state["pid"], *(c["pid"] for c in stack.state["components"].values())])

    status = shipflow("status", "--home", str(stack.home), timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "Shipflow stack: running" in status.stdout
    assert re.search(r"ok\s+release__storefront-web\s+parsed, unpaused", status.stdout)
    assert "BAD" not in status.stdout


@pytest.mark.slow
def test_up_again_reports_the_running_stack(stack: Started):
    again = shipflow("up", "--home", str(stack.home), "--port", str(stack.port),
                     "--sandbox-port", str(stack.sandbox_port), timeout=60)

    assert again.returncode == 0, again.stderr
    assert "Shipflow stack already running" in again.stdout
    assert f"Airflow UI    http://127.0.0.1:{stack.port}" in again.stdout
    assert read_state(stack.home)["pid"] == stack.state["pid"]  # no second supervisor


@pytest.mark.slow
def test_down_stops_every_process_and_frees_the_ports(stack: Started):
    pids = [stack.state["pid"], *(c["pid"] for c in stack.state["components"].values())]

    down = shipflow("down", "--home", str(stack.home), timeout=120)

    assert down.returncode == 0, down.stderr
    assert "Stopped Airflow and the sandbox" in down.stdout
    assert [pid for pid in pids if alive(pid)] == []
    assert not listening(stack.port) and not listening(stack.sandbox_port)
    assert not (stack.home / STATE_FILE).exists()
    assert processes_under(stack.home) == []
    assert (stack.home / "airflow" / "airflow.db").exists()  # runs and history stay for the next `up`

    again = shipflow("down", "--home", str(stack.home), timeout=60)
    assert (again.returncode, again.stdout.strip()) == (0, f"Shipflow stack not running (no {stack.home / STATE_FILE})")
    status = shipflow("status", "--home", str(stack.home), timeout=60)
    assert status.returncode == 1 and "not running" in status.stdout


def test_up_refuses_a_port_in_use_in_one_line(tmp_path: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = shipflow("up", "--home", str(tmp_path), "--port", str(port), "--sandbox-port", str(free_port()),
                          timeout=60)

    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"shipflow: port {port} (for Airflow) is already in use on 127.0.0.1: "
        "stop what uses it or choose another with --port"
    )
    assert not (tmp_path / STATE_FILE).exists()


def test_down_and_status_clean_up_a_stale_state_file(tmp_path: Path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    state_file = tmp_path / STATE_FILE
    state_file.write_text(f'{{"pid": {gone.pid}, "created": {time.time()}, "status": "running", "components": {{}}}}')

    status = shipflow("status", "--home", str(tmp_path), timeout=60)
    assert status.returncode == 1
    assert f"not running (stale {state_file}: pid {gone.pid} is gone" in status.stdout

    down = shipflow("down", "--home", str(tmp_path), timeout=60)
    assert down.returncode == 0
    assert f"removed the stale {state_file}" in down.stdout
    assert not state_file.exists()


@pytest.mark.slow
def test_a_stack_that_cannot_start_shows_the_logs_and_leaves_nothing_running(tmp_path: Path):
    port, sandbox_port = free_port(), free_port()

    # One second is not enough for `airflow db migrate`: the start fails half-way, with the sandbox up.
    result = shipflow("up", "--home", str(tmp_path), "--port", str(port), "--sandbox-port", str(sandbox_port),
                      "--timeout", "1", timeout=180)

    assert result.returncode == 1
    assert "shipflow: the local stack did not start: Airflow did not start" in result.stderr
    assert "----- db-migrate" in result.stderr  # the components' log tails
    assert "Nothing is left running" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / STATE_FILE).exists()
    assert not listening(port) and not listening(sandbox_port)
    assert processes_under(tmp_path) == []
