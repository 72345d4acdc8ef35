"""The release's own operators: the request check, the outcome branch, rollback verification, the
manual fallback and the task that ends a failed release with its reason.

They hold no AWS logic of their own beyond reading what the AWS actions recorded (XCom) and one
describe to verify a rollback; AWS work lives in ``shipflow.aws``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSkipException
from airflow.providers.standard.operators.branch import BaseBranchOperator
from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import BaseOperator

from shipflow.release import notify as alerts
from shipflow.release import outcome as rules
from shipflow.release.promotion import promotion_problem

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
COMMIT = re.compile(r"^[0-9a-f]{7,40}$")
REQUEST_KEYS = ("version", "commit", "change_reference", "environments", "emergency", "emergency_reason")


class ReleaseRequestError(AirflowFailException):
    """The run's conf is not a valid release request (never retried: the request itself is wrong)."""


def check_request(conf: dict[str, Any], environments: Sequence[str]) -> dict[str, Any]:
    """The normalised release request, or ``ReleaseRequestError`` naming every problem."""
    problems = []
    for key in sorted(set(conf) - set(REQUEST_KEYS)):
        close = difflib.get_close_matches(key, REQUEST_KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"unknown key {key!r}{hint}; allowed: {', '.join(REQUEST_KEYS)}")
    version = conf.get("version")
    if not isinstance(version, str) or not SEMVER.match(version):
        problems.append(f"version must be a semantic version like 1.4.0, got {version!r}")
    commit = conf.get("commit")
    if not isinstance(commit, str) or not COMMIT.match(commit):
        problems.append(f"commit must be a 7-40 character lowercase hex sha, got {commit!r}")
    change = conf.get("change_reference")
    if change is not None and (not isinstance(change, str) or not change.strip()):
        problems.append(f"change_reference must be a non-empty string, got {change!r}")
    chosen = conf.get("environments") or list(environments)
    if not isinstance(chosen, list) or not all(isinstance(e, str) for e in chosen):
        problems.append(f"environments must be a list of names, got {chosen!r}")
        chosen = list(environments)
    problem = promotion_problem(chosen, environments)
    if problem:
        problems.append(problem)
    emergency = conf.get("emergency", False)
    reason = conf.get("emergency_reason")
    if not isinstance(emergency, bool):
        problems.append(f"emergency must be true or false, got {emergency!r}")
    elif emergency and (not isinstance(reason, str) or not reason.strip()):
        problems.append("emergency_reason must say why this release cannot wait for the deployment window")
    if problems:
        raise ReleaseRequestError("invalid release request: " + "; ".join(problems))
    return {
        "version": version,
        "commit": commit,
        "change_reference": change,
        # Environments are promoted in the spec's order whatever order the request lists them in.
        "environments": [e for e in environments if e in chosen],
        "emergency": emergency,
        "emergency_reason": reason.strip() if emergency else None,
    }


def _semver_key(version: str) -> tuple[Any, ...]:
    """Sort key of a semantic version: numbers numerically, a pre-release before its release."""
    core, _, pre = version.split("+")[0].partition("-")
    return (*(int(part) for part in core.split(".")), pre == "", pre)


def newest_artifact(s3: Any, bucket: str, key_template: str) -> tuple[str, str] | None:
    """The newest ``(version, key)`` among the objects matching ``key_template`` (with ``{version}``)."""
    before, _, after = key_template.partition("{version}")
    pattern = re.compile(re.escape(before) + r"(?P<version>[0-9A-Za-z.+-]+)" + re.escape(after) + "$")
    found: list[tuple[str, str]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=before):
        for item in page.get("Contents", []):
            match = pattern.match(item["Key"])
            if match and SEMVER.match(match["version"]):
                found.append((match["version"], item["Key"]))
    return max(found, key=lambda pair: _semver_key(pair[0])) if found else None


class ReleaseRequestCheckOperator(BaseOperator):
    """First task of every release: the run's conf is a valid request (``check_release_request``).

    A release train's scheduled run has no conf: it ships the newest version whose artifact is in S3,
    and the commit recorded in that object's ``commit`` metadata (CI uploads with it).

    :param train: for a service with a release train: ``{bucket, key, aws_conn_id, region_name}``, the
        artifact location with ``{version}`` left in the key.
    """

    def __init__(self, *, environments: Sequence[str], train: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.environments = list(environments)
        self.train = train

    def execute(self, context: Any) -> dict[str, Any]:
        dag_run = context["dag_run"]
        conf = {k: v for k, v in dict(dag_run.conf or {}).items() if v is not None or k not in ("version", "commit")}
        if (
            self.train
            and "version" not in conf
            and str(getattr(dag_run, "run_type", "")) in ("scheduled", "DagRunType.SCHEDULED")
        ):
            conf.update(self.train_request())
        request = check_request(conf, self.environments)
        self.log.info("Release request: %s", request)
        return request

    def train_request(self) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        train = self.train or {}
        bucket, template = train["bucket"], train["key"]
        hook = S3Hook(aws_conn_id=train.get("aws_conn_id"), region_name=train.get("region_name"))
        newest = newest_artifact(hook.conn, bucket, template)
        if newest is None:
            raise ReleaseRequestError(
                f"release train: no artifact matches s3://{bucket}/{template}; upload one, or trigger with a version"
            )
        version, key = newest
        commit = (hook.conn.head_object(Bucket=bucket, Key=key).get("Metadata") or {}).get("commit")
        if not commit:
            raise ReleaseRequestError(
                f"release train: s3://{bucket}/{key} has no commit metadata; upload artifacts with it "
                "(aws s3 cp ... --metadata commit=<sha>), or trigger this version by hand with its commit"
            )
        self.log.info("Release train: the newest artifact is %s (s3://%s/%s, commit %s)", version, bucket, key, commit)
        return {"version": version, "commit": commit, "change_reference": f"release train {version}"}


class EnvironmentSelectedOperator(BaseOperator):
    """Skips an environment the request left out (``enter_<env>``); the ones after it skip too."""

    def __init__(self, *, environment: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.environment = environment

    def execute(self, context: Any) -> None:
        request = context["ti"].xcom_pull(task_ids="check_release_request") or {}
        if self.environment not in request.get("environments", [self.environment]):
            raise AirflowSkipException(f"{self.environment} is not part of this release request")


class ReleaseOutcomeOperator(BaseBranchOperator):
    """``decide_outcome``: promote, roll back what this run changed, or fail (see ``outcome``).

    When it starts a rollback it sends the ``rollback`` alert with the reason: here, where the
    rollback path begins, so people learn of a bad release while the undo runs (it can take as long
    as the deployment). Whether the undo worked follows in the ``failure`` alert (verified or not),
    and a failed undo pages the owners (``manual_fallback``).

    :param service: the service, for the alert.
    :param notifications: the spec's ``notifications`` section (dict), for ``rollback``.
    """

    def __init__(
        self,
        *,
        environment: str,
        expected: Sequence[str],
        approvals: Sequence[str],
        automatic: bool = True,
        service: str | None = None,
        notifications: Mapping[str, Any] | None = None,
        aws_conn_id: str | None = None,
        region_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.environment = environment
        self.expected = list(expected)
        self.approvals = list(approvals)
        self.automatic = automatic
        self.service = service
        self.notifications = dict(notifications or {})
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def _in_group(self, step: str) -> str:
        return f"{self.environment}.{step}"

    def choose_branch(self, context: Any) -> list[str]:
        ti = context["ti"]
        found = ti.get_task_states(dag_id=ti.dag_id, task_group_id=self.environment, run_ids=[ti.run_id]).get(
            ti.run_id, {}
        )
        prefix = f"{self.environment}."
        states = {task_id.removeprefix(prefix): state for task_id, state in found.items()}
        if states.get("enter") == "skipped":
            # Not part of this release: left out of the request, or an earlier environment did not promote.
            raise AirflowSkipException(f"{self.environment} was not entered in this release")
        deployment_id = ti.xcom_pull(task_ids=self._in_group("deploy"), key="deployment_id")
        applied = ti.xcom_pull(task_ids=self._in_group("apply_stack")) or {}
        stack_changed = states.get("apply_stack") == "failed" or (
            states.get("apply_stack") == "success" and not applied.get("skipped", False)
        )
        rejected_by = {}
        for step in self.approvals:
            # The decision record is pushed before a rejection skips what follows (a skip ends the
            # task before its return value would be kept).
            answer = ti.xcom_pull(task_ids=self._in_group(step), key="approval") or {}
            if answer and "Approve" not in (answer.get("chosen_options") or []):
                who = answer.get("responded_by_user") or {}
                if answer.get("decision") == "timed_out":
                    rejected_by[step] = "timeout (nobody decided in time)"
                else:
                    rejected_by[step] = who.get("name") or who.get("id") or "an approver"
        superseded = {
            step: found
            for step in rules.SAFE_POINTS
            if (found := ti.xcom_pull(task_ids=self._in_group(step), key="superseded"))
        }
        if superseded:
            # A newer release waits behind this run: it gave way before changing anything here.
            step = next(iter(superseded))
            self._record(
                ti,
                rules.Outcome([], reason=f"superseded by a newer release at {step}"),
                None,
                states,
                outcome=rules.SUPERSEDED,
            )
            self.log.info("Superseded at %s: %s; nothing to roll back", step, superseded[step])
            return []
        if states.get("enter") in rules.FAILED_STATES:
            # The request check or the build failed before this environment began: nothing changed here.
            decision = rules.Outcome(
                [rules.NO_ROLLBACK], reason=f"the release failed before reaching {self.environment}"
            )
        else:
            decision = rules.decide(
                states,
                expected=self.expected,
                deployment_started=bool(deployment_id),
                stack_changed=stack_changed,
                rejected_by=rejected_by,
                automatic=self.automatic,
            )
        self._record(ti, decision, deployment_id, states, outcome=rules.outcome_name(decision, rejected_by))
        self.log.info("Outcome for %s: %s %s", self.environment, decision.next_tasks, decision.reason)
        if decision.rolled_back:
            self._alert_rollback(context, decision)
        return [self._in_group(t) for t in decision.next_tasks]

    UNDOING = {
        rules.ROLLBACK_DEPLOYMENT: "the deployment (rollback_deployment)",
        rules.ROLLBACK_STACK: "the stack change (rollback_stack)",
    }

    def _alert_rollback(self, context: Any, decision: rules.Outcome) -> None:
        ti = context["ti"]
        service = self.service or ti.dag_id
        version = alerts.requested_version(ti)
        release = " ".join(filter(None, (service, version)))
        alert = alerts.release_alert(
            alerts.ROLLBACK,
            title=f"{release} rolling back in {self.environment}",
            headline=f"rolling back {release} in {self.environment}: {decision.reason}",
            service=service,
            version=version,
            environment=self.environment,
            run_id=ti.run_id,
            details=[
                ("Undoing", ", ".join(self.UNDOING.get(t, t) for t in decision.rolled_back)),
                ("Failed step", decision.failed_step),
            ],
            action=(
                "nothing yet: Shipflow is undoing this release's changes and verifies that AWS serves the last "
                "good version again (verify_rollback); if the undo fails, the owners are paged (manual_fallback). "
                f"Before releasing again, find out why {decision.failed_step or 'the release'} failed."
            ),
            url=alerts.task_url(ti),
        )
        alerts.send(
            self.notifications, alert, aws_conn_id=self.aws_conn_id, region_name=self.region_name, context=context
        )

    def _record(self, ti: Any, decision: Any, deployment_id: Any, states: dict[str, Any], *, outcome: str) -> None:
        ti.xcom_push(
            key="outcome",
            value={
                "environment": self.environment,
                "outcome": outcome,
                "promoted": decision.promoted,
                "reason": decision.reason,
                "failed_step": decision.failed_step,
                "rolled_back": decision.rolled_back,
                "deployment_id": deployment_id,
                "states": states,
            },
        )


class RollbackVerifyOperator(BaseOperator):
    """``verify_rollback``: what the rollback tasks report is what AWS now shows.

    The deployment rollback must have succeeded and its revision be the group's live one; the stack
    must be in a rolled-back or complete state. Reads the rollback tasks' results and makes one
    describe per service through their hooks.
    """

    def __init__(
        self,
        *,
        environment: str,
        application: str,
        deployment_group: str,
        stack: str | None,
        aws_conn_id: str | None,
        region_name: str | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.environment = environment
        self.application = application
        self.deployment_group = deployment_group
        self.stack = stack
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def execute(self, context: Any) -> dict[str, Any]:
        from shipflow.aws.constants.cloudformation import STACK_ROLLED_BACK_STATES, STACK_SUCCESS_STATES
        from shipflow.aws.hooks.cloudformation import CloudFormationHook
        from shipflow.aws.hooks.codedeploy import CodeDeployHook

        ti = context["ti"]
        evidence: dict[str, Any] = {"environment": self.environment}
        problems = []
        deployment = ti.xcom_pull(task_ids=f"{self.environment}.rollback_deployment")
        if deployment:
            hook = CodeDeployHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
            group = hook.get_deployment_group(self.application, self.deployment_group)
            live_id = (group.get("lastSuccessfulDeployment") or {}).get("deploymentId")
            evidence["deployment"] = {
                "rollback_deployment_id": deployment.get("deployment_id"),
                "status": deployment.get("status"),
                "rolled_back_to": deployment.get("rolled_back_to"),
                "live_deployment_id": live_id,
            }
            if deployment.get("status") != "Succeeded" or live_id != deployment.get("deployment_id"):
                problems.append(
                    f"deployment rollback {deployment.get('deployment_id')} is {deployment.get('status')}, "
                    f"live deployment is {live_id}"
                )
        stack = ti.xcom_pull(task_ids=f"{self.environment}.rollback_stack")
        if stack and self.stack:
            status = CloudFormationHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name).get_stack(
                self.stack
            )["StackStatus"]
            evidence["stack"] = {"stack": self.stack, "status": status, "reported": stack.get("final_status")}
            if status not in (*STACK_ROLLED_BACK_STATES, *STACK_SUCCESS_STATES):
                problems.append(f"stack {self.stack} is {status} after the rollback")
        if problems:
            raise AirflowFailException("rollback not verified: " + "; ".join(problems))
        evidence["verified"] = True
        return evidence


class ManualFallbackOperator(HITLOperator):
    """``manual_fallback``: the automated rollback failed; a person restores the environment.

    Pages the owners (the task waits for them in ``awaiting_input``) with the runbook link, and ends
    when someone confirms the environment is restored. Every such step is a *manual fallback* in
    Shipflow's metrics. The page is the ``manual_fallback`` alert, sent through Airflow's own HITL
    hook (``notifiers``) once the request is open, once per try.

    :param notifications: the spec's ``notifications`` section (dict), for ``manual_fallback``.
    """

    RESTORED = "Environment restored"
    NOT_RESTORED = "Not restored"

    def __init__(
        self,
        *,
        environment: str,
        service: str,
        runbook_url: str,
        timeout: timedelta,
        notifications: Mapping[str, Any] | None = None,
        aws_conn_id: str | None = None,
        region_name: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(
            subject=f"Manual fallback: restore {service} in {environment}",
            body=(
                f"The automated rollback of **{service}** in **{environment}** did not complete.\n\n"
                f"Follow the runbook: {runbook_url}\n\n"
                "Confirm here once the environment serves the last good version again."
            ),
            options=[self.RESTORED, self.NOT_RESTORED],
            defaults=[self.NOT_RESTORED],
            response_timeout=timeout,
            **kwargs,
        )
        self.environment = environment
        self.service = service
        self.runbook_url = runbook_url
        self.notifications = dict(notifications or {})
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def execute(self, context: Any) -> Any:
        page = alerts.ReleaseAlertNotifier(
            notifications=self.notifications,
            alert=self.page(context),
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
        )
        self.notifiers = [*self.notifiers, page]
        return super().execute(context)

    def page(self, context: Any) -> alerts.Alert:
        """The ``manual_fallback`` alert: what failed, the runbook, who confirms, and where."""
        ti = context["ti"]
        outcome = ti.xcom_pull(task_ids=f"{self.environment}.decide_outcome", key="outcome") or {}
        version = alerts.requested_version(ti)
        release = " ".join(filter(None, (self.service, version)))
        if outcome.get("rolled_back"):
            headline = f"the automated rollback of {release} in {self.environment} failed: restore it by hand"
        else:
            headline = f"{release} changed {self.environment} and automatic rollback is off: restore it by hand"
        owners = ", ".join(u["name"] for u in self.assigned_users or []) or "the owners"
        try:
            url: str | None = self.generate_link_to_ui(task_instance=ti)
        except Exception:  # no [api] base_url: the task's page instead
            url = alerts.task_url(ti)
        return alerts.release_alert(
            alerts.MANUAL_FALLBACK,
            title=f"ACTION NEEDED: restore {self.service} in {self.environment}",
            headline=headline,
            service=self.service,
            version=version,
            environment=self.environment,
            run_id=ti.run_id,
            details=[
                ("Why the release stopped", outcome.get("reason")),
                ("Runbook", self.runbook_url),
                ("Who confirms", owners),
                ("Deadline", f"{self.response_timeout}, then the step fails as not restored"),
            ],
            action=(
                f"restore {self.environment} to the last good version by the runbook, then answer "
                f"'{self.RESTORED}' on the request in Airflow (link below), or '{self.NOT_RESTORED}' if you cannot."
            ),
            url=url,
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        result = super().execute_complete(context, event)
        if self.RESTORED not in result["chosen_options"]:
            raise AirflowFailException(f"{self.environment} was not confirmed restored after the failed rollback")
        return result


class FailReleaseOperator(BaseOperator):
    """``fail_release``: ends a release that did not promote, with its reason, after any rollback.

    Skips itself when the environment promoted (it sits on the rollback path, which the branch
    skips). Otherwise it sends the ``failure`` alert where the spec routes it, and fails the run with
    the reason, what was rolled back and whether the rollback was verified.

    :param notifications: the spec's ``notifications`` section (dict), for ``failure``.
    :param sns_topic_arn: shorthand for ``notifications={"sns_topic_arn": ..., "on": ["failure"]}``.
    :param runbook_url: linked when the environment was not confirmed restored.
    """

    def __init__(
        self,
        *,
        environment: str,
        service: str,
        notifications: Mapping[str, Any] | None = None,
        sns_topic_arn: str | None = None,
        runbook_url: str | None = None,
        aws_conn_id: str | None = None,
        region_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.environment = environment
        self.service = service
        if notifications is None and sns_topic_arn:
            notifications = {"sns_topic_arn": sns_topic_arn, "on": [alerts.FAILURE]}
        self.notifications = dict(notifications or {})
        self.runbook_url = runbook_url
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def execute(self, context: Any) -> None:
        ti = context["ti"]
        result = ti.xcom_pull(task_ids=f"{self.environment}.decide_outcome", key="outcome")
        if not result:
            raise AirflowSkipException(f"{self.environment} was not part of this release")
        if result.get("promoted"):
            raise AirflowSkipException(f"{self.environment} promoted; nothing to fail")
        if result.get("outcome") == rules.SUPERSEDED:
            raise AirflowSkipException(f"{self.environment}: superseded by a newer release; nothing to fail")
        states = ti.get_task_states(dag_id=ti.dag_id, task_group_id=self.environment, run_ids=[ti.run_id]).get(
            ti.run_id, {}
        )
        verify = states.get(f"{self.environment}.verify_rollback")
        fallback = states.get(f"{self.environment}.manual_fallback")
        rolled_back = ", ".join(result.get("rolled_back") or [])
        env = self.environment
        # Without an automatic rollback (rollback.automatic: false) nothing is "rolled back": what this
        # run changed is left to the manual fallback.
        undo = f"automated rollback failed ({rolled_back})" if rolled_back else "no automatic rollback"
        if fallback == "success":
            after = f"{undo}; restored by hand (manual fallback)"
            action = f"{env} was restored by hand; find out why the release failed before releasing again."
        elif fallback in rules.FAILED_STATES or (rolled_back and verify != "success"):
            after = f"{undo} and the environment was NOT confirmed restored"
            action = (
                f"URGENT: {env} may still run the failed release. Restore it by the runbook "
                f"({self.runbook_url or 'see the service spec'}) and check it serves the last good version."
            )
        elif not rolled_back:
            after = "nothing was changed, nothing to roll back"
            action = f"nothing changed in {env}; fix what stopped the release, then trigger it again."
        else:
            after = f"rolled back ({rolled_back}) and verified"
            action = (
                f"{env} serves the last good version again; find out why the release failed, fix it and "
                "release a new version."
            )
        reason = result.get("reason") or "the release did not complete"
        message = f"release of {self.service} failed in {env}: {reason}; {after}"
        version = alerts.requested_version(ti)
        alert = alerts.release_alert(
            alerts.FAILURE,
            title=f"{' '.join(filter(None, (self.service, version)))} release failed in {env}",
            headline=message,
            service=self.service,
            version=version,
            environment=env,
            run_id=ti.run_id,
            details=[("Outcome", result.get("outcome")), ("Failed step", result.get("failed_step"))],
            action=action,
            url=alerts.task_url(ti),
        )
        alerts.send(
            self.notifications, alert, aws_conn_id=self.aws_conn_id, region_name=self.region_name, context=context
        )
        raise AirflowFailException(message)
