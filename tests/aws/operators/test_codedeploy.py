"""CodeDeploy operators against the sandbox over HTTP: deploy, fail and roll back, stop, resume, defer."""

from __future__ import annotations

import hashlib
import json

import pytest
from airflow.sdk.exceptions import TaskDeferred

from shipflow.aws.constants import codedeploy as constants
from shipflow.aws.exceptions import AwsActionFailed, InvalidTriggerEvent
from shipflow.aws.operators.codedeploy import (
    CodeDeployCreateDeploymentOperator,
    CodeDeployLiveRevisionOperator,
    CodeDeployRollbackOperator,
    CodeDeployStopDeploymentOperator,
)
from shipflow.aws.triggers.codedeploy import CodeDeployDeploymentCompleteTrigger
from shipflow.aws.utils.idempotency import marker
from tests.aws.codedeploy_helpers import (
    APP,
    BUCKET,
    GROUP,
    ROLLBACK_ON_FAILURE,
    bundle_key,
    create_group,
    deploy,
    deployment_ids,
    deployments,
    label,
    run_to_end,
    start,
    upload_bundles,
)
from tests.aws.conftest import TaskStateStore, roundtrip, run_trigger

WAIT = {"waiter_delay": 0, "waiter_max_attempts": 50}
SLOW = "CodeDeployDefault.OneAtATime"  # four InProgress steps: still running after a few describes


def deploy_op(aws_conn, version="1.1.0", **kwargs):
    defaults = {
        "task_id": "deploy",
        "application_name": APP,
        "deployment_group_name": GROUP,
        "s3_bucket": BUCKET,
        "s3_key": bundle_key(version),
        "aws_conn_id": aws_conn,
        **WAIT,
    }
    return CodeDeployCreateDeploymentOperator(**{**defaults, **kwargs})


def rollback_op(aws_conn, **kwargs):
    defaults = {"task_id": "rollback", "application_name": APP, "deployment_group_name": GROUP}
    return CodeDeployRollbackOperator(**{**defaults, "aws_conn_id": aws_conn, **WAIT, **kwargs})


def stop_op(aws_conn, deployment_id, **kwargs):
    return CodeDeployStopDeploymentOperator(
        task_id="stop", deployment_id=deployment_id, aws_conn_id=aws_conn, **WAIT, **kwargs
    )


def operations(result):
    return [c["operation"] for c in result["aws_calls"]]


@pytest.fixture
def manual(sandbox):
    """Deployments move one step per describe: Created -> InProgress -> Succeeded for AllAtOnce."""
    sandbox.set_lifecycle("manual", service="codedeploy", times=1)
    upload_bundles(sandbox, "1.0.0", "1.1.0", "1.2.0")
    return sandbox


@pytest.fixture
def group(manual):
    """A group without automatic rollback."""
    return create_group(manual)


@pytest.fixture
def rollback_group(manual):
    """A group that rolls back automatically on failure, with 1.0.0 as its last good revision."""
    create_group(manual, auto_rollback=ROLLBACK_ON_FAILURE)
    return deploy(manual, "1.0.0")


# -- create: success, failure, automatic rollback -----------------------------------------------------
def test_deployment_succeeds_with_summary_link_and_marked_description(sandbox, aws_conn, group, task_context):
    etag = sandbox.boto3("s3").head_object(Bucket=BUCKET, Key=bundle_key("1.1.0"))["ETag"]
    context = task_context(task_id="deploy")
    result = deploy_op(aws_conn, s3_etag=etag, description="Release 1.1.0").execute(context)

    assert result["status"] == "Succeeded" and result["adopted"] is False
    assert result["revision_label"] == label("1.1.0")
    assert result["revision"]["s3Location"]["eTag"] == etag
    assert result["deployment_config"] == "CodeDeployDefault.AllAtOnce"
    assert result["overview"]["Succeeded"] == 4 and result["overview"]["Failed"] == 0
    assert result["error_code"] is None and result["rollback_deployment_id"] is None
    assert result["start_time"] and result["complete_time"] and result["deployment_duration_s"] >= 0
    assert result["console_url"] == (
        f"https://console.aws.amazon.com/codesuite/codedeploy/deployments/{result['deployment_id']}?region=us-east-1"
    )
    # Created -> InProgress -> Succeeded: the waiter's describes, then one to read the end state.
    assert operations(result) == ["CreateDeployment", "GetDeployment", "GetDeployment", "GetDeployment"]
    assert all(c["request_id"] for c in result["aws_calls"])
    # CodeDeploy has no idempotency token: the description carries the task's marker instead.
    assert result["description"] == f"Release 1.1.0 [{marker(context)}]"
    # The id is in XCom for a downstream rollback task, and the console link for the UI.
    assert context["ti"].xcom[constants.XCOM_KEY_DEPLOYMENT_ID] == result["deployment_id"]
    assert context["ti"].xcom["codedeploy_deployment"]["deployment_id"] == result["deployment_id"]
    json.dumps(result)


def test_appspec_content_is_sent_with_its_sha256(sandbox, aws_conn, manual, task_context):
    create_group(manual, app="payments-fn", group="payments-fn-live", platform="Lambda", config=None)
    appspec = {"version": 0.0, "Resources": [{"fn": {"Type": "AWS::Lambda::Function", "Properties": {}}}]}
    op = deploy_op(
        aws_conn,
        application_name="payments-fn",
        deployment_group_name="payments-fn-live",
        s3_bucket=None,
        s3_key=None,
        appspec_content=appspec,
    )
    result = op.execute(task_context())
    digest = hashlib.sha256(json.dumps(appspec, indent=2).encode()).hexdigest()
    assert result["status"] == "Succeeded"
    assert result["revision_label"] == f"appspec:{digest[:12]}"
    assert result["deployment_config"] == "CodeDeployDefault.LambdaAllAtOnce"


def test_appspec_that_is_not_a_mapping_fails_before_any_aws_call(sandbox, aws_conn, group, task_context):
    op = deploy_op(aws_conn, s3_bucket=None, s3_key=None, appspec_content="- just\n- a list\n")
    with pytest.raises(ValueError, match="appspec_content must be an AppSpec mapping"):
        op.execute(task_context())
    assert deployment_ids(sandbox) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"appspec_content": "version: 0.0"}, "not both"),
        ({"s3_bucket": None, "s3_key": None}, "give either"),
        ({"s3_key": None}, "needs both s3_bucket and s3_key"),
        ({"bundle_type": "rar"}, "bundle_type 'rar'"),
        ({"file_exists_behavior": "CLOBBER"}, "file_exists_behavior 'CLOBBER'"),
    ],
)
def test_revision_mistakes_surface_at_parse_time(kwargs, message):
    with pytest.raises(ValueError, match=message):
        deploy_op("aws_sandbox", **kwargs)


def test_failed_deployment_raises_with_error_information_and_automatic_rollback(
    sandbox, aws_conn, rollback_group, task_context
):
    sandbox.add_fault("fail", "codedeploy", target=GROUP, params={"code": "HEALTH_CONSTRAINTS"})
    context = task_context()
    with pytest.raises(AwsActionFailed) as failure:
        deploy_op(aws_conn).execute(context)
    error = failure.value
    rollback_id = error.result["rollback_deployment_id"]
    assert error.status == "Failed" and error.reason.startswith("HEALTH_CONSTRAINTS: The overall deployment failed")
    assert error.resource_id == error.result["deployment_id"] == context["ti"].xcom["deployment_id"]
    assert f"CodeDeploy is rolling back automatically with deployment {rollback_id}" in str(error)
    assert error.console_url.endswith(f"/deployments/{error.resource_id}?region=us-east-1")
    rollback = run_to_end(sandbox, rollback_id)
    assert rollback["creator"] == constants.ROLLBACK_CREATOR and rollback["status"] == "Succeeded"
    assert rollback["revision"]["s3Location"]["key"] == bundle_key("1.0.0")


def test_first_deployment_failure_says_there_was_no_rollback(sandbox, aws_conn, manual, task_context):
    create_group(manual, auto_rollback=ROLLBACK_ON_FAILURE)
    sandbox.add_fault("fail", "codedeploy", target=GROUP)
    with pytest.raises(AwsActionFailed, match="no automatic rollback: Automatic rollback was not performed"):
        deploy_op(aws_conn).execute(task_context())


def test_no_wait_returns_the_running_deployment(sandbox, aws_conn, group, task_context):
    result = deploy_op(aws_conn, wait_for_completion=False).execute(task_context())
    assert result["status"] in constants.DEPLOYMENT_IN_FLIGHT_STATES
    assert operations(result) == ["CreateDeployment", "GetDeployment"]


# -- resumption ---------------------------------------------------------------------------------------
def test_retry_adopts_in_flight_deployment_from_task_state_store(sandbox, aws_conn, group, task_context):
    store = TaskStateStore()
    first = deploy_op(aws_conn, wait_for_completion=False).execute(task_context(store=store))
    assert store.values[constants.STATE_KEY_DEPLOYMENT_ID] == first["deployment_id"]

    second = deploy_op(aws_conn).execute(task_context(store=store, try_number=2))
    assert second["deployment_id"] == first["deployment_id"] and second["adopted"] is True
    assert second["status"] == "Succeeded"
    assert deployment_ids(sandbox) == [first["deployment_id"]]


def test_retry_without_stored_id_finds_its_deployment_by_marker(sandbox, aws_conn, group, task_context):
    earlier = deploy(sandbox, "1.0.0")  # someone else's, succeeded: must not be mistaken for ours
    first = deploy_op(aws_conn, wait_for_completion=False).execute(task_context(store=None))
    second = deploy_op(aws_conn).execute(task_context(store=None, try_number=2))
    assert second["deployment_id"] == first["deployment_id"] and second["adopted"] is True
    assert second["status"] == "Succeeded"
    assert deployment_ids(sandbox) == [first["deployment_id"], earlier]
    assert operations(second)[:2] == ["ListDeployments", "BatchGetDeployments"]


def test_rerun_after_success_does_not_deploy_again(sandbox, aws_conn, group, task_context):
    first = deploy_op(aws_conn).execute(task_context(store=None))
    again = deploy_op(aws_conn).execute(task_context(store=None, try_number=3))
    assert again["deployment_id"] == first["deployment_id"] and again["adopted"] is True
    assert "CreateDeployment" not in operations(again)
    assert deployment_ids(sandbox) == [first["deployment_id"]]


@pytest.mark.parametrize("remembered", [True, False], ids=["id in the state store", "found by marker"])
def test_retry_after_a_failed_deployment_reports_that_failure_and_deploys_nothing(
    sandbox, aws_conn, group, task_context, remembered
):
    # Airflow 3.3.2 can retry a try that failed on its own (#72716); a second deployment would hide
    # the first one's failure and the release would promote.
    sandbox.add_fault("fail", "codedeploy", target=GROUP)
    store = TaskStateStore()
    with pytest.raises(AwsActionFailed) as failure:
        deploy_op(aws_conn).execute(task_context(store=store))
    assert store.values[constants.STATE_KEY_DEPLOYMENT_ID] == failure.value.resource_id
    with pytest.raises(AwsActionFailed) as again:
        deploy_op(aws_conn).execute(task_context(store=store if remembered else TaskStateStore(), try_number=2))
    assert again.value.resource_id == failure.value.resource_id and again.value.status == "Failed"
    assert deployment_ids(sandbox) == [failure.value.resource_id]


def test_another_partys_active_deployment_fails_clearly(sandbox, aws_conn, group, task_context):
    sandbox.set_lifecycle("manual", service="codedeploy", times=20)  # our describes must not end it
    other = start(sandbox, "1.0.0", description="hotfix by hand")
    for try_number in (1, 2):
        with pytest.raises(AwsActionFailed) as failure:
            deploy_op(aws_conn).execute(task_context(try_number=try_number))
        error = failure.value
        assert error.resource_id == other and error.status in constants.DEPLOYMENT_IN_FLIGHT_STATES
        assert "busy with a deployment by user that this task did not start" in str(error)
        assert "hotfix by hand" in error.reason
    assert deployment_ids(sandbox) == [other]


def test_retry_while_codedeploy_rolls_back_is_refused(sandbox, aws_conn, rollback_group, task_context):
    sandbox.add_fault("fail", "codedeploy", target=GROUP)
    store = TaskStateStore()
    with pytest.raises(AwsActionFailed) as failure:
        deploy_op(aws_conn).execute(task_context(store=store))
    rollback_id = failure.value.result["rollback_deployment_id"]
    sandbox.set_lifecycle("manual", service="codedeploy", times=20)  # the rollback is slow, as on AWS
    # A retry reports its deployment's failure again; it neither deploys nor waits behind the rollback.
    with pytest.raises(AwsActionFailed) as again:
        deploy_op(aws_conn).execute(task_context(store=store, try_number=2))
    assert again.value.resource_id == failure.value.resource_id
    assert again.value.result["rollback_deployment_id"] == rollback_id
    # Another task instance finds the group busy with that rollback, and says so.
    with pytest.raises(AwsActionFailed, match="busy with CodeDeploy's automatic rollback") as busy:
        deploy_op(aws_conn).execute(task_context(run_id="another-run"))
    assert busy.value.resource_id == rollback_id


def test_throttling_burst_is_retried_by_botocore(sandbox, aws_conn, group, task_context):
    sandbox.add_fault("throttle", "codedeploy", target="GetDeployment", count=3)
    result = deploy_op(aws_conn).execute(task_context())
    assert result["status"] == "Succeeded"
    assert sandbox.faults()[0]["fired"] == 3
    assert sum(c["retries"] for c in result["aws_calls"] if c["operation"] == "GetDeployment") >= 3


# -- deferral -----------------------------------------------------------------------------------------
def test_deferrable_path_defers_then_completes(sandbox, aws_conn, group, task_context):
    op = deploy_op(aws_conn, deferrable=True)
    context = task_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, CodeDeployDeploymentCompleteTrigger)
    record = deferred.value.kwargs["record"]
    json.dumps(record)  # passes through the metadata DB

    event = run_trigger(roundtrip(trigger))
    assert event == {"status": "success", "deployment_id": record["deployment_id"]}
    result = op.execute_complete(context, event=event, record=record)
    assert result["status"] == "Succeeded" and result["deployment_id"] == record["deployment_id"]
    assert operations(result) == ["CreateDeployment", "GetDeployment"]


def test_deferrable_failure_surfaces_error_and_rollback(sandbox, aws_conn, rollback_group, task_context):
    sandbox.add_fault("fail", "codedeploy", target=GROUP, params={"code": "HOOK_EXECUTION_FAILURE"})
    op = deploy_op(aws_conn, deferrable=True)
    context = task_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    event = run_trigger(deferred.value.trigger)
    assert event["status"] == "error" and "Failed" in event["message"]
    with pytest.raises(AwsActionFailed, match="HOOK_EXECUTION_FAILURE") as failure:
        op.execute_complete(context, event=event, record=deferred.value.kwargs["record"])
    assert failure.value.result["rollback_deployment_id"].startswith("d-")


@pytest.mark.parametrize(
    "event",
    [
        None,
        "success",
        {"status": "success"},
        {"status": "done", "deployment_id": "d-AAAAAAAAA"},
        {"status": "success", "deployment_id": "d-BBBBBBBBB"},
    ],
)
def test_trigger_events_are_validated_before_use(aws_conn, event, task_context):
    op = deploy_op(aws_conn, deferrable=True)
    with pytest.raises(InvalidTriggerEvent):
        op.execute_complete(task_context(), event=event, record={"deployment_id": "d-AAAAAAAAA"})


# -- stop ---------------------------------------------------------------------------------------------
def test_stop_with_rollback_returns_the_rollback_deployment(sandbox, aws_conn, group, task_context):
    deploy(sandbox, "1.0.0")
    running = deploy_op(aws_conn, wait_for_completion=False, deployment_config_name=SLOW).execute(task_context())
    stopped = stop_op(aws_conn, running["deployment_id"], auto_rollback_enabled=True).execute(task_context())
    assert stopped["status"] == "Stopped" and stopped["stop_requested"] is True
    assert stopped["error_code"] == "MANUAL_STOP"
    rollback = run_to_end(sandbox, stopped["rollback_deployment_id"])
    assert rollback["revision"]["s3Location"]["key"] == bundle_key("1.0.0")


def test_stop_without_rollback_and_again_is_a_no_op(sandbox, aws_conn, group, task_context):
    deploy(sandbox, "1.0.0")
    running = deploy_op(aws_conn, wait_for_completion=False, deployment_config_name=SLOW).execute(task_context())
    stop = stop_op(aws_conn, running["deployment_id"], auto_rollback_enabled=False)
    stopped = stop.execute(task_context())
    assert stopped["status"] == "Stopped" and stopped["rollback_deployment_id"] is None
    assert operations(stopped)[:2] == ["GetDeployment", "StopDeployment"]
    again = stop.execute(task_context())
    assert again["status"] == "Stopped" and again["stop_requested"] is False
    assert operations(again) == ["GetDeployment"]
    assert len(deployment_ids(sandbox)) == 2


# -- explicit rollback --------------------------------------------------------------------------------
def test_rollback_redeploys_the_revision_before_a_bad_release(sandbox, aws_conn, group, task_context):
    good = deploy(sandbox, "1.0.0")
    bad = deploy(sandbox, "1.1.0")  # deployed fine, misbehaves: the release DAG names it
    context = task_context(task_id="rollback")
    result = rollback_op(aws_conn, deployment_id=bad).execute(context)
    assert result["status"] == "Succeeded" and result["automatic"] is False and result["adopted"] is False
    assert result["rollback_of"] == bad and result["rolled_back_to_deployment_id"] == good
    assert result["rolled_back_to"] == result["revision_label"] == label("1.0.0")
    assert result["description"] == f"Shipflow rollback of {bad} to {label('1.0.0')} [{marker(context)}]"
    assert deployment_ids(sandbox) == [result["deployment_id"], bad, good]


def test_rollback_is_not_stopped_by_the_alarms_the_bad_release_raised(sandbox, aws_conn, manual, task_context):
    codedeploy, cloudwatch = sandbox.boto3("codedeploy"), sandbox.boto3("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName="bad-release", Namespace="Test", MetricName="Errors", Statistic="Average", Period=10,
        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold", TreatMissingData="ignore",
    )
    create_group(manual)
    codedeploy.update_deployment_group(
        applicationName=APP, currentDeploymentGroupName=GROUP,
        alarmConfiguration={"enabled": True, "alarms": [{"name": "bad-release"}]},
    )
    deploy(sandbox, "1.0.0")
    bad = deploy(sandbox, "1.1.0")
    cloudwatch.set_alarm_state(AlarmName="bad-release", StateValue="ALARM", StateReason="the bad release")
    result = rollback_op(aws_conn, deployment_id=bad).execute(task_context(task_id="rollback"))
    assert result["status"] == "Succeeded" and result["rolled_back_to"] == label("1.0.0")


def test_rollback_after_a_failed_deployment_needs_no_id(sandbox, aws_conn, group, task_context):
    deploy(sandbox, "1.0.0")
    sandbox.add_fault("fail", "codedeploy", target=GROUP)
    bad = deploy(sandbox, "1.1.0")
    result = rollback_op(aws_conn).execute(task_context(task_id="rollback"))
    assert result["rollback_of"] == bad and result["revision_label"] == label("1.0.0")
    assert result["status"] == "Succeeded"


def test_rollback_skips_an_excluded_revision(sandbox, aws_conn, group, task_context):
    first = deploy(sandbox, "1.0.0")
    deploy(sandbox, "1.1.0")
    bad = deploy(sandbox, "1.2.0")
    result = rollback_op(aws_conn, deployment_id=bad, exclude_revision=label("1.1.0")).execute(task_context())
    assert result["rolled_back_to_deployment_id"] == first and result["revision_label"] == label("1.0.0")


def test_rollback_adopts_codedeploys_automatic_rollback(sandbox, aws_conn, rollback_group, task_context):
    sandbox.add_fault("fail", "codedeploy", target=GROUP)
    with pytest.raises(AwsActionFailed) as failure:
        deploy_op(aws_conn).execute(task_context())
    bad, automatic = failure.value.resource_id, failure.value.result["rollback_deployment_id"]

    store = TaskStateStore()
    result = rollback_op(aws_conn, deployment_id=bad).execute(task_context(task_id="rollback", store=store))
    assert result["deployment_id"] == automatic and result["automatic"] is True and result["adopted"] is True
    assert result["status"] == "Succeeded" and result["rolled_back_to"] == label("1.0.0")
    assert "CreateDeployment" not in operations(result)
    assert store.values[constants.STATE_KEY_ROLLBACK_ID] == automatic
    # Without the bad id the group's last attempted deployment is that rollback: adopted too.
    again = rollback_op(aws_conn).execute(task_context(task_id="rollback-2"))
    assert again["deployment_id"] == automatic and again["rollback_of"] == bad
    assert len(deployment_ids(sandbox)) == 3


def test_rollback_without_an_earlier_good_revision_fails_clearly(sandbox, aws_conn, group, task_context):
    with pytest.raises(AwsActionFailed, match="the group has no deployments"):
        rollback_op(aws_conn).execute(task_context())
    only = deploy(sandbox, "1.0.0")
    with pytest.raises(AwsActionFailed, match="there is no earlier good revision") as failure:
        rollback_op(aws_conn, deployment_id=only).execute(task_context())
    assert failure.value.resource_id == only and label("1.0.0") in str(failure.value)
    assert deployment_ids(sandbox) == [only]


def test_rollback_refuses_to_guess_the_bad_deployment(sandbox, aws_conn, group, task_context):
    deploy(sandbox, "1.0.0")
    last = deploy(sandbox, "1.1.0")
    with pytest.raises(AwsActionFailed, match="nothing to roll back from; pass deployment_id") as failure:
        rollback_op(aws_conn).execute(task_context())
    assert failure.value.resource_id == last


def test_rollback_of_a_running_deployment_asks_to_stop_it_first(sandbox, aws_conn, group, task_context):
    deploy(sandbox, "1.0.0")
    running = start(sandbox, "1.1.0")
    with pytest.raises(AwsActionFailed, match="stop it first") as failure:
        rollback_op(aws_conn, deployment_id=running).execute(task_context())
    assert failure.value.resource_id == running


def test_rollback_resumes_by_marker_without_a_second_deployment(sandbox, aws_conn, group, task_context):
    deploy(sandbox, "1.0.0")
    bad = deploy(sandbox, "1.1.0")
    first = rollback_op(aws_conn, deployment_id=bad, wait_for_completion=False).execute(task_context())
    second = rollback_op(aws_conn, deployment_id=bad).execute(task_context(try_number=2))
    assert second["deployment_id"] == first["deployment_id"] and second["adopted"] is True
    assert second["status"] == "Succeeded" and len(deployment_ids(sandbox)) == 3


def test_deferrable_rollback_completes(sandbox, aws_conn, group, task_context):
    deploy(sandbox, "1.0.0")
    bad = deploy(sandbox, "1.1.0")
    op = rollback_op(aws_conn, deployment_id=bad, deferrable=True)
    context = task_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    record = deferred.value.kwargs["record"]
    event = run_trigger(roundtrip(deferred.value.trigger))
    result = op.execute_complete(context, event=event, record=record)
    assert result["status"] == "Succeeded" and result["rolled_back_to"] == label("1.0.0")
    assert result["rollback_of"] == bad


# -- live revision ------------------------------------------------------------------------------------
def test_live_revision_is_the_last_success_not_a_failed_target(sandbox, aws_conn, group, task_context):
    live = CodeDeployLiveRevisionOperator(
        task_id="live", application_name=APP, deployment_group_name=GROUP, aws_conn_id=aws_conn
    )
    empty = live.execute(task_context())
    assert empty["live_revision_label"] is None and empty["deployment_in_flight"] is False

    good = deploy(sandbox, "1.0.0")
    sandbox.add_fault("fail", "codedeploy", target=GROUP)
    failed = deploy(sandbox, "1.1.0")
    result = live.execute(task_context())
    assert result["live_revision_label"] == label("1.0.0") and result["live_deployment_id"] == good
    assert result["live_revision"]["s3Location"]["key"] == bundle_key("1.0.0")
    assert result["target_revision_label"] == label("1.1.0")
    assert (result["last_attempted_deployment_id"], result["last_attempted_status"]) == (failed, "Failed")

    running = start(sandbox, "1.2.0")
    in_flight = live.execute(task_context())
    assert in_flight["deployment_in_flight"] is True and in_flight["last_attempted_deployment_id"] == running
    assert in_flight["live_revision_label"] == label("1.0.0")
    assert [d["status"] for d in deployments(sandbox)][0] in constants.DEPLOYMENT_IN_FLIGHT_STATES
