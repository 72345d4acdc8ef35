"""Benchmark: the Celery stack (PostgreSQL, Redis, 2 workers) against the default LocalExecutor stack.

For each executor, alternately ``--repeat`` times, on a fresh stack each time (a new home, and for
Celery a new PostgreSQL database and Redis DB from ``shipflow.runtime.backends``):

- **start-up**: ``LocalAirflow.start()``: ``db migrate``, then every component healthy (Celery
  workers: answering a ping);
- **release**: the storefront-web release of tests/runtime/test_distributed.py, through the REST
  API against a sandbox subprocess (CodeDeploy steps 0.5 s, CodeBuild 0.2 s, polling every
  second): trigger -> production approval waiting, approval -> run end, and the run's own
  ``queued_at`` -> ``end_date``;
- **stop**: ``LocalAirflow.stop()``.

    .venv/bin/python bench/bench_distributed.py [--repeat 1]

Prints a Markdown table. Other processes on the machine slow both columns alike only if they run
throughout: the 1-minute load average at each start is printed beside each row.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT))

from shipflow.runtime.backends import scratch_postgres_database, scratch_redis_db  # noqa: E402
from shipflow.runtime.local import LocalAirflow, free_port  # noqa: E402
from shipflow.sandbox.client import SandboxClient  # noqa: E402
from shipflow.sandbox.seed import bundle, bundle_key, seed  # noqa: E402
from tests.conftest import AIRFLOW_DAGS, sandbox_connections  # noqa: E402

SERVICE = "storefront-web"
DAG_ID = f"release__{SERVICE}"
LABELS = {
    "LocalExecutor": "LocalExecutor, SQLite",
    "CeleryExecutor": "CeleryExecutor (2 workers), PostgreSQL, Redis",
}


def start_sandbox(tmp: Path) -> tuple[subprocess.Popen[bytes], SandboxClient]:
    ready = tmp / "sandbox-endpoint"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    process = subprocess.Popen(
        [sys.executable, "-m", "shipflow", "sandbox", "up", "--port", "0", "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not ready.exists() or not ready.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit("the sandbox did not start")
        time.sleep(0.05)
    client = SandboxClient(ready.read_text())
    client.wait_ready()
    return process, client


def seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def one_release(airflow: LocalAirflow, sandbox: SandboxClient, version: str) -> dict[str, float]:
    sandbox.reset()
    sandbox.set_lifecycle("time", service="codedeploy", seconds=0.5)
    sandbox.set_lifecycle("time", service="codebuild", seconds=0.2)
    seed(sandbox)
    sandbox.boto3("s3").put_object(
        Bucket="shipflow-artifacts", Key=bundle_key(SERVICE, version), Body=bundle(SERVICE, version)
    )
    ci, approver = airflow.client("ci"), airflow.client("approver1")
    ci.wait_for_dag(DAG_ID, timeout=180)
    run_id = f"bench-{version}-{time.time_ns()}"
    triggered = time.monotonic()
    ci.trigger_dag(DAG_ID, conf={"version": version, "commit": "4f2a9c1", "change_reference": "CHG-1"}, run_id=run_id)
    ci.wait_for_hitl(DAG_ID, run_id, "production.approve_release", timeout=600)
    waiting = time.monotonic()
    approver.answer_hitl(DAG_ID, run_id, "production.approve_release", ["Approve"])  # waits HITL_SETTLE_SECONDS
    run = ci.wait_for_dag_run(DAG_ID, run_id, timeout=600)
    ended = time.monotonic()
    if run["state"] != "success":
        raise SystemExit(f"{airflow.executor}: the release ended {run['state']}")
    return {
        "to_approval": waiting - triggered,
        "after_approval": ended - waiting,
        "run": seconds(run["queued_at"], run["end_date"]),
    }


def measure(executor: str, sandbox: SandboxClient, tmp: Path, number: int) -> dict[str, float]:
    home = tmp / f"{executor}-{number}"
    dags = tmp / f"{executor}-{number}-dags"
    shutil.copytree(AIRFLOW_DAGS, dags, ignore=shutil.ignore_patterns("__pycache__"))
    load = os.getloadavg()[0]
    with ExitStack() as cleanup:
        options: dict = {}
        if executor == "CeleryExecutor":
            options = {
                "executor": executor,
                "database_url": cleanup.enter_context(scratch_postgres_database()),
                "broker_url": cleanup.enter_context(scratch_redis_db()),
                "celery_workers": 2,
            }
        airflow = LocalAirflow(home, dags, free_port(), extra_env=sandbox_connections(sandbox), **options)
        started = airflow.start(timeout=300)
        try:
            result = one_release(airflow, sandbox, f"3.{number}.0")
        finally:
            stopping = time.monotonic()
            airflow.stop()
            stopped = time.monotonic() - stopping
    return {"load": load, "start": started, **result, "stop": stopped}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    rows: dict[str, list[dict[str, float]]] = {"LocalExecutor": [], "CeleryExecutor": []}
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp_name:
        tmp = Path(tmp_name)
        sandbox_process, sandbox = start_sandbox(tmp)
        try:
            for number in range(args.repeat):
                for executor in rows:
                    rows[executor].append(measure(executor, sandbox, tmp, number))
                    print(f"{executor} #{number + 1}: {rows[executor][-1]}", file=sys.stderr, flush=True)
        finally:
            sandbox_process.terminate()
            sandbox_process.wait(10)
    print(f"\n{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"median of {args.repeat} run(s) each\n")  # fmt: skip
    print("| stack | load avg (1 min) | start-up s | trigger -> approval waiting s | approval -> end s | "
          "run (queued -> end) s | stop s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for executor, results in rows.items():
        cells = [statistics.median(r[key] for r in results) for key in
                 ("load", "start", "to_approval", "after_approval", "run", "stop")]  # fmt: skip
        label = LABELS[executor]
        print(f"| {label} | " + " | ".join(f"{cell:.1f}" for cell in cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
