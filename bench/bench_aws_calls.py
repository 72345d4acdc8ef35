"""How many AWS calls one release's build, change set and deployment make while waiting.

Runs Shipflow's operators against an in-process sandbox at *manual* lifecycle speed (one status step
per describe), so the counts are deterministic: they show how many describes each wait needs per
status step, and where the calls are made — all in the worker (``deferrable=False``), or split
between the worker and the triggerer (``deferrable=True``). The sandbox counts every call it
receives (``GET /_shipflow/calls``); the worker's share is the operator's own record (``aws_calls``).

    .venv/bin/python bench/bench_aws_calls.py
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins"))
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="shipflow-bench-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from airflow.sdk.exceptions import TaskDeferred  # noqa: E402

from shipflow.aws.operators.cloudformation import (  # noqa: E402
    CloudFormationCreateChangeSetOperator,
    CloudFormationExecuteChangeSetOperator,
)
from shipflow.aws.operators.codebuild import CodeBuildStartBuildOperator  # noqa: E402
from shipflow.aws.operators.codedeploy import CodeDeployCreateDeploymentOperator  # noqa: E402
from shipflow.sandbox.client import SandboxClient  # noqa: E402
from shipflow.sandbox.seed import bundle, bundle_key, seed  # noqa: E402
from shipflow.sandbox.server import make_server  # noqa: E402

SERVICE = "payments-api"


@dataclass
class TaskInstance:
    task_id: str
    dag_id: str = "bench_calls"
    run_id: str = "bench"
    map_index: int = -1
    try_number: int = 1
    xcom: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


async def _first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return event.payload
    raise RuntimeError("trigger ended without an event")


def run(op: Any, deferrable: bool, sandbox: SandboxClient) -> dict[str, int]:
    context = {"ti": TaskInstance(op.task_id), "run_id": "bench"}
    before = sum(sandbox.calls().values())
    if deferrable:
        try:
            result = op.execute(context)
        except TaskDeferred as deferred:
            event = asyncio.run(_first_event(deferred.trigger))
            result = getattr(op, deferred.method_name)(context, event=event, **(deferred.kwargs or {}))
    else:
        result = op.execute(context)
    total = sum(sandbox.calls().values()) - before
    worker = len(result.get("aws_calls", []))
    return {"worker": worker, "triggerer": total - worker, "total": total, "result": result}


def main() -> None:
    server = make_server("127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sandbox = SandboxClient(f"http://127.0.0.1:{server.server_address[1]}")
    sandbox.wait_ready()
    os.environ["AIRFLOW_CONN_AWS_SANDBOX"] = json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": sandbox.endpoint, "region_name": "us-east-1"},
        }
    )
    seed(sandbox)
    sandbox.boto3("cloudformation").describe_stacks()  # let the seeded stacks finish at immediate speed first
    sandbox.set_lifecycle("manual", times=1)
    s3 = sandbox.boto3("s3")
    rows = []
    for deferrable in (False, True):
        suffix = "deferred" if deferrable else "sync"
        common = {"aws_conn_id": "aws_sandbox", "waiter_delay": 0, "deferrable": deferrable}
        build = CodeBuildStartBuildOperator(
            task_id=f"build_{suffix}", project_name=f"{SERVICE}-build", source_version="4f2a9c1", **common
        )
        plan = CloudFormationCreateChangeSetOperator(
            task_id=f"plan_{suffix}",
            stack_name=f"{SERVICE}-staging",
            template_file="service-stack.yaml",
            parameters={"ReleaseVersion": f"9.0.{int(deferrable)}"},
            **common,
        )
        counts = {"build (CodeBuild, 10 status steps)": run(build, deferrable, sandbox)}
        planned = run(plan, deferrable, sandbox)
        counts["change set (create + wait)"] = planned
        apply = CloudFormationExecuteChangeSetOperator(
            task_id=f"apply_{suffix}", change_set=planned["result"], **common
        )
        counts["change set (execute + wait)"] = run(apply, deferrable, sandbox)
        version = f"9.0.{int(deferrable)}"
        s3.put_object(Bucket="shipflow-artifacts", Key=bundle_key(SERVICE, version), Body=bundle(SERVICE, version))
        deploy = CodeDeployCreateDeploymentOperator(
            task_id=f"deploy_{suffix}",
            application_name=SERVICE,
            deployment_group_name=f"{SERVICE}-staging",
            s3_bucket="shipflow-artifacts",
            s3_key=bundle_key(SERVICE, version),
            **common,
        )
        counts["deployment (CodeDeploy Lambda canary, 2 steps)"] = run(deploy, deferrable, sandbox)
        for name, c in counts.items():
            mode = "deferrable" if deferrable else "not deferrable"
            rows.append((name, mode, c["worker"], c["triggerer"], c["total"]))
    server.shutdown()
    print("Sandbox at manual speed (one status step per describe), waiter_delay=0.\n")
    print("| action | mode | calls in worker | calls in triggerer | total |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| {} | {} | {} | {} | {} |".format(*row))
    sync = sum(r[4] for r in rows if r[1] == "not deferrable")
    deferred_worker = sum(r[2] for r in rows if r[1] == "deferrable")
    deferred_total = sum(r[4] for r in rows if r[1] == "deferrable")
    print(
        f"\nOne build + change set + deployment: {sync} calls not deferrable (all in the worker); "
        f"{deferred_total} deferrable ({deferred_worker} in the worker, "
        f"{deferred_total - deferred_worker} in the triggerer)."
    )


if __name__ == "__main__":
    main()
