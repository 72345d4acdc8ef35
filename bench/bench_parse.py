"""Benchmark: parse time of the release DAG factory for 10, 100 and 1,000 services, against a hand-written floor.

What a dag-processor child does with one DAG file, measured in fresh subprocesses (median of
``--repeat`` runs each):

- **import**: the file executed the way Airflow's importer executes it (``SourceFileLoader`` under a
  unique module name), which is the part ``[core] dagbag_import_timeout`` (30 s) limits. Before the
  clock starts the child imports what the dag-processor parent already holds when it forks a parser:
  ``airflow.dag_processing.processor`` and every ``airflow.*`` module the file names
  (``iter_airflow_imports``, what ``_pre_import_airflow_modules`` does).
- **DagBag**: ``DagBag(dag_folder=<folder holding only that file>)``: the import, Airflow's validation
  and bagging, then ``DagSerialization.to_dict`` of every DAG (what the child sends to the parent); all
  of it is limited by ``[dag_processor] dag_file_processor_timeout`` (50 s). The import timeout is
  switched off in these children (``AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT=0``) so that a slow size is
  measured, not killed; the tables compare it with the 30 s.
- **worker**: the import with ``_AIRFLOW_PARSING_CONTEXT_DAG_ID`` set (what a worker does to run one
  task, ``get_parsing_context().dag_id``): only that service's spec is read and built.

Two DAG files are measured for the same N services, in the same run:

- *factory*: an entry file like dags/release.py (``register_release_dags(globals(), <dir>)``) over a
  folder of N generated specs (``SPEC`` below: tests/spec/valid/full-svc.yaml with an approval in
  staging, metrics in production and automatic rollback in both; names renamed per service);
- *floor*: bench/handwritten_release.py, the same 44-task graphs written by hand with the same operator
  classes (no YAML, no pydantic). Before measuring, the benchmark checks that both files serialize
  to the same DAG, so the ratio factory/floor is the factory's own cost.

    .venv/bin/python bench/bench_parse.py [--sizes 10,100,1000] [--repeat 3] [--shards K]

Prints Markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HANDWRITTEN = Path(__file__).resolve().parent / "handwritten_release.py"
IMPORT_TIMEOUT = 30.0  # [core] dagbag_import_timeout
PROCESSOR_TIMEOUT = 50.0  # [dag_processor] dag_file_processor_timeout
WORKER_SERVICE_INDEX = 0.5  # the worker case builds the service in the middle of the folder
MARK = "BENCH_RESULT "
SERIALIZE_SAMPLE = 50  # DAGs serialized per child; the time is scaled to all of the file's DAGs

# tests/spec/valid/full-svc.yaml, plus an approval in staging, metrics in production and automatic
# rollback in both: every stage the builder knows, in both environments (44 tasks).
SPEC = """\
service: full-svc
description: "Takes payments; released staging first, then production with an approval."
owners: [alice, role:payments-oncall]
tags: [payments, tier-1]
execution_mode: superseded
build:
  codebuild_project: full-svc-build
  buildspec_override: |
    version: 0.2
    phases:
      build:
        commands: ["make bundle VERSION=${RELEASE_VERSION}"]
  environment_variables:
    RELEASE_VERSION: "{version}"
    STRICT: true
artifact:
  bucket: shipflow-artifacts
  key: "full-svc/full-svc-{version}.zip"
notifications:
  sns_topic_arn: arn:aws:sns:us-east-1:123456789012:shipflow-alerts
  on: [failure, rollback]
environments:
  - name: staging
    aws_conn_id: aws_sandbox
    deployment_window:
      timezone: Europe/Berlin
      windows: [{days: [mon, tue, wed, thu], start: "09:00", end: "16:00"}]
      freezes: [{start: 2026-12-20, end: 2027-01-04, reason: holidays}]
    pre_checks:
      alarms: [full-svc-staging-errors]
    infrastructure:
      stack: full-svc-staging
      template: service-stack.yaml
      parameters: {ServiceName: full-svc, Environment: "{environment}", ReleaseVersion: "{version}"}
    deployment:
      application: full-svc
      deployment_group: full-svc-staging
      config: CodeDeployDefault.LambdaCanary10Percent5Minutes
      compute_platform: Lambda
    post_checks:
      bake_time: 10m
      alarm_prefix: full-svc-staging-
      metrics:
        - {metric: ErrorRate, max: 1.0}
        - {metric: LatencyP99, statistic: p99, max: 800, min: 0}
    approval:
      approvers: [approver1, role:release-managers]
    rollback:
      runbook_url: https://runbooks.example.com/full-svc
  - name: production
    region: eu-central-1
    infrastructure:
      stack: full-svc-production
      template: service-stack.yaml
      capabilities: [CAPABILITY_IAM]
      approval_for: [replacement, removal, iam]
    approval:
      approvers: [approver1, approver2, role:release-managers]
      required: 2
      timeout: 1d
    deployment:
      application: full-svc
      deployment_group: full-svc-production
      config: CodeDeployDefault.LambdaLinear10PercentEvery1Minute
      compute_platform: Lambda
    post_checks:
      bake_time: 30m
      alarms: [full-svc-production-errors, full-svc-production-latency]
      metrics:
        - {metric: ErrorRate, max: 0.5}
    rollback:
      runbook_url: https://runbooks.example.com/full-svc
      manual_fallback_timeout: 90m
"""

ENTRY = '''"""The benchmark's release DAGs, like dags/release.py (Airflow parses files naming airflow and dag)."""

from pathlib import Path

from shipflow.release.builder import register_release_dags

register_release_dags(globals(), Path({services!r}){shard_args})
'''


def service_name(i: int) -> str:
    return f"svc-{i:04d}"  # the names bench/handwritten_release.py builds


def write_specs(directory: Path, count: int) -> None:
    directory.mkdir(parents=True)
    for i in range(1, count + 1):
        name = service_name(i)
        (directory / f"{name}.yaml").write_text(SPEC.replace("full-svc", name), encoding="utf-8")


def largest_shard(count: int, shards: int) -> tuple[int, int]:
    """The shard holding the most of ``count`` services, and how many (the formula of builder.in_shard)."""
    sizes = [0] * shards
    for i in range(1, count + 1):
        sizes[zlib.crc32(service_name(i).encode("utf-8")) % shards] += 1
    return max(enumerate(sizes), key=lambda item: item[1])


def dag_folder(work: Path, kind: str, count: int, shards: int = 0) -> Path:
    """A folder holding only the DAG file of ``kind`` for ``count`` services (made once per size)."""
    folder = work / f"{kind}-{count}" / "dags"
    if folder.exists():
        return folder
    folder.mkdir(parents=True)
    if kind in ("factory", "shard"):
        services = work / f"services-{count}"
        if not services.exists():
            write_specs(services, count)
        shard_args = f", shard={largest_shard(count, shards)[0]}, shards={shards}" if kind == "shard" else ""
        entry = ENTRY.format(services=str(services), shard_args=shard_args)
        (folder / "release.py").write_text(entry, encoding="utf-8")
    else:
        shutil.copy(HANDWRITTEN, folder / "release.py")
    return folder


# -- the child: one measurement in a fresh interpreter -------------------------------------------------------
def _memory_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _preimport(dag_file: Path) -> None:
    """What the dag-processor parent holds before it forks the child that parses ``dag_file``."""
    import importlib

    import airflow.dag_processing.processor  # noqa: F401  (the parent runs this module)
    from airflow.utils.file import iter_airflow_imports

    for module in iter_airflow_imports(str(dag_file)):
        importlib.import_module(module)


def child(measure: str, folder: Path) -> dict[str, Any]:
    dag_file = folder / "release.py"
    _preimport(dag_file)
    from airflow.sdk import DAG

    result: dict[str, Any] = {"rss_before_mib": _memory_kib("VmRSS") / 1024}
    if measure == "import":
        import importlib.machinery
        import importlib.util

        from airflow.utils.file import get_unique_dag_module_name

        name = get_unique_dag_module_name(str(dag_file))
        started = time.perf_counter()
        loader = importlib.machinery.SourceFileLoader(name, str(dag_file))
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
        sys.modules[name] = module
        loader.exec_module(module)
        result["import_s"] = time.perf_counter() - started
        result["dags"] = sum(isinstance(v, DAG) for v in vars(module).values())
    else:
        from airflow.dag_processing.dagbag import DagBag
        from airflow.dag_processing.importers.python_importer import PythonDagImporter
        from airflow.serialization.serialized_objects import DagSerialization

        # Time the section Airflow runs under dagbag_import_timeout, inside Airflow's own DagBag.
        timed = PythonDagImporter._load_modules_from_file

        def load(self, *args, **kwargs):
            started = time.perf_counter()
            try:
                return timed(self, *args, **kwargs)
            finally:
                result["import_s"] = time.perf_counter() - started

        PythonDagImporter._load_modules_from_file = load
        started = time.perf_counter()
        bag = DagBag(dag_folder=str(folder))
        result["dagbag_s"] = time.perf_counter() - started
        result["bag_s"] = result["dagbag_s"] - result.get("import_s", 0.0)
        result["dags"] = len(bag.dags)
        result["import_errors"] = [str(e)[:300] for e in bag.import_errors.values()]
        # Serializing costs the same for every DAG of the file (~0.1 s, mostly Param validation): time an
        # evenly spread sample, with every DAG still alive, and scale it to the whole file.
        dags = list(bag.dags.values())
        sample = dags[:: max(1, len(dags) // SERIALIZE_SAMPLE)][:SERIALIZE_SAMPLE]
        started = time.perf_counter()
        serialized = [DagSerialization.to_dict(dag) for dag in sample]
        result["serialize_s"] = (time.perf_counter() - started) * len(dags) / max(1, len(sample))
        result["serialized_sample"] = len(sample)
        result["serialized_kib_per_dag"] = len(json.dumps(serialized[0], default=str)) / 1024 if serialized else 0
        result["child_s"] = result["dagbag_s"] + result["serialize_s"]
    result["peak_rss_mib"] = _memory_kib("VmHWM") / 1024
    return result


def run_child(measure: str, folder: Path, count: int, airflow_home: Path, dag_id: str | None = None) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "plugins"),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "0",  # measure a slow size instead of killing it
        "SHIPFLOW_BENCH_SERVICES": str(count),
    }
    env.pop("_AIRFLOW_PARSING_CONTEXT_DAG_ID", None)
    if dag_id:
        env["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = dag_id
    cmd = [sys.executable, __file__, "--child", measure, "--folder", str(folder)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    wall = time.perf_counter() - started
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode or not lines:
        raise SystemExit(f"child {measure} {folder} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len(MARK) :])
    result["process_s"] = wall
    return result


def check_same_dags(work: Path, airflow_home: Path) -> int:
    """Both files build the same DAG (serialized, bar file locations); returns the task count."""
    code = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import importlib.util
from airflow.serialization.serialized_objects import DagSerialization

def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

factory = load({str(dag_folder(work, "factory", 2) / "release.py")!r}, "factory_release")
floor = load({str(dag_folder(work, "floor", 2) / "release.py")!r}, "floor_release")
IGNORED = {{"fileloc", "relative_fileloc", "_processor_dags_folder"}}

def clean(value):
    if isinstance(value, dict):
        return {{k: clean(v) for k, v in value.items() if k not in IGNORED}}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value

for name in ("release__svc-0001", "release__svc-0002"):
    a = clean(DagSerialization.to_dict(getattr(factory, name)))
    b = clean(DagSerialization.to_dict(getattr(floor, name)))
    if a != b:
        ta = {{t["__var"]["task_id"]: t for t in a["dag"]["tasks"]}}
        tb = {{t["__var"]["task_id"]: t for t in b["dag"]["tasks"]}}
        diff = sorted(k for k in ta.keys() | tb.keys() if ta.get(k) != tb.get(k))
        top = sorted(k for k in a["dag"].keys() | b["dag"].keys() if a["dag"].get(k) != b["dag"].get(k))
        print("DIFFERENT", name, "tasks:", diff, "dag fields:", top)
        for k in diff[:3]:
            print(json.dumps(ta.get(k), default=str)[:1500]); print(json.dumps(tb.get(k), default=str)[:1500])
        sys.exit(1)
print("{MARK}" + json.dumps(len(getattr(factory, "release__svc-0001").tasks)))
"""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "plugins"),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "SHIPFLOW_BENCH_SERVICES": "2",
    }
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode:
        raise SystemExit(
            f"the hand-written floor does not build the factory's DAG:\n{proc.stdout}{proc.stderr[-3000:]}"
        )
    return json.loads(proc.stdout.split(MARK)[-1])


# -- the parent: run, aggregate, print -----------------------------------------------------------------------
def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def measure_all(
    sizes: list[int], repeat: int, shards: int, work: Path, airflow_home: Path
) -> dict[tuple, list[dict[str, Any]]]:
    results: dict[tuple, list[dict[str, Any]]] = {}
    plan = [(kind, measure, n) for n in sizes for measure in ("import", "dagbag") for kind in ("factory", "floor")]
    worker_n = max(sizes)
    worker_id = f"release__{service_name(max(1, int(worker_n * WORKER_SERVICE_INDEX)))}"
    plan += [(kind, "worker", worker_n) for kind in ("factory", "floor")]
    if shards:
        plan.append(("shard", "dagbag", worker_n))
    for kind, measure, n in plan:
        folder = dag_folder(work, kind, n, shards)
        runs = []
        for _ in range(repeat):  # interleaving would be fairer to load swings; medians smooth those instead
            dag_id = worker_id if measure == "worker" else None
            runs.append(run_child("import" if measure == "worker" else measure, folder, n, airflow_home, dag_id))
        expected = 1 if measure == "worker" else largest_shard(n, shards)[1] if kind == "shard" else n
        got = {r["dags"] for r in runs}
        if got != {expected} or any(r.get("import_errors") for r in runs):
            raise SystemExit(f"{kind} {measure} N={n}: built {got} DAGs, expected {expected}: {runs[0]}")
        results[(kind, measure, n)] = runs
        print(
            f"  {kind:7} {measure:6} N={n:<5} import {median(runs, 'import_s'):7.2f} s"
            + (f"  child {median(runs, 'child_s'):7.2f} s" if measure == "dagbag" else "")
            + f"  peak {median(runs, 'peak_rss_mib'):6.0f} MiB",
            file=sys.stderr,
            flush=True,
        )
    return results


def report(
    results: dict[tuple, list[dict[str, Any]]],
    sizes: list[int],
    args: argparse.Namespace,
    tasks: int,
    load: tuple[float, float],
    elapsed: float,
) -> str:
    def m(kind: str, measure: str, n: int, key: str) -> float:
        return median(results[(kind, measure, n)], key)

    def per_dag(kind: str, measure: str, n: int, key: str) -> float:
        return m(kind, measure, n, key) / n * 1000

    out = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average {load[0]:.2f} before, {load[1]:.2f} after; "
        f"{args.repeat} fresh subprocesses per cell, medians; whole run {elapsed / 60:.1f} min. "
        f"Each DAG has {tasks} tasks (2 environments with gates, infrastructure, approvals, bake, "
        "metrics and automatic rollback).",
        "",
        "File import (what `dagbag_import_timeout`, 30 s, limits):",
        "",
        "| services | factory import s | floor import s | ratio factory/floor | factory ms/DAG | floor ms/DAG "
        "| factory peak RSS MiB | floor peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        fi, hi = m("factory", "import", n, "import_s"), m("floor", "import", n, "import_s")
        out.append(
            f"| {n:,} | {fi:.2f} | {hi:.2f} | {fi / hi:.2f} | {per_dag('factory', 'import', n, 'import_s'):.1f} "
            f"| {per_dag('floor', 'import', n, 'import_s'):.1f} | {m('factory', 'import', n, 'peak_rss_mib'):.0f} "
            f"| {m('floor', 'import', n, 'peak_rss_mib'):.0f} |"
        )
    if len(sizes) > 1:
        lo, hi_n = sizes[-2], sizes[-1]

        def slope(kind: str) -> float:
            return (m(kind, "import", hi_n, "import_s") - m(kind, "import", lo, "import_s")) / (hi_n - lo) * 1000

        out += [
            "",
            f"Marginal cost per DAG between {lo:,} and {hi_n:,} services: factory {slope('factory'):.1f} ms, "
            f"floor {slope('floor'):.1f} ms (ratio {slope('factory') / slope('floor'):.2f}). Fixed cost (the "
            f"{sizes[0]}-service file minus {sizes[0]} marginal DAGs): factory "
            f"{m('factory', 'import', sizes[0], 'import_s') - sizes[0] * slope('factory') / 1000:.2f} s, floor "
            f"{m('floor', 'import', sizes[0], 'import_s') - sizes[0] * slope('floor') / 1000:.2f} s.",
        ]
    out += [
        "",
        "Through Airflow's `DagBag(dag_folder=...)` plus serializing every DAG (the whole dag-processor child, "
        "limited by `dag_file_processor_timeout`, 50 s):",
        "",
        "| services | factory import / bag / serialize s | factory child s | floor import / bag / serialize s "
        "| floor child s | ratio factory/floor | serialized KiB/DAG | factory peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        parts = {
            kind: " / ".join(f"{m(kind, 'dagbag', n, k):.2f}" for k in ("import_s", "bag_s", "serialize_s"))
            for kind in ("factory", "floor")
        }
        fc, hc = m("factory", "dagbag", n, "child_s"), m("floor", "dagbag", n, "child_s")
        out.append(
            f"| {n:,} | {parts['factory']} | {fc:.2f} | {parts['floor']} | {hc:.2f} | {fc / hc:.2f} "
            f"| {m('factory', 'dagbag', n, 'serialized_kib_per_dag'):.0f} "
            f"| {m('factory', 'dagbag', n, 'peak_rss_mib'):.0f} |"
        )
    wn = max(sizes)
    fw, hw = m("factory", "worker", wn, "import_s"), m("floor", "worker", wn, "import_s")
    out += [
        "",
        f"Worker (`get_parsing_context().dag_id` set, one DAG built) in the {wn:,}-service file: factory "
        f"{fw * 1000:.0f} ms, floor {hw * 1000:.0f} ms (ratio {fw / hw:.2f}); a full parse of the same file: "
        f"factory {m('factory', 'import', wn, 'import_s'):.2f} s.",
    ]
    if args.shards:
        shard, size = largest_shard(wn, args.shards)
        out.append(
            f"The largest of {args.shards} shards of the {wn:,} services (shard {shard}, {size} services): import "
            f"{m('shard', 'dagbag', wn, 'import_s'):.2f} s, child {m('shard', 'dagbag', wn, 'child_s'):.2f} s, "
            f"peak RSS {m('shard', 'dagbag', wn, 'peak_rss_mib'):.0f} MiB."
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000", help="service counts (default 10,100,1000)")
    parser.add_argument("--repeat", type=int, default=3, help="fresh subprocesses per measurement (median)")
    parser.add_argument(
        "--shards",
        type=int,
        default=0,
        help="also measure the largest of K shards at the biggest size (needs register_release_dags(shard=, shards=))",
    )
    parser.add_argument("--child", choices=["import", "dagbag"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(MARK + json.dumps(child(args.child, args.folder)))
        return

    sizes = sorted(int(s) for s in args.sizes.split(","))
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="shipflow-bench-parse-") as tmp:
        work = Path(tmp)
        airflow_home = work / "airflow-home"
        airflow_home.mkdir()
        tasks = check_same_dags(work, airflow_home)
        print(f"factory and hand-written floor build the same {tasks}-task DAG", file=sys.stderr)
        results = measure_all(sizes, args.repeat, args.shards, work, airflow_home)
    elapsed = time.perf_counter() - started
    print(report(results, sizes, args, tasks, (load_before, os.getloadavg()[0]), elapsed))


if __name__ == "__main__":
    main()
