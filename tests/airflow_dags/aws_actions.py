"""One DAG per AWS release action, for the end-to-end tests in tests/aws/test_e2e.py.

Each task takes its resource names from the run's conf and retries once quickly, so a test can kill
a task mid-wait and watch Airflow's retry adopt what the first try started. ``deferrable`` in the
conf selects the triggerer path.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG

import shipflow
from shipflow.aws.operators.cloudformation import (
    CloudFormationCreateChangeSetOperator,
    CloudFormationExecuteChangeSetOperator,
)
from shipflow.aws.operators.codebuild import CodeBuildStartBuildOperator
from shipflow.aws.operators.codedeploy import CodeDeployCreateDeploymentOperator

# The stack templates the CloudFormation tests use. The live stack parses a copy of this folder, so
# the repository is found through the shipflow package (plugins/shipflow) rather than this file.
TEST_TEMPLATES = Path(shipflow.__file__).resolve().parents[2] / "tests" / "aws" / "templates"

DEFAULTS = {
    "retries": 1,
    "retry_delay": timedelta(seconds=1),
    "aws_conn_id": "aws_sandbox",
}


with DAG(
    dag_id="aws_codebuild_build",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["test"],
    default_args=DEFAULTS,
    render_template_as_native_obj=True,
):
    CodeBuildStartBuildOperator(
        task_id="build",
        project_name="{{ dag_run.conf['project'] }}",
        source_version="{{ dag_run.conf.get('commit', 'main') }}",
        waiter_delay=1,
        waiter_max_attempts=120,
    )

with DAG(
    dag_id="aws_codebuild_build_deferrable",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["test"],
    default_args=DEFAULTS,
):
    CodeBuildStartBuildOperator(
        task_id="build",
        project_name="{{ dag_run.conf['project'] }}",
        waiter_delay=1,
        waiter_max_attempts=120,
        deferrable=True,
    )

with DAG(
    dag_id="aws_codedeploy_deploy",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["test"],
    default_args=DEFAULTS,
):
    CodeDeployCreateDeploymentOperator(
        task_id="deploy",
        application_name="{{ dag_run.conf['application'] }}",
        deployment_group_name="{{ dag_run.conf['group'] }}",
        s3_bucket="{{ dag_run.conf['bucket'] }}",
        s3_key="{{ dag_run.conf['key'] }}",
        waiter_delay=1,
        waiter_max_attempts=120,
    )

with DAG(
    dag_id="aws_cloudformation_release",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["test"],
    default_args=DEFAULTS,
):
    plan = CloudFormationCreateChangeSetOperator(
        task_id="plan_stack",
        stack_name="{{ dag_run.conf['stack'] }}",
        template_file="release-stack-v2.yaml",
        templates_dir=TEST_TEMPLATES,
        parameters={"ReleaseVersion": "{{ dag_run.conf['version'] }}"},
        capabilities=["CAPABILITY_IAM"],
        waiter_delay=1,
    )
    apply = CloudFormationExecuteChangeSetOperator(
        task_id="apply_stack",
        change_set=plan.output,
        waiter_delay=1,
        waiter_max_attempts=120,
    )
    plan >> apply
