"""Recording release events: where an event belongs, redaction, nothing lost, the intervention
middleware and the evidence record, on a real SQLite store (no Airflow processes)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from shipflow.audit import AWS_ACTION, MANUAL_INTERVENTION, RELEASE_FINISHED, RELEASE_REQUESTED, ROLLBACK, recorder
from shipflow.audit.evidence import evidence, render_text
from shipflow.audit.middleware import ManualInterventionMiddleware, describe, match
from shipflow.audit.store import AuditStore


@pytest.fixture
def configured(sqlite_url, spool_path, monkeypatch):
    """``record`` writes to a migrated SQLite store through the environment, as every component does."""
    monkeypatch.setenv("SHIPFLOW_AUDIT_URL", sqlite_url)
    monkeypatch.setenv("SHIPFLOW_AUDIT_SPOOL", str(spool_path))
    recorder.store.cache_clear()
    with AuditStore(sqlite_url, spool_path=spool_path) as store:
        store.migrate()
        yield store
    recorder.store.cache_clear()


def test_service_environment_and_stage_come_from_airflow_ids():
    assert recorder.service_of("release__payments-api") == "payments-api"
    assert recorder.service_of("metrics") is None
    assert recorder.environment_and_stage("staging.deploy") == ("staging", "deploy")
    assert recorder.environment_and_stage("build") == (None, "build")
    same = recorder.event_id_for("release__a", "run1", "staging.deploy", -1, 1, "success")
    assert same == recorder.event_id_for("release__a", "run1", "staging.deploy", -1, 1, "success")
    assert same != recorder.event_id_for("release__a", "run1", "staging.deploy", -1, 2, "success")


def test_record_fills_the_place_redacts_and_stores_once(configured, monkeypatch):
    monkeypatch.setenv("DEPLOY_API_TOKEN", "tok-record-8c2e41")
    from shipflow.redact import environment_secrets

    environment_secrets.cache_clear()
    event_id = recorder.event_id_for("release__orders", "r1", "staging.deploy", 1)
    payload = {"state": "failed", "error": "boom with tok-record-8c2e41", "password": "hunter22"}
    for _ in range(2):  # a listener called twice for the same try
        assert recorder.record(
            AWS_ACTION,
            event_id=event_id,
            dag_id="release__orders",
            run_id="r1",
            task_id="staging.deploy",
            try_number=1,
            payload=payload,
        )
    [row] = configured.events(run_id="r1")
    assert (row.service, row.environment, row.stage, row.actor) == ("orders", "staging", "deploy", "shipflow")
    assert row.payload == {"state": "failed", "error": "boom with ***", "password": "***"}
    environment_secrets.cache_clear()


def test_an_unreachable_store_spools_and_a_store_never_migrated_loses_nothing(tmp_path, spool_path, monkeypatch):
    monkeypatch.setenv("SHIPFLOW_AUDIT_SPOOL", str(spool_path))
    monkeypatch.setenv("SHIPFLOW_AUDIT_URL", f"sqlite:///{tmp_path}/not-yet.db")  # exists once opened, no tables
    recorder.store.cache_clear()
    try:
        assert recorder.record(RELEASE_REQUESTED, event_id=uuid.uuid4(), dag_id="release__orders", run_id="r9")
        assert recorder.record(RELEASE_FINISHED, event_id=uuid.uuid4(), dag_id="release__orders", run_id="r9")
        kept = [json.loads(line) for line in spool_path.read_text().splitlines()]
        assert [k["kind"] for k in kept] == [RELEASE_REQUESTED, RELEASE_FINISHED]
        # Migrated later: the next event brings the spooled ones in first, in order.
        AuditStore(f"sqlite:///{tmp_path}/not-yet.db", spool_path=spool_path).migrate()
        assert recorder.record(ROLLBACK, event_id=uuid.uuid4(), dag_id="release__orders", run_id="r9")
        rows = recorder.store().events(run_id="r9")
        assert [r.kind for r in rows] == [RELEASE_REQUESTED, RELEASE_FINISHED, ROLLBACK]
        assert spool_path.read_text() == ""
    finally:
        recorder.store.cache_clear()


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        (
            "PATCH",
            "/api/v2/dags/release__orders/dagRuns/manual__2026-11-27T00%3A00%3A00/taskInstances/staging.deploy",
            (
                "mark_task",
                {"dag_id": "release__orders", "run_id": "manual__2026-11-27T00:00:00", "task_id": "staging.deploy"},
            ),
        ),
        (
            "PATCH",
            "/api/v2/dags/release__orders/dagRuns/r1/taskInstances/staging.deploy/-1",
            (
                "mark_task",
                {"dag_id": "release__orders", "run_id": "r1", "task_id": "staging.deploy", "map_index": "-1"},
            ),
        ),
        ("POST", "/api/v2/dags/release__orders/clearTaskInstances", ("clear_tasks", {"dag_id": "release__orders"})),
        (
            "PATCH",
            "/api/v2/dags/release__orders/dagRuns/r1",
            ("mark_run", {"dag_id": "release__orders", "run_id": "r1"}),
        ),
        (
            "POST",
            "/api/v2/dags/release__orders/dagRuns/r1/clear",
            ("clear_run", {"dag_id": "release__orders", "run_id": "r1"}),
        ),
        ("PATCH", "/api/v2/dags/release__orders/dagRuns/r1/taskInstances/staging.deploy/dry_run", None),
        ("PATCH", "/api/v2/dags/nightly_etl/dagRuns/r1", None),  # not a release DAG
        ("GET", "/api/v2/dags/release__orders/dagRuns/r1", None),
    ],
)
def test_which_requests_are_interventions(method, path, expected):
    assert match(method, path) == expected


def test_dry_runs_and_notes_change_nothing_and_are_not_interventions():
    params = {"dag_id": "release__orders", "run_id": "r1", "task_id": "staging.deploy"}
    assert describe("clear_tasks", params, {"task_ids": ["x"]}, {}) is None  # dry_run defaults to true
    assert describe("mark_task", params, {"note": "looked at it"}, {}) is None
    assert describe("mark_run", params, {"note": "n"}, {}) is None
    cleared = describe(
        "clear_tasks",
        params,
        {"dag_run_id": "r1", "task_ids": ["staging.deploy"], "dry_run": False},
        {"task_instances": [{"task_id": "staging.deploy", "dag_run_id": "r1", "state": "failed"}]},
    )
    assert cleared["action"] == "clear_tasks" and cleared["run_id"] == "r1"
    assert cleared["affected"] == [{"task_id": "staging.deploy", "run_id": "r1", "state": "failed"}]


def _call(middleware, method: str, path: str, body: dict, status: int, answer: dict) -> None:
    async def run() -> None:
        sent = []
        messages = [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]

        async def receive():
            return messages.pop(0)

        async def send(message):
            sent.append(message)

        await middleware({"type": "http", "method": method, "path": path, "headers": []}, receive, send)
        assert sent[0]["status"] == status  # the answer goes through unchanged

    asyncio.run(run())


def test_the_middleware_records_a_successful_change_and_not_a_refused_one(configured):
    async def airflow(scope, receive, send):  # stands in for the api-server's routes
        request = await receive()
        body = json.loads(request["body"])
        status = 200 if body.get("new_state") == "failed" else 403
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": json.dumps({"task_id": "staging.deploy"}).encode()})

    middleware = ManualInterventionMiddleware(airflow)
    path = "/api/v2/dags/release__orders/dagRuns/r5/taskInstances/staging.deploy"
    _call(middleware, "PATCH", path, {"new_state": "failed", "note": "stuck"}, 200, {})
    _call(middleware, "PATCH", path, {"new_state": "success"}, 403, {})
    [row] = configured.events(run_id="r5")
    assert row.kind == MANUAL_INTERVENTION and row.actor == "unknown"  # no token: nobody to name
    assert (row.environment, row.stage, row.task_id) == ("staging", "deploy", "staging.deploy")
    assert row.payload["action"] == "mark_task" and row.payload["new_state"] == "failed"
    assert row.payload["note"] == "stuck" and row.payload["via"] == "ui"


def test_the_evidence_record_groups_a_runs_events(configured):
    store = configured
    common = {"dag_id": "release__orders", "run_id": "r7", "service": "orders"}
    store.append(
        RELEASE_REQUESTED, actor="ci", payload={"trigger": "rest", "version": "1.2.0", "commit": "abc"}, **common
    )
    store.append(
        AWS_ACTION,
        environment="staging",
        stage="deploy",
        task_id="staging.deploy",
        try_number=1,
        payload={"state": "failed", "error": "HEALTH_CONSTRAINTS", "result": None},
        **common,
    )
    store.append(
        ROLLBACK,
        environment="staging",
        stage="decide_outcome",
        task_id="staging.decide_outcome",
        payload={"phase": "started", "reason": "the deployment failed", "rolls_back": ["rollback_deployment"]},
        **common,
    )
    store.append(
        RELEASE_FINISHED,
        payload={"state": "failed", "duration_seconds": 12.5, "outcomes": {"staging": {"outcome": "rolled_back"}}},
        **common,
    )
    record = evidence(store.events(run_id="r7"))
    assert record["requested"]["by"] == "ci" and record["requested"]["version"] == "1.2.0"
    assert [a["stage"] for a in record["aws_actions"]] == ["deploy"]
    assert record["rollbacks"][0]["payload"]["reason"] == "the deployment failed"
    assert record["finished"]["outcomes"] == {"staging": {"outcome": "rolled_back"}}
    assert record["events"] == {"count": 4, "first_seq": 1, "last_seq": 4}
    text = render_text(record)
    assert "Release r7 of orders (release__orders)" in text
    assert "requested by ci via rest" in text and "finished failed" in text and "staging: rolled_back" in text
    assert "rolling back rollback_deployment: the deployment failed" in text
    assert "failed: no resource; 0 AWS calls; error: HEALTH_CONSTRAINTS" in text


def test_an_event_the_store_refuses_is_kept_in_the_spool(configured, spool_path):
    from sqlalchemy import text

    with configured.engine.begin() as conn:  # a store broken by hand: tables there, chain head gone
        conn.execute(text("DELETE FROM audit_chain_head"))
    event_id = uuid.uuid4()
    assert recorder.record(ROLLBACK, event_id=event_id, dag_id="release__orders", run_id="r11")
    [kept] = [json.loads(line) for line in spool_path.read_text().splitlines()]
    assert kept["event_id"] == str(event_id) and kept["kind"] == ROLLBACK and kept["service"] == "orders"
