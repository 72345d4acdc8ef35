"""Operators for AWS CodeDeploy: deploy a revision, stop a deployment, roll a group back, read what is live.

CodeDeploy takes no idempotency token, so every deployment these operators start ends its description
with the task's marker (``constants.codedeploy.MARKER_FORMAT``). Before deploying, a task takes over
what an earlier try of it started (the id in the task state store, else on a retry the marker among the
group's newest deployments): one still running or succeeded is adopted; a failed one is the task's
result again (a deployment's failure is final), while a rollback that failed is started anew. A group
runs one deployment at a time: when another party's deployment holds it,
the task fails and names that deployment rather than waiting behind it or replacing it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import yaml
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.amazon.aws.utils.waiter_with_logging import wait
from airflow.providers.common.compat.sdk import AirflowException, conf

from shipflow.aws.constants.codedeploy import (
    ADOPT_SEARCH_LIMIT,
    DEFAULT_STOP_WAITER_DELAY,
    DEFAULT_STOP_WAITER_MAX_ATTEMPTS,
    DEFAULT_WAITER_DELAY,
    DEFAULT_WAITER_MAX_ATTEMPTS,
    DEPLOYMENT_ADOPTABLE_STATES,
    DEPLOYMENT_FAILURE_STATES,
    DEPLOYMENT_IN_FLIGHT_STATES,
    DEPLOYMENT_SUCCEEDED,
    DEPLOYMENT_TERMINAL_STATES,
    FILE_EXISTS_BEHAVIORS,
    MARKER_FORMAT,
    ROLLBACK_CREATOR,
    S3_BUNDLE_TYPES,
    STATE_KEY_DEPLOYMENT_ID,
    STATE_KEY_ROLLBACK_ID,
    WAITER_DEPLOYMENT_SUCCESSFUL,
    XCOM_KEY_DEPLOYMENT_ID,
)
from shipflow.aws.exceptions import AwsActionFailed
from shipflow.aws.hooks.codedeploy import CodeDeployHook
from shipflow.aws.links.codedeploy import CodeDeployDeploymentLink
from shipflow.aws.operators.base import ShipflowAwsOperator
from shipflow.aws.triggers.codedeploy import CodeDeployDeploymentCompleteTrigger
from shipflow.aws.utils.idempotency import marker

UI_COLOR = "#ff9900"


def revision_label(revision: dict[str, Any] | None) -> str | None:
    """A short, stable name for a revision, as the sandbox and Shipflow's metrics use it.

    ``s3://bucket/key[?versionId=v]``; ``appspec:<first 12 hex of the sha256>`` for AppSpec
    content and String revisions (CodeDeploy returns only their hash); ``github:<repo>@<commit>``.
    """
    if not revision:
        return None
    kind = revision.get("revisionType")
    if kind == "S3":
        location = revision.get("s3Location") or {}
        label = f"s3://{location.get('bucket')}/{location.get('key')}"
        return f"{label}?versionId={location['version']}" if location.get("version") else label
    if kind in ("AppSpecContent", "String"):
        content = revision.get("appSpecContent" if kind == "AppSpecContent" else "string") or {}
        digest = content.get("sha256") or hashlib.sha256(content.get("content", "").encode()).hexdigest()
        return f"appspec:{digest.lower()[:12]}"
    if kind == "GitHub":
        location = revision.get("gitHubLocation") or {}
        return f"github:{location.get('repository')}@{location.get('commitId')}"
    return str(kind)


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else (str(value) if value else None)


def _created(deployment: dict[str, Any]) -> datetime:
    """Sort key: botocore parses createTime as an aware datetime."""
    return deployment.get("createTime") or datetime.min.replace(tzinfo=UTC)


def deployment_summary(deployment: dict[str, Any]) -> dict[str, Any]:
    """The parts of a deployment a release decision, an approver and the audit trail need."""
    error = deployment.get("errorInformation") or {}
    rollback = deployment.get("rollbackInfo") or {}
    created, completed = deployment.get("createTime"), deployment.get("completeTime")
    duration = (
        round((completed - created).total_seconds(), 3)
        if isinstance(created, datetime) and isinstance(completed, datetime)
        else None
    )
    return {
        "deployment_id": deployment["deploymentId"],
        "application_name": deployment.get("applicationName"),
        "deployment_group_name": deployment.get("deploymentGroupName"),
        "status": deployment.get("status"),
        "creator": deployment.get("creator"),
        "description": deployment.get("description"),
        "revision_label": revision_label(deployment.get("revision")),
        "revision": deployment.get("revision"),
        "previous_revision_label": revision_label(deployment.get("previousRevision")),
        "deployment_config": deployment.get("deploymentConfigName"),
        "compute_platform": deployment.get("computePlatform"),
        "overview": deployment.get("deploymentOverview") or {},
        "error_code": error.get("code"),
        "error_message": error.get("message"),
        "rollback_deployment_id": rollback.get("rollbackDeploymentId"),
        "rollback_triggering_deployment_id": rollback.get("rollbackTriggeringDeploymentId"),
        "rollback_message": rollback.get("rollbackMessage"),
        "create_time": _iso(created),
        "start_time": _iso(deployment.get("startTime")),
        "complete_time": _iso(completed),
        "deployment_duration_s": duration,
    }


class _CodeDeployDeployingOperator(ShipflowAwsOperator[CodeDeployHook]):
    """What the operators that start a deployment share: resumption, the marker, waiting, the result."""

    aws_hook_class = CodeDeployHook
    operator_extra_links = (CodeDeployDeploymentLink(),)
    ui_color = UI_COLOR
    #: The action's name in the record and the audit trail.
    action: ClassVar[str] = ""
    #: What the deployment is, in failure messages ("deployment", "rollback").
    what: ClassVar[str] = "deployment"
    #: The statuses of an earlier try's deployment that a retry takes over instead of starting anew.
    adoptable: ClassVar[tuple[str, ...]] = DEPLOYMENT_ADOPTABLE_STATES

    def __init__(
        self,
        *,
        application_name: str,
        deployment_group_name: str,
        deployment_config_name: str | None = None,
        description: str | None = None,
        wait_for_completion: bool = True,
        waiter_delay: int = DEFAULT_WAITER_DELAY,
        waiter_max_attempts: int = DEFAULT_WAITER_MAX_ATTEMPTS,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.application_name = application_name
        self.deployment_group_name = deployment_group_name
        self.deployment_config_name = deployment_config_name
        self.description = description
        self.wait_for_completion = wait_for_completion
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts
        self.deferrable = deferrable

    @property
    def group_path(self) -> str:
        return f"{self.application_name}/{self.deployment_group_name}"

    # -- the marker ------------------------------------------------------------------------------
    @staticmethod
    def marked(description: str, context: Any) -> str:
        return f"{description} {MARKER_FORMAT.format(marker=marker(context))}"

    @staticmethod
    def carries_marker(deployment: dict[str, Any], context: Any) -> bool:
        return (deployment.get("description") or "").endswith(MARKER_FORMAT.format(marker=marker(context)))

    def may_adopt(self, deployment: dict[str, Any], context: Any) -> bool:
        """Whether an active deployment found blocking the group is one to wait on instead of failing."""
        return self.carries_marker(deployment, context)

    # -- finding what an earlier try started -------------------------------------------------------
    def find_started_deployment(self, context: Any) -> dict[str, Any] | None:
        """A deployment an earlier try of this task started or adopted, still running or succeeded."""
        remembered = self.remembered_id(context)
        if remembered:
            deployment = self.hook.get_deployment(remembered)
            if deployment["status"] in self.adoptable:
                return deployment
        if self.is_retry(context):
            # The id may never have been stored (the try died first, or there is no state store).
            return self.search_by_marker(context, self.adoptable)
        return None

    def search_by_marker(self, context: Any, statuses: Sequence[str]) -> dict[str, Any] | None:
        ids = self.hook.list_deployment_ids(
            self.application_name, self.deployment_group_name, tuple(statuses), ADOPT_SEARCH_LIMIT
        )
        ours = [d for d in self.hook.get_deployments(ids) if self.carries_marker(d, context)]
        ours.sort(key=_created, reverse=True)
        return ours[0] if ours else None

    # -- starting ----------------------------------------------------------------------------------
    def create_marked_deployment(
        self, context: Any, revision: dict[str, Any], description: str, **options: Any
    ) -> tuple[dict[str, Any], bool]:
        """Create the deployment; returns it and whether it was adopted instead (a race with an earlier try).

        CodeDeploy refuses a second active deployment per group. If the active one carries our marker
        (botocore retried a CreateDeployment that had reached AWS, or an earlier try's is still
        running), it is ours to wait on; anyone else's fails the task with its id.
        """
        kwargs: dict[str, Any] = {
            "applicationName": self.application_name,
            "deploymentGroupName": self.deployment_group_name,
            "revision": revision,
            "description": self.marked(description, context),
            **{key: value for key, value in options.items() if value is not None},
        }
        if self.deployment_config_name:
            kwargs["deploymentConfigName"] = self.deployment_config_name
        for last_attempt in (False, True):
            try:
                deployment_id = self.hook.create_deployment(**kwargs)
            except self.hook.conn.exceptions.DeploymentLimitExceededException:
                ids = self.hook.list_deployment_ids(
                    self.application_name, self.deployment_group_name, DEPLOYMENT_IN_FLIGHT_STATES, ADOPT_SEARCH_LIMIT
                )
                active = [d for d in self.hook.get_deployments(ids) if d["status"] in DEPLOYMENT_IN_FLIGHT_STATES]
                ours = next((d for d in active if self.may_adopt(d, context)), None)
                if ours is not None:
                    return ours, True
                if active:
                    raise self.blocked_by(active[0]) from None
                if last_attempt:
                    raise
                continue  # the other deployment ended between the two calls: try once more
            self.remember_id(context, deployment_id)
            self.log.info("Created CodeDeploy %s %s for %s", self.what, deployment_id, self.group_path)
            return {"deploymentId": deployment_id, "status": "Created"}, False
        raise AssertionError("unreachable")  # pragma: no cover

    def blocked_by(self, other: dict[str, Any]) -> AwsActionFailed:
        automatic = other.get("creator") == ROLLBACK_CREATOR
        who = "CodeDeploy's automatic rollback" if automatic else f"a deployment by {other.get('creator')}"
        return AwsActionFailed(
            f"CodeDeploy group {self.group_path} is busy with {who} that this task did not start; "
            "nothing was deployed. Wait for it to end (or stop it with CodeDeployStopDeploymentOperator), "
            "then clear this task",
            resource_id=other["deploymentId"],
            status=other.get("status", ""),
            reason=f"DeploymentLimitExceededException: description {other.get('description')!r}",
            console_url=self.console_url(other["deploymentId"]),
            result={"blocking_deployment": deployment_summary(other)},
        )

    # -- waiting and the result ----------------------------------------------------------------------
    def console_url(self, deployment_id: str) -> str:
        return CodeDeployDeploymentLink().format_link(
            aws_domain=CodeDeployDeploymentLink.get_aws_domain(self.hook.conn_partition),
            region_name=self.hook.conn_region_name,
            deployment_id=deployment_id,
        )

    def track(self, context: Any, deployment_id: str) -> None:
        """Make the deployment findable: console link, XCom (also if the task fails), state store."""
        self.remember_id(context, deployment_id)
        CodeDeployDeploymentLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            deployment_id=deployment_id,
        )
        if self.do_xcom_push:
            context["ti"].xcom_push(key=XCOM_KEY_DEPLOYMENT_ID, value=deployment_id)

    def wait_and_finish(self, context: Any, deployment: dict[str, Any], record: Any) -> dict[str, Any]:
        """The three-way branch: return now, defer to the triggerer, or wait here."""
        deployment_id = deployment["deploymentId"]
        self.track(context, deployment_id)
        record.update(deployment_id=deployment_id)
        if deployment["status"] in DEPLOYMENT_TERMINAL_STATES:
            return self.finish(deployment, record)
        if not self.wait_for_completion:
            return self.finish(self.hook.get_deployment(deployment_id), record)
        if self.deferrable:
            self.defer(
                trigger=CodeDeployDeploymentCompleteTrigger(
                    deployment_id=deployment_id,
                    **self.trigger_kwargs(),
                ),
                method_name="execute_complete",
                kwargs={"record": record.as_dict()},
            )
        try:
            wait(
                waiter=self.hook.get_waiter(WAITER_DEPLOYMENT_SUCCESSFUL),
                waiter_delay=self.waiter_delay,
                waiter_max_attempts=self.waiter_max_attempts,
                args={"deploymentId": deployment_id},
                failure_message=f"CodeDeploy {self.what} failed",
                status_message=f"CodeDeploy {self.what} status",
                status_args=["deploymentInfo.status", "deploymentInfo.deploymentOverview"],
            )
        except AirflowException as error:
            self.log.info("Waiter ended: %s", error)
        return self.finish(self.hook.get_deployment(deployment_id), record)

    def execute_complete(
        self, context: Any, event: dict[str, Any] | None = None, record: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        deployment_id = (record or {}).get("deployment_id", "")
        self.validate_event(event, key="deployment_id", expected=deployment_id)
        resumed = self.new_record(self.action, earlier=record)
        return self.finish(self.hook.get_deployment(deployment_id), resumed)

    def finish(self, deployment: dict[str, Any], record: Any) -> dict[str, Any]:
        summary = deployment_summary(deployment)
        console_url = self.console_url(summary["deployment_id"])
        result = record.update(**summary, console_url=console_url).as_dict()
        status = summary["status"]
        if status in DEPLOYMENT_FAILURE_STATES:
            message = f"CodeDeploy {self.what} to {self.group_path} of {summary['revision_label']} ended {status}"
            if summary["rollback_deployment_id"]:
                message += (
                    f"; CodeDeploy is rolling back automatically with deployment {summary['rollback_deployment_id']}"
                )
            elif summary["rollback_message"]:
                message += f"; no automatic rollback: {summary['rollback_message']}"
            raise AwsActionFailed(
                message,
                resource_id=summary["deployment_id"],
                status=status,
                reason=": ".join(p for p in (summary["error_code"], summary["error_message"]) if p),
                console_url=console_url,
                result=result,
            )
        if status != DEPLOYMENT_SUCCEEDED and self.wait_for_completion:
            raise AwsActionFailed(
                f"CodeDeploy {self.what} to {self.group_path} did not finish in time (it was left running)",
                resource_id=summary["deployment_id"],
                status=status,
                reason=f"still {status} after {self.waiter_max_attempts} describes",
                console_url=console_url,
                result=result,
            )
        return result


class CodeDeployCreateDeploymentOperator(_CodeDeployDeployingOperator):
    """Deploy a revision to an AWS CodeDeploy deployment group and (by default) wait for the result.

    Give either an S3 bundle (``s3_bucket`` + ``s3_key``, for EC2/on-premises and Lambda/ECS AppSpec
    files in S3) or ``appspec_content`` (Lambda/ECS). A deployment that ends Failed or Stopped raises
    :class:`~shipflow.aws.exceptions.AwsActionFailed` with CodeDeploy's ``errorInformation`` and, if
    CodeDeploy rolled back automatically, the rollback deployment's id. The deployment id is pushed to
    XCom (key ``deployment_id``) as soon as it is known, so a downstream rollback task can name it.

    .. seealso::
        - :external+boto3:py:meth:`CodeDeploy.Client.create_deployment`

    :param application_name: the CodeDeploy application. (templated)
    :param deployment_group_name: the deployment group. (templated)
    :param s3_bucket: bucket of the revision bundle. (templated)
    :param s3_key: key of the revision bundle. (templated)
    :param bundle_type: ``zip`` (default), ``tar``, ``tgz``, ``YAML`` or ``JSON``.
    :param s3_version: S3 object version of the bundle, to pin it. (templated)
    :param s3_etag: ETag of the bundle; CodeDeploy refuses an object that does not match. (templated)
    :param appspec_content: the AppSpec for a Lambda or ECS deployment, as a dict or a YAML/JSON
        string; sent as ``appSpecContent`` with its sha256. (templated)
    :param deployment_config_name: overrides the group's deployment config. (templated)
    :param description: shown in the console; the task's marker is appended. (templated)
    :param file_exists_behavior: ``DISALLOW``, ``OVERWRITE`` or ``RETAIN`` (EC2/on-premises).
    :param wait_for_completion: wait until the deployment ends (default True).
    :param waiter_delay: seconds between describes.
    :param waiter_max_attempts: describes before giving up (the deployment is left running).
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :return: the deployment summary (id, status, revision label, config, overview counts, error,
        rollback info, console link, timings) and the AWS calls made.
    """

    action = "codedeploy.create_deployment"
    state_key = STATE_KEY_DEPLOYMENT_ID
    # A deployment that failed is final: a retry reports that failure rather than deploying again.
    # Airflow 3.3.2 can retry a try that failed on its own (apache/airflow #72716: a stale executor
    # event after a quick resume from deferral), and a second deployment would then hide the first
    # one's failure and let the release promote.
    adoptable = (*DEPLOYMENT_ADOPTABLE_STATES, *DEPLOYMENT_FAILURE_STATES)
    template_fields: Sequence[str] = aws_template_fields(
        "application_name",
        "deployment_group_name",
        "s3_bucket",
        "s3_key",
        "s3_version",
        "s3_etag",
        "appspec_content",
        "deployment_config_name",
        "description",
    )
    template_fields_renderers = {"appspec_content": "yaml"}

    def __init__(
        self,
        *,
        application_name: str,
        deployment_group_name: str,
        s3_bucket: str | None = None,
        s3_key: str | None = None,
        bundle_type: str = "zip",
        s3_version: str | None = None,
        s3_etag: str | None = None,
        appspec_content: dict[str, Any] | str | None = None,
        file_exists_behavior: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(application_name=application_name, deployment_group_name=deployment_group_name, **kwargs)
        task = f"task {self.task_id!r} (CodeDeployCreateDeploymentOperator)"
        if bool(s3_bucket or s3_key) == bool(appspec_content):
            raise ValueError(f"{task}: give either s3_bucket and s3_key (a bundle in S3) or appspec_content, not both")
        if (s3_bucket or s3_key) and not (s3_bucket and s3_key):
            raise ValueError(f"{task}: an S3 revision needs both s3_bucket and s3_key (got {s3_bucket!r}, {s3_key!r})")
        if bundle_type not in S3_BUNDLE_TYPES:
            raise ValueError(f"{task}: bundle_type {bundle_type!r} is not one of {', '.join(S3_BUNDLE_TYPES)}")
        if file_exists_behavior is not None and file_exists_behavior not in FILE_EXISTS_BEHAVIORS:
            raise ValueError(
                f"{task}: file_exists_behavior {file_exists_behavior!r} is not one of "
                + ", ".join(FILE_EXISTS_BEHAVIORS)
            )
        self.s3_bucket = s3_bucket
        self.s3_key = s3_key
        self.bundle_type = bundle_type
        self.s3_version = s3_version
        self.s3_etag = s3_etag
        self.appspec_content = appspec_content
        self.file_exists_behavior = file_exists_behavior

    def revision(self) -> dict[str, Any]:
        """The revision as CreateDeployment takes it (after templates are rendered)."""
        if self.s3_bucket:
            location = {"bucket": self.s3_bucket, "key": self.s3_key, "bundleType": self.bundle_type}
            if self.s3_version:
                location["version"] = self.s3_version
            if self.s3_etag:
                location["eTag"] = self.s3_etag
            return {"revisionType": "S3", "s3Location": location}
        content = self.appspec_content
        if isinstance(content, str):
            try:
                parsed = yaml.safe_load(content)  # JSON is YAML too
            except yaml.YAMLError as error:
                raise ValueError(f"task {self.task_id!r}: appspec_content is not valid YAML or JSON: {error}") from None
        else:
            parsed, content = content, json.dumps(content, indent=2)
        if not isinstance(parsed, dict):
            raise ValueError(
                f"task {self.task_id!r}: appspec_content must be an AppSpec mapping (version, Resources, Hooks), "
                f"got {type(parsed).__name__}"
            )
        sha256 = hashlib.sha256(content.encode()).hexdigest()
        return {"revisionType": "AppSpecContent", "appSpecContent": {"content": content, "sha256": sha256}}

    def execute(self, context: Any) -> dict[str, Any]:
        revision = self.revision()  # a mistake in the revision fails before anything reaches AWS
        record = self.new_record(self.action)
        deployment = self.find_started_deployment(context)
        adopted = deployment is not None
        if deployment is None:
            label = revision_label(revision)
            deployment, adopted = self.create_marked_deployment(
                context,
                revision,
                self.description or f"Shipflow deployment of {label}",
                fileExistsBehavior=self.file_exists_behavior,
            )
        if adopted:
            self.log.info(
                "Adopted deployment %s (%s) started by an earlier try", deployment["deploymentId"], deployment["status"]
            )
        record.update(adopted=adopted)
        return self.wait_and_finish(context, deployment, record)


class CodeDeployRollbackOperator(_CodeDeployDeployingOperator):
    """Roll a deployment group back to its last good revision, and (by default) wait for it.

    The bad deployment is ``deployment_id`` or, if not given, the group's last attempted deployment
    (which must not have succeeded: name the bad one to roll back a release that deployed fine but
    misbehaves). If CodeDeploy already rolled back automatically (the bad deployment's
    ``rollbackInfo`` names a rollback that is running or has succeeded), that rollback is adopted and
    waited on; otherwise the newest successful deployment whose revision differs from the bad one's
    (and from ``exclude_revision``) is deployed again. Resumable like the create operator.

    .. seealso::
        - :external+boto3:py:meth:`CodeDeploy.Client.get_deployment_group`
        - :external+boto3:py:meth:`CodeDeploy.Client.create_deployment`

    :param application_name: the CodeDeploy application. (templated)
    :param deployment_group_name: the deployment group. (templated)
    :param deployment_id: the bad deployment to roll back from. (templated)
    :param exclude_revision: a revision label (``s3://bucket/key``) not to return to. (templated)
    :param deployment_config_name: overrides the group's deployment config. (templated)
    :param description: shown in the console; the task's marker is appended. (templated)
    :param wait_for_completion: wait until the rollback ends (default True).
    :param waiter_delay: seconds between describes.
    :param waiter_max_attempts: describes before giving up (the rollback is left running).
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :return: the rollback deployment's summary plus ``rollback_of`` (the bad deployment),
        ``rolled_back_to`` (revision label) and ``automatic`` (CodeDeploy's own rollback was adopted).
    """

    action = "codedeploy.rollback"
    what = "rollback"
    state_key = STATE_KEY_ROLLBACK_ID
    template_fields: Sequence[str] = aws_template_fields(
        "application_name",
        "deployment_group_name",
        "deployment_id",
        "exclude_revision",
        "deployment_config_name",
        "description",
    )

    def __init__(
        self,
        *,
        application_name: str,
        deployment_group_name: str,
        deployment_id: str | None = None,
        exclude_revision: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(application_name=application_name, deployment_group_name=deployment_group_name, **kwargs)
        self.deployment_id = deployment_id
        self.exclude_revision = exclude_revision

    def may_adopt(self, deployment: dict[str, Any], context: Any) -> bool:
        # CodeDeploy's own rollback (its rollbackInfo may lag behind the failure) does what we came for.
        return deployment.get("creator") == ROLLBACK_CREATOR or self.carries_marker(deployment, context)

    def fail(self, message: str, *, resource_id: str, status: str = "", reason: str = "") -> AwsActionFailed:
        return AwsActionFailed(
            f"cannot roll back {self.group_path}: {message}",
            resource_id=resource_id,
            status=status,
            reason=reason,
            console_url=self.console_url(resource_id) if resource_id.startswith("d-") else "",
        )

    def bad_deployment(self, group: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(the bad deployment, CodeDeploy's own rollback of it if running or succeeded)."""
        if self.deployment_id:
            bad = self.hook.get_deployment(self.deployment_id)
            if (bad.get("applicationName"), bad.get("deploymentGroupName")) != (
                self.application_name,
                self.deployment_group_name,
            ):
                raise ValueError(
                    f"task {self.task_id!r}: deployment_id {self.deployment_id} belongs to "
                    f"{bad.get('applicationName')}/{bad.get('deploymentGroupName')}, not {self.group_path}"
                )
        else:
            last = group.get("lastAttemptedDeployment")
            if not last:
                raise self.fail("the group has no deployments", resource_id=self.group_path)
            bad = self.hook.get_deployment(last["deploymentId"])
            if bad.get("creator") == ROLLBACK_CREATOR:
                # The group's latest deployment is CodeDeploy's own rollback: adopt it unless it failed,
                # then roll back from the deployment that triggered it.
                if bad["status"] in DEPLOYMENT_ADOPTABLE_STATES:
                    triggering = (bad.get("rollbackInfo") or {}).get("rollbackTriggeringDeploymentId")
                    return (self.hook.get_deployment(triggering) if triggering else None), bad
                bad = self.hook.get_deployment(bad["rollbackInfo"]["rollbackTriggeringDeploymentId"])
            elif bad["status"] == DEPLOYMENT_SUCCEEDED:
                raise self.fail(
                    f"its last deployment {bad['deploymentId']} ({revision_label(bad.get('revision'))}) succeeded, "
                    "so there is nothing to roll back from; pass deployment_id (the bad deployment) to return "
                    "to the revision before it",
                    resource_id=bad["deploymentId"],
                    status=bad["status"],
                )
        if bad["status"] in DEPLOYMENT_IN_FLIGHT_STATES:
            raise self.fail(
                f"deployment {bad['deploymentId']} is still {bad['status']}; stop it first "
                "(CodeDeployStopDeploymentOperator, auto_rollback_enabled=True lets CodeDeploy roll back)",
                resource_id=bad["deploymentId"],
                status=bad["status"],
            )
        automatic_id = (bad.get("rollbackInfo") or {}).get("rollbackDeploymentId")
        if automatic_id:
            automatic = self.hook.get_deployment(automatic_id)
            if automatic["status"] in DEPLOYMENT_ADOPTABLE_STATES:
                return bad, automatic
            self.log.info("CodeDeploy's rollback %s ended %s; rolling back again", automatic_id, automatic["status"])
        return bad, None

    def good_deployment(self, group: dict[str, Any], bad: dict[str, Any] | None) -> dict[str, Any]:
        """The newest successful deployment whose revision is not the bad one (nor ``exclude_revision``)."""
        excluded_ids = {bad["deploymentId"]} if bad else set()
        excluded_labels = {revision_label(bad.get("revision"))} if bad else set()
        if self.exclude_revision:
            excluded_labels.add(self.exclude_revision)

        def good(deployment: dict[str, Any]) -> bool:
            return (
                deployment["status"] == DEPLOYMENT_SUCCEEDED
                and deployment["deploymentId"] not in excluded_ids
                and revision_label(deployment.get("revision")) not in excluded_labels
            )

        last = group.get("lastSuccessfulDeployment")
        if last and last.get("deploymentId") not in excluded_ids:
            candidate = self.hook.get_deployment(last["deploymentId"])
            if good(candidate):
                return candidate
        # The last success is the bad revision itself: look further back (a limited search).
        ids = self.hook.list_deployment_ids(
            self.application_name, self.deployment_group_name, (DEPLOYMENT_SUCCEEDED,), ADOPT_SEARCH_LIMIT
        )
        candidates = sorted(
            (d for d in self.hook.get_deployments(ids) if good(d)),
            key=_created,
            reverse=True,
        )
        if not candidates:
            bad_label = ", ".join(sorted(label for label in excluded_labels if label))
            raise self.fail(
                f"there is no earlier good revision: no successful deployment among the group's newest "
                f"{ADOPT_SEARCH_LIMIT} deploys anything but {bad_label or 'nothing'}",
                resource_id=bad["deploymentId"] if bad else self.group_path,
                status=bad["status"] if bad else "",
                reason=(bad.get("rollbackInfo") or {}).get("rollbackMessage", "") if bad else "",
            )
        return candidates[0]

    def execute(self, context: Any) -> dict[str, Any]:
        record = self.new_record(self.action)
        deployment = self.find_started_deployment(context)
        if deployment is not None:
            self.log.info(
                "Adopted rollback %s (%s) from an earlier try", deployment["deploymentId"], deployment["status"]
            )
            triggering = (deployment.get("rollbackInfo") or {}).get("rollbackTriggeringDeploymentId")
            record.update(
                adopted=True,
                automatic=deployment.get("creator") == ROLLBACK_CREATOR,
                rollback_of=self.deployment_id or triggering,
                rolled_back_to=revision_label(deployment.get("revision")),
            )
            return self.wait_and_finish(context, deployment, record)

        group = self.hook.get_deployment_group(self.application_name, self.deployment_group_name)
        bad, automatic = self.bad_deployment(group)
        bad_id = bad["deploymentId"] if bad else None
        if automatic is not None:
            self.log.info(
                "CodeDeploy already rolls %s back with %s; waiting on it", self.group_path, automatic["deploymentId"]
            )
            record.update(
                adopted=True,
                automatic=True,
                rollback_of=bad_id,
                rolled_back_to=revision_label(automatic.get("revision")),
            )
            return self.wait_and_finish(context, automatic, record)

        good = self.good_deployment(group, bad)
        revision = good["revision"]
        label = revision_label(revision)
        if revision.get("revisionType") in ("AppSpecContent", "String"):
            # GetDeployment returns only the AppSpec's sha256, which cannot be deployed again.
            raise self.fail(
                f"the last good revision {label} (deployment {good['deploymentId']}) is AppSpec content, which "
                "CodeDeploy does not return; deploy it again with CodeDeployCreateDeploymentOperator and its AppSpec",
                resource_id=good["deploymentId"],
                status=good["status"],
            )
        self.log.info(
            "Rolling %s back from %s to %s (deployment %s)", self.group_path, bad_id, label, good["deploymentId"]
        )
        deployment, adopted = self.create_marked_deployment(
            context,
            revision,
            self.description or f"Shipflow rollback of {bad_id or 'the group'} to {label}",
            # The group's alarms are firing because of the bad revision; left on, they would stop the
            # very deployment that restores the good one (as CodeDeploy's own rollbacks are not).
            overrideAlarmConfiguration={"enabled": False, "ignorePollAlarmFailure": False, "alarms": []},
        )
        record.update(
            adopted=adopted,
            # A CodeDeploy rollback that appeared meanwhile may have been adopted instead (may_adopt).
            automatic=deployment.get("creator") == ROLLBACK_CREATOR,
            rollback_of=bad_id,
            rolled_back_to=revision_label(deployment.get("revision")) or label,
            rolled_back_to_deployment_id=good["deploymentId"],
        )
        return self.wait_and_finish(context, deployment, record)


class CodeDeployStopDeploymentOperator(ShipflowAwsOperator[CodeDeployHook]):
    """Stop a running CodeDeploy deployment and wait until it has stopped; a finished one is left as it is.

    .. seealso::
        - :external+boto3:py:meth:`CodeDeploy.Client.stop_deployment`

    :param deployment_id: the deployment to stop. (templated)
    :param auto_rollback_enabled: roll back to the last good revision after stopping (True), or not
        (False); if not given, the group's automatic rollback configuration decides.
    :param wait_for_completion: wait until the deployment has ended (default True).
    :param waiter_delay: seconds between describes.
    :param waiter_max_attempts: describes before giving up.
    :return: the deployment summary after the stop (``rollback_deployment_id`` names the rollback
        CodeDeploy started, if any), ``stop_requested`` and the AWS calls made.
    """

    aws_hook_class = CodeDeployHook
    template_fields: Sequence[str] = aws_template_fields("deployment_id")
    operator_extra_links = (CodeDeployDeploymentLink(),)
    ui_color = UI_COLOR

    def __init__(
        self,
        *,
        deployment_id: str,
        auto_rollback_enabled: bool | None = None,
        wait_for_completion: bool = True,
        waiter_delay: int = DEFAULT_STOP_WAITER_DELAY,
        waiter_max_attempts: int = DEFAULT_STOP_WAITER_MAX_ATTEMPTS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deployment_id = deployment_id
        self.auto_rollback_enabled = auto_rollback_enabled
        self.wait_for_completion = wait_for_completion
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts

    def execute(self, context: Any) -> dict[str, Any]:
        record = self.new_record("codedeploy.stop_deployment")
        CodeDeployDeploymentLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            deployment_id=self.deployment_id,
        )
        deployment = self.hook.get_deployment(self.deployment_id)
        stop_requested = False
        if deployment["status"] in DEPLOYMENT_IN_FLIGHT_STATES:
            try:
                self.hook.stop_deployment(self.deployment_id, self.auto_rollback_enabled)
                stop_requested = True
                self.log.info("Stopping CodeDeploy deployment %s", self.deployment_id)
            except self.hook.conn.exceptions.DeploymentAlreadyCompletedException:
                self.log.info("Deployment %s ended before the stop reached it", self.deployment_id)
            if self.wait_for_completion:
                try:
                    wait(
                        waiter=self.hook.get_waiter(WAITER_DEPLOYMENT_SUCCESSFUL),
                        waiter_delay=self.waiter_delay,
                        waiter_max_attempts=self.waiter_max_attempts,
                        args={"deploymentId": self.deployment_id},
                        failure_message="CodeDeploy deployment ended",
                        status_message="CodeDeploy deployment status",
                        status_args=["deploymentInfo.status"],
                    )
                except AirflowException as error:
                    self.log.info("Waiter ended: %s", error)  # Stopped is a waiter "failure": what we want
            deployment = self.hook.get_deployment(self.deployment_id)
        else:
            self.log.info("Deployment %s already ended %s; nothing to stop", self.deployment_id, deployment["status"])
        summary = deployment_summary(deployment)
        result = record.update(stop_requested=stop_requested, **summary).as_dict()
        if self.wait_for_completion and summary["status"] not in DEPLOYMENT_TERMINAL_STATES:
            raise AwsActionFailed(
                "CodeDeploy deployment did not stop in time",
                resource_id=self.deployment_id,
                status=summary["status"],
                reason=f"still {summary['status']} after {self.waiter_max_attempts} describes",
                result=result,
            )
        return result


class CodeDeployLiveRevisionOperator(ShipflowAwsOperator[CodeDeployHook]):
    """Read which revision a deployment group runs: its last successful deployment's revision.

    Also reports the group's target revision (that of its last attempted deployment, which may still
    be running or may have failed) so a release can tell "live" from "being deployed".

    .. seealso::
        - :external+boto3:py:meth:`CodeDeploy.Client.get_deployment_group`

    :param application_name: the CodeDeploy application. (templated)
    :param deployment_group_name: the deployment group. (templated)
    :return: ``live_revision_label`` and ``live_revision`` (None before the first success),
        ``live_deployment_id``, ``target_revision_label``, ``target_revision``,
        ``last_attempted_deployment_id``, ``last_attempted_status``, ``deployment_in_flight``.
    """

    aws_hook_class = CodeDeployHook
    template_fields: Sequence[str] = aws_template_fields("application_name", "deployment_group_name")
    ui_color = UI_COLOR

    def __init__(self, *, application_name: str, deployment_group_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.application_name = application_name
        self.deployment_group_name = deployment_group_name

    def execute(self, context: Any) -> dict[str, Any]:
        record = self.new_record("codedeploy.live_revision")
        group = self.hook.get_deployment_group(self.application_name, self.deployment_group_name)
        last_ok = group.get("lastSuccessfulDeployment") or {}
        live = self.hook.get_deployment(last_ok["deploymentId"]) if last_ok.get("deploymentId") else {}
        attempted = group.get("lastAttemptedDeployment") or {}
        return record.update(
            application_name=self.application_name,
            deployment_group_name=self.deployment_group_name,
            live_revision_label=revision_label(live.get("revision")),
            live_revision=live.get("revision"),
            live_deployment_id=live.get("deploymentId"),
            live_since=_iso(live.get("completeTime")),
            target_revision_label=revision_label(group.get("targetRevision")),
            target_revision=group.get("targetRevision"),
            last_attempted_deployment_id=attempted.get("deploymentId"),
            last_attempted_status=attempted.get("status"),
            deployment_in_flight=attempted.get("status") in DEPLOYMENT_IN_FLIGHT_STATES,
        ).as_dict()
