"""Builds the ``release__<service>`` DAG of a service spec, and registers every service's DAG.

Never calls AWS: every AWS action and gate is an operator that acts when it runs. Shape (one
TaskGroup per environment, in the spec's order):

    check_release_request >> build >> <env>.enter >> gates >> infrastructure >> approval >> deploy
        >> post-checks >> <env>.decide_outcome -> promote >> <next env>.enter ...
                                               -> rollback_deployment / rollback_stack >> verify_rollback
                                                  (-> manual_fallback if the rollback fails)
                                               -> no_rollback
                                               => fail_release (ends a release that did not promote)

A spec that does not validate never takes the other services down: ``register_release_dags`` builds
every valid spec and turns the invalid ones into a single import error naming each file and field.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import MutableMapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.providers.standard.operators.branch import BaseBranchOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, TaskGroup
from airflow.task.trigger_rule import TriggerRule

from shipflow.aws.operators.cloudformation import (
    CloudFormationCreateChangeSetOperator,
    CloudFormationExecuteChangeSetOperator,
    CloudFormationRollbackOperator,
)
from shipflow.aws.operators.cloudwatch import CloudWatchBakeTimeOperator
from shipflow.aws.operators.codebuild import CodeBuildStartBuildOperator
from shipflow.aws.operators.codedeploy import CodeDeployCreateDeploymentOperator, CodeDeployRollbackOperator
from shipflow.aws.sensors.cloudformation import CloudFormationStackStableSensor
from shipflow.aws.sensors.cloudwatch import CloudWatchAlarmsOkSensor
from shipflow.gates.expectations import ReleaseInputsGateOperator, ServiceMetricsGateOperator
from shipflow.gates.window import DeploymentWindowGate
from shipflow.release import outcome as rules
from shipflow.release.approval import ReleaseApprovalOperator
from shipflow.release.params import release_params
from shipflow.release.tasks import (
    EnvironmentSelectedOperator,
    FailReleaseOperator,
    ManualFallbackOperator,
    ReleaseOutcomeOperator,
    ReleaseRequestCheckOperator,
    RollbackVerifyOperator,
)
from shipflow.spec.model import load_roles, people_of, render

ROOT = Path(__file__).resolve().parents[3]
SERVICES_DIR = ROOT / "include" / "services"
DAG_ID_PREFIX = "release__"
START_DATE = datetime(2025, 1, 1)
# How often waiting tasks look again (seconds). One knob, so the local stack and tests can run
# releases in seconds while production polls at AWS-friendly intervals.
POLL_SECONDS = int(os.environ.get("SHIPFLOW_POLL_SECONDS", "30"))
# Deploy time assumed by the window gate when the config name gives none (minutes).
DEFAULT_DEPLOY_MINUTES = 15

VERSION = "{{ ti.xcom_pull(task_ids='check_release_request')['version'] }}"
COMMIT = "{{ ti.xcom_pull(task_ids='check_release_request')['commit'] }}"
CHANGE_REFERENCE = "{{ ti.xcom_pull(task_ids='check_release_request')['change_reference'] }}"


def dag_id_for(service: str) -> str:
    return f"{DAG_ID_PREFIX}{service}"


def seconds(value: Any) -> int:
    """A spec duration (timedelta or seconds) in whole seconds."""
    return int(value.total_seconds()) if isinstance(value, timedelta) else int(value or 0)


def placeholders(environment: str, service: str) -> dict[str, str]:
    """What a spec's {placeholders} become: run-time values as Jinja, the rest known at parse time."""
    return {"version": VERSION, "commit": COMMIT, "environment": environment, "service": service}


def render_all(values: dict[str, str], environment: str, service: str) -> dict[str, str]:
    return {k: render(v, **placeholders(environment, service)) for k, v in values.items()}


def deploy_minutes(config: str | None) -> int:
    """How long a deployment config shifts traffic, from its name (canary/linear), for the window gate."""
    if not config:
        return DEFAULT_DEPLOY_MINUTES
    minutes = [int(m) for m in re.findall(r"(\d+)Minutes?", config)]
    if "Linear" in config and minutes:
        return minutes[0] * 10
    return minutes[0] if minutes else DEFAULT_DEPLOY_MINUTES


def people(principals: Any, include_dir: Path | None = None) -> list[str]:
    """The users behind a spec's principals (users and ``role:<name>`` from include/roles.yaml)."""
    return list(people_of(tuple(principals), load_roles(include_dir)))


def hitl_users(names: list[str]) -> list[dict[str, str]]:
    return [{"id": n, "name": n} for n in names]


class StackApprovalBranchOperator(BaseBranchOperator):
    """``decide_stack_approval``: a change set with a change kind the spec marks risky needs approval."""

    def __init__(self, *, environment: str, approval_for: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.environment = environment
        self.approval_for = list(approval_for)

    def choose_branch(self, context: Any) -> str:
        plan = context["ti"].xcom_pull(task_ids=f"{self.environment}.plan_stack") or {}
        kinds = risky_change_kinds(plan)
        needs = sorted(set(kinds) & set(self.approval_for))
        context["ti"].xcom_push(key="change_kinds", value=kinds)
        target = "approve_stack_change" if needs else "apply_stack"
        self.log.info("Change kinds %s; approval needed for %s -> %s", kinds, needs, target)
        return f"{self.environment}.{target}"


def risky_change_kinds(plan: dict[str, Any]) -> list[str]:
    """The change kinds (add, modify, removal, replacement, iam) a change-set summary contains."""
    if not plan.get("has_changes"):
        return []
    counts = plan.get("counts", {})
    kinds = [k for k, n in (("add", counts.get("add")), ("modify", counts.get("modify"))) if n]
    if counts.get("remove"):
        kinds.append("removal")
    if plan.get("replacements"):
        kinds.append("replacement")
    # Only IAM resources that change count: a template that always needs CAPABILITY_IAM must not make
    # every release wait for an approval.
    if plan.get("has_iam_changes"):
        kinds.append("iam")
    return kinds


def build_release_dag(spec: Any, spec_path: str | None = None) -> DAG:
    """The release DAG of one service spec (a validated ``shipflow.spec`` model)."""

    service = spec.service
    env_names = [env.name for env in spec.environments]
    owners = [o.removeprefix("role:") for o in spec.owners]
    doc = [f"# Release pipeline of `{service}`", "", spec.description or "", ""]
    doc.append(f"Generated by Shipflow from `{spec_path or service + '.yaml'}`. Environments: {', '.join(env_names)}.")
    first = spec.environments[0]
    schedule, train = None, None
    if spec.release_train is not None:
        from shipflow.release.timetable import release_train_timetable

        env = spec.environment(spec.release_train.environment)
        schedule = release_train_timetable(
            env.deployment_window.gate_spec(),
            deploy_minutes(env.deployment.config) * 60 + seconds(env.post_checks.bake_time),
            where=f"{spec_path or service}: release_train",
        )
        placeholders_now = {**placeholders(env.name, service), "version": "{version}"}
        train = {
            "bucket": render(spec.artifact.bucket, **placeholders_now),
            "key": render(spec.artifact.key, **placeholders_now),
            "aws_conn_id": env.aws_conn_id,
            "region_name": env.region,
        }
        doc.append(f"\nRelease train: leaves at each opening of {env.name}'s deployment window ({schedule.summary}).")
    dag = DAG(
        dag_id=dag_id_for(service),
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        # One release of a service at a time, in both execution modes: later releases wait (queued); in
        # "superseded" mode the running one gives way at its next safe point when one waits behind it.
        max_active_runs=1,
        tags=sorted({"shipflow", "release", *spec.tags}),
        params=release_params(env_names, scheduled=train is not None),
        doc_md="\n".join(doc),
        # Retries are for tries that end under a task: a worker that dies mid-wait, or Airflow 3.3
        # failing a task resumed right after it parked (apache/airflow #67287; the retry adopts what
        # the first try started). AWS failures, failed gates and bad requests raise
        # AirflowFailException: final, and handled by the rollback path instead.
        default_args={"owner": ",".join(owners), "retries": 1, "retry_delay": timedelta(seconds=2 * POLL_SECONDS)},
    )
    with dag:
        request = ReleaseRequestCheckOperator(task_id="check_release_request", environments=env_names, train=train)
        previous: Any = request
        if spec.build is not None:
            build = CodeBuildStartBuildOperator(
                task_id="build",
                project_name=spec.build.codebuild_project,
                source_version=COMMIT,
                environment_variables={
                    **render_all(dict(spec.build.environment_variables), first.name, service),
                    "RELEASE_VERSION": VERSION,
                    "RELEASE_SERVICE": service,
                },
                buildspec_override=spec.build.buildspec_override,
                aws_conn_id=first.aws_conn_id,
                region_name=first.region,
                deferrable=True,
                waiter_delay=POLL_SECONDS,
                retries=2,
            )
            previous >> build
            previous = build

        for env in spec.environments:
            previous = _environment(spec, env, previous)
    return dag


def _environment(spec: Any, env: Any, previous: Any) -> Any:
    """One environment's TaskGroup; returns its ``promote`` task (what the next environment follows)."""
    service, name = spec.service, env.name
    aws = {"aws_conn_id": env.aws_conn_id, "region_name": env.region}
    artifact_key = render(spec.artifact.key, **placeholders(name, service))
    artifact_bucket = render(spec.artifact.bucket, **placeholders(name, service))
    deploy_spec, post = env.deployment, env.post_checks
    bake_seconds = seconds(post.bake_time)
    expected: list[str] = []
    approvals: list[str] = []
    owners = people(spec.owners)
    supersede = spec.execution_mode == "superseded"
    notifications = spec.notifications.model_dump(mode="json") if spec.notifications else None
    # Who approves in this environment: its approval section, else (stack changes, window overrides) the owners.
    approval = env.approval
    approval_kwargs: dict[str, Any] = {
        "approvers": people(approval.approvers) if approval else owners,
        "required": approval.required if approval else 1,
        "response_timeout": timedelta(seconds=seconds(approval.timeout)) if approval else timedelta(hours=4),
        "supersede": supersede,
        "poll_interval": POLL_SECONDS,
        "notifications": notifications,
        "service": service,
        "environment": name,
        "retries": 2,  # a retry keeps the approvals given so far (ReleaseApprovalOperator.STATE_KEY)
        **aws,
    }

    with TaskGroup(group_id=name, tooltip=f"Release {service} to {name}") as group:
        chain: list[Any] = [EnvironmentSelectedOperator(task_id="enter", environment=name)]

        def step(task: Any) -> Any:
            chain[-1] >> task
            chain.append(task)
            expected.append(task.task_id.split(".")[-1])
            return task

        if env.deployment_window is not None:
            step(
                DeploymentWindowGate(
                    task_id="check_deployment_window",
                    window=env.deployment_window.gate_spec(),
                    needed_seconds=deploy_minutes(deploy_spec.config) * 60 + bake_seconds,
                    override_approvers=approval_kwargs["approvers"],
                    retries=2,
                    override_timeout=approval_kwargs["response_timeout"],
                    supersede=supersede,
                    poll_interval=POLL_SECONDS,
                    notifications=notifications,
                    **aws,
                )
            )
        pre = env.pre_checks
        if pre.alarms or pre.alarm_prefix:
            step(
                CloudWatchAlarmsOkSensor(
                    task_id="check_alarms",
                    alarm_names=list(pre.alarms) or None,
                    alarm_name_prefix=pre.alarm_prefix,
                    poke_interval=POLL_SECONDS,
                    timeout=max(POLL_SECONDS * 20, 600),
                    deferrable=True,
                    **aws,
                )
            )
        # stack_stable unset means "check it whenever the environment has infrastructure".
        if env.infrastructure is not None and pre.stack_stable is not False:
            step(
                CloudFormationStackStableSensor(
                    task_id="check_stack_stable",
                    stack_name=env.infrastructure.stack,
                    poke_interval=POLL_SECONDS,
                    timeout=max(POLL_SECONDS * 20, 600),
                    mode="reschedule",
                    **aws,
                )
            )
        if pre.artifact_present:
            step(
                S3KeySensor(
                    task_id="check_artifact_present",
                    bucket_name=artifact_bucket,
                    bucket_key=artifact_key,
                    poke_interval=POLL_SECONDS,
                    timeout=max(POLL_SECONDS * 10, 300),
                    deferrable=True,
                    aws_conn_id=env.aws_conn_id,
                    region_name=env.region,
                )
            )
        if pre.release_inputs:
            step(
                ReleaseInputsGateOperator(
                    task_id="check_release_inputs",
                    service=service,
                    environment=name,
                    version=VERSION,
                    commit=COMMIT,
                    change_reference=CHANGE_REFERENCE,
                    artifact_bucket=artifact_bucket,
                    artifact_key=artifact_key,
                    aws_conn_id=env.aws_conn_id,
                )
            )

        if env.infrastructure is not None:
            infra = env.infrastructure
            plan = step(
                CloudFormationCreateChangeSetOperator(
                    task_id="plan_stack",
                    stack_name=infra.stack,
                    template_file=infra.template,
                    parameters=render_all(dict(infra.parameters), name, service),
                    capabilities=list(infra.capabilities),
                    deferrable=True,
                    waiter_delay=max(POLL_SECONDS // 3, 1),
                    retries=2,
                    **aws,
                )
            )
            decide_approval = StackApprovalBranchOperator(
                task_id="decide_stack_approval", environment=name, approval_for=list(infra.approval_for)
            )
            approve_stack_change = ReleaseApprovalOperator(
                task_id="approve_stack_change",
                subject=f"{service} {VERSION}: approve the infrastructure change in {name}",
                body="{{ ti.xcom_pull(task_ids='" + name + ".plan_stack')['text'] }}",
                **approval_kwargs,
            )
            apply = CloudFormationExecuteChangeSetOperator(
                task_id="apply_stack",
                change_set=plan.output,
                trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
                deferrable=True,
                waiter_delay=POLL_SECONDS,
                retries=2,
                **aws,
            )
            plan >> decide_approval >> [approve_stack_change, apply]
            approve_stack_change >> apply
            chain.append(apply)
            expected.append("apply_stack")
            approvals.append("approve_stack_change")

        if env.approval is not None:
            step(
                ReleaseApprovalOperator(
                    task_id="approve_release",
                    subject=f"Release {service} {VERSION} to {name}?",
                    body=(
                        f"Commit `{COMMIT}`, change `{CHANGE_REFERENCE}`.\n\n"
                        f"Deployment group `{deploy_spec.deployment_group}` with `{deploy_spec.config}`."
                    ),
                    **approval_kwargs,
                )
            )
            approvals.append("approve_release")

        step(
            CodeDeployCreateDeploymentOperator(
                task_id="deploy",
                application_name=deploy_spec.application,
                deployment_group_name=deploy_spec.deployment_group,
                deployment_config_name=deploy_spec.config,
                s3_bucket=artifact_bucket,
                s3_key=artifact_key,
                bundle_type=spec.artifact.bundle_type,
                description=f"{service} {VERSION} ({COMMIT})",
                deferrable=True,
                waiter_delay=POLL_SECONDS,
                retries=2,
                # Never two deployments to one environment of a service, whatever started the runs
                # (deferred instances count too); CodeDeploy also refuses a second one per group.
                max_active_tis_per_dag=1,
                **aws,
            )
        )
        dimensions = {"Application": deploy_spec.application, "DeploymentGroup": deploy_spec.deployment_group}
        if bake_seconds and (post.alarms or post.alarm_prefix):
            step(
                CloudWatchBakeTimeOperator(
                    task_id="watch_bake",
                    bake_time=bake_seconds,
                    alarm_names=list(post.alarms) or None,
                    alarm_name_prefix=post.alarm_prefix,
                    poll_interval=max(min(POLL_SECONDS, bake_seconds // 4), 1),
                    deferrable=True,
                    **aws,
                )
            )
        if post.metrics:
            step(
                ServiceMetricsGateOperator(
                    task_id="check_service_metrics",
                    namespace=post.namespace,
                    dimensions=dimensions,
                    checks=[
                        {**m.model_dump(mode="json", exclude_none=True), "dimensions": m.dimensions or dimensions}
                        for m in post.metrics
                    ],
                    # The bake window: what the new revision did since it finished deploying.
                    window_seconds=max(bake_seconds, 10),
                    **aws,
                )
            )

        decide_outcome = ReleaseOutcomeOperator(
            task_id="decide_outcome",
            environment=name,
            expected=expected,
            approvals=approvals,
            automatic=env.rollback.automatic,
            service=service,
            notifications=notifications,
            trigger_rule=TriggerRule.ALL_DONE,
            **aws,
        )
        chain[-1] >> decide_outcome
        promote = EmptyOperator(task_id=rules.PROMOTE)
        no_rollback = EmptyOperator(task_id=rules.NO_ROLLBACK)
        runbook_url = render(env.rollback.runbook_url or "(no runbook in the spec)", **placeholders(name, service))
        manual_fallback = ManualFallbackOperator(
            task_id=rules.MANUAL_FALLBACK,
            environment=name,
            service=service,
            runbook_url=runbook_url,
            timeout=timedelta(seconds=seconds(env.rollback.manual_fallback_timeout)),
            assigned_users=hitl_users(owners),
            trigger_rule=TriggerRule.ONE_FAILED if env.rollback.automatic else TriggerRule.ALL_SUCCESS,
            notifications=notifications,
            **aws,
        )
        fail_release = FailReleaseOperator(
            task_id="fail_release",
            environment=name,
            service=service,
            notifications=notifications,
            runbook_url=runbook_url,
            trigger_rule=TriggerRule.ALL_DONE,
            **aws,
        )
        if env.rollback.automatic:
            rollback_tasks = _rollback_tasks(env, aws)
            verify_rollback = RollbackVerifyOperator(
                task_id="verify_rollback",
                environment=name,
                application=deploy_spec.application,
                deployment_group=deploy_spec.deployment_group,
                stack=env.infrastructure.stack if env.infrastructure else None,
                trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
                **aws,
            )
            decide_outcome >> [promote, no_rollback, *rollback_tasks]
            rollback_tasks >> verify_rollback
            [*rollback_tasks, verify_rollback] >> manual_fallback
            [verify_rollback, manual_fallback, no_rollback] >> fail_release
        else:
            # No automatic rollback: what this run changed is left to a person (the manual fallback).
            decide_outcome >> [promote, no_rollback, manual_fallback]
            [manual_fallback, no_rollback] >> fail_release

    previous >> group
    return promote


def _rollback_tasks(env: Any, aws: dict[str, Any]) -> list[Any]:
    """The tasks that undo this run's changes in one environment: deployment, then stack."""
    name, deploy_spec = env.name, env.deployment
    tasks = [
        CodeDeployRollbackOperator(
            task_id=rules.ROLLBACK_DEPLOYMENT,
            application_name=deploy_spec.application,
            deployment_group_name=deploy_spec.deployment_group,
            deployment_id="{{ ti.xcom_pull(task_ids='" + name + ".deploy', key='deployment_id') }}",
            deferrable=True,
            waiter_delay=POLL_SECONDS,
            retries=1,
            **aws,
        )
    ]
    if env.infrastructure is not None:
        plan = "ti.xcom_pull(task_ids='" + name + ".plan_stack')"
        tasks.append(
            CloudFormationRollbackOperator(
                task_id=rules.ROLLBACK_STACK,
                stack_name=env.infrastructure.stack,
                # Jinja renders text: the parameters travel as JSON (a dict would render as its repr).
                previous_template="{{ " + plan + "['previous_template'] or '' }}",
                previous_parameters="{{ " + plan + "['previous_parameters'] | tojson }}",
                deferrable=True,
                waiter_delay=POLL_SECONDS,
                retries=1,
                **aws,
            )
        )
    return tasks


def in_shard(service: str, shard: int, shards: int) -> bool:
    """Whether ``service``'s DAG belongs in DAG file ``shard`` of ``shards``.

    crc32 of the name is the same in every process and on every machine (``hash()`` is salted per
    process), so a service stays in its file until ``shards`` changes.
    """
    return zlib.crc32(service.encode("utf-8")) % shards == shard


def register_release_dags(
    namespace: MutableMapping[str, Any], services_dir: Path | None = None, *, shard: int = 0, shards: int = 1
) -> list[str]:
    """Build the release DAGs of every service (of this file's shard) into ``namespace`` (its ``globals()``).

    Only this function touches the namespace. With ``shards`` > 1, only the specs whose file name
    hashes to ``shard`` (:func:`in_shard`) are read and built, so one entry file per shard
    (dags/release_<shard>.py) splits the parse across dag-processor children; each file reports
    only its own broken specs. With ``get_parsing_context().dag_id`` set (a worker running one
    task), only that service's spec is read and built.
    """
    from airflow.sdk import get_parsing_context

    from shipflow.spec.loader import check_spec, load_defaults, spec_files

    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(
            f"register_release_dags(shard={shard}, shards={shards}): needs shards >= 1 and 0 <= shard < shards; "
            "give each entry file in dags/ its own shard and the same shards"
        )
    directory = services_dir or SERVICES_DIR
    if not directory.is_dir():
        raise FileNotFoundError(f"service spec directory {directory} does not exist")
    files = [p for p in spec_files(directory) if in_shard(p.stem, shard, shards)]
    wanted = get_parsing_context().dag_id
    if wanted and wanted.startswith(DAG_ID_PREFIX):
        files = [p for p in files if p.name == f"{wanted.removeprefix(DAG_ID_PREFIX)}.yaml"] or files
    defaults = load_defaults()
    specs, errors = [], []
    for path in files:
        spec, problems = check_spec(path, defaults=defaults)
        errors += problems
        if spec is not None:
            specs.append(spec)
    built = []
    for spec in specs:
        dag = build_release_dag(spec, spec_path=f"include/services/{spec.service}.yaml")
        namespace[dag.dag_id] = dag
        built.append(dag.dag_id)
    if errors:
        namespace["shipflow__invalid_service_specs"] = invalid_specs_dag(errors)
    return built


class InvalidServiceSpecs(ValueError):
    """Raised while Airflow validates the placeholder DAG: becomes the DAG file's import error."""


def invalid_specs_dag(errors: list[Any]) -> DAG:
    """A DAG that fails Airflow's validation with every spec error, so the file shows one import
    error naming each broken spec's file and field while the valid services' DAGs still load."""
    message = "invalid service specs (fix them, then `shipflow validate` is clean):\n" + "\n".join(
        str(e) for e in errors
    )

    class _InvalidSpecsDag(DAG):
        def validate(self) -> None:
            raise InvalidServiceSpecs(message)

    return _InvalidSpecsDag(dag_id="shipflow__invalid_service_specs", schedule=None, start_date=START_DATE)
