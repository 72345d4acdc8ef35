"""Sandbox resources for the CodeDeploy action tests: an application, a group, bundles in S3, deployments."""

from __future__ import annotations

from typing import Any

from shipflow.sandbox.seed import bundle

APP = "payments-api"
GROUP = "payments-api-staging"
BUCKET = "shipflow-artifacts"
ROLE_ARN = "arn:aws:iam::123456789012:role/x"
ROLLBACK_ON_FAILURE = {"enabled": True, "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"]}
TERMINAL = ("Succeeded", "Failed", "Stopped")


def bundle_key(version: str, app: str = APP) -> str:
    return f"{app}/{app}-{version}.zip"


def label(version: str, app: str = APP) -> str:
    """The revision label the operators report for a version's bundle."""
    return f"s3://{BUCKET}/{bundle_key(version, app)}"


def s3_revision(version: str, app: str = APP) -> dict[str, Any]:
    return {
        "revisionType": "S3",
        "s3Location": {"bucket": BUCKET, "key": bundle_key(version, app), "bundleType": "zip"},
    }


def upload_bundles(sandbox, *versions: str, app: str = APP) -> dict[str, str]:
    """Upload a CodeDeploy bundle per version; returns each bundle's ETag."""
    s3 = sandbox.boto3("s3")
    if BUCKET not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=BUCKET)
    return {
        version: s3.put_object(Bucket=BUCKET, Key=bundle_key(version, app), Body=bundle(app, version))["ETag"]
        for version in versions
    }


def create_group(
    sandbox,
    *,
    app: str = APP,
    group: str = GROUP,
    platform: str = "Server",
    config: str | None = "CodeDeployDefault.AllAtOnce",
    auto_rollback: dict[str, Any] | None = None,
) -> str:
    """An application (if missing) and a deployment group with the service role ``ROLE_ARN``."""
    codedeploy = sandbox.boto3("codedeploy")
    if app not in codedeploy.list_applications()["applications"]:
        codedeploy.create_application(applicationName=app, computePlatform=platform)
    kwargs: dict[str, Any] = {"applicationName": app, "deploymentGroupName": group, "serviceRoleArn": ROLE_ARN}
    if config:
        kwargs["deploymentConfigName"] = config
    if auto_rollback:
        kwargs["autoRollbackConfiguration"] = auto_rollback
    codedeploy.create_deployment_group(**kwargs)
    return group


def start(sandbox, version: str, *, app: str = APP, group: str = GROUP, description: str = "by hand") -> str:
    """A deployment started outside Shipflow (another party), left running."""
    return sandbox.boto3("codedeploy").create_deployment(
        applicationName=app, deploymentGroupName=group, revision=s3_revision(version, app), description=description
    )["deploymentId"]


def run_to_end(sandbox, deployment_id: str, limit: int = 20) -> dict[str, Any]:
    """Describe a deployment until it ends (each describe is a step at the manual speed)."""
    codedeploy = sandbox.boto3("codedeploy")
    for _ in range(limit):
        info = codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        if info["status"] in TERMINAL:
            return info
    raise AssertionError(f"{deployment_id} still {info['status']} after {limit} describes")


def deploy(sandbox, version: str, **kwargs: Any) -> str:
    """A deployment started outside Shipflow and run to its end (Succeeded unless a fault says otherwise)."""
    deployment_id = start(sandbox, version, **kwargs)
    run_to_end(sandbox, deployment_id)
    return deployment_id


def deployments(sandbox, app: str = APP, group: str = GROUP) -> list[dict[str, Any]]:
    """The group's deployments, newest first, described once (a step each at the manual speed)."""
    codedeploy = sandbox.boto3("codedeploy")
    ids = codedeploy.list_deployments(applicationName=app, deploymentGroupName=group)["deployments"]
    return codedeploy.batch_get_deployments(deploymentIds=ids)["deploymentsInfo"] if ids else []


def deployment_ids(sandbox, app: str = APP, group: str = GROUP) -> list[str]:
    codedeploy = sandbox.boto3("codedeploy")
    return codedeploy.list_deployments(applicationName=app, deploymentGroupName=group)["deployments"]
