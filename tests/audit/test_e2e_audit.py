"""End to end: real releases in a live Airflow leave a complete, verifiable evidence record.

A release of storefront-web (CI triggers it through REST, approver1 approves production, the
production deployment fails and is rolled back) is read back with ``shipflow audit show``: who
asked, every gate with its evidence, the approval, each AWS action with its request ids, the
rollback with its reason, how it ended. ``shipflow audit verify`` passes, and an edited copy of the
store fails it, naming the event. People stepping in through the REST API (marking a task failed,
clearing a task, failing a run) are recorded with their user.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import upload

pytestmark = pytest.mark.slow

WEB = "storefront-web"  # ECS blue/green, a stack per environment, production approval
WORKER = "inventory-worker"


def shipflow(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipflow.cli", "audit", *args, "--url", url],
        capture_output=True,
        text=True,
        timeout=120,
    )


def audit_url(airflow_stack) -> str:
    return airflow_stack.airflow.env["SHIPFLOW_AUDIT_URL"]


def show(airflow_stack, run_id: str) -> dict:
    done = shipflow("show", run_id, "--json", url=audit_url(airflow_stack))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def wait_for_event(airflow_stack, run_id: str, kind: str, count: int = 1, timeout: float = 30) -> dict:
    """The run's record once it holds ``count`` events of ``kind`` (the scheduler records a run's end
    as it commits it, so a client may see the run finished a moment before)."""
    deadline = time.monotonic() + timeout
    while True:
        record = show(airflow_stack, run_id)
        found = [t for t in record["timeline"] if t["kind"] == kind]
        if len(found) >= count or time.monotonic() > deadline:
            return record
        time.sleep(1)


def trigger(airflow_stack, service: str, version: str):
    ci = airflow_stack.client("ci")
    dag_id = f"release__{service}"
    ci.wait_for_dag(dag_id, timeout=90)
    run_id = f"audit-{version}-{time.time_ns()}"
    ci.trigger_dag(dag_id, conf={"version": version, "commit": "9e1b7c2", "change_reference": "CHG-7"}, run_id=run_id)
    return ci, dag_id, run_id


def test_release_with_approval_and_rollback_leaves_a_complete_verifiable_record(airflow_stack, seeded, tmp_path):
    upload(seeded, WEB, "3.1.0")
    seeded.add_fault("fail", "codedeploy", target=f"{WEB}-production", params={"code": "HEALTH_CONSTRAINTS"})
    ci, dag_id, run_id = trigger(airflow_stack, WEB, "3.1.0")
    ci.wait_for_hitl(dag_id, run_id, "production.approve_release", timeout=240)
    time.sleep(2)  # FIELD-NOTES: answering within ~0.5 s of the request can fail the task (apache/airflow #72716)
    airflow_stack.client("approver1").answer_hitl(
        dag_id, run_id, "production.approve_release", ["Approve"], params_input={"comment": "CAB-42 ok"}
    )
    run = ci.wait_for_dag_run(dag_id, run_id, timeout=300)
    assert run["state"] == "failed"
    wait_for_event(airflow_stack, run_id, "release_finished")
    # A task's state reaches Airflow just before its listener records it: wait for the last step too.
    record = wait_for_event(airflow_stack, run_id, "rollback", count=2)

    assert record["service"] == WEB and record["dag_id"] == dag_id
    requested = record["requested"]
    assert requested["by"] == "ci" and requested["trigger"] == "rest"
    assert requested["version"] == "3.1.0" and requested["commit"] == "9e1b7c2"

    [approval] = [a for a in record["approvals"] if a["stage"] == "approve_release"]
    assert approval["environment"] == "production" and approval["actor"] == "approver1"
    assert approval["payload"]["decision"] == "approved" and approval["payload"]["wait_seconds"] >= 2
    assert "CAB-42 ok" in json.dumps(approval["payload"]["approval"])

    gates = {(g["environment"], g["stage"]): g["payload"] for g in record["gates"]}
    assert gates[("staging", "check_alarms")]["passed"] is True
    assert gates[("staging", "watch_bake")]["passed"] is True
    assert gates[("production", "check_alarms")]["passed"] is True

    actions = {(a["environment"], a["stage"]): a["payload"] for a in record["aws_actions"]}
    assert actions[("staging", "apply_stack")]["state"] == "success"
    staging_deploy = actions[("staging", "deploy")]
    assert staging_deploy["result"]["deployment_id"] and staging_deploy["result"]["aws_calls"]
    assert all(c["request_id"] for c in staging_deploy["result"]["aws_calls"])
    assert actions[("production", "apply_stack")]["state"] == "success"
    failed = actions[("production", "deploy")]
    assert failed["state"] == "failed" and "HEALTH_CONSTRAINTS" in failed["error"]
    assert actions[("production", "rollback_deployment")]["state"] == "success"

    phases = {r["payload"]["phase"]: r["payload"] for r in record["rollbacks"] if r["environment"] == "production"}
    assert phases["started"]["reason"] == "the deployment failed"
    assert "rollback_deployment" in phases["started"]["rolls_back"]
    assert phases["verified"]["verified"] is True

    finished = record["finished"]
    assert finished["state"] == "failed"
    assert finished["outcomes"]["staging"]["outcome"] == "promoted"
    assert finished["outcomes"]["production"]["rolled_back"]
    # The timeline is the chain's order: the request first.
    kinds = [t["kind"] for t in record["timeline"]]
    assert kinds[0] == "release_requested" and kinds.count("release_finished") == 1

    text = shipflow("show", run_id, url=audit_url(airflow_stack))
    assert text.returncode == 0, text.stderr
    assert f"Release {run_id} of {WEB}" in text.stdout and "requested by ci via rest" in text.stdout
    assert "approved by approver1" in text.stdout and "rolling back" in text.stdout

    # The same record is the run page's "Audit evidence" tab, for anyone who may read the DAG.
    plugins = airflow_stack.client("admin").get("/api/v2/plugins")["plugins"]
    [view] = [v for p in plugins if p["name"] == "shipflow" for v in p["external_views"]]
    assert view["destination"] == "dag_run" and view["href"] == "shipflow/audit/runs/{DAG_ID}/{RUN_ID}"
    page = airflow_stack.client("viewer").get(f"/shipflow/audit/runs/{dag_id}/{run_id}", format="json")
    assert page["timeline"] == record["timeline"]
    anonymous = requests.get(f"{airflow_stack.base_url}/shipflow/audit/runs/{dag_id}/{run_id}", timeout=30)
    assert anonymous.status_code == 401

    verified = shipflow("verify", url=audit_url(airflow_stack))
    assert verified.returncode == 0 and "chain intact" in verified.stdout, verified.stdout + verified.stderr

    # Someone edits the production rollback's reason in a copy of the store: verify names the event.
    db = Path(audit_url(airflow_stack).removeprefix("sqlite:///"))
    copy = tmp_path / "edited.db"
    shutil.copy(db, copy)
    seq = next(r["seq"] for r in record["rollbacks"] if r["payload"]["phase"] == "started")
    with sqlite3.connect(copy) as conn:
        conn.execute("UPDATE audit_event SET payload = json_set(payload, '$.reason', 'planned') WHERE seq = ?", (seq,))
    broken = shipflow("verify", url=f"sqlite:///{copy}")
    assert broken.returncode == 1 and f"seq {seq}" in broken.stdout, broken.stdout
    # ... and deleting one instead shows as a gap.
    shutil.copy(db, copy)
    with sqlite3.connect(copy) as conn:
        conn.execute("DELETE FROM audit_event WHERE seq = ?", (seq,))
    gap = shipflow("verify", url=f"sqlite:///{copy}")
    assert gap.returncode == 1 and "deleted" in gap.stdout, gap.stdout


def test_manual_interventions_through_the_rest_api_are_recorded_with_the_user(airflow_stack, seeded):
    upload(seeded, WORKER, "1.9.0")
    ci, dag_id, run_id = trigger(airflow_stack, WORKER, "1.9.0")
    assert ci.wait_for_dag_run(dag_id, run_id, timeout=240)["state"] == "success"
    admin = airflow_stack.client("admin")
    admin.set_task_state(dag_id, run_id, "production.promote", "failed", note="promoted by mistake")
    admin.clear_tasks(dag_id, run_id, ["production.promote"])
    ci.wait_for_dag_run(dag_id, run_id, timeout=120)
    admin.set_dag_run_state(dag_id, run_id, "failed")
    # A dry run changes nothing and is not an intervention.
    admin._call(
        "POST",
        f"/api/v2/dags/{dag_id}/clearTaskInstances",
        json={"dag_run_id": run_id, "task_ids": ["production.promote"], "dry_run": True},
    )

    record = wait_for_event(airflow_stack, run_id, "manual_intervention", count=3)
    interventions = [(i["actor"], i["payload"]["action"], i["payload"]) for i in record["interventions"]]
    assert [(who, action) for who, action, _ in interventions] == [
        ("admin", "mark_task"),
        ("admin", "clear_tasks"),
        ("admin", "mark_run"),
    ]
    marked, cleared, failed = (p for _, _, p in interventions)
    assert marked["new_state"] == "failed" and marked["task"] == "production.promote"
    assert marked["note"] == "promoted by mistake" and marked["via"] == "api"
    assert cleared["tasks"] == ["production.promote"]
    assert [a["task_id"] for a in cleared["affected"]] == ["production.promote"]
    assert failed["state"] == "failed"
    [mark_event] = [i for i in record["interventions"] if i["payload"]["action"] == "mark_task"]
    assert mark_event["environment"] == "production" and mark_event["stage"] == "promote"
    # The run failed by hand ends the release (again): its end is recorded as failed.
    record = wait_for_event(airflow_stack, run_id, "release_finished", count=2)
    ends = [t for t in record["timeline"] if t["kind"] == "release_finished"]
    assert "run failed" in ends[-1]["summary"]
