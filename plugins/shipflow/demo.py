"""``make demo``: Shipflow's main job end to end, on embedded defaults, unattended.

Starts the AWS sandbox (seeded from the example specs) and a local Airflow 3 (SQLite,
LocalExecutor; api-server, scheduler, dag-processor, triggerer) whose DAGs are ``dags/``, then acts as
CI and as an approver through Airflow's REST API:

1. releases ``inventory-worker`` 1.1.0: promoted through staging and production;
2. releases ``storefront-web`` 2.4.0: a production approval, answered by ``approver1``;
3. releases ``inventory-worker`` 1.2.0, whose revision turns unhealthy during the staging bake: the
   release rolls back to the last good revision and ends failed with the reason.

It prints each release's stages with durations and outcome, and where to look. The stack runs only
for the demo (``make up``, keeping it running, comes with the runtime issue).
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from shipflow.sandbox import DEFAULT_HOST

ROOT = Path(__file__).resolve().parents[2]
STAGE_ORDER = (
    "check_deployment_window",
    "check_alarms",
    "check_stack_stable",
    "check_artifact_present",
    "check_release_inputs",
    "plan_stack",
    "approve_stack_change",
    "apply_stack",
    "approve_release",
    "deploy",
    "watch_bake",
    "check_service_metrics",
    "decide_outcome",
    "rollback_deployment",
    "rollback_stack",
    "verify_rollback",
    "manual_fallback",
    "fail_release",
)


def _say(text: str = "") -> None:
    print(text, flush=True)


def _seconds(ti: dict[str, Any]) -> str:
    duration = ti.get("duration")
    return f"{duration:5.1f}s" if isinstance(duration, (int, float)) else "    - "


def report(client: Any, dag_id: str, run_id: str) -> str:
    """The run's stages per environment with state and duration, and the outcome."""
    run = client.get_dag_run(dag_id, run_id)
    tis = {ti["task_id"]: ti for ti in client.task_instances(dag_id, run_id)}
    lines = [f"  {dag_id} run {run_id}: {run['state'].upper()}"]
    for task_id in ("check_release_request", "build"):
        if task_id in tis:
            lines.append(f"    {task_id:<32} {tis[task_id]['state'] or '-':<16} {_seconds(tis[task_id])}")
    envs = sorted({t.split(".")[0] for t in tis if "." in t}, key=lambda e: min(
        (tis[t].get("start_date") or "9") for t in tis if t.startswith(f"{e}.")))
    for env in envs:
        lines.append(f"    [{env}]")
        for stage in STAGE_ORDER:
            ti = tis.get(f"{env}.{stage}")
            if ti and ti["state"] not in (None, "skipped", "removed"):
                lines.append(f"      {stage:<30} {ti['state']:<16} {_seconds(ti)}")
        outcome = _outcome(client, dag_id, run_id, env)
        if outcome and not outcome.get("promoted"):
            lines.append(f"      -> not promoted: {outcome.get('reason')}; rolled back: {outcome.get('rolled_back')}")
        elif outcome:
            lines.append("      -> promoted")
    return "\n".join(lines)


def _outcome(client: Any, dag_id: str, run_id: str, env: str) -> dict[str, Any] | None:
    try:
        return client.xcom(dag_id, run_id, f"{env}.decide_outcome", key="outcome")
    except Exception:  # not decided (the environment did not run)
        return None


def run_demo() -> int:
    from shipflow.runtime.local import LocalAirflow, free_port
    from shipflow.sandbox.client import SANDBOX_CREDENTIALS, SandboxClient
    from shipflow.sandbox.seed import bundle, bundle_key, seed
    from shipflow.sandbox.server import make_server

    started = time.monotonic()
    _say("Shipflow demo: three releases of the example services, end to end")
    _say("(AWS is the local sandbox; Airflow runs locally on SQLite with the LocalExecutor.)\n")
    server = make_server(DEFAULT_HOST, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sandbox = SandboxClient(f"http://{DEFAULT_HOST}:{server.server_address[1]}")
    sandbox.wait_ready()
    sandbox.set_lifecycle("time", service="codedeploy", seconds=0.5)
    sandbox.set_lifecycle("time", service="codebuild", seconds=0.2)
    seed(sandbox)
    _say(f"[1/4] sandbox at {sandbox.endpoint}, seeded from include/services/ ({time.monotonic() - started:.0f}s)")

    connection = json.dumps(
        {
            "conn_type": "aws",
            "login": SANDBOX_CREDENTIALS["aws_access_key_id"],
            "password": SANDBOX_CREDENTIALS["aws_secret_access_key"],
            "extra": {"endpoint_url": sandbox.endpoint, "region_name": sandbox.region},
        }
    )
    home = Path(tempfile.mkdtemp(prefix="shipflow-demo-"))
    airflow = LocalAirflow(
        home,
        ROOT / "dags",
        free_port(),
        extra_env={"AIRFLOW_CONN_AWS_DEFAULT": connection, "SHIPFLOW_POLL_SECONDS": "1"},
    )
    try:
        seconds = airflow.start(timeout=180)
        _say(f"[2/4] Airflow up at {airflow.base_url} in {seconds:.0f}s (users: admin, approver1, approver2, ci)")
        ci, approver = airflow.client("ci"), airflow.client("approver1")
        s3 = sandbox.boto3("s3")
        for service, version in (("inventory-worker", "1.1.0"), ("storefront-web", "2.4.0"),
                                 ("inventory-worker", "1.2.0")):
            s3.put_object(Bucket="shipflow-artifacts", Key=bundle_key(service, version), Body=bundle(service, version))

        def release(service: str, version: str) -> tuple[str, str]:
            dag_id = f"release__{service}"
            ci.wait_for_dag(dag_id, timeout=120)
            run_id = f"demo-{service}-{version}"
            ci.trigger_dag(dag_id, conf={"version": version, "commit": "4f2a9c1", "change_reference": "CHG-42"},
                           run_id=run_id)
            return dag_id, run_id

        _say("\n[3/4] releases, triggered through the REST API as user ci")
        runs = []
        dag_id, run_id = release("inventory-worker", "1.1.0")
        ci.wait_for_dag_run(dag_id, run_id, timeout=300)
        runs.append((dag_id, run_id))
        _say(report(ci, dag_id, run_id))

        dag_id, run_id = release("storefront-web", "2.4.0")
        ci.wait_for_hitl(dag_id, run_id, "production.approve_release", timeout=300)
        _say("  storefront-web 2.4.0 waits for its production approval; approver1 approves through the REST API")
        approver.answer_hitl(dag_id, run_id, "production.approve_release", ["Approve"])
        ci.wait_for_dag_run(dag_id, run_id, timeout=300)
        runs.append((dag_id, run_id))
        _say(report(ci, dag_id, run_id))

        dag_id, run_id = release("inventory-worker", "1.2.0")
        ci.wait_for_task_state(dag_id, run_id, "staging.watch_bake", {"running", "deferred"}, timeout=300)
        sandbox.add_fault("unhealthy", "codedeploy", target=bundle_key("inventory-worker", "1.2.0"), count=None)
        _say("  inventory-worker 1.2.0 is deployed to staging; its revision now turns unhealthy (injected fault)")
        ci.wait_for_dag_run(dag_id, run_id, timeout=300)
        runs.append((dag_id, run_id))
        _say(report(ci, dag_id, run_id))

        states = [ci.get_dag_run(d, r)["state"] for d, r in runs]
        _say(f"\n[4/4] outcomes: {', '.join(f'{r}={s}' for (_, r), s in zip(runs, states, strict=True))}")
        _say(f"  in the UI (while it runs): {airflow.base_url}/dags/release__inventory-worker — log in as admin/admin")
        _say(f"  Airflow home and logs: {home}")
        ok = states == ["success", "success", "failed"]
        _say(f"Demo {'OK' if ok else 'FAILED'}: one release promoted to production, one approved, one rolled back "
             f"({time.monotonic() - started:.0f}s).")
        return 0 if ok else 1
    finally:
        airflow.stop()
        server.shutdown()
