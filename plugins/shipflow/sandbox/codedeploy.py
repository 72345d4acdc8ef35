"""CodeDeploy in the sandbox: deployments that progress, fail, stop and roll back as they do on AWS.

Stock moto keeps every deployment ``Created`` forever, gives it a UUID for an id and has no stop,
continue, deployment configs or group updates. This extension swaps moto's backend for one where:

- a deployment holds a ``Lifecycle`` (model ``codedeploy::deployment``, default one step per second):
  ``Created`` -> one or more ``InProgress`` steps -> ``Succeeded``. The number of InProgress steps
  follows the deployment config: a canary shifts traffic twice, a linear config once per increment
  (at most 10), all-at-once once; Server configs deploy a notional fleet of ``SERVER_FLEET``
  instances in batches their minimum healthy hosts allow. ``get_deployment`` and
  ``batch_get_deployments`` count as describes for manual progression.
- ids look like AWS's (``d-`` + 9 uppercase alphanumerics); a group takes one deployment at a time
  (``DeploymentLimitExceededException`` while one is Created/Queued/InProgress/Ready).
- deployment configs exist: AWS's predefined ``CodeDeployDefault.*`` ones and custom ones.
- a ``fail`` fault (target: group name or ``application/group``) decided at creation fails the
  deployment at an InProgress step with AWS's ``errorInformation``; a group's CloudWatch alarms are
  polled while a deployment is InProgress and one in ``ALARM`` stops it (``ALARM_ACTIVE``);
  ``stop_deployment`` stops it. Failures and stops roll back per the auto-rollback configuration:
  a ``codeDeployRollback`` deployment of the group's last successful revision (alarms do not stop it).
- the revision a deployment installs serves traffic (``shipflow.sandbox.world``) from its first
  InProgress step; a failed or stopped deployment gives traffic back to the revision it replaced.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import random
import re
import string
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from moto.codedeploy import models as moto_models
from moto.codedeploy import urls as moto_urls
from moto.codedeploy.models import Application, CodeDeployBackend, DeploymentGroup
from moto.codedeploy.responses import CodeDeployResponse
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow

from shipflow.sandbox import cloudwatch, world
from shipflow.sandbox.errors import AwsError
from shipflow.sandbox.faults import REGISTRY
from shipflow.sandbox.lifecycle import Lifecycle, register_model

log = logging.getLogger(__name__)

MODEL = "codedeploy::deployment"
DEFAULT_TRANSITION = {"progression": "time", "seconds": 1}

# AWS refuses a new deployment to a group while one of its deployments is in one of these.
ACTIVE_STATUSES = frozenset({"Created", "Queued", "InProgress", "Ready"})
ENDED_STATUSES = frozenset({"Succeeded", "Failed", "Stopped"})

# Instances a Server deployment goes through: enough for OneAtATime, HalfAtATime and AllAtOnce to
# take 4, 2 and 1 steps. Lambda and ECS deployments have one target (the function or service).
SERVER_FLEET = 4
MAX_LINEAR_STEPS = 10

_ID_ALPHABET = string.ascii_uppercase + string.digits
_ID_PATTERN = re.compile(r"d-[A-Z0-9]{9}")
ROLLBACK_CREATOR = "codeDeployRollback"

DEFAULT_FAILURE = {
    # Server: what AWS reports when instances fail their lifecycle scripts.
    "Server": (
        "HEALTH_CONSTRAINTS",
        "The overall deployment failed because too many individual instances failed deployment, too few "
        "healthy instances are available for deployment, or some instances in your deployment group are "
        "experiencing problems.",
    ),
    "Lambda": ("HOOK_EXECUTION_FAILURE", "One or more lifecycle event hooks of the deployment failed."),
    "ECS": ("HOOK_EXECUTION_FAILURE", "One or more lifecycle event hooks of the deployment failed."),
}
ALARM_MESSAGE = (
    "One or more alarms have been activated according to the Amazon CloudWatch metrics you selected, "
    "and the affected deployments have been stopped. Activated alarms: {names}"
)
ALARM_POLL_MESSAGE = (
    "The deployment was stopped because the state of alarms {names} could not be retrieved from Amazon "
    "CloudWatch and ignorePollAlarmFailure is false."
)
STOP_MESSAGE = "The deployment was stopped by user request."
ROLLBACK_STARTED_MESSAGE = "Rolling back to the last successful revision with deployment {rollback}."
NO_ROLLBACK_MESSAGE = (
    "Automatic rollback was not performed because the deployment group has no previous successful deployment."
)
STOP_PENDING = {
    "status": "Pending",
    "statusMessage": "Stopping Pending. Stopping to schedule commands in the deployment instances",
}

# One lock for every CodeDeploy backend: the server is threaded and a lifecycle step's side effects
# (a rollback deployment, the group's last success) touch several objects at once. Always taken
# before a Lifecycle's own lock, never after it.
_LOCK = threading.RLock()
_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(method: _F) -> _F:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# -- deployment configs ---------------------------------------------------------------------------
def _canary(percentage: int, minutes: int) -> dict[str, Any]:
    return {"type": "TimeBasedCanary", "timeBasedCanary": {"canaryPercentage": percentage, "canaryInterval": minutes}}


def _linear(percentage: int, minutes: int) -> dict[str, Any]:
    return {"type": "TimeBasedLinear", "timeBasedLinear": {"linearPercentage": percentage, "linearInterval": minutes}}


def _predefined_configs() -> dict[str, dict[str, Any]]:
    """AWS's built-in configs, as GetDeploymentConfig returns them (ids are stable per name)."""
    created = datetime(2014, 11, 12)  # predefined configs predate every account
    configs: dict[str, dict[str, Any]] = {}

    def add(name: str, platform: str, **fields: Any) -> None:
        full = f"CodeDeployDefault.{name}"
        configs[full] = {
            "deploymentConfigId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"codedeploy:{full}")),
            "deploymentConfigName": full,
            "createTime": created,
            "computePlatform": platform,
            **fields,
        }

    all_at_once = {"type": "AllAtOnce"}
    # AWS documents that OneAtATime reports MOST_CONCURRENCY, a type callers cannot set themselves.
    add(
        "OneAtATime",
        "Server",
        minimumHealthyHosts={"type": "MOST_CONCURRENCY", "value": 1},
        trafficRoutingConfig=all_at_once,
    )
    add(
        "HalfAtATime",
        "Server",
        minimumHealthyHosts={"type": "FLEET_PERCENT", "value": 50},
        trafficRoutingConfig=all_at_once,
    )
    add("AllAtOnce", "Server", minimumHealthyHosts={"type": "HOST_COUNT", "value": 0}, trafficRoutingConfig=all_at_once)
    for minutes in (5, 10, 15, 30):
        add(f"LambdaCanary10Percent{minutes}Minutes", "Lambda", trafficRoutingConfig=_canary(10, minutes))
    for minutes in (1, 2, 3, 10):
        suffix = "Minute" if minutes == 1 else "Minutes"  # AWS's names: Every1Minute, Every2Minutes
        add(f"LambdaLinear10PercentEvery{minutes}{suffix}", "Lambda", trafficRoutingConfig=_linear(10, minutes))
    add("LambdaAllAtOnce", "Lambda", trafficRoutingConfig=all_at_once)
    for minutes in (5, 15):
        add(f"ECSCanary10Percent{minutes}Minutes", "ECS", trafficRoutingConfig=_canary(10, minutes))
    for minutes in (1, 3):  # AWS's ECS names say "Every1Minutes"
        add(f"ECSLinear10PercentEvery{minutes}Minutes", "ECS", trafficRoutingConfig=_linear(10, minutes))
    add("ECSAllAtOnce", "ECS", trafficRoutingConfig=all_at_once)
    return configs


PREDEFINED_CONFIGS = _predefined_configs()
DEFAULT_CONFIG = {
    "Server": "CodeDeployDefault.OneAtATime",
    "Lambda": "CodeDeployDefault.LambdaAllAtOnce",
    "ECS": "CodeDeployDefault.ECSAllAtOnce",
}
DEFAULT_STYLE = {
    "Server": {"deploymentType": "IN_PLACE", "deploymentOption": "WITHOUT_TRAFFIC_CONTROL"},
    "Lambda": {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
    "ECS": {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
}


def _plan(config: dict[str, Any], platform: str) -> tuple[int, list[tuple[int, int]]]:
    """Targets and, per InProgress step, (targets done, targets in progress) under ``config``."""
    if platform == "Server":
        hosts = config.get("minimumHealthyHosts") or {}
        kind, value = hosts.get("type"), int(hosts.get("value", 0))
        if kind == "MOST_CONCURRENCY":
            batch = value
        elif kind == "FLEET_PERCENT":
            batch = SERVER_FLEET - math.ceil(SERVER_FLEET * value / 100)
        else:
            batch = SERVER_FLEET - value
        batch = min(max(batch, 1), SERVER_FLEET)
        return SERVER_FLEET, [(done, min(batch, SERVER_FLEET - done)) for done in range(0, SERVER_FLEET, batch)]
    routing = config.get("trafficRoutingConfig") or {"type": "AllAtOnce"}
    if routing.get("type") == "TimeBasedCanary":
        shifts = 2
    elif routing.get("type") == "TimeBasedLinear":
        percentage = max(int(routing.get("timeBasedLinear", {}).get("linearPercentage", 100)), 1)
        shifts = min(math.ceil(100 / percentage), MAX_LINEAR_STEPS)
    else:
        shifts = 1
    return 1, [(0, 1)] * shifts


def _overview(total: int, succeeded: int = 0, in_progress: int = 0, failed: int = 0, skipped: int = 0) -> dict:
    return {
        "Pending": total - succeeded - in_progress - failed - skipped,
        "InProgress": in_progress,
        "Succeeded": succeeded,
        "Failed": failed,
        "Skipped": skipped,
        "Ready": 0,
    }


# -- revisions ------------------------------------------------------------------------------------
def revision_label(revision: dict[str, Any]) -> str:
    """A short, stable name for a revision: what serves traffic, in metrics, faults and logs.

    ``s3://bucket/key[?versionId=v]``, ``appspec:<first 12 hex of the content's sha256>`` (or of
    the sha256 given) for AppSpecContent and String revisions, ``github:<repository>@<commitId>``.
    """
    kind = revision.get("revisionType")
    if kind == "S3":
        location = revision.get("s3Location") or {}
        if not location.get("bucket") or not location.get("key"):
            raise ValueError("an S3 revision needs s3Location.bucket and s3Location.key")
        label = f"s3://{location['bucket']}/{location['key']}"
        return f"{label}?versionId={location['version']}" if location.get("version") else label
    if kind in ("AppSpecContent", "String"):
        content = revision.get("appSpecContent" if kind == "AppSpecContent" else "string") or {}
        digest = content.get("sha256") or (
            hashlib.sha256(content["content"].encode()).hexdigest() if content.get("content") else None
        )
        if not digest:
            raise ValueError(f"a {kind} revision needs content or sha256")
        return f"appspec:{digest.lower()[:12]}"
    if kind == "GitHub":
        location = revision.get("gitHubLocation") or {}
        if not location.get("repository") or not location.get("commitId"):
            raise ValueError("a GitHub revision needs gitHubLocation.repository and gitHubLocation.commitId")
        return f"github:{location['repository']}@{location['commitId']}"
    raise ValueError(f"unknown revisionType {kind!r}")


def _public_revision(revision: dict[str, Any]) -> dict[str, Any]:
    """The revision as GetDeployment shows it: AWS never returns an AppSpec's content, only its sha256."""
    if revision.get("revisionType") != "AppSpecContent":
        return revision
    content = revision.get("appSpecContent") or {}
    sha256 = content.get("sha256") or hashlib.sha256(content.get("content", "").encode()).hexdigest()
    return {"revisionType": "AppSpecContent", "appSpecContent": {"sha256": sha256}}


def _compact(info: dict[str, Any]) -> dict[str, Any]:
    """AWS leaves out members it has no value for."""
    return {key: value for key, value in info.items() if value is not None and value != {}}


# -- deployments ----------------------------------------------------------------------------------
@dataclass
class GroupHistory:
    """What a deployment group remembers across deployments (keyed by its id, which survives renames)."""

    last_successful: Deployment | None = None
    last_attempted: Deployment | None = None


class Deployment:
    """One deployment and its lifecycle. Every method runs under ``_LOCK``."""

    def __init__(
        self,
        backend: ShipflowCodeDeployBackend,
        group: DeploymentGroup,
        revision: dict[str, Any],
        config_name: str,
        *,
        description: str | None,
        creator: str,
        options: dict[str, Any],
        fault: Any = None,
    ) -> None:
        self.backend = backend
        self.group = group
        self.application: Application = group.application
        self.deployment_id = backend.new_deployment_id()
        self.group_name = group.deployment_group_name
        self.revision = revision
        self.config_name = config_name
        self.description = description
        self.creator = creator
        self.options = options
        history = backend.history(group)
        self.previous_revision = history.last_successful.revision if history.last_successful else None
        # The deployment's own auto-rollback configuration overrides the group's; AWS records the
        # one in force when the deployment was created.
        self.auto_rollback = options.get("autoRollbackConfiguration") or group.auto_rollback_configuration or None
        self.create_time = utcnow()
        self.start_time: datetime | None = None
        self.complete_time: datetime | None = None
        self.error_information: dict[str, str] | None = None
        self.rollback_info: dict[str, str] = {}
        self._replaced: world.LiveRevision | None = None
        self.lifecycle = Lifecycle(MODEL, self._steps(backend.config(config_name), fault), on_step=self._entered)

    @property
    def platform(self) -> str:
        return self.application.compute_platform or "Server"

    def _steps(self, config: dict[str, Any], fault: Any) -> list[dict[str, Any]]:
        total, plan = _plan(config, self.platform)
        steps = [{"status": "Created", "overview": _overview(total)}]
        steps += [{"status": "InProgress", "overview": _overview(total, done, active)} for done, active in plan]
        if fault is None:
            return [*steps, {"status": "Succeeded", "overview": _overview(total, total)}]
        at_step = fault.params.get("at_step", len(plan))
        at_step = min(max(int(at_step), 1), len(plan))  # 1-based; out of range means the first or last
        done, active = plan[at_step - 1]
        default_code, default_message = DEFAULT_FAILURE[self.platform]
        code = fault.params.get("code", default_code)
        fallback = default_message if code == default_code else f"The deployment failed with error code {code}."
        message = fault.params.get("message", fallback)
        failed = {
            "status": "Failed",
            "overview": _overview(total, done, failed=active, skipped=total - done - active),
            "error": {"code": code, "message": message},
            "rollback_event": "DEPLOYMENT_FAILURE",
        }
        return [*steps[: at_step + 1], failed]

    @property
    def status(self) -> str:
        """The status as of the last progress applied (callers refresh first)."""
        return self.lifecycle.steps[self.lifecycle.index]["status"]

    # -- progress and side effects ------------------------------------------------------------------
    def refresh(self, count_read: bool = False) -> None:
        """Apply due progress and poll alarms; ``count_read`` counts a describe (manual progression).

        Alarms are polled before the describe moves the deployment on, so an alarm raised during the
        last step stops the deployment instead of being missed, and again after it, so an alarm
        already in ALARM stops a deployment as soon as it starts.
        """
        self.lifecycle.step  # noqa: B018 - reading the step applies elapsed time progression
        self._poll_alarms()
        if count_read:
            self.lifecycle.describe()
            self._poll_alarms()

    def _entered(self, index: int, step: dict[str, Any]) -> None:
        status = step["status"]
        if status == "InProgress" and self.start_time is None:
            self.start_time = utcnow()
            self._go_live()
        elif status in ENDED_STATUSES:
            self.complete_time = utcnow()
            history = self.backend.history(self.group)
            if status == "Succeeded":
                history.last_successful = self
                return
            self.error_information = step["error"]
            self._give_traffic_back()
            if self._rolls_back(step):
                self.backend.roll_back(self)

    def _live_key(self) -> tuple[str, str, str, str]:
        return (self.backend.account_id, self.backend.region_name, self.application.application_name, self.group_name)

    def _go_live(self) -> None:
        self._replaced = world.get_live(*self._live_key())
        world.set_live(world.LiveRevision(*self._live_key(), revision_label(self.revision), self.deployment_id))

    def _give_traffic_back(self) -> None:
        live = world.get_live(*self._live_key())
        if self._replaced is not None and live is not None and live.deployment_id == self.deployment_id:
            replaced = self._replaced
            world.set_live(world.LiveRevision(*self._live_key(), replaced.revision, replaced.deployment_id))

    def _rolls_back(self, step: dict[str, Any]) -> bool:
        if self.creator == ROLLBACK_CREATOR:
            return False  # rolling back a rollback would redeploy the same revision again
        if step.get("rollback") is not None:  # stop_deployment(autoRollbackEnabled=...) decides
            return bool(step["rollback"])
        config = self.auto_rollback or {}
        return bool(config.get("enabled")) and step["rollback_event"] in (config.get("events") or [])

    def stop(self, error: dict[str, str], rollback_event: str, rollback: bool | None = None) -> None:
        """End the deployment Stopped now: targets not done yet are skipped."""
        current = self.lifecycle.steps[self.lifecycle.index]["overview"]
        total = sum(current.values())
        succeeded = current["Succeeded"]
        self.lifecycle.jump(
            [
                {
                    "status": "Stopped",
                    "overview": _overview(total, succeeded, skipped=total - succeeded),
                    "error": error,
                    "rollback_event": rollback_event,
                    "rollback": rollback,
                }
            ]
        )

    def _alarm_configuration(self) -> dict[str, Any]:
        override = self.options.get("overrideAlarmConfiguration")
        return override if override is not None else (self.group.alarm_configuration or {})

    def _poll_alarms(self) -> None:
        # A rollback is not stopped by the alarms that caused it: it restores the last good revision,
        # as Lambda and ECS rollbacks re-route traffic at once, and drills should end on that revision.
        if self.status != "InProgress" or self.creator == ROLLBACK_CREATOR:
            return
        config = self._alarm_configuration()
        names = [alarm["name"] for alarm in config.get("alarms") or [] if alarm.get("name")]
        if not config.get("enabled") or not names:
            return
        try:
            states = cloudwatch.alarm_states(self.backend.account_id, self.backend.region_name, names)
        except Exception:  # any failure to read alarms is a failed poll, which AWS handles per the group
            log.exception("polling alarms %s for deployment %s failed", names, self.deployment_id)
            states = {}
        active = [name for name in names if states.get(name) == "ALARM"]
        if active:
            error = {"code": "ALARM_ACTIVE", "message": ALARM_MESSAGE.format(names=", ".join(active))}
            self.stop(error, "DEPLOYMENT_STOP_ON_ALARM")
            return
        unknown = [name for name in names if name not in states]
        if unknown and not config.get("ignorePollAlarmFailure"):
            error = {"code": "ALARM_ACTIVE", "message": ALARM_POLL_MESSAGE.format(names=", ".join(unknown))}
            self.stop(error, "DEPLOYMENT_STOP_ON_ALARM")

    # -- views --------------------------------------------------------------------------------------
    def last_info(self) -> dict[str, Any]:
        return _compact(
            {
                "deploymentId": self.deployment_id,
                "status": self.status,
                "endTime": self.complete_time,
                "createTime": self.create_time,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        step = self.lifecycle.steps[self.lifecycle.index]
        options = self.options
        return _compact(
            {
                "applicationName": self.application.application_name,
                "deploymentGroupName": self.group_name,
                "deploymentConfigName": self.config_name,
                "deploymentId": self.deployment_id,
                "previousRevision": _public_revision(self.previous_revision) if self.previous_revision else None,
                "revision": _public_revision(self.revision),
                "status": step["status"],
                "errorInformation": self.error_information,
                "createTime": self.create_time,
                "startTime": self.start_time,
                "completeTime": self.complete_time,
                "deploymentOverview": step["overview"],
                "description": self.description,
                "creator": self.creator,
                "ignoreApplicationStopFailures": bool(options.get("ignoreApplicationStopFailures")),
                "autoRollbackConfiguration": self.auto_rollback,
                "updateOutdatedInstancesOnly": bool(options.get("updateOutdatedInstancesOnly")),
                "rollbackInfo": self.rollback_info,
                "deploymentStyle": self.group.deployment_style or DEFAULT_STYLE[self.platform],
                "targetInstances": options.get("targetInstances"),
                "instanceTerminationWaitTimeStarted": False,
                "blueGreenDeploymentConfiguration": self.group.blue_green_deployment_configuration,
                "loadBalancerInfo": self.group.load_balancer_info,
                "fileExistsBehavior": options.get("fileExistsBehavior")
                or ("DISALLOW" if self.platform == "Server" else None),
                "deploymentStatusMessages": [],
                "computePlatform": self.platform,
                "overrideAlarmConfiguration": options.get("overrideAlarmConfiguration"),
            }
        )


# -- the backend ----------------------------------------------------------------------------------
def _no_application(name: str) -> AwsError:
    return AwsError("ApplicationDoesNotExistException", f"No application found for name: {name}")


def _no_group(name: str) -> AwsError:
    return AwsError("DeploymentGroupDoesNotExistException", f"No Deployment Group found for name: {name}")


def _no_config(name: str) -> AwsError:
    return AwsError("DeploymentConfigDoesNotExistException", f"No deployment configuration found for name: {name}")


class ShipflowCodeDeployBackend(CodeDeployBackend):
    """moto's CodeDeploy backend with deployments that progress, and the actions moto lacks."""

    def __init__(self, region_name: str, account_id: str) -> None:
        super().__init__(region_name, account_id)
        self.deployments: dict[str, Deployment] = {}  # type: ignore[assignment]
        self.custom_configs: dict[str, dict[str, Any]] = {}
        self.histories: dict[str, GroupHistory] = {}

    @property
    def _url_module(self) -> Any:
        return moto_urls  # moto finds routes by the backend class's module name

    # -- helpers --------------------------------------------------------------------------------
    def new_deployment_id(self) -> str:
        while True:
            candidate = "d-" + "".join(random.choices(_ID_ALPHABET, k=9))
            if candidate not in self.deployments:
                return candidate

    def history(self, group: DeploymentGroup) -> GroupHistory:
        return self.histories.setdefault(group.deployment_group_id, GroupHistory())

    def config(self, name: str) -> dict[str, Any]:
        config = PREDEFINED_CONFIGS.get(name) or self.custom_configs.get(name)
        if config is None:
            raise _no_config(name)
        return config

    def _group(self, application_name: str, group_name: str) -> DeploymentGroup:
        if application_name not in self.applications:
            raise _no_application(application_name)
        group = self.deployment_groups.get(application_name, {}).get(group_name)
        if group is None:
            raise _no_group(group_name)
        return group

    def _deployment(self, deployment_id: str) -> Deployment:
        if not deployment_id:
            raise AwsError("DeploymentIdRequiredException", "At least one deployment ID must be specified.")
        if not _ID_PATTERN.fullmatch(deployment_id):
            raise AwsError(
                "InvalidDeploymentIdException", f"Specified DeploymentId is not in the valid format: {deployment_id}"
            )
        deployment = self.deployments.get(deployment_id)
        if deployment is None:
            raise AwsError(
                "DeploymentDoesNotExistException",
                f"The deployment {deployment_id} does not exist with the user or AWS account.",
            )
        return deployment

    def _deployments_of(self, group: DeploymentGroup) -> list[Deployment]:
        return [d for d in self.deployments.values() if d.group is group]

    def _start(
        self,
        group: DeploymentGroup,
        revision: dict[str, Any],
        config_name: str,
        description: str | None = None,
        creator: str = "user",
        options: dict[str, Any] | None = None,
    ) -> Deployment:
        application_name = group.application.application_name
        fault = REGISTRY.take(
            "fail",
            "codedeploy",
            group.deployment_group_name,
            f"{application_name}/{group.deployment_group_name}",
            on=f"{application_name}/{group.deployment_group_name}",
        )
        deployment = Deployment(
            self,
            group,
            revision,
            config_name,
            description=description,
            creator=creator,
            options=options or {},
            fault=fault,
        )
        self.deployments[deployment.deployment_id] = deployment
        self.history(group).last_attempted = deployment
        if group.tags:  # as moto does: a deployment carries its group's tags
            self.tagger.tag_resource(self._arn(f"deployment:{deployment.deployment_id}"), group.tags)
        return deployment

    def roll_back(self, deployment: Deployment) -> None:
        """Start a rollback of ``deployment`` (which has just ended) to the group's last good revision."""
        good = self.history(deployment.group).last_successful
        if good is None:
            deployment.rollback_info = {"rollbackMessage": NO_ROLLBACK_MESSAGE}
            return
        rollback = self._start(deployment.group, good.revision, deployment.config_name, creator=ROLLBACK_CREATOR)
        rollback.rollback_info = {"rollbackTriggeringDeploymentId": deployment.deployment_id}
        deployment.rollback_info = {
            "rollbackDeploymentId": rollback.deployment_id,
            "rollbackMessage": ROLLBACK_STARTED_MESSAGE.format(rollback=rollback.deployment_id),
        }

    # -- deployments ----------------------------------------------------------------------------
    @_locked
    def create_deployment(  # type: ignore[override]
        self,
        application_name: str,
        deployment_group_name: str,
        revision: dict[str, Any] | None,
        deployment_config_name: str | None = None,
        description: str | None = None,
        ignore_application_stop_failures: bool | None = None,
        target_instances: Any | None = None,
        auto_rollback_configuration: Any | None = None,
        update_outdated_instances_only: bool | None = None,
        file_exists_behavior: str | None = None,
        override_alarm_configuration: Any | None = None,
    ) -> str:
        if not application_name:
            raise AwsError(
                "ApplicationNameRequiredException",
                "The minimum number of required application names was not specified.",
            )
        if not deployment_group_name:
            raise AwsError("DeploymentGroupNameRequiredException", "The deployment group name was not specified.")
        group = self._group(application_name, deployment_group_name)
        if not revision:
            raise AwsError("RevisionRequiredException", "The revision ID was not specified.")
        try:
            revision_label(revision)
        except ValueError as exc:
            raise AwsError(
                "InvalidRevisionException", f"The revision was specified in an invalid format: {exc}."
            ) from None
        config_name = deployment_config_name or str(group.deployment_config_name)
        self.config(config_name)
        for other in self._deployments_of(group):
            other.refresh()
            if other.status in ACTIVE_STATUSES:
                raise AwsError(
                    "DeploymentLimitExceededException",
                    f"The Deployment Group '{deployment_group_name}' already has an active Deployment "
                    f"'{other.deployment_id}'",
                )
        options = {
            "ignoreApplicationStopFailures": ignore_application_stop_failures,
            "targetInstances": target_instances,
            "autoRollbackConfiguration": auto_rollback_configuration,
            "updateOutdatedInstancesOnly": update_outdated_instances_only,
            "fileExistsBehavior": file_exists_behavior,
            "overrideAlarmConfiguration": override_alarm_configuration,
        }
        return self._start(group, revision, config_name, description, options=options).deployment_id

    @_locked
    def describe_deployment(self, deployment_id: str) -> dict[str, Any]:
        deployment = self._deployment(deployment_id)
        deployment.refresh(count_read=True)
        return deployment.to_dict()

    @_locked
    def describe_deployments(self, deployment_ids: list[str]) -> list[dict[str, Any]]:
        found = []
        for deployment_id in deployment_ids or []:
            try:
                deployment = self._deployment(deployment_id)
            except AwsError as exc:
                if exc.code != "DeploymentDoesNotExistException":
                    raise
                continue  # AWS leaves unknown ids out of the answer
            deployment.refresh(count_read=True)
            found.append(deployment.to_dict())
        return found

    @_locked
    def list_deployments(  # type: ignore[override]
        self,
        application_name: str | None,
        deployment_group_name: str | None,
        external_id: str | None,
        include_only_statuses: list[str] | None,
        create_time_range: dict[str, datetime] | None,
    ) -> list[str]:
        if application_name and not deployment_group_name:
            raise AwsError(
                "DeploymentGroupNameRequiredException",
                "If applicationName is specified, then deploymentGroupName must be specified.",
            )
        if deployment_group_name and not application_name:
            raise AwsError(
                "ApplicationNameRequiredException",
                "If deploymentGroupName is specified, applicationName must be specified.",
            )
        group = self._group(application_name, deployment_group_name) if application_name else None
        start, end = (_naive_utc((create_time_range or {}).get(key)) for key in ("start", "end"))
        if start is not None and end is not None and start > end:
            raise AwsError("InvalidTimeRangeException", "The start time must be earlier than the end time.")
        chosen = []
        for deployment in self.deployments.values():
            if group is not None and deployment.group is not group:
                continue
            deployment.refresh()
            if include_only_statuses and deployment.status not in include_only_statuses:
                continue
            if (start and deployment.create_time < start) or (end and deployment.create_time > end):
                continue
            chosen.append(deployment)
        # Newest first, as AWS lists them; dict order breaks ties between equal timestamps.
        ordered = sorted(enumerate(chosen), key=lambda pair: (pair[1].create_time, pair[0]), reverse=True)
        return [deployment.deployment_id for _, deployment in ordered]

    @_locked
    def stop_deployment(self, deployment_id: str, auto_rollback_enabled: bool | None) -> dict[str, str]:
        deployment = self._deployment(deployment_id)
        deployment.refresh()
        if deployment.status in ENDED_STATUSES:
            raise AwsError(
                "DeploymentAlreadyCompletedException", f"The deployment {deployment_id} is already completed."
            )
        deployment.stop(
            {"code": "MANUAL_STOP", "message": STOP_MESSAGE}, "DEPLOYMENT_STOP_ON_REQUEST", auto_rollback_enabled
        )
        return dict(STOP_PENDING)

    @_locked
    def continue_deployment(self, deployment_id: str) -> None:
        deployment = self._deployment(deployment_id)
        deployment.refresh()
        if deployment.status in ENDED_STATUSES:
            raise AwsError(
                "DeploymentAlreadyCompletedException", f"The deployment {deployment_id} is already completed."
            )
        if deployment.status != "Ready":
            raise AwsError(
                "DeploymentIsNotInReadyStateException",
                "The deployment does not have a status of Ready and can't continue yet.",
            )
        # Sandbox deployments never wait in Ready, so there is nothing to release.

    # -- deployment groups ----------------------------------------------------------------------
    @_locked
    def create_deployment_group(  # type: ignore[override]
        self,
        application_name: str,
        deployment_group_name: str,
        deployment_config_name: str | None,
        *args: Any,
        **kwargs: Any,
    ) -> str:
        application = self.applications.get(application_name)
        if application is None:
            raise _no_application(application_name)
        platform = application.compute_platform or "Server"
        config_name = deployment_config_name or DEFAULT_CONFIG[platform]
        self.config(config_name)
        return super().create_deployment_group(application_name, deployment_group_name, config_name, *args, **kwargs)

    @_locked
    def update_deployment_group(self, application_name: str, current_name: str, changes: dict[str, Any]) -> None:
        group = self._group(application_name, current_name)
        groups = self.deployment_groups[application_name]
        new_name = changes.get("newDeploymentGroupName") or current_name
        # Validate everything before changing anything, so a refused update leaves the group as it was.
        if changes.get("deploymentConfigName"):
            self.config(changes["deploymentConfigName"])
        if new_name != current_name and new_name in groups:
            raise AwsError(
                "DeploymentGroupAlreadyExistsException",
                f"A deployment group with the name {new_name} already exists for the application.",
            )
        if new_name != current_name:
            groups[new_name] = groups.pop(current_name)
            group.deployment_group_name = new_name
        attributes = {
            "ec2TagFilters": "ec2_tag_filters",
            "onPremisesInstanceTagFilters": "on_premises_instance_tag_filters",
            "autoScalingGroups": "auto_scaling_groups",
            "serviceRoleArn": "service_role_arn",
            "triggerConfigurations": "trigger_configurations",
            "alarmConfiguration": "alarm_configuration",
            "autoRollbackConfiguration": "auto_rollback_configuration",
            "outdatedInstancesStrategy": "outdated_instances_strategy",
            "deploymentStyle": "deployment_style",
            "blueGreenDeploymentConfiguration": "blue_green_deployment_configuration",
            "loadBalancerInfo": "load_balancer_info",
            "ec2TagSet": "ec2_tag_set",
            "ecsServices": "ecs_services",
            "onPremisesTagSet": "on_premises_tag_set",
            "terminationHookEnabled": "termination_hook_enabled",
            "deploymentConfigName": "deployment_config_name",
        }
        for key, attribute in attributes.items():
            if changes.get(key) is not None:  # AWS leaves what the request does not mention
                setattr(group, attribute, changes[key])

    @_locked
    def describe_deployment_group(self, application_name: str, group_name: str) -> dict[str, Any]:
        group = self._group(application_name, group_name)
        return self._group_info(group)

    @_locked
    def describe_deployment_groups(self, application_name: str, group_names: list[str]) -> tuple[list[dict], str]:
        if application_name not in self.applications:
            raise _no_application(application_name)
        groups = self.deployment_groups.get(application_name, {})
        found = [self._group_info(groups[name]) for name in group_names if name in groups]
        missing = [name for name in group_names if name not in groups]
        return found, (f"Deployment groups not found: {', '.join(missing)}" if missing else "")

    def _group_info(self, group: DeploymentGroup) -> dict[str, Any]:
        for deployment in self._deployments_of(group):
            deployment.refresh()  # progress and alarms, so last deployments are current
        history = self.history(group)
        platform = group.application.compute_platform or "Server"
        attempted = history.last_attempted
        return _compact(
            {
                "applicationName": group.application.application_name,
                "deploymentGroupId": group.deployment_group_id,
                "deploymentGroupName": group.deployment_group_name,
                "deploymentConfigName": str(group.deployment_config_name),
                "ec2TagFilters": group.ec2_tag_filters,
                "onPremisesInstanceTagFilters": group.on_premises_instance_tag_filters,
                "autoScalingGroups": group.auto_scaling_groups,
                "serviceRoleArn": group.service_role_arn,
                "targetRevision": _public_revision(attempted.revision) if attempted else None,
                "triggerConfigurations": group.trigger_configurations,
                "alarmConfiguration": group.alarm_configuration
                or {"enabled": False, "ignorePollAlarmFailure": False, "alarms": []},
                "autoRollbackConfiguration": group.auto_rollback_configuration,
                "deploymentStyle": group.deployment_style or DEFAULT_STYLE[platform],
                "outdatedInstancesStrategy": group.outdated_instances_strategy or "UPDATE",
                "blueGreenDeploymentConfiguration": group.blue_green_deployment_configuration,
                "loadBalancerInfo": group.load_balancer_info,
                "lastSuccessfulDeployment": history.last_successful.last_info() if history.last_successful else None,
                "lastAttemptedDeployment": attempted.last_info() if attempted else None,
                "ec2TagSet": group.ec2_tag_set,
                "onPremisesTagSet": group.on_premises_tag_set,
                "computePlatform": platform,
                "ecsServices": group.ecs_services,
                "terminationHookEnabled": bool(group.termination_hook_enabled),
            }
        )

    # -- deployment configs ---------------------------------------------------------------------
    @_locked
    def create_deployment_config(
        self,
        name: str,
        minimum_healthy_hosts: dict[str, Any] | None,
        traffic_routing_config: dict[str, Any] | None,
        compute_platform: str | None,
        zonal_config: dict[str, Any] | None,
    ) -> str:
        if not name:
            raise AwsError(
                "DeploymentConfigNameRequiredException", "The deployment configuration name was not specified."
            )
        if name.startswith("CodeDeployDefault."):
            raise AwsError(
                "InvalidDeploymentConfigNameException",
                f"The deployment configuration name {name} is reserved for predefined configurations.",
            )
        if name in self.custom_configs:
            raise AwsError(
                "DeploymentConfigAlreadyExistsException", f"A deployment configuration named {name} already exists."
            )
        platform = compute_platform or "Server"
        routing = traffic_routing_config or {"type": "AllAtOnce"}
        if platform == "Server":
            hosts = minimum_healthy_hosts or {}
            if hosts.get("type") not in ("HOST_COUNT", "FLEET_PERCENT") or not isinstance(hosts.get("value"), int):
                raise AwsError(
                    "InvalidMinimumHealthyHostValueException",
                    "The minimum healthy instance value was specified in an invalid format.",
                )
            if routing.get("type") != "AllAtOnce":
                raise AwsError(
                    "InvalidTrafficRoutingConfigurationException",
                    "Server deployment configurations support only AllAtOnce traffic routing.",
                )
        expected = {"TimeBasedCanary": "timeBasedCanary", "TimeBasedLinear": "timeBasedLinear"}.get(routing.get("type"))
        if routing.get("type") not in ("AllAtOnce", "TimeBasedCanary", "TimeBasedLinear") or (
            expected and not routing.get(expected)
        ):
            raise AwsError(
                "InvalidTrafficRoutingConfigurationException",
                "The configuration that specifies how traffic is routed during a deployment is invalid.",
            )
        config = _compact(
            {
                "deploymentConfigId": str(uuid.uuid4()),
                "deploymentConfigName": name,
                "minimumHealthyHosts": minimum_healthy_hosts,
                "createTime": utcnow(),
                "computePlatform": platform,
                "trafficRoutingConfig": routing,
                "zonalConfig": zonal_config,
            }
        )
        self.custom_configs[name] = config
        return config["deploymentConfigId"]

    @_locked
    def get_deployment_config(self, name: str) -> dict[str, Any]:
        if not name:
            raise AwsError(
                "DeploymentConfigNameRequiredException", "The deployment configuration name was not specified."
            )
        return self.config(name)

    @_locked
    def list_deployment_configs(self) -> list[str]:
        return [*PREDEFINED_CONFIGS, *sorted(self.custom_configs)]

    @_locked
    def delete_deployment_config(self, name: str) -> None:
        if not name:
            raise AwsError(
                "DeploymentConfigNameRequiredException", "The deployment configuration name was not specified."
            )
        if name in PREDEFINED_CONFIGS:
            raise AwsError("InvalidOperationException", "A predefined deployment configuration cannot be deleted.")
        for groups in self.deployment_groups.values():
            for group in groups.values():
                if str(group.deployment_config_name) == name:
                    raise AwsError(
                        "DeploymentConfigInUseException",
                        f"The deployment configuration {name} is in use by deployment group "
                        f"{group.deployment_group_name}.",
                    )
        self.custom_configs.pop(name, None)  # deleting a config that does not exist succeeds


def _naive_utc(value: datetime | None) -> datetime | None:
    """Times as moto stores them (naive UTC), whatever the request parser produced."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


# -- actions on moto's Response class ---------------------------------------------------------------
def _get_deployment(self: CodeDeployResponse) -> ActionResult:
    return ActionResult(
        {"deploymentInfo": self.codedeploy_backend.describe_deployment(self._get_param("deploymentId"))}
    )


def _batch_get_deployments(self: CodeDeployResponse) -> ActionResult:
    infos = self.codedeploy_backend.describe_deployments(self._get_param("deploymentIds"))
    return ActionResult({"deploymentsInfo": infos})


def _get_deployment_group(self: CodeDeployResponse) -> ActionResult:
    info = self.codedeploy_backend.describe_deployment_group(
        self._get_param("applicationName"), self._get_param("deploymentGroupName")
    )
    return ActionResult({"deploymentGroupInfo": info})


def _batch_get_deployment_groups(self: CodeDeployResponse) -> ActionResult:
    infos, error = self.codedeploy_backend.describe_deployment_groups(
        self._get_param("applicationName"), self._get_param("deploymentGroupNames") or []
    )
    return ActionResult(_compact({"deploymentGroupsInfo": infos, "errorMessage": error or None}))


def _update_deployment_group(self: CodeDeployResponse) -> ActionResult:
    params = dict(self._get_params())
    self.codedeploy_backend.update_deployment_group(
        params.pop("applicationName", None), params.pop("currentDeploymentGroupName", None), params
    )
    return ActionResult({"hooksNotCleanedUp": []})


def _stop_deployment(self: CodeDeployResponse) -> ActionResult:
    result = self.codedeploy_backend.stop_deployment(
        self._get_param("deploymentId"), self._get_param("autoRollbackEnabled")
    )
    return ActionResult(result)


def _continue_deployment(self: CodeDeployResponse) -> EmptyResult:
    self.codedeploy_backend.continue_deployment(self._get_param("deploymentId"))
    return EmptyResult()


def _create_deployment_config(self: CodeDeployResponse) -> ActionResult:
    config_id = self.codedeploy_backend.create_deployment_config(
        self._get_param("deploymentConfigName"),
        self._get_param("minimumHealthyHosts"),
        self._get_param("trafficRoutingConfig"),
        self._get_param("computePlatform"),
        self._get_param("zonalConfig"),
    )
    return ActionResult({"deploymentConfigId": config_id})


def _get_deployment_config(self: CodeDeployResponse) -> ActionResult:
    config = self.codedeploy_backend.get_deployment_config(self._get_param("deploymentConfigName"))
    return ActionResult({"deploymentConfigInfo": config})


def _list_deployment_configs(self: CodeDeployResponse) -> ActionResult:
    return ActionResult({"deploymentConfigsList": self.codedeploy_backend.list_deployment_configs()})


def _delete_deployment_config(self: CodeDeployResponse) -> EmptyResult:
    self.codedeploy_backend.delete_deployment_config(self._get_param("deploymentConfigName"))
    return EmptyResult()


ACTIONS = {
    "get_deployment": _get_deployment,
    "batch_get_deployments": _batch_get_deployments,
    "get_deployment_group": _get_deployment_group,
    "batch_get_deployment_groups": _batch_get_deployment_groups,
    "update_deployment_group": _update_deployment_group,
    "stop_deployment": _stop_deployment,
    "continue_deployment": _continue_deployment,
    "create_deployment_config": _create_deployment_config,
    "get_deployment_config": _get_deployment_config,
    "list_deployment_configs": _list_deployment_configs,
    "delete_deployment_config": _delete_deployment_config,
}


def install() -> None:
    register_model(MODEL, DEFAULT_TRANSITION)
    for name, action in ACTIONS.items():
        setattr(CodeDeployResponse, name, action)
    moto_models.codedeploy_backends.backend = ShipflowCodeDeployBackend
    moto_models.codedeploy_backends.clear()


def reset() -> None:
    """Nothing to forget beyond moto's reset: deployments live in the backends it recreates."""
