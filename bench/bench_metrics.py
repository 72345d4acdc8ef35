"""How long ``shipflow.metrics.compute`` takes over a large audit trail, against plain pandas.

Generates a deterministic (seeded) history shaped like the audit listener's events: about 22 events
per release, 20 services with 2 or 3 environments, over up to 90 days (``--events / 20`` releases are
spread over them; the generator stops at ``--events``), with retried deploys, failed AWS calls,
approvals, rollbacks (verified or not), superseded releases and manual interventions. The events are
chained with ``shipflow.audit.chain.chain_hash`` and the chain head set, so ``AuditStore.verify()``
passes, and inserted in bulk; the SQLite file is cached by parameters, so a rerun skips generation.
PostgreSQL gets a copy of the same rows in a scratch database, dropped at the end.

For each backend, each measurement runs in a fresh subprocess that reports its own wall time (the
work only, not the interpreter's start) and its peak RSS (``VmHWM`` from ``/proc/self/status`` at
its end; the PostgreSQL server's memory is not in it):

- *full*: ``compute(engine, first midnight, last midnight)``: every day, 7-day and 30-day window;
- *incremental*: one hourly run's data interval ``(23:00, 00:00]`` before the last midnight: one
  day's three windows;
- *pandas* (baseline), for each: ``pandas.read_sql`` of the events the windows hold, the payload
  json-normalised, and a group-by per window for a sample of the same metrics (releases, task and
  AWS call failure rates, task, approval and release duration percentiles). The bench checks that
  every pandas value equals the stored one.

    .venv/bin/python bench/bench_metrics.py                      # 1,000,000 events, SQLite and PostgreSQL
    .venv/bin/python bench/bench_metrics.py --quick --backends sqlite
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins"))

from sqlalchemy import delete, insert, select, text, update  # noqa: E402

from shipflow import audit  # noqa: E402
from shipflow import metrics as m  # noqa: E402
from shipflow.audit.chain import GENESIS_HASH, chain_hash  # noqa: E402
from shipflow.audit.models import HEAD_ID, AuditChainHead, AuditEvent  # noqa: E402
from shipflow.audit.store import AuditStore  # noqa: E402

events_table = AuditEvent.__table__
head_table = AuditChainHead.__table__

START = datetime(2026, 6, 1, tzinfo=UTC)
EVENTS_PER_RELEASE = 20  # about; the generator stops at the first release that reaches --events
BATCH = 20_000
CACHE = Path(os.environ.get("SHIPFLOW_BENCH_CACHE", Path(tempfile.gettempdir()) / "shipflow-bench-metrics"))

# The sample of metrics pandas computes too (stored names).
SAMPLE = (
    m.RELEASES,
    m.TASK_FAILURE_RATE,
    m.AWS_CALL_FAILURE_RATE,
    *(m.stored_name(d, s) for d in (m.TASK_DURATION, m.APPROVAL_WAIT, m.RELEASE_DURATION) for s in m.STATISTICS),
)


# -- the history -------------------------------------------------------------------------------------
def services(count: int, rng: random.Random) -> list[tuple[str, list[str]]]:
    """``count`` services, each with 2 or 3 environments, the last its production."""
    found = []
    for i in range(count):
        environments = ["dev", "staging", "production"] if rng.random() < 0.5 else ["staging", "production"]
        found.append((f"svc-{i:02d}", environments))
    return found


class _Release:
    """The events of one release (one DAG run), in time order, as the listener records them."""

    def __init__(self, rng: random.Random, service: str, environments: list[str], run: int, at: datetime) -> None:
        self.rng, self.service, self.at = rng, service, at
        self.dag_id, self.run_id = f"release__{service}", f"manual__{at.isoformat()}_{run}"
        self.start = at
        self.events: list[dict[str, Any]] = []
        self.outcomes: dict[str, dict[str, str]] = {}
        self.build(environments)

    def add(
        self,
        kind: str,
        task: str | None = None,
        payload: dict[str, Any] | None = None,
        *,
        seconds: float = 0.0,
        try_number: int | None = None,
        actor: str = audit.SYSTEM_ACTOR,
    ) -> None:
        self.at += timedelta(seconds=seconds)
        environment, _, stage = (task or "").rpartition(".")
        self.events.append(
            {
                "time": self.at,
                "kind": kind,
                "dag_id": self.dag_id,
                "run_id": self.run_id,
                "service": self.service,
                "environment": environment or None,
                "stage": stage or None,
                "task_id": task,
                # A task try has a try number; a human's intervention on a task has none (as recorded).
                "try_number": try_number if kind == audit.MANUAL_INTERVENTION or not task else (try_number or 1),
                "actor": actor,
                "payload": payload or {},
            }
        )

    def task(self, kind: str, task: str, state: str, seconds: float, try_number: int = 1, **fields: Any) -> None:
        self.add(
            kind, task, {"state": state, "duration_seconds": seconds, **fields}, seconds=seconds, try_number=try_number
        )

    def calls(self, failed: bool = False) -> dict[str, Any]:
        found = []
        for _ in range(self.rng.randint(1, 4)):
            roll = self.rng.random()
            if roll < 0.03:
                found.append({"http_status": 429, "error": None})  # throttled, retried by botocore
            elif roll < 0.04:
                found.append({"http_status": 500, "error": "InternalFailure"})
            else:
                found.append({"http_status": 200, "error": None})
        if failed:
            found.append({"http_status": 400, "error": "InvalidDeploymentException"})
        return {"aws_calls": found}

    def seconds(self, low: int, high: int) -> float:
        return self.rng.randint(low * 1000, high * 1000) / 1000  # the audit trail records milliseconds

    def build(self, environments: list[str]) -> None:
        rng = self.rng
        commit = self.at - timedelta(seconds=rng.randint(600, 86_400))
        self.add(
            audit.RELEASE_REQUESTED,
            payload={
                "trigger": "rest",
                "conf": {
                    "version": f"1.{rng.randint(0, 99)}.{rng.randint(0, 9)}",
                    "commit_time": commit.isoformat().replace("+00:00", "Z"),
                },
            },
            actor="ci",
        )
        self.task(audit.AWS_ACTION, "build", "success", self.seconds(60, 600), result=self.calls())
        finished = "success"
        for position, env in enumerate(environments):
            production = position == len(environments) - 1
            outcome = self.environment(env, production)
            self.outcomes[env] = {"outcome": outcome}
            if outcome != "promoted":
                finished = "success" if outcome == "superseded" else "failed"
                break
        self.add(
            audit.RELEASE_FINISHED,
            payload={
                "state": finished,
                "duration_seconds": round((self.at - self.start).total_seconds() + 1, 3),
                "outcomes": self.outcomes,
            },
            seconds=1,
        )
        if finished == "failed" and rng.random() < 0.1:
            self.add(
                audit.MANUAL_INTERVENTION,
                payload={"action": "mark_run", "state": "failed", "via": "ui"},
                seconds=rng.randint(1, 600),
                actor="oncall",
            )

    def environment(self, env: str, production: bool) -> str:
        """One environment's tasks; returns its outcome."""
        rng = self.rng
        window = self.seconds(1, 1800) if production else self.seconds(1, 30)
        if production and rng.random() < 0.02:  # a newer release took the window
            self.task(audit.GATE_DECISION, f"{env}.check_deployment_window", "skipped", window, passed=False)
            return "superseded"
        self.task(audit.GATE_DECISION, f"{env}.check_deployment_window", "success", window, passed=True)
        if production and rng.random() < 0.01:
            self.add(
                audit.WINDOW_OVERRIDE,
                f"{env}.check_deployment_window",
                {"override": {"approved_by": "lead"}},
                try_number=1,
                actor="lead",
            )
        alarms_ok = rng.random() >= 0.03
        self.task(
            audit.GATE_DECISION,
            f"{env}.check_alarms",
            "success" if alarms_ok else "failed",
            self.seconds(1, 20),
            passed=alarms_ok,
        )
        if not alarms_ok:
            if rng.random() < 0.5:
                return "failed"
            self.add(
                audit.MANUAL_INTERVENTION,
                f"{env}.check_alarms",
                {"action": "mark_task", "new_state": "success", "task": f"{env}.check_alarms", "via": "ui"},
                seconds=rng.randint(60, 1800),
                actor="oncall",
            )
        if production or rng.random() < 0.2:
            wait = self.seconds(30, 14_400)
            decision = "approved" if rng.random() >= 0.03 else "rejected"
            self.task(
                audit.APPROVAL,
                f"{env}.approve_release",
                "success" if decision == "approved" else "failed",
                wait,
                wait_seconds=wait,
                decision=decision,
            )
            self.events[-1]["actor"] = f"approver{rng.randint(1, 9)}"
            if decision == "rejected":
                return "rejected"
        self.task(audit.AWS_ACTION, f"{env}.create_change_set", "success", self.seconds(20, 300), result=self.calls())
        self.task(audit.AWS_ACTION, f"{env}.execute_change_set", "success", self.seconds(30, 900), result=self.calls())
        tries = 1
        while rng.random() < 0.08 and tries < 3:  # a failed deploy, retried by Airflow
            self.task(
                audit.AWS_ACTION,
                f"{env}.deploy",
                "failed",
                self.seconds(5, 120),
                try_number=tries,
                error="deployment failed",
                result=self.calls(failed=True),
            )
            tries += 1
        if tries == 3 and rng.random() < 0.5:
            if rng.random() < 0.3:
                self.task(
                    audit.MANUAL_FALLBACK,
                    f"{env}.manual_deploy",
                    "success",
                    self.seconds(300, 3600),
                    instructions="deploy by hand",
                )
            else:
                return "failed"
        self.task(
            audit.AWS_ACTION, f"{env}.deploy", "success", self.seconds(60, 1800), try_number=tries, result=self.calls()
        )
        bake_ok = rng.random() >= (0.05 if production else 0.02)
        self.task(
            audit.GATE_DECISION,
            f"{env}.watch_bake",
            "success" if bake_ok else "failed",
            self.seconds(300, 1800),
            passed=bake_ok,
        )
        if bake_ok:
            self.task(audit.GATE_DECISION, f"{env}.verify_metrics", "success", self.seconds(5, 60), passed=True)
            return "promoted"
        self.task(
            audit.ROLLBACK, f"{env}.decide_outcome", "success", 1, phase="started", rolls_back=["rollback_deployment"]
        )
        self.task(audit.AWS_ACTION, f"{env}.rollback_deployment", "success", self.seconds(30, 600), result=self.calls())
        verified = rng.random() >= 0.1
        self.task(
            audit.ROLLBACK,
            f"{env}.verify_rollback",
            "success" if verified else "failed",
            self.seconds(10, 120),
            phase="verified" if verified else "not_verified",
            verified=verified,
        )
        return "rolled_back"


def generate(n_events: int, days: int, n_services: int, seed: int) -> Iterator[dict[str, Any]]:
    """About ``n_events`` events of ``n_events / 20`` releases over ``days`` days, in time order."""
    rng = random.Random(seed)
    fleet = services(n_services, rng)
    releases = max(1, n_events // EVENTS_PER_RELEASE)
    span = days * 86_400 - 6 * 3600  # the last release ends before the last midnight
    starts = sorted(rng.randrange(span * 1000) / 1000 for _ in range(releases))
    pending: list[dict[str, Any]] = []
    produced = 0
    for run, offset in enumerate(starts):
        service, environments = fleet[rng.randrange(len(fleet))]
        release = _Release(rng, service, environments, run, START + timedelta(seconds=offset))
        pending.extend(release.events)
        produced += len(release.events)
        # Releases overlap: emit, in time order, what no later release can precede (they start later).
        release_start = release.start
        pending.sort(key=lambda e: e["time"])
        cut = next((i for i, e in enumerate(pending) if e["time"] > release_start), len(pending))
        yield from pending[:cut]
        del pending[:cut]
        if produced >= n_events:
            break
    yield from pending


def load(url: str, n_events: int, days: int, n_services: int, seed: int) -> tuple[int, str]:
    """Migrate the store at ``url`` and insert the chained history; returns the chain head."""
    with AuditStore(url, spool_path=Path(tempfile.gettempdir()) / "shipflow-bench-metrics.spool") as store:
        store.migrate()
        rng = random.Random(seed + 1)
        seq, prev = 0, GENESIS_HASH
        batch: list[dict[str, Any]] = []
        with store.engine.begin() as conn:
            conn.execute(delete(events_table))
            for event in generate(n_events, days, n_services, seed):
                seq += 1
                event["event_id"] = uuid.UUID(int=rng.getrandbits(128), version=4)
                digest = chain_hash(event, seq, prev)
                batch.append({**event, "seq": seq, "prev_hash": prev, "hash": digest})
                prev = digest
                if len(batch) >= BATCH:
                    conn.execute(insert(events_table), batch)
                    batch.clear()
            if batch:
                conn.execute(insert(events_table), batch)
            conn.execute(update(head_table).where(head_table.c.id == HEAD_ID).values(last_seq=seq, last_hash=prev))
    return seq, prev


def copy(source: str, target: str) -> int:
    """Copy every event and the chain head from ``source`` to the migrated-here store ``target``."""
    with AuditStore(source) as src, AuditStore(target, spool_path=Path(tempfile.gettempdir()) / "bench.spool") as dst:
        dst.migrate()
        copied = 0
        with src.engine.connect() as read, dst.engine.begin() as write:
            write.execute(delete(events_table))
            rows = read.execution_options(yield_per=BATCH).execute(select(events_table).order_by(events_table.c.seq))
            for part in rows.partitions():
                write.execute(insert(events_table), [dict(r._mapping) for r in part])
                copied += len(part)
            head = read.execute(select(head_table.c.last_seq, head_table.c.last_hash)).one()
            write.execute(
                update(head_table)
                .where(head_table.c.id == HEAD_ID)
                .values(last_seq=head.last_seq, last_hash=head.last_hash)
            )
        with dst.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))  # what autovacuum would have done by the time a DAG runs
    return copied


def cached_sqlite(args: argparse.Namespace) -> Path:
    key = hashlib.sha256(json.dumps([args.events, args.days, args.services, args.seed, 1]).encode()).hexdigest()[:12]
    path = CACHE / f"audit-{args.events}-{key}.db"
    if path.exists():
        print(f"history: cached {path}", flush=True)
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    began = time.perf_counter()
    seq, _ = load(f"sqlite:///{partial}", args.events, args.days, args.services, args.seed)
    print(f"history: {seq:,} events generated, chained and inserted in {time.perf_counter() - began:.1f} s", flush=True)
    partial.rename(path)
    return path


# -- the measured work, one per subprocess ------------------------------------------------------------
def run_compute(url: str, start: datetime, end: datetime) -> dict[str, Any]:
    from shipflow.metrics.compute import compute

    with AuditStore(url) as store:
        began = time.perf_counter()
        rows = compute(store.engine, start, end)
        return {"seconds": time.perf_counter() - began, "rows": rows}


def nearest_rank(frame: Any, keys: list[str], value: str) -> Any:
    """p50, p90 and max of ``value`` per ``keys``, by nearest rank (as docs/metrics.md defines it)."""
    frame = frame.dropna(subset=[value]).sort_values([*keys, value])
    groups = frame.groupby(keys, sort=False)
    rank = groups.cumcount() + 1
    n = groups[value].transform("size")
    out = groups[value].agg(["max", "size"])
    for name, p in m.PERCENTILES.items():
        at = frame[rank == (p * n + 99) // 100].set_index(keys)[value]
        out[name] = at
    return out


def inside(frame: Any, window: Any) -> Any:
    """The rows of ``frame`` (in time order) in ``[window.start, window.end)``."""
    times = frame["time"]
    return frame.iloc[times.searchsorted(window.start, "left") : times.searchsorted(window.end, "left")]


def run_pandas(url: str, start: datetime, end: datetime, out: str) -> dict[str, Any]:
    """The sample metrics of the windows ending in ``(start, end]``, with pandas; pickled to ``out``."""
    import pandas as pd

    from shipflow.metrics.compute import TASK_KINDS, day_ends, windows_ending

    windows = windows_ending(day_ends(start, end))
    low, high = min(w.start for w in windows), max(w.end for w in windows)
    with AuditStore(url) as store:
        began = time.perf_counter()
        query = (
            select(
                events_table.c.time,
                events_table.c.kind,
                events_table.c.service,
                events_table.c.environment,
                events_table.c.stage,
                events_table.c.payload,
            )
            .where(events_table.c.time >= low, events_table.c.time < high, events_table.c.service.is_not(None))
            .order_by(events_table.c.time)
        )
        with store.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    payloads = frame.pop("payload").tolist()
    frame["outcomes"] = [p.get("outcomes") for p in payloads]  # kept whole: json_normalize would split it
    payload = pd.json_normalize(payloads, max_level=1)
    for name in ("state", "duration_seconds", "wait_seconds", "result.aws_calls"):
        frame[name] = payload[name] if name in payload else None
    frame["environment"] = frame["environment"].fillna("")
    frame["stage"] = frame["stage"].fillna("")
    tries_all = frame[
        frame.kind.isin(TASK_KINDS) & (frame.stage != "decide_outcome") & frame.state.isin(("success", "failed"))
    ].copy()
    tries_all["failed"] = tries_all.state == "failed"
    actions = frame[frame.kind == audit.AWS_ACTION]
    calls_all = actions[["time", "service", "environment", "stage"]].join(actions["result.aws_calls"].explode())
    calls_all = calls_all.dropna(subset=["result.aws_calls"])
    calls_all["failed"] = [
        c.get("error") is not None or (c.get("http_status") or 0) >= 400 for c in calls_all.pop("result.aws_calls")
    ]
    finished_all = frame[frame.kind == audit.RELEASE_FINISHED].copy()
    finished_all = finished_all[
        [not any(o.get("outcome") == "superseded" for o in (x or {}).values()) for x in finished_all.outcomes]
    ]

    found: dict[tuple[Any, ...], float] = {}

    def rows(w: Any, frame: Any, metric: str, dimension: str | None, by_environment: bool, value: str) -> None:
        for star in (False, True) if by_environment else (True,):
            part = frame if not star else frame.assign(environment=m.ALL_ENVIRONMENTS)
            if not star:
                part = part[part.environment != ""]
            keys = ["service", "environment"] + ([dimension] if dimension else [])
            if value == "failed":  # a rate
                stats = part.groupby(keys)["failed"].agg(["sum", "size"])
                for key, failed, n in zip(stats.index, stats["sum"], stats["size"], strict=True):
                    key = (*key, "") if not dimension else key
                    found[(w.name, w.end, *key, metric)] = failed / n
            else:
                stats = nearest_rank(part, keys, value)
                for s in m.STATISTICS:
                    name = m.stored_name(metric, s)
                    for key, v in zip(stats.index, stats[s], strict=True):
                        key = (*key, "") if not dimension else key
                        found[(w.name, w.end, *key, name)] = round(float(v), 3)

    for w in windows:
        tries, calls, finished = (inside(part, w) for part in (tries_all, calls_all, finished_all))
        for key, n in finished.groupby("service").size().items():
            found[(w.name, w.end, key, m.ALL_ENVIRONMENTS, "", m.RELEASES)] = float(n)
        for dimension in (None, "stage"):
            rows(w, tries, m.TASK_FAILURE_RATE, dimension, True, "failed")
            rows(w, calls, m.AWS_CALL_FAILURE_RATE, dimension, True, "failed")
        rows(w, tries, m.TASK_DURATION, "kind", True, "duration_seconds")
        for dimension in (None, "stage"):
            rows(w, tries[tries.kind == audit.APPROVAL], m.APPROVAL_WAIT, dimension, True, "wait_seconds")
        rows(w, finished.assign(environment=""), m.RELEASE_DURATION, None, False, "duration_seconds")
    seconds = time.perf_counter() - began
    pd.to_pickle(found, out)
    return {"seconds": seconds, "rows": len(found), "events_read": len(frame)}


def peak_rss_mib() -> float:
    """This process's peak RSS (``VmHWM``). Not ``getrusage``: its ``ru_maxrss`` keeps the parent's peak
    across fork and exec, so a child of a large parent would report the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def compute_version() -> str:
    """The git blob id of the ``compute.py`` this run imports: results name the code they measured."""
    data = (ROOT / "plugins" / "shipflow" / "metrics" / "compute.py").read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()[:10]  # noqa: S324 - git's id, not security


def child(args: argparse.Namespace) -> None:
    start, end = datetime.fromisoformat(args.start), datetime.fromisoformat(args.end)
    if args.child == "compute":
        result = run_compute(args.url, start, end)
    else:
        result = run_pandas(args.url, start, end, args.out)
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))


def measure(what: str, url: str, start: datetime, end: datetime, out: str = "") -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its last stdout line is the result."""
    command = [
        sys.executable,
        __file__,
        "--child",
        what,
        "--url",
        url,
        "--start",
        start.isoformat(),
        "--end",
        end.isoformat(),
        "--out",
        out,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{what} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def stored(url: str) -> dict[tuple[Any, ...], float]:
    """The stored values of the sample metrics, keyed as ``run_pandas`` keys its own."""
    from shipflow.metrics.models import ReleaseMetric

    table = ReleaseMetric.__table__
    with AuditStore(url) as store, store.engine.connect() as conn:
        found = {}
        for r in conn.execute(select(table).where(table.c.metric.in_(SAMPLE))):
            end = r.window_end if r.window_end.tzinfo else r.window_end.replace(tzinfo=UTC)
            found[(r.window, end, r.service, r.environment, r.dimension, r.metric)] = r.value
    return found


def compare(url: str, pickled: str) -> tuple[int, int, list[str]]:
    """(compared, matched, examples of mismatches): pandas' values against the stored rows."""
    import pandas as pd

    ours = pd.read_pickle(pickled)  # noqa: S301 - written by this bench's own child
    theirs = stored(url)
    ours_windows = {(k[0], k[1]) for k in ours}
    theirs = {k: v for k, v in theirs.items() if (k[0], k[1]) in ours_windows}
    compared = matched = 0
    problems = []
    for key in sorted(set(ours) | set(theirs), key=str):
        compared += 1
        a, b = ours.get(key), theirs.get(key)
        if a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9):
            matched += 1
        elif len(problems) < 5:
            problems.append(f"{key}: pandas {a} stored {b}")
    return compared, matched, problems


# -- the run -------------------------------------------------------------------------------------------
def scratch_postgres() -> Any:
    from shipflow.runtime.backends import scratch_postgres_database

    return scratch_postgres_database()


def bench_backend(backend: str, url: str, args: argparse.Namespace, first: datetime, last: datetime) -> list[dict]:
    from shipflow.metrics.models import ReleaseMetric

    with AuditStore(url) as store, store.engine.begin() as conn:
        conn.execute(delete(ReleaseMetric.__table__))
    results = []
    incremental = (last - timedelta(hours=1), last)
    runs = {"full": (first, last), "incremental": incremental}
    for label in args.runs.split(","):
        start, end = runs[label.strip()]
        pickled = str(CACHE / f"pandas-{args.events}-{backend}-{label}.pkl")
        ours = measure("compute", url, start, end)
        base = measure("pandas", url, start, end, pickled)
        compared, matched, problems = compare(url, pickled)
        row = {
            "backend": backend,
            "run": label,
            "shipflow": ours,
            "pandas": base,
            "compared": compared,
            "matched": matched,
        }
        results.append(row)
        print(
            f"{backend} {label}: shipflow {ours['seconds']:.1f} s {ours['peak_rss_mib']:.0f} MiB ({ours['rows']:,} "
            f"rows); pandas {base['seconds']:.1f} s {base['peak_rss_mib']:.0f} MiB ({base['events_read']:,} events "
            f"read); ratio shipflow/pandas time {ours['seconds'] / base['seconds']:.2f} memory "
            f"{ours['peak_rss_mib'] / base['peak_rss_mib']:.2f}",
            flush=True,
        )
        print(f"{backend} {label}: compared {compared:,} values, {matched:,} matched", flush=True)
        for problem in problems:
            print(f"  mismatch {problem}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--runs", default="full,incremental", help="which computations: full, incremental")
    parser.add_argument("--quick", action="store_true", help="20,000 events: a smoke run")
    parser.add_argument("--verify", action="store_true", help="check the generated chain (on by --quick)")
    parser.add_argument("--child", choices=("compute", "pandas"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--start", help=argparse.SUPPRESS)
    parser.add_argument("--end", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    if args.quick:
        args.events = 20_000
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    path = cached_sqlite(args)
    sqlite_url = f"sqlite:///{path}"
    with AuditStore(sqlite_url) as store:
        if args.verify or args.quick:
            verified = store.verify()
            print(f"history: chain check {'ok' if verified.ok else 'FAILED'}: {verified}", flush=True)
            if not verified.ok:
                return 1
        with store.engine.connect() as conn:
            count, low, high = conn.execute(
                select(text("count(*), min(time), max(time)")).select_from(events_table)
            ).one()
            releases = conn.execute(
                select(text("count(*)")).select_from(events_table).where(events_table.c.kind == audit.RELEASE_FINISHED)
            ).scalar_one()
    low = datetime.fromisoformat(str(low)).replace(tzinfo=UTC)
    high = datetime.fromisoformat(str(high)).replace(tzinfo=UTC)
    first = datetime.combine(low.date(), datetime.min.time(), tzinfo=UTC)
    last = datetime.combine(high.date(), datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
    print(f"compute.py: blob {compute_version()}", flush=True)
    print(f"history: {count:,} events, {releases:,} releases, {first:%Y-%m-%d} .. {last:%Y-%m-%d}", flush=True)
    results = []
    for backend in backends:
        if backend == "sqlite":
            results += bench_backend("sqlite", sqlite_url, args, first, last)
        elif backend == "postgres":
            with scratch_postgres() as url:
                url = url.replace("postgresql+psycopg2://", "postgresql+psycopg://", 1)
                began = time.perf_counter()
                copied = copy(sqlite_url, url)
                print(f"postgres: {copied:,} events copied in {time.perf_counter() - began:.1f} s", flush=True)
                results += bench_backend("postgres", url, args, first, last)
        else:
            parser.error(f"--backends: unknown backend {backend!r} (sqlite, postgres)")
    ok = all(r["compared"] and r["compared"] == r["matched"] for r in results)
    print(json.dumps(results, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
