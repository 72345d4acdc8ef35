"""Manual interventions: what a person changes in a release through Airflow's UI or REST API.

An ASGI middleware in the api-server (registered by ``plugins/shipflow_plugin.py`` as a
``fastapi_root_middlewares`` entry). The UI uses the same public REST API as scripts, so one place
sees both. After a request that changed a release DAG's state succeeded (2xx), it records a
``manual_intervention`` event with the user (from the request's JWT, as Airflow itself resolves it)
and what was done:

===================  ============================================================  ==================
action               request                                                       payload
===================  ============================================================  ==================
``mark_task``        PATCH ``/api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}``  ``new_state``, tasks
``mark_task_group``  PATCH ``.../dagRuns/{run}/taskGroupInstances/{group}``         ``new_state``, tasks
``clear_tasks``      POST ``/api/v2/dags/{dag}/clearTaskInstances`` (not dry run)    run, tasks cleared
``mark_run``         PATCH ``/api/v2/dags/{dag}/dagRuns/{run}`` with a ``state``      ``state``
``clear_run``        POST ``/api/v2/dags/{dag}/dagRuns/{run}/clear`` (not dry run)    tasks cleared
===================  ============================================================  ==================

Dry runs, note-only edits and refused requests change nothing and are not recorded. Approvals are not
interventions: the approval steps record their own decisions. Listener hooks fire for some of these
too, but without the user; ``shipflow.audit.listener`` leaves them to this middleware.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import uuid
from typing import Any

from shipflow.audit import MANUAL_INTERVENTION
from shipflow.audit.recorder import service_of

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
_DAG = r"^/api/v2/dags/(?P<dag_id>[^/]+)"
_RUN = _DAG + r"/dagRuns/(?P<run_id>[^/]+)"
ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("PATCH", re.compile(_RUN + r"/taskInstances/(?P<task_id>[^/]+)(?:/(?P<map_index>-?\d+))?$"), "mark_task"),
    ("PATCH", re.compile(_RUN + r"/taskGroupInstances/(?P<task_id>[^/]+)$"), "mark_task_group"),
    ("POST", re.compile(_DAG + r"/clearTaskInstances$"), "clear_tasks"),
    ("PATCH", re.compile(_RUN + r"$"), "mark_run"),
    ("POST", re.compile(_RUN + r"/clear$"), "clear_run"),
)
COOKIE_NAME = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN


def match(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """The intervention a request would be (action, path parameters), if it is one on a release DAG."""
    from urllib.parse import unquote

    for route_method, pattern, action in ROUTES:
        if method == route_method and (found := pattern.match(path)):
            params = {k: unquote(v) for k, v in found.groupdict().items() if v is not None}
            if service_of(params["dag_id"]) is not None:
                return action, params
    return None


def _json(data: bytes) -> Any:
    try:
        return json.loads(data) if data else {}
    except ValueError:
        return {}


def describe(action: str, params: dict[str, str], body: Any, response: Any) -> dict[str, Any] | None:
    """The event's payload, or None when the request changed nothing (a dry run, a note)."""
    body = body if isinstance(body, dict) else {}
    response = response if isinstance(response, dict) else {}
    affected = [
        {"task_id": ti.get("task_id"), "run_id": ti.get("dag_run_id") or ti.get("run_id"), "state": ti.get("state")}
        for ti in response.get("task_instances") or []
        if isinstance(ti, dict)
    ]
    payload: dict[str, Any] = {"action": action}
    if action in ("mark_task", "mark_task_group"):
        if not body.get("new_state"):
            return None
        payload |= {
            "new_state": body["new_state"],
            "task": params.get("task_id"),
            "include": {k: body[k] for k in ("include_upstream", "include_downstream") if body.get(k)},
            "note": body.get("note"),
        }
    elif action in ("clear_tasks", "clear_run"):
        if body.get("dry_run", True):
            return None
        payload |= {
            "tasks": body.get("task_ids"),
            "only_failed": body.get("only_failed"),
            "run_id": body.get("dag_run_id") or params.get("run_id"),
        }
    elif action == "mark_run":
        if not body.get("state"):
            return None
        payload |= {"state": body["state"], "note": body.get("note")}
    payload["affected"] = affected
    return payload


async def _user_name(headers: dict[bytes, bytes]) -> str:
    token = None
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    if authorization.lower().startswith("bearer "):
        token = authorization[7:].strip()
    else:
        for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE_NAME:
                token = value
    if not token:
        return "unknown"
    try:
        from airflow.api_fastapi.app import get_auth_manager

        user = await get_auth_manager().get_user_from_token(token)
        return user.get_name()
    except Exception:
        log.warning("audit: the user of an intervention could not be resolved", exc_info=True)
        return "unknown"


class ManualInterventionMiddleware:
    """Records each successful state change a person makes to a release through the API (see module doc)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("method") not in ("PATCH", "POST"):
            await self.app(scope, receive, send)
            return
        found = match(scope["method"], scope.get("path", ""))
        if found is None:
            await self.app(scope, receive, send)
            return
        request_body = bytearray()
        response_body = bytearray()
        status: dict[str, int] = {}

        async def receive_and_keep() -> Any:
            message = await receive()
            if message.get("type") == "http.request" and len(request_body) < MAX_BODY_BYTES:
                request_body.extend(message.get("body", b""))
            return message

        async def send_and_keep(message: Any) -> None:
            if message.get("type") == "http.response.start":
                status["code"] = message.get("status", 0)
            elif message.get("type") == "http.response.body" and len(response_body) < MAX_BODY_BYTES:
                response_body.extend(message.get("body", b""))
            await send(message)

        await self.app(scope, receive_and_keep, send_and_keep)
        if not 200 <= status.get("code", 0) < 300:
            return
        try:
            await self._record(scope, found, bytes(request_body), bytes(response_body))
        except Exception:  # the change is done; losing its record is logged, never turned into an error
            log.exception("audit: manual intervention %s on %s not recorded", found[0], scope.get("path"))

    async def _record(self, scope: dict[str, Any], found: tuple[str, dict[str, str]], body: bytes, out: bytes) -> None:
        import anyio

        from shipflow.audit.recorder import record

        action, params = found
        payload = describe(action, params, _json(body), _json(out))
        if payload is None:
            return
        headers = dict(scope.get("headers") or [])
        actor = await _user_name(headers)
        payload["via"] = "api" if headers.get(b"authorization") else "ui"
        run_id = params.get("run_id") or payload.get("run_id")
        task_id = params.get("task_id") if action == "mark_task" else None
        await anyio.to_thread.run_sync(
            functools.partial(
                record,
                MANUAL_INTERVENTION,
                event_id=uuid.uuid4(),
                actor=actor,
                dag_id=params["dag_id"],
                run_id=run_id,
                task_id=task_id,
                payload=payload,
            )
        )
