"""Benchmark: what Airflow orchestration costs a release, and how 50 releases at once share 2 cores.

Everything runs on one real local Airflow (``LocalAirflow``: SQLite, LocalExecutor, parallelism 4)
against a sandbox subprocess, driven through the REST API as CI would. ``SHIPFLOW_POLL_SECONDS=1``
for every DAG (waiting tasks look again every second, as in the tests).

1. **Overhead.** A full release of ``inventory-worker`` (staging then production, no stack), with
   every sandbox lifecycle *immediate* and the bake timers cut to ``OVERHEAD_BAKE`` (a timer is not
   orchestration), against its *no-op twin*: a DAG built from the real one (same task ids,
   dependencies and trigger rules) whose tasks do nothing — EmptyOperators stay EmptyOperators,
   the branch tasks pick the branch a clean release takes, ``fail_release`` skips itself as the real
   one does on promotion, every other task is a trivial PythonOperator. Both run alternately
   ``--repeat`` times; the benchmark checks that both end with the same state for every task. Per
   run: wall time (trigger -> run end, Airflow's ``queued_at`` -> ``end_date``), the sum of task
   durations, idle time (wall time when no task of the run was running) and the median hand-off
   (a task's start minus the end of its last upstream).
2. **Fleet.** ``--releases`` services copied from ``inventory-worker`` (``bench-svc-00`` ...), one
   release each, all triggered at once (a release DAG has ``max_active_runs=1``, so distinct
   services). Sandbox lifecycles are time based (``FLEET_LIFECYCLE``), bake times as in the spec,
   so the waits are real. Measured: runs that succeeded, wall time (first trigger -> last run end),
   peak task instances ``running`` (each holds one of the 4 LocalExecutor slots) and ``deferred``
   (waiting in the triggerer, no slot), and peak RSS of every Airflow process. Then the same DAGs
   in *poke mode*: the DAG file is rewritten to set ``deferrable = False`` (and ``mode = "poke"`` on
   sensors) on every task that has the attribute; Shipflow's operators and the S3 sensor read
   ``self.deferrable`` in ``execute``, so the waits then hold a worker slot. A phase that does not
   finish within its timeout is stopped and reported with how many releases finished.

    .venv/bin/python bench/bench_orchestration.py            # full: --repeat 5, --releases 50
    .venv/bin/python bench/bench_orchestration.py --quick    # smoke check: --repeat 1, --releases 5

Prints Markdown tables for docs/benchmarks.md. Every process and temp dir it starts is removed at
the end (``--keep`` keeps the temp dir with the Airflow logs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
if str(ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(ROOT / "plugins"))

SERVICE = "inventory-worker"
TWIN_PREFIX = "noop_twin__"
FLEET_PREFIX = "bench-svc-"
# The overhead runs measure orchestration: the bake is a timer the release sets itself, so it is cut
# to a couple of seconds (still long enough for watch_bake to defer once, as it does for real).
OVERHEAD_BAKE = "2s"
# Fleet runs: time-based progress so deployments and builds take real seconds (codedeploy: ~8 s per
# in-place deployment at 2 s per step; codebuild: 10 steps).
FLEET_LIFECYCLE = {"codedeploy": 2.0, "codebuild": 1.0}
POKE_TAG = "bench-poke-mode"
SAMPLE_SECONDS = 1.0
TERMINAL = ("success", "failed")
# --sqlite-busy-timeout: Airflow reads these connect args by import path (see main); sqlite3's own
# default is to give up on a locked database after 5 s.
SQLITE_CONNECT_ARGS = {"timeout": float(os.environ.get("SHIPFLOW_BENCH_SQLITE_TIMEOUT") or 5)}


def say(text: str = "") -> None:
    print(text, flush=True)


# -- DAGs the bench writes (these two functions run inside Airflow's parser and workers) -----------
def _noop() -> None:
    """A task that does nothing: what Airflow costs per task without any Shipflow work."""


def _skip() -> None:
    from airflow.providers.common.compat.sdk import AirflowSkipException

    raise AirflowSkipException("no-op twin: skips like fail_release does on a promoted release")


def _choose(branch: str) -> str:
    return branch


def noop_twin(real: Any) -> Any:
    """A DAG of the same shape as ``real`` (task ids, dependencies, trigger rules), doing nothing.

    Tasks that decide the path keep the decision a clean release makes, so both DAGs run and skip
    the same tasks: ``decide_outcome`` -> ``promote``, ``decide_stack_approval`` -> ``apply_stack``,
    ``fail_release`` skips itself. EmptyOperators stay EmptyOperators (the scheduler finishes them
    without a worker in both DAGs).
    """
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator
    from airflow.sdk import DAG

    from shipflow.release.builder import StackApprovalBranchOperator
    from shipflow.release.params import release_params
    from shipflow.release.tasks import FailReleaseOperator, ReleaseOutcomeOperator, ReleaseRequestCheckOperator

    request = next(t for t in real.tasks if isinstance(t, ReleaseRequestCheckOperator))
    twin = DAG(
        dag_id=TWIN_PREFIX + real.dag_id.split("__", 1)[1],
        schedule=None,
        start_date=real.start_date,
        catchup=False,
        max_active_runs=real.max_active_runs,
        tags=["bench", "noop-twin"],
        params=release_params(request.environments),  # the same trigger-time validation as the real DAG
        default_args={"owner": "bench", "retries": 0},
    )
    made = {}
    with twin:
        for task in real.tasks:
            common = {"task_id": task.task_id, "trigger_rule": task.trigger_rule}
            env = task.task_id.split(".")[0]
            if isinstance(task, EmptyOperator):
                made[task.task_id] = EmptyOperator(**common)
            elif isinstance(task, ReleaseOutcomeOperator):
                made[task.task_id] = BranchPythonOperator(python_callable=_choose, op_args=[f"{env}.promote"], **common)
            elif isinstance(task, StackApprovalBranchOperator):
                made[task.task_id] = BranchPythonOperator(
                    python_callable=_choose, op_args=[f"{env}.apply_stack"], **common
                )
            elif isinstance(task, FailReleaseOperator):
                made[task.task_id] = PythonOperator(python_callable=_skip, **common)
            else:
                made[task.task_id] = PythonOperator(python_callable=_noop, **common)
    for task in real.tasks:
        for downstream in task.downstream_task_ids:
            made[task.task_id] >> made[downstream]
    return twin


def poke_mode(dag: Any) -> list[str]:
    """Switch every deferrable task of ``dag`` to wait in its worker slot; returns what changed.

    Shipflow's operators and sensors and the provider's S3KeySensor branch on ``self.deferrable``
    inside ``execute`` (checked in their code), so setting it on the parsed task is enough; a
    sensor's ``mode`` becomes ``poke`` (a ``reschedule`` sensor would give its slot back too).
    """
    from airflow.sdk import BaseSensorOperator

    changed = []
    for task in dag.tasks:
        if getattr(task, "deferrable", False):
            task.deferrable = False
            changed.append(task.task_id)
        if isinstance(task, BaseSensorOperator) and task.mode != "poke":
            task.mode = "poke"
            changed.append(task.task_id)
    dag.tags = {*dag.tags, POKE_TAG}
    return changed


OVERHEAD_DAG_FILE = '''\
"""Airflow DAG file written by bench/bench_orchestration.py: {service}'s release DAG and its no-op twin."""
import sys
from pathlib import Path

sys.path.insert(0, {bench_dir!r})
from bench_orchestration import noop_twin  # noqa: E402

from shipflow.release.builder import register_release_dags  # noqa: E402

for _dag_id in register_release_dags(globals(), services_dir=Path({services!r})):
    _twin = noop_twin(globals()[_dag_id])
    globals()[_twin.dag_id] = _twin
'''

FLEET_DAG_FILE = '''\
"""Airflow DAG file written by bench/bench_orchestration.py: the fleet's release DAGs ({mode} mode)."""
import sys
from pathlib import Path

sys.path.insert(0, {bench_dir!r})
from bench_orchestration import poke_mode  # noqa: E402

from shipflow.release.builder import register_release_dags  # noqa: E402

for _dag_id in register_release_dags(globals(), services_dir=Path({services!r})):
    if {poke!r}:
        poke_mode(globals()[_dag_id])
'''


def write_whole(path: Path, text: str) -> None:
    """Write aside, then rename: the dag-processor never parses half a file."""
    staging = path.parent.parent / f".{path.name}.tmp"
    staging.write_text(text)
    staging.replace(path)


# -- processes -------------------------------------------------------------------------------------
@contextmanager
def sandbox_process(workdir: Path) -> Iterator[Any]:
    """``shipflow sandbox up`` in a child process (its own cores' worth of GIL, as in the tests)."""
    from shipflow.sandbox.client import SandboxClient

    ready = workdir / "sandbox.endpoint"
    log = open(workdir / "sandbox.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "shipflow", "sandbox", "up", "--port", "0", "--ready-file", str(ready)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() or not ready.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sandbox did not start; see {workdir / 'sandbox.log'}")
            time.sleep(0.05)
        client = SandboxClient(ready.read_text())
        client.wait_ready()
        yield client
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


# -- measuring -------------------------------------------------------------------------------------
def ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def upstream_map(client: Any, dag_id: str) -> dict[str, list[str]]:
    tasks = client.get(f"/api/v2/dags/{dag_id}/tasks")["tasks"]
    upstream: dict[str, list[str]] = {t["task_id"]: [] for t in tasks}
    for task in tasks:
        for downstream in task["downstream_task_ids"]:
            upstream[downstream].append(task["task_id"])
    return upstream


def run_metrics(client: Any, dag_id: str, run_id: str, upstream: dict[str, list[str]]) -> dict[str, Any]:
    """Wall time, task time, idle time and hand-offs of one finished run (server timestamps)."""
    run = client.get_dag_run(dag_id, run_id)
    tis = {ti["task_id"]: ti for ti in client.task_instances(dag_id, run_id)}
    queued, start, end = ts(run["queued_at"]), ts(run["start_date"]), ts(run["end_date"])
    ran = {
        task_id: (ts(ti["start_date"]), ts(ti["end_date"]))
        for task_id, ti in tis.items()
        if ti["state"] in ("success", "failed") and ti["start_date"] and ti["end_date"]
    }
    handoffs = []
    for task_id, (task_start, _) in ran.items():
        ends = [ts(tis[u]["end_date"]) for u in upstream.get(task_id, []) if u in tis and tis[u]["end_date"]]
        handoffs.append(task_start - (max(ends) if ends else start))
    busy = union_seconds(list(ran.values()))
    return {
        "state": run["state"],
        "wall": end - queued,
        "task_sum": sum(stop - begin for begin, stop in ran.values()),
        "idle": (end - queued) - busy,
        "handoff": statistics.median(handoffs) if handoffs else 0.0,
        "tasks_run": len(ran),
        "states": {task_id: ti["state"] for task_id, ti in tis.items()},
    }


def spread(values: list[float]) -> str:
    """Median and range, e.g. ``61.2 (58.9-64.0)``."""
    median = statistics.median(values)
    return f"{median:.1f}" if len(values) == 1 else f"{median:.1f} ({min(values):.1f}-{max(values):.1f})"


# -- part 1: overhead ------------------------------------------------------------------------------
def overhead(airflow: Any, sandbox: Any, services_dir: Path, repeat: int) -> tuple[list[str], dict[str, Any]]:
    from shipflow.sandbox.seed import upload_artifact
    from shipflow.spec.loader import load_specs

    ci = airflow.client("ci")
    real_id, twin_id = f"release__{SERVICE}", f"{TWIN_PREFIX}{SERVICE}"
    for dag_id in (real_id, twin_id):
        ci.wait_for_dag(dag_id, timeout=180)
    upstream = {dag_id: upstream_map(ci, dag_id) for dag_id in (real_id, twin_id)}
    specs, _ = load_specs(services_dir)
    sandbox.set_lifecycle("immediate")
    results: dict[str, list[dict[str, Any]]] = {real_id: [], twin_id: []}
    # Alternate real and twin so that a change of machine load hits both alike; a warm-up pair first
    # (the first run after start-up pays one-off imports and DB caches).
    for index in range(repeat + 1):
        for dag_id in (real_id, twin_id):
            version = f"1.{index + 1}.{int(dag_id == twin_id)}"
            upload_artifact(sandbox, specs[0], version)
            run_id = f"overhead-{dag_id}-{index}"
            ci.trigger_dag(dag_id, conf={"version": version, "commit": "4f2a9c1", "change_reference": "CHG-1"},
                           run_id=run_id)
            ci.wait_for_dag_run(dag_id, run_id, timeout=600)
            metrics = run_metrics(ci, dag_id, run_id, upstream[dag_id])
            label = "warm-up" if index == 0 else f"run {index}/{repeat}"
            say(f"  {dag_id} {label}: {metrics['state']}, wall {metrics['wall']:.1f} s, "
                f"tasks {metrics['task_sum']:.1f} s, idle {metrics['idle']:.1f} s")
            if index:
                results[dag_id].append(metrics)
    # A run that failed is reported, not measured: under load, Airflow can fail a deferred task whose
    # trigger fired within seconds (a stale executor event; apache/airflow #72716).
    problems = []
    for index, (real, twin) in enumerate(zip(results[real_id], results[twin_id], strict=True), start=1):
        for dag_id, run in ((real_id, real), (twin_id, twin)):
            if run["state"] != "success":
                failed = sorted(t for t, state in run["states"].items() if state == "failed")
                problems.append(f"run {index} of {dag_id} ended {run['state']} (failed tasks: {', '.join(failed)})")
        if real["state"] == twin["state"] == "success":
            diff = {t: (s, twin["states"].get(t)) for t, s in real["states"].items() if twin["states"].get(t) != s}
            if diff:
                problems.append(f"run {index}: task states differ (real, twin): {diff}")
    results = {dag_id: [r for r in runs if r["state"] == "success"] for dag_id, runs in results.items()}
    if not results[real_id] or not results[twin_id]:
        return [f"No successful run to measure: {'; '.join(problems)}"], {"problems": problems}
    rows = [
        "| DAG | successful runs | wall s | sum of task durations s | idle s (no task running) | median hand-off s "
        "| tasks run |",
        "|---|---|---|---|---|---|---|",
    ]
    for dag_id, label in ((twin_id, "no-op twin (baseline)"), (real_id, "real release")):
        runs = results[dag_id]
        rows.append(
            f"| {label} `{dag_id}` | {len(runs)} | {spread([r['wall'] for r in runs])} | "
            f"{spread([r['task_sum'] for r in runs])} | {spread([r['idle'] for r in runs])} | "
            f"{spread([r['handoff'] for r in runs])} | {runs[0]['tasks_run']} |"
        )
    med = {d: {k: statistics.median(r[k] for r in results[d]) for k in ("wall", "task_sum", "idle")}
           for d in results}
    ratios = {k: med[real_id][k] / med[twin_id][k] if med[twin_id][k] else float("nan") for k in med[real_id]}
    rows.append("")
    rows.append(
        f"Ratio real/no-op (medians): wall {ratios['wall']:.2f}, sum of task durations {ratios['task_sum']:.2f}, "
        f"idle {ratios['idle']:.2f}."
    )
    if problems:
        rows.append("")
        rows.append("Not measured (failed or mismatched runs): " + "; ".join(problems) + ".")
    return rows, {"medians": med, "ratios": ratios, "problems": problems}


# -- part 2: fleet ---------------------------------------------------------------------------------
def fleet_specs(directory: Path, releases: int) -> list[str]:
    """``releases`` copies of inventory-worker's spec, every name it holds renamed."""
    source = (ROOT / "include" / "services" / f"{SERVICE}.yaml").read_text()
    services = [f"{FLEET_PREFIX}{i:02d}" for i in range(releases)]
    for service in services:
        (directory / f"{service}.yaml").write_text(source.replace(SERVICE, service))
    return services


def count(client: Any, state: str) -> int:
    return client.get("/api/v2/dags/~/dagRuns/~/taskInstances", state=state, limit=1)["total_entries"]


def fleet_phase(
    airflow: Any, token: str, services: list[str], mode: str, version: str, environments: list[str], timeout: float
) -> dict[str, Any]:
    """Trigger one release per service at once, sample slots and memory until all end or ``timeout``."""
    from shipflow.runtime.rest import AirflowApiError, AirflowClient

    prefix = f"fleet-{mode}-"
    conf = {"version": version, "commit": "4f2a9c1", "change_reference": "CHG-1", "environments": environments}

    errors: list[str] = []

    def trigger(service: str) -> None:
        """Trigger, and trigger again after an HTTP 500 unless the run exists after all.

        SQLite takes one writer at a time: a trigger can fail with "Database error" (a locked
        database) or time out; each such answer is counted and reported.
        """
        client = AirflowClient(airflow.base_url, token=token, timeout=60)
        dag_id, run_id = f"release__{service}", f"{prefix}{service}"
        for _ in range(10):
            try:
                client.trigger_dag(dag_id, conf=conf, run_id=run_id)
                return
            except AirflowApiError as exc:
                if exc.status not in (500, None):
                    raise
                errors.append(f"{dag_id}: {exc.detail}")
            try:
                client.get_dag_run(dag_id, run_id)
                return
            except AirflowApiError as exc:
                if exc.status != 404:
                    raise
            time.sleep(1)
        raise RuntimeError(f"could not trigger {dag_id}: {errors[-1]}")

    monitor = AirflowClient(airflow.base_url, token=token, timeout=60)
    started = time.monotonic()
    # One after the other, as fast as the API answers: SQLite has one writer, so parallel POSTs only
    # queue on its lock (16 at once timed out after 60 s, and crashed the scheduler at a 5 s busy timeout).
    for service in services:
        trigger(service)
    say(f"  {mode}: {len(services)} releases triggered in {time.monotonic() - started:.1f} s "
        f"({len(errors)} HTTP 500 answers on the way)")
    peaks = {"running": 0, "deferred": 0, "queued": 0, "scheduled": 0, "rss": 0}
    samples = []
    deadline = started + timeout
    last_report = 0.0
    runs: list[dict[str, Any]] = []
    while True:
        now = {state: count(monitor, state) for state in ("running", "deferred", "queued", "scheduled")}
        now["rss"] = airflow.rss_bytes()
        samples.append(now)
        for key, value in now.items():
            peaks[key] = max(peaks[key], value)
        runs = monitor.get("/api/v2/dags/~/dagRuns", run_id_prefix_pattern=prefix, limit=100)["dag_runs"]
        done = [r for r in runs if r["state"] in TERMINAL]
        if time.monotonic() - last_report > 30:
            last_report = time.monotonic()
            say(f"    {time.monotonic() - started:5.0f} s: {len(done)}/{len(services)} finished; running "
                f"{now['running']}, deferred {now['deferred']}, queued {now['queued']}, scheduled {now['scheduled']}")
        if len(done) == len(services) or time.monotonic() > deadline:
            break
        if not airflow.is_running:
            break
        time.sleep(SAMPLE_SECONDS)
    elapsed = time.monotonic() - started
    ended = [ts(r["end_date"]) for r in runs if r["state"] in TERMINAL and r["end_date"]]
    first = min(ts(r["queued_at"]) for r in runs)
    finished = [r for r in runs if r["state"] in TERMINAL]
    result = {
        "mode": mode,
        "releases": len(services),
        "success": sum(r["state"] == "success" for r in runs),
        "failed": sum(r["state"] == "failed" for r in runs),
        "finished": len(finished),
        "timed_out": len(finished) < len(services),
        "wall": (max(ended) - first) if len(finished) == len(services) else elapsed,
        "peaks": peaks,
        "mean_running": statistics.mean(s["running"] for s in samples),
        "mean_deferred": statistics.mean(s["deferred"] for s in samples),
        "samples": len(samples),
        "trigger_errors": len(errors),
        "failed_tasks": failed_tasks(monitor, [r for r in runs if r["state"] == "failed"]),
    }
    result["crashed"] = crashed_components(airflow)
    if result["crashed"]:
        result["timed_out"] = False
        say(f"  {mode}: Airflow component exited: {result['crashed']}")
    say(f"  {mode}: {result['success']} succeeded, {result['failed']} failed, {result['finished']}/{len(services)} "
        f"finished in {result['wall']:.0f} s; peak running {peaks['running']}, deferred {peaks['deferred']}, "
        f"RSS {peaks['rss'] / 2**20:.0f} MiB")
    return result


def crashed_components(airflow: Any) -> str:
    """Components that exited, each with the last error line of its log ('' when all run)."""
    dead = []
    for component, process in airflow._processes.items():  # LocalAirflow has no per-component status
        if process.poll() is not None:
            errors = [line for line in airflow.log_tail(component, 200).splitlines() if "Error" in line]
            last = errors[-1].strip()[:160] if errors else "no error line"
            dead.append(f"{component} (exit {process.returncode}: {last})")
    return "; ".join(dead)


def failed_tasks(client: Any, runs: list[dict[str, Any]]) -> dict[str, int]:
    """Which tasks failed across ``runs``: task id -> number of runs."""
    found: dict[str, int] = {}
    for run in runs:
        for ti in client.task_instances(run["dag_id"], run["dag_run_id"]):
            if ti["state"] == "failed":
                found[ti["task_id"]] = found.get(ti["task_id"], 0) + 1
    return found


def stop_unfinished(client: Any, prefix: str) -> int:
    """Mark the runs still going as failed, so the next phase starts on an idle Airflow."""
    stopped = 0
    for run in client.get("/api/v2/dags/~/dagRuns", run_id_prefix_pattern=prefix, limit=100)["dag_runs"]:
        if run["state"] not in TERMINAL:
            client._call("PATCH", f"/api/v2/dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}",
                         json={"state": "failed"})
            stopped += 1
    return stopped


def wait_idle(client: Any, timeout: float = 120) -> None:
    """Until no task instance holds a slot or waits in the triggerer (after stopping runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(count(client, state) for state in ("running", "deferred", "queued")):
            return
        time.sleep(1)


def wait_for_tag(client: Any, dag_ids: list[str], tag: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    pending = set(dag_ids)
    while pending:
        for dag_id in sorted(pending):
            if tag in {t["name"] for t in client.get_dag(dag_id)["tags"]}:
                pending.discard(dag_id)
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} DAGs still without tag {tag} after {timeout:g} s")
        time.sleep(2)


def fleet(
    airflow: Any, sandbox: Any, directory: Path, releases: int, environments: list[str], timeouts: dict[str, float]
) -> tuple[list[str], list[dict[str, Any]]]:
    from shipflow.runtime.rest import AirflowClient
    from shipflow.sandbox.seed import seed, upload_artifact
    from shipflow.spec.loader import load_specs

    services = fleet_specs(directory, releases)
    specs, errors = load_specs(directory)
    if errors:
        raise RuntimeError(f"generated fleet specs do not validate: {errors[:3]}")
    sandbox.set_lifecycle("immediate")
    started = time.monotonic()
    seed(sandbox, specs=specs)
    for spec in specs:
        for version in ("1.1.0", "1.2.0"):
            upload_artifact(sandbox, spec, version)
    say(f"  seeded {len(specs)} services and uploaded their artifacts in {time.monotonic() - started:.0f} s")
    for service, seconds in FLEET_LIFECYCLE.items():
        sandbox.set_lifecycle("time", service=service, seconds=seconds)

    dag_file = airflow.dags_folder / "bench_fleet.py"
    settings = {"bench_dir": str(BENCH_DIR), "services": str(directory)}
    write_whole(dag_file, FLEET_DAG_FILE.format(mode="deferrable", poke=False, **settings))
    ci = airflow.client("ci")
    token = AirflowClient(airflow.base_url).authenticate("ci", "ci")
    dag_ids = [f"release__{s}" for s in services]
    started = time.monotonic()
    for dag_id in dag_ids:
        ci.wait_for_dag(dag_id, timeout=300)
    say(f"  {len(dag_ids)} release DAGs parsed in {time.monotonic() - started:.0f} s")

    results = [fleet_phase(airflow, token, services, "deferrable", "1.1.0", environments, timeouts["deferrable"])]
    if results[-1]["crashed"]:
        return fleet_rows(results), results
    if results[-1]["timed_out"]:
        say(f"  stopped {stop_unfinished(ci, 'fleet-deferrable-')} unfinished deferrable runs")
    wait_idle(ci)

    write_whole(dag_file, FLEET_DAG_FILE.format(mode="poke", poke=True, **settings))
    started = time.monotonic()
    wait_for_tag(ci, dag_ids, POKE_TAG)
    say(f"  poke-mode DAGs re-parsed in {time.monotonic() - started:.0f} s")
    results.append(fleet_phase(airflow, token, services, "poke", "1.2.0", environments, timeouts["poke"]))
    if results[-1]["timed_out"]:
        say(f"  stopped {stop_unfinished(ci, 'fleet-poke-')} unfinished poke-mode runs")
        wait_idle(ci)
    return fleet_rows(results), results


def fleet_rows(results: list[dict[str, Any]]) -> list[str]:
    rows = [
        "| mode | releases | succeeded | finished | wall s (first trigger -> last end) | peak running (slots) | "
        "mean running | peak deferred | peak queued | peak RSS MiB | trigger HTTP 500s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for r in results:
        wall = f"{r['wall']:.0f}" + (" (timeout)" if r["timed_out"] else " (Airflow crashed)" if r["crashed"] else "")
        p = r["peaks"]
        rows.append(
            f"| {r['mode']} | {r['releases']} | {r['success']} | {r['finished']} | {wall} | {p['running']} | "
            f"{r['mean_running']:.1f} | {p['deferred']} | {p['queued']} | {p['rss'] / 2**20:.0f} | "
            f"{r['trigger_errors']} |"
        )
        if r["failed_tasks"]:
            notes.append(f"{r['mode']}: failed tasks (task: runs) {r['failed_tasks']}")
        if r["crashed"]:
            notes.append(f"{r['mode']}: the phase stopped because {r['crashed']}")
    if notes:
        rows += ["", "; ".join(notes) + "."]
    if len(results) == 2 and not any(r["timed_out"] or r["crashed"] for r in results):
        rows.append("")
        rows.append(f"Ratio poke/deferrable wall time: {results[1]['wall'] / results[0]['wall']:.2f}.")
    return rows


# -- the run ---------------------------------------------------------------------------------------
def machine() -> str:
    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("apache-airflow", "apache-airflow-providers-amazon", "moto")
    )
    return f"{platform.machine()}, nproc {os.cpu_count()}, Python {platform.python_version()}, {versions}"


def load() -> str:
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke check: --repeat 1 --releases 5")
    parser.add_argument("--repeat", type=int, default=5, help="overhead runs per DAG (default 5)")
    parser.add_argument("--releases", type=int, default=50, help="releases started at once (default 50)")
    parser.add_argument("--environments", default="staging",
                        help="environments each fleet release goes through (default staging)")
    parser.add_argument("--deferrable-timeout", type=float, default=1800, help="seconds (default 1800)")
    parser.add_argument("--poke-timeout", type=float, default=1200, help="seconds (default 1200)")
    parser.add_argument("--sqlite-busy-timeout", type=float, default=0,
                        help="seconds Airflow's SQLite connections wait for a lock (default: sqlite3's 5 s)")
    parser.add_argument("--skip", choices=("overhead", "fleet"), help="leave one part out")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (Airflow home and logs)")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.releases = 1, 5
    if args.repeat < 1 or not 1 <= args.releases <= 100:
        parser.error("--repeat must be >= 1 and --releases between 1 and 100")
    environments = [e.strip() for e in args.environments.split(",") if e.strip()]

    # SIGTERM (e.g. a CI timeout) must still stop Airflow and the sandbox: make it an exception.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from shipflow.runtime.local import LocalAirflow, free_port
    from shipflow.sandbox import DEFAULT_REGION
    from shipflow.sandbox.client import SANDBOX_CREDENTIALS
    from shipflow.sandbox.seed import seed
    from shipflow.spec.loader import load_specs

    database = {}
    if args.sqlite_busy_timeout:
        # Every Airflow process imports SQLITE_CONNECT_ARGS from this module (bench/ on PYTHONPATH).
        os.environ["SHIPFLOW_BENCH_SQLITE_TIMEOUT"] = str(args.sqlite_busy_timeout)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")]))
        database["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] = "bench_orchestration.SQLITE_CONNECT_ARGS"
    workdir = Path(tempfile.mkdtemp(prefix="shipflow-bench-orchestration-"))
    began, load_before = time.monotonic(), load()
    say(f"Machine: {machine()}; load average before {load_before}; work dir {workdir}; SQLite busy timeout "
        f"{args.sqlite_busy_timeout or 5:g} s")
    output: list[str] = []
    try:
        with sandbox_process(workdir) as sandbox:
            services = {"overhead": workdir / "services-overhead", "fleet": workdir / "services-fleet"}
            for directory in services.values():
                directory.mkdir()
            source = (ROOT / "include" / "services" / f"{SERVICE}.yaml").read_text()
            (services["overhead"] / f"{SERVICE}.yaml").write_text(
                re.sub(r"bake_time: \S+", f"bake_time: {OVERHEAD_BAKE}", source)
            )
            sandbox.set_lifecycle("immediate")
            seed(sandbox, specs=load_specs(services["overhead"])[0])
            connection = json.dumps({
                "conn_type": "aws",
                "login": SANDBOX_CREDENTIALS["aws_access_key_id"],
                "password": SANDBOX_CREDENTIALS["aws_secret_access_key"],
                "extra": {"endpoint_url": sandbox.endpoint, "region_name": DEFAULT_REGION},
            })
            dags = workdir / "dags"
            dags.mkdir()
            write_whole(dags / "bench_overhead.py",
                        OVERHEAD_DAG_FILE.format(service=SERVICE, bench_dir=str(BENCH_DIR),
                                                 services=str(services["overhead"])))
            airflow = LocalAirflow(
                workdir / "airflow",
                dags,
                free_port(),
                extra_env={
                    "AIRFLOW_CONN_AWS_DEFAULT": connection,
                    "SHIPFLOW_POLL_SECONDS": "1",
                    # LocalAirflow re-parses every 3 s for tests; here a file is parsed again only when
                    # the bench rewrites it, so re-parsing 50 DAGs does not compete with the releases.
                    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
                    **database,
                },
            )
            try:
                say(f"Airflow up in {airflow.start(timeout=240):.0f} s at {airflow.base_url} (parallelism 4)")
                if args.skip != "overhead":
                    say(f"\n[1/2] overhead: {SERVICE} (bake {OVERHEAD_BAKE}, immediate lifecycles) vs its no-op "
                        f"twin, {args.repeat} runs each after a warm-up pair")
                    rows, _ = overhead(airflow, sandbox, services["overhead"], args.repeat)
                    output += [f"### Overhead: one release vs its no-op twin (load {load()} after)", "", *rows, ""]
                    say("\n".join(rows))
                if args.skip != "fleet":
                    say(f"\n[2/2] fleet: {args.releases} releases at once ({','.join(environments)}), deferrable "
                        "then poke mode")
                    timeouts = {"deferrable": args.deferrable_timeout, "poke": args.poke_timeout}
                    rows, _ = fleet(airflow, sandbox, services["fleet"], args.releases, environments, timeouts)
                    output += [f"### {args.releases} releases at once (load {load()} after)", "", *rows, ""]
                    say("\n".join(rows))
            finally:
                airflow.stop()
    finally:
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    say(f"\nMeasured {time.strftime('%Y-%m-%d')} on {machine()}; load average {load_before} before, {load()} after; "
        f"whole run {(time.monotonic() - began) / 60:.1f} min. SHIPFLOW_POLL_SECONDS=1 for every DAG.\n")
    say("\n".join(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
