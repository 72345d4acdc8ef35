"""A live local Airflow: DAGs run end to end through the REST API, with roles enforced.

Drives the session's ``airflow_stack`` (tests/conftest.py) from the outside, as CI and approvers do.
"""

from __future__ import annotations

import pytest

from shipflow.runtime.local import AirflowStartError, LocalAirflow, free_port
from shipflow.runtime.rest import AirflowApiError, AirflowClient

pytestmark = pytest.mark.slow


def test_every_component_reports_healthy(airflow_stack):
    assert airflow_stack.airflow.is_running
    health = airflow_stack.client("viewer").health()
    assert {name: health[name]["status"] for name in ("metadatabase", "scheduler", "triggerer", "dag_processor")} == {
        "metadatabase": "healthy",
        "scheduler": "healthy",
        "triggerer": "healthy",
        "dag_processor": "healthy",
    }


def test_ci_triggers_a_dag_and_its_task_runs(airflow_stack, sandbox_process):
    ci = airflow_stack.client("ci")
    ci.wait_for_dag("runtime_smoke")

    run = ci.trigger_dag("runtime_smoke", conf={"name": "shipflow"}, run_id="smoke-1", note="from CI")
    assert (run["dag_run_id"], run["state"], run["note"]) == ("smoke-1", "queued", "from CI")
    run = ci.wait_for_dag_run("runtime_smoke", "smoke-1", timeout=60)

    assert run["state"] == "success"
    assert run["conf"] == {"name": "shipflow"}
    assert [(ti["task_id"], ti["state"]) for ti in ci.task_instances("runtime_smoke", "smoke-1")] == [
        ("echo", "success")
    ]
    # The task saw the run's conf and the sandbox connection that LocalAirflow passed to every process.
    assert ci.xcom("runtime_smoke", "smoke-1", "echo") == {
        "name": "shipflow",
        "sandbox_endpoint": sandbox_process.endpoint,
    }
    assert "runtime_smoke says hello to shipflow" in ci.task_log("runtime_smoke", "smoke-1", "echo")


def test_a_run_id_is_used_once(airflow_stack):
    ci = airflow_stack.client("ci")
    ci.wait_for_dag("runtime_smoke")
    ci.trigger_dag("runtime_smoke", run_id="smoke-twice")
    with pytest.raises(AirflowApiError) as refused:
        ci.trigger_dag("runtime_smoke", run_id="smoke-twice")
    assert refused.value.status == 409
    ci.wait_for_dag_run("runtime_smoke", "smoke-twice", timeout=60)


def test_viewer_cannot_trigger(airflow_stack):
    viewer = airflow_stack.client("viewer")
    viewer.wait_for_dag("runtime_smoke")  # a viewer may read the DAG...
    with pytest.raises(AirflowApiError) as refused:  # ...but not run it
        viewer.trigger_dag("runtime_smoke", run_id="viewer-attempt")
    assert refused.value.status == 403
    assert "POST /api/v2/dags/runtime_smoke/dagRuns -> HTTP 403" in str(refused.value)
    with pytest.raises(AirflowApiError, match="HTTP 404"):
        airflow_stack.client("ci").get_dag_run("runtime_smoke", "viewer-attempt")


def test_bad_credentials_give_a_clear_error(airflow_stack):
    with pytest.raises(AirflowApiError) as refused:
        AirflowClient.login(airflow_stack.base_url, "ci", "not-the-password")
    assert refused.value.status == 401
    assert str(refused.value) == "POST /auth/token -> HTTP 401: Invalid credentials"


def test_approver_answers_a_pending_approval(airflow_stack):
    ci, approver = airflow_stack.client("ci"), airflow_stack.client("approver1")
    ci.wait_for_dag("runtime_approval")
    ci.trigger_dag("runtime_approval", run_id="approval-1")

    pending = approver.wait_for_hitl("runtime_approval", "approval-1", "approve")
    assert pending["options"] == ["Approve", "Reject"]
    assert ci.task_instance("runtime_approval", "approval-1", "approve")["state"] == "awaiting_input"
    with pytest.raises(AirflowApiError) as refused:  # only assigned users may answer
        ci.answer_hitl("runtime_approval", "approval-1", "approve", ["Approve"])
    assert refused.value.status == 403

    answer = approver.answer_hitl("runtime_approval", "approval-1", "approve", ["Approve"])
    assert answer["chosen_options"] == ["Approve"]
    assert answer["responded_by"]["name"] == "approver1"
    assert ci.wait_for_dag_run("runtime_approval", "approval-1", timeout=60)["state"] == "success"
    assert ci.xcom("runtime_approval", "approval-1", "release") == "released"
    assert approver.hitl_details("runtime_approval", "approval-1") == []


def test_a_broken_dag_file_shows_up_as_an_import_error(airflow_stack):
    ci = airflow_stack.client("ci")
    # Safe mode parses only files that mention both "airflow" and "dag", as a real DAG file does.
    source = "from airflow.sdk import dag\nimport shipflow_no_such_module\n"
    path = airflow_stack.add_dag_file("runtime_broken.py", source)
    try:
        error = ci.wait_for_import_error("runtime_broken.py", timeout=30)
    finally:
        path.unlink()
    assert error["bundle_name"] == "dags-folder"
    assert "ModuleNotFoundError: No module named 'shipflow_no_such_module'" in error["stack_trace"]


def test_log_tail_shows_what_a_component_wrote(airflow_stack):
    # The session's stack has run many tasks by now: compare with the file, whatever its length.
    # The scheduler keeps appending, so the tail (read first) must appear whole in the file read after.
    tail = airflow_stack.airflow.log_tail("scheduler", lines=5)
    written = (airflow_stack.airflow.logs_folder / "scheduler.log").read_text(errors="replace")
    assert "Starting the scheduler" in written
    assert len(tail.splitlines()) == 5 and tail in written
    assert airflow_stack.airflow.log_tail("nonexistent").startswith("(no log:")


def test_start_refuses_a_port_already_serving(airflow_stack, tmp_path):
    # Otherwise the health check would be answered by the other Airflow and pass.
    other = LocalAirflow(tmp_path / "home", tmp_path / "dags", airflow_stack.airflow.port)
    with pytest.raises(AirflowStartError, match=f"port {airflow_stack.airflow.port} is already in use"):
        other.start()


def test_a_failed_start_reports_the_component_logs(tmp_path):
    broken = LocalAirflow(
        tmp_path / "home",
        tmp_path / "dags",
        free_port(),
        extra_env={"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:///relative.db"},
    )
    with pytest.raises(AirflowStartError) as failed:
        broken.start(timeout=60)
    message = str(failed.value)
    assert message.startswith("`airflow db migrate` exited 1")
    assert "----- db-migrate" in message and "Cannot use relative path" in message
    assert not broken.is_running
