"""Run a real Airflow 3 on this machine: one home directory, one SQLite DB, four processes.

    airflow = LocalAirflow(home, dags_folder, port=28080, extra_env={"AIRFLOW_CONN_AWS_SANDBOX": "..."})
    airflow.start()              # db migrate, then api-server, scheduler, dag-processor, triggerer
    client = airflow.client("ci")
    ...
    airflow.stop()

The same class runs the distributed shape (docker-compose.yaml, docs/distributed.md) natively:
PostgreSQL as the metadata DB, Redis as the Celery broker and ``airflow celery worker`` processes
that run every task, each under its own host name as a worker container would::

    LocalAirflow(home, dags_folder, port, executor="CeleryExecutor",
                 database_url="postgresql+psycopg2://postgres@127.0.0.1:5432/shipflow_dist_1a2b",
                 broker_url="redis://127.0.0.1:6379/7", celery_workers=2)

(``shipflow.runtime.backends`` makes and removes a throwaway database and Redis DB for that.)

Everything Airflow reads comes from the environment written here (nothing from the caller's own
``AIRFLOW_*`` variables), so a stack is isolated from the developer's shell and from other stacks.
Each component runs in its own process group with its output in ``<home>/logs/<component>.log``;
``log_tail`` shows it when something goes wrong.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from shipflow.runtime import DEFAULT_USERS
from shipflow.runtime.rest import AirflowApiError, AirflowClient

# <repo>/plugins: the folder that holds the shipflow package, Airflow's plugins folder as well.
PLUGINS_FOLDER = Path(__file__).resolve().parents[2]

# Component -> its `airflow` command. Task and trigger logs are files in the home, read by the
# api-server directly: the serve-logs servers are not needed, and their fixed ports (8793, 8794,
# on every interface) would collide between two stacks on one machine.
COMMANDS = {
    "api-server": ("api-server",),
    "scheduler": ("scheduler", "--skip-serve-logs"),
    "dag-processor": ("dag-processor",),
    "triggerer": ("triggerer", "--skip-serve-logs"),
}
COMPONENTS = tuple(COMMANDS)
# The health endpoint's names for what must be healthy before the stack is usable.
HEALTH_CHECKS = ("metadatabase", "scheduler", "triggerer", "dag_processor")

EXECUTORS = ("LocalExecutor", "CeleryExecutor")
# Task slots per Celery worker: two workers of two fill the stack's parallelism of 4.
CELERY_WORKER_CONCURRENCY = 2
# What a worker's tasks record as their host (task instance ``hostname``): see worker_hostname().
WORKER_HOSTNAME_VARIABLE = "SHIPFLOW_WORKER_HOSTNAME"


def celery_worker_name(number: int) -> str:
    """The host name of the stack's ``number``-th Celery worker (1-based), e.g. ``shipflow-worker-1``."""
    return f"shipflow-worker-{number}"


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the Celery workers of a native stack.

    In docker compose every worker is a container with its own host name, and task instances
    record it; on one machine every process shares one. Each worker's environment names it
    instead, so ``hostname`` of a task instance says which worker ran it, as it would in compose.
    """
    return os.environ.get(WORKER_HOSTNAME_VARIABLE) or socket.getfqdn()

SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
# Seconds between scans of the dags folder and re-parses of a file: tests add DAG files at run time.
DAG_REFRESH_SECONDS = 3


class AirflowStartError(RuntimeError):
    """The stack did not become healthy; the message carries the components' last log lines."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the API server's URL must be known before it starts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class LocalAirflow:
    """An Airflow home plus the processes serving it.

    :param home: AIRFLOW_HOME; holds the DB, the passwords file, the JWT secret and the logs.
    :param dags_folder: the folder the dag-processor parses.
    :param port: the API server's port (see ``free_port``).
    :param extra_env: added last to every process's environment, so it may override any setting
        written here (e.g. ``AIRFLOW_CONN_*`` connections, ``AIRFLOW__CORE__PARALLELISM``).
    :param users: user name -> SimpleAuthManager role; each user's password is its name.
    :param executor: ``LocalExecutor`` (the default: tasks run as children of the scheduler) or
        ``CeleryExecutor`` (tasks run on ``celery_workers`` worker processes).
    :param database_url: the metadata DB's SQLAlchemy URL; default a SQLite file in the home.
        The CeleryExecutor needs a server DB (e.g. ``postgresql+psycopg2://...``).
    :param broker_url: the Celery broker (e.g. ``redis://127.0.0.1:6379/7``); CeleryExecutor only.
    :param result_backend: where Celery keeps task states; default ``db+<database_url>``.
    :param celery_workers: how many ``airflow celery worker`` processes to run (CeleryExecutor).
    :param worker_concurrency: task slots of each worker.
    """

    def __init__(
        self,
        home: str | os.PathLike[str],
        dags_folder: str | os.PathLike[str],
        port: int,
        extra_env: Mapping[str, str] | None = None,
        users: Mapping[str, str] = DEFAULT_USERS,
        host: str = "127.0.0.1",
        executor: str = "LocalExecutor",
        database_url: str | None = None,
        broker_url: str | None = None,
        result_backend: str | None = None,
        celery_workers: int = 2,
        worker_concurrency: int = CELERY_WORKER_CONCURRENCY,
    ) -> None:
        if executor not in EXECUTORS:
            raise ValueError(f"executor {executor!r} is not supported here: use one of {', '.join(EXECUTORS)}")
        self.home = Path(home).resolve()
        self.dags_folder = Path(dags_folder).resolve()
        self.host = host
        self.port = port
        self.users = dict(users)
        self.passwords = {name: name for name in self.users}
        self.extra_env = dict(extra_env or {})
        self.logs_folder = self.home / "logs"
        self.executor = executor
        self.database_url = database_url or f"sqlite:///{self.home / 'airflow.db'}"
        self.broker_url = broker_url
        self.celery_workers = celery_workers if executor == "CeleryExecutor" else 0
        self.worker_concurrency = worker_concurrency
        if executor == "CeleryExecutor":
            if not broker_url:
                raise ValueError("the CeleryExecutor needs broker_url, e.g. redis://127.0.0.1:6379/7")
            if self.database_url.startswith("sqlite"):
                # Airflow refuses it too, but only once the scheduler starts: say so before.
                raise ValueError("the CeleryExecutor cannot use SQLite: pass database_url=postgresql+psycopg2://...")
            if celery_workers < 1:
                raise ValueError(f"celery_workers must be at least 1 (got {celery_workers})")
        self.result_backend = result_backend or (f"db+{self.database_url}" if broker_url else None)
        # Component -> its `airflow` command, workers included.
        self.commands: dict[str, tuple[str, ...]] = dict(COMMANDS)
        self.worker_names = tuple(celery_worker_name(number) for number in range(1, self.celery_workers + 1))
        for name in self.worker_names:
            self.commands[name] = (
                "celery", "worker",
                "--celery-hostname", f"{name}@%h",  # Celery's node name: distinct per worker on one host
                "--concurrency", str(worker_concurrency),
                "--queues", "default",
                "--skip-serve-logs",  # task logs are files in the home (see COMMANDS)
            )  # fmt: skip
        self.components = tuple(self.commands)
        self.env = self._build_env()
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._log_files: list[IO[bytes]] = []

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _jwt_secret(self) -> str:
        # One secret for every process (tokens minted by the api-server are checked by the others),
        # kept in the home so that a restarted stack still accepts the tokens it handed out.
        path = self.home / "jwt_secret"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(64))  # 86 characters: >= 64 bytes avoids HMAC warnings
            path.chmod(0o600)
        return path.read_text().strip()

    def _build_env(self) -> dict[str, str]:
        inherited = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
        python_path = os.pathsep.join(filter(None, [str(PLUGINS_FOLDER), os.environ.get("PYTHONPATH")]))
        settings = {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            # Standalone's default of 32 forks 32 workers; 4 suits a 2-core machine.
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in self.users.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url,
            "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt_secret(),
            "AIRFLOW__API__HOST": self.host,
            "AIRFLOW__API__PORT": str(self.port),
            # Without it, task workers call the execution API on localhost:8080.
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": str(DAG_REFRESH_SECONDS),
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(DAG_REFRESH_SECONDS),
            "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
            # The default, <tmp>/airflow, would be shared by every stack on the machine.
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(self.home / "bundles"),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs_folder),
            "PYTHONPATH": python_path,
            # The audit store and its spool (docs/audit.md): one SQLite file for the stack's processes.
            "SHIPFLOW_AUDIT_URL": f"sqlite:///{self.home / 'shipflow_audit.db'}",
            "SHIPFLOW_AUDIT_SPOOL": str(self.home / "shipflow_audit.spool.jsonl"),
            # `airflow` children (task workers) are found next to this interpreter.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), inherited.get("PATH", os.defpath)]),
        }
        if self.executor == "CeleryExecutor":
            settings |= {
                "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": self.result_backend,
                # Sending a task to the broker may wait longer than the default 1 s on a loaded
                # 2-core machine; a timeout there fails the task's queueing, not the broker.
                "AIRFLOW__CELERY__OPERATION_TIMEOUT": "10",
            }
        return {**inherited, **settings, **self.extra_env}

    def component_env(self, component: str) -> dict[str, str]:
        """The environment of one component: the stack's, plus a worker's own host name."""
        if component not in self.worker_names:
            return self.env
        return {
            **self.env,
            WORKER_HOSTNAME_VARIABLE: component,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
        }

    # -- processes -----------------------------------------------------------------------------
    def _spawn(self, component: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.logs_folder / f"{component}.log", "wb")  # noqa: SIM115 - closed by stop()
        self._log_files.append(log)
        return subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            cwd=self.home,
            env=self.component_env(component),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() signals it with its children
        )

    def start(self, timeout: float = 120) -> float:
        """Migrate the DB, start the components and wait until all are healthy (workers: answering pings).

        Returns the seconds it took. On failure every started process is stopped and
        ``AirflowStartError`` carries the last log lines of each component.
        """
        if self._processes:
            raise RuntimeError(f"Airflow at {self.base_url} is already started")
        if _port_in_use(self.host, self.port):
            raise AirflowStartError(f"port {self.port} is already in use: choose another (free_port())")
        started = time.monotonic()
        deadline = started + timeout
        self.logs_folder.mkdir(parents=True, exist_ok=True)
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        # Written before any process starts: SimpleAuthManager appends generated passwords for
        # users missing from this file, so it must be complete and writable.
        passwords_file = self.home / "passwords.json"
        passwords_file.write_text(json.dumps(self.passwords) + "\n")
        passwords_file.chmod(0o600)
        try:
            migrate = self._spawn("db-migrate", "db", "migrate")
            self._processes["db-migrate"] = migrate
            try:
                code = migrate.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AirflowStartError(f"`airflow db migrate` took over {timeout:g} s") from None
            if code != 0:
                raise AirflowStartError(f"`airflow db migrate` exited {code}")
            del self._processes["db-migrate"]
            self.migrate_audit_store()
            for component, command in self.commands.items():
                self._processes[component] = self._spawn(component, *command)
            self._wait_healthy(deadline, timeout)
        except AirflowStartError as exc:
            diagnosis = self.diagnosis()
            self.stop()
            raise AirflowStartError(f"{exc}\n{diagnosis}") from None
        except BaseException:  # e.g. Ctrl-C: leave no orphan processes behind
            self.stop()
            raise
        return time.monotonic() - started

    def migrate_audit_store(self) -> None:
        """Create or upgrade the audit store's tables before any component can record an event."""
        from shipflow.audit.store import AuditStore

        try:
            with AuditStore(self.env["SHIPFLOW_AUDIT_URL"], spool_path=self.env["SHIPFLOW_AUDIT_SPOOL"]) as store:
                store.migrate()
        except Exception as exc:
            raise AirflowStartError(f"the audit store could not be migrated: {exc}") from None

    def _wait_healthy(self, deadline: float, timeout: float) -> None:
        client = AirflowClient(self.base_url, timeout=5)
        health: object = "no answer yet"
        while True:
            for component, process in self._processes.items():
                if process.poll() is not None:
                    raise AirflowStartError(f"{component} exited with code {process.returncode} while starting")
            try:
                health = client.health()
                if all((health.get(check) or {}).get("status") == "healthy" for check in HEALTH_CHECKS):
                    # The execution API builds its versioned routes on first use (~3 s here): warm
                    # it up now, or the first task's first call exceeds the workers' 5 s timeout
                    # and is retried, which made the first run of a session ~5 s slower.
                    client.get("/execution/health")
                    break
            except AirflowApiError:
                pass  # the api-server is still importing
            if time.monotonic() > deadline:
                raise AirflowStartError(f"Airflow not healthy after {timeout:g} s; last health: {health}")
            time.sleep(0.5)
        if self.worker_names:
            self._wait_workers(deadline, timeout)

    def _wait_workers(self, deadline: float, timeout: float) -> None:
        # The health endpoint knows nothing of Celery workers: ask them over the broker, as
        # `celery inspect ping` (and the compose healthcheck) does. A worker answers once it consumes.
        expected = set(self.worker_names)
        while True:
            for component, process in self._processes.items():
                if process.poll() is not None:
                    raise AirflowStartError(f"{component} exited with code {process.returncode} while starting")
            answered = self.celery_ping()
            if expected <= answered:
                return
            if time.monotonic() > deadline:
                missing = ", ".join(sorted(expected - answered))
                raise AirflowStartError(f"Celery workers not answering after {timeout:g} s: missing {missing}")

    def celery_ping(self, timeout: float = 1.0) -> set[str]:
        """The worker names (``shipflow-worker-N``) that answer a Celery ping on this stack's broker."""
        if not self.broker_url:
            return set()
        # Dependencies of Airflow's Celery provider; imported here, as only Celery stacks need them.
        from celery import Celery
        from kombu.exceptions import OperationalError

        app = Celery("shipflow-ping", broker=self.broker_url)
        try:
            replies = app.control.ping(timeout=timeout)
        except (OSError, OperationalError):  # the broker is not reachable: nobody answered
            return set()
        finally:
            app.close()
        # Each reply is {"<name>@<host>": {"ok": "pong"}}.
        return {node.split("@", 1)[0] for reply in replies for node in reply}

    @property
    def is_running(self) -> bool:
        """True while every component process is alive (Celery workers included)."""
        return all(
            component in self._processes and self._processes[component].poll() is None
            for component in self.components
        )

    def stop(self, timeout: float = 20, grace: float = 3) -> None:
        """Stop every process: SIGTERM, a second SIGTERM after ``grace`` s, SIGKILL after ``timeout`` s.

        The first signal goes to each component alone so that it shuts its own children down in
        order. The scheduler and triggerer take a second signal as "stop waiting": the scheduler
        for running tasks, the triggerer for its trigger runner (otherwise up to 10 s).
        """
        for process in self._processes.values():
            self._signal(process, signal.SIGTERM)
        self._wait_all(grace)
        for process in self._processes.values():
            if process.poll() is None:
                self._signal(process, signal.SIGTERM)
        self._wait_all(max(0.0, timeout - grace))
        for process in self._processes.values():
            # The whole group: also task workers or api-server workers that outlived their parent.
            self._signal(process, signal.SIGKILL, group=True)
            process.wait()
        self._processes.clear()
        for log in self._log_files:
            log.close()
        self._log_files.clear()

    def _wait_all(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        for process in self._processes.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], sig: signal.Signals, group: bool = False) -> None:
        try:
            if group:
                os.killpg(process.pid, sig)  # its own group (start_new_session), so only the stack's processes
            elif process.poll() is None:
                os.kill(process.pid, sig)
        except ProcessLookupError:
            pass  # already gone

    def __enter__(self) -> LocalAirflow:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- use and diagnosis ---------------------------------------------------------------------
    def client(self, username: str) -> AirflowClient:
        """An ``AirflowClient`` logged in as one of ``users``."""
        if username not in self.passwords:
            raise KeyError(f"unknown user {username!r}; users of this stack: {', '.join(self.passwords)}")
        return AirflowClient.login(self.base_url, username, self.passwords[username])

    def log_tail(self, component: str, lines: int = 40) -> str:
        """The last ``lines`` lines a component wrote (``db-migrate`` or one of ``components``)."""
        path = self.logs_folder / f"{component}.log"
        if not path.exists():
            return f"(no log: {path})"
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            # Enough bytes for ``lines`` long lines without reading a large log whole.
            file.seek(max(0, file.tell() - 400 * lines))
            text = file.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def diagnosis(self, lines: int = 30) -> str:
        """Every component's log tail, for a failure message."""
        parts = []
        for component in ("db-migrate", *self.components):
            parts.append(f"----- {component} ({self.logs_folder / f'{component}.log'}) -----")
            parts.append(self.log_tail(component, lines))
        return "\n".join(parts)

    def rss_bytes(self) -> int:
        """Resident memory of every process of the stack, children (task workers) included."""
        import psutil  # an Airflow dependency; imported here so the module stays light

        total = 0
        for process in self._processes.values():
            try:
                parent = psutil.Process(process.pid)
                members = [parent, *parent.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for member in members:
                try:
                    total += member.memory_info().rss
                except psutil.NoSuchProcess:  # a task worker that just finished (zombies included)
                    continue
        return total
