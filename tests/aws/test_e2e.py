"""The AWS actions in real Airflow processes: deferral through the triggerer, and resumption after a
task process is killed mid-wait (SIGKILL), retried by Airflow, finding what the first try started.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from tests.aws import cloudformation_helpers, codedeploy_helpers
from tests.aws.helpers import create_project

pytestmark = pytest.mark.slow


def kill_task_process(client, dag_id: str, run_id: str, task_id: str, timeout: float = 60) -> int:
    """SIGKILL the process running the task's current try (title ``airflow worker -- <ti id>``)."""
    ti = client.wait_for_task_state(dag_id, run_id, task_id, {"running"}, timeout=timeout)
    title = f"airflow worker -- {ti['id']}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if title in " ".join(proc.info["cmdline"] or []):
                os.kill(proc.info["pid"], signal.SIGKILL)
                return proc.info["pid"]
        time.sleep(0.1)
    raise AssertionError(f"no process titled {title!r}")


def wait_until(predicate, timeout: float = 30, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


def test_killed_build_task_is_retried_and_adopts_its_build(airflow_stack, sandbox):
    project = create_project(sandbox, "e2e-resume-build")
    sandbox.set_lifecycle("time", service="codebuild", seconds=0.7)  # ~7 s build: time to kill mid-wait
    codebuild = sandbox.boto3("codebuild")
    ci = airflow_stack.client("ci")
    dag_id, run_id = "aws_codebuild_build", f"kill-{time.time_ns()}"
    ci.wait_for_dag(dag_id)
    ci.trigger_dag(dag_id, conf={"project": project, "commit": "4f2a9c1"}, run_id=run_id)

    wait_until(lambda: codebuild.list_builds_for_project(projectName=project)["ids"])
    kill_task_process(ci, dag_id, run_id, "build")

    run = ci.wait_for_dag_run(dag_id, run_id, timeout=120)
    assert run["state"] == "success"
    tries = ci.task_instance_tries(dag_id, run_id, "build")
    assert [t["state"] for t in tries][-1] == "success" and len(tries) == 2
    [build_id] = codebuild.list_builds_for_project(projectName=project)["ids"]  # exactly one build
    result = ci.xcom(dag_id, run_id, "build")
    assert result["build_id"] == build_id and result["adopted"] is True
    assert codebuild.batch_get_builds(ids=[build_id])["builds"][0]["buildStatus"] == "SUCCEEDED"


def test_deferred_build_waits_in_the_triggerer(airflow_stack, sandbox):
    project = create_project(sandbox, "e2e-deferred-build")
    sandbox.set_lifecycle("time", service="codebuild", seconds=0.3)
    ci = airflow_stack.client("ci")
    dag_id, run_id = "aws_codebuild_build_deferrable", f"defer-{time.time_ns()}"
    ci.wait_for_dag(dag_id)
    ci.trigger_dag(dag_id, conf={"project": project}, run_id=run_id)
    ci.wait_for_task_state(dag_id, run_id, "build", {"deferred"}, timeout=60)
    run = ci.wait_for_dag_run(dag_id, run_id, timeout=120)
    assert run["state"] == "success"
    result = ci.xcom(dag_id, run_id, "build")
    assert result["status"] == "SUCCEEDED"
    # The worker made the start call; the triggerer's polling is not in the worker's record.
    assert [c["operation"] for c in result["aws_calls"]][0] == "StartBuild"


def test_killed_deploy_task_is_retried_and_adopts_its_deployment(airflow_stack, sandbox):
    app, group = "e2e-resume", "e2e-resume-staging"
    codedeploy_helpers.upload_bundles(sandbox, "2.0.0", app=app)
    codedeploy_helpers.create_group(sandbox, app=app, group=group, config="CodeDeployDefault.OneAtATime")
    sandbox.set_lifecycle("time", service="codedeploy", seconds=1.5)  # 4 instances one at a time: ~9 s
    codedeploy = sandbox.boto3("codedeploy")
    ci = airflow_stack.client("ci")
    dag_id, run_id = "aws_codedeploy_deploy", f"kill-{time.time_ns()}"
    ci.wait_for_dag(dag_id)
    conf = {
        "application": app,
        "group": group,
        "bucket": codedeploy_helpers.BUCKET,
        "key": codedeploy_helpers.bundle_key("2.0.0", app),
    }
    ci.trigger_dag(dag_id, conf=conf, run_id=run_id)

    listed = {"applicationName": app, "deploymentGroupName": group}
    wait_until(lambda: codedeploy.list_deployments(**listed)["deployments"])
    kill_task_process(ci, dag_id, run_id, "deploy")

    run = ci.wait_for_dag_run(dag_id, run_id, timeout=120)
    assert run["state"] == "success"
    assert len(ci.task_instance_tries(dag_id, run_id, "deploy")) == 2
    [deployment_id] = codedeploy.list_deployments(**listed)["deployments"]  # exactly one deployment
    result = ci.xcom(dag_id, run_id, "deploy")
    assert result["deployment_id"] == deployment_id and result["adopted"] is True
    assert result["status"] == "Succeeded"


def test_killed_stack_update_task_is_retried_and_adopts_its_execution(airflow_stack, sandbox):
    stack = "e2e-resume-stack"
    cloudformation_helpers.create_stack(sandbox, stack)
    sandbox.set_lifecycle("time", service="cloudformation", seconds=2)  # the update takes ~6 s
    ci = airflow_stack.client("ci")
    dag_id, run_id = "aws_cloudformation_release", f"kill-{time.time_ns()}"
    ci.wait_for_dag(dag_id)
    ci.trigger_dag(dag_id, conf={"stack": stack, "version": "2.0.0"}, run_id=run_id)

    ci.wait_for_task_state(dag_id, run_id, "apply_stack", {"running"}, timeout=90)
    wait_until(lambda: cloudformation_helpers.stack_status(sandbox, stack) == "UPDATE_IN_PROGRESS")
    kill_task_process(ci, dag_id, run_id, "apply_stack")

    run = ci.wait_for_dag_run(dag_id, run_id, timeout=120)
    assert run["state"] == "success"
    assert len(ci.task_instance_tries(dag_id, run_id, "apply_stack")) == 2
    updates = [op for op in cloudformation_helpers.operations_started(sandbox, stack) if op[0] == "UPDATE_IN_PROGRESS"]
    assert len(updates) == 1  # exactly one execution of the change set
    result = ci.xcom(dag_id, run_id, "apply_stack")
    assert result["adopted"] is True and result["stack_status"] == "UPDATE_COMPLETE"
