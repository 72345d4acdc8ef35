"""CloudFormation change set operators against the sandbox over HTTP: plan, apply, fail, roll back, resume, defer."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import botocore.session
import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.sdk.exceptions import TaskDeferred

from shipflow.aws.constants import cloudformation as constants
from shipflow.aws.exceptions import AwsActionFailed, InvalidTriggerEvent
from shipflow.aws.operators.cloudformation import (
    CloudFormationCreateChangeSetOperator,
    CloudFormationExecuteChangeSetOperator,
    CloudFormationRollbackOperator,
)
from shipflow.aws.triggers.cloudformation import (
    CloudFormationChangeSetReadyTrigger,
    CloudFormationStackOperationTrigger,
)
from shipflow.aws.utils.idempotency import marker
from tests.aws.cloudformation_helpers import (
    SECRET,
    STACK,
    TEMPLATES,
    V1,
    V2,
    change_sets,
    create_stack,
    operations_started,
    release_version,
    stack,
    stack_events,
    stack_status,
    template,
)
from tests.aws.conftest import TaskStateStore, roundtrip, run_trigger

FAILURE_REASON = 'Resource handler returned message: "User is not authorized to perform: ssm:PutParameter"'


def plan_op(aws_conn, **kwargs):
    defaults = {
        "task_id": "plan_stack",
        "stack_name": STACK,
        "template_file": V2,
        "templates_dir": TEMPLATES,
        "parameters": {"ReleaseVersion": "1.4.0"},
        "capabilities": ["CAPABILITY_NAMED_IAM"],
        "aws_conn_id": aws_conn,
        "waiter_delay": 0,
        "waiter_max_attempts": 20,
    }
    return CloudFormationCreateChangeSetOperator(**{**defaults, **kwargs})


def apply_op(aws_conn, change_set, **kwargs):
    defaults = {"task_id": "apply_stack", "aws_conn_id": aws_conn, "waiter_delay": 0, "waiter_max_attempts": 20}
    return CloudFormationExecuteChangeSetOperator(change_set=change_set, **{**defaults, **kwargs})


def rollback_op(aws_conn, **kwargs):
    defaults = {
        "task_id": "rollback_stack",
        "stack_name": STACK,
        "aws_conn_id": aws_conn,
        "waiter_delay": 0,
        "waiter_max_attempts": 20,
    }
    return CloudFormationRollbackOperator(**{**defaults, **kwargs})


def plan(aws_conn, task_context, **kwargs):
    return plan_op(aws_conn, **kwargs).execute(task_context(task_id="plan_stack"))


def apply(aws_conn, task_context, change_set, store=None, try_number=1, **kwargs):
    context = task_context(task_id="apply_stack", store=store, try_number=try_number)
    return apply_op(aws_conn, change_set, **kwargs).execute(context)


def fail_next_operation(sandbox, resource="ReleaseConfig", **params):
    sandbox.add_fault(
        "fail", "cloudformation", target=STACK, params={"resource": resource, "reason": FAILURE_REASON, **params}
    )


def calls(result, operation=None):
    names = [c["operation"] for c in result["aws_calls"]]
    return names if operation is None else names.count(operation)


@pytest.fixture
def existing_stack(sandbox):
    return create_stack(sandbox)


# -- creating change sets ----------------------------------------------------------------------------
def test_update_change_set_summarizes_the_change_for_an_approver(sandbox, aws_conn, existing_stack, task_context):
    context = task_context(task_id="plan_stack")
    result = plan_op(aws_conn).execute(context)

    assert result["change_set_type"] == "UPDATE" and result["has_changes"] is True
    assert result["change_set_name"] == marker(context) and result["stack_id"] == existing_stack
    assert result["counts"] == {"add": 1, "modify": 3, "remove": 1}
    assert result["replacements"] == [
        {"logical_id": "EventsTopic", "type": "AWS::SNS::Topic", "replacement": "True"},
        {"logical_id": "EventsSubscription", "type": "AWS::SNS::Subscription", "replacement": "Conditional"},
    ]
    assert result["has_iam_changes"] is True
    assert result["iam_changes"] == [{"action": "Add", "logical_id": "DeployRole", "type": "AWS::IAM::Role"}]
    assert result["iam_capabilities"] == ["CAPABILITY_NAMED_IAM"]
    assert {
        "action": "Remove",
        "logical_id": "LegacyConfig",
        "type": "AWS::SSM::Parameter",
        "replacement": None,
        "scope": [],
    } in result["changes"]
    assert {
        "action": "Modify",
        "logical_id": "ReleaseConfig",
        "type": "AWS::SSM::Parameter",
        "replacement": "False",
        "scope": ["Properties"],
    } in result["changes"]
    assert result["text"] == (
        f"Update stack {STACK}: 1 to add, 3 to modify, 1 to remove. Replaces EventsTopic (AWS::SNS::Topic). "
        "May replace EventsSubscription (AWS::SNS::Subscription). IAM: adds DeployRole (AWS::IAM::Role). "
        "Acknowledges CAPABILITY_NAMED_IAM."
    )
    # What a later undo needs, NoEcho values left out of the result entirely.
    assert result["previous_template"] == template(V1)
    assert result["previous_parameters"] == {
        "ServiceName": "payments-api",
        "Environment": "staging",
        "ReleaseVersion": "0.0.0",
    }
    assert result["previous_noecho_parameters"] == ["ApiKey"]
    assert SECRET not in json.dumps(result)
    # Parameters not passed kept their values (UsePreviousValue), the NoEcho one included.
    described = sandbox.boto3("cloudformation").describe_change_set(ChangeSetName=result["change_set_id"])
    values = {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}
    assert values == {
        "ServiceName": "payments-api",
        "Environment": "staging",
        "ApiKey": SECRET,
        "ReleaseVersion": "1.4.0",
    }
    assert "CreateChangeSet" in calls(result) and all(c["request_id"] for c in result["aws_calls"])
    assert context["ti"].xcom["cloudformation_change_set"]["change_set_id"].startswith("arn%3Aaws%3Acloudformation")
    assert result["console_url"].startswith("https://console.aws.amazon.com/cloudformation/home?region=us-east-1#")


NEW_STACK_INPUTS = {
    "template_file": V1,
    "parameters": {"ServiceName": "payments-api", "Environment": "staging"},
    "capabilities": [],
}


def test_create_change_set_for_a_new_stack_then_execute_creates_it(sandbox, aws_conn, task_context):
    result = plan(aws_conn, task_context, **NEW_STACK_INPUTS)
    assert result["change_set_type"] == "CREATE" and result["has_changes"] is True
    assert result["counts"] == {"add": 5, "modify": 0, "remove": 0} and result["replacements"] == []
    assert result["has_iam_changes"] is False and result["previous_template"] is None
    assert result["text"].startswith(f"Create stack {STACK}: 5 to add")
    assert stack_status(sandbox) == "REVIEW_IN_PROGRESS"
    # A retry finds the change set on the stack it created, instead of failing on "already exists".
    again = plan_op(aws_conn, **NEW_STACK_INPUTS).execute(task_context(task_id="plan_stack", try_number=2))
    assert again["adopted"] is True and again["change_set_id"] == result["change_set_id"]

    applied = apply(aws_conn, task_context, result)
    assert applied["status"] == "CREATE_COMPLETE" and applied["operation"] == "create"
    assert applied["outputs"]["TopicArn"].endswith(":payments-api-staging-events")
    assert release_version(sandbox) == "0.0.0"


def test_no_change_change_set_succeeds_without_changes_and_execution_skips(
    sandbox, aws_conn, existing_stack, task_context
):
    result = plan(aws_conn, task_context, template_file=V1, parameters={}, capabilities=[])
    assert result["has_changes"] is False and result["status"] == "FAILED"
    assert result["status_reason"].startswith("The submitted information didn't contain changes")
    assert result["text"].startswith(f"No changes to stack {STACK}")
    assert result["counts"] == {"add": 0, "modify": 0, "remove": 0}

    skipped = apply(aws_conn, task_context, result)
    assert skipped["skipped"] is True and skipped["aws_calls"] == []
    # Given only the change set's ARN, the execution finds out for itself.
    by_arn = apply(aws_conn, task_context, result["change_set_id"])
    assert by_arn["skipped"] is True and calls(by_arn) == ["DescribeChangeSet"]
    assert operations_started(sandbox) == [("CREATE_IN_PROGRESS", None)]


def test_template_file_mistakes_name_the_file(sandbox, aws_conn, task_context):
    with pytest.raises(AirflowFailException, match="release-stack-v9.yaml.*not found"):
        plan(aws_conn, task_context, template_file="release-stack-v9.yaml")
    with pytest.raises(AirflowFailException, match="outside"):
        plan(aws_conn, task_context, template_file="../helpers.py")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"template_body": "x"}, "exactly one of"),
        ({"template_file": None}, "exactly one of"),
        ({"change_set_type": "IMPORT"}, "change_set_type"),
        ({"capabilities": ["CAPABILITY_ADMIN"]}, "CAPABILITY_ADMIN"),
        ({"parameters": {"ReleaseVersion": {"version": 2}}}, r"parameters\['ReleaseVersion'\]"),
    ],
)
def test_mistakes_are_reported_at_parse_time(aws_conn, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_op(aws_conn, **kwargs)


def test_stack_whose_creation_failed_must_be_deleted_first(sandbox, aws_conn, task_context):
    fail_next_operation(sandbox, resource="WorkQueue")
    sandbox.boto3("cloudformation").create_stack(
        StackName=STACK,
        TemplateBody=template(V1),
        Parameters=[
            {"ParameterKey": "ServiceName", "ParameterValue": "payments-api"},
            {"ParameterKey": "Environment", "ParameterValue": "staging"},
        ],
    )
    assert stack_status(sandbox) == "ROLLBACK_COMPLETE"
    with pytest.raises(AirflowFailException, match="ROLLBACK_COMPLETE.*delete-stack --stack-name payments-api-staging"):
        plan(aws_conn, task_context)


# -- executing change sets ---------------------------------------------------------------------------
def test_execute_applies_the_update(sandbox, aws_conn, existing_stack, task_context):
    planned = plan(aws_conn, task_context)
    context = task_context(task_id="apply_stack")
    result = apply_op(aws_conn, planned).execute(context)

    assert result["status"] == result["stack_status"] == "UPDATE_COMPLETE"
    assert result["skipped"] is False and result["adopted"] is False and result["failed_resources"] == []
    assert result["outputs"]["TopicArn"].endswith(":payments-api-staging-events-v2")
    assert release_version(sandbox) == "1.4.0"
    assert calls(result, "ExecuteChangeSet") == 1
    assert operations_started(sandbox)[-1] == ("UPDATE_IN_PROGRESS", result["client_request_token"])
    assert context["ti"].xcom["cloudformation_stack"]["stack_id"].startswith("arn%3Aaws%3Acloudformation")


def test_failed_execution_names_the_resource_and_reason_of_this_execution_only(
    sandbox, aws_conn, existing_stack, task_context
):
    # An earlier update failed on another resource: its events must not be reported as ours.
    sandbox.add_fault("fail", "cloudformation", target=STACK, params={"resource": "EventsTopic"})
    sandbox.boto3("cloudformation").update_stack(
        StackName=STACK,
        TemplateBody=template(V2),
        Capabilities=["CAPABILITY_NAMED_IAM"],
        Parameters=[{"ParameterKey": k, "UsePreviousValue": True} for k in ("ServiceName", "Environment", "ApiKey")],
    )
    assert stack_status(sandbox) == "UPDATE_ROLLBACK_COMPLETE"

    planned = plan(aws_conn, task_context)
    fail_next_operation(sandbox)
    with pytest.raises(AwsActionFailed) as failure:
        apply(aws_conn, task_context, planned)
    error = failure.value
    assert error.status == "UPDATE_ROLLBACK_COMPLETE" and error.resource_id == existing_stack
    assert error.reason.startswith(f"ReleaseConfig (AWS::SSM::Parameter) UPDATE_FAILED: {FAILURE_REASON}")
    assert "EventsTopic" not in json.dumps(error.result["failed_resources"])
    assert error.console_url.startswith("https://console.aws.amazon.com/cloudformation/home?region=us-east-1#/stacks/")
    assert f"update of stack {STACK} ended UPDATE_ROLLBACK_COMPLETE" in str(error)
    # Rolled back: the release parameter has its old value again.
    assert stack_status(sandbox) == "UPDATE_ROLLBACK_COMPLETE" and release_version(sandbox) == "0.0.0"


def test_execution_waits_through_in_progress_steps(sandbox, aws_conn, existing_stack, task_context, caplog):
    planned = plan(aws_conn, task_context)
    sandbox.set_lifecycle("manual", service="cloudformation", times=1)
    with caplog.at_level(logging.INFO):
        result = apply(aws_conn, task_context, planned)
    assert result["status"] == "UPDATE_COMPLETE"
    assert calls(result, "DescribeStacks") >= 4  # one per step: IN_PROGRESS, IN_PROGRESS, CLEANUP, COMPLETE
    seen = caplog.text
    assert "UPDATE_IN_PROGRESS" in seen and "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS" in seen


def test_no_wait_returns_the_running_operation(sandbox, aws_conn, existing_stack, task_context):
    planned = plan(aws_conn, task_context)
    sandbox.set_lifecycle("manual", service="cloudformation", times=5)  # a step per 5 describes
    result = apply(aws_conn, task_context, planned, wait_for_completion=False)
    assert result["status"] == "UPDATE_IN_PROGRESS" and result["outputs"] == {}
    assert calls(result, "DescribeStacks") == 2  # before executing and after: no waiting


def test_throttling_burst_is_retried_by_botocore(sandbox, aws_conn, existing_stack, task_context):
    planned = plan(aws_conn, task_context)
    sandbox.add_fault("throttle", "cloudformation", target="DescribeStacks", count=3)
    result = apply(aws_conn, task_context, planned)
    assert result["status"] == "UPDATE_COMPLETE"
    assert sandbox.faults()[0]["fired"] == 3
    assert sum(c["retries"] for c in result["aws_calls"] if c["operation"] == "DescribeStacks") >= 3


# -- resumption --------------------------------------------------------------------------------------
def test_retry_adopts_the_change_set_and_replaces_it_when_inputs_change(
    sandbox, aws_conn, existing_stack, task_context
):
    first = plan_op(aws_conn).execute(task_context(task_id="plan_stack", store=None))
    again = plan_op(aws_conn).execute(task_context(task_id="plan_stack", store=None, try_number=2))
    assert again["adopted"] is True and again["change_set_id"] == first["change_set_id"]
    assert "CreateChangeSet" not in calls(again)
    assert again["counts"] == first["counts"] and again["previous_template"] == template(V1)

    changed = plan_op(aws_conn, parameters={"ReleaseVersion": "1.4.1"}).execute(
        task_context(task_id="plan_stack", store=None, try_number=3)
    )
    assert changed["adopted"] is False and changed["change_set_id"] != first["change_set_id"]
    assert [cs["ChangeSetId"] for cs in change_sets(sandbox)] == [changed["change_set_id"]]


def test_retry_adopts_a_no_change_change_set(sandbox, aws_conn, existing_stack, task_context):
    store = TaskStateStore()
    kwargs = {"template_file": V1, "parameters": {}, "capabilities": []}
    first = plan_op(aws_conn, **kwargs).execute(task_context(task_id="plan_stack", store=store))
    again = plan_op(aws_conn, **kwargs).execute(task_context(task_id="plan_stack", store=store, try_number=2))
    assert store.values[constants.STATE_KEY_CHANGE_SET_ID] == first["change_set_id"] == again["change_set_id"]
    assert again["adopted"] is True and again["has_changes"] is False
    assert len(change_sets(sandbox)) == 1


@pytest.mark.parametrize("with_store", [True, False], ids=["token-in-state-store", "token-found-in-events"])
def test_retry_adopts_the_execution_in_flight(sandbox, aws_conn, existing_stack, task_context, with_store):
    store = TaskStateStore() if with_store else None
    planned = plan(aws_conn, task_context)
    sandbox.set_lifecycle("manual", service="cloudformation", times=5)
    first = apply(aws_conn, task_context, planned, store=store, wait_for_completion=False)
    assert first["status"] == "UPDATE_IN_PROGRESS"

    second = apply(aws_conn, task_context, planned, store=store, try_number=2, waiter_max_attempts=50)
    assert second["adopted"] is True and second["status"] == "UPDATE_COMPLETE"
    assert second["client_request_token"] == first["client_request_token"]
    assert "ExecuteChangeSet" not in calls(second)
    # Exactly one execution, and every event of it carries the first try's token.
    assert operations_started(sandbox)[1:] == [("UPDATE_IN_PROGRESS", first["client_request_token"])]
    update_events = [e for e in stack_events(sandbox) if e.get("ClientRequestToken")]
    assert {e["ClientRequestToken"] for e in update_events} == {first["client_request_token"]}


def test_rerun_after_success_returns_the_result_without_executing_again(
    sandbox, aws_conn, existing_stack, task_context
):
    store = TaskStateStore()
    planned = plan(aws_conn, task_context)
    first = apply(aws_conn, task_context, planned, store=store)
    again = apply(aws_conn, task_context, planned, store=store, try_number=3)
    assert again["adopted"] is True and again["status"] == "UPDATE_COMPLETE"
    assert again["outputs"] == first["outputs"] and "ExecuteChangeSet" not in calls(again)
    assert len(operations_started(sandbox)) == 2  # the creation and one update


def test_retry_after_a_failed_execution_reports_that_failure_again(sandbox, aws_conn, existing_stack, task_context):
    planned = plan(aws_conn, task_context)
    fail_next_operation(sandbox)
    with pytest.raises(AwsActionFailed):
        apply(aws_conn, task_context, planned)
    with pytest.raises(AwsActionFailed) as again:
        apply(aws_conn, task_context, planned, try_number=2)
    assert again.value.result["adopted"] is True and "ReleaseConfig" in again.value.reason
    assert len(operations_started(sandbox)) == 2


# -- rollbacks ---------------------------------------------------------------------------------------
def test_rollback_of_an_update_left_failed(sandbox, aws_conn, existing_stack, task_context):
    planned = plan(aws_conn, task_context)
    fail_next_operation(sandbox)
    with pytest.raises(AwsActionFailed) as failure:
        apply(aws_conn, task_context, planned, disable_rollback=True)
    assert failure.value.status == "UPDATE_FAILED" and stack_status(sandbox) == "UPDATE_FAILED"

    result = rollback_op(aws_conn).execute(task_context(task_id="rollback_stack"))
    assert result["initial_status"] == "UPDATE_FAILED" and result["rollback_action"] == "rollback_stack"
    assert result["final_status"] == "UPDATE_ROLLBACK_COMPLETE" and result["verified"] is True
    assert release_version(sandbox) == "0.0.0"
    assert operations_started(sandbox)[-1] == ("UPDATE_ROLLBACK_IN_PROGRESS", result["client_request_token"])


def test_rollback_of_a_creation_left_failed(sandbox, aws_conn, task_context):
    planned = plan(aws_conn, task_context, **NEW_STACK_INPUTS)
    fail_next_operation(sandbox, resource="EventsTopic")
    with pytest.raises(AwsActionFailed) as failure:
        apply(aws_conn, task_context, planned, disable_rollback=True)
    assert failure.value.status == "CREATE_FAILED" and "EventsTopic" in failure.value.reason

    result = rollback_op(aws_conn).execute(task_context(task_id="rollback_stack"))
    assert result["rollback_action"] == "rollback_stack" and result["final_status"] == "ROLLBACK_COMPLETE"
    assert result["verified"] is True
    assert sandbox.boto3("sqs").list_queues().get("QueueUrls", []) == []  # what was created is gone again


def test_rollback_continues_a_rollback_that_failed(sandbox, aws_conn, existing_stack, task_context):
    planned = plan(aws_conn, task_context)
    fail_next_operation(sandbox, rollback_fails=True)
    with pytest.raises(AwsActionFailed) as failure:
        apply(aws_conn, task_context, planned)
    assert failure.value.status == "UPDATE_ROLLBACK_FAILED"

    result = rollback_op(aws_conn).execute(task_context(task_id="rollback_stack"))
    assert result["rollback_action"] == "continue_update_rollback"
    assert result["final_status"] == "UPDATE_ROLLBACK_COMPLETE" and result["verified"] is True


def test_rollback_cancels_an_update_in_progress(sandbox, aws_conn, existing_stack, task_context):
    planned = plan(aws_conn, task_context)
    sandbox.set_lifecycle("manual", service="cloudformation", times=5)
    apply(aws_conn, task_context, planned, wait_for_completion=False)

    result = rollback_op(aws_conn, waiter_max_attempts=50).execute(task_context(task_id="rollback_stack"))
    assert result["initial_status"] == "UPDATE_IN_PROGRESS" and result["rollback_action"] == "cancel_update_stack"
    assert result["final_status"] == "UPDATE_ROLLBACK_COMPLETE" and result["verified"] is True
    assert release_version(sandbox) == "0.0.0"


def test_rollback_undoes_a_successful_update_once(sandbox, aws_conn, existing_stack, task_context):
    planned = plan(aws_conn, task_context)
    apply(aws_conn, task_context, planned)
    op = rollback_op(
        aws_conn, previous_template=planned["previous_template"], previous_parameters=planned["previous_parameters"]
    )
    result = op.execute(task_context(task_id="rollback_stack"))
    assert result["rollback_action"] == "update_stack" and result["final_status"] == "UPDATE_COMPLETE"
    assert result["verified"] is True and result["kept_parameters"] == ["ApiKey"]
    assert release_version(sandbox) == "0.0.0"
    restored = stack(sandbox)
    assert {o["OutputKey"]: o["OutputValue"] for o in restored["Outputs"]}["TopicArn"].endswith("-events")
    assert {p["ParameterKey"]: p["ParameterValue"] for p in restored["Parameters"]}["ApiKey"] == SECRET
    assert sandbox.boto3("cloudformation").get_template(StackName=STACK)["TemplateBody"] == template(V1)

    # A retry (the first try died after its undo ended) recognises its own undo and sends nothing.
    again = op.execute(task_context(task_id="rollback_stack", try_number=2))
    assert again["rollback_action"] == "update_stack" and again["adopted"] is True
    assert again["verified"] is True and len(operations_started(sandbox)) == 3
    # Another task instance finds the stack as it was: nothing to do.
    other = op.execute(task_context(task_id="rollback_stack", run_id="another-run"))
    assert other["rollback_action"] == "none" and other["already_rolled_back"] is True
    assert other["verified"] is True and len(operations_started(sandbox)) == 3


def test_rollback_of_a_rolled_back_stack_has_nothing_to_do(sandbox, aws_conn, existing_stack, task_context):
    planned = plan(aws_conn, task_context)
    fail_next_operation(sandbox)
    with pytest.raises(AwsActionFailed):
        apply(aws_conn, task_context, planned)
    result = rollback_op(aws_conn).execute(task_context(task_id="rollback_stack"))
    assert result["rollback_action"] == "none" and result["already_rolled_back"] is True
    assert result["final_status"] == "UPDATE_ROLLBACK_COMPLETE" and result["verified"] is True
    assert calls(result) == ["DescribeStacks", "DescribeStacks"]


def test_undo_without_the_previous_template_says_what_to_pass(sandbox, aws_conn, existing_stack, task_context):
    apply(aws_conn, task_context, plan(aws_conn, task_context))
    with pytest.raises(AirflowFailException, match="previous_template and previous_parameters"):
        rollback_op(aws_conn).execute(task_context(task_id="rollback_stack"))


# -- deferral ----------------------------------------------------------------------------------------
def defer(op, context):
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    record = deferred.value.kwargs["record"]
    json.dumps(record)  # passes through the metadata DB
    return deferred.value.trigger, record


@pytest.mark.parametrize("version", [V2, V1], ids=["changes", "no-changes"])
def test_deferrable_change_set_creation(sandbox, aws_conn, existing_stack, task_context, version):
    inputs = {} if version == V2 else {"parameters": {}, "capabilities": []}
    op = plan_op(aws_conn, template_file=version, deferrable=True, **inputs)
    context = task_context(task_id="plan_stack")
    trigger, record = defer(op, context)
    assert isinstance(trigger, CloudFormationChangeSetReadyTrigger)

    event = run_trigger(roundtrip(trigger))
    # An empty change set is a result too: the custom waiter reports success, not a failure.
    assert event == {"status": "success", "change_set_id": record["change_set_id"]}
    result = op.execute_complete(context, event=event, record=record)
    assert result["has_changes"] is (version == V2) and calls(result)[0] == "DescribeStacks"
    assert result["previous_template"] == template(V1)


def test_deferrable_execution_success_and_failure(sandbox, aws_conn, existing_stack, task_context):
    planned = plan(aws_conn, task_context)
    sandbox.set_lifecycle("manual", service="cloudformation", times=1)
    op = apply_op(aws_conn, planned, deferrable=True)
    context = task_context(task_id="apply_stack")
    trigger, record = defer(op, context)
    assert isinstance(trigger, CloudFormationStackOperationTrigger)
    event = run_trigger(roundtrip(trigger))
    assert event == {"status": "success", "stack_id": existing_stack}
    result = op.execute_complete(context, event=event, record=record)
    assert result["status"] == "UPDATE_COMPLETE" and calls(result, "ExecuteChangeSet") == 1

    # The undo, deferred as well, then a failed execution of a new change set.
    undo = rollback_op(
        aws_conn,
        previous_template=planned["previous_template"],
        previous_parameters=planned["previous_parameters"],
        deferrable=True,
    )
    trigger, record = defer(undo, task_context(task_id="rollback_stack"))
    event = run_trigger(roundtrip(trigger))
    assert undo.execute_complete(task_context(), event=event, record=record)["verified"] is True

    replanned = plan_op(aws_conn, task_id="plan_again").execute(task_context(task_id="plan_again"))
    fail_next_operation(sandbox)
    op = apply_op(aws_conn, replanned, task_id="apply_again", deferrable=True)
    trigger, record = defer(op, task_context(task_id="apply_again"))
    event = run_trigger(trigger)
    assert event["status"] == "error" and "UPDATE_ROLLBACK_COMPLETE" in event["message"]
    with pytest.raises(AwsActionFailed, match="ReleaseConfig"):
        op.execute_complete(task_context(task_id="apply_again"), event=event, record=record)


def test_deferrable_rollback_of_an_update_left_failed(sandbox, aws_conn, existing_stack, task_context):
    planned = plan(aws_conn, task_context)
    fail_next_operation(sandbox)
    with pytest.raises(AwsActionFailed):
        apply(aws_conn, task_context, planned, disable_rollback=True)
    op = rollback_op(aws_conn, deferrable=True)
    trigger, record = defer(op, task_context(task_id="rollback_stack"))
    assert trigger.serialize()[1]["operation"] == "rollback"
    event = run_trigger(roundtrip(trigger))
    result = op.execute_complete(task_context(task_id="rollback_stack"), event=event, record=record)
    assert result["final_status"] == "UPDATE_ROLLBACK_COMPLETE" and result["verified"] is True


STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/payments-api-staging/1"
CHANGE_SET_ID = "arn:aws:cloudformation:us-east-1:123456789012:changeSet/shipflow-1/1"


@pytest.mark.parametrize(
    "event",
    [
        None,
        "success",
        {"status": "success"},
        {"status": "done", "stack_id": STACK_ID, "change_set_id": CHANGE_SET_ID},
        {"status": "success", "stack_id": STACK_ID + "0", "change_set_id": CHANGE_SET_ID + "0"},
    ],
)
@pytest.mark.parametrize("which", ["plan", "apply", "rollback"])
def test_trigger_events_are_validated_before_use(aws_conn, task_context, event, which):
    op = {
        "plan": lambda: plan_op(aws_conn, deferrable=True),
        "apply": lambda: apply_op(aws_conn, CHANGE_SET_ID, deferrable=True),
        "rollback": lambda: rollback_op(aws_conn, deferrable=True),
    }[which]()
    record = {"stack_id": STACK_ID, "change_set_id": CHANGE_SET_ID, "change_set_type": "UPDATE"}
    with pytest.raises(InvalidTriggerEvent):
        op.execute_complete(task_context(), event=event, record=record)


# -- waiters -----------------------------------------------------------------------------------------
def _acceptors(waiter: dict) -> dict[str, set]:
    by_state: dict[str, set] = {}
    for acceptor in waiter["acceptors"]:
        by_state.setdefault(acceptor["state"], set()).add(acceptor["expected"])
    return by_state


def test_custom_waiters_agree_with_constants():
    path = Path(constants.__file__).parents[1] / "waiters" / "cloudformation.json"
    waiters = json.loads(path.read_text())["waiters"]
    change_set = waiters[constants.WAITER_CHANGE_SET_READY]
    no_change = next(a["argument"] for a in change_set["acceptors"] if a["expected"] is True)
    assert all(reason.replace("'", "\\'") in no_change for reason in constants.NO_CHANGE_REASONS)
    assert (change_set["delay"], change_set["maxAttempts"]) == (
        constants.DEFAULT_CHANGE_SET_WAITER_DELAY,
        constants.DEFAULT_CHANGE_SET_WAITER_MAX_ATTEMPTS,
    )
    rolled_back = waiters[constants.WAITER_STACK_ROLLED_BACK]
    assert _acceptors(rolled_back)["success"] == set(constants.STACK_ROLLED_BACK_STATES)
    assert _acceptors(rolled_back)["failure"] >= {"ROLLBACK_FAILED", "UPDATE_ROLLBACK_FAILED"}
    assert (rolled_back["delay"], rolled_back["maxAttempts"]) == (
        constants.DEFAULT_STACK_WAITER_DELAY,
        constants.DEFAULT_STACK_WAITER_MAX_ATTEMPTS,
    )


def test_botocore_stack_waiters_still_agree_with_constants():
    model = botocore.session.get_session().get_waiter_model("cloudformation")

    def by_state(name: str) -> dict[str, set]:
        found: dict[str, set] = {}
        for acceptor in model.get_waiter(name).acceptors:
            if acceptor.matcher != "error":
                found.setdefault(acceptor.state, set()).add(acceptor.expected)
        return found

    update = by_state("StackUpdateComplete")
    assert update == {
        "success": {"UPDATE_COMPLETE"},
        "failure": {"UPDATE_FAILED", *constants.STACK_ROLLED_BACK_STATES[1:], "UPDATE_ROLLBACK_FAILED"},
    }
    create = by_state("StackCreateComplete")
    assert "CREATE_COMPLETE" in create["success"]
    assert (
        {"CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED"}
        <= create["failure"]
        <= {*constants.STACK_FAILURE_STATES, "DELETE_COMPLETE"}
    )


class _PlanTI:
    """What a rendered template sees as ``ti``: the plan_stack XCom of the run."""

    def __init__(self, planned):
        self.planned = planned

    def xcom_pull(self, task_ids=None, **_):
        return self.planned if str(task_ids).endswith(".plan_stack") else None


def test_the_release_dags_rollback_renders_the_plan_into_an_undo(sandbox, aws_conn, existing_stack, task_context):
    """The generated rollback_stack's templates, rendered by Airflow's Jinja, undo the update (a dict
    rendered without ``| tojson`` became its Python repr and every undo failed)."""
    from shipflow.release.builder import register_release_dags
    from tests.conftest import ROOT

    namespace: dict = {}
    register_release_dags(namespace, ROOT / "include" / "services")
    generated = namespace["release__storefront-web"].task_dict["production.rollback_stack"]
    planned = plan(aws_conn, task_context)
    apply(aws_conn, task_context, planned)
    generated.render_template_fields({"ti": _PlanTI(planned)})
    assert isinstance(generated.previous_parameters, str)  # Jinja renders text

    op = rollback_op(
        aws_conn, previous_template=generated.previous_template, previous_parameters=generated.previous_parameters
    )
    result = op.execute(task_context(task_id="rollback_stack"))
    assert result["rollback_action"] == "update_stack" and result["verified"] is True
    assert release_version(sandbox) == "0.0.0"

    as_repr = rollback_op(aws_conn, previous_template="x", previous_parameters=str(planned["previous_parameters"]))
    with pytest.raises(AirflowFailException, match=r"previous_parameters rendered to .* not a JSON object: .*tojson"):
        as_repr.execute(task_context(task_id="rollback_stack"))


def test_a_deferred_undo_resumes_with_the_rendered_parameters(sandbox, aws_conn, existing_stack, task_context):
    """A deferred rollback_stack resumes in a fresh operator whose templates Airflow rendered again: the
    parameters are the ``| tojson`` string, not the dict execute() made of them (every resumed undo
    of a stack failed with "'str' object has no attribute 'items'", and only its retry verified it)."""
    import json

    planned = plan(aws_conn, task_context)
    apply(aws_conn, task_context, planned)
    rendered = json.dumps(planned["previous_parameters"])
    first = rollback_op(
        aws_conn, previous_template=planned["previous_template"], previous_parameters=rendered, deferrable=True
    )
    trigger, record = defer(first, task_context(task_id="rollback_stack"))
    event = run_trigger(roundtrip(trigger))
    resumed = rollback_op(
        aws_conn, previous_template=planned["previous_template"], previous_parameters=rendered, deferrable=True
    )
    result = resumed.execute_complete(task_context(task_id="rollback_stack"), event=event, record=record)
    assert result["rollback_action"] == "update_stack" and result["verified"] is True
    assert release_version(sandbox) == "0.0.0"
