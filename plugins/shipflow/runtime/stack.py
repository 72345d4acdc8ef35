"""The local Shipflow stack: ``shipflow up`` / ``down`` / ``status``, and the stack ``make demo`` runs on.

A stack is the AWS sandbox (moto, extended; served from a thread, seeded from ``include/services/``)
plus a ``LocalAirflow`` over ``dags/`` whose ``aws_default`` connection points at that sandbox.
``LocalStack`` runs both on behalf of the calling process: the demo uses it directly, and
``shipflow up`` starts ``shipflow stack serve``, a supervisor detached from the terminal that runs
one ``LocalStack`` until ``shipflow down`` sends it SIGTERM.

A stack home (default ``.shipflow/``, git-ignored) holds::

    stack.json            while it runs: supervisor pid, URLs, status, component pids
    airflow/              AIRFLOW_HOME: the SQLite DB (runs and history survive down/up), JWT secret
    logs/supervisor.log   the supervisor, the sandbox's warnings, why a start failed
    logs/airflow/         -> airflow/logs: api-server.log, scheduler.log, ... and the task logs

The sandbox keeps its AWS resources in memory: every ``up`` seeds a fresh one, while Airflow's
history carries over.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shipflow.runtime import DEFAULT_USERS
from shipflow.runtime.local import HEALTH_CHECKS, AirflowStartError, LocalAirflow
from shipflow.sandbox import DEFAULT_HOST
from shipflow.sandbox import DEFAULT_PORT as DEFAULT_SANDBOX_PORT

ROOT = Path(__file__).resolve().parents[3]
DAGS_FOLDER = ROOT / "dags"
DEFAULT_HOME = ".shipflow"
DEFAULT_PORT = 8080
STATE_FILE = "stack.json"
# Airflow alone needs ~40 s on 2 cores, more while other stacks run; the release DAGs follow.
START_TIMEOUT = 300.0
# LocalAirflow.stop() needs at most 20 s; the rest is for the sandbox and the supervisor itself.
STOP_TIMEOUT = 60.0
# Release DAGs poll AWS this often (production default 30 s); SHIPFLOW_POLL_SECONDS overrides it.
POLL_SECONDS = "5"
# Lifecycle speeds (seconds per step) that make a release take about a minute, as in the demo.
LIFECYCLE_SECONDS = {"codedeploy": 0.5, "codebuild": 0.2}
# Artifacts uploaded at start, beside the seeded initial versions: the versions the demo releases,
# so that the commands `shipflow up` suggests work as printed.
EXAMPLE_ARTIFACTS = (("inventory-worker", "1.1.0"), ("storefront-web", "2.4.0"), ("inventory-worker", "1.2.0"))

log = logging.getLogger(__name__)


class StackStartError(RuntimeError):
    """The stack did not become ready; the message says which part failed and shows its logs."""


class _StopRequested(BaseException):
    """SIGTERM/SIGINT reached the supervisor: unwind and stop everything (not an ``Exception``,
    so that no ``except Exception`` on the way swallows it)."""


class StackAirflow(LocalAirflow):
    """``LocalAirflow`` plus what a supervisor reports about its processes."""

    def pids(self) -> dict[str, int]:
        return {component: process.pid for component, process in self._processes.items()}

    def exited(self) -> dict[str, int]:
        """Components that exited, with their exit codes (empty while all run)."""
        return {c: p.returncode for c, p in self._processes.items() if p.poll() is not None}


def _aws_connection(endpoint: str, region: str) -> str:
    from shipflow.sandbox.client import SANDBOX_CREDENTIALS

    return json.dumps(
        {
            "conn_type": "aws",
            "login": SANDBOX_CREDENTIALS["aws_access_key_id"],
            "password": SANDBOX_CREDENTIALS["aws_secret_access_key"],
            "extra": {"endpoint_url": endpoint, "region_name": region},
        }
    )


class LocalStack:
    """The sandbox and a LocalAirflow, started and stopped together in this process.

    :param home: the stack home (see the module docstring); created if missing.
    :param port: Airflow's API server and UI port.
    :param sandbox_port: the sandbox's port; 0 picks a free one (``sandbox_url`` tells which).
    :param poll_seconds: SHIPFLOW_POLL_SECONDS for the release DAGs.
    :param audit_url: the audit store the stack records to (default: one inside its home). ``shipflow up``
        and ``shipflow demo`` give the store ``shipflow audit`` and ``shipflow metrics`` read by default.
    """

    def __init__(
        self,
        home: str | os.PathLike[str],
        *,
        port: int,
        sandbox_port: int,
        host: str = DEFAULT_HOST,
        poll_seconds: str = POLL_SECONDS,
        audit_url: str | None = None,
        dags_folder: Path = DAGS_FOLDER,
    ) -> None:
        self.home = Path(home).resolve()
        self.airflow_home = self.home / "airflow"
        self.logs = self.home / "logs"
        self.host = host
        self.port = port
        self.sandbox_port = sandbox_port
        self.poll_seconds = poll_seconds
        self.audit_url = audit_url
        self.dags_folder = dags_folder
        self.services: list[str] = []
        self.spec_problems: list[str] = []
        self.airflow: StackAirflow | None = None
        self._server: Any = None

    @property
    def airflow_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://{self.host}:{self.sandbox_port}"

    @property
    def release_dags(self) -> list[str]:
        return [f"release__{service}" for service in self.services]

    def start(self, timeout: float = START_TIMEOUT, say: Callable[[str], None] = log.info) -> None:
        """Start the sandbox, seed it, start Airflow and wait until every release DAG is parsed.

        ``say`` gets one line per step. On failure (``StackStartError``, with the logs) or
        interruption, everything started so far is stopped before the exception propagates.
        """
        started = time.monotonic()
        deadline = started + timeout
        self.logs.mkdir(parents=True, exist_ok=True)
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        link = self.logs / "airflow"
        if not link.is_symlink():  # one place for every log: logs/airflow -> ../airflow/logs
            link.symlink_to(Path("..") / "airflow" / "logs", target_is_directory=True)
        try:
            self._start_sandbox()
            say(f"sandbox at {self.sandbox_url}, seeded from include/services/ ({time.monotonic() - started:.0f}s)")
            for problem in self.spec_problems:
                say(f"skipped an invalid service spec (no release DAG): {problem}")
            airflow = self._start_airflow(deadline)
            say(f"Airflow at {self.airflow_url} ({time.monotonic() - started:.0f}s)")
            self._wait_for_release_dags(airflow, deadline)
            say(f"release DAGs parsed: {', '.join(self.release_dags)} ({time.monotonic() - started:.0f}s)")
        except BaseException:
            self.stop()
            raise

    def _start_sandbox(self) -> None:
        from shipflow.sandbox.client import SandboxClient, SandboxError
        from shipflow.sandbox.seed import seed as seed_sandbox
        from shipflow.sandbox.seed import upload_artifact
        from shipflow.sandbox.server import make_server
        from shipflow.spec import load_specs

        try:
            self._server = make_server(self.host, self.sandbox_port)
        except OSError as exc:
            raise StackStartError(f"the sandbox cannot listen on {self.host}:{self.sandbox_port}: {exc}") from None
        self.sandbox_port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="sandbox", daemon=True).start()
        sandbox = SandboxClient(self.sandbox_url)
        # One invalid spec must not take the other services down: seed and expect the valid ones.
        specs, problems = load_specs()
        self.spec_problems = [str(problem) for problem in problems]
        self.services = sorted(spec.service for spec in specs)
        try:
            sandbox.wait_ready()
            for service, seconds in LIFECYCLE_SECONDS.items():
                sandbox.set_lifecycle("time", service=service, seconds=seconds)
            seed_sandbox(sandbox, specs=specs)
            by_name = {spec.service: spec for spec in specs}
            for service, version in EXAMPLE_ARTIFACTS:
                if service in by_name:
                    upload_artifact(sandbox, by_name[service], version)
        except SandboxError as exc:
            raise StackStartError(f"the sandbox did not start or could not be seeded: {exc}") from None

    def _start_airflow(self, deadline: float) -> StackAirflow:
        from shipflow.sandbox import DEFAULT_REGION

        extra_env = {
            "AIRFLOW_CONN_AWS_DEFAULT": _aws_connection(self.sandbox_url, DEFAULT_REGION),
            "SHIPFLOW_POLL_SECONDS": self.poll_seconds,
        }
        if self.audit_url:
            extra_env["SHIPFLOW_AUDIT_URL"] = self.audit_url
        self.airflow = StackAirflow(self.airflow_home, self.dags_folder, self.port, extra_env=extra_env)
        try:
            self.airflow.start(timeout=max(1.0, deadline - time.monotonic()))
        except AirflowStartError as exc:
            raise StackStartError(f"Airflow did not start: {exc}") from None
        return self.airflow

    def _wait_for_release_dags(self, airflow: StackAirflow, deadline: float) -> None:
        client = airflow.client("admin")
        for dag_id in self.release_dags:
            try:
                client.wait_for_dag(dag_id, timeout=max(1.0, deadline - time.monotonic()))
            except TimeoutError as exc:
                raise StackStartError(
                    f"{exc}\n----- dag-processor ({airflow.logs_folder / 'dag-processor.log'}) -----\n"
                    f"{airflow.log_tail('dag-processor')}"
                ) from None

    def stop(self) -> None:
        """Stop Airflow, then the sandbox; safe to call twice or after a failed start."""
        if self.airflow is not None:
            self.airflow.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# -- the state file -------------------------------------------------------------------------------
def state_path(home: Path) -> Path:
    return home / STATE_FILE


def read_state(home: Path) -> dict[str, Any] | None:
    try:
        return json.loads(state_path(home).read_text())
    except FileNotFoundError:
        return None
    except ValueError:  # half written by a process that died mid-write: treat as stale
        return {"pid": None, "status": "unreadable"}


def write_state(home: Path, state: dict[str, Any]) -> None:
    path = state_path(home)
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(state, indent=2) + "\n")
    staging.replace(path)  # readers never see half a file


def remove_state(home: Path, pid: int | None = None) -> None:
    """Remove the state file (only if it still describes ``pid``, when given)."""
    state = read_state(home)
    if state is not None and (pid is None or state.get("pid") == pid):
        state_path(home).unlink(missing_ok=True)


def _process(pid: int | None, created: float | None) -> Any:
    """The live process ``pid`` if it is the one that was started at ``created`` (pids get reused)."""
    import psutil

    if not pid:
        return None
    try:
        process = psutil.Process(pid)
        if created is not None and abs(process.create_time() - created) > 1:
            return None
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except psutil.NoSuchProcess:
        return None


def _supervisor(state: dict[str, Any] | None) -> Any:
    return _process(state.get("pid"), state.get("created")) if state else None


def kill_leftovers(state: dict[str, Any]) -> list[str]:
    """SIGKILL the process group of every component still alive (the supervisor died without
    stopping them); returns their names."""
    killed = []
    for component, entry in (state.get("components") or {}).items():
        if _process(entry.get("pid"), entry.get("created")) is not None:
            try:
                os.killpg(entry["pid"], signal.SIGKILL)  # its own group: the component and its workers
                killed.append(component)
            except ProcessLookupError:
                pass
    return killed


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- the supervisor: `shipflow stack serve` -------------------------------------------------------
def serve(home: Path, port: int, sandbox_port: int, host: str = DEFAULT_HOST, timeout: float = START_TIMEOUT) -> int:
    """Run a LocalStack until SIGTERM/SIGINT, keeping ``stack.json`` up to date. Exit 1 if it cannot start."""
    import psutil

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    from shipflow.audit.store import resolve_url

    stack = LocalStack(home, port=port, sandbox_port=sandbox_port, host=host,
                       poll_seconds=os.environ.get("SHIPFLOW_POLL_SECONDS", POLL_SECONDS), audit_url=resolve_url())
    me = psutil.Process()
    state: dict[str, Any] = {
        "pid": me.pid,
        "created": me.create_time(),
        "status": "starting",
        "started": _now(),
        "home": str(stack.home),
        "airflow_url": stack.airflow_url,
        "sandbox_url": stack.sandbox_url,
        "logs": str(stack.logs),
    }
    stack.home.mkdir(parents=True, exist_ok=True)
    write_state(stack.home, state)

    def request_stop(signum: int, frame: Any) -> None:
        # Once: a second signal must not interrupt the orderly stop that the first one began.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        log.info("%s received: stopping", signal.Signals(signum).name)
        raise _StopRequested

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    code = 0
    try:
        stack.start(timeout=timeout)
        airflow = stack.airflow
        if airflow is None:  # start() returns only once Airflow is up
            raise RuntimeError("LocalStack.start() returned without Airflow")
        state.update(
            status="running",
            ready=_now(),
            sandbox_url=stack.sandbox_url,
            release_dags=stack.release_dags,
            spec_problems=stack.spec_problems,
            components={
                component: {"pid": pid, "created": psutil.Process(pid).create_time()}
                for component, pid in airflow.pids().items()
            },
        )
        write_state(stack.home, state)
        log.info("stack ready: Airflow %s, sandbox %s", stack.airflow_url, stack.sandbox_url)
        while True:
            time.sleep(2)
            exited = airflow.exited()
            if exited and state["status"] == "running":
                # Reported, not repaired: a restart would hide the cause; `shipflow status` shows it.
                state["status"] = "degraded"
                state["problem"] = ", ".join(f"{c} exited with code {rc}" for c, rc in exited.items())
                write_state(stack.home, state)
                log.error("%s; see %s", state["problem"], stack.logs / "airflow")
    except _StopRequested:
        pass
    except StackStartError as exc:
        log.error("the stack did not start: %s", exc)
        state.update(status="failed", error=str(exc))
        write_state(stack.home, state)
        return 1  # the state file stays: `shipflow up` reads the error from it
    except BaseException as exc:
        log.exception("the supervisor failed")
        state.update(status="failed", error=f"{type(exc).__name__}: {exc} (see {stack.logs / 'supervisor.log'})")
        write_state(stack.home, state)
        code = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
        log.info("stopped")
    if code == 0:
        remove_state(stack.home, me.pid)
    return code


# -- up / down / status ---------------------------------------------------------------------------
def _logins() -> str:
    return ", ".join(f"{user}/{user}" for user in DEFAULT_USERS)


def describe(state: dict[str, Any], home: Path) -> str:
    """What a running stack offers and what to do next (printed by `up`, and `up` again)."""
    url, sandbox = state["airflow_url"], state["sandbox_url"]
    home_flag = "" if home == Path(DEFAULT_HOME).resolve() else f" --home {home}"
    lines = [
        f"  Airflow UI    {url}  (logins: {_logins()})",
        f"  AWS sandbox   {sandbox}  (any credentials; seeded from include/services/)",
        f"  release DAGs  {', '.join(state.get('release_dags') or []) or '-'}",
        f"  logs          {state['logs']}/  (supervisor.log, airflow/<component>.log)",
    ]
    for problem in state.get("spec_problems") or []:
        lines.append(f"  skipped spec  {problem}")
    lines += [
        "Next (as CI, then as an approver; the triggering user cannot approve):",
        f"  export SHIPFLOW_AIRFLOW_URL={url} SHIPFLOW_AIRFLOW_USERNAME=ci SHIPFLOW_AIRFLOW_PASSWORD=ci",
        "  shipflow release inventory-worker --version 1.1.0 --commit 4f2a9c1 --change CHG-1 --wait",
        "  shipflow release storefront-web --version 2.4.0 --commit 4f2a9c1 --change CHG-2 --wait",
        f"    production waits for approver1 or approver2: approve in the UI ({url}) or in another shell:",
        "    SHIPFLOW_AIRFLOW_USERNAME=approver1 SHIPFLOW_AIRFLOW_PASSWORD=approver1 "
        "shipflow approve storefront-web --env production",
        f"  SHIPFLOW_SANDBOX_ENDPOINT={sandbox} shipflow sandbox fault add fail codedeploy   # a failure drill",
        f"  shipflow status{home_flag}    shipflow down{home_flag}    (make status, make down)",
    ]
    return "\n".join(lines)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log: {path})"
    return "\n".join(text.splitlines()[-lines:])


def _stop_supervisor(process: Any, timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM the supervisor and wait; SIGKILL it after ``timeout``, and any process it started
    that outlived it (even one the state file does not name yet). True if all stopped by themselves."""
    import psutil

    try:
        descendants = process.children(recursive=True)
    except psutil.NoSuchProcess:
        return True
    clean = True
    try:
        process.terminate()
        process.wait(timeout)
    except psutil.TimeoutExpired:
        process.kill()
        process.wait(10)
        clean = False
    except psutil.NoSuchProcess:
        pass
    for leftover in descendants:
        try:
            if leftover.is_running() and leftover.status() != psutil.STATUS_ZOMBIE:
                leftover.kill()
                clean = False
        except psutil.NoSuchProcess:
            pass
    return clean


def up(home: Path, port: int, sandbox_port: int, host: str = DEFAULT_HOST, timeout: float = START_TIMEOUT) -> int:
    """Start the stack detached (or find it running) and wait until it is ready."""
    import psutil

    from shipflow.cli import UsageError

    home = home.resolve()
    state = read_state(home)
    supervisor = _supervisor(state)
    if supervisor is not None and state is not None:
        if state["status"] in ("running", "degraded"):
            print(f"Shipflow stack already running (pid {state['pid']}, since {state.get('ready')}, home {home})")
            if state["status"] == "degraded":
                print(f"  but degraded: {state.get('problem')}; restart it: shipflow down && shipflow up")
            print(describe(state, home))
            return 0
        print(f"Shipflow stack is already starting (pid {state['pid']}); waiting until it is ready")
    else:
        if state is not None:  # the supervisor died without cleaning up (SIGKILL, reboot)
            killed = kill_leftovers(state)
            remove_state(home)
            print(f"removed a stale state file {state_path(home)} (pid {state.get('pid')} is gone"
                  + (f"; stopped its leftover {', '.join(killed)}" if killed else "") + ")")
        if port == sandbox_port:
            raise UsageError(f"--port and --sandbox-port are both {port}: choose two different ports")
        for what, flag, number in (("Airflow", "--port", port), ("the sandbox", "--sandbox-port", sandbox_port)):
            if _port_in_use(host, number):
                raise UsageError(f"port {number} (for {what}) is already in use on {host}: "
                                 f"stop what uses it or choose another with {flag}")
        (home / "logs").mkdir(parents=True, exist_ok=True)
        with open(home / "logs" / "supervisor.log", "wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "shipflow", "stack", "serve", "--home", str(home), "--port", str(port),
                 "--sandbox-port", str(sandbox_port), "--host", host, "--timeout", str(timeout)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=home,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(ROOT / "plugins"), os.environ.get("PYTHONPATH")]))},
                start_new_session=True,  # detached: no SIGINT/SIGHUP from this terminal
            )
        supervisor = psutil.Process(popen.pid)
        print(f"Starting the Shipflow stack (supervisor pid {popen.pid}, home {home}); "
              f"Airflow takes about a minute...", flush=True)
    return _wait_ready(home, supervisor, timeout + 60)  # the supervisor gives up first, with its reason


def _wait_ready(home: Path, supervisor: Any, timeout: float) -> int:
    import psutil

    deadline = time.monotonic() + timeout
    try:
        while True:
            state = read_state(home)
            mine = state is not None and state.get("pid") == supervisor.pid
            if mine and state["status"] == "running":
                print(f"Shipflow stack running (pid {state['pid']}, home {home})")
                print(describe(state, home))
                return 0
            ended = not supervisor.is_running() or supervisor.status() == psutil.STATUS_ZOMBIE
            if ended or (mine and state["status"] == "failed"):
                error = (state or {}).get("error") if mine else None
                return _start_failed(home, supervisor, state if mine else None, error)
            if time.monotonic() > deadline:
                return _start_failed(home, supervisor, state if mine else None, f"not ready after {timeout:.0f} s")
            time.sleep(0.5)
    except KeyboardInterrupt:
        _stop_supervisor(supervisor)
        remove_state(home, supervisor.pid)
        print("interrupted: the stack was stopped", file=sys.stderr)
        return 130


def _start_failed(home: Path, supervisor: Any, state: dict[str, Any] | None, error: str | None) -> int:
    _stop_supervisor(supervisor)  # it stops what it started; a no-op when it already exited
    if state is not None:
        kill_leftovers(state)
    remove_state(home, supervisor.pid)
    log_file = home / "logs" / "supervisor.log"
    print(f"shipflow: the local stack did not start: {error or 'the supervisor exited'}", file=sys.stderr)
    if not error or "-----" not in error:  # Airflow's errors carry the log tails already
        print(f"----- supervisor ({log_file}) -----\n{_tail(log_file)}", file=sys.stderr)
    print(f"Nothing is left running. Logs: {home / 'logs'}", file=sys.stderr)
    return 1


def down(home: Path) -> int:
    """Stop the stack (idempotent)."""
    home = home.resolve()
    state = read_state(home)
    if state is None:
        print(f"Shipflow stack not running (no {state_path(home)})")
        return 0
    supervisor = _supervisor(state)
    if supervisor is None:
        killed = kill_leftovers(state)
        remove_state(home)
        print(f"Shipflow stack not running (removed the stale {state_path(home)}: pid {state.get('pid')} is gone"
              + (f"; stopped its leftover {', '.join(killed)})" if killed else ")"))
        return 0
    started = time.monotonic()
    print(f"Stopping the Shipflow stack (pid {supervisor.pid})...", flush=True)
    clean = _stop_supervisor(supervisor)
    killed = kill_leftovers(state)
    remove_state(home)
    how = "" if clean and not killed else f" (forced: {', '.join(killed) or 'supervisor'} killed)"
    print(f"Stopped Airflow and the sandbox in {time.monotonic() - started:.0f}s{how}. "
          f"Runs and history stay in {home / 'airflow'}.")
    return 0


def check_health(state: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    """Each part of a running stack -> (healthy, detail), asked over HTTP as a user would."""
    from shipflow.runtime.rest import AirflowApiError, AirflowClient
    from shipflow.sandbox.client import SandboxClient, SandboxError

    result: dict[str, tuple[bool, str]] = {}
    try:
        health = SandboxClient(state["sandbox_url"]).health()
        result["sandbox"] = (health.get("status") == "ok", f"{state['sandbox_url']} moto {health.get('moto')}")
    except (OSError, SandboxError) as exc:
        result["sandbox"] = (False, f"{state['sandbox_url']} does not answer: {exc}")
    url = state["airflow_url"]
    try:
        health = AirflowClient(url, timeout=5).health()
        for check in HEALTH_CHECKS:
            status = (health.get(check) or {}).get("status") or "unknown"
            result[f"airflow {check}"] = (status == "healthy", status)
    except AirflowApiError as exc:
        result["airflow"] = (False, f"{url} does not answer: {exc.detail}")
        return result
    try:
        client = AirflowClient.login(url, "admin", "admin", timeout=5)
        for dag_id in state.get("release_dags") or []:
            try:
                dag = client.get_dag(dag_id)
                result[dag_id] = (True, "paused" if dag.get("is_paused") else "parsed, unpaused")
            except AirflowApiError as exc:
                result[dag_id] = (False, f"HTTP {exc.status}: {exc.detail}")
    except AirflowApiError as exc:
        result["airflow login"] = (False, f"admin cannot log in: {exc.detail}")
    return result


def status(home: Path) -> int:
    """0: running and healthy; 1: not running, starting or unhealthy."""
    home = home.resolve()
    state = read_state(home)
    if _supervisor(state) is None or state is None:
        stale = f" (stale {state_path(home)}: pid {state.get('pid')} is gone; make up cleans it)" if state else ""
        print(f"Shipflow stack: not running{stale}. Start it: shipflow up (make up)")
        return 1
    print(f"Shipflow stack: {state['status']} (pid {state['pid']}, started {state['started']}, home {home})")
    print(f"  Airflow UI   {state['airflow_url']}  (logins: {_logins()})")
    print(f"  AWS sandbox  {state['sandbox_url']}")
    if state.get("problem"):
        print(f"  problem      {state['problem']}")
    if state["status"] != "running":
        return 1
    health = check_health(state)
    for part, (ok, detail) in health.items():
        print(f"  {'ok ' if ok else 'BAD'} {part:<28} {detail}")
    return 0 if all(ok for ok, _ in health.values()) else 1


# -- command line -----------------------------------------------------------------------------------
def add_parsers(commands: Any) -> None:
    """Add ``up``, ``down``, ``status`` and the hidden ``stack serve`` to ``shipflow``'s subcommands."""

    def with_home(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--home", type=Path, default=Path(DEFAULT_HOME),
                            help=f"stack home: state, Airflow DB, logs (default: {DEFAULT_HOME})")
        return parser

    def with_ports(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"Airflow UI/API port ({DEFAULT_PORT})")
        parser.add_argument("--sandbox-port", type=int, default=DEFAULT_SANDBOX_PORT,
                            help=f"AWS sandbox port ({DEFAULT_SANDBOX_PORT})")
        parser.add_argument("--host", default=DEFAULT_HOST, help=argparse.SUPPRESS)
        parser.add_argument("--timeout", type=float, default=START_TIMEOUT,
                            help=f"seconds to wait for the stack to be ready ({START_TIMEOUT:.0f})")
        return parser

    with_ports(with_home(commands.add_parser(
        "up", help="start the local stack (Airflow + AWS sandbox) in the background"))).set_defaults(
        func=lambda args: up(args.home, args.port, args.sandbox_port, args.host, args.timeout))
    with_home(commands.add_parser("down", help="stop the local stack")).set_defaults(func=lambda args: down(args.home))
    with_home(commands.add_parser("status", help="is the local stack running, and healthy")).set_defaults(
        func=lambda args: status(args.home))

    # The supervisor that `up` starts; not for people to call.
    stack = commands.add_parser("stack")  # no help: not listed
    stack_commands = stack.add_subparsers(dest="stack_command", required=True)
    with_ports(with_home(stack_commands.add_parser("serve"))).set_defaults(func=_serve_command)


def _serve_command(args: argparse.Namespace) -> int:
    code = serve(args.home, args.port, args.sandbox_port, args.host, args.timeout)
    # Everything is stopped and the state file is gone; the interpreter's teardown of moto's and
    # boto3's heaps would still take seconds (measured 2-4 s), which `shipflow down` would wait for.
    logging.shutdown()
    sys.stdout.flush()
    os._exit(code)
