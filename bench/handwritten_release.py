"""The floor for bench/bench_parse.py: the release DAGs of N services written by hand (an Airflow DAG file).

It builds, for ``svc-0001`` .. ``svc-<N>`` (N from ``SHIPFLOW_BENCH_SERVICES``, default 10), the same
44-task graph that the factory (shipflow/release/builder.py) builds from bench_parse's generated
spec: the same operator classes with the same arguments, values written out instead of read from
YAML and validated by pydantic. So "factory time / this file's time" is the factory's own cost.
bench_parse checks that both serialize to the same DAG before it measures anything.

Like a good hand-written file it builds only the DAG a worker asks for (``get_parsing_context``).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG, TaskGroup, get_parsing_context
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
from shipflow.release.builder import StackApprovalBranchOperator  # the same class (builder has no spec I/O)
from shipflow.release.params import release_params
from shipflow.release.tasks import (
    EnvironmentSelectedOperator,
    FailReleaseOperator,
    ManualFallbackOperator,
    ReleaseOutcomeOperator,
    ReleaseRequestCheckOperator,
    RollbackVerifyOperator,
)

POLL = int(os.environ.get("SHIPFLOW_POLL_SECONDS", "30"))
VERSION = "{{ ti.xcom_pull(task_ids='check_release_request')['version'] }}"
COMMIT = "{{ ti.xcom_pull(task_ids='check_release_request')['commit'] }}"
CHANGE = "{{ ti.xcom_pull(task_ids='check_release_request')['change_reference'] }}"
BUCKET = "shipflow-artifacts"
SNS = "arn:aws:sns:us-east-1:123456789012:shipflow-alerts"
ENVIRONMENTS = ["staging", "production"]
WINDOW = {
    "timezone": "Europe/Berlin",
    "windows": [{"days": ["mon", "tue", "wed", "thu"], "start": "09:00", "end": "16:00"}],
    "freezes": [{"start": "2026-12-20", "end": "2027-01-04", "reason": "holidays"}],
}


def stage(service: str, env: str, previous, *, conn: str, region: str, staging: bool):
    """One environment's TaskGroup; returns its ``promote`` task."""
    aws = {"aws_conn_id": conn, "region_name": region}
    key = f"{service}/{service}-{VERSION}.zip"
    group_name = f"{service}-{env}"
    bake = 600 if staging else 1800
    with TaskGroup(group_id=env, tooltip=f"Release {service} to {env}") as group:
        enter = EnvironmentSelectedOperator(task_id="enter", environment=env)
        gates = []
        if staging:
            gates.append(DeploymentWindowGate(task_id="check_deployment_window", window=WINDOW, needed_seconds=900))
            gates.append(
                CloudWatchAlarmsOkSensor(
                    task_id="check_alarms",
                    alarm_names=[f"{service}-staging-errors"],
                    alarm_name_prefix=None,
                    poke_interval=POLL,
                    timeout=max(POLL * 20, 600),
                    deferrable=True,
                    **aws,
                )
            )
        stack = f"{service}-{env}"
        gates += [
            CloudFormationStackStableSensor(
                task_id="check_stack_stable",
                stack_name=stack,
                poke_interval=POLL,
                timeout=max(POLL * 20, 600),
                mode="reschedule",
                **aws,
            ),
            S3KeySensor(
                task_id="check_artifact_present",
                bucket_name=BUCKET,
                bucket_key=key,
                poke_interval=POLL,
                timeout=max(POLL * 10, 300),
                deferrable=True,
                **aws,
            ),
            ReleaseInputsGateOperator(
                task_id="check_release_inputs",
                service=service,
                environment=env,
                version=VERSION,
                commit=COMMIT,
                change_reference=CHANGE,
                artifact_bucket=BUCKET,
                artifact_key=key,
                aws_conn_id=conn,
            ),
        ]
        plan = CloudFormationCreateChangeSetOperator(
            task_id="plan_stack",
            stack_name=stack,
            template_file="service-stack.yaml",
            parameters=({"ServiceName": service, "Environment": env, "ReleaseVersion": VERSION} if staging else {}),
            capabilities=[] if staging else ["CAPABILITY_IAM"],
            deferrable=True,
            waiter_delay=max(POLL // 3, 1),
            retries=2,
            **aws,
        )
        # Every approver list (and the owners) names a role, and a role cannot restrict a HITL task: no
        # assigned_users anywhere.
        timeout = timedelta(hours=4) if staging else timedelta(days=1)
        decide_approval = StackApprovalBranchOperator(
            task_id="decide_stack_approval",
            environment=env,
            approval_for=[] if staging else ["replacement", "removal", "iam"],
        )
        approve_stack_change = ApprovalOperator(
            task_id="approve_stack_change",
            subject=f"{service} {VERSION}: approve the infrastructure change in {env}",
            body="{{ ti.xcom_pull(task_ids='" + env + ".plan_stack')['text'] }}",
            assigned_users=None,
            response_timeout=timeout,
            defaults=["Reject"],
        )
        apply = CloudFormationExecuteChangeSetOperator(
            task_id="apply_stack",
            change_set=plan.output,
            trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
            deferrable=True,
            waiter_delay=POLL,
            retries=2,
            **aws,
        )
        config = (
            "CodeDeployDefault.LambdaCanary10Percent5Minutes"
            if staging
            else "CodeDeployDefault.LambdaLinear10PercentEvery1Minute"
        )
        approve_release = ApprovalOperator(
            task_id="approve_release",
            subject=f"Release {service} {VERSION} to {env}?",
            body=f"Commit `{COMMIT}`, change `{CHANGE}`.\n\nDeployment group `{group_name}` with `{config}`.",
            assigned_users=None,
            response_timeout=timeout,
            defaults=["Reject"],
        )
        deploy = CodeDeployCreateDeploymentOperator(
            task_id="deploy",
            application_name=service,
            deployment_group_name=group_name,
            deployment_config_name=config,
            s3_bucket=BUCKET,
            s3_key=key,
            bundle_type="zip",
            description=f"{service} {VERSION} ({COMMIT})",
            deferrable=True,
            waiter_delay=POLL,
            retries=2,
            **aws,
        )
        watch_bake = CloudWatchBakeTimeOperator(
            task_id="watch_bake",
            bake_time=bake,
            alarm_names=None if staging else [f"{service}-production-errors", f"{service}-production-latency"],
            alarm_name_prefix=f"{service}-staging-" if staging else None,
            poll_interval=max(min(POLL, bake // 4), 1),
            deferrable=True,
            **aws,
        )
        dimensions = {"Application": service, "DeploymentGroup": group_name}
        checks = (
            [
                {"metric": "ErrorRate", "statistic": "Average", "max": 1.0, "dimensions": dimensions},
                {"metric": "LatencyP99", "statistic": "p99", "max": 800.0, "min": 0.0, "dimensions": dimensions},
            ]
            if staging
            else [{"metric": "ErrorRate", "statistic": "Average", "max": 0.5, "dimensions": dimensions}]
        )
        metrics = ServiceMetricsGateOperator(
            task_id="check_service_metrics",
            namespace="Shipflow/Service",
            dimensions=dimensions,
            checks=checks,
            window_seconds=max(bake, 60),
            **aws,
        )
        steps = [*gates, plan]
        expected = [t.task_id.split(".")[-1] for t in steps] + ["apply_stack", "approve_release", "deploy"]
        expected += ["watch_bake", "check_service_metrics"]
        decide_outcome = ReleaseOutcomeOperator(
            task_id="decide_outcome",
            environment=env,
            expected=expected,
            approvals=["approve_stack_change", "approve_release"],
            automatic=True,
            trigger_rule=TriggerRule.ALL_DONE,
        )
        promote = EmptyOperator(task_id="promote")
        no_rollback = EmptyOperator(task_id="no_rollback")
        manual_fallback = ManualFallbackOperator(
            task_id="manual_fallback",
            environment=env,
            service=service,
            runbook_url=f"https://runbooks.example.com/{service}",
            timeout=timedelta(hours=2) if staging else timedelta(minutes=90),
            assigned_users=None,
            trigger_rule=TriggerRule.ONE_FAILED,
        )
        fail_release = FailReleaseOperator(
            task_id="fail_release",
            environment=env,
            service=service,
            sns_topic_arn=SNS,
            trigger_rule=TriggerRule.ALL_DONE,
            **aws,
        )
        rollback_deployment = CodeDeployRollbackOperator(
            task_id="rollback_deployment",
            application_name=service,
            deployment_group_name=group_name,
            deployment_id="{{ ti.xcom_pull(task_ids='" + env + ".deploy', key='deployment_id') }}",
            deferrable=True,
            waiter_delay=POLL,
            retries=1,
            **aws,
        )
        plan_result = "ti.xcom_pull(task_ids='" + env + ".plan_stack')"
        rollback_stack = CloudFormationRollbackOperator(
            task_id="rollback_stack",
            stack_name=stack,
            previous_template="{{ " + plan_result + "['previous_template'] }}",
            previous_parameters="{{ " + plan_result + "['previous_parameters'] }}",
            deferrable=True,
            waiter_delay=POLL,
            retries=1,
            **aws,
        )
        verify_rollback = RollbackVerifyOperator(
            task_id="verify_rollback",
            environment=env,
            application=service,
            deployment_group=group_name,
            stack=stack,
            trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
            **aws,
        )
        chain = [enter, *steps]
        for upstream, downstream in zip(chain, chain[1:], strict=False):
            upstream >> downstream
        plan >> decide_approval >> [approve_stack_change, apply]
        approve_stack_change >> apply >> approve_release >> deploy >> watch_bake >> metrics >> decide_outcome
        rollbacks = [rollback_deployment, rollback_stack]
        decide_outcome >> [promote, no_rollback, *rollbacks]
        rollbacks >> verify_rollback
        [*rollbacks, verify_rollback] >> manual_fallback
        [verify_rollback, manual_fallback, no_rollback] >> fail_release
    previous >> group
    return promote


def release_dag(service: str) -> DAG:
    with DAG(
        dag_id=f"release__{service}",
        schedule=None,
        start_date=datetime(2025, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=["payments", "release", "shipflow", "tier-1"],
        params=release_params(ENVIRONMENTS),
        doc_md=(
            f"# Release pipeline of `{service}`\n\n"
            "Takes payments; released staging first, then production with an approval.\n\n"
            f"Generated by Shipflow from `include/services/{service}.yaml`. Environments: staging, production."
        ),
        default_args={"owner": "alice,payments-oncall", "retries": 0, "retry_delay": timedelta(seconds=2 * POLL)},
    ) as dag:
        request = ReleaseRequestCheckOperator(task_id="check_release_request", environments=ENVIRONMENTS)
        build = CodeBuildStartBuildOperator(
            task_id="build",
            project_name=f"{service}-build",
            source_version=COMMIT,
            environment_variables={"RELEASE_VERSION": VERSION, "STRICT": "true", "RELEASE_SERVICE": service},
            buildspec_override=(
                'version: 0.2\nphases:\n  build:\n    commands: ["make bundle VERSION=${RELEASE_VERSION}"]\n'
            ),
            aws_conn_id="aws_sandbox",
            region_name="us-east-1",
            deferrable=True,
            waiter_delay=POLL,
            retries=2,
        )
        request >> build
        promoted = stage(service, "staging", build, conn="aws_sandbox", region="us-east-1", staging=True)
        stage(service, "production", promoted, conn="aws_default", region="eu-central-1", staging=False)
    return dag


SERVICES = [f"svc-{i:04d}" for i in range(1, int(os.environ.get("SHIPFLOW_BENCH_SERVICES", "10")) + 1)]
wanted = get_parsing_context().dag_id
for name in SERVICES:
    if wanted and wanted != f"release__{name}":
        continue
    globals()[f"release__{name}"] = release_dag(name)
