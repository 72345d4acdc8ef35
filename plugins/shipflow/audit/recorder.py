"""Recording what releases do: where an event belongs, its idempotent id, and one ``record`` call.

Every Airflow component records through ``record(...)``: the worker (task events, through the
listener), the scheduler (a release requested and finished) and the api-server (a person stepping in).
``record`` redacts the payload, appends the event to the audit store (spooling it if the store is
away), sends the matching metrics (``shipflow.telemetry``), and never raises: the audit trail must
not turn a release step into a failure, and whatever goes wrong is logged with the event's id.

An event's id is derived from what it is about (``event_id_for``), so a listener called twice for the
same thing, or a spool replayed after a crash, stores it once.

Where an event belongs comes from Airflow's ids, one name per concept: the DAG ``release__<service>``
names the service, a task group names the environment, and the task id inside it is the stage
(``staging.deploy`` is stage ``deploy`` of environment ``staging``). ``STAGE_KINDS`` says which
stages are which kind of event.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any

from shipflow.audit import (
    APPROVAL,
    AWS_ACTION,
    GATE_DECISION,
    MANUAL_FALLBACK,
    ROLLBACK,
    SYSTEM_ACTOR,
    URL_VARIABLE,
)

log = logging.getLogger(__name__)

RELEASE_DAG_PREFIX = "release__"
# uuid5 namespace of Shipflow's audit events (a fixed, random UUID).
EVENT_NAMESPACE = uuid.UUID("3b5f0f8e-5d43-4a8e-9b1e-6f3c2a7d9e10")
# A payload's result larger than this is cut (the store keeps JSON, not logs).
MAX_RESULT_CHARS = 32_000
# Listeners run inside the scheduler and api-server too: do not hang them on an unreachable PostgreSQL.
CONNECT_TIMEOUT_SECONDS = 3

# Which stage (task id inside an environment's group, or top-level task id) is which kind of event.
STAGE_KINDS: dict[str, str] = {
    "build": AWS_ACTION,
    "plan_stack": AWS_ACTION,
    "apply_stack": AWS_ACTION,
    "deploy": AWS_ACTION,
    "rollback_deployment": AWS_ACTION,
    "rollback_stack": AWS_ACTION,
    "check_deployment_window": GATE_DECISION,
    "check_alarms": GATE_DECISION,
    "check_stack_stable": GATE_DECISION,
    "check_artifact_present": GATE_DECISION,
    "check_release_inputs": GATE_DECISION,
    "decide_stack_approval": GATE_DECISION,
    "watch_bake": GATE_DECISION,
    "check_service_metrics": GATE_DECISION,
    "approve_stack_change": APPROVAL,
    "approve_release": APPROVAL,
    "decide_outcome": ROLLBACK,  # recorded only when the outcome rolls something back
    "verify_rollback": ROLLBACK,
    "manual_fallback": MANUAL_FALLBACK,
}


def service_of(dag_id: str | None) -> str | None:
    """``release__payments-api`` -> ``payments-api``; None for DAGs that are not release DAGs."""
    if dag_id and dag_id.startswith(RELEASE_DAG_PREFIX):
        return dag_id.removeprefix(RELEASE_DAG_PREFIX)
    return None


def environment_and_stage(task_id: str | None) -> tuple[str | None, str | None]:
    """``staging.deploy`` -> (``staging``, ``deploy``); ``build`` -> (None, ``build``)."""
    if not task_id:
        return None, None
    environment, dot, stage = task_id.rpartition(".")
    return (environment or None) if dot else None, stage


def event_id_for(*parts: Any) -> uuid.UUID:
    """The id of the event about ``parts`` (dag id, run id, task id, try, what): the same parts, the same id."""
    return uuid.uuid5(EVENT_NAMESPACE, "\x1f".join("" if p is None else str(p) for p in parts))


@cache
def store() -> Any:
    """This process's audit store (the configured URL; see ``shipflow.audit.store.resolve_url``)."""
    from shipflow.audit.store import AuditStore, resolve_url

    return AuditStore(resolve_url(), connect_timeout=CONNECT_TIMEOUT_SECONDS)


def bounded(value: Any) -> Any:
    """``value`` if its JSON is small enough for an audit payload, else a note of what was cut."""
    import json

    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        return {"unserialisable": type(value).__name__}
    if len(text) <= MAX_RESULT_CHARS:
        return json.loads(text)
    return {"truncated": True, "chars": len(text), "head": text[:2000]}


def _spool(kind: str, fields: Mapping[str, Any]) -> bool:
    """Keep an event the store refused for a reason other than being away (not migrated, a bug) in the spool."""
    from shipflow.audit.chain import Event

    try:
        store().spool.add(Event.new(kind, **fields).to_record())
    except Exception:
        return False
    log.exception("audit event %s (%s) not stored; kept in the spool %s", fields["event_id"], kind, store().spool.path)
    return True


def record(
    kind: str,
    *,
    event_id: uuid.UUID,
    actor: str | None = None,
    dag_id: str | None = None,
    run_id: str | None = None,
    task_id: str | None = None,
    try_number: int | None = None,
    environment: str | None = None,
    stage: str | None = None,
    payload: Mapping[str, Any] | None = None,
    time: datetime | None = None,
) -> bool:
    """Redact ``payload``, append the event, observe its metrics. Returns whether it was stored or spooled.

    ``environment`` and ``stage`` default to what ``task_id`` says; the service is the DAG's.
    """
    from shipflow.redact import redact

    if task_id and (environment is None or stage is None):
        found_env, found_stage = environment_and_stage(task_id)
        environment = environment if environment is not None else found_env
        stage = stage if stage is not None else found_stage
    service = service_of(dag_id)
    clean = redact(bounded(dict(payload or {})))
    fields = {
        "actor": (actor or SYSTEM_ACTOR)[:250],
        "dag_id": dag_id,
        "run_id": run_id,
        "service": service,
        "environment": environment,
        "stage": stage,
        "task_id": task_id,
        "try_number": try_number,
        "payload": clean,
        "event_id": event_id,
        "time": time,
    }
    try:
        store().append(kind, **fields)
    except Exception:  # the trail must not fail the step it records: keep the event in the spool
        if _spool(kind, fields):
            return True
        log.exception(
            "audit event %s (%s of %s %s %s) could not be recorded (store %s)",
            event_id,
            kind,
            dag_id,
            run_id,
            task_id,
            os.environ.get(URL_VARIABLE, "from connection"),
        )
        return False
    try:
        from shipflow.telemetry import observe
    except ImportError:
        return True
    observe(kind, service=service, environment=environment, stage=stage, payload=clean)
    return True
