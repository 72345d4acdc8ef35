"""``shipflow sandbox demo``: the AWS sandbox alone, narrated (``make demo`` runs whole releases).

A sandbox that behaves like AWS, driven by boto3 over real HTTP exactly as Shipflow's operators
drive it, including the failures and automatic rollbacks that the release workflows must handle.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from shipflow.sandbox import DEFAULT_HOST
from shipflow.sandbox.client import SandboxClient
from shipflow.sandbox.seed import artifact_locations, load_seed, load_service_specs, seed, upload_artifact

DEMO_SERVICE = "payments-api"  # include/services/payments-api.yaml: its staging group and stack
STEP_SECONDS = 0.3  # lifecycle speed for the demo: one status step per 0.3 s
# Deployments step slower, so the new revision serves traffic long enough for its alarm to evaluate.
DEPLOY_STEP_SECONDS = 2.0


def _say(text: str = "") -> None:
    print(text, flush=True)


def _wait(describe: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 60, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = describe()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(every)


def _start_sandbox(port: int) -> tuple[SandboxClient, Any, float]:
    from shipflow.sandbox.server import make_server

    started = time.monotonic()
    server = make_server(DEFAULT_HOST, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = SandboxClient(f"http://{DEFAULT_HOST}:{server.server_address[1]}")
    client.wait_ready()
    return client, server, time.monotonic() - started


def demo_codebuild(sb: SandboxClient, project: str) -> dict[str, Any]:
    codebuild = sb.boto3("codebuild")
    build = codebuild.start_build(projectName=project, sourceVersion="4f2a9c1", idempotencyToken="demo-build-1")
    build_id = build["build"]["id"]
    seen: list[str] = []

    def describe() -> dict[str, Any]:
        b = codebuild.batch_get_builds(ids=[build_id])["builds"][0]
        if not seen or seen[-1] != b["currentPhase"]:
            seen.append(b["currentPhase"])
        return b

    final = _wait(describe, lambda b: b["buildComplete"])
    _say(f"  build {build_id}: {' -> '.join(seen)} => {final['buildStatus']}")
    _say(f"  artifact: {final.get('artifacts', {}).get('location', '-')}")

    sb.add_fault("fail", "codebuild", target=project, params={"phase": "BUILD"})
    failed_id = codebuild.start_build(projectName=project, sourceVersion="9d0e1f2")["build"]["id"]
    failed = _wait(lambda: codebuild.batch_get_builds(ids=[failed_id])["builds"][0], lambda b: b["buildComplete"])
    bad_phase = next((p for p in failed["phases"] if p.get("phaseStatus") == "FAILED"), {})
    reason = (bad_phase.get("contexts") or [{}])[0].get("message", "")
    _say(f"  injected fault -> build {failed_id} {failed['buildStatus']} in {bad_phase.get('phaseType')}: {reason}")
    return {"succeeded": build_id, "failed": failed_id}


def demo_cloudformation(sb: SandboxClient, spec: Any) -> dict[str, Any]:
    cfn = sb.boto3("cloudformation")
    infrastructure = spec.environment("staging").infrastructure
    stack, capabilities = infrastructure.stack, list(infrastructure.capabilities)
    params = [
        {"ParameterKey": "ServiceName", "UsePreviousValue": True},
        {"ParameterKey": "Environment", "UsePreviousValue": True},
        {"ParameterKey": "ReleaseVersion", "ParameterValue": "1.1.0"},
    ]
    template = cfn.get_template(StackName=stack)["TemplateBody"]
    if not isinstance(template, str):
        template = json.dumps(template)
    cfn.create_change_set(
        StackName=stack,
        ChangeSetName="release-1-1-0",
        TemplateBody=template,
        Parameters=params,
        Capabilities=capabilities,
    )
    cs = _wait(
        lambda: cfn.describe_change_set(StackName=stack, ChangeSetName="release-1-1-0"),
        lambda c: c["Status"] in ("CREATE_COMPLETE", "FAILED"),
    )
    changes = [
        f"{c['ResourceChange']['Action']} {c['ResourceChange']['LogicalResourceId']}"
        f" (replacement: {c['ResourceChange'].get('Replacement', '-')})"
        for c in cs.get("Changes", [])
    ]
    _say(f"  change set release-1-1-0 on {stack}: {cs['Status']}; changes: {', '.join(changes) or 'none'}")
    cfn.execute_change_set(StackName=stack, ChangeSetName="release-1-1-0")
    done = _wait(
        lambda: cfn.describe_stacks(StackName=stack)["Stacks"][0],
        lambda s: s["StackStatus"].endswith("COMPLETE"),
    )
    _say(f"  executed -> {done['StackStatus']}")

    sb.add_fault("fail", "cloudformation", target=stack, params={"resource": "ReleaseConfig"})
    params[2]["ParameterValue"] = "1.2.0"
    cfn.update_stack(StackName=stack, TemplateBody=template, Parameters=params, Capabilities=capabilities)
    failed = _wait(
        lambda: cfn.describe_stacks(StackName=stack)["Stacks"][0],
        lambda s: s["StackStatus"] in ("UPDATE_ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED", "UPDATE_COMPLETE"),
    )
    events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
    failure = next((e for e in events if e["ResourceStatus"].endswith("_FAILED")), {})
    _say(
        f"  injected fault -> update to 1.2.0 {failed['StackStatus']}; "
        f"{failure.get('LogicalResourceId', '?')}: {failure.get('ResourceStatusReason', '')}"
    )
    version = next(p["ParameterValue"] for p in failed["Parameters"] if p["ParameterKey"] == "ReleaseVersion")
    _say(f"  stack parameters after rollback: ReleaseVersion={version}")
    return {"stack": stack, "final_status": failed["StackStatus"]}


def _deploy(codedeploy: Any, spec: Any, version: str) -> str:
    deployment = spec.environment("staging").deployment
    bucket, key = artifact_locations(spec, version)["staging"]
    return codedeploy.create_deployment(
        applicationName=deployment.application,
        deploymentGroupName=deployment.deployment_group,
        revision={
            "revisionType": "S3",
            "s3Location": {"bucket": bucket, "key": key, "bundleType": spec.artifact.bundle_type},
        },
        description=f"shipflow demo: {spec.service} {version}",
    )["deploymentId"]


def demo_codedeploy(sb: SandboxClient, spec: Any) -> dict[str, Any]:
    codedeploy, cloudwatch = sb.boto3("codedeploy"), sb.boto3("cloudwatch")
    service, group = spec.service, spec.environment("staging").deployment.deployment_group
    for version in ("1.1.0", "1.2.0"):
        upload_artifact(sb, spec, version)

    def info(deployment_id: str) -> dict[str, Any]:
        return codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]

    ended = ("Succeeded", "Failed", "Stopped")
    good = _deploy(codedeploy, spec, "1.1.0")
    result = _wait(lambda: info(good), lambda d: d["status"] in ended)
    _say(f"  {service} 1.1.0 -> {group}: deployment {good} {result['status']}")

    _, bad_key = artifact_locations(spec, "1.2.0")["staging"]
    sb.add_fault("unhealthy", "codedeploy", target=bad_key, count=None)
    bad = _deploy(codedeploy, spec, "1.2.0")
    _say(f"  {service} 1.2.0 -> {group}: deployment {bad} started; revision 1.2.0 is unhealthy (injected)")
    result = _wait(lambda: info(bad), lambda d: d["status"] in ended)
    error = result.get("errorInformation", {})
    _say(f"  deployment {bad} {result['status']}: {error.get('code', '')} {error.get('message', '')}".rstrip())
    rollback_id = result.get("rollbackInfo", {}).get("rollbackDeploymentId")
    outcome: dict[str, Any] = {"good": good, "bad": bad, "bad_status": result["status"], "rollback": rollback_id}
    if rollback_id:
        rollback = _wait(lambda: info(rollback_id), lambda d: d["status"] in ended)
        key = rollback["revision"]["s3Location"]["key"]
        _say(f"  automatic rollback {rollback_id} by {rollback['creator']}: {key} {rollback['status']}")
        outcome["rollback_status"] = rollback["status"]
    alarms = cloudwatch.describe_alarms(AlarmNamePrefix=group)["MetricAlarms"]
    _say("  alarms now: " + ", ".join(f"{a['AlarmName']}={a['StateValue']}" for a in alarms))
    if rollback_id:
        # The restored revision is healthy again: its alarms clear once a period of good data is in.
        started = time.monotonic()
        alarms = _wait(
            lambda: cloudwatch.describe_alarms(AlarmNamePrefix=group)["MetricAlarms"],
            lambda found: all(a["StateValue"] == "OK" for a in found),
            timeout=40,
            every=1,
        )
        states = ", ".join(f"{a['AlarmName']}={a['StateValue']}" for a in alarms)
        _say(f"  {time.monotonic() - started:.0f}s later, on the restored revision: {states}")
        outcome["recovered"] = all(a["StateValue"] == "OK" for a in alarms)
    return outcome


def demo_alerts(sb: SandboxClient, queue_name: str) -> int:
    sqs = sb.boto3("sqs")
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    messages = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            break
        messages.extend(batch)
    for message in messages:
        body = json.loads(message["Body"])
        alarm = json.loads(body.get("Message", "{}")) if body.get("Message", "").startswith("{") else {}
        _say(f"  {body.get('Subject', '')[:100]}  [{alarm.get('NewStateValue', '?')}]")
    return len(messages)


def run_demo(port: int = 0) -> int:
    _say("Shipflow sandbox demo")
    _say("The local AWS sandbox alone (make demo runs whole releases through Airflow): driven by boto3")
    _say("over HTTP as the operators drive it, with injected failures and rollbacks.\n")
    sb, server, cold = _start_sandbox(port)
    try:
        sb.set_lifecycle("time", seconds=STEP_SECONDS)
        started = time.monotonic()
        data = load_seed()
        spec = next(s for s in load_service_specs() if s.service == DEMO_SERVICE)
        summary = seed(sb, data)
        _say(f"[1/5] sandbox up at {sb.endpoint} in {cold:.1f}s; seeded in {time.monotonic() - started:.1f}s:")
        for kind, names in summary.items():
            _say(f"  {kind}: {', '.join(names)}")
        service = spec.service
        _say(f"\n[2/5] CodeBuild: build {service} from a commit, then a build with an injected failure")
        demo_codebuild(sb, spec.build.codebuild_project)
        stack = spec.environment("staging").infrastructure.stack
        _say(f"\n[3/5] CloudFormation: a change set for {stack}, then an update that fails and rolls back")
        demo_cloudformation(sb, spec)
        sb.set_lifecycle("time", service="codedeploy", seconds=DEPLOY_STEP_SECONDS)
        _say("\n[4/5] CodeDeploy + CloudWatch: a good release, then an unhealthy one that alarms and rolls back")
        outcome = demo_codedeploy(sb, spec)
        inbox = data["alerts"]["inbox_queue"]
        _say(f"\n[5/5] Alerts: alarm notifications delivered via SNS to the SQS queue {inbox}")
        count = demo_alerts(sb, inbox)
        _say(f"  {count} notification(s)")
        fired = [f for f in sb.faults() if f["fired"]]
        _say(f"\nFaults injected and fired: {len(fired)}. Total {time.monotonic() - started:.1f}s.")
        ok = outcome.get("rollback_status") == "Succeeded" and outcome.get("recovered", False)
        _say("Demo OK: the sandbox builds, deploys, fails, alarms and rolls back like AWS." if ok else "Demo FAILED")
        return 0 if ok else 1
    finally:
        server.shutdown()
