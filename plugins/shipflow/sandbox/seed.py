"""Creates, through boto3, the AWS resources the service specs (``include/services/*.yaml``) refer to.

The specs say what exists: artifact buckets and keys, CodeBuild projects, CodeDeploy applications
and groups, the alarms named in pre- and post-checks, each environment's stack and the notification
topics. ``include/sandbox/seed.yaml`` adds only what the specs do not say: the account, the alerts
topic and inbox queue, the alarm definitions (by name suffix) and each service's initial version.

Seeding is idempotent: what exists is kept and not touched, so ``shipflow sandbox seed`` can run
against a sandbox that is already in use, and a second run reports nothing created. Each deployment
group gets a first successful deployment of the service's initial version, so that a later rollback
has a last good revision to return to, as it would in a real account.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from shipflow.aws.constants.cloudformation import STACK_IN_PROGRESS_STATES, TEMPLATES_DIR
from shipflow.aws.constants.codedeploy import DEPLOYMENT_FAILURE_STATES, DEPLOYMENT_SUCCEEDED
from shipflow.sandbox.client import SandboxClient, SandboxError
from shipflow.spec import SERVICES_DIR, load_specs, render

ROOT = Path(__file__).resolve().parents[3]
SEED_FILE = ROOT / "include" / "sandbox" / "seed.yaml"
METRICS_NAMESPACE = "Shipflow/Service"
ROLE_NAME = "shipflow-sandbox-deployer"
# The commit a seeded version claims, for specs whose artifact or parameters use {commit}.
SEED_COMMIT = "0000000"
AUTO_ROLLBACK = {"enabled": True, "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"]}
ARCHIVE_BUNDLE_TYPES = ("zip", "tar", "tgz")
SUMMARY_KINDS = (
    "buckets",
    "bundles",
    "topics",
    "queues",
    "subscriptions",
    "codebuild_projects",
    "codedeploy_applications",
    "codedeploy_groups",
    "alarms",
    "stacks",
    "deployments",
)


class SeedError(SandboxError):
    """The specs and seed.yaml do not fit together, or a seeded resource failed: one line, no traceback."""


def load_seed(path: Path = SEED_FILE) -> dict[str, Any]:
    with open(path) as fh:
        return yaml.safe_load(fh)


def load_service_specs(directory: Path = SERVICES_DIR) -> list[Any]:
    """Every service spec of ``directory``; any invalid spec stops the seed with every problem listed."""
    specs, errors = load_specs(directory)
    if errors:
        problems = "\n".join(f"  {error}" for error in errors)
        raise SeedError(
            f"cannot seed from invalid service specs (fix them; `shipflow validate` lists them):\n{problems}"
        )
    return specs


def spec_file(spec: Any) -> str:
    return f"include/services/{spec.service}.yaml"


def initial_version(data: dict[str, Any], service: str) -> str:
    return str((data.get("initial_versions") or {}).get(service, data["initial_version"]))


# -- bundles -----------------------------------------------------------------------------------------
def appspec(service: str, platform: str = "Server") -> dict[str, Any]:
    """A CodeDeploy AppSpec for ``platform``; the sandbox does not read it, an account would."""
    if platform == "Lambda":
        function = {"Name": service, "Alias": "live", "CurrentVersion": "1", "TargetVersion": "2"}
        return {"version": 0.0, "Resources": [{service: {"Type": "AWS::Lambda::Function", "Properties": function}}]}
    if platform == "ECS":
        service_props = {
            "TaskDefinition": f"arn:aws:ecs:us-east-1:123456789012:task-definition/{service}:1",
            "LoadBalancerInfo": {"ContainerName": service, "ContainerPort": 8080},
        }
        return {
            "version": 0.0,
            "Resources": [{"TargetService": {"Type": "AWS::ECS::Service", "Properties": service_props}}],
        }
    return {"version": 0.0, "os": "linux", "files": [{"source": "/", "destination": f"/srv/{service}"}]}


def bundle(service: str, version: str, platform: str = "Server", bundle_type: str = "zip") -> bytes:
    """A minimal CodeDeploy revision of a service version: an archive with ``appspec.yml`` and a
    ``VERSION`` file (zip, tar, tgz), or the AppSpec document itself (YAML, JSON)."""
    document = appspec(service, platform)
    if bundle_type == "JSON":
        return json.dumps(document, indent=2).encode()
    text = f"# {service} {version}\n" + yaml.safe_dump(document, sort_keys=False)
    if bundle_type == "YAML":
        return text.encode()
    if bundle_type not in ARCHIVE_BUNDLE_TYPES:
        raise ValueError(f"bundle_type {bundle_type!r} is not one of zip, tar, tgz, YAML, JSON")
    files = {"appspec.yml": text.encode(), "VERSION": f"{service} {version}\n".encode()}
    buffer = io.BytesIO()
    if bundle_type == "zip":
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, content in files.items():
                archive.writestr(name, content)
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz" if bundle_type == "tgz" else "w") as archive:
            for name, content in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def bundle_key(service: str, version: str) -> str:
    """The example services' artifact key (``<service>/<service>-{version}.zip``); a spec may say otherwise."""
    return f"{service}/{service}-{version}.zip"


def _values(spec: Any, environment: str, version: str) -> dict[str, str]:
    return {"version": version, "commit": SEED_COMMIT, "environment": environment, "service": spec.service}


def artifact_locations(spec: Any, version: str) -> dict[str, tuple[str, str]]:
    """Where each environment deploys ``version`` from: environment -> (bucket, key), rendered."""
    locations = {}
    for env in spec.environments:
        values = _values(spec, env.name, version)
        locations[env.name] = (render(spec.artifact.bucket, **values), render(spec.artifact.key, **values))
    return locations


def upload_artifact(client: SandboxClient, spec: Any, version: str) -> list[str]:
    """Put ``version``'s bundle everywhere the spec's environments look for it; returns the s3:// URLs.

    For tests and demos that release a new version of an example service.
    """
    s3 = client.boto3("s3")
    platforms = {env.name: env.deployment.compute_platform for env in spec.environments}
    written = []
    for env_name, (bucket, key) in artifact_locations(spec, version).items():
        url = f"s3://{bucket}/{key}"
        if url not in written:
            body = bundle(spec.service, version, platforms[env_name], spec.artifact.bundle_type)
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            written.append(url)
    return written


# -- alarms ------------------------------------------------------------------------------------------
def _alarm_names(spec: Any, index: int, data: dict[str, Any], check: str) -> list[str]:
    """The alarms an environment's pre- or post-checks name, an alarm_prefix standing for every
    defined alarm of the environment's deployment group that starts with it."""
    env = spec.environments[index]
    checks = getattr(env, check)
    if checks.alarm_prefix:
        group = env.deployment.deployment_group
        names = [
            f"{group}-{suffix}" for suffix in data["alarms"] if f"{group}-{suffix}".startswith(checks.alarm_prefix)
        ]
        if not names:
            raise SeedError(
                f"{spec_file(spec)}: environments[{index}].{check}.alarm_prefix: no seeded alarm starts with "
                f"{checks.alarm_prefix!r}; the seed names alarms <deployment group>-<suffix> "
                f"({', '.join(data['alarms'])}): use the prefix {group}- or define an alarm in "
                "include/sandbox/seed.yaml"
            )
        return names
    return list(checks.alarms)


def alarm_requests(spec: Any, data: dict[str, Any], topic_arn: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every alarm the spec's checks name: alarm name -> (region, PutMetricAlarm request)."""
    definitions: dict[str, dict[str, Any]] = data["alarms"]
    requests: dict[str, tuple[str, dict[str, Any]]] = {}
    for index, env in enumerate(spec.environments):
        application, group = env.deployment.application, env.deployment.deployment_group
        for check in ("pre_checks", "post_checks"):
            for name in _alarm_names(spec, index, data, check):
                suffix = next((s for s in sorted(definitions, key=len, reverse=True) if name.endswith(f"-{s}")), None)
                if suffix is None:
                    raise SeedError(
                        f"{spec_file(spec)}: environments[{index}].{check}.alarms: no alarm definition for {name!r}; "
                        f"name it <deployment group>-<suffix> with a suffix defined under alarms in "
                        f"include/sandbox/seed.yaml ({', '.join(definitions)}), or add a definition there"
                    )
                definition = definitions[suffix]
                requests.setdefault(
                    name,
                    (
                        env.region,
                        {
                            "AlarmName": name,
                            "AlarmDescription": f"{definition['metric']} of {application} in {env.name}",
                            "Namespace": METRICS_NAMESPACE,
                            "MetricName": definition["metric"],
                            "Dimensions": [
                                {"Name": "Application", "Value": application},
                                {"Name": "DeploymentGroup", "Value": group},
                            ],
                            "Statistic": definition["statistic"],
                            "Period": data["alarm_period_seconds"],
                            "EvaluationPeriods": 1,
                            "Threshold": float(definition["threshold"]),
                            "ComparisonOperator": definition["comparison"],
                            "TreatMissingData": definition["treat_missing_data"],
                            "ActionsEnabled": True,
                            "AlarmActions": [topic_arn],
                            "OKActions": [topic_arn],
                        },
                    ),
                )
    return requests


def deployment_targets(service: str, group: str, platform: str) -> dict[str, Any]:
    """What a group deploys to, by platform: an Auto Scaling group in place, or blue/green traffic."""
    if platform == "Server":
        return {
            "autoScalingGroups": [group],
            "deploymentStyle": {"deploymentType": "IN_PLACE", "deploymentOption": "WITHOUT_TRAFFIC_CONTROL"},
        }
    blue_green = {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"}
    if platform == "ECS":
        return {"deploymentStyle": blue_green, "ecsServices": [{"serviceName": service, "clusterName": group}]}
    return {"deploymentStyle": blue_green}


# -- the seed ----------------------------------------------------------------------------------------
class _Clients:
    """boto3 clients of the sandbox, one per service and region (environments may name a region)."""

    def __init__(self, client: SandboxClient) -> None:
        self.client = client
        self._cache: dict[tuple[str, str], Any] = {}

    def __call__(self, service: str, region: str | None = None) -> Any:
        key = (service, region or self.client.region)
        if key not in self._cache:
            self._cache[key] = self.client.boto3(service, region_name=key[1])
        return self._cache[key]


def seed(
    client: SandboxClient,
    data: dict[str, Any] | None = None,
    *,
    specs: Iterable[Any] | None = None,
    wait: float = 60,
) -> dict[str, list[str]]:
    """Create what the specs refer to; returns what was created, by kind (empty when all existed)."""
    data = data or load_seed()
    all_specs = specs is None
    specs = list(load_service_specs() if specs is None else specs)
    aws = _Clients(client)
    created: dict[str, list[str]] = {kind: [] for kind in SUMMARY_KINDS}
    unknown = sorted(set(data.get("initial_versions") or {}) - {spec.service for spec in specs})
    if all_specs and unknown:  # a version left behind for a service that was removed or renamed
        raise SeedError(
            f"include/sandbox/seed.yaml: initial_versions: no service spec for {', '.join(unknown)}; "
            "remove it or add include/services/<service>.yaml"
        )
    versions = {spec.service: initial_version(data, spec.service) for spec in specs}
    # Every alarm is resolved before anything is created, so a spec the seed cannot serve changes nothing.
    alerts_arn = f"arn:aws:sns:{client.region}:{data['account_id']}:{data['alerts']['topic']}"
    alarms = {spec.service: alarm_requests(spec, data, alerts_arn) for spec in specs}

    # The alerts topic and inbox first: alarm actions publish to it.
    sqs = aws("sqs")
    topic_arns = [alerts_arn] + [s.notifications.sns_topic_arn for s in specs if s.notifications]
    queue_url = _ensure_queue(sqs, data["alerts"]["inbox_queue"], created)
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for arn in dict.fromkeys(topic_arns):
        sns = aws("sns", arn.split(":")[3])
        if arn not in {t["TopicArn"] for t in sns.list_topics()["Topics"]}:
            sns.create_topic(Name=arn.rsplit(":", 1)[1])
            created["topics"].append(arn)
        endpoints = {s["Endpoint"] for s in sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]}
        if queue_arn not in endpoints:
            sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
            created["subscriptions"].append(f"{arn} -> {data['alerts']['inbox_queue']}")

    role_arn = _ensure_role(aws("iam"))
    pending_stacks: list[tuple[Any, str]] = []
    pending_deployments: list[tuple[Any, str, str]] = []
    for spec in specs:
        version = versions[spec.service]
        _seed_artifacts(aws, spec, version, created)
        if spec.build is not None:
            _seed_project(aws, spec, version, role_arn, created)
        _seed_alarms(aws, alarms[spec.service], created)
        for index, env in enumerate(spec.environments):
            post_alarms = _alarm_names(spec, index, data, "post_checks")
            deployment_id = _seed_group(aws, spec, env, version, post_alarms, role_arn, created)
            if deployment_id:
                pending_deployments.append(
                    (aws("codedeploy", env.region), env.deployment.deployment_group, deployment_id)
                )
            if env.infrastructure is not None:
                stack = _seed_stack(aws, spec, env, version, created)
                if stack:
                    pending_stacks.append((aws("cloudformation", env.region), stack))

    _wait_for_stacks(pending_stacks, wait)
    created["deployments"] += _wait_for_deployments(pending_deployments, wait)
    return {kind: names for kind, names in created.items() if names}


def _ensure_queue(sqs: Any, name: str, created: dict[str, list[str]]) -> str:
    try:
        return sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        created["queues"].append(url)
        return url


def _ensure_role(iam: Any) -> str:
    try:
        return iam.get_role(RoleName=ROLE_NAME)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        return iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument="{}", Path="/service-role/")["Role"]["Arn"]


def _seed_artifacts(aws: _Clients, spec: Any, version: str, created: dict[str, list[str]]) -> None:
    s3 = aws("s3")
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    platforms = {env.name: env.deployment.compute_platform for env in spec.environments}
    for env_name, (bucket, key) in artifact_locations(spec, version).items():
        if bucket not in buckets:
            s3.create_bucket(Bucket=bucket)
            buckets.add(bucket)
            created["buckets"].append(bucket)
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except s3.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] not in ("404", "NoSuchKey", "NotFound"):
                raise
            body = bundle(spec.service, version, platforms[env_name], spec.artifact.bundle_type)
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            created["bundles"].append(f"s3://{bucket}/{key}")


def _seed_project(aws: _Clients, spec: Any, version: str, role_arn: str, created: dict[str, list[str]]) -> None:
    first = spec.environments[0]
    codebuild = aws("codebuild", first.region)
    name = spec.build.codebuild_project
    if codebuild.batch_get_projects(names=[name])["projects"]:
        return
    bucket, _ = artifact_locations(spec, version)[first.name]
    codebuild.create_project(
        name=name,
        source={"type": "S3", "location": f"{bucket}/{spec.service}/source.zip"},
        artifacts={"type": "S3", "location": bucket, "path": spec.service, "name": "artifact.zip"},
        environment={
            "type": "LINUX_CONTAINER",
            "image": "aws/codebuild/standard:7.0",
            "computeType": "BUILD_GENERAL1_SMALL",
        },
        serviceRole=role_arn,
    )
    created["codebuild_projects"].append(name)


def _seed_alarms(aws: _Clients, alarms: dict[str, tuple[str, dict[str, Any]]], created: dict[str, list[str]]) -> None:
    by_region: dict[str, list[str]] = {}
    for name, (region, _) in alarms.items():
        by_region.setdefault(region, []).append(name)
    for region, names in by_region.items():
        cloudwatch = aws("cloudwatch", region)
        existing = {a["AlarmName"] for a in cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]}
        for name in names:
            if name not in existing:  # kept as it is: a put would reset its state
                cloudwatch.put_metric_alarm(**alarms[name][1])
                created["alarms"].append(name)


def _seed_group(
    aws: _Clients,
    spec: Any,
    env: Any,
    version: str,
    alarm_names: list[str],
    role_arn: str,
    created: dict[str, list[str]],
) -> str | None:
    """The environment's application and group; a first deployment if the group never had one."""
    codedeploy = aws("codedeploy", env.region)
    deployment = env.deployment
    application, group = deployment.application, deployment.deployment_group
    if application not in codedeploy.list_applications()["applications"]:
        codedeploy.create_application(applicationName=application, computePlatform=deployment.compute_platform)
        created["codedeploy_applications"].append(application)
    if group not in codedeploy.list_deployment_groups(applicationName=application)["deploymentGroups"]:
        request: dict[str, Any] = {
            "applicationName": application,
            "deploymentGroupName": group,
            "serviceRoleArn": role_arn,
            "autoRollbackConfiguration": AUTO_ROLLBACK,
            **deployment_targets(spec.service, group, deployment.compute_platform),
        }
        if deployment.config:
            request["deploymentConfigName"] = deployment.config
        if alarm_names:
            request["alarmConfiguration"] = {"enabled": True, "alarms": [{"name": a} for a in alarm_names]}
        codedeploy.create_deployment_group(**request)
        created["codedeploy_groups"].append(group)
    info = codedeploy.get_deployment_group(applicationName=application, deploymentGroupName=group)
    if info["deploymentGroupInfo"].get("lastAttemptedDeployment"):
        return None
    bucket, key = artifact_locations(spec, version)[env.name]
    return codedeploy.create_deployment(
        applicationName=application,
        deploymentGroupName=group,
        revision={
            "revisionType": "S3",
            "s3Location": {"bucket": bucket, "key": key, "bundleType": spec.artifact.bundle_type},
        },
        description=f"shipflow sandbox seed: {spec.service} {version}",
    )["deploymentId"]


def _seed_stack(aws: _Clients, spec: Any, env: Any, version: str, created: dict[str, list[str]]) -> str | None:
    cfn = aws("cloudformation", env.region)
    infra = env.infrastructure
    try:
        cfn.describe_stacks(StackName=infra.stack)
        return None
    except cfn.exceptions.ClientError as exc:
        if "does not exist" not in exc.response["Error"]["Message"]:
            raise
    values = _values(spec, env.name, version)
    cfn.create_stack(
        StackName=infra.stack,
        TemplateBody=(TEMPLATES_DIR / infra.template).read_text(),
        Parameters=[
            {"ParameterKey": name, "ParameterValue": render(value, **values)}
            for name, value in infra.parameters.items()
        ],
        Capabilities=list(infra.capabilities),
        Tags=[{"Key": "shipflow:service", "Value": spec.service}, {"Key": "shipflow:environment", "Value": env.name}],
    )
    created["stacks"].append(infra.stack)
    return infra.stack


def _wait_for_stacks(pending: list[tuple[Any, str]], wait: float) -> None:
    deadline = time.monotonic() + wait
    for cfn, stack in pending:
        while True:
            status = cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
            if status == "CREATE_COMPLETE":
                break
            if status not in STACK_IN_PROGRESS_STATES or time.monotonic() > deadline:
                events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
                reason = next(
                    (e.get("ResourceStatusReason", "") for e in events if e["ResourceStatus"].endswith("FAILED")), ""
                )
                raise SeedError(f"seeding stack {stack} ended {status}: {reason or 'no failure reason given'}")
            time.sleep(0.2)


def _wait_for_deployments(pending: list[tuple[Any, str, str]], wait: float) -> list[str]:
    """Wait for the first deployments, so every group has a last good revision before anything else runs."""
    deadline = time.monotonic() + wait
    done = []
    for codedeploy, group, deployment_id in pending:
        while True:
            status = codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]["status"]
            if status == DEPLOYMENT_SUCCEEDED:
                done.append(f"{group}:{deployment_id}")
                break
            if status in DEPLOYMENT_FAILURE_STATES or time.monotonic() > deadline:
                raise SeedError(f"seed deployment {deployment_id} to {group} ended {status}")
            time.sleep(0.2)
    return done
