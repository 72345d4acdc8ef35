"""End to end: the example services' release DAGs in real Airflow against the seeded sandbox.

Each scenario triggers a release through the REST API (as CI would), answers approvals as an
approver, and checks the outcome in Airflow and in AWS: a clean release through every environment;
a failed deployment, an alarm during the bake and a failed metric gate each rolling back; and a
rollback that itself fails, reaching the manual fallback that a person confirms. The alerts each
one sends are read back from the SQS queue subscribed to the services' SNS topic.
"""

from __future__ import annotations

import time

import pytest

from shipflow.runtime.rest import AirflowApiError
from shipflow.sandbox.seed import bundle_key
from tests.conftest import upload

pytestmark = pytest.mark.slow

WORKER = "inventory-worker"  # Server, in-place, no infrastructure, no approval
WEB = "storefront-web"  # ECS blue/green with an infrastructure stage and a production approval


def release(airflow_stack, service: str, version: str, **conf):
    ci = airflow_stack.client("ci")
    dag_id = f"release__{service}"
    ci.wait_for_dag(dag_id, timeout=90)
    run_id = f"{version}-{time.time_ns()}"
    ci.trigger_dag(
        dag_id, conf={"version": version, "commit": "4f2a9c1", "change_reference": "CHG-1", **conf}, run_id=run_id
    )
    return ci, dag_id, run_id


def states(ci, dag_id: str, run_id: str) -> dict[str, str]:
    return {ti["task_id"]: ti["state"] for ti in ci.task_instances(dag_id, run_id)}


def finish(ci, dag_id: str, run_id: str, timeout: float = 240) -> dict:
    """The finished run; on a timeout, fail with every task's state (where it got stuck)."""
    try:
        return ci.wait_for_dag_run(dag_id, run_id, timeout=timeout)
    except TimeoutError as exc:
        pytest.fail(f"{exc}\ntask states: {states(ci, dag_id, run_id)}")


def alert_envelopes(sandbox) -> list[dict]:
    """The SNS envelopes delivered so far to the seeded topic's SQS inbox (each is read once)."""
    import json

    sqs = sandbox.boto3("sqs")
    url = sqs.get_queue_url(QueueName="shipflow-alerts-inbox")["QueueUrl"]
    found = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        found += [json.loads(m["Body"]) for m in batch]
    return found


def alerts(sandbox) -> list[str]:
    """The alert messages delivered so far to the seeded SNS topic's SQS inbox."""
    return [envelope.get("Message", "") for envelope in alert_envelopes(sandbox)]


def release_alerts(sandbox) -> dict[str, list[str]]:
    """Shipflow's release alerts delivered so far, by event (their ``event`` attribute); alarm
    notifications, which share the topic, are left out."""
    found: dict[str, list[str]] = {}
    for envelope in alert_envelopes(sandbox):
        event = (envelope.get("MessageAttributes") or {}).get("event", {}).get("Value")
        if event:
            found.setdefault(event, []).append(envelope["Message"])
    return found


def live_key(sandbox, service: str, env: str) -> str:
    codedeploy = sandbox.boto3("codedeploy")
    group = codedeploy.get_deployment_group(applicationName=service, deploymentGroupName=f"{service}-{env}")
    deployment = group["deploymentGroupInfo"]["lastSuccessfulDeployment"]["deploymentId"]
    info = codedeploy.get_deployment(deploymentId=deployment)["deploymentInfo"]
    return info["revision"]["s3Location"]["key"]


def test_clean_release_promotes_through_every_environment(airflow_stack, seeded):
    upload(seeded, WORKER, "1.1.0")
    ci, dag_id, run_id = release(airflow_stack, WORKER, "1.1.0")
    run = finish(ci, dag_id, run_id)
    done = states(ci, dag_id, run_id)
    assert run["state"] == "success", done
    for env in ("staging", "production"):
        assert done[f"{env}.deploy"] == "success" and done[f"{env}.promote"] == "success"
        assert done[f"{env}.rollback_deployment"] == "skipped" and done[f"{env}.fail_release"] == "skipped"
        assert live_key(seeded, WORKER, env) == bundle_key(WORKER, "1.1.0")
    assert release_alerts(seeded) == {}  # nothing to tell anyone


def test_failed_deployment_rolls_back_and_fails_the_run_with_the_reason(airflow_stack, seeded):
    upload(seeded, WORKER, "1.2.0")
    seeded.add_fault("fail", "codedeploy", target=f"{WORKER}-staging", params={"code": "HEALTH_CONSTRAINTS"})
    ci, dag_id, run_id = release(airflow_stack, WORKER, "1.2.0")
    run = finish(ci, dag_id, run_id)
    done = states(ci, dag_id, run_id)
    assert run["state"] == "failed", done
    assert done["staging.deploy"] == "failed"
    assert done["staging.rollback_deployment"] == "success" and done["staging.verify_rollback"] == "success"
    assert done["staging.fail_release"] == "failed" and done["production.enter"] == "skipped"
    # Production was never entered: it neither decides nor fails a second time.
    assert done["production.decide_outcome"] == "skipped" and done["production.fail_release"] == "skipped"
    outcome = ci.xcom(dag_id, run_id, "staging.decide_outcome", key="outcome")
    assert outcome["reason"] == "the deployment failed" and outcome["rolled_back"] == ["rollback_deployment"]
    sent = release_alerts(seeded)
    # The rollback is announced with its reason as it starts; the failure, once it is verified.
    [rollback] = sent["rollback"]
    assert rollback.splitlines()[0] == f"rolling back {WORKER} 1.2.0 in staging: the deployment failed"
    [failure] = sent["failure"]
    assert failure.splitlines()[0] == (
        f"release of {WORKER} failed in staging: the deployment failed; rolled back (rollback_deployment) and verified"
    )
    assert f"Run: {run_id}" in failure.splitlines() and "Version: 1.2.0" in failure.splitlines()
    assert live_key(seeded, WORKER, "staging") == bundle_key(WORKER, "1.0.0")  # the last good revision


def test_alarm_during_bake_rolls_back(airflow_stack, seeded):
    upload(seeded, WORKER, "1.3.0")
    ci, dag_id, run_id = release(airflow_stack, WORKER, "1.3.0")
    ci.wait_for_task_state(dag_id, run_id, "staging.watch_bake", {"running", "deferred"}, timeout=120)
    # The revision turns bad once it serves traffic and the bake has begun.
    seeded.add_fault("unhealthy", "codedeploy", target=bundle_key(WORKER, "1.3.0"), count=None)
    run = finish(ci, dag_id, run_id)
    done = states(ci, dag_id, run_id)
    assert run["state"] == "failed", done
    assert done["staging.deploy"] == "success" and done["staging.watch_bake"] == "failed"
    assert done["staging.rollback_deployment"] == "success" and done["staging.verify_rollback"] == "success"
    outcome = ci.xcom(dag_id, run_id, "staging.decide_outcome", key="outcome")
    assert outcome["reason"] == "an alarm fired during the bake time"
    assert live_key(seeded, WORKER, "staging") == bundle_key(WORKER, "1.0.0")
    [rollback] = release_alerts(seeded)["rollback"]
    lines = rollback.splitlines()
    assert lines[0] == f"rolling back {WORKER} 1.3.0 in staging: an alarm fired during the bake time"
    assert {
        f"Service: {WORKER}",
        "Environment: staging",
        f"Run: {run_id}",
        "Undoing: the deployment (rollback_deployment)",
        "Failed step: watch_bake",
    } <= set(lines)
    assert any(line.startswith("What to do: nothing yet: Shipflow is undoing") for line in lines)


def test_failed_metric_gate_rolls_back(airflow_stack, seeded):
    upload(seeded, WORKER, "1.4.0")
    # Error rate above the metric gate's maximum but below the alarms' threshold: only the gate sees it.
    seeded.add_fault(
        "unhealthy",
        "codedeploy",
        target=bundle_key(WORKER, "1.4.0"),
        count=None,
        params={"error_rate": 3.5, "latency_ms": 150},
    )
    ci, dag_id, run_id = release(airflow_stack, WORKER, "1.4.0")
    run = finish(ci, dag_id, run_id)
    done = states(ci, dag_id, run_id)
    assert run["state"] == "failed", done
    assert done["staging.watch_bake"] == "success" and done["staging.check_service_metrics"] == "failed"
    assert done["staging.rollback_deployment"] == "success"
    outcome = ci.xcom(dag_id, run_id, "staging.decide_outcome", key="outcome")
    assert outcome["reason"] == "the service metrics failed their gate"


def test_failed_rollback_reaches_the_manual_fallback(airflow_stack, seeded):
    upload(seeded, WORKER, "1.5.0")
    # The deployment fails, and so does every rollback deployment after it.
    seeded.add_fault("fail", "codedeploy", target=f"{WORKER}-staging", count=None)
    ci, dag_id, run_id = release(airflow_stack, WORKER, "1.5.0")
    ci.wait_for_hitl(dag_id, run_id, "staging.manual_fallback", timeout=240)
    seeded.clear_faults()
    # The owners (bob and role:inventory-oncall, i.e. approver2) restore it; nobody else may confirm it.
    with pytest.raises(AirflowApiError) as refused:
        airflow_stack.client("admin").answer_hitl(dag_id, run_id, "staging.manual_fallback", ["Environment restored"])
    assert refused.value.status == 403
    airflow_stack.client("approver2").answer_hitl(dag_id, run_id, "staging.manual_fallback", ["Environment restored"])
    run = finish(ci, dag_id, run_id, timeout=120)
    done = states(ci, dag_id, run_id)
    assert run["state"] == "failed", done
    assert done["staging.rollback_deployment"] == "failed" and done["staging.manual_fallback"] == "success"
    sent = release_alerts(seeded)
    [page] = sent["manual_fallback"]  # the owners were paged once, with the runbook
    assert page.splitlines()[0] == f"the automated rollback of {WORKER} 1.5.0 in staging failed: restore it by hand"
    assert f"Runbook: https://runbooks.example.com/{WORKER}" in page.splitlines()
    [alert] = sent["failure"]
    assert alert.splitlines()[0] == (
        f"release of {WORKER} failed in staging: the deployment failed; automated rollback failed "
        "(rollback_deployment); restored by hand (manual fallback)"
    )


def test_release_with_approval_and_stack_change(airflow_stack, seeded):
    upload(seeded, WEB, "2.4.0")
    ci, dag_id, run_id = release(airflow_stack, WEB, "2.4.0")
    ci.wait_for_hitl(dag_id, run_id, "production.approve_release", timeout=240)
    airflow_stack.client("approver1").answer_hitl(dag_id, run_id, "production.approve_release", ["Approve"])
    run = finish(ci, dag_id, run_id)
    done = states(ci, dag_id, run_id)
    assert run["state"] == "success", done
    assert done["staging.apply_stack"] == "success" and done["production.apply_stack"] == "success"
    assert live_key(seeded, WEB, "production") == bundle_key(WEB, "2.4.0")
    # The approvers heard of the request once, with how to answer it; a clean release sends nothing else.
    sent = release_alerts(seeded)
    assert set(sent) == {"approval_pending"}, sent
    [pending] = sent["approval_pending"]
    lines = pending.splitlines()
    assert lines[0] == f"Release {WEB} 2.4.0 to production? waits for 1 approval(s) from: approver1, approver2"
    assert "Triggered by: ci (may not approve it)" in lines
    assert any(f"shipflow approve {WEB} --env production --run {run_id}" in line for line in lines)
    assert any(line.startswith("Open: ") and line.endswith("/required_actions?map_index=-1") for line in lines)
