"""Sandbox extension for CodeBuild: builds that progress phase by phase, fail on demand and stop.

Stock moto reports a build SUCCEEDED on the first describe with ``buildComplete`` still false, appends
nine phases on every describe, overwrites a stop, ignores ``idempotencyToken`` and the overrides, and
has no ``RetryBuild``. Here each build holds a ``Lifecycle`` over its phases (model
``codebuild::build``, one step per second by default) and moves like a real build:

- ``BatchGetBuilds`` is a describe: ``currentPhase`` and ``phases`` advance at the model's speed,
  ``buildStatus`` stays ``IN_PROGRESS`` and ``buildComplete`` false until ``COMPLETED``;
- a ``fail`` fault (service ``codebuild``, target = project name) is decided when the build starts:
  the phase ``params.phase`` ends ``FAILED`` with ``params.code``/``params.message`` as its context,
  then ``FINALIZING`` and ``COMPLETED`` follow and the build ends ``FAILED``;
- ``StopBuild`` sticks: ``STOPPED`` at once, the current phase ``STOPPED``, then the build finalizes;
- ``StartBuild`` keeps its overrides and honours ``idempotencyToken``; ``RetryBuild`` is added;
- ``ListBuilds``/``ListBuildsForProject`` list newest first (``sortOrder``) in pages of 100.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moto.codebuild import urls as codebuild_urls
from moto.codebuild.models import CodeBuildBackend, codebuild_backends
from moto.codebuild.responses import CodeBuildResponse, _validate_required_params_project_name
from moto.core.responses import ActionResult

from shipflow.sandbox.errors import AwsError
from shipflow.sandbox.faults import REGISTRY, Fault
from shipflow.sandbox.lifecycle import Lifecycle, register_model

MODEL = "codebuild::build"
PHASES = (
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
)
# The phases that run work and so can fail (QUEUED only waits; COMPLETED only marks the end).
FAILABLE_PHASES = PHASES[1:-1]
FAILURE_DEFAULTS = {
    "phase": "BUILD",
    "code": "COMMAND_EXECUTION_ERROR",
    "message": "Error while executing command: make build. Reason: exit status 2",
}
# AWS keeps a StartBuild/RetryBuild idempotency token for five minutes.
IDEMPOTENCY_WINDOW_SECONDS = 300
PAGE_SIZE = 100
# The IAM user moto's STS reports for any sandbox credentials; AWS puts the caller's name here.
INITIATOR = "moto"
# Top-level StartBuild members that are not build parameters, so not compared for idempotency.
NOT_PARAMETERS = {"idempotencyToken"}


def _now() -> datetime:
    return datetime.now(UTC)


def _wind_down_after(phase: str) -> list[str]:
    """The phases a build still goes through once ``phase`` fails or is stopped."""
    return [p for p in ("FINALIZING", "COMPLETED") if PHASES.index(p) > PHASES.index(phase)]


class Build:
    """One build: its ``Build`` shape (``data``) and the lifecycle that moves it through its phases."""

    def __init__(self, data: dict[str, Any], request: dict[str, Any], failure: dict[str, str] | None) -> None:
        self.data = data
        self.request = request  # the StartBuild parameters, kept for RetryBuild
        self.failure = failure
        self.final_status = "SUCCEEDED"
        self._closing_status: str | None = None  # set while a stop closes the current phase
        self.lock = threading.RLock()
        steps = list(PHASES)
        if failure is not None:
            # Straight to FINALIZING after the failing phase (AWS would still run POST_BUILD after BUILD).
            steps = list(PHASES[: PHASES.index(failure["phase"]) + 1]) + _wind_down_after(failure["phase"])
        self.lifecycle = Lifecycle(MODEL, steps, on_step=self._on_step)

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def project_name(self) -> str:
        return self.data["projectName"]

    def snapshot(self) -> dict[str, Any]:
        """The build as it stands, without counting a read (StartBuild, RetryBuild answers)."""
        with self.lock:
            return copy.deepcopy(self.data)

    def describe(self) -> dict[str, Any]:
        """The build as BatchGetBuilds sees it: counts one read for manual progression."""
        with self.lock:
            self.lifecycle.describe()
            return copy.deepcopy(self.data)

    def stop(self) -> dict[str, Any]:
        with self.lock:
            current = self.lifecycle.step
            if current != "COMPLETED":
                self.final_status = self.data["buildStatus"] = "STOPPED"
                self._closing_status = "STOPPED"
                try:
                    self.lifecycle.jump(_wind_down_after(current))
                finally:
                    self._closing_status = None
            return copy.deepcopy(self.data)

    def _on_step(self, _index: int, phase: str) -> None:
        now = _now()
        self._close_current_phase(now)
        self.data["currentPhase"] = phase
        self.data["phases"].append({"phaseType": phase, "startTime": now})
        if phase == "COMPLETED":
            self.data.update(buildStatus=self.final_status, buildComplete=True, endTime=now)

    def _close_current_phase(self, now: datetime) -> None:
        phase = self.data["phases"][-1]
        # AWS gives every finished phase after QUEUED a context, empty unless something went wrong.
        status, context = "SUCCEEDED", {"statusCode": "", "message": ""}
        if self._closing_status is not None:
            status = self._closing_status
        elif self.failure is not None and phase["phaseType"] == self.failure["phase"]:
            status, context = "FAILED", {"statusCode": self.failure["code"], "message": self.failure["message"]}
            self.final_status = "FAILED"
        phase.update(
            phaseStatus=status,
            endTime=now,
            durationInSeconds=int((now - phase["startTime"]).total_seconds()),
        )
        if phase["phaseType"] != "QUEUED":
            phase["contexts"] = [context]


@dataclass(frozen=True)
class _TokenUse:
    parameters: dict[str, Any]
    build_id: str
    at: float


def _failure_from(fault: Fault) -> dict[str, str]:
    failure = {key: str(fault.params.get(key, default)) for key, default in FAILURE_DEFAULTS.items()}
    if failure["phase"] not in FAILABLE_PHASES:
        # The fault was accepted by the control API, which does not know CodeBuild's phases: say so here.
        raise AwsError(
            "InvalidInputException",
            f"Shipflow sandbox fault {fault.id}: params.phase {failure['phase']!r} is not a phase that can fail; "
            f"use one of {list(FAILABLE_PHASES)}",
        )
    return failure


def _merge_environment_variables(base: list[dict[str, Any]], overrides: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The project's variables with overrides replacing same-named ones in place and new ones appended."""
    merged: dict[str, dict[str, Any]] = {}
    for variable in [*base, *overrides]:
        merged[variable["name"]] = {"type": "PLAINTEXT", **variable}
    return list(merged.values())


def _artifacts(spec: dict[str, Any], build_uuid: str) -> dict[str, Any]:
    """The build's artifacts: an S3 ARN built from the project's (or override's) bucket, path and name."""
    artifacts: dict[str, Any] = {"location": ""}
    if spec.get("type") == "S3":
        parts = [spec.get("location"), spec.get("path")]
        if spec.get("namespaceType") == "BUILD_ID":
            parts.append(build_uuid)
        parts.append(spec.get("name"))
        artifacts["location"] = "arn:aws:s3:::" + "/".join(p.strip("/") for p in parts if p and p.strip("/"))
    for key in ("overrideArtifactName", "encryptionDisabled", "artifactIdentifier", "bucketOwnerAccess"):
        if key in spec:
            artifacts[key] = spec[key]
    return artifacts


def _logs(project: dict[str, Any], build_uuid: str, region: str, account_id: str) -> dict[str, Any]:
    config = project.get("logsConfig") or {}
    cloudwatch = {"status": "ENABLED", **config.get("cloudWatchLogs", {})}
    s3 = {"status": "DISABLED", "encryptionDisabled": False, **config.get("s3Logs", {})}
    logs: dict[str, Any] = {"cloudWatchLogs": cloudwatch, "s3Logs": s3}
    if cloudwatch["status"] == "ENABLED":
        group = cloudwatch.get("groupName") or f"/aws/codebuild/{project['name']}"
        prefix = cloudwatch.get("streamName")
        stream = f"{prefix}/{build_uuid}" if prefix else build_uuid
        logs.update(
            groupName=group,
            streamName=stream,
            deepLink=f"https://console.aws.amazon.com/cloudwatch/home?region={region}#logEvent:group={group};stream={stream}",
            cloudWatchLogsArn=f"arn:aws:logs:{region}:{account_id}:log-group:{group}:log-stream:{stream}",
        )
    return logs


def _page(ids: list[str], next_token: str | None) -> dict[str, Any]:
    start = 0
    if next_token:
        if not next_token.isdigit():
            raise AwsError("InvalidInputException", f"Invalid next token: {next_token}")
        start = int(next_token)
    result: dict[str, Any] = {"ids": ids[start : start + PAGE_SIZE]}
    if start + PAGE_SIZE < len(ids):
        result["nextToken"] = str(start + PAGE_SIZE)
    return result


class SandboxCodeBuildBackend(CodeBuildBackend):
    """moto's CodeBuild backend with builds that progress, fail, stop, retry and are idempotent."""

    def __init__(self, region_name: str, account_id: str) -> None:
        super().__init__(region_name, account_id)
        self.builds: dict[str, Build] = {}  # in start order
        self._tokens: dict[tuple[str, str, str], _TokenUse] = {}
        self._lock = threading.RLock()

    @property
    def _url_module(self) -> Any:
        # moto finds a backend's routes from its class's module name; ours lives outside moto.
        return codebuild_urls

    # -- starting builds -----------------------------------------------------------------------
    def start_build(self, project_name: str, request: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        parameters = {k: v for k, v in request.items() if k not in NOT_PARAMETERS}
        return self._start_once(("StartBuild", project_name), request.get("idempotencyToken"), parameters, request)

    def retry_build(self, build_id: str, token: str | None) -> dict[str, Any]:
        with self._lock:
            original = self._find(build_id)
            if original is None:
                raise AwsError("ResourceNotFoundException", f"Build {build_id} does not exist")
            if original.project_name not in self.codebuild_projects:
                raise AwsError(
                    "ResourceNotFoundException", f"Project cannot be found: {self._project_arn(original.project_name)}"
                )
            return self._start_once(("RetryBuild", original.project_name), token, {"id": original.id}, original.request)

    def _start_once(
        self, scope: tuple[str, str], token: str | None, parameters: dict[str, Any], request: dict[str, Any]
    ) -> dict[str, Any]:
        """Start a build, or answer the one an earlier call with the same token started."""
        with self._lock:
            if token:
                used = self._tokens.get((*scope, token))
                if used is not None and time.monotonic() - used.at < IDEMPOTENCY_WINDOW_SECONDS:
                    if used.parameters != parameters:
                        raise AwsError(
                            "InvalidInputException",
                            f"Idempotency token {token} was already used with different parameters",
                        )
                    return self.builds[used.build_id].snapshot()
            build = self._new_build(scope[1], request)
            if token:
                self._tokens[(*scope, token)] = _TokenUse(parameters, build.id, time.monotonic())
            return build.snapshot()

    def _new_build(self, project_name: str, request: dict[str, Any]) -> Build:
        project = self.codebuild_projects[project_name].project_metadata
        build_uuid = str(uuid.uuid4())
        build_id = f"{project_name}:{build_uuid}"
        fault = REGISTRY.take("fail", "codebuild", project_name, on=build_id)
        failure = _failure_from(fault) if fault is not None else None

        now = _now()
        environment = copy.deepcopy(project["environment"])
        environment["environmentVariables"] = _merge_environment_variables(
            environment.get("environmentVariables", []), request.get("environmentVariablesOverride", [])
        )
        source = copy.deepcopy(project["source"])
        if "buildspecOverride" in request:
            source["buildspec"] = request["buildspecOverride"]
        history = self.build_history.setdefault(project_name, [])
        data: dict[str, Any] = {
            "id": build_id,
            "arn": f"arn:{self.partition}:codebuild:{self.region_name}:{self.account_id}:build/{build_id}",
            "buildNumber": len(history) + 1,
            "startTime": now,
            "currentPhase": "QUEUED",
            "buildStatus": "IN_PROGRESS",
            "projectName": project_name,
            "phases": [
                {
                    "phaseType": "SUBMITTED",
                    "phaseStatus": "SUCCEEDED",
                    "startTime": now,
                    "endTime": now,
                    "durationInSeconds": 0,
                },
                {"phaseType": "QUEUED", "startTime": now},
            ],
            "source": source,
            "secondarySources": [],
            "secondarySourceVersions": [],
            "artifacts": _artifacts(request.get("artifactsOverride") or project["artifacts"], build_uuid),
            "secondaryArtifacts": [],
            "cache": copy.deepcopy(project["cache"]),
            "environment": environment,
            "serviceRole": project["serviceRole"],
            "logs": _logs(project, build_uuid, self.region_name, self.account_id),
            "timeoutInMinutes": project.get("timeoutInMinutes") or 60,
            "queuedTimeoutInMinutes": project.get("queuedTimeoutInMinutes") or 480,
            "buildComplete": False,
            "initiator": INITIATOR,
            "encryptionKey": project["encryptionKey"],
        }
        source_version = request.get("sourceVersion") or project.get("sourceVersion")
        if source_version:
            data["sourceVersion"] = source_version
        if "vpcConfig" in project:
            data["vpcConfig"] = copy.deepcopy(project["vpcConfig"])

        build = Build(data, copy.deepcopy(request), failure)
        self.builds[build_id] = build
        history.append(build_id)
        return build

    # -- reading and stopping ------------------------------------------------------------------
    def batch_get_builds(self, ids: list[str]) -> tuple[list[dict[str, Any]], list[str]]:  # type: ignore[override]
        with self._lock:
            found = [(build_id, self._find(build_id)) for build_id in dict.fromkeys(ids)]
        builds = [build.describe() for _, build in found if build is not None]
        return builds, [build_id for build_id, build in found if build is None]

    def stop_build(self, build_id: str) -> dict[str, Any]:
        with self._lock:
            build = self._find(build_id)
        if build is None:
            raise AwsError("ResourceNotFoundException", f"Build {build_id} does not exist")
        return build.stop()

    def list_builds(self, sort_order: str | None = None) -> list[str]:  # type: ignore[override]
        with self._lock:
            ids = list(self.builds)
        return ids if sort_order == "ASCENDING" else ids[::-1]

    def list_builds_for_project(self, project_name: str, sort_order: str | None = None) -> list[str]:  # type: ignore[override]
        with self._lock:
            ids = list(self.build_history.get(project_name, []))
        return ids if sort_order == "ASCENDING" else ids[::-1]

    def _find(self, build_id: str) -> Build | None:
        # Builds are named by id or by ARN (arn:aws:codebuild:<region>:<account>:build/<id>).
        if build_id.startswith("arn:") and ":build/" in build_id:
            build_id = build_id.split(":build/", 1)[1]
        return self.builds.get(build_id)

    def _project_arn(self, name: str) -> str:
        return f"arn:{self.partition}:codebuild:{self.region_name}:{self.account_id}:project/{name}"


# -- Response actions (moto dispatches each action to the method of its snake_case name) ----------
def _request(response: CodeBuildResponse) -> dict[str, Any]:
    return json.loads(response.body or "{}")


def _require_project(response: CodeBuildResponse, name: str, message: str) -> None:
    _validate_required_params_project_name(name)
    backend = response.codebuild_backend
    if name not in backend.codebuild_projects:
        raise AwsError("ResourceNotFoundException", message.format(arn=backend._project_arn(name)))


def _require_build_id(build_id: str) -> None:
    if ":" not in build_id:
        raise AwsError("InvalidInputException", "Invalid build ID provided")


def start_build(self: CodeBuildResponse) -> ActionResult:
    request = _request(self)
    name = request.get("projectName", "")
    _require_project(self, name, "Project cannot be found: {arn}")
    return ActionResult({"build": self.codebuild_backend.start_build(name, request)})


def retry_build(self: CodeBuildResponse) -> ActionResult:
    request = _request(self)
    build_id = request.get("id") or ""
    _require_build_id(build_id)
    build = self.codebuild_backend.retry_build(build_id, request.get("idempotencyToken"))
    return ActionResult({"build": build})


def batch_get_builds(self: CodeBuildResponse) -> ActionResult:
    ids = _request(self).get("ids", [])
    for build_id in ids:
        _require_build_id(build_id)
    builds, not_found = self.codebuild_backend.batch_get_builds(ids)
    return ActionResult({"builds": builds, "buildsNotFound": not_found})


def stop_build(self: CodeBuildResponse) -> ActionResult:
    build_id = _request(self).get("id", "")
    _require_build_id(build_id)
    return ActionResult({"build": self.codebuild_backend.stop_build(build_id)})


def list_builds(self: CodeBuildResponse) -> ActionResult:
    request = _request(self)
    ids = self.codebuild_backend.list_builds(request.get("sortOrder"))
    return ActionResult(_page(ids, request.get("nextToken")))


def list_builds_for_project(self: CodeBuildResponse) -> ActionResult:
    request = _request(self)
    name = request.get("projectName", "")
    _require_project(self, name, "The provided project {arn} does not exist")
    ids = self.codebuild_backend.list_builds_for_project(name, request.get("sortOrder"))
    return ActionResult(_page(ids, request.get("nextToken")))


ACTIONS = (start_build, retry_build, batch_get_builds, stop_build, list_builds, list_builds_for_project)


def install() -> None:
    register_model(MODEL, {"progression": "time", "seconds": 1})
    codebuild_backends.backend = SandboxCodeBuildBackend
    codebuild_backends.clear()
    for action in ACTIONS:
        setattr(CodeBuildResponse, action.__name__, action)


def reset() -> None:
    """Nothing to forget here: builds and tokens live in the backend, which moto's reset renews."""
