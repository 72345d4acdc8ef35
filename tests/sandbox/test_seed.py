"""`shipflow sandbox seed`: everything the service specs refer to exists with the spec's settings,
and seeding again changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shipflow.cli import main
from shipflow.sandbox.seed import SeedError, artifact_locations, initial_version, load_seed, seed
from shipflow.spec import load_spec, load_specs

SPECS, SPEC_ERRORS = load_specs()
ALERTS_TOPIC = "arn:aws:sns:us-east-1:123456789012:shipflow-alerts"
# What the brief of every example alarm is: <group>-errors and <group>-latency over the sandbox's
# synthetic service metrics.
ALARM_DEFINITIONS = {
    "errors": {"MetricName": "ErrorRate", "Statistic": "Average", "Threshold": 5.0},
    "latency": {"MetricName": "LatencyP99", "Statistic": "Maximum", "Threshold": 1000.0},
}


@pytest.fixture
def seeded(sandbox):
    sandbox.set_lifecycle("time", seconds=0.05)  # first deployments in about a second
    summary = seed(sandbox)
    return sandbox, summary


def test_the_example_specs_are_valid_and_of_three_shapes():
    assert SPEC_ERRORS == []
    shapes = {
        spec.service: (
            spec.environments[0].deployment.compute_platform,
            spec.environments[0].infrastructure is not None,
        )
        for spec in SPECS
    }
    assert shapes == {
        "inventory-worker": ("Server", False),
        "payments-api": ("Lambda", True),
        "storefront-web": ("ECS", True),
    }


def test_seed_creates_everything_each_spec_refers_to(seeded):
    sandbox, summary = seeded
    data = load_seed()
    s3, codebuild, codedeploy = sandbox.boto3("s3"), sandbox.boto3("codebuild"), sandbox.boto3("codedeploy")
    cloudwatch, cfn = sandbox.boto3("cloudwatch"), sandbox.boto3("cloudformation")
    assert {"codedeploy_groups", "alarms", "stacks", "deployments"} <= set(summary)

    for spec in SPECS:
        version = initial_version(data, spec.service)
        locations = artifact_locations(spec, version)
        for bucket, key in locations.values():
            assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0
        if spec.build:
            assert codebuild.batch_get_projects(names=[spec.build.codebuild_project])["projects"]
        for env in spec.environments:
            deployment = env.deployment
            application = codedeploy.get_application(applicationName=deployment.application)["application"]
            assert application["computePlatform"] == deployment.compute_platform

            group = codedeploy.get_deployment_group(
                applicationName=deployment.application, deploymentGroupName=deployment.deployment_group
            )["deploymentGroupInfo"]
            assert group["deploymentConfigName"] == deployment.config
            assert group["alarmConfiguration"]["enabled"] is True
            assert [a["name"] for a in group["alarmConfiguration"]["alarms"]] == list(env.post_checks.alarms)
            assert group["autoRollbackConfiguration"] == {
                "enabled": True,
                "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"],
            }

            # The first deployment of the initial version succeeded: a rollback has somewhere to go.
            first = codedeploy.get_deployment(deploymentId=group["lastSuccessfulDeployment"]["deploymentId"])
            bucket, key = locations[env.name]
            assert first["deploymentInfo"]["status"] == "Succeeded"
            assert first["deploymentInfo"]["revision"]["s3Location"]["key"] == key

            names = sorted({*env.pre_checks.alarms, *env.post_checks.alarms})
            alarms = cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]
            assert sorted(a["AlarmName"] for a in alarms) == names
            for alarm in alarms:
                expected = ALARM_DEFINITIONS[alarm["AlarmName"].rsplit("-", 1)[1]]
                assert {k: alarm[k] for k in expected} == expected
                assert alarm["Namespace"] == "Shipflow/Service"
                assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
                assert (alarm["Period"], alarm["EvaluationPeriods"]) == (10, 1)
                assert alarm["TreatMissingData"] == "notBreaching"
                assert alarm["AlarmActions"] == [ALERTS_TOPIC]
                assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {
                    "Application": deployment.application,
                    "DeploymentGroup": deployment.deployment_group,
                }

            if env.infrastructure:
                stack = cfn.describe_stacks(StackName=env.infrastructure.stack)["Stacks"][0]
                assert stack["StackStatus"] == "CREATE_COMPLETE"
                parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
                assert parameters["ReleaseVersion"] == version
                assert parameters["ServiceName"] == spec.service and parameters["Environment"] == env.name
                assert stack.get("Capabilities", []) == list(env.infrastructure.capabilities)

    # The inventory worker has no infrastructure stage, so no stack.
    stacks = {s["StackName"] for s in cfn.list_stacks()["StackSummaries"]}
    assert not any(name.startswith("inventory-worker") for name in stacks)

    # Alarm notifications reach the inbox queue through the alerts topic.
    sqs, sns = sandbox.boto3("sqs"), sandbox.boto3("sns")
    inbox = sqs.get_queue_url(QueueName=data["alerts"]["inbox_queue"])["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    endpoints = [s["Endpoint"] for s in sns.list_subscriptions_by_topic(TopicArn=ALERTS_TOPIC)["Subscriptions"]]
    assert endpoints == [inbox_arn]


def snapshot(sandbox) -> dict[str, Any]:
    """What a second seed must leave exactly as it was."""
    s3, codedeploy = sandbox.boto3("s3"), sandbox.boto3("codedeploy")
    cloudwatch, cfn, sns = sandbox.boto3("cloudwatch"), sandbox.boto3("cloudformation"), sandbox.boto3("sns")
    objects = s3.list_objects_v2(Bucket="shipflow-artifacts")["Contents"]
    groups = {}
    for spec in SPECS:
        for env in spec.environments:
            app, group = env.deployment.application, env.deployment.deployment_group
            groups[group] = codedeploy.list_deployments(applicationName=app, deploymentGroupName=group)["deployments"]
    return {
        "objects": [(o["Key"], o["ETag"], o["LastModified"]) for o in objects],
        "deployments": groups,
        "alarms": [
            (a["AlarmName"], a["AlarmConfigurationUpdatedTimestamp"])
            for a in cloudwatch.describe_alarms()["MetricAlarms"]
        ],
        "stacks": [
            (s["StackName"], s["StackStatus"], s.get("LastUpdatedTime")) for s in cfn.describe_stacks()["Stacks"]
        ],
        "subscriptions": len(sns.list_subscriptions()["Subscriptions"]),
        "topics": sorted(t["TopicArn"] for t in sns.list_topics()["Topics"]),
    }


def test_seeding_again_changes_nothing(seeded, capsys):
    sandbox, _ = seeded
    before = snapshot(sandbox)
    # As a user runs it: `shipflow sandbox seed` prints what it created, as JSON.
    assert main(["sandbox", "seed", "--endpoint", sandbox.endpoint]) == 0
    assert json.loads(capsys.readouterr().out) == {}
    assert snapshot(sandbox) == before


def test_an_alarm_without_a_definition_is_named_with_its_spec_field_before_anything_is_created(sandbox, tmp_path):
    source = load_seed()
    spec_path = tmp_path / "cpu-svc.yaml"
    spec_path.write_text(
        """\
service: cpu-svc
owners: [alice]
artifact: {bucket: shipflow-artifacts, key: "cpu-svc/cpu-svc-{version}.zip"}
environments:
  - name: staging
    deployment: {application: cpu-svc, deployment_group: cpu-svc-staging}
    post_checks: {bake_time: 20s, alarms: [cpu-svc-staging-cpu]}
    rollback: {runbook_url: https://runbooks.example.com/cpu-svc}
"""
    )
    with pytest.raises(SeedError) as error:
        seed(sandbox, source, specs=[load_spec(spec_path)])
    message = str(error.value)
    assert "include/services/cpu-svc.yaml: environments[0].post_checks.alarms" in message
    assert "'cpu-svc-staging-cpu'" in message and "errors, latency" in message
    assert sandbox.boto3("s3").list_buckets()["Buckets"] == []
