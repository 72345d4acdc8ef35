"""The evidence record in the Airflow UI: a FastAPI app the api-server mounts at ``/shipflow``.

``GET /shipflow/audit/runs/{dag_id}/{run_id}`` answers the record as HTML (the "Audit evidence" tab
the plugin adds to every run page, an ``external_views`` entry with destination ``dag_run``), or as
JSON with ``?format=json``. Plugin apps are not authenticated by Airflow, so this one asks Airflow's
auth manager itself: the caller's JWT (``Authorization: Bearer`` or the UI's cookie) must be valid
and allowed to read the DAG; otherwise 401/403.
"""

from __future__ import annotations

import html
import json
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse

from shipflow.audit.recorder import service_of

app = FastAPI(title="Shipflow", description="Shipflow's audit evidence, per release run")
ROUTE = "/audit/runs/{dag_id}/{run_id}"


async def _user(request: Request) -> Any:
    from airflow.api_fastapi.app import get_auth_manager

    authorization = request.headers.get("authorization", "")
    token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else request.cookies.get("_token")
    if not token:
        raise HTTPException(401, "Not authenticated: log in to Airflow first")
    try:
        return await get_auth_manager().get_user_from_token(token)
    except Exception:
        raise HTTPException(401, "Invalid or expired token: log in to Airflow again") from None


def _record(dag_id: str, run_id: str) -> dict[str, Any]:
    from shipflow.audit.evidence import evidence
    from shipflow.audit.recorder import store

    events = [e for e in store().events(run_id=run_id) if e.dag_id == dag_id]
    if not events:
        raise HTTPException(404, f"no audit events for run {run_id} of {dag_id}")
    return evidence(events)


@app.get(ROUTE)
async def run_evidence(
    dag_id: str,
    run_id: str,
    user: Annotated[Any, Depends(_user)],
    format: str = "html",  # noqa: A002
) -> Any:
    import anyio
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    if service_of(dag_id) is None:
        raise HTTPException(404, f"{dag_id} is not a Shipflow release DAG")
    if not get_auth_manager().is_authorized_dag(method="GET", details=DagDetails(id=dag_id), user=user):
        raise HTTPException(403, f"{user.get_name()} may not read {dag_id}")
    record = await anyio.to_thread.run_sync(_record, dag_id, run_id)
    if format == "json":
        return JSONResponse(json.loads(json.dumps(record, default=str)))
    from shipflow.audit.evidence import render_text

    body = html.escape(render_text(record))
    raw = html.escape(json.dumps(record, indent=2, sort_keys=True, default=str))
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'><title>Audit evidence</title>"
        "<style>body{font-family:sans-serif;margin:1em}pre{font-size:12px;white-space:pre-wrap}</style></head>"
        f"<body><h3>Audit evidence: {html.escape(run_id)}</h3><pre>{body}</pre>"
        f"<details><summary>Full record (JSON)</summary><pre>{raw}</pre></details></body></html>"
    )
