"""A client of Airflow 3's REST API v2, for tests and tools that drive a running Airflow.

    client = AirflowClient.login("http://127.0.0.1:28080", "ci", "ci")
    run = client.trigger_dag("payments_release", conf={"version": "1.4.2"})
    run = client.wait_for_dag_run("payments_release", run["dag_run_id"], timeout=120)

Every failed call raises ``AirflowApiError`` naming the method, the endpoint, the HTTP status and
the server's own explanation, so a failing test says what Airflow refused and why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests

# Terminal states of a dag run and of a task instance (Airflow's DagRunState / TaskInstanceState).
DAG_RUN_TERMINAL_STATES = frozenset({"success", "failed"})
TASK_TERMINAL_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})

# Answering a human-in-the-loop step right after its task reaches ``awaiting_input`` can fail the
# task ("finished with state success, but the task instance's state attribute is queued";
# apache/airflow #67287, #72716): measured 3 failures in 6 under 0.5 s, none in 6 after ~2 s.
# The same race follows every deferral: the executor's report of the process that parked the task
# arrives ~1 s later, and an answer that re-queued the task in between makes the scheduler fail it.
# Answers wait until the task has been seen parked for this long.
HITL_SETTLE_SECONDS = 3.0
HITL_PARKED_STATES = frozenset({"deferred", "awaiting_input"})


class AirflowApiError(RuntimeError):
    """Airflow answered a REST call with an error status (or did not answer at all)."""

    def __init__(self, method: str, path: str, status: int | None, detail: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail
        where = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"{method} {path} -> {where}: {detail}")


class UnexpectedStateError(RuntimeError):
    """A task instance ended in a state other than the one waited for: it will never get there."""


def _detail(response: requests.Response) -> str:
    """The server's explanation: FastAPI's ``detail`` (a string, or one entry per invalid field)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', []))}: {item.get('msg')}"
            if isinstance(item, dict)
            else str(item)
            for item in detail
        )
    return detail if isinstance(detail, str) else str(detail)


def _path(*parts: str | int) -> str:
    return "/".join(quote(str(part), safe="~") for part in parts)


class AirflowClient:
    """One authenticated user of one Airflow API server."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.username: str | None = None
        self._session = requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def login(cls, base_url: str, username: str, password: str, timeout: float = 30) -> AirflowClient:
        """A client holding a fresh token for ``username`` (SimpleAuthManager: ``POST /auth/token``)."""
        client = cls(base_url, timeout=timeout)
        client.authenticate(username, password)
        return client

    def authenticate(self, username: str, password: str) -> str:
        """Log in as ``username`` and use the returned token for every later call."""
        body = self._call("POST", "/auth/token", json={"username": username, "password": password}, auth=False)
        self._session.headers["Authorization"] = f"Bearer {body['access_token']}"
        self.username = username
        return body["access_token"]

    # -- transport -----------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        auth: bool = True,
    ) -> Any:
        url = f"{self.base_url}{path}"
        # requests drops a session header whose per-request value is None: log in without an old token.
        headers = None if auth else {"Authorization": None}
        try:
            response = self._session.request(
                method, url, json=json, params=params, headers=headers, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise AirflowApiError(method, path, None, f"{type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            raise AirflowApiError(method, path, response.status_code, _detail(response))
        return response.json() if response.content else None

    def get(self, path: str, **params: Any) -> Any:
        """``GET <path>`` (from the server's root, e.g. ``/api/v2/pools``) for endpoints without a method here."""
        return self._call("GET", path, params=params or None)

    def _wait(self, describe: Callable[[], Any], done: Callable[[Any], bool], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = describe()
            if done(value):
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: still not done after {timeout:g} s (last seen: {str(value)[:300]})")
            time.sleep(0.5)

    # -- health and DAGs -----------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._call("GET", "/api/v2/monitor/health")

    def get_dag(self, dag_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v2/dags/{_path(dag_id)}")

    def wait_for_dag(self, dag_id: str, timeout: float = 60) -> dict[str, Any]:
        """Wait until the dag-processor has parsed ``dag_id``; a timeout names any import errors."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.get_dag(dag_id)
            except AirflowApiError as exc:
                if exc.status != 404:
                    raise
            if time.monotonic() > deadline:
                errors = [f"{e['filename']}: {e['stack_trace'].strip().splitlines()[-1]}" for e in self.import_errors()]
                raise TimeoutError(
                    f"DAG {dag_id!r} was not parsed within {timeout:g} s; import errors: {errors or 'none'}"
                )
            time.sleep(0.5)

    def list_dags(self, dag_id_prefix: str | None = None) -> list[dict[str, Any]]:
        """Every DAG this user may read (up to 1,000), or those whose id starts with ``dag_id_prefix``."""
        params: dict[str, Any] = {"limit": 1000}
        if dag_id_prefix:
            # dag_id_pattern is a SQL LIKE "contains" search ("_" matches any character): narrow it here.
            params["dag_id_pattern"] = dag_id_prefix
        dags = self._call("GET", "/api/v2/dags", params=params)["dags"]
        return [d for d in dags if not dag_id_prefix or d["dag_id"].startswith(dag_id_prefix)]

    def import_errors(self) -> list[dict[str, Any]]:
        """Files the dag-processor could not import: ``filename``, ``bundle_name``, ``stack_trace``."""
        return self._call("GET", "/api/v2/importErrors", params={"limit": 100})["import_errors"]

    def wait_for_import_error(self, filename: str, timeout: float = 60) -> dict[str, Any]:
        """Wait until the dag-processor reports an import error for ``filename`` (a path in the bundle)."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self.import_errors() if e["filename"] == filename), None)

        return self._wait(found, lambda error: error is not None, timeout, f"import error for {filename}")

    # -- dag runs ------------------------------------------------------------------------------
    def trigger_dag(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        note: str | None = None,
        logical_date: datetime | str | None = None,
    ) -> dict[str, Any]:
        """Create a manual run; the API answers at once with the run (state ``queued``).

        ``logical_date`` must be present in the body (``None`` lets runs of one DAG coexist);
        re-sending an existing ``run_id`` is an HTTP 409.
        """
        if isinstance(logical_date, datetime):
            logical_date = logical_date.isoformat()
        body: dict[str, Any] = {"logical_date": logical_date, "conf": dict(conf or {})}
        if run_id is not None:
            body["dag_run_id"] = run_id
        if note is not None:
            body["note"] = note
        return self._call("POST", f"/api/v2/dags/{_path(dag_id)}/dagRuns", json=body)

    def get_dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v2/dags/{_path(dag_id, 'dagRuns', run_id)}")

    def list_dag_runs(self, dag_id: str, run_id_pattern: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The DAG's runs, newest first; ``run_id_pattern`` is a SQL LIKE "contains" search, not an exact match."""
        params: dict[str, Any] = {"limit": limit, "order_by": "-run_after"}
        if run_id_pattern:
            params["run_id_pattern"] = run_id_pattern
        return self._call("GET", f"/api/v2/dags/{_path(dag_id)}/dagRuns", params=params)["dag_runs"]

    def wait_for_dag_run(self, dag_id: str, run_id: str, timeout: float = 120) -> dict[str, Any]:
        """Wait until the run is ``success`` or ``failed`` and return it."""
        return self._wait(
            lambda: self.get_dag_run(dag_id, run_id),
            lambda run: run["state"] in DAG_RUN_TERMINAL_STATES,
            timeout,
            f"dag run {dag_id}/{run_id}",
        )

    # -- task instances ------------------------------------------------------------------------
    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{_path(dag_id, 'dagRuns', run_id)}/taskInstances"
        return self._call("GET", path, params={"limit": 1000})["task_instances"]

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        path = f"/api/v2/dags/{_path(dag_id, 'dagRuns', run_id, 'taskInstances', task_id)}"
        if map_index >= 0:
            path += f"/{map_index}"
        return self._call("GET", path)

    def task_instance_tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        """Every try of the task instance, oldest first (retries show up here)."""
        path = f"/api/v2/dags/{_path(dag_id, 'dagRuns', run_id, 'taskInstances', task_id)}"
        if map_index >= 0:
            path += f"/{map_index}"
        return self._call("GET", f"{path}/tries")["task_instances"]

    def wait_for_task_state(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: Collection[str],
        timeout: float = 60,
        map_index: int = -1,
    ) -> dict[str, Any]:
        """Wait until the task instance is in one of ``states``.

        Raises ``UnexpectedStateError`` as soon as it ends in another state.
        """
        wanted = set(states)

        def reached(ti: dict[str, Any]) -> bool:
            if ti["state"] in wanted:
                return True
            if ti["state"] in TASK_TERMINAL_STATES:
                raise UnexpectedStateError(
                    f"task {dag_id}/{run_id}/{task_id} ended {ti['state']}, expected {sorted(wanted)}"
                )
            return False

        return self._wait(
            lambda: self.task_instance(dag_id, run_id, task_id, map_index),
            reached,
            timeout,
            f"task {dag_id}/{run_id}/{task_id} to reach {sorted(wanted)}",
        )

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str, note: str | None = None) -> Any:
        """Mark a task instance ``state`` by hand (what the UI's "Mark as" does)."""
        body = {"new_state": state} | ({"note": note} if note else {})
        return self._call("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}", json=body)

    def clear_tasks(self, dag_id: str, run_id: str, task_ids: list[str], only_failed: bool = False) -> Any:
        """Clear task instances so they run again (not a dry run)."""
        body = {"dag_run_id": run_id, "task_ids": task_ids, "dry_run": False, "only_failed": only_failed}
        return self._call("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances", json=body)

    def set_dag_run_state(self, dag_id: str, run_id: str, state: str) -> Any:
        """Set a run's state by hand (``failed``, ``success`` or ``queued``)."""
        return self._call("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", json={"state": state})

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """The XCom value as the task pushed it (JSON types come back as JSON types)."""
        path = f"/api/v2/dags/{_path(dag_id, 'dagRuns', run_id, 'taskInstances', task_id, 'xcomEntries', key)}"
        return self._call("GET", path, params={"map_index": map_index})["value"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """The task's log for one try, one event per line (an exception's message after its event)."""
        path = f"/api/v2/dags/{_path(dag_id, 'dagRuns', run_id, 'taskInstances', task_id, 'logs', try_number)}"
        body = self._call("GET", path, params={"full_content": "true", "map_index": map_index})
        lines = []
        for item in body["content"]:
            if not isinstance(item, dict):
                lines.append(str(item))
                continue
            lines.append(str(item.get("event", "")))
            for error in item.get("error_detail") or []:
                if isinstance(error, dict) and error.get("exc_value"):
                    lines.append(f"{error.get('exc_type', 'Error')}: {error['exc_value']}")
        return "\n".join(lines)

    # -- human in the loop ---------------------------------------------------------------------
    def hitl_details(
        self, dag_id: str = "~", run_id: str = "~", response_received: bool | None = False
    ) -> list[dict[str, Any]]:
        """Human-in-the-loop steps visible to this user (``~`` = every DAG / run); pending by default."""
        params: dict[str, Any] = {"limit": 100}
        if response_received is not None:
            params["response_received"] = str(response_received).lower()
        path = f"/api/v2/dags/{_path(dag_id, 'dagRuns', run_id)}/hitlDetails"
        return self._call("GET", path, params=params)["hitl_details"]

    def hitl_detail(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """One task's human-in-the-loop step, answered or not (who answered, when, with what)."""
        path = f"/api/v2/dags/{_path(dag_id, 'dagRuns', run_id, 'taskInstances', task_id, map_index)}/hitlDetails"
        return self._call("GET", path)

    def wait_for_hitl(self, dag_id: str, run_id: str, task_id: str, timeout: float = 60) -> dict[str, Any]:
        """Wait until ``task_id`` of the run waits for an answer; returns its pending detail."""

        def pending() -> dict[str, Any] | None:
            for detail in self.hitl_details(dag_id, run_id):
                if detail["task_instance"]["task_id"] == task_id:
                    return detail
            return None

        return self._wait(pending, lambda detail: detail is not None, timeout, f"approval {dag_id}/{run_id}/{task_id}")

    def answer_hitl(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        chosen_options: Collection[str],
        params_input: Mapping[str, Any] | None = None,
        map_index: int = -1,
    ) -> dict[str, Any]:
        """Answer a pending step as this user (e.g. ``["Approve"]``).

        Answers only once the task has been seen parked (``deferred`` or ``awaiting_input``) for
        ``HITL_SETTLE_SECONDS`` (see the constant): the request is created before the task parks, and
        a step that asks again (N of M approvals) parks anew after each answer. Airflow answers 403 for
        a user not in ``assigned_users``, 400 for an unknown option and 409 when the step was already
        answered.
        """
        path = f"/api/v2/dags/{_path(dag_id, 'dagRuns', run_id, 'taskInstances', task_id, map_index)}/hitlDetails"
        self.wait_parked(dag_id, run_id, task_id, map_index)
        body = {"chosen_options": list(chosen_options), "params_input": dict(params_input or {})}
        return self._call("PATCH", path, json=body)

    def wait_parked(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, timeout: float = 60) -> None:
        """Return once the task has stayed parked for an answer for ``HITL_SETTLE_SECONDS`` (see the constant).

        Gives up after ``timeout`` and lets the answer go: Airflow then decides (a task that is not
        parked keeps the answer for its next look).
        """
        deadline = time.monotonic() + timeout
        parked_since: float | None = None
        while time.monotonic() < deadline:
            state = self.task_instance(dag_id, run_id, task_id, map_index).get("state")
            if state in HITL_PARKED_STATES:
                parked_since = parked_since or time.monotonic()
                if time.monotonic() - parked_since >= HITL_SETTLE_SECONDS:
                    return
            else:
                parked_since = None
            time.sleep(0.25)
