"""CodeBuild operators against the sandbox over HTTP: success, failure, stop, resumption, deferral."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.sdk.exceptions import TaskDeferred

from shipflow.aws.constants import codebuild as constants
from shipflow.aws.exceptions import AwsActionFailed, InvalidTriggerEvent
from shipflow.aws.operators.codebuild import CodeBuildStartBuildOperator, CodeBuildStopBuildOperator
from shipflow.aws.triggers.codebuild import CodeBuildBuildCompleteTrigger
from tests.aws.conftest import TaskStateStore, roundtrip, run_trigger
from tests.aws.helpers import create_project


def start_op(aws_conn, **kwargs):
    defaults = {
        "task_id": "build",
        "project_name": "payments-api-build",
        "source_version": "4f2a9c1",
        "aws_conn_id": aws_conn,
        "waiter_delay": 0,
        "waiter_max_attempts": 50,
    }
    return CodeBuildStartBuildOperator(**{**defaults, **kwargs})


@pytest.fixture
def project(sandbox):
    sandbox.set_lifecycle("manual", service="codebuild", times=1)
    return create_project(sandbox)


def builds_of(sandbox, project):
    return sandbox.boto3("codebuild").list_builds_for_project(projectName=project)["ids"]


def test_build_succeeds_with_summary_and_recorded_calls(sandbox, aws_conn, project, task_context):
    context = task_context()
    result = start_op(aws_conn, environment_variables={"RELEASE": "1.4.0"}).execute(context)

    assert result["status"] == "SUCCEEDED" and result["build_complete"] is True
    assert result["source_version"] == "4f2a9c1"
    assert [p["phase"] for p in result["phases"]][-1] == "COMPLETED"
    assert result["artifact_location"].startswith("arn:aws:s3:::shipflow-artifacts/payments-api-build")
    assert result["log_link"] and result["adopted"] is False
    operations = [c["operation"] for c in result["aws_calls"]]
    assert operations[0] == "StartBuild" and operations.count("BatchGetBuilds") >= 9
    assert all(c["request_id"] for c in result["aws_calls"])
    # The console link is stored for the UI, with the build id escaped for the URL.
    assert context["ti"].xcom["codebuild_build"]["project_name"] == "payments-api-build"
    build = sandbox.boto3("codebuild").batch_get_builds(ids=[result["build_id"]])["builds"][0]
    env = {v["name"]: v["value"] for v in build["environment"]["environmentVariables"]}
    assert env["RELEASE"] == "1.4.0" and env[constants.MARKER_ENV_VAR].startswith("shipflow-")
    # The result holds ids and statuses, never the variables passed to the build.
    assert "1.4.0" not in json.dumps(result)


def test_failed_build_raises_with_phase_reason_and_link(sandbox, aws_conn, project, task_context):
    sandbox.add_fault("fail", "codebuild", target=project, params={"phase": "PRE_BUILD", "message": "npm ci: exit 1"})
    with pytest.raises(AwsActionFailed) as failure:
        start_op(aws_conn).execute(task_context())
    error = failure.value
    assert error.status == "FAILED" and error.reason == "npm ci: exit 1"
    assert error.resource_id.startswith("payments-api-build:")
    assert "in phase PRE_BUILD" in str(error) and error.console_url
    assert error.result["failed_phase"] == "PRE_BUILD"


def test_no_wait_returns_the_running_build(sandbox, aws_conn, project, task_context):
    result = start_op(aws_conn, wait_for_completion=False).execute(task_context())
    assert result["status"] == "IN_PROGRESS" and result["build_complete"] is False


def test_retry_adopts_running_build_from_task_state_store(sandbox, aws_conn, project, task_context):
    store = TaskStateStore()
    first = start_op(aws_conn, wait_for_completion=False).execute(task_context(store=store))
    assert store.values[constants.STATE_KEY_BUILD_ID] == first["build_id"]

    second = start_op(aws_conn).execute(task_context(store=store, try_number=2))
    assert second["build_id"] == first["build_id"] and second["adopted"] is True
    assert second["status"] == "SUCCEEDED"
    assert builds_of(sandbox, project) == [first["build_id"]]


def test_retry_without_stored_id_finds_the_build_by_marker(sandbox, aws_conn, project, task_context):
    # The first try died after StartBuild but before anything was stored: only AWS knows the build.
    first = start_op(aws_conn, wait_for_completion=False).execute(task_context(store=None))
    other_task = start_op(aws_conn, task_id="other", wait_for_completion=False).execute(
        task_context(store=None, task_id="other")
    )
    second = start_op(aws_conn).execute(task_context(store=None, try_number=2))
    assert second["build_id"] == first["build_id"] != other_task["build_id"]
    assert len(builds_of(sandbox, project)) == 2


def test_retry_after_a_failed_build_starts_a_new_one(sandbox, aws_conn, project, task_context):
    store = TaskStateStore()
    sandbox.add_fault("fail", "codebuild", target=project)
    with pytest.raises(AwsActionFailed):
        start_op(aws_conn).execute(task_context(store=store))
    result = start_op(aws_conn).execute(task_context(store=store, try_number=2))
    assert result["status"] == "SUCCEEDED" and result["adopted"] is False
    assert len(builds_of(sandbox, project)) == 2


def test_rerun_after_success_does_not_build_again(sandbox, aws_conn, project, task_context):
    store = TaskStateStore()
    first = start_op(aws_conn).execute(task_context(store=store))
    again = start_op(aws_conn).execute(task_context(store=store, try_number=3))
    assert again["build_id"] == first["build_id"] and again["adopted"] is True
    assert builds_of(sandbox, project) == [first["build_id"]]


def test_throttling_burst_is_retried_by_botocore(sandbox, aws_conn, project, task_context):
    sandbox.add_fault("throttle", "codebuild", target="BatchGetBuilds", count=3)
    result = start_op(aws_conn).execute(task_context())
    assert result["status"] == "SUCCEEDED"
    assert sandbox.faults()[0]["fired"] == 3
    assert sum(c["retries"] for c in result["aws_calls"] if c["operation"] == "BatchGetBuilds") >= 3


def test_deferrable_path_defers_then_completes(sandbox, aws_conn, project, task_context):
    op = start_op(aws_conn, deferrable=True)
    context = task_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, CodeBuildBuildCompleteTrigger)
    record = deferred.value.kwargs["record"]
    json.dumps(record)  # passes through the metadata DB

    event = run_trigger(roundtrip(trigger))
    assert event == {"status": "success", "build_id": record["build_id"]}
    result = op.execute_complete(context, event=event, record=record)
    assert result["status"] == "SUCCEEDED" and result["build_id"] == record["build_id"]
    assert [c["operation"] for c in result["aws_calls"]][0] == "StartBuild"


def test_deferrable_failure_surfaces_the_reason(sandbox, aws_conn, project, task_context):
    sandbox.add_fault("fail", "codebuild", target=project, params={"message": "unit tests failed"})
    op = start_op(aws_conn, deferrable=True)
    context = task_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    event = run_trigger(deferred.value.trigger)
    assert event["status"] == "error" and "FAILED" in event["message"]
    with pytest.raises(AwsActionFailed, match="unit tests failed"):
        op.execute_complete(context, event=event, record=deferred.value.kwargs["record"])


@pytest.mark.parametrize(
    "event",
    [
        None,
        "success",
        {"status": "success"},
        {"status": "done", "build_id": "payments-api-build:1"},
        {"status": "success", "build_id": "payments-api-build:2"},
    ],
)
def test_trigger_events_are_validated_before_use(aws_conn, event, task_context):
    op = start_op(aws_conn, deferrable=True)
    with pytest.raises(InvalidTriggerEvent):
        op.execute_complete(task_context(), event=event, record={"build_id": "payments-api-build:1"})


def test_stop_build_sticks_and_is_a_no_op_when_finished(sandbox, aws_conn, project, task_context):
    running = start_op(aws_conn, wait_for_completion=False).execute(task_context())
    stop = CodeBuildStopBuildOperator(task_id="stop", build_id=running["build_id"], aws_conn_id=aws_conn)
    stopped = stop.execute(task_context(task_id="stop"))
    assert stopped["status"] == "STOPPED"
    assert [c["operation"] for c in stopped["aws_calls"]] == ["BatchGetBuilds", "StopBuild"]
    again = stop.execute(task_context(task_id="stop"))
    assert again["status"] == "STOPPED"
    assert [c["operation"] for c in again["aws_calls"]] == ["BatchGetBuilds"]


def test_waiter_json_and_constants_agree():
    path = Path(constants.__file__).parents[1] / "waiters" / "codebuild.json"
    waiter = json.loads(path.read_text())["waiters"][constants.WAITER_BUILD_COMPLETE]
    by_state = {}
    for acceptor in waiter["acceptors"]:
        by_state.setdefault(acceptor["state"], set()).add(acceptor["expected"])
    assert by_state == {"success": {constants.BUILD_SUCCEEDED}, "failure": set(constants.BUILD_FAILURE_STATES)}
    assert (waiter["delay"], waiter["maxAttempts"]) == (
        constants.DEFAULT_WAITER_DELAY,
        constants.DEFAULT_WAITER_MAX_ATTEMPTS,
    )
