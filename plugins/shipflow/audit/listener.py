"""The audit listener: Airflow calls it in every component, and it records what the release did.

Registered by ``plugins/shipflow_plugin.py`` (``listeners``). Where each hook fires (FIELD-NOTES):

- **worker** (the task's own process, after the try ends): ``on_task_instance_success|failed|skipped``
  with the Task SDK's ``RuntimeTaskInstance``. The task's result (its XCom) is the evidence: an AWS
  action's calls and request ids, a gate's evidence, an approval's decision. ``STAGE_KINDS`` maps the
  stage to the event kind; stages not in it (``enter``, ``promote``, ``fail_release``, ...) are not
  events of their own (the release's start and end are).
- **scheduler**: ``on_dag_run_running`` (``release_requested``: who, via UI, REST or schedule, and the
  request) and ``on_dag_run_success|failed`` (``release_finished`` with every environment's outcome).
  Also ``on_task_instance_failed`` for a try the scheduler fails itself (a worker that died).
- **api-server**: the same task and run hooks when a person changes a state. Those carry no user, so
  ``shipflow.audit.middleware`` records the intervention with its user; here they are ignored, except
  that a run a person fails or marks successful still gets its ``release_finished``.

Only release DAGs (``release__<service>``) are recorded. Every hook swallows its own errors:
Airflow logs a listener's exception, but the audit trail must never be why a task or run changes.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from airflow.listeners import hookimpl

from shipflow.audit import (
    APPROVAL,
    GATE_DECISION,
    MANUAL_FALLBACK,
    RELEASE_FINISHED,
    RELEASE_REQUESTED,
    ROLLBACK,
    WINDOW_OVERRIDE,
)
from shipflow.audit.recorder import STAGE_KINDS, environment_and_stage, event_id_for, record, service_of

log = logging.getLogger(__name__)

SUCCESS, FAILED, SKIPPED = "success", "failed", "skipped"
# DagRun.triggered_by values, as the evidence names the way a release was asked for.
TRIGGERS = {"ui": "ui", "rest_api": "rest", "cli": "cli", "timetable": "schedule", "test": "test"}


def _in_worker(task_instance: Any) -> bool:
    return type(task_instance).__module__.startswith("airflow.sdk")


def _seconds_between(start: Any, end: Any) -> float | None:
    if isinstance(start, str):
        start = datetime.fromisoformat(start)
    if isinstance(end, str):
        end = datetime.fromisoformat(end)
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        return None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return round((end - start).total_seconds(), 3)


def _pull(ti: Any, key: str = "return_value") -> Any:
    try:
        return ti.xcom_pull(task_ids=ti.task_id, key=key)
    except Exception:  # an XCom that cannot be read is not worth losing the event for
        log.warning("audit: could not read XCom %s of %s", key, ti.task_id, exc_info=True)
        return None


def _error_details(error: Any) -> dict[str, Any]:
    if error is None:
        return {}
    details: dict[str, Any] = {"error": str(error)[:4000]}
    if isinstance(error, BaseException):
        details["error_type"] = type(error).__name__
        for name in ("resource_id", "status", "reason", "console_url"):
            if getattr(error, name, None):
                details[name] = getattr(error, name)
        if getattr(error, "result", None):
            details["result"] = error.result
    return details


def _approval_payload(ti: Any, state: str) -> tuple[dict[str, Any], str | None]:
    """The decision record an approval step pushed (who, when, comment, round), and the deciding person."""
    decision = _pull(ti, "approval") or {}
    payload: dict[str, Any] = {"approval": decision}
    if decision:
        payload["decision"] = decision.get("decision")
        approvals = decision.get("approvals") or []
        last = (decision.get("rejected_by") or (approvals[-1] if approvals else None)) or {}
        answered_at = last.get("at") if isinstance(last, dict) else None
        payload["wait_seconds"] = _seconds_between(decision.get("requested_at"), answered_at or ti.end_date)
        payload["approvers"] = [a.get("user") for a in approvals if isinstance(a, dict)]
        who = decision.get("responded_by_user") or {}
        return payload, who.get("name") or who.get("id")
    if state == FAILED:
        payload["decision"] = "failed"
    return payload, None


def _task_event(ti: Any, state: str, error: Any = None) -> None:
    service = service_of(ti.dag_id)
    if service is None:
        return
    environment, stage = environment_and_stage(ti.task_id)
    kind = STAGE_KINDS.get(stage or "")
    if kind is None:
        return
    in_worker = _in_worker(ti)
    payload: dict[str, Any] = {
        "state": state,
        "operator": type(getattr(ti, "task", None)).__name__ if getattr(ti, "task", None) else None,
        "started_at": ti.start_date.isoformat() if getattr(ti, "start_date", None) else None,
        "duration_seconds": _seconds_between(ti.start_date, ti.end_date or datetime.now(UTC))
        if getattr(ti, "start_date", None)
        else None,
        **_error_details(error),
    }
    result = _pull(ti) if in_worker and state == SUCCESS else None
    actor = None
    if kind == APPROVAL:
        extra, actor = _approval_payload(ti, state) if in_worker else ({}, None)
        payload |= extra
    elif kind == GATE_DECISION:
        payload["passed"] = state == SUCCESS
        payload["evidence"] = result
    elif kind == MANUAL_FALLBACK:
        payload["response"] = result
        who = (result or {}).get("responded_by_user") or {}
        actor = who.get("name") or who.get("id")
        payload["restored"] = state == SUCCESS
    elif kind == ROLLBACK:
        if stage == "decide_outcome":
            outcome = _pull(ti, "outcome") if in_worker else None
            if not outcome or not outcome.get("rolled_back"):
                return  # promoted, superseded or nothing to undo: the release's end records it
            payload |= {
                "phase": "started",
                "reason": outcome.get("reason"),
                "failed_step": outcome.get("failed_step"),
                "rolls_back": outcome.get("rolled_back"),
                "outcome": outcome.get("outcome"),
            }
        else:
            payload |= {"phase": "verified" if state == SUCCESS else "not_verified", "verified": state == SUCCESS}
            payload["evidence"] = result
    else:  # AWS_ACTION
        payload["result"] = result
    record(
        kind,
        event_id=event_id_for(ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1), ti.try_number, state),
        actor=actor,
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id,
        try_number=ti.try_number,
        environment=environment,
        stage=stage,
        payload=payload,
        time=ti.end_date,
    )
    override = (result or {}).get("override") if kind == GATE_DECISION and isinstance(result, dict) else None
    if override:
        record(
            WINDOW_OVERRIDE,
            event_id=event_id_for(ti.dag_id, ti.run_id, ti.task_id, ti.try_number, WINDOW_OVERRIDE),
            actor=override.get("approved_by") if isinstance(override, dict) else None,
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            try_number=ti.try_number,
            payload={"override": override, "window": result.get("text")},
            time=ti.end_date,
        )


def _guarded(what: str, function: Any, *args: Any) -> None:
    try:
        function(*args)
    except Exception:
        log.exception("audit listener failed on %s", what)


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    if previous_state is None:  # a person marked it in the api-server: the middleware records who
        return
    _guarded("task success", _task_event, task_instance, SUCCESS)


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    if previous_state is None:
        return
    _guarded("task failure", _task_event, task_instance, FAILED, error)


@hookimpl
def on_task_instance_skipped(previous_state: Any, task_instance: Any) -> None:
    if previous_state is None:
        return
    _guarded("task skip", _task_event, task_instance, SKIPPED)


# -- runs (scheduler; api-server when a person sets a run's state) ---------------------------------
def _trigger(dag_run: Any) -> str:
    triggered_by = getattr(dag_run, "triggered_by", None)
    value = getattr(triggered_by, "value", triggered_by)
    if str(getattr(dag_run, "run_type", "")).endswith("scheduled") or value == "timetable":
        return "schedule"
    return TRIGGERS.get(str(value or "").lower(), str(value or "unknown").lower())


def _requested(dag_run: Any) -> None:
    if service_of(dag_run.dag_id) is None:
        return
    conf = dict(dag_run.conf or {})
    trigger = _trigger(dag_run)
    record(
        RELEASE_REQUESTED,
        event_id=event_id_for(dag_run.dag_id, dag_run.run_id, RELEASE_REQUESTED),
        actor=getattr(dag_run, "triggering_user_name", None) or None,
        dag_id=dag_run.dag_id,
        run_id=dag_run.run_id,
        payload={
            "trigger": trigger,
            "run_type": str(getattr(dag_run, "run_type", "")),
            "version": conf.get("version"),
            "commit": conf.get("commit"),
            "change": conf.get("change"),
            "environments": conf.get("environments"),
            "emergency": conf.get("emergency"),
            "conf": conf,
            "logical_date": dag_run.logical_date.isoformat() if getattr(dag_run, "logical_date", None) else None,
            "queued_at": dag_run.queued_at.isoformat() if getattr(dag_run, "queued_at", None) else None,
        },
        time=getattr(dag_run, "start_date", None),
    )


def _outcomes(dag_run: Any) -> dict[str, Any]:
    """Each environment's ``decide_outcome`` record, read in the session the run came with.

    The scheduler calls this hook inside its own transaction (HA locks): this only reads, never
    flushes or commits (a commit here raises "UNEXPECTED COMMIT" and breaks the scheduler loop).
    """
    from airflow.models.xcom import XComModel
    from sqlalchemy import select
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is None:
        return {}
    found: dict[str, Any] = {}
    with session.no_autoflush:
        rows = session.execute(
            select(XComModel.task_id, XComModel.value).where(
                XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id, XComModel.key == "outcome"
            )
        ).all()
    for task_id, raw in rows:
        value = XComModel.deserialize_value(_Stored(raw))
        if isinstance(value, dict):
            env = value.get("environment") or task_id.split(".")[0]
            found[env] = {k: value.get(k) for k in ("outcome", "reason", "failed_step", "rolled_back", "promoted")}
    return found


class _Stored:
    """What ``XComModel.deserialize_value`` reads: an object with the stored ``value``."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _finished(dag_run: Any, state: str, msg: str) -> None:
    if service_of(dag_run.dag_id) is None:
        return
    dag_id, run_id, started = dag_run.dag_id, dag_run.run_id, getattr(dag_run, "start_date", None)
    try:
        outcomes = _outcomes(dag_run)
    except Exception:
        log.warning("audit: outcomes of %s not readable", run_id, exc_info=True)
        outcomes = {}
    ended = getattr(dag_run, "end_date", None) or datetime.now(UTC)
    record(
        RELEASE_FINISHED,
        event_id=event_id_for(dag_id, run_id, RELEASE_FINISHED, state, ended.isoformat(), msg),
        dag_id=dag_id,
        run_id=run_id,
        payload={
            "state": state,
            "message": msg,
            "started_at": started.isoformat() if started else None,
            "duration_seconds": _seconds_between(started, ended),
            "outcomes": outcomes,
        },
        time=ended,
    )


@hookimpl
def on_dag_run_running(dag_run: Any, msg: str) -> None:
    _guarded("run running", _requested, dag_run)


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    _guarded("run success", _finished, dag_run, SUCCESS, msg)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    _guarded("run failure", _finished, dag_run, FAILED, msg)


__all__ = [
    "on_dag_run_failed",
    "on_dag_run_running",
    "on_dag_run_success",
    "on_task_instance_failed",
    "on_task_instance_skipped",
    "on_task_instance_success",
]
