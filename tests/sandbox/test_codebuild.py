"""CodeBuild in the sandbox: builds progress phase by phase, fail on demand, stop, retry and are idempotent."""

from __future__ import annotations

import time

import botocore.exceptions
import pytest

ROLE = "arn:aws:iam::123456789012:role/service-role/shipflow-codebuild"
PHASES = [
    "QUEUED",
    "PROVISIONING",
    "DOWNLOAD_SOURCE",
    "INSTALL",
    "PRE_BUILD",
    "BUILD",
    "POST_BUILD",
    "UPLOAD_ARTIFACTS",
    "FINALIZING",
    "COMPLETED",
]


def create_project(codebuild, name="payments-build", variables=None):
    codebuild.create_project(
        name=name,
        source={"type": "S3", "location": "shipflow-artifacts/payments/source.zip", "buildspec": "buildspec.yml"},
        artifacts={"type": "S3", "location": "shipflow-artifacts", "path": "payments", "name": "artifact.zip"},
        environment={
            "type": "LINUX_CONTAINER",
            "image": "aws/codebuild/standard:7.0",
            "computeType": "BUILD_GENERAL1_SMALL",
            "environmentVariables": variables or [],
        },
        serviceRole=ROLE,
    )
    return name


def describe(codebuild, build_id):
    return codebuild.batch_get_builds(ids=[build_id])["builds"][0]


def phase_types(build):
    return [p["phaseType"] for p in build["phases"]]


@pytest.fixture
def codebuild(sandbox):
    return sandbox.boto3("codebuild")


def test_manual_speed_advances_one_phase_per_describe(sandbox, codebuild):
    sandbox.set_lifecycle("manual", service="codebuild", times=1)
    project = create_project(codebuild)

    started = codebuild.start_build(projectName=project)["build"]
    assert started["currentPhase"] == "QUEUED" and started["buildStatus"] == "IN_PROGRESS"
    assert not started["buildComplete"] and "endTime" not in started
    assert phase_types(started) == ["SUBMITTED", "QUEUED"]

    for step, phase in enumerate(PHASES[1:], start=1):
        build = describe(codebuild, started["id"])
        assert build["currentPhase"] == phase
        assert phase_types(build) == ["SUBMITTED", *PHASES[: step + 1]]
        *finished, current = build["phases"]
        assert all(p["phaseStatus"] == "SUCCEEDED" and "endTime" in p and "durationInSeconds" in p for p in finished)
        assert "endTime" not in current and "phaseStatus" not in current
        if phase != "COMPLETED":
            assert build["buildStatus"] == "IN_PROGRESS" and not build["buildComplete"] and "endTime" not in build

    assert build["buildStatus"] == "SUCCEEDED" and build["buildComplete"] and build["endTime"] >= build["startTime"]
    # Later describes neither move a finished build nor grow its phases (stock moto appended 9 each time).
    assert describe(codebuild, started["id"])["phases"] == build["phases"]


def test_immediate_speed_finishes_on_first_describe(sandbox, codebuild):
    sandbox.set_lifecycle("immediate", service="codebuild")
    project = create_project(codebuild)
    build_id = codebuild.start_build(projectName=project)["build"]["id"]

    build = describe(codebuild, build_id)
    assert build["buildComplete"] and build["buildStatus"] == "SUCCEEDED" and build["currentPhase"] == "COMPLETED"
    assert phase_types(build) == ["SUBMITTED", *PHASES]
    assert len(describe(codebuild, build_id)["phases"]) == len(PHASES) + 1


def test_fail_fault_fails_the_named_phase_of_the_targeted_project_only(sandbox, codebuild):
    sandbox.set_lifecycle("immediate", service="codebuild")
    target, other = create_project(codebuild, "payments-build"), create_project(codebuild, "ledger-build")
    sandbox.add_fault(
        "fail",
        "codebuild",
        target=target,
        params={"phase": "INSTALL", "code": "COMMAND_EXECUTION_ERROR", "message": "npm ci: exit status 1"},
    )

    untouched = describe(codebuild, codebuild.start_build(projectName=other)["build"]["id"])
    assert untouched["buildStatus"] == "SUCCEEDED"
    assert sandbox.faults()[0]["fired"] == 0

    failed_id = codebuild.start_build(projectName=target)["build"]["id"]
    failed = describe(codebuild, failed_id)
    assert failed["buildStatus"] == "FAILED" and failed["buildComplete"]
    assert phase_types(failed) == [
        "SUBMITTED",
        "QUEUED",
        "PROVISIONING",
        "DOWNLOAD_SOURCE",
        "INSTALL",
        "FINALIZING",
        "COMPLETED",
    ]
    install = failed["phases"][4]
    assert install["phaseStatus"] == "FAILED"
    assert install["contexts"] == [{"statusCode": "COMMAND_EXECUTION_ERROR", "message": "npm ci: exit status 1"}]
    assert failed["phases"][5]["phaseStatus"] == "SUCCEEDED"  # FINALIZING still runs

    [fault] = sandbox.faults()
    assert fault["fired"] == 1 and fault["exhausted"] and fault["fired_on"] == [failed_id]
    # count=1: the next build of the same project succeeds again.
    assert describe(codebuild, codebuild.start_build(projectName=target)["build"]["id"])["buildStatus"] == "SUCCEEDED"


def test_fail_fault_defaults_to_the_build_phase_with_an_aws_like_reason(sandbox, codebuild):
    sandbox.set_lifecycle("manual", service="codebuild", times=1)
    project = create_project(codebuild)
    sandbox.add_fault("fail", "codebuild")  # no target: the next build of any project

    build_id = codebuild.start_build(projectName=project)["build"]["id"]
    for _ in range(PHASES.index("BUILD")):
        build = describe(codebuild, build_id)
    # While BUILD runs nothing has failed yet: the failure shows when the phase ends.
    assert build["currentPhase"] == "BUILD" and build["buildStatus"] == "IN_PROGRESS"
    build = describe(codebuild, build_id)
    assert build["currentPhase"] == "FINALIZING" and not build["buildComplete"]
    failed_phase = next(p for p in build["phases"] if p["phaseType"] == "BUILD")
    assert failed_phase["phaseStatus"] == "FAILED"
    assert failed_phase["contexts"] == [
        {
            "statusCode": "COMMAND_EXECUTION_ERROR",
            "message": "Error while executing command: make build. Reason: exit status 2",
        }
    ]
    build = describe(codebuild, build_id)
    assert build["currentPhase"] == "COMPLETED" and build["buildStatus"] == "FAILED" and build["buildComplete"]


def test_fail_fault_with_an_unknown_phase_is_refused_loudly(sandbox, codebuild):
    project = create_project(codebuild)
    sandbox.add_fault("fail", "codebuild", target=project, params={"phase": "DEPLOY"})
    with pytest.raises(botocore.exceptions.ClientError, match="params.phase 'DEPLOY' is not a phase that can fail"):
        codebuild.start_build(projectName=project)


def test_stop_sticks_and_the_build_finalizes(sandbox, codebuild):
    sandbox.set_lifecycle("manual", service="codebuild", times=1)
    project = create_project(codebuild)
    build_id = codebuild.start_build(projectName=project)["build"]["id"]
    describe(codebuild, build_id)
    assert describe(codebuild, build_id)["currentPhase"] == "DOWNLOAD_SOURCE"

    stopped = codebuild.stop_build(id=build_id)["build"]
    assert stopped["buildStatus"] == "STOPPED"
    download = next(p for p in stopped["phases"] if p["phaseType"] == "DOWNLOAD_SOURCE")
    assert download["phaseStatus"] == "STOPPED" and "endTime" in download
    assert stopped["currentPhase"] == "FINALIZING"

    finished = describe(codebuild, build_id)
    assert finished["currentPhase"] == "COMPLETED" and finished["buildComplete"]
    assert phase_types(finished)[-3:] == ["DOWNLOAD_SOURCE", "FINALIZING", "COMPLETED"]
    for _ in range(3):
        assert describe(codebuild, build_id)["buildStatus"] == "STOPPED"
    # Stopping a finished build changes nothing.
    assert codebuild.stop_build(id=build_id)["build"]["phases"] == finished["phases"]


def test_idempotency_token_returns_the_same_build_and_refuses_changed_parameters(sandbox, codebuild):
    project = create_project(codebuild)
    first = codebuild.start_build(projectName=project, sourceVersion="4f2a9c1", idempotencyToken="release-42")
    again = codebuild.start_build(projectName=project, sourceVersion="4f2a9c1", idempotencyToken="release-42")
    assert again["build"]["id"] == first["build"]["id"]
    assert codebuild.list_builds_for_project(projectName=project)["ids"] == [first["build"]["id"]]
    assert codebuild.list_builds()["ids"] == [first["build"]["id"]]

    with pytest.raises(botocore.exceptions.ClientError) as err:
        codebuild.start_build(projectName=project, sourceVersion="9d0e1f2", idempotencyToken="release-42")
    assert err.value.response["Error"]["Code"] == "InvalidInputException"
    assert "release-42" in err.value.response["Error"]["Message"]
    assert len(codebuild.list_builds()["ids"]) == 1


def test_start_build_keeps_overrides_and_fills_build_details(sandbox, codebuild):
    project = create_project(
        codebuild, variables=[{"name": "STAGE", "value": "staging"}, {"name": "REGION", "value": "us-east-1"}]
    )
    plain = codebuild.start_build(projectName=project)["build"]
    assert plain["artifacts"]["location"] == "arn:aws:s3:::shipflow-artifacts/payments/artifact.zip"
    assert plain["source"]["buildspec"] == "buildspec.yml"
    assert plain["serviceRole"] == ROLE

    build = codebuild.start_build(
        projectName=project,
        sourceVersion="4f2a9c1",
        environmentVariablesOverride=[{"name": "STAGE", "value": "prod"}, {"name": "RELEASE", "value": "1.4.0"}],
        buildspecOverride="ci/release.yml",
        artifactsOverride={
            "type": "S3",
            "location": "release-bucket",
            "path": "payments",
            "namespaceType": "BUILD_ID",
            "name": "bundle.zip",
        },
    )["build"]
    build_uuid = build["id"].split(":", 1)[1]
    assert build["id"] == f"{project}:{build_uuid}"
    assert build["arn"] == f"arn:aws:codebuild:us-east-1:123456789012:build/{project}:{build_uuid}"
    assert build["sourceVersion"] == "4f2a9c1"
    assert {v["name"]: v["value"] for v in build["environment"]["environmentVariables"]} == {
        "STAGE": "prod",
        "REGION": "us-east-1",
        "RELEASE": "1.4.0",
    }
    assert build["source"]["buildspec"] == "ci/release.yml"
    assert build["artifacts"]["location"] == f"arn:aws:s3:::release-bucket/payments/{build_uuid}/bundle.zip"
    assert build["initiator"]
    assert build["logs"]["groupName"] == f"/aws/codebuild/{project}"
    assert build["logs"]["deepLink"] == (
        "https://console.aws.amazon.com/cloudwatch/home?region=us-east-1"
        f"#logEvent:group=/aws/codebuild/{project};stream={build_uuid}"
    )
    # Overrides survive describes.
    described = describe(codebuild, build["id"])
    assert described["environment"] == build["environment"] and described["source"] == build["source"]


def test_retry_build_starts_a_new_build_with_the_same_parameters(sandbox, codebuild):
    sandbox.set_lifecycle("immediate", service="codebuild")
    project = create_project(codebuild)
    sandbox.add_fault("fail", "codebuild", target=project)
    original = codebuild.start_build(
        projectName=project, sourceVersion="4f2a9c1", environmentVariablesOverride=[{"name": "X", "value": "1"}]
    )["build"]
    assert describe(codebuild, original["id"])["buildStatus"] == "FAILED"

    retried = codebuild.retry_build(id=original["id"], idempotencyToken="retry-1")["build"]
    assert retried["id"] != original["id"] and retried["buildNumber"] == 2
    assert retried["sourceVersion"] == "4f2a9c1"
    assert retried["environment"]["environmentVariables"] == original["environment"]["environmentVariables"]
    assert describe(codebuild, retried["id"])["buildStatus"] == "SUCCEEDED"

    # The same retry token answers the same retry.
    assert codebuild.retry_build(id=original["id"], idempotencyToken="retry-1")["build"]["id"] == retried["id"]
    assert codebuild.list_builds_for_project(projectName=project)["ids"] == [retried["id"], original["id"]]

    with pytest.raises(botocore.exceptions.ClientError) as err:
        codebuild.retry_build(id=f"{project}:00000000-0000-0000-0000-000000000000")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_build_numbers_listing_order_and_unknown_ids(sandbox, codebuild):
    payments, ledger = create_project(codebuild, "payments-build"), create_project(codebuild, "ledger-build")
    builds = [codebuild.start_build(projectName=payments)["build"] for _ in range(3)]
    ledger_build = codebuild.start_build(projectName=ledger)["build"]
    assert [b["buildNumber"] for b in builds] == [1, 2, 3]
    assert ledger_build["buildNumber"] == 1

    ids = [b["id"] for b in builds]
    assert codebuild.list_builds_for_project(projectName=payments)["ids"] == ids[::-1]
    assert codebuild.list_builds_for_project(projectName=payments, sortOrder="ASCENDING")["ids"] == ids
    assert codebuild.list_builds()["ids"] == [ledger_build["id"], *ids[::-1]]

    missing = f"{payments}:00000000-0000-0000-0000-000000000000"
    answer = codebuild.batch_get_builds(ids=[ids[0], missing])
    assert [b["id"] for b in answer["builds"]] == [ids[0]]
    assert answer["buildsNotFound"] == [missing]


def test_time_speed_finishes_a_build_in_seconds(sandbox, codebuild):
    sandbox.set_lifecycle("time", service="codebuild", seconds=0.2)
    project = create_project(codebuild)
    build_id = codebuild.start_build(projectName=project)["build"]["id"]
    assert not describe(codebuild, build_id)["buildComplete"]

    deadline = time.monotonic() + 8
    while not (build := describe(codebuild, build_id))["buildComplete"]:
        assert time.monotonic() < deadline, f"build still in {build['currentPhase']} after 8 s"
        time.sleep(0.1)
    assert build["buildStatus"] == "SUCCEEDED" and phase_types(build) == ["SUBMITTED", *PHASES]
    # Real timestamps: each phase starts when the one before it ended.
    for before, after in zip(build["phases"], build["phases"][1:], strict=False):
        assert before["endTime"] == after["startTime"]
