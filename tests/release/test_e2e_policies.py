"""End to end through the REST API: the runtime policies of a release, in real Airflow.

The services are tests/airflow_dags/policy_services/*.yaml (one production environment each, seeded
into the sandbox): N-of-M approvals with separation of duties, an approval timeout that rejects and
notifies, the queued and superseded execution modes, a freeze with its emergency override, and a
deployment window that opens a minute later. Every answer goes through Airflow's HITL endpoint as a
person would give it, and Airflow itself enforces who may answer (HTTP 403).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from shipflow.runtime.rest import AirflowApiError
from shipflow.sandbox.seed import bundle, bundle_key, seed
from shipflow.spec.loader import load_specs

from .test_e2e_release import alerts, finish, live_key, states

pytestmark = pytest.mark.slow

COMMIT = "4f2a9c1"


@pytest.fixture
def policies(sandbox, airflow_stack):
    """The sandbox seeded for every policy service the live stack builds (including ones a test added)."""
    sandbox.set_lifecycle("time", service="codedeploy", seconds=0.5)
    specs, errors = load_specs(airflow_stack.dags_folder / "policy_services")
    assert not errors, errors
    seed(sandbox, specs=specs)
    return sandbox


def upload(sandbox, service: str, version: str) -> None:
    sandbox.boto3("s3").put_object(
        Bucket="shipflow-artifacts", Key=bundle_key(service, version), Body=bundle(service, version)
    )


def trigger(airflow_stack, user: str, service: str, version: str, **conf) -> tuple[str, str]:
    client = airflow_stack.client(user)
    dag_id = f"release__{service}"
    client.wait_for_dag(dag_id, timeout=90)
    run_id = f"{version}-{time.time_ns()}"
    client.trigger_dag(dag_id, conf={"version": version, "commit": COMMIT, **conf}, run_id=run_id)
    return dag_id, run_id


def pending(airflow_stack, dag_id: str, run_id: str, task_id: str) -> dict:
    """The step's open request, once its task waits (deferred) for answers."""
    ci = airflow_stack.client("ci")
    detail = ci.wait_for_hitl(dag_id, run_id, task_id, timeout=120)
    ci.wait_for_task_state(dag_id, run_id, task_id, {"deferred"}, timeout=60)
    return detail


def assigned(detail: dict) -> list[str]:
    return sorted(user["name"] for user in detail.get("assigned_users") or [])


def refused(airflow_stack, user: str, dag_id: str, run_id: str, task_id: str) -> int:
    with pytest.raises(AirflowApiError) as exc:
        airflow_stack.client(user).answer_hitl(dag_id, run_id, task_id, ["Approve"], {"comment": "me"})
    return exc.value.status


def test_two_of_three_approve_and_the_one_who_triggered_may_not(airflow_stack, policies):
    service, step = "approval-quorum", "production.approve_release"
    upload(policies, service, "1.0.1")
    # approver1 is one of the three approvers (release-managers + admin), and triggers the release.
    dag_id, run_id = trigger(airflow_stack, "approver1", service, "1.0.1")
    first = pending(airflow_stack, dag_id, run_id, step)
    assert assigned(first) == ["admin", "approver2"]
    assert refused(airflow_stack, "approver1", dag_id, run_id, step) == 403  # separation of duties
    assert refused(airflow_stack, "viewer", dag_id, run_id, step) == 403

    airflow_stack.client("approver2").answer_hitl(dag_id, run_id, step, ["Approve"], {"comment": "diff reviewed"})
    # One approval of two: asked again. Airflow keeps the request's first assignees, so it accepts a
    # second answer from approver2; Shipflow does not count the same person twice and asks again.
    pending(airflow_stack, dag_id, run_id, step)
    airflow_stack.client("approver2").answer_hitl(dag_id, run_id, step, ["Approve"], {"comment": "again"})
    pending(airflow_stack, dag_id, run_id, step)
    assert states(airflow_stack.client("ci"), dag_id, run_id)["production.deploy"] in (None, "none")

    airflow_stack.client("admin").answer_hitl(dag_id, run_id, step, ["Approve"], {"comment": ""})
    ci = airflow_stack.client("ci")
    assert finish(ci, dag_id, run_id)["state"] == "success"
    record = ci.xcom(dag_id, run_id, step, key="approval")
    assert record["decision"] == "approved" and record["triggered_by"] == "approver1"
    assert [(a["user"], a["choice"], a["comment"]) for a in record["approvals"]] == [
        ("approver2", "Approve", "diff reviewed"),
        ("admin", "Approve", None),
    ]
    assert all(datetime.fromisoformat(a["at"]) for a in record["approvals"])
    assert live_key(policies, service, "production") == bundle_key(service, "1.0.1")


def test_an_unanswered_approval_times_out_rejects_and_notifies(airflow_stack, policies):
    service = "approval-timeout"  # timeout: 8s
    upload(policies, service, "1.0.1")
    alerts(policies)  # drain older alerts
    dag_id, run_id = trigger(airflow_stack, "ci", service, "1.0.1")
    ci = airflow_stack.client("ci")
    run = finish(ci, dag_id, run_id, timeout=120)
    done = states(ci, dag_id, run_id)
    assert run["state"] == "failed" and done["production.deploy"] == "skipped", done
    record = ci.xcom(dag_id, run_id, "production.approve_release", key="approval")
    assert record["decision"] == "timed_out" and record["approvals"] == []
    outcome = ci.xcom(dag_id, run_id, "production.decide_outcome", key="outcome")
    assert outcome["outcome"] == "rejected" and "timeout" in outcome["reason"]
    messages = alerts(policies)
    assert any("nobody approved within 0:00:08" in m for m in messages), messages
    assert any("release of approval-timeout failed in production" in m for m in messages), messages


def test_queued_mode_starts_a_later_release_only_when_the_earlier_one_ends(airflow_stack, policies):
    service, step = "approval-quorum", "production.approve_release"
    for version in ("1.0.2", "1.0.3"):
        upload(policies, service, version)
    dag_id, first = trigger(airflow_stack, "ci", service, "1.0.2")
    pending(airflow_stack, dag_id, first, step)
    _, second = trigger(airflow_stack, "ci", service, "1.0.3")
    ci = airflow_stack.client("ci")
    time.sleep(3)  # a few scheduler loops: the later run must stay queued behind the waiting one
    assert ci.get_dag_run(dag_id, second)["state"] == "queued"

    airflow_stack.client("approver2").answer_hitl(dag_id, first, step, ["Reject"], {"comment": "not today"})
    assert finish(ci, dag_id, first)["state"] == "failed"
    outcome = ci.xcom(dag_id, first, "production.decide_outcome", key="outcome")
    assert outcome["outcome"] == "rejected" and "rejected by approver2" in outcome["reason"]
    # Now the later release runs; end it the same way.
    pending(airflow_stack, dag_id, second, step)
    airflow_stack.client("admin").answer_hitl(dag_id, second, step, ["Reject"], {"comment": ""})
    assert finish(ci, dag_id, second)["state"] == "failed"


def test_a_newer_release_supersedes_one_waiting_for_its_approval(airflow_stack, policies):
    service, step = "superseded-release", "production.approve_release"
    for version in ("1.0.1", "1.0.2"):
        upload(policies, service, version)
    dag_id, older = trigger(airflow_stack, "ci", service, "1.0.1")
    pending(airflow_stack, dag_id, older, step)
    _, newer = trigger(airflow_stack, "ci", service, "1.0.2")

    ci = airflow_stack.client("ci")
    run = finish(ci, dag_id, older, timeout=60)
    done = states(ci, dag_id, older)
    assert run["state"] == "success", done  # superseded is not a failure
    assert done[step] == "success" and done["production.deploy"] == "skipped"
    assert done["production.promote"] == "skipped" and done["production.fail_release"] == "skipped"
    outcome = ci.xcom(dag_id, older, "production.decide_outcome", key="outcome")
    assert outcome["outcome"] == "superseded" and outcome["rolled_back"] == []
    assert ci.xcom(dag_id, older, step, key="approval")["decision"] == "superseded"
    closed = ci.hitl_detail(dag_id, older, step)
    assert closed["response_received"] and closed["chosen_options"] == ["Reject"]
    assert "superseded" in closed["params_input"]["comment"]

    pending(airflow_stack, dag_id, newer, step)
    airflow_stack.client("approver1").answer_hitl(dag_id, newer, step, ["Approve"], {"comment": ""})
    assert finish(ci, dag_id, newer)["state"] == "success"
    deployments = policies.boto3("codedeploy").list_deployments(
        applicationName=service, deploymentGroupName=f"{service}-production"
    )["deployments"]
    described = [
        policies.boto3("codedeploy").get_deployment(deploymentId=d)["deploymentInfo"].get("description", "")
        for d in deployments
    ]
    assert not any("1.0.1" in d for d in described), described  # the superseded release never deployed
    assert live_key(policies, service, "production") == bundle_key(service, "1.0.2")


FROZEN_SPEC = """\
# Written by tests/release/test_e2e_policies.py: frozen from yesterday for a month.
service: frozen-release
owners: [role:release-managers]
artifact:
  bucket: shipflow-artifacts
  key: "frozen-release/frozen-release-{{version}}.zip"
notifications:
  sns_topic_arn: arn:aws:sns:us-east-1:123456789012:shipflow-alerts
  on: [failure, window_override]
environments:
  - name: production
    pre_checks:
      release_inputs: false
    deployment_window:
      timezone: UTC
      freezes:
        - {{start: {start}, end: {end}, reason: Test freeze}}
    deployment:
      application: frozen-release
      deployment_group: frozen-release-production
      config: CodeDeployDefault.AllAtOnce
      compute_platform: Server
    post_checks:
      bake_time: 10s
      alarms: [frozen-release-production-errors]
    rollback:
      runbook_url: https://runbooks.example.com/frozen-release
"""


def add_service(airflow_stack, sandbox, name: str, text: str) -> None:
    """Add a policy service to the live stack (its DAG appears on the next parse) and seed it."""
    (airflow_stack.dags_folder / "policy_services" / f"{name}.yaml").write_text(text)
    specs, errors = load_specs(airflow_stack.dags_folder / "policy_services")
    assert not errors, errors
    sandbox.set_lifecycle("time", service="codedeploy", seconds=0.5)
    seed(sandbox, specs=specs)


@pytest.fixture
def frozen(airflow_stack, sandbox):
    today = datetime.now(UTC).date()
    ends = today + timedelta(days=30)
    add_service(airflow_stack, sandbox, "frozen-release", FROZEN_SPEC.format(start=today - timedelta(days=1), end=ends))
    return sandbox, ends + timedelta(days=1)


def test_a_freeze_holds_a_release_and_an_approved_emergency_override_lets_one_through(airflow_stack, frozen):
    policies, thaw = frozen
    service, gate = "frozen-release", "production.check_deployment_window"
    for version in ("1.0.1", "1.0.2"):
        upload(policies, service, version)
    alerts(policies)
    ci = airflow_stack.client("ci")
    dag_id, held = trigger(airflow_stack, "ci", service, "1.0.1")
    ci.wait_for_task_state(dag_id, held, gate, {"deferred"}, timeout=120)
    log = ci.task_log(dag_id, held, gate)
    assert "frozen: Test freeze" in log and f"waiting in the triggerer until {thaw.isoformat()}T00:00:00+00:00" in log
    # A person ends the held release (it would wait for a month); the next one may then start.
    ci._call("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{held}", json={"state": "failed"})

    _, urgent = trigger(
        airflow_stack, "ci", service, "1.0.2", emergency=True, emergency_reason="INC-7: checkout is down"
    )
    request = pending(airflow_stack, dag_id, urgent, gate)
    assert assigned(request) == ["approver1", "approver2"]  # the owners (release-managers); not ci
    assert "INC-7: checkout is down" in request["body"]
    assert refused(airflow_stack, "ci", dag_id, urgent, gate) == 403
    airflow_stack.client("approver1").answer_hitl(dag_id, urgent, gate, ["Approve"], {"comment": "go"})
    assert finish(ci, dag_id, urgent)["state"] == "success"
    evidence = ci.xcom(dag_id, urgent, gate)
    assert evidence["open"] is False and evidence["override"]["approved_by"] == "approver1"
    assert evidence["override"]["reason"] == "INC-7: checkout is down" and "frozen: Test freeze" in evidence["text"]
    assert any("Override approved by approver1" in m for m in alerts(policies))
    assert live_key(policies, service, "production") == bundle_key(service, "1.0.2")


def test_an_emergency_release_needs_a_reason(airflow_stack, frozen):
    ci = airflow_stack.client("ci")
    dag_id, run_id = trigger(airflow_stack, "ci", "frozen-release", "1.0.3", emergency=True)
    assert finish(ci, dag_id, run_id)["state"] == "failed"
    assert states(ci, dag_id, run_id)["check_release_request"] == "failed"
    assert "emergency_reason must say why" in ci.task_log(dag_id, run_id, "check_release_request")


WINDOW_SPEC = """\
# Written by tests/release/test_e2e_policies.py: a window that opens {opens}.
service: window-soon
owners: [role:release-managers]
artifact:
  bucket: shipflow-artifacts
  key: "window-soon/window-soon-{{version}}.zip"
environments:
  - name: production
    pre_checks:
      release_inputs: false
    deployment_window:
      timezone: UTC
      windows:
        - {{days: [{day}], start: "{start}", end: "{end}"}}
    deployment:
      application: window-soon
      deployment_group: window-soon-production
      config: CodeDeployDefault.AllAtOnce
      compute_platform: Server
    post_checks:
      bake_time: 10s
      alarms: [window-soon-production-errors]
    rollback:
      runbook_url: https://runbooks.example.com/window-soon
"""


def test_a_closed_window_defers_the_stage_until_it_opens(airflow_stack, sandbox):
    now = datetime.now(UTC)
    opens = (now + timedelta(seconds=45)).replace(second=0, microsecond=0) + timedelta(minutes=1)
    if opens.date() != now.date() or opens.hour == 23:
        pytest.skip("the window must open and close on today's date (UTC); not within the last hour of the day")
    spec = WINDOW_SPEC.format(
        opens=opens.isoformat(),
        day=opens.strftime("%a").lower(),
        start=opens.strftime("%H:%M"),
        end=(opens + timedelta(minutes=30)).strftime("%H:%M"),
    )
    add_service(airflow_stack, sandbox, "window-soon", spec)
    upload(sandbox, "window-soon", "1.0.1")

    ci = airflow_stack.client("ci")
    dag_id, run_id = trigger(airflow_stack, "ci", "window-soon", "1.0.1")
    gate = "production.check_deployment_window"
    ci.wait_for_task_state(dag_id, run_id, gate, {"deferred"}, timeout=120)
    assert f"waiting in the triggerer until {opens.isoformat()}" in ci.task_log(dag_id, run_id, gate)
    assert states(ci, dag_id, run_id)["production.deploy"] in (None, "none")
    assert finish(ci, dag_id, run_id, timeout=240)["state"] == "success"
    evidence = ci.xcom(dag_id, run_id, gate)
    started = datetime.fromisoformat(ci.task_instance(dag_id, run_id, "production.deploy")["start_date"])
    assert started >= opens and evidence["open"] is True and evidence["waited_s"] > 0
