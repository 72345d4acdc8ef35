"""Creates, through boto3, the AWS resources the example services refer to.

The resources are data (``include/sandbox/seed.yaml``). Seeding is idempotent: what exists is kept,
so ``shipflow sandbox seed`` can run against a sandbox that is already in use. Each deployment
group gets a first successful deployment of the service's initial version, so that a later
rollback has a last good revision to return to, as it would in a real account.
"""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path
from typing import Any

import yaml

from shipflow.sandbox.client import SandboxClient

ROOT = Path(__file__).resolve().parents[3]
SEED_FILE = ROOT / "include" / "sandbox" / "seed.yaml"
TEMPLATE_FILE = ROOT / "include" / "templates" / "service-stack.yaml"
METRICS_NAMESPACE = "Shipflow/Service"
ROLE_NAME = "shipflow-sandbox-deployer"


def load_seed(path: Path = SEED_FILE) -> dict[str, Any]:
    with open(path) as fh:
        return yaml.safe_load(fh)


def bundle(service: str, version: str) -> bytes:
    """A minimal CodeDeploy bundle (appspec + a version file) for a service version."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("appspec.yml", "version: 0.0\nos: linux\nfiles:\n  - source: /\n    destination: /srv/app\n")
        archive.writestr("VERSION", f"{service} {version}\n")
    return buffer.getvalue()


def bundle_key(service: str, version: str) -> str:
    return f"{service}/{service}-{version}.zip"


def seed(client: SandboxClient, spec: dict[str, Any] | None = None, wait: float = 60) -> dict[str, Any]:
    spec = spec or load_seed()
    account = spec["account_id"]
    created: dict[str, list[str]] = {
        "buckets": [],
        "topics": [],
        "queues": [],
        "codebuild_projects": [],
        "codedeploy_groups": [],
        "alarms": [],
        "stacks": [],
        "deployments": [],
    }
    s3, sns, sqs = client.boto3("s3"), client.boto3("sns"), client.boto3("sqs")
    iam, codebuild = client.boto3("iam"), client.boto3("codebuild")
    codedeploy, cloudwatch, cfn = client.boto3("codedeploy"), client.boto3("cloudwatch"), client.boto3("cloudformation")

    bucket = spec["artifact_bucket"]
    if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=bucket)
        created["buckets"].append(bucket)

    topic_arn = sns.create_topic(Name=spec["alerts"]["topic"])["TopicArn"]  # idempotent in AWS too
    queue_url = sqs.create_queue(QueueName=spec["alerts"]["inbox_queue"])["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    subscribed = {s["Endpoint"] for s in sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]}
    if queue_arn not in subscribed:
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        created["topics"].append(topic_arn)
        created["queues"].append(queue_url)

    try:
        role_arn = iam.get_role(RoleName=ROLE_NAME)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        role_arn = iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument="{}", Path="/service-role/")["Role"][
            "Arn"
        ]

    projects = set(codebuild.list_projects()["projects"])
    applications = set(codedeploy.list_applications()["applications"])
    stacks = {s["StackName"] for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"}
    template = TEMPLATE_FILE.read_text()
    pending: list[tuple[str, str]] = []

    for service in spec["services"]:
        name = service["name"]
        version = service["initial_version"]
        s3.put_object(Bucket=bucket, Key=bundle_key(name, version), Body=bundle(name, version))

        project = f"{name}-build"
        if project not in projects:
            codebuild.create_project(
                name=project,
                source={"type": "S3", "location": f"{bucket}/{name}/source.zip"},
                artifacts={"type": "S3", "location": bucket, "path": name, "name": "artifact.zip"},
                environment={
                    "type": "LINUX_CONTAINER",
                    "image": "aws/codebuild/standard:7.0",
                    "computeType": "BUILD_GENERAL1_SMALL",
                },
                serviceRole=f"arn:aws:iam::{account}:role/service-role/{ROLE_NAME}",
            )
            created["codebuild_projects"].append(project)

        if name not in applications:
            codedeploy.create_application(applicationName=name, computePlatform=service["compute_platform"])
        groups = set(codedeploy.list_deployment_groups(applicationName=name)["deploymentGroups"])

        for env in service["environments"]:
            group = f"{name}-{env}"
            alarm_names = []
            for alarm in spec["alarms"]:
                alarm_name = f"{group}-{alarm['suffix']}"
                alarm_names.append(alarm_name)
                cloudwatch.put_metric_alarm(  # put is an upsert in AWS
                    AlarmName=alarm_name,
                    AlarmDescription=f"{alarm['metric']} of {name} in {env}",
                    Namespace=METRICS_NAMESPACE,
                    MetricName=alarm["metric"],
                    Dimensions=[
                        {"Name": "Application", "Value": name},
                        {"Name": "DeploymentGroup", "Value": group},
                    ],
                    Statistic=alarm["statistic"],
                    Period=spec["alarm_period_seconds"],
                    EvaluationPeriods=1,
                    Threshold=alarm["threshold"],
                    ComparisonOperator=alarm["comparison"],
                    TreatMissingData="notBreaching",
                    ActionsEnabled=True,
                    AlarmActions=[topic_arn],
                    OKActions=[topic_arn],
                )
                created["alarms"].append(alarm_name)

            if group not in groups:
                codedeploy.create_deployment_group(
                    applicationName=name,
                    deploymentGroupName=group,
                    serviceRoleArn=role_arn,
                    deploymentConfigName=service["deployment_config"],
                    alarmConfiguration={"enabled": True, "alarms": [{"name": a} for a in alarm_names]},
                    autoRollbackConfiguration={
                        "enabled": True,
                        "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"],
                    },
                )
                created["codedeploy_groups"].append(group)
                deployment_id = codedeploy.create_deployment(
                    applicationName=name,
                    deploymentGroupName=group,
                    revision={
                        "revisionType": "S3",
                        "s3Location": {"bucket": bucket, "key": bundle_key(name, version), "bundleType": "zip"},
                    },
                    description=f"shipflow sandbox seed: {name} {version}",
                )["deploymentId"]
                pending.append((group, deployment_id))

            stack = group
            if stack not in stacks:
                cfn.create_stack(
                    StackName=stack,
                    TemplateBody=template,
                    Parameters=[
                        {"ParameterKey": "ServiceName", "ParameterValue": name},
                        {"ParameterKey": "Environment", "ParameterValue": env},
                        {"ParameterKey": "ReleaseVersion", "ParameterValue": version},
                    ],
                    Tags=[{"Key": "shipflow:service", "Value": name}, {"Key": "shipflow:environment", "Value": env}],
                )
                created["stacks"].append(stack)

    # Wait for the first deployments, so every group has a last good revision before anything else runs.
    deadline = time.monotonic() + wait
    for group, deployment_id in pending:
        while True:
            status = codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]["status"]
            if status == "Succeeded":
                created["deployments"].append(f"{group}:{deployment_id}")
                break
            if status in ("Failed", "Stopped") or time.monotonic() > deadline:
                raise RuntimeError(f"seed deployment {deployment_id} to {group} ended {status}")
            time.sleep(0.2)
    return {key: value for key, value in created.items() if value}
