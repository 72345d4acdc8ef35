"""CloudFormation in the sandbox: stack operations that progress, fail, roll back, and change sets.

Every test talks to a real sandbox through boto3. Tests that look at intermediate states set the
``manual`` speed (one step per DescribeStacks / DescribeStackEvents call) so they are deterministic.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
import yaml

TEMPLATES = Path(__file__).parent / "templates"
FAST = {"Delay": 0, "MaxAttempts": 10}
ACCESS_DENIED = 'Resource handler returned message: "Access Denied" (HandlerErrorCode: AccessDenied)'


def template(name: str) -> dict[str, Any]:
    return yaml.safe_load((TEMPLATES / name).read_text())


def body(template_dict: dict[str, Any]) -> str:
    return json.dumps(template_dict)


def app_v2() -> dict[str, Any]:
    """app.yaml with the topic's display name changed (an in-place update) and one more output."""
    changed = template("app.yaml")
    changed["Resources"]["Topic"]["Properties"]["DisplayName"] = "releases-v2"
    changed["Outputs"]["Stage"] = {"Value": "two"}
    return changed


def status(cf: Any, stack: str) -> str:
    return cf.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]


def statuses(cf: Any, stack: str, reads: int) -> list[str]:
    return [status(cf, stack) for _ in range(reads)]


def events(cf: Any, stack: str) -> list[tuple[str, str, str | None]]:
    """(logical id, status, reason), oldest first. Counts as a read under manual speed."""
    found = cf.describe_stack_events(StackName=stack)["StackEvents"]
    return [(e["LogicalResourceId"], e["ResourceStatus"], e.get("ResourceStatusReason")) for e in reversed(found)]


def stack_statuses(cf: Any, stack: str) -> list[str]:
    return [s for lid, s, _ in events(cf, stack) if lid == stack]


def error(call: Any) -> dict[str, str]:
    with pytest.raises(botocore.exceptions.ClientError) as err:
        call()
    return err.value.response["Error"]


def ssm_value(sandbox: Any, name: str) -> str:
    return sandbox.boto3("ssm").get_parameter(Name=name)["Parameter"]["Value"]


@pytest.fixture
def cf(sandbox: Any) -> Any:
    return sandbox.boto3("cloudformation")


@pytest.fixture
def manual(sandbox: Any) -> None:
    sandbox.set_lifecycle("manual", service="cloudformation", times=1)


# -- create ------------------------------------------------------------------------------------
def test_create_is_in_progress_first_and_records_events(sandbox, cf, manual):
    stack_id = cf.create_stack(StackName="app", TemplateBody=body(template("app.yaml")))["StackId"]

    first = cf.describe_stacks(StackName="app")["Stacks"][0]
    assert first["StackStatus"] == "CREATE_IN_PROGRESS"
    assert "Outputs" not in first  # published once created
    assert status(cf, "app") == "CREATE_COMPLETE"

    stack = cf.describe_stacks(StackName=stack_id)["Stacks"][0]
    assert {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}["Env"] == "dev"
    topic_arn = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}["TopicArn"]
    assert topic_arn in [t["TopicArn"] for t in sandbox.boto3("sns").list_topics()["Topics"]]
    assert ssm_value(sandbox, "/app/env") == "dev"

    recorded = events(cf, "app")
    assert recorded[0] == ("app", "CREATE_IN_PROGRESS", "User Initiated")
    assert recorded[-1] == ("app", "CREATE_COMPLETE", None)
    assert ("Topic", "CREATE_IN_PROGRESS", "Resource creation Initiated") in recorded
    assert [lid for lid, s, _ in recorded if s == "CREATE_COMPLETE"] == ["Topic", "Queue", "Config", "app"]


def test_immediate_speed_by_default_and_waiter_succeeds(cf):
    cf.create_stack(StackName="app", TemplateBody=(TEMPLATES / "app.yaml").read_text())  # YAML as is
    assert status(cf, "app") == "CREATE_COMPLETE"
    cf.get_waiter("stack_create_complete").wait(StackName="app", WaiterConfig=FAST)


def test_time_speed_progresses_with_the_clock(sandbox, cf):
    sandbox.set_lifecycle("time", service="cloudformation", seconds=0.2)
    cf.create_stack(StackName="app", TemplateBody=body(template("app.yaml")))
    assert status(cf, "app") == "CREATE_IN_PROGRESS"
    time.sleep(0.5)
    assert status(cf, "app") == "CREATE_COMPLETE"


def test_create_existing_stack_is_refused_as_aws_does(cf):
    cf.create_stack(StackName="app", TemplateBody=body(template("app.yaml")))
    assert error(lambda: cf.create_stack(StackName="app", TemplateBody=body(template("app.yaml")))) == {
        "Type": "Sender",
        "Code": "AlreadyExistsException",
        "Message": "Stack [app] already exists",
    }


def test_create_fault_rolls_back_and_deletes_what_was_created(sandbox, cf, manual):
    sandbox.add_fault("fail", "cloudformation", target="app", params={"resource": "Queue", "reason": "Queue quota"})
    cf.create_stack(StackName="app", TemplateBody=body(template("app.yaml")))

    assert statuses(cf, "app", 4) == [
        "CREATE_IN_PROGRESS",
        "ROLLBACK_IN_PROGRESS",
        "ROLLBACK_IN_PROGRESS",
        "ROLLBACK_COMPLETE",
    ]
    stack = cf.describe_stacks(StackName="app")["Stacks"][0]
    assert (
        stack["StackStatusReason"] == "The following resource(s) failed to create: [Queue]. Rollback requested by user."
    )
    recorded = events(cf, "app")
    assert ("Queue", "CREATE_FAILED", "Queue quota") in recorded
    assert ("Config", "CREATE_FAILED", "Resource creation cancelled") in recorded
    assert ("Topic", "DELETE_COMPLETE", None) in recorded
    assert stack_statuses(cf, "app") == ["CREATE_IN_PROGRESS", "ROLLBACK_IN_PROGRESS", "ROLLBACK_COMPLETE"]
    assert sandbox.boto3("sns").list_topics()["Topics"] == []
    assert cf.list_stack_resources(StackName="app")["StackResourceSummaries"] == []

    with pytest.raises(botocore.exceptions.WaiterError, match="ROLLBACK_COMPLETE"):
        cf.get_waiter("stack_create_complete").wait(StackName="app", WaiterConfig=FAST)
    assert error(lambda: cf.update_stack(StackName="app", TemplateBody=body(app_v2())))["Message"] == (
        f"Stack:{stack['StackId']} is in ROLLBACK_COMPLETE state and can not be updated."
    )


def test_create_fault_without_rollback_stays_failed_until_rollback_stack(sandbox, cf, manual):
    sandbox.add_fault("fail", "cloudformation", target="app", params={"resource": "Config"})
    cf.create_stack(StackName="app", TemplateBody=body(template("app.yaml")), OnFailure="DO_NOTHING")

    assert statuses(cf, "app", 3) == ["CREATE_IN_PROGRESS", "CREATE_FAILED", "CREATE_FAILED"]
    stack = cf.describe_stacks(StackName="app")["Stacks"][0]
    assert stack["StackStatusReason"] == "The following resource(s) failed to create: [Config]. "
    assert stack["DisableRollback"] is True
    assert ("Config", "CREATE_FAILED", ACCESS_DENIED) in events(cf, "app")
    assert len(sandbox.boto3("sns").list_topics()["Topics"]) == 1  # what completed is kept

    cf.rollback_stack(StackName="app")
    assert statuses(cf, "app", 2) == ["ROLLBACK_IN_PROGRESS", "ROLLBACK_COMPLETE"]
    assert sandbox.boto3("sns").list_topics()["Topics"] == []


def test_fault_targets_only_its_stack_and_is_listed_as_fired(sandbox, cf):
    sandbox.add_fault("fail", "cloudformation", target="payments")
    cf.create_stack(StackName="orders", TemplateBody=body(template("app.yaml")))
    assert status(cf, "orders") == "CREATE_COMPLETE"
    assert sandbox.faults()[0]["fired"] == 0

    cf.create_stack(StackName="payments", TemplateBody=body(template("app.yaml")))
    assert status(cf, "payments") == "ROLLBACK_COMPLETE"
    assert ("Topic", "CREATE_FAILED", ACCESS_DENIED) in events(cf, "payments")  # the first resource by default
    [fault] = sandbox.faults()
    assert fault["fired_on"] == ["payments"] and fault["exhausted"]


# -- update ------------------------------------------------------------------------------------
def test_update_progresses_through_cleanup_to_complete(sandbox, cf, manual):
    cf.create_stack(StackName="app", TemplateBody=body(template("app.yaml")))
    statuses(cf, "app", 2)
    cf.update_stack(
        StackName="app", TemplateBody=body(app_v2()), Parameters=[{"ParameterKey": "Env", "ParameterValue": "prod"}]
    )

    assert statuses(cf, "app", 3) == ["UPDATE_IN_PROGRESS", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_COMPLETE"]
    assert ssm_value(sandbox, "/app/env") == "prod"
    cf.get_waiter("stack_update_complete").wait(StackName="app", WaiterConfig=FAST)
    updated = [(lid, s) for lid, s, _ in events(cf, "app") if s.startswith("UPDATE")]
    assert ("Topic", "UPDATE_COMPLETE") in updated and ("Config", "UPDATE_COMPLETE") in updated
    assert ("Queue", "UPDATE_IN_PROGRESS") not in updated  # untouched


def test_update_without_changes_is_refused(cf):
    cf.create_stack(StackName="app", TemplateBody=body(template("app.yaml")))
    assert error(lambda: cf.update_stack(StackName="app", TemplateBody=body(template("app.yaml")))) == {
        "Type": "Sender",
        "Code": "ValidationError",
        "Message": "No updates are to be performed.",
    }
    assert error(lambda: cf.update_stack(StackName="nope", UsePreviousTemplate=True))["Message"] == (
        "Stack [nope] does not exist"
    )


def test_update_fault_rolls_back_and_restores_template_parameters_outputs(sandbox, cf, manual):
    cf.create_stack(StackName="app", TemplateBody=body(template("app.yaml")))
    statuses(cf, "app", 2)
    sandbox.add_fault("fail", "cloudformation", target="app", params={"resource": "Config"})
    cf.update_stack(
        StackName="app", TemplateBody=body(app_v2()), Parameters=[{"ParameterKey": "Env", "ParameterValue": "prod"}]
    )

    during = cf.describe_stacks(StackName="app")["Stacks"][0]
    assert during["StackStatus"] == "UPDATE_IN_PROGRESS"
    assert during["Parameters"] == [{"ParameterKey": "Env", "ParameterValue": "prod"}]
    assert statuses(cf, "app", 4) == [
        "UPDATE_ROLLBACK_IN_PROGRESS",
        "UPDATE_ROLLBACK_IN_PROGRESS",
        "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
        "UPDATE_ROLLBACK_COMPLETE",
    ]
    stack = cf.describe_stacks(StackName="app")["Stacks"][0]
    assert stack["StackStatusReason"] == "The following resource(s) failed to update: [Config]. "
    assert stack["Parameters"] == [{"ParameterKey": "Env", "ParameterValue": "dev"}]
    assert {o["OutputKey"] for o in stack["Outputs"]} == {"TopicArn", "Env"}
    assert cf.get_template(StackName="app")["TemplateBody"] == template("app.yaml")
    assert ssm_value(sandbox, "/app/env") == "dev"
    recorded = events(cf, "app")
    assert ("Config", "UPDATE_FAILED", ACCESS_DENIED) in recorded
    assert stack_statuses(cf, "app")[2:] == [
        "UPDATE_IN_PROGRESS",
        "UPDATE_ROLLBACK_IN_PROGRESS",
        "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
        "UPDATE_ROLLBACK_COMPLETE",
    ]

    with pytest.raises(botocore.exceptions.WaiterError, match="UPDATE_ROLLBACK_COMPLETE"):
        cf.get_waiter("stack_update_complete").wait(StackName="app", WaiterConfig=FAST)
    cf.get_waiter("stack_rollback_complete").wait(StackName="app", WaiterConfig=FAST)
    # A rolled-back stack can be updated again.
    cf.update_stack(StackName="app", TemplateBody=body(app_v2()))
    cf.get_waiter("stack_update_complete").wait(StackName="app", WaiterConfig=FAST)


def test_update_fault_with_rollback_disabled_waits_for_rollback_stack(sandbox, cf):
    cf.create_stack(StackName="app", TemplateBody=body(template("app.yaml")))
    sandbox.add_fault("fail", "cloudformation", target="app")
    cf.update_stack(StackName="app", TemplateBody=body(app_v2()), DisableRollback=True)

    with pytest.raises(botocore.exceptions.WaiterError, match="UPDATE_FAILED"):
        cf.get_waiter("stack_update_complete").wait(StackName="app", WaiterConfig=FAST)
    assert cf.describe_stacks(StackName="app")["Stacks"][0]["StackStatusReason"] == (
        "The following resource(s) failed to update: [Topic]. "
    )
    with pytest.raises(botocore.exceptions.WaiterError, match="UPDATE_FAILED"):
        cf.get_waiter("stack_rollback_complete").wait(StackName="app", WaiterConfig=FAST)

    stack_id = cf.rollback_stack(StackName="app", ClientRequestToken="rb-1")["StackId"]
    assert cf.rollback_stack(StackName="app", ClientRequestToken="rb-1")["StackId"] == stack_id  # a retry
    cf.get_waiter("stack_rollback_complete").wait(StackName="app", WaiterConfig=FAST)
    assert cf.get_template(StackName="app")["TemplateBody"] == template("app.yaml")
    assert stack_statuses(cf, "app")[-3:] == [
        "UPDATE_ROLLBACK_IN_PROGRESS",
        "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
        "UPDATE_ROLLBACK_COMPLETE",
    ]


def test_failed_rollback_ends_update_rollback_failed_until_continued(sandbox, cf):
    cf.create_stack(StackName="app", TemplateBody=body(template("app.yaml")))
    sandbox.add_fault("fail", "cloudformation", target="app", params={"resource": "Config", "rollback_fails": True})
    cf.update_stack(
        StackName="app", TemplateBody=body(app_v2()), Parameters=[{"ParameterKey": "Env", "ParameterValue": "prod"}]
    )

    with pytest.raises(botocore.exceptions.WaiterError, match="UPDATE_ROLLBACK_FAILED"):
        cf.get_waiter("stack_rollback_complete").wait(StackName="app", WaiterConfig=FAST)
    assert error(lambda: cf.update_stack(StackName="app", UsePreviousTemplate=True))["Message"].endswith(
        "is in UPDATE_ROLLBACK_FAILED state and can not be updated."
    )

    cf.continue_update_rollback(StackName="app")
    cf.get_waiter("stack_rollback_complete").wait(StackName="app", WaiterConfig=FAST)
    assert ssm_value(sandbox, "/app/env") == "dev"
    assert cf.describe_stacks(StackName="app")["Stacks"][0]["Parameters"][0]["ParameterValue"] == "dev"


def test_rollbacks_are_refused_from_other_states(cf):
    cf.create_stack(StackName="app", TemplateBody=body(template("app.yaml")))
    for call, action in (
        (cf.rollback_stack, "RollbackStack"),
        (cf.cancel_update_stack, "CancelUpdateStack"),
        (cf.continue_update_rollback, "ContinueUpdateRollback"),
    ):
        assert error(lambda call=call: call(StackName="app")) == {
            "Type": "Sender",
            "Code": "ValidationError",
            "Message": f"{action} cannot be called from current stack status",
        }
    assert status(cf, "app") == "CREATE_COMPLETE"


def test_cancel_update_rolls_back_at_once(sandbox, cf, manual):
    cf.create_stack(StackName="app", TemplateBody=body(template("app.yaml")))
    statuses(cf, "app", 2)
    cf.update_stack(
        StackName="app", TemplateBody=body(app_v2()), Parameters=[{"ParameterKey": "Env", "ParameterValue": "prod"}]
    )
    assert status(cf, "app") == "UPDATE_IN_PROGRESS"

    cf.cancel_update_stack(StackName="app", ClientRequestToken="cancel-1")
    assert statuses(cf, "app", 3) == [
        "UPDATE_ROLLBACK_IN_PROGRESS",
        "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
        "UPDATE_ROLLBACK_COMPLETE",
    ]
    assert ssm_value(sandbox, "/app/env") == "dev"
    found = cf.describe_stack_events(StackName="app")["StackEvents"]
    cancelled = [e for e in found if e.get("ResourceStatusReason") == "Resource update cancelled"]
    assert {e["LogicalResourceId"] for e in cancelled} == {"Topic", "Config"}
    assert {e["ClientRequestToken"] for e in cancelled} == {"cancel-1"}


def test_client_request_token_makes_retries_harmless_and_tags_events(cf, manual):
    first = cf.create_stack(StackName="app", TemplateBody=body(template("app.yaml")), ClientRequestToken="create-1")
    retry = cf.create_stack(StackName="app", TemplateBody=body(template("app.yaml")), ClientRequestToken="create-1")
    assert retry["StackId"] == first["StackId"]
    statuses(cf, "app", 2)

    update = {"StackName": "app", "TemplateBody": body(app_v2()), "ClientRequestToken": "update-1"}
    cf.update_stack(**update)
    cf.update_stack(**update)  # AWS answers a retry with success, even while the update runs
    statuses(cf, "app", 3)
    cf.update_stack(**update)  # and after it finished: no "No updates are to be performed."

    found = cf.describe_stack_events(StackName="app")["StackEvents"]
    assert [e["ResourceStatus"] for e in found if e["LogicalResourceId"] == "app"].count("UPDATE_IN_PROGRESS") == 1
    assert {e["ClientRequestToken"] for e in found} == {"create-1", "update-1"}
    assert error(lambda: cf.delete_stack(StackName="app", ClientRequestToken="update-1"))["Code"] == (
        "TokenAlreadyExistsException"
    )


# -- change sets -------------------------------------------------------------------------------
def test_change_set_defaults_to_update_and_needs_the_stack(cf):
    assert error(
        lambda: cf.create_change_set(StackName="app", ChangeSetName="cs", TemplateBody=body(template("app.yaml")))
    ) == {"Type": "Sender", "Code": "ValidationError", "Message": "Stack [app] does not exist"}
    assert cf.list_stacks()["StackSummaries"] == []


def test_create_change_set_makes_one_stack_in_review(cf):
    created = cf.create_change_set(
        StackName="app", ChangeSetName="first", ChangeSetType="CREATE", TemplateBody=body(template("app.yaml"))
    )
    [summary] = cf.list_stacks()["StackSummaries"]
    assert summary["StackStatus"] == "REVIEW_IN_PROGRESS" and summary["StackId"] == created["StackId"]
    cf.get_waiter("change_set_create_complete").wait(ChangeSetName=created["Id"], WaiterConfig=FAST)
    described = cf.describe_change_set(ChangeSetName="first", StackName="app")
    assert [
        (c["ResourceChange"]["Action"], c["ResourceChange"]["LogicalResourceId"]) for c in described["Changes"]
    ] == [
        ("Add", "Topic"),
        ("Add", "Queue"),
        ("Add", "Config"),
    ]
    assert cf.list_change_sets(StackName="app")["Summaries"][0]["ExecutionStatus"] == "AVAILABLE"

    cf.execute_change_set(ChangeSetName="first", StackName="app")
    cf.get_waiter("stack_create_complete").wait(StackName="app", WaiterConfig=FAST)
    assert [s["StackId"] for s in cf.list_stacks()["StackSummaries"]] == [created["StackId"]]
    assert cf.describe_change_set(ChangeSetName=created["Id"])["ExecutionStatus"] == "EXECUTE_COMPLETE"
    assert cf.describe_stacks(StackName="app")["Stacks"][0]["ChangeSetId"] == created["Id"]

    again = lambda: cf.create_change_set(  # noqa: E731
        StackName="app", ChangeSetName="again", ChangeSetType="CREATE", TemplateBody=body(template("app.yaml"))
    )
    assert (
        error(again)["Message"] == "Stack [app] already exists and cannot be created again with the changeSet [again]."
    )


def test_change_set_without_changes_fails_with_aws_reason(cf):
    cf.create_stack(StackName="app", TemplateBody=body(template("app.yaml")))
    created = cf.create_change_set(StackName="app", ChangeSetName="same", UsePreviousTemplate=True)
    described = cf.describe_change_set(ChangeSetName=created["Id"])
    assert (described["Status"], described["ExecutionStatus"]) == ("FAILED", "UNAVAILABLE")
    reason = "The submitted information didn't contain changes. Submit different information to create a change set."
    assert described["StatusReason"] == reason

    with pytest.raises(botocore.exceptions.WaiterError) as err:
        cf.get_waiter("change_set_create_complete").wait(ChangeSetName=created["Id"], WaiterConfig=FAST)
    assert err.value.last_response["StatusReason"] == reason
    failure = error(lambda: cf.execute_change_set(ChangeSetName=created["Id"]))
    assert failure["Code"] == "InvalidChangeSetStatus"
    assert failure["Message"] == f"ChangeSet [{created['Id']}] cannot be executed in its current status of [FAILED]"
    assert (
        error(lambda: cf.describe_change_set(ChangeSetName="missing", StackName="app"))["Code"] == "ChangeSetNotFound"
    )


def test_change_set_lists_replacement_scope_and_details(sandbox, cf):
    cf.create_stack(
        StackName="deploy", TemplateBody=body(template("deploy-role.yaml")), Capabilities=["CAPABILITY_IAM"]
    )
    role_name = cf.describe_stack_resource(StackName="deploy", LogicalResourceId="DeployRole")
    role_name = role_name["StackResourceDetail"]["PhysicalResourceId"]
    changed = template("deploy-role.yaml")
    role = changed["Resources"]["DeployRole"]["Properties"]
    role["Path"] = "/shipflow/v2/"  # a new path means a new role
    role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"] = "codebuild.amazonaws.com"
    del changed["Resources"]["Artifacts"]
    changed["Resources"]["Alerts"] = {"Type": "AWS::SNS::Topic"}

    cf.create_change_set(StackName="deploy", ChangeSetName="iam", TemplateBody=body(changed))
    changes = {
        c["ResourceChange"]["LogicalResourceId"]: c["ResourceChange"]
        for c in cf.describe_change_set(ChangeSetName="iam", StackName="deploy")["Changes"]
    }
    assert {lid: c["Action"] for lid, c in changes.items()} == {
        "DeployRole": "Modify",
        "RoleName": "Modify",
        "Alerts": "Add",
        "Artifacts": "Remove",
    }
    role_change = changes["DeployRole"]
    assert (role_change["Replacement"], role_change["Scope"], role_change["PhysicalResourceId"]) == (
        "True",
        ["Properties"],
        role_name,
    )
    assert {
        (d["Target"]["Name"], d["Target"]["RequiresRecreation"], d["ChangeSource"]) for d in role_change["Details"]
    } == {
        ("Path", "Always", "DirectModification"),
        ("AssumeRolePolicyDocument", "Never", "DirectModification"),
    }
    # The parameter's name embeds the role's name, which changes once the role is replaced.
    parameter = changes["RoleName"]
    assert parameter["Replacement"] == "Conditional"
    assert {
        (d["Target"]["Name"], d["Evaluation"], d["ChangeSource"], d["CausingEntity"]) for d in parameter["Details"]
    } == {
        ("Name", "Dynamic", "ResourceReference", "DeployRole"),
        ("Value", "Dynamic", "ResourceAttribute", "DeployRole.Arn"),
    }
    assert changes["Artifacts"]["PolicyAction"] == "Delete"
    assert (changes["Alerts"]["Scope"], changes["Alerts"]["Details"]) == ([], [])

    cf.execute_change_set(ChangeSetName="iam", StackName="deploy")
    cf.get_waiter("stack_update_complete").wait(StackName="deploy", WaiterConfig=FAST)
    assert sandbox.boto3("s3").list_buckets()["Buckets"] == []
    assert len(sandbox.boto3("sns").list_topics()["Topics"]) == 1


def test_in_place_change_is_not_a_replacement(cf):
    cf.create_stack(StackName="app", TemplateBody=body(template("app.yaml")))
    cf.create_change_set(
        StackName="app",
        ChangeSetName="env",
        UsePreviousTemplate=True,
        Parameters=[{"ParameterKey": "Env", "ParameterValue": "prod"}],
    )
    [change] = cf.describe_change_set(ChangeSetName="env", StackName="app")["Changes"]
    assert change["ResourceChange"]["LogicalResourceId"] == "Config"
    assert change["ResourceChange"]["Replacement"] == "False"
    assert change["ResourceChange"]["Details"] == [
        {
            "Target": {"Attribute": "Properties", "Name": "Value", "RequiresRecreation": "Never"},
            "Evaluation": "Static",
            "ChangeSource": "ParameterReference",
            "CausingEntity": "Env",
        }
    ]


def test_executing_a_change_set_consumes_faults_and_rolls_back(sandbox, cf, manual):
    cf.create_stack(StackName="app", TemplateBody=body(template("app.yaml")))
    statuses(cf, "app", 2)
    cf.create_change_set(StackName="app", ChangeSetName="v2", TemplateBody=body(app_v2()))
    cf.create_change_set(StackName="app", ChangeSetName="other", TemplateBody=body(app_v2()))
    sandbox.add_fault("fail", "cloudformation", target="app", params={"resource": "Topic"})

    cf.execute_change_set(ChangeSetName="v2", StackName="app", ClientRequestToken="exec-1")
    cf.execute_change_set(ChangeSetName="v2", StackName="app", ClientRequestToken="exec-1")  # a retry
    assert statuses(cf, "app", 5)[-1] == "UPDATE_ROLLBACK_COMPLETE"
    assert [s["ChangeSetName"] for s in cf.list_change_sets(StackName="app")["Summaries"]] == ["v2"]
    assert cf.describe_change_set(ChangeSetName="v2", StackName="app")["ExecutionStatus"] == "EXECUTE_FAILED"
    assert sandbox.faults()[0]["exhausted"]
    failed = [
        e for e in cf.describe_stack_events(StackName="app")["StackEvents"] if e["ResourceStatus"] == "UPDATE_FAILED"
    ]
    assert [(e["LogicalResourceId"], e["ClientRequestToken"]) for e in failed] == [("Topic", "exec-1")]


# -- delete ------------------------------------------------------------------------------------
def test_delete_progresses_and_the_stack_is_gone_by_name(sandbox, cf, manual):
    stack_id = cf.create_stack(StackName="app", TemplateBody=body(template("app.yaml")))["StackId"]
    statuses(cf, "app", 2)
    cf.delete_stack(StackName="app")
    assert statuses(cf, "app", 2) == ["DELETE_IN_PROGRESS", "DELETE_COMPLETE"]
    assert error(lambda: cf.describe_stacks(StackName="app"))["Message"] == "Stack with id app does not exist"
    assert cf.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"] == "DELETE_COMPLETE"
    cf.get_waiter("stack_delete_complete").wait(StackName="app", WaiterConfig=FAST)
    assert sandbox.boto3("sns").list_topics()["Topics"] == []
    assert ("Config", "DELETE_COMPLETE", None) in events(cf, stack_id)


def test_delete_fault_leaves_the_stack_delete_failed(sandbox, cf):
    cf.create_stack(StackName="app", TemplateBody=body(template("app.yaml")))
    sandbox.add_fault("fail", "cloudformation", target="app", params={"resource": "Queue"})
    cf.delete_stack(StackName="app")
    with pytest.raises(botocore.exceptions.WaiterError, match="DELETE_FAILED"):
        cf.get_waiter("stack_delete_complete").wait(StackName="app", WaiterConfig=FAST)
    stack = cf.describe_stacks(StackName="app")["Stacks"][0]
    assert stack["StackStatusReason"] == "The following resource(s) failed to delete: [Queue]. "
    assert len(sandbox.boto3("sqs").list_queues().get("QueueUrls", [])) == 1

    cf.delete_stack(StackName="app")  # deleting again works once the fault is spent
    cf.get_waiter("stack_delete_complete").wait(StackName="app", WaiterConfig=FAST)
    assert sandbox.boto3("sqs").list_queues().get("QueueUrls", []) == []
