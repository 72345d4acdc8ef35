"""CodeDeploy in the sandbox, through boto3 over HTTP: progress, configs, faults, stops, alarms, rollbacks."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import botocore.exceptions
import pytest

from shipflow.sandbox.codedeploy import revision_label

APP = "payments-api"
GROUP = "payments-api-staging"
ROLE = "arn:aws:iam::123456789012:role/shipflow-sandbox-deployer"


def s3_revision(version: str) -> dict:
    return {
        "revisionType": "S3",
        "s3Location": {"bucket": "shipflow-artifacts", "key": f"{APP}/{version}.zip", "bundleType": "zip"},
    }


@pytest.fixture
def codedeploy(sandbox):
    """A CodeDeploy client whose deployments move one step per describe."""
    sandbox.set_lifecycle("manual", service="codedeploy", times=1)
    client = sandbox.boto3("codedeploy", retries={"mode": "standard", "total_max_attempts": 1})
    client.create_application(applicationName=APP, computePlatform="Server")
    return client


def make_group(client, name: str = GROUP, app: str = APP, **kwargs) -> str:
    client.create_deployment_group(applicationName=app, deploymentGroupName=name, serviceRoleArn=ROLE, **kwargs)
    return name


def deploy(client, version: str, group: str = GROUP, app: str = APP, **kwargs) -> str:
    return client.create_deployment(
        applicationName=app, deploymentGroupName=group, revision=s3_revision(version), **kwargs
    )["deploymentId"]


def describe(client, deployment_id: str) -> dict:
    return client.get_deployment(deploymentId=deployment_id)["deploymentInfo"]


def statuses_until_done(client, deployment_id: str, limit: int = 20) -> list[str]:
    seen = []
    for _ in range(limit):
        seen.append(describe(client, deployment_id)["status"])
        if seen[-1] in ("Succeeded", "Failed", "Stopped"):
            return seen
    raise AssertionError(f"{deployment_id} still {seen[-1]} after {limit} describes: {seen}")


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def test_deployment_moves_from_created_through_in_progress_to_succeeded(sandbox, codedeploy):
    sandbox.set_lifecycle("manual", service="codedeploy", times=2)
    make_group(codedeploy, deploymentConfigName="CodeDeployDefault.AllAtOnce")
    deployment_id = deploy(codedeploy, "1.0.0", description="first release")
    assert re.fullmatch(r"d-[A-Z0-9]{9}", deployment_id)

    created = describe(codedeploy, deployment_id)
    assert created["status"] == "Created"
    assert created["deploymentOverview"]["Pending"] == 4
    assert "startTime" not in created and "completeTime" not in created

    in_progress = describe(codedeploy, deployment_id)
    assert in_progress["status"] == "InProgress"
    assert in_progress["deploymentOverview"]["InProgress"] == 4
    assert in_progress["startTime"] >= in_progress["createTime"]

    assert describe(codedeploy, deployment_id)["status"] == "InProgress"
    done = describe(codedeploy, deployment_id)
    assert done["status"] == "Succeeded"
    overview = {"Pending": 0, "InProgress": 0, "Succeeded": 4, "Failed": 0, "Skipped": 0, "Ready": 0}
    assert done["deploymentOverview"] == overview
    assert done["completeTime"] >= done["startTime"]
    assert done["creator"] == "user"
    assert done["description"] == "first release"
    assert done["deploymentConfigName"] == "CodeDeployDefault.AllAtOnce"
    assert done["revision"] == s3_revision("1.0.0")
    assert "errorInformation" not in done


@pytest.mark.parametrize(
    "platform, config, in_progress_steps",
    [
        ("Lambda", "CodeDeployDefault.LambdaCanary10Percent5Minutes", 2),
        ("Lambda", "CodeDeployDefault.LambdaLinear10PercentEvery1Minute", 10),
        ("Lambda", "CodeDeployDefault.LambdaAllAtOnce", 1),
        ("ECS", "CodeDeployDefault.ECSCanary10Percent15Minutes", 2),
        ("Server", "CodeDeployDefault.HalfAtATime", 2),
        ("Server", "CodeDeployDefault.OneAtATime", 4),
    ],
)
def test_in_progress_steps_follow_the_deployment_config(codedeploy, platform, config, in_progress_steps):
    app = f"app-{platform.lower()}"
    codedeploy.create_application(applicationName=app, computePlatform=platform)
    make_group(codedeploy, name="g", app=app, deploymentConfigName=config)
    revision = {"revisionType": "AppSpecContent", "appSpecContent": {"content": "version: 0.0"}}
    if platform == "Server":
        revision = s3_revision("1.0.0")
    deployment_id = codedeploy.create_deployment(applicationName=app, deploymentGroupName="g", revision=revision)[
        "deploymentId"
    ]
    seen = statuses_until_done(codedeploy, deployment_id)
    assert seen == ["InProgress"] * in_progress_steps + ["Succeeded"]


def test_appspec_content_is_returned_as_its_sha256_only(codedeploy):
    codedeploy.create_application(applicationName="fn", computePlatform="Lambda")
    make_group(codedeploy, name="fn-live", app="fn")
    content = "version: 0.0\nResources: []\n"
    deployment_id = codedeploy.create_deployment(
        applicationName="fn",
        deploymentGroupName="fn-live",
        revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": content}},
    )["deploymentId"]
    info = describe(codedeploy, deployment_id)
    assert info["computePlatform"] == "Lambda"
    assert info["deploymentConfigName"] == "CodeDeployDefault.LambdaAllAtOnce"  # the Lambda group default
    appspec = info["revision"]["appSpecContent"]
    assert "content" not in appspec  # AWS never returns it
    assert revision_label(info["revision"]) == revision_label(
        {"revisionType": "AppSpecContent", "appSpecContent": {"content": content}}
    )


def test_revision_labels_name_what_serves_traffic():
    assert revision_label(s3_revision("1.0.0")) == "s3://shipflow-artifacts/payments-api/1.0.0.zip"
    versioned = {"revisionType": "S3", "s3Location": {"bucket": "b", "key": "k.zip", "version": "v7"}}
    assert revision_label(versioned) == "s3://b/k.zip?versionId=v7"
    appspec = {"revisionType": "AppSpecContent", "appSpecContent": {"content": "version: 0.0"}}
    assert re.fullmatch(r"appspec:[0-9a-f]{12}", revision_label(appspec))
    given = {"revisionType": "AppSpecContent", "appSpecContent": {"sha256": "ABCDEF0123456789" * 4}}
    assert revision_label(given) == "appspec:abcdef012345"
    github = {"revisionType": "GitHub", "gitHubLocation": {"repository": "acme/payments", "commitId": "9f2c1e0"}}
    assert revision_label(github) == "github:acme/payments@9f2c1e0"
    with pytest.raises(ValueError, match="bucket"):
        revision_label({"revisionType": "S3", "s3Location": {"key": "k"}})


def test_waiter_succeeds_on_success_and_fails_on_failure(sandbox, codedeploy):
    make_group(codedeploy)
    fast = {"Delay": 0, "MaxAttempts": 10}
    first = deploy(codedeploy, "1.0.0")
    codedeploy.get_waiter("deployment_successful").wait(deploymentId=first, WaiterConfig=fast)
    assert describe(codedeploy, first)["status"] == "Succeeded"

    sandbox.add_fault("fail", "codedeploy", target=GROUP)
    second = deploy(codedeploy, "1.1.0")
    with pytest.raises(botocore.exceptions.WaiterError, match="Failed"):
        codedeploy.get_waiter("deployment_successful").wait(deploymentId=second, WaiterConfig=fast)


def test_ids_are_validated_like_aws(codedeploy):
    with pytest.raises(codedeploy.exceptions.InvalidDeploymentIdException):
        codedeploy.get_deployment(deploymentId="0b9e4b1c-1b6e-4c47-9b59-2f0d1f3c5a10")
    with pytest.raises(codedeploy.exceptions.DeploymentDoesNotExistException):
        codedeploy.get_deployment(deploymentId="d-AAAAAAAAA")


def test_predefined_and_custom_deployment_configs(codedeploy):
    one = codedeploy.get_deployment_config(deploymentConfigName="CodeDeployDefault.OneAtATime")["deploymentConfigInfo"]
    assert one["computePlatform"] == "Server"
    assert one["minimumHealthyHosts"] == {"type": "MOST_CONCURRENCY", "value": 1}
    canary = codedeploy.get_deployment_config(deploymentConfigName="CodeDeployDefault.LambdaCanary10Percent5Minutes")
    assert canary["deploymentConfigInfo"]["trafficRoutingConfig"] == {
        "type": "TimeBasedCanary",
        "timeBasedCanary": {"canaryPercentage": 10, "canaryInterval": 5},
    }
    linear = codedeploy.get_deployment_config(deploymentConfigName="CodeDeployDefault.ECSLinear10PercentEvery1Minutes")
    assert linear["deploymentConfigInfo"]["computePlatform"] == "ECS"

    names = codedeploy.list_deployment_configs()["deploymentConfigsList"]
    assert len(names) == 17 and "CodeDeployDefault.LambdaLinear10PercentEvery1Minute" in names

    config_id = codedeploy.create_deployment_config(
        deploymentConfigName="ThreeQuartersHealthy", minimumHealthyHosts={"type": "FLEET_PERCENT", "value": 75}
    )["deploymentConfigId"]
    custom = codedeploy.get_deployment_config(deploymentConfigName="ThreeQuartersHealthy")["deploymentConfigInfo"]
    assert custom["deploymentConfigId"] == config_id
    assert custom["minimumHealthyHosts"] == {"type": "FLEET_PERCENT", "value": 75}
    assert custom["computePlatform"] == "Server"
    assert "ThreeQuartersHealthy" in codedeploy.list_deployment_configs()["deploymentConfigsList"]
    with pytest.raises(codedeploy.exceptions.DeploymentConfigAlreadyExistsException):
        codedeploy.create_deployment_config(
            deploymentConfigName="ThreeQuartersHealthy", minimumHealthyHosts={"type": "HOST_COUNT", "value": 1}
        )

    # 75% of the notional 4-instance fleet healthy: one instance at a time.
    make_group(codedeploy, deploymentConfigName="ThreeQuartersHealthy")
    assert statuses_until_done(codedeploy, deploy(codedeploy, "1.0.0")) == ["InProgress"] * 4 + ["Succeeded"]
    with pytest.raises(codedeploy.exceptions.DeploymentConfigInUseException):
        codedeploy.delete_deployment_config(deploymentConfigName="ThreeQuartersHealthy")
    with pytest.raises(codedeploy.exceptions.InvalidOperationException):
        codedeploy.delete_deployment_config(deploymentConfigName="CodeDeployDefault.AllAtOnce")

    with pytest.raises(codedeploy.exceptions.DeploymentConfigDoesNotExistException) as missing:
        codedeploy.get_deployment_config(deploymentConfigName="CodeDeployDefault.Nope")
    assert "CodeDeployDefault.Nope" in missing.value.response["Error"]["Message"]
    with pytest.raises(codedeploy.exceptions.DeploymentConfigDoesNotExistException):
        make_group(codedeploy, name="other", deploymentConfigName="NoSuchConfig")


def test_second_deployment_is_refused_while_one_is_in_flight(codedeploy):
    make_group(codedeploy, deploymentConfigName="CodeDeployDefault.AllAtOnce")
    first = deploy(codedeploy, "1.0.0")
    with pytest.raises(codedeploy.exceptions.DeploymentLimitExceededException) as refused:
        deploy(codedeploy, "1.1.0")
    assert refused.value.response["Error"]["Message"] == (
        f"The Deployment Group '{GROUP}' already has an active Deployment '{first}'"
    )
    statuses_until_done(codedeploy, first)
    second = deploy(codedeploy, "1.1.0")
    assert second != first


def test_stop_without_rollback_ends_stopped(codedeploy):
    make_group(codedeploy, deploymentConfigName="CodeDeployDefault.HalfAtATime")
    deployment_id = deploy(codedeploy, "1.0.0")
    assert describe(codedeploy, deployment_id)["status"] == "InProgress"

    answer = codedeploy.stop_deployment(deploymentId=deployment_id)
    assert answer["status"] in ("Pending", "Succeeded") and answer["statusMessage"]
    stopped = describe(codedeploy, deployment_id)
    assert stopped["status"] == "Stopped"
    assert stopped["errorInformation"]["code"] == "MANUAL_STOP"
    assert stopped["deploymentOverview"]["Skipped"] == 4 and stopped["deploymentOverview"]["InProgress"] == 0
    assert "rollbackInfo" not in stopped
    assert codedeploy.list_deployments(applicationName=APP, deploymentGroupName=GROUP)["deployments"] == [deployment_id]
    with pytest.raises(codedeploy.exceptions.DeploymentAlreadyCompletedException):
        codedeploy.stop_deployment(deploymentId=deployment_id)
    # The stopped deployment no longer holds the group.
    assert describe(codedeploy, deploy(codedeploy, "1.0.1"))["status"] == "InProgress"


def test_stop_with_rollback_redeploys_the_last_good_revision(codedeploy):
    make_group(codedeploy, deploymentConfigName="CodeDeployDefault.AllAtOnce")
    good = deploy(codedeploy, "1.0.0")
    statuses_until_done(codedeploy, good)
    bad = deploy(codedeploy, "2.0.0")
    describe(codedeploy, bad)

    codedeploy.stop_deployment(deploymentId=bad, autoRollbackEnabled=True)
    stopped = describe(codedeploy, bad)
    assert stopped["status"] == "Stopped"
    rollback_id = stopped["rollbackInfo"]["rollbackDeploymentId"]
    rollback = describe(codedeploy, rollback_id)
    assert rollback["creator"] == "codeDeployRollback"
    assert rollback["revision"] == s3_revision("1.0.0")
    assert rollback["rollbackInfo"]["rollbackTriggeringDeploymentId"] == bad
    assert statuses_until_done(codedeploy, rollback_id)[-1] == "Succeeded"
    group = codedeploy.get_deployment_group(applicationName=APP, deploymentGroupName=GROUP)["deploymentGroupInfo"]
    assert group["lastSuccessfulDeployment"]["deploymentId"] == rollback_id


def test_stop_on_request_rolls_back_when_the_group_says_so(codedeploy):
    make_group(
        codedeploy,
        deploymentConfigName="CodeDeployDefault.AllAtOnce",
        autoRollbackConfiguration={"enabled": True, "events": ["DEPLOYMENT_STOP_ON_REQUEST"]},
    )
    statuses_until_done(codedeploy, deploy(codedeploy, "1.0.0"))
    bad = deploy(codedeploy, "2.0.0")
    codedeploy.stop_deployment(deploymentId=bad)
    rollback_id = describe(codedeploy, bad)["rollbackInfo"]["rollbackDeploymentId"]
    statuses_until_done(codedeploy, rollback_id)

    # An explicit autoRollbackEnabled=False wins over the group's configuration.
    other = deploy(codedeploy, "2.0.1")
    codedeploy.stop_deployment(deploymentId=other, autoRollbackEnabled=False)
    assert "rollbackInfo" not in describe(codedeploy, other)


def test_fail_fault_fails_the_targeted_group_with_error_information(sandbox, codedeploy):
    codedeploy.create_application(applicationName="fn", computePlatform="Lambda")
    linear = "CodeDeployDefault.LambdaLinear10PercentEvery1Minute"
    make_group(codedeploy, name="fn-live", app="fn", deploymentConfigName=linear)
    make_group(codedeploy, name="fn-canary", app="fn")
    sandbox.add_fault(
        "fail",
        "codedeploy",
        target="fn/fn-live",
        params={"code": "HEALTH_CONSTRAINTS", "message": "too few healthy targets", "at_step": 3},
    )
    appspec = {"revisionType": "AppSpecContent", "appSpecContent": {"content": "version: 0.0"}}

    untouched = codedeploy.create_deployment(applicationName="fn", deploymentGroupName="fn-canary", revision=appspec)
    assert statuses_until_done(codedeploy, untouched["deploymentId"])[-1] == "Succeeded"

    failing = codedeploy.create_deployment(applicationName="fn", deploymentGroupName="fn-live", revision=appspec)
    assert statuses_until_done(codedeploy, failing["deploymentId"]) == ["InProgress"] * 3 + ["Failed"]
    info = describe(codedeploy, failing["deploymentId"])
    assert info["errorInformation"] == {"code": "HEALTH_CONSTRAINTS", "message": "too few healthy targets"}
    assert info["deploymentOverview"]["Failed"] == 1
    [fault] = sandbox.faults()
    assert fault["fired_on"] == ["fn/fn-live"] and fault["exhausted"]


def test_fail_fault_defaults_to_aws_health_constraints_on_the_last_step(sandbox, codedeploy):
    make_group(codedeploy, deploymentConfigName="CodeDeployDefault.HalfAtATime")
    sandbox.add_fault("fail", "codedeploy", target=GROUP)
    deployment_id = deploy(codedeploy, "1.0.0")
    assert statuses_until_done(codedeploy, deployment_id) == ["InProgress", "InProgress", "Failed"]
    info = describe(codedeploy, deployment_id)
    assert info["errorInformation"]["code"] == "HEALTH_CONSTRAINTS"
    assert info["deploymentOverview"]["Succeeded"] == 2 and info["deploymentOverview"]["Failed"] == 2


def test_auto_rollback_on_failure_redeploys_the_last_good_revision(sandbox, codedeploy):
    make_group(
        codedeploy,
        deploymentConfigName="CodeDeployDefault.AllAtOnce",
        autoRollbackConfiguration={"enabled": True, "events": ["DEPLOYMENT_FAILURE"]},
    )
    good = deploy(codedeploy, "1.0.0")
    statuses_until_done(codedeploy, good)
    sandbox.add_fault("fail", "codedeploy", target=GROUP)
    bad = deploy(codedeploy, "2.0.0")
    assert statuses_until_done(codedeploy, bad)[-1] == "Failed"

    rollback_info = describe(codedeploy, bad)["rollbackInfo"]
    rollback_id = rollback_info["rollbackDeploymentId"]
    assert rollback_info["rollbackMessage"]
    rollback = describe(codedeploy, rollback_id)
    assert rollback["creator"] == "codeDeployRollback"
    assert rollback["revision"] == s3_revision("1.0.0")
    assert rollback["previousRevision"] == s3_revision("1.0.0")
    assert rollback["rollbackInfo"] == {"rollbackTriggeringDeploymentId": bad}
    listed = codedeploy.list_deployments(applicationName=APP, deploymentGroupName=GROUP)["deployments"]
    assert listed == [rollback_id, bad, good]  # newest first


def test_auto_rollback_without_a_previous_success_explains_itself(sandbox, codedeploy):
    make_group(codedeploy, autoRollbackConfiguration={"enabled": True, "events": ["DEPLOYMENT_FAILURE"]})
    sandbox.add_fault("fail", "codedeploy", target=f"{APP}/{GROUP}")
    first = deploy(codedeploy, "1.0.0")
    assert statuses_until_done(codedeploy, first)[-1] == "Failed"
    rollback_info = describe(codedeploy, first)["rollbackInfo"]
    assert "rollbackDeploymentId" not in rollback_info
    assert "no previous successful deployment" in rollback_info["rollbackMessage"]
    assert codedeploy.list_deployments(applicationName=APP, deploymentGroupName=GROUP)["deployments"] == [first]


def put_alarm_in_alarm(sandbox, name: str) -> None:
    """An alarm over a metric with no data that ignores missing data, so only set_alarm_state moves it."""
    cloudwatch = sandbox.boto3("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="Shipflow/Tests",
        MetricName="NoData",
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="ignore",
    )
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="failure drill")


@pytest.mark.parametrize("rolls_back", [False, True])
def test_alarm_in_alarm_stops_an_in_flight_deployment(sandbox, codedeploy, rolls_back):
    events = ["DEPLOYMENT_STOP_ON_ALARM"] if rolls_back else ["DEPLOYMENT_FAILURE"]
    make_group(
        codedeploy,
        deploymentConfigName="CodeDeployDefault.HalfAtATime",
        alarmConfiguration={"enabled": True, "alarms": [{"name": "payments-errors"}], "ignorePollAlarmFailure": True},
        autoRollbackConfiguration={"enabled": True, "events": events},
    )
    statuses_until_done(codedeploy, deploy(codedeploy, "1.0.0"))
    deployment_id = deploy(codedeploy, "2.0.0")
    assert describe(codedeploy, deployment_id)["status"] == "InProgress"

    put_alarm_in_alarm(sandbox, "payments-errors")
    stopped = describe(codedeploy, deployment_id)
    assert stopped["status"] == "Stopped"
    assert stopped["errorInformation"]["code"] == "ALARM_ACTIVE"
    assert "payments-errors" in stopped["errorInformation"]["message"]
    assert ("rollbackDeploymentId" in stopped.get("rollbackInfo", {})) is rolls_back
    if rolls_back:  # the rollback restores the good revision although the alarm is still in ALARM
        rollback_id = stopped["rollbackInfo"]["rollbackDeploymentId"]
        assert statuses_until_done(codedeploy, rollback_id)[-1] == "Succeeded"


def test_alarm_is_polled_by_list_deployments_and_get_deployment_group(sandbox, codedeploy):
    make_group(
        codedeploy,
        deploymentConfigName="CodeDeployDefault.AllAtOnce",
        alarmConfiguration={"enabled": True, "alarms": [{"name": "payments-latency"}]},
    )
    deployment_id = deploy(codedeploy, "1.0.0")
    describe(codedeploy, deployment_id)
    put_alarm_in_alarm(sandbox, "payments-latency")
    stopped = codedeploy.list_deployments(
        applicationName=APP, deploymentGroupName=GROUP, includeOnlyStatuses=["Stopped"]
    )["deployments"]
    assert stopped == [deployment_id]
    group = codedeploy.get_deployment_group(applicationName=APP, deploymentGroupName=GROUP)["deploymentGroupInfo"]
    assert group["lastAttemptedDeployment"]["status"] == "Stopped"


def test_update_deployment_group_round_trip(codedeploy):
    make_group(codedeploy)
    group = codedeploy.get_deployment_group(applicationName=APP, deploymentGroupName=GROUP)["deploymentGroupInfo"]
    assert group["deploymentConfigName"] == "CodeDeployDefault.OneAtATime"
    assert group["alarmConfiguration"]["enabled"] is False
    assert "lastSuccessfulDeployment" not in group

    alarms = {"enabled": True, "ignorePollAlarmFailure": False, "alarms": [{"name": "payments-errors"}]}
    rollback = {"enabled": True, "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"]}
    codedeploy.update_deployment_group(
        applicationName=APP,
        currentDeploymentGroupName=GROUP,
        newDeploymentGroupName="payments-api-prod",
        deploymentConfigName="CodeDeployDefault.HalfAtATime",
        alarmConfiguration=alarms,
        autoRollbackConfiguration=rollback,
    )
    with pytest.raises(codedeploy.exceptions.DeploymentGroupDoesNotExistException):
        codedeploy.get_deployment_group(applicationName=APP, deploymentGroupName=GROUP)
    updated = codedeploy.get_deployment_group(applicationName=APP, deploymentGroupName="payments-api-prod")
    info = updated["deploymentGroupInfo"]
    assert info["deploymentGroupId"] == group["deploymentGroupId"]
    assert info["deploymentConfigName"] == "CodeDeployDefault.HalfAtATime"
    assert info["alarmConfiguration"] == alarms
    assert info["autoRollbackConfiguration"] == rollback
    assert info["serviceRoleArn"] == ROLE  # what the update did not mention stays

    with pytest.raises(codedeploy.exceptions.DeploymentConfigDoesNotExistException):
        codedeploy.update_deployment_group(
            applicationName=APP, currentDeploymentGroupName="payments-api-prod", deploymentConfigName="Missing"
        )


def test_group_tracks_last_successful_and_last_attempted_deployments(sandbox, codedeploy):
    make_group(codedeploy, deploymentConfigName="CodeDeployDefault.AllAtOnce")
    good = deploy(codedeploy, "1.0.0")
    statuses_until_done(codedeploy, good)
    sandbox.add_fault("fail", "codedeploy", target=GROUP)
    bad = deploy(codedeploy, "2.0.0")
    statuses_until_done(codedeploy, bad)

    info = codedeploy.get_deployment_group(applicationName=APP, deploymentGroupName=GROUP)["deploymentGroupInfo"]
    assert info["lastSuccessfulDeployment"]["deploymentId"] == good
    assert info["lastSuccessfulDeployment"]["status"] == "Succeeded"
    assert info["lastAttemptedDeployment"]["deploymentId"] == bad
    assert info["lastAttemptedDeployment"]["status"] == "Failed"
    assert info["lastAttemptedDeployment"]["endTime"] >= info["lastAttemptedDeployment"]["createTime"]
    assert info["targetRevision"] == s3_revision("2.0.0")
    [batch] = codedeploy.batch_get_deployment_groups(applicationName=APP, deploymentGroupNames=[GROUP])[
        "deploymentGroupsInfo"
    ]
    assert batch["lastSuccessfulDeployment"]["deploymentId"] == good


def test_list_deployments_filters_by_status_and_create_time(codedeploy):
    make_group(codedeploy, deploymentConfigName="CodeDeployDefault.AllAtOnce")
    done = deploy(codedeploy, "1.0.0")
    statuses_until_done(codedeploy, done)
    running = deploy(codedeploy, "1.1.0")

    def listed(**filters) -> list[str]:
        return codedeploy.list_deployments(applicationName=APP, deploymentGroupName=GROUP, **filters)["deployments"]

    assert listed() == [running, done]
    assert listed(includeOnlyStatuses=["Succeeded"]) == [done]
    assert listed(includeOnlyStatuses=["Created", "InProgress"]) == [running]
    future = datetime.now(UTC) + timedelta(hours=1)
    assert listed(createTimeRange={"start": future}) == []
    assert listed(createTimeRange={"end": future}) == [running, done]
    with pytest.raises(codedeploy.exceptions.DeploymentGroupNameRequiredException):
        codedeploy.list_deployments(applicationName=APP)


def test_continue_deployment_needs_a_ready_deployment(codedeploy):
    make_group(codedeploy, deploymentConfigName="CodeDeployDefault.AllAtOnce")
    deployment_id = deploy(codedeploy, "1.0.0")
    with pytest.raises(codedeploy.exceptions.DeploymentIsNotInReadyStateException):
        codedeploy.continue_deployment(deploymentId=deployment_id)
    statuses_until_done(codedeploy, deployment_id)
    with pytest.raises(codedeploy.exceptions.DeploymentAlreadyCompletedException):
        codedeploy.continue_deployment(deploymentId=deployment_id)


def test_default_speed_is_one_step_per_second(sandbox):
    client = sandbox.boto3("codedeploy")
    client.create_application(applicationName=APP, computePlatform="Server")
    make_group(client, deploymentConfigName="CodeDeployDefault.AllAtOnce")
    deployment_id = deploy(client, "1.0.0")
    assert describe(client, deployment_id)["status"] == "Created"
    client.get_waiter("deployment_successful").wait(
        deploymentId=deployment_id, WaiterConfig={"Delay": 0.2, "MaxAttempts": 20}
    )
