"""Operators for AWS CodeBuild: start a build and wait for it; stop a build."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.amazon.aws.utils.waiter_with_logging import wait
from airflow.providers.common.compat.sdk import AirflowException, conf

from shipflow.aws.constants.codebuild import (
    ADOPT_SEARCH_LIMIT,
    BUILD_FAILURE_STATES,
    BUILD_IN_PROGRESS,
    BUILD_SUCCEEDED,
    DEFAULT_WAITER_DELAY,
    DEFAULT_WAITER_MAX_ATTEMPTS,
    MARKER_ENV_VAR,
    STATE_KEY_BUILD_ID,
    WAITER_BUILD_COMPLETE,
)
from shipflow.aws.exceptions import AwsActionFailed
from shipflow.aws.hooks.codebuild import CodeBuildHook
from shipflow.aws.links.codebuild import CodeBuildBuildLink
from shipflow.aws.operators.base import ShipflowAwsOperator
from shipflow.aws.triggers.codebuild import CodeBuildBuildCompleteTrigger
from shipflow.aws.utils.idempotency import client_token, marker


def build_summary(build: dict[str, Any]) -> dict[str, Any]:
    """The parts of a build a release decision, an approver and the audit trail need."""
    phases = [
        {
            "phase": p.get("phaseType"),
            "status": p.get("phaseStatus"),
            "duration_s": p.get("durationInSeconds"),
            **({"contexts": p["contexts"]} if p.get("contexts") else {}),
        }
        for p in build.get("phases", [])
    ]
    failed = next((p for p in phases if p["status"] in ("FAILED", "FAULT", "TIMED_OUT", "STOPPED")), None)
    contexts = (failed or {}).get("contexts") or [{}]
    return {
        "build_id": build["id"],
        "build_arn": build.get("arn"),
        "build_number": build.get("buildNumber"),
        "project_name": build.get("projectName"),
        "status": build.get("buildStatus"),
        "current_phase": build.get("currentPhase"),
        "build_complete": build.get("buildComplete", False),
        "source_version": build.get("sourceVersion"),
        "phases": phases,
        "failed_phase": failed["phase"] if failed else None,
        "reason": contexts[0].get("message", "") if failed else "",
        "log_link": build.get("logs", {}).get("deepLink"),
        "artifact_location": build.get("artifacts", {}).get("location"),
        "start_time": str(build.get("startTime", "")),
        "end_time": str(build.get("endTime", "")) if build.get("endTime") else None,
    }


class CodeBuildStartBuildOperator(ShipflowAwsOperator[CodeBuildHook]):
    """Start an AWS CodeBuild build and (by default) wait for it to finish.

    Safe to re-run: the start call carries an idempotency token for this try, the build is marked
    with the task (environment variable ``SHIPFLOW_TASK_MARKER``), and a retried task adopts the build
    an earlier try started if it is still running or has succeeded, instead of starting another.

    .. seealso::
        - :external+boto3:py:meth:`CodeBuild.Client.start_build`

    :param project_name: the CodeBuild project. (templated)
    :param source_version: commit, branch or tag to build. (templated)
    :param environment_variables: extra variables for this build, ``{name: value}``; plain text only,
        pass secrets through the project's Parameter Store / Secrets Manager references. (templated)
    :param buildspec_override: a buildspec to use instead of the project's. (templated)
    :param artifacts_override: ``artifactsOverride`` as boto3 takes it. (templated)
    :param wait_for_completion: wait until the build ends (default True).
    :param waiter_delay: seconds between describes.
    :param waiter_max_attempts: describes before giving up.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :return: the build summary (ids, status, phases, log link, artifact location) and the AWS calls made.
    """

    aws_hook_class = CodeBuildHook
    state_key = STATE_KEY_BUILD_ID
    template_fields: Sequence[str] = aws_template_fields(
        "project_name", "source_version", "environment_variables", "buildspec_override", "artifacts_override"
    )
    template_fields_renderers = {"environment_variables": "json", "artifacts_override": "json"}
    operator_extra_links = (CodeBuildBuildLink(),)
    ui_color = "#ff9900"

    def __init__(
        self,
        *,
        project_name: str,
        source_version: str | None = None,
        environment_variables: dict[str, str] | None = None,
        buildspec_override: str | None = None,
        artifacts_override: dict[str, Any] | None = None,
        wait_for_completion: bool = True,
        waiter_delay: int = DEFAULT_WAITER_DELAY,
        waiter_max_attempts: int = DEFAULT_WAITER_MAX_ATTEMPTS,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project_name = project_name
        self.source_version = source_version
        self.environment_variables = environment_variables or {}
        self.buildspec_override = buildspec_override
        self.artifacts_override = artifacts_override
        self.wait_for_completion = wait_for_completion
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts
        self.deferrable = deferrable

    # -- finding or starting the build -------------------------------------------------------------
    def _adoptable(self, build: dict[str, Any]) -> bool:
        return build.get("buildStatus") in (BUILD_IN_PROGRESS, BUILD_SUCCEEDED)

    def find_started_build(self, context: Any) -> dict[str, Any] | None:
        """A build an earlier try of this task started that is still running or has succeeded."""
        remembered = self.remembered_id(context)
        if remembered:
            builds = self.hook.get_builds([remembered])
        elif self.is_retry(context):
            # No id stored (the try died before storing it, or no state store): search by marker.
            ids = self.hook.list_build_ids(self.project_name, ADOPT_SEARCH_LIMIT)
            mark = marker(context)
            builds = [
                b
                for b in self.hook.get_builds(ids)
                if any(
                    v.get("name") == MARKER_ENV_VAR and v.get("value") == mark
                    for v in b.get("environment", {}).get("environmentVariables", [])
                )
            ]
        else:
            return None
        return next((b for b in builds if self._adoptable(b)), None)

    def start_build(self, context: Any) -> dict[str, Any]:
        env = [{"name": k, "value": str(v), "type": "PLAINTEXT"} for k, v in sorted(self.environment_variables.items())]
        env.append({"name": MARKER_ENV_VAR, "value": marker(context), "type": "PLAINTEXT"})
        kwargs: dict[str, Any] = {
            "projectName": self.project_name,
            "environmentVariablesOverride": env,
            "idempotencyToken": client_token(context, "start_build"),
        }
        if self.source_version:
            kwargs["sourceVersion"] = self.source_version
        if self.buildspec_override:
            kwargs["buildspecOverride"] = self.buildspec_override
        if self.artifacts_override:
            kwargs["artifactsOverride"] = self.artifacts_override
        build = self.hook.start_build(**kwargs)
        self.remember_id(context, build["id"])
        return build

    # -- execution ---------------------------------------------------------------------------------
    def execute(self, context: Any) -> dict[str, Any]:
        record = self.new_record("codebuild.start_build")
        build = self.find_started_build(context)
        adopted = build is not None
        if build is None:
            build = self.start_build(context)
            self.log.info("Started CodeBuild build %s of project %s", build["id"], self.project_name)
        else:
            self.log.info("Adopted build %s (%s) started by an earlier try", build["id"], build["buildStatus"])
        build_id = build["id"]
        record.update(adopted=adopted, build_id=build_id)
        CodeBuildBuildLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            project_name=self.project_name,
            build_id=build_id.replace(":", "%3A"),
        )
        if build["buildStatus"] == BUILD_SUCCEEDED or not self.wait_for_completion:
            return self.finish(build, record)
        if self.deferrable:
            self.defer(
                trigger=CodeBuildBuildCompleteTrigger(
                    build_id=build_id,
                    **self.trigger_kwargs(),
                ),
                method_name="execute_complete",
                kwargs={"record": record.as_dict()},
            )
        try:
            wait(
                waiter=self.hook.get_waiter(WAITER_BUILD_COMPLETE),
                waiter_delay=self.waiter_delay,
                waiter_max_attempts=self.waiter_max_attempts,
                args={"ids": [build_id]},
                failure_message="CodeBuild build failed",
                status_message="CodeBuild build status",
                status_args=["builds[0].buildStatus", "builds[0].currentPhase"],
            )
        except AirflowException as error:
            self.log.info("Waiter ended: %s", error)
        return self.finish(self.hook.get_build(build_id), record)

    def execute_complete(
        self, context: Any, event: dict[str, Any] | None = None, record: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        build_id = (record or {}).get("build_id", "")
        self.validate_event(event, key="build_id", expected=build_id)
        resumed = self.new_record("codebuild.start_build", earlier=record)
        return self.finish(self.hook.get_build(build_id), resumed)

    def finish(self, build: dict[str, Any], record: Any) -> dict[str, Any]:
        summary = build_summary(build)
        result = record.update(**summary).as_dict()
        if summary["status"] in BUILD_FAILURE_STATES:
            raise AwsActionFailed(
                f"CodeBuild build of {summary['project_name']} ended {summary['status']}"
                + (f" in phase {summary['failed_phase']}" if summary["failed_phase"] else ""),
                resource_id=summary["build_id"],
                status=summary["status"],
                reason=summary["reason"],
                console_url=summary["log_link"] or "",
                result=result,
            )
        if summary["status"] != BUILD_SUCCEEDED and self.wait_for_completion:
            raise AwsActionFailed(
                "CodeBuild build did not finish in time",
                resource_id=summary["build_id"],
                status=summary["status"],
                reason=f"still {summary['current_phase']} after {self.waiter_max_attempts} describes",
                result=result,
            )
        return result


class CodeBuildStopBuildOperator(ShipflowAwsOperator[CodeBuildHook]):
    """Stop a running CodeBuild build; stopping a finished build changes nothing.

    .. seealso::
        - :external+boto3:py:meth:`CodeBuild.Client.stop_build`

    :param build_id: the build to stop. (templated)
    :return: the build summary after the stop, and the AWS calls made.
    """

    aws_hook_class = CodeBuildHook
    template_fields: Sequence[str] = aws_template_fields("build_id")

    def __init__(self, *, build_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.build_id = build_id

    def execute(self, context: Any) -> dict[str, Any]:
        record = self.new_record("codebuild.stop_build")
        build = self.hook.get_build(self.build_id)
        if build.get("buildStatus") == BUILD_IN_PROGRESS:
            build = self.hook.stop_build(self.build_id)
            self.log.info("Stopped CodeBuild build %s", self.build_id)
        else:
            self.log.info("Build %s already ended %s; nothing to stop", self.build_id, build.get("buildStatus"))
        return record.update(**build_summary(build)).as_dict()
