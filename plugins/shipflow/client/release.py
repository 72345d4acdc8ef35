"""Triggering, following and approving releases through Airflow's REST API: what CI and ChatOps call.

No argparse and no printing here (``commands`` does both): every function takes an ``AirflowClient``
and returns data, or raises ``ClientError`` with the one line to show the user.

- A release run's id is derived from (version, commit[, attempt]), so re-sending a trigger (a CI
  retry) finds the run it already created instead of starting a second release.
- ``follow`` reports each stage once as it ends and each approval once as it starts waiting;
  ``verdict`` turns the finished run into the exit code CI acts on (``EXIT_*``).
"""

from __future__ import annotations

import os
import re
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from shipflow.release.promotion import promotion_problem
from shipflow.runtime.rest import DAG_RUN_TERMINAL_STATES, TASK_TERMINAL_STATES, AirflowApiError, AirflowClient

# The release DAG of service S is ``release__S`` (shipflow.release.builder.DAG_ID_PREFIX; not imported
# from there because the builder imports Airflow, which a CI job does not install).
DAG_ID_PREFIX = "release__"

URL_VARIABLE = "SHIPFLOW_AIRFLOW_URL"
USERNAME_VARIABLE = "SHIPFLOW_AIRFLOW_USERNAME"
PASSWORD_VARIABLE = "SHIPFLOW_AIRFLOW_PASSWORD"  # an environment variable only: a flag lands in shell history
TOKEN_VARIABLE = "SHIPFLOW_AIRFLOW_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8080"

# Exit codes of ``shipflow release --wait`` (docs/ci.md has the table).
EXIT_RELEASED = 0
EXIT_NOT_RELEASED = 1  # failed, rolled back, rejected, or still running at --timeout
EXIT_USAGE = 2  # bad input, credentials, permissions, Airflow unreachable: nothing was released
EXIT_SUPERSEDED = 3  # a newer release replaced this one

POLL_SECONDS = 2.0
# How long ``follow`` rides out an Airflow that does not answer (a restart, a proxy hiccup) before
# giving up: a CI job waiting for a 40-minute release should not fail on one dropped connection.
OUTAGE_SECONDS = 120.0

# Airflow's default ``[scheduler] allowed_run_id_pattern`` is ^[A-Za-z0-9_.~:+-]+$. '+' (semver build
# metadata) is allowed there, but is a space in query strings (e.g. run_id_pattern filters) and
# easy to mangle in links, so it becomes '_', which semver never contains: the mapping stays one-to-one.
RUN_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.~:-]")
RUN_ID_MAX_LENGTH = 250  # the metadata DB's dag_run.run_id column
ATTEMPT_SUFFIX = re.compile(r"__attempt(\d+)$")

# Task states in which a task may wait for a person (HITL parks in awaiting_input on Airflow 3.3;
# older providers and custom approvals defer).
WAITING_STATES = frozenset({"awaiting_input", "deferred"})
# Approval steps of a release DAG (task ids within an environment's group).
APPROVAL_TASKS = frozenset({"approve_release", "approve_stack_change"})
# Terminal states of paths a release did not take (the rollback branch of a clean release): not printed.
QUIET_STATES = frozenset({"skipped", "removed"})


class ClientError(Exception):
    """A mistake or refusal the user can fix: shown as one line, exit code 2, nothing was released."""


# -- connection ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Connection:
    """Where Airflow is and who we are there; credentials come only from the environment."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, url: str | None = None, environ: Mapping[str, str] = os.environ) -> Connection:
        return cls(
            url=(url or environ.get(URL_VARIABLE) or DEFAULT_URL).rstrip("/"),
            username=environ.get(USERNAME_VARIABLE) or None,
            password=environ.get(PASSWORD_VARIABLE) or None,
            token=environ.get(TOKEN_VARIABLE) or None,
        )

    @property
    def who(self) -> str:
        return self.username or f"the token in ${TOKEN_VARIABLE}"

    def connect(self) -> AirflowClient:
        """A logged-in client (``POST /auth/token``), or the token as given; errors as ``ClientError``."""
        if self.username and self.password:
            client = AirflowClient(self.url)
            try:
                client.authenticate(self.username, self.password)
            except AirflowApiError as exc:
                raise explain(exc, self, "log in") from None
            return client
        if self.token:
            client = AirflowClient(self.url, token=self.token)
            client.username = self.username
            return client
        raise ClientError(
            f"no Airflow credentials: set {USERNAME_VARIABLE} and {PASSWORD_VARIABLE} (or {TOKEN_VARIABLE}) "
            "in the environment (CI: from secrets)"
        )

    def relogin(self, client: AirflowClient) -> bool:
        """Fetch a fresh token (they last 24 h; a long wait can outlive one). False if we have no password."""
        if not (self.username and self.password):
            return False
        client.authenticate(self.username, self.password)
        return True


def explain(exc: AirflowApiError, connection: Connection, action: str) -> ClientError:
    """One line for an Airflow refusal, naming who, where, and how to fix it."""
    if exc.status is None:
        # requests nests the cause in a long repr; the OS's words ("Connection refused") are the useful part.
        cause = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", exc.detail)
        why = cause.group(1).strip() if cause else exc.detail
        return ClientError(f"cannot reach Airflow at {connection.url} ({why}): is it running? "
                           f"Set --url or ${URL_VARIABLE}")
    if exc.status == 401:
        if connection.username and connection.password:
            return ClientError(
                f"wrong credentials for {connection.username} at {connection.url}: "
                f"set {USERNAME_VARIABLE}/PASSWORD"
            )
        return ClientError(
            f"Airflow at {connection.url} refused the token in ${TOKEN_VARIABLE} (expired?): "
            f"set a fresh one, or {USERNAME_VARIABLE}/{PASSWORD_VARIABLE}"
        )
    if exc.status == 403:
        return ClientError(
            f"{connection.who} may not {action} at {connection.url} ({exc.detail}): "
            "triggering releases and answering approvals need at least the 'user' role"
        )
    return ClientError(f"Airflow at {connection.url} refused to {action} (HTTP {exc.status}): {exc.detail}")


def dag_id_for(service: str) -> str:
    return f"{DAG_ID_PREFIX}{service}"


def service_of(dag_id: str) -> str:
    return dag_id.removeprefix(DAG_ID_PREFIX)


def run_url(base_url: str, dag_id: str, run_id: str) -> str:
    """The run's page in the Airflow 3 UI."""
    return f"{base_url.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def require_service(client: AirflowClient, connection: Connection, service: str) -> dict[str, Any]:
    """The service's release DAG; an unknown service names the services Airflow does know."""
    dag_id = dag_id_for(service)
    try:
        return client.get_dag(dag_id)
    except AirflowApiError as exc:
        if exc.status != 404:
            raise explain(exc, connection, f"read {dag_id}") from None
    try:
        known = sorted(service_of(d["dag_id"]) for d in client.list_dags(DAG_ID_PREFIX))
    except AirflowApiError:
        known = []
    listed = ", ".join(known) if known else "none"
    raise ClientError(
        f"no release DAG {dag_id} at {connection.url}: unknown service {service!r} "
        f"(services with a {DAG_ID_PREFIX}<service> DAG: {listed}); "
        "check the name, or whether its spec failed to import (Airflow UI: Import errors)"
    )


def check_environments(
    client: AirflowClient, connection: Connection, service: str, dag_id: str, environments: Sequence[str]
) -> None:
    """Refuse, before triggering, a request the run's first task would refuse (skipping an environment).

    The service's environments, in promotion order, are the choices of its DAG's ``environments``
    param. A DAG without them (an older Shipflow) is left to the run's own check.
    """
    try:
        params = client.get(f"/api/v2/dags/{quote(dag_id, safe='')}/details").get("params") or {}
    except AirflowApiError as exc:
        raise explain(exc, connection, f"read {dag_id}") from None
    order = (((params.get("environments") or {}).get("schema") or {}).get("items") or {}).get("enum")
    if isinstance(order, list):
        problem = promotion_problem(environments, order)
        if problem:
            raise ClientError(f"release request for {service} refused before triggering: {problem}")


# -- triggering ------------------------------------------------------------------------------------
def run_id_for(version: str, commit: str, attempt: int = 1) -> str:
    """The release run's id: the same (version, commit, attempt) always gives the same id.

    ``release__<version>__<commit[:12]>``, then ``__attempt<N>`` from the second attempt on;
    characters Airflow's run id pattern rejects (and '+') become '_'.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be 1 or more, got {attempt}")
    run_id = f"release__{version}__{commit[:12]}"
    suffix = f"__attempt{attempt}" if attempt > 1 else ""
    run_id = RUN_ID_UNSAFE.sub("_", run_id)
    if len(run_id) + len(suffix) > RUN_ID_MAX_LENGTH:
        # A huge pre-release tag: keep the id unique and deterministic with a checksum of the whole.
        checksum = f"{zlib.crc32(run_id.encode()):08x}"
        run_id = f"{run_id[: RUN_ID_MAX_LENGTH - len(suffix) - 10]}__{checksum}"
    return run_id + suffix


def attempt_of(run_id: str) -> int:
    match = ATTEMPT_SUFFIX.search(run_id)
    return int(match.group(1)) if match else 1


def trigger_note(environ: Mapping[str, str] = os.environ) -> str:
    """Who asked for the release, for the run's note: the CI job with a link to it, or the CLI."""
    if environ.get("GITHUB_ACTIONS") == "true" or environ.get("GITHUB_RUN_ID"):
        repo = environ.get("GITHUB_REPOSITORY", "")
        run = environ.get("GITHUB_RUN_ID", "")
        server = environ.get("GITHUB_SERVER_URL", "https://github.com")
        link = f"{server}/{repo}/actions/runs/{run}" if repo and run else ""
        return f"Triggered by GitHub Actions {repo} run {run}: {link}".rstrip(": ")
    if environ.get("GITLAB_CI") == "true" or environ.get("CI_JOB_URL"):
        project = environ.get("CI_PROJECT_PATH", "")
        return f"Triggered by GitLab CI {project} job {environ.get('CI_JOB_ID', '')}: {environ.get('CI_JOB_URL', '')}"
    return "Triggered by shipflow release CLI"


def release_conf(
    version: str, commit: str, change_reference: str | None = None, environments: Sequence[str] | None = None
) -> dict[str, Any]:
    """The run conf the release DAG's params validate; optional keys only when given."""
    conf: dict[str, Any] = {"version": version, "commit": commit}
    if change_reference is not None:
        conf["change_reference"] = change_reference
    if environments:
        conf["environments"] = list(environments)
    return conf


@dataclass
class Triggered:
    dag_id: str
    run_id: str
    run: dict[str, Any]
    created: bool  # False: the run existed already (a re-sent trigger)
    url: str
    messages: list[str]


def trigger_release(
    client: AirflowClient,
    connection: Connection,
    service: str,
    version: str,
    commit: str,
    *,
    change_reference: str | None = None,
    environments: Sequence[str] | None = None,
    attempt: int = 1,
    environ: Mapping[str, str] = os.environ,
) -> Triggered:
    """Start the release run, or find the one an earlier identical trigger started (never a second run)."""
    dag = require_service(client, connection, service)
    dag_id = dag["dag_id"]
    run_id = run_id_for(version, commit, attempt)
    conf = release_conf(version, commit, change_reference, environments)
    if environments:
        check_environments(client, connection, service, dag_id, environments)
    url = run_url(connection.url, dag_id, run_id)
    messages = []
    if dag.get("is_paused"):
        messages.append(f"warning: {dag_id} is paused in Airflow: the run stays queued until someone unpauses it")
    try:
        run = client.trigger_dag(dag_id, conf=conf, run_id=run_id, note=trigger_note(environ))
    except AirflowApiError as exc:
        if exc.status != 409:
            if exc.status in (400, 422):
                raise ClientError(f"Airflow refused the release request for {service}: {exc.detail}") from None
            raise explain(exc, connection, f"trigger {dag_id}") from None
        # The run id exists: this trigger was sent before (apache/airflow #72876). Report that run.
        try:
            run = client.get_dag_run(dag_id, run_id)
        except AirflowApiError as get_exc:
            raise explain(get_exc, connection, f"read run {run_id} of {dag_id}") from None
        messages.append(_already_triggered(client, dag_id, run, conf, commit))
        return Triggered(dag_id, run_id, run, False, url, messages)
    messages.append(f"triggered {dag_id} run {run_id}: {version} at {commit[:12]} as {connection.who}")
    return Triggered(dag_id, run_id, run, True, url, messages)


def _already_triggered(
    client: AirflowClient, dag_id: str, run: dict[str, Any], conf: Mapping[str, Any], commit: str
) -> str:
    run_id, state = run["dag_run_id"], run["state"]
    message = f"already triggered: {run_id} ({state})"
    existing = run.get("conf") or {}
    differs = {key: existing.get(key) for key, value in conf.items() if key in existing and existing[key] != value}
    if differs:
        message += f"; it was requested with {differs}, not {({k: conf[k] for k in differs})}"
    if state in DAG_RUN_TERMINAL_STATES or differs:
        base = ATTEMPT_SUFFIX.sub("", run_id)
        try:
            runs = client.list_dag_runs(dag_id, run_id_pattern=base, limit=1000)
            taken = [attempt_of(r["dag_run_id"]) for r in runs if ATTEMPT_SUFFIX.sub("", r["dag_run_id"]) == base]
        except AirflowApiError:
            taken = []
        attempt = max([attempt_of(run_id), *taken]) + 1
        ended = f"it ended {state}; " if state in DAG_RUN_TERMINAL_STATES else ""
        message += f"; {ended}to release {conf['version']} at {commit[:12]} again, add --attempt {attempt}"
    return message


# -- following a run -------------------------------------------------------------------------------
@dataclass(frozen=True)
class EnvironmentOutcome:
    environment: str
    outcome: str  # promoted | rolled_back | failed | rejected | superseded | not reached
    reason: str = ""
    promoted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "reason": self.reason or None, "promoted": self.promoted}


@dataclass
class RunResult:
    dag_id: str
    run_id: str
    state: str
    environments: list[EnvironmentOutcome] = field(default_factory=list)
    failed_tasks: list[str] = field(default_factory=list)
    timed_out_after: float | None = None  # seconds, when --timeout ended the wait


def environment_outcome(environment: str, promote_state: str | None, decided: Mapping[str, Any] | None):
    """What happened in one environment, from its ``promote`` task and ``decide_outcome``'s XCom."""
    promoted = promote_state == "success"
    if not decided:
        return EnvironmentOutcome(environment, "promoted" if promoted else "not reached", promoted=promoted)
    outcome = decided.get("outcome")
    if not outcome:  # written before decide_outcome named the outcome itself
        outcome = "promoted" if decided.get("promoted") else "rolled_back" if decided.get("rolled_back") else "failed"
    return EnvironmentOutcome(environment, str(outcome), str(decided.get("reason") or ""), promoted)


def verdict(result: RunResult, url: str) -> tuple[int, str]:
    """The exit code and the one line that explains it (see ``EXIT_*``)."""
    if result.timed_out_after is not None:
        return EXIT_NOT_RELEASED, (
            f"still {result.state} after {result.timed_out_after:g} s; run: {url} (the release goes on in Airflow)"
        )
    for env in result.environments:
        if env.outcome == "superseded":
            why = f" ({env.reason})" if env.reason else ""
            return EXIT_SUPERSEDED, f"superseded in {env.environment}: a newer release replaced this one{why}"
    if result.state == "success" and result.environments and all(e.promoted for e in result.environments):
        return EXIT_RELEASED, f"released: promoted in {', '.join(e.environment for e in result.environments)}"
    for env in result.environments:
        if not env.promoted and env.reason:
            return EXIT_NOT_RELEASED, f"not released: {env.environment} {env.outcome.replace('_', ' ')}: {env.reason}"
    if result.failed_tasks:
        failed = ", ".join(result.failed_tasks)
        return EXIT_NOT_RELEASED, f"not released: the run ended {result.state}; failed: {failed}; see {url}"
    missed = [e.environment for e in result.environments if not e.promoted] or ["every environment"]
    return EXIT_NOT_RELEASED, (
        f"not released: the run ended {result.state} without promoting {', '.join(missed)} (its tasks did not run); "
        f"see {url}"
    )


def stage_line(ti: Mapping[str, Any], note: str = "") -> str:
    duration = ti.get("duration")
    seconds = f"{duration:.1f}s" if isinstance(duration, int | float) else "-"
    line = f"  {_task_key(ti):<36} {ti['state']:<16} {seconds:>7}"
    return f"{line}  {note}" if note else line


def approval_line(detail: Mapping[str, Any]) -> str:
    names = [u.get("name") or u.get("id") for u in detail.get("assigned_users") or []]
    assigned = ", ".join(names) if names else "any user who may answer approvals"
    task = detail["task_instance"]
    return f"waiting for approval: {_task_key(task)} (assigned: {assigned}): {detail.get('subject', '')}".rstrip(": ")


def _task_key(ti: Mapping[str, Any]) -> str:
    map_index = ti.get("map_index", -1)
    return ti["task_id"] if map_index in (-1, None) else f"{ti['task_id']}[{map_index}]"


def _answer_note(client: AirflowClient, ti: Mapping[str, Any]) -> str:
    """Who decided an approval that just ended: every approver of an N-of-M step, or the one answer."""
    dag_id, run_id, task_id, map_index = ti["dag_id"], ti["dag_run_id"], ti["task_id"], ti.get("map_index", -1)
    try:
        # Shipflow's approval steps keep every answer (XCom "approval"): N-of-M shows all approvers.
        record = client.xcom(dag_id, run_id, task_id, key="approval", map_index=map_index)
    except AirflowApiError:
        record = None
    if isinstance(record, Mapping) and record.get("decision"):
        answers = [*(record.get("approvals") or []), *([record["rejected_by"]] if record.get("rejected_by") else [])]
        people = ", ".join(a.get("user") or "nobody" for a in answers)
        comments = "; ".join(f"{a.get('user')}: {a['comment']}" for a in answers if a.get("comment"))
        return f"{record['decision']}" + (f" by {people}" if people else "") + (f" ({comments})" if comments else "")
    try:
        detail = client.hitl_detail(dag_id, run_id, task_id, map_index)
    except AirflowApiError:
        return ""
    if not detail.get("response_received"):
        return ""
    by = (detail.get("responded_by_user") or {}).get("name") or "?"
    comment = (detail.get("params_input") or {}).get("comment")
    return f"{', '.join(detail.get('chosen_options') or [])} by {by}" + (f" ({comment})" if comment else "")


def follow(
    client: AirflowClient,
    connection: Connection,
    dag_id: str,
    run_id: str,
    *,
    timeout: float,
    say: Callable[[str], None],
    poll_seconds: float = POLL_SECONDS,
) -> RunResult:
    """Watch the run until it ends (or ``timeout``): each stage once as it ends, each approval once."""
    deadline = time.monotonic() + timeout
    printed: set[str] = set()
    # (task key, assigned users) of each request shown: an N-of-M approval asks again after each
    # approval, of those who have not approved yet, and that is a new wait worth a line.
    announced: set[tuple[str, tuple[str, ...]]] = set()
    outage_since: float | None = None
    while True:
        try:
            run = client.get_dag_run(dag_id, run_id)
            tis = client.task_instances(dag_id, run_id)
            ended = [ti for ti in tis if ti["state"] in TASK_TERMINAL_STATES and _task_key(ti) not in printed]
            asked = {key for key, _ in announced}
            notes = {_task_key(ti): _answer_note(client, ti) for ti in ended if _is_approval(ti, asked)}
            waiting = {_task_key(ti) for ti in tis if ti["state"] in WAITING_STATES}
            pending = client.hitl_details(dag_id, run_id) if waiting else []
            outage_since = None
        except AirflowApiError as exc:
            if exc.status == 401 and connection.relogin(client):
                continue
            if exc.status is not None and exc.status < 500:
                raise explain(exc, connection, f"read run {run_id} of {dag_id}") from None
            now = time.monotonic()
            if outage_since is None:
                outage_since = now
                say(f"Airflow did not answer ({exc.detail}); trying again for up to {OUTAGE_SECONDS:g} s")
            elif now - outage_since > OUTAGE_SECONDS:
                raise explain(exc, connection, f"read run {run_id} of {dag_id}") from None
            time.sleep(poll_seconds)
            continue
        # Stages in the order they ended; end_date is ISO 8601 UTC, so it sorts as text.
        for ti in sorted(ended, key=lambda t: (t.get("end_date") or "", t["task_id"])):
            printed.add(_task_key(ti))
            if ti["state"] not in QUIET_STATES:
                say(stage_line(ti, notes.get(_task_key(ti), "")))
        for detail in pending:
            key = _task_key(detail["task_instance"])
            request = (key, tuple(sorted(u.get("id") or "" for u in detail.get("assigned_users") or [])))
            if key in waiting and request not in announced:
                announced.add(request)
                env = key.split(".", 1)[0]
                say(approval_line(detail))
                ui = f"  answer in the UI ({run_url(connection.url, dag_id, run_id)})"
                if APPROVE in (detail.get("options") or []):
                    ui += f" or: shipflow approve|reject {service_of(dag_id)} --env {env}"
                say(ui)
        if run["state"] in DAG_RUN_TERMINAL_STATES:
            return _result(client, dag_id, run, tis)
        if time.monotonic() > deadline:
            return RunResult(dag_id, run_id, run["state"], timed_out_after=timeout)
        time.sleep(poll_seconds)


def _is_approval(ti: Mapping[str, Any], asked: set[str]) -> bool:
    """A task that asked a person: seen waiting, or an approval step that ended between two looks."""
    return _task_key(ti) in asked or (
        ti["state"] == "success" and ti["task_id"].rsplit(".", 1)[-1] in APPROVAL_TASKS
    )


def _result(client: AirflowClient, dag_id: str, run: dict[str, Any], tis: list[dict[str, Any]]) -> RunResult:
    run_id = run["dag_run_id"]
    states = {ti["task_id"]: ti["state"] for ti in tis}
    requested = list((run.get("conf") or {}).get("environments") or _environments(tis))
    outcomes = []
    for env in requested:
        decided = None
        if states.get(f"{env}.decide_outcome") == "success":
            try:
                decided = client.xcom(dag_id, run_id, f"{env}.decide_outcome", key="outcome")
            except AirflowApiError:
                decided = None
        outcomes.append(environment_outcome(env, states.get(f"{env}.promote"), decided))
    failed = sorted(t for t, s in states.items() if s == "failed")
    return RunResult(dag_id, run_id, run["state"], outcomes, failed)


def _environments(tis: list[dict[str, Any]]) -> list[str]:
    """The DAG's environments (those with a ``promote`` task), in the order the run entered them."""
    envs = {ti["task_id"].split(".", 1)[0] for ti in tis if ti["task_id"].endswith(".promote")}

    def entered(env: str) -> str:
        starts = [ti.get("start_date") for ti in tis if ti["task_id"].startswith(f"{env}.") and ti.get("start_date")]
        return min(starts) if starts else "~"  # not entered: after every ISO timestamp

    return sorted(envs, key=lambda env: (entered(env), env))


# -- approvals -------------------------------------------------------------------------------------
APPROVE = "Approve"
REJECT = "Reject"


@dataclass
class Answered:
    dag_id: str
    run_id: str
    task_id: str
    chosen: str
    by: str
    url: str
    messages: list[str]


def pending_approvals(
    client: AirflowClient, dag_id: str, environment: str, run_id: str | None = None
) -> list[dict[str, Any]]:
    """Unanswered HITL steps of the DAG (or of one run) whose task belongs to ``environment``, oldest first."""
    details = client.hitl_details(dag_id, run_id or "~", response_received=False)
    mine = [d for d in details if d["task_instance"]["task_id"].startswith(f"{environment}.")]
    return sorted(mine, key=lambda d: d.get("created_at") or "")


def answer_approval(
    client: AirflowClient,
    connection: Connection,
    service: str,
    environment: str,
    chosen: str,
    *,
    comment: str | None = None,
    run_id: str | None = None,
) -> Answered:
    """Answer the approval that waits in ``environment`` of ``service`` as the logged-in user."""
    dag_id = require_service(client, connection, service)["dag_id"]
    verb = chosen.lower()
    try:
        pending = pending_approvals(client, dag_id, environment, run_id)
    except AirflowApiError as exc:
        raise explain(exc, connection, f"read the approvals of {dag_id}") from None
    answerable = [d for d in pending if chosen in (d.get("options") or [])]
    if not answerable:
        where = f" of run {run_id}" if run_id else ""
        others = ", ".join(f"{_task_key(d['task_instance'])} (options: {', '.join(d['options'])})" for d in pending)
        hint = f"; waiting there, but not an approval: {others} (answer it in the UI)" if others else ""
        raise ClientError(f"nothing waits for approval in {environment} of {service}{where}{hint}")
    runs = sorted({d["task_instance"]["dag_run_id"] for d in answerable})
    if len(runs) > 1:
        listed = "; ".join(
            f"{r} (waiting since {next(d['created_at'] for d in answerable if d['task_instance']['dag_run_id'] == r)})"
            for r in runs
        )
        raise ClientError(
            f"{len(runs)} releases of {service} wait for approval in {environment}: {listed}; choose one with --run"
        )
    # Of several steps in one run (one per approver, say), answer the one assigned to us.
    assigned_to_me = [d for d in answerable if _may_answer(d, connection.username)]
    detail = (assigned_to_me or answerable)[0]
    ti = detail["task_instance"]
    params_input: dict[str, Any] = {}
    messages = []
    if comment is not None:
        # Only approval steps that declare a "comment" param take one; anything else is a 400.
        if "comment" in (detail.get("params") or {}):
            params_input["comment"] = comment
        else:
            messages.append(f"note: {ti['task_id']} takes no comment; --comment was not sent")
    try:
        client.answer_hitl(dag_id, ti["dag_run_id"], ti["task_id"], [chosen], params_input, ti.get("map_index", -1))
    except AirflowApiError as exc:
        raise _explain_answer(exc, client, connection, detail, verb) from None
    url = run_url(connection.url, dag_id, ti["dag_run_id"])
    by = connection.username or "this token's user"
    messages.append(f"{verb.removesuffix('e')}ed {ti['task_id']} of {dag_id} run {ti['dag_run_id']} as {by}: {url}")
    return Answered(dag_id, ti["dag_run_id"], ti["task_id"], chosen, by, url, messages)


def _may_answer(detail: Mapping[str, Any], username: str | None) -> bool:
    assigned = {u.get("id") for u in detail.get("assigned_users") or []}
    return not assigned or username in assigned


def _explain_answer(
    exc: AirflowApiError, client: AirflowClient, connection: Connection, detail: Mapping[str, Any], verb: str
) -> ClientError:
    ti = detail["task_instance"]
    if exc.status == 403:
        names = ", ".join(u.get("name") or u.get("id") for u in detail.get("assigned_users") or []) or "any user"
        return ClientError(
            f"{connection.who} may not {verb} this (not an assigned approver, or the user who triggered the "
            f"release: separation of duties); assigned: {names}"
        )
    if exc.status == 409:
        try:
            now = client.hitl_detail(ti["dag_id"], ti["dag_run_id"], ti["task_id"], ti.get("map_index", -1))
        except AirflowApiError:
            now = {}
        by = (now.get("responded_by_user") or {}).get("name") or "someone else"
        at = _when(now.get("responded_at"))
        chose = ", ".join(now.get("chosen_options") or []) or "answered"
        return ClientError(f"already answered by {by} at {at} ({chose}): {ti['task_id']} of run {ti['dag_run_id']}")
    return explain(exc, connection, f"{verb} {ti['task_id']} of run {ti['dag_run_id']}")


def _when(timestamp: str | None) -> str:
    if not timestamp:
        return "an unknown time"
    try:
        return datetime.fromisoformat(timestamp).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    except ValueError:
        return timestamp
