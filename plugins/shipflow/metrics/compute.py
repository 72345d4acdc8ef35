"""Compute the release metrics of whole days from ``audit_event`` and store them in ``release_metric``.

    from shipflow.metrics.compute import compute
    rows = compute(store.engine, data_interval_start, data_interval_end)

For every UTC day whose end (midnight) falls in ``(start, end]``, the day itself and the rolling 7
and 30 days ending with it are computed: the definitions are in docs/metrics.md. With data
intervals, a day is written once it has ended, and an interval holding no midnight (an hourly run
during the day) writes nothing. The clock is not consulted: an interval ending at a midnight still
to come computes that day from the events so far (provisional rows, replaced when it is computed again).
Recomputing an interval replaces its rows (delete, then insert, in one transaction), so a rerun is
idempotent and a history that changed (events replayed late from a spool) is taken in.

The SQL is set-based (SQLAlchemy Core: group by, case, window functions) and runs on SQLite and
PostgreSQL alike; the few expressions that differ are in ``shipflow.metrics.dialect``. Python only
rolls up per-group counts (an environment's into ``"*"``, a stage's into ``""``) and turns rows of
percentiles into metric rows: it never loops over events.
"""

from __future__ import annotations

import logging
import sys
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert

from shipflow import audit
from shipflow import metrics as m
from shipflow.metrics.models import ReleaseMetric
from shipflow.metrics.queries import (
    CHANGE_FAILED,
    ENTERED,
    FAILED_STATE,
    TASK_KINDS,
    VERIFIED,
    Statements,
    Window,
    production_environments,
)
from shipflow.release.outcome import PROMOTED

log = logging.getLogger(__name__)

metric_table = ReleaseMetric.__table__

# The intervention kind of a manual_intervention's action (mark_run depends on its state: see below).
INTERVENTION_ACTIONS = {
    "mark_task": m.TASK_MARKED,
    "mark_task_group": m.TASK_MARKED,
    "clear_tasks": m.CLEAR,
    "clear_run": m.CLEAR,
}
# Windows read together in one batch of statements (3 per day); bounds how many rows one join makes.
DAYS_PER_BATCH = 7
SECONDS_DECIMALS = 3  # the audit trail records durations in milliseconds
# A metric row as ``measure`` returns it: ``release_metric``'s columns but ``computed_at``. Tuples with
# interned names, not dicts: a full recomputation holds every row until its one write transaction
# (about 1.2 million at 50,000 events), which took 1.2 GiB as dicts.
COLUMNS = ("window", "window_end", "service", "environment", "metric", "dimension", "value", "samples")
# Rows per INSERT statement of that transaction (each chunk is built as dicts only while it is sent).
INSERT_CHUNK = 10_000
# Memory for each sort of the read transaction on PostgreSQL (the default 4MB spills to disk).
POSTGRES_WORK_MEM = "256MB"
# No nested-loop joins where another join exists, in the read transaction on PostgreSQL. The planner
# cannot estimate "a run's last release_finished" (``row_number() = 1``: 0.5% of the rows, where it is
# nearly all of them), so it put the superseded check (``json_each`` over each release's outcomes)
# inside a nested loop: re-run once per pair of rows, it grew the server process until the kernel
# killed it (7 days of a 1M-event history, 22 GiB, the whole PostgreSQL cluster restarted). With hash
# and merge joins each statement reads its rows once; the json_each over one row stays a nested loop.
# The nested loops that remain cost 1e10 to the planner, far over jit_above_cost: without jit = off
# every statement was JIT-compiled with inlining, 0.3-3 s each even on an empty store.
POSTGRES_PLANNER = {"work_mem": POSTGRES_WORK_MEM, "enable_nestloop": "off", "jit": "off"}


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def day_ends(start: datetime, end: datetime) -> list[datetime]:
    """The midnights (UTC) in ``(start, end]``: the ends of the days an interval completes.

    A naive datetime is taken to be UTC. ``(10:00, 11:00]`` holds none; ``(23:00, 00:00]`` holds one.
    """
    start, end = _utc(start), _utc(end)
    if end < start:
        raise ValueError(f"metrics interval ends before it starts: ({start.isoformat()}, {end.isoformat()}]")
    found = []
    midnight = datetime.combine(start.date(), time(0), tzinfo=UTC) + timedelta(days=1)
    while midnight <= end:
        found.append(midnight)
        midnight += timedelta(days=1)
    return found


def windows_ending(ends: Sequence[datetime]) -> list[Window]:
    """The day, 7-day and 30-day windows ending at each of ``ends``."""
    return [Window(name, end - length, end) for end in ends for name, length in m.WINDOWS.items()]


def compute(
    bind: Engine | Connection,
    start: datetime,
    end: datetime,
    *,
    production: Mapping[str, str] | None = None,
) -> int:
    """Compute and store the metrics of the days ending in ``(start, end]``; returns the rows written.

    :param bind: the audit store's engine (``AuditStore(url).engine``) or a connection to it. With an
        engine, the events are read in one read-only transaction (a snapshot on PostgreSQL) and the
        rows written in a second, short one, so appenders are not held up. A connection already in a
        transaction is used as is: the rows are then written in the caller's transaction.
    :param start: the interval's start (excluded), e.g. the DAG run's ``data_interval_start``.
    :param end: the interval's end (included).
    :param production: service -> its production environment (the last in its spec). Services not
        named get the last environment the audit trail shows them reaching (``production_environments``).
    """
    ends = day_ends(start, end)
    if not ends:
        return 0
    computed_at = datetime.now(UTC)
    with _reading(bind) as conn:
        environments = production_environments(conn)
        environments.update(production or {})
        rows: list[tuple[Any, ...]] = []
        for first in range(0, len(ends), DAYS_PER_BATCH):
            rows.extend(measure(conn, windows_ending(ends[first : first + DAYS_PER_BATCH]), environments))
    with _writing(bind) as conn:
        replace(conn, ends, rows, computed_at)
    log.info("metrics: %d rows for the %d day(s) ending %s..%s", len(rows), len(ends), ends[0], ends[-1])
    return len(rows)


def replace(
    conn: Connection, ends: Sequence[datetime], rows: Sequence[Sequence[Any]], computed_at: datetime
) -> None:
    """Delete every row of the windows ending at ``ends``, then insert ``rows`` (tuples of ``COLUMNS``)
    stamped ``computed_at``. Call it in one transaction: a failed insert leaves the rows there were."""
    conn.execute(delete(metric_table).where(metric_table.c.window_end.in_(list(ends))))
    for first in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[first : first + INSERT_CHUNK]
        conn.execute(insert(metric_table), [dict(zip(COLUMNS, r, strict=True), computed_at=computed_at) for r in chunk])


@contextmanager
def _given(conn: Connection) -> Iterator[Connection]:
    """A caller's connection: in its transaction if it has one, else in a transaction of its own."""
    if conn.in_transaction():
        yield conn
    else:
        with conn.begin():
            yield conn


@contextmanager
def _reading(bind: Engine | Connection) -> Iterator[Connection]:
    if isinstance(bind, Connection):
        ours = not bind.in_transaction()  # a caller's transaction keeps its own settings
        with _given(bind) as conn:
            if ours:
                _plan(conn)
            yield conn
        return
    with bind.connect() as conn:
        # The audit store's SQLite engine begins writers IMMEDIATE: ask it for a plain BEGIN.
        conn = conn.execution_options(shipflow_read_only=True)
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")  # one snapshot for every query
        with conn.begin():
            _plan(conn)
            yield conn


def _plan(conn: Connection) -> None:
    """POSTGRES_PLANNER for the transaction ``conn`` is in (``SET LOCAL``); nothing on SQLite."""
    if conn.dialect.name == "postgresql":
        for setting, value in POSTGRES_PLANNER.items():
            conn.exec_driver_sql(f"SET LOCAL {setting} = '{value}'")


@contextmanager
def _writing(bind: Engine | Connection) -> Iterator[Connection]:
    with _given(bind) if isinstance(bind, Connection) else bind.begin() as conn:
        yield conn


# -- from per-group rows to metric rows ----------------------------------------------------------------
class _Rows:
    """The metric rows of one batch, keyed by (window id, service, environment, metric, dimension)."""

    def __init__(self, windows: Sequence[Window]) -> None:
        self.windows = windows
        self.rows: dict[tuple[int, str, str, str, str], tuple[float, int]] = {}

    def put(self, w: int, service: str, environment: str, metric: str, dimension: str, value: float, samples: int):
        self.rows[(w, service, environment, metric, dimension)] = (float(value), int(samples))

    def rate(self, w: int, service: str, environment: str, metric: str, dimension: str, part: int, whole: int):
        if whole:  # a rate of nothing is not stored
            self.put(w, service, environment, metric, dimension, part / whole, whole)

    def as_tuples(self) -> list[tuple[Any, ...]]:
        """The rows as tuples of ``COLUMNS``, in key order; names interned (they repeat in every window)."""
        intern = sys.intern
        return [
            (
                self.windows[w].name,
                self.windows[w].end,
                intern(service),
                intern(environment),
                intern(metric),
                intern(dimension),
                value,
                samples,
            )
            for (w, service, environment, metric, dimension), (value, samples) in sorted(self.rows.items())
        ]


def _environments(environment: str | None) -> list[str]:
    """An environment's counts also count for ``"*"``; an event of no environment only there."""
    return [environment, m.ALL_ENVIRONMENTS] if environment else [m.ALL_ENVIRONMENTS]


def _dimensions(stage: str | None) -> list[str]:
    """A stage's counts also count for ``""`` (all stages); an event of no stage only there."""
    return [m.NO_DIMENSION, stage] if stage else [m.NO_DIMENSION]


def intervention_kind(kind: str, action: str | None, state: str | None) -> str:
    """The intervention kind (``interventions_per_100_releases``'s dimension) of a manual event."""
    if kind == audit.MANUAL_FALLBACK:
        return m.FALLBACK_STEP
    if kind == audit.WINDOW_OVERRIDE:
        return m.WINDOW_OVERRIDE
    if action == "mark_run":
        return m.RUN_FAILED_BY_HAND if state == FAILED_STATE else m.RUN_MARKED
    return INTERVENTION_ACTIONS.get(action or "", m.OTHER_INTERVENTION)


def measure(conn: Connection, windows: Sequence[Window], production: Mapping[str, str]) -> list[tuple[Any, ...]]:
    """The metric rows of ``windows`` as tuples of ``COLUMNS``, read from ``conn``'s audit events."""
    q = Statements(conn.dialect.name, windows, production)
    out = _Rows(windows)
    _task_rates(conn, q, out)
    _release_metrics(conn, q, out, production)
    _distributions(conn, q, out)
    return out.as_tuples()


def _task_rates(conn: Connection, q: Statements, out: _Rows) -> None:
    """Task failures, gate failures, AWS call failures, rollbacks: per environment and ``*``, stage and ``""``."""
    blank = m.NO_DIMENSION
    tries: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
    gates: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
    for w, service, environment, kind, stage, n, failed in conn.execute(q.try_counts()):
        for env in _environments(environment):
            for dimension in _dimensions(stage):
                for target in (tries, gates) if kind == audit.GATE_DECISION else (tries,):
                    target[(w, service, env, dimension)][0] += n
                    target[(w, service, env, dimension)][1] += failed or 0
    for (w, service, env, dimension), (n, failed) in tries.items():
        out.rate(w, service, env, m.TASK_FAILURE_RATE, dimension, failed, n)
    for (w, service, env, dimension), (n, failed) in gates.items():
        out.put(w, service, env, m.GATE_FAILURES, dimension, failed, n)
        out.rate(w, service, env, m.GATE_FAILURE_RATE, dimension, failed, n)

    calls: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
    for w, service, environment, stage, n, failed in conn.execute(q.aws_call_counts()):
        for env in _environments(environment):
            for dimension in _dimensions(stage):
                calls[(w, service, env, dimension)][0] += n
                calls[(w, service, env, dimension)][1] += failed or 0
    for (w, service, env, dimension), (n, failed) in calls.items():
        out.rate(w, service, env, m.AWS_CALL_FAILURE_RATE, dimension, failed, n)

    rollbacks: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
    for w, service, environment, phase, n in conn.execute(q.rollback_counts()):
        for env in _environments(environment):
            rollbacks[(w, service, env)][0] += n
            rollbacks[(w, service, env)][1] += n if phase == VERIFIED else 0
    for (w, service, env), (n, verified) in rollbacks.items():
        out.rate(w, service, env, m.ROLLBACK_SUCCESS_RATE, blank, verified, n)


def _release_metrics(conn: Connection, q: Statements, out: _Rows, production: Mapping[str, str]) -> None:
    """Releases, manual fallback frequency, interventions per 100 releases, deployment frequency, change
    failure rate: release-level, so environment ``*`` only."""
    star, blank = m.ALL_ENVIRONMENTS, m.NO_DIMENSION
    releases = {(w, service): n for w, service, n in conn.execute(q.release_counts())}
    manual = {(w, service): n for w, service, n in conn.execute(q.manual_release_counts())}
    interventions: dict[tuple[Any, ...], int] = defaultdict(int)
    for w, service, kind, action, state, n in conn.execute(q.intervention_counts()):
        interventions[(w, service, intervention_kind(kind, action, state))] += n
    outcomes: dict[tuple[Any, ...], int] = defaultdict(int)
    if q.production is not None:
        for w, service, outcome, n in conn.execute(q.production_outcome_counts()):
            outcomes[(w, service, outcome)] += n
    for (w, service), n in releases.items():
        out.put(w, service, star, m.RELEASES, blank, n, n)
        out.rate(w, service, star, m.MANUAL_FALLBACK_FREQUENCY, blank, manual.get((w, service), 0), n)
        total = 0
        for kind in (*m.INTERVENTION_KINDS, m.OTHER_INTERVENTION):
            count = interventions.get((w, service, kind), 0)
            total += count
            if count or kind != m.OTHER_INTERVENTION:
                out.put(w, service, star, m.INTERVENTIONS_PER_100_RELEASES, kind, 100 * count / n, n)
        out.put(w, service, star, m.INTERVENTIONS_PER_100_RELEASES, blank, 100 * total / n, n)
        if service in production:
            promoted = outcomes.get((w, service, PROMOTED), 0)
            out.put(w, service, star, m.DEPLOYMENT_FREQUENCY, blank, promoted / out.windows[w].days, promoted)
            entered = sum(outcomes.get((w, service, o), 0) for o in ENTERED)
            failed = sum(outcomes.get((w, service, o), 0) for o in CHANGE_FAILED)
            out.rate(w, service, star, m.CHANGE_FAILURE_RATE, blank, failed, entered)


def _distributions(conn: Connection, q: Statements, out: _Rows) -> None:
    """Every duration's p50, p90 and max: the statement returns only the samples that are one of them."""
    for w, service, environment, metric, dimension, *which, value, n in conn.execute(q.distributions()):
        for statistic, chosen in zip(m.STATISTICS, which, strict=True):
            if chosen:
                name = m.stored_name(m.DISTRIBUTIONS[metric], statistic)
                value_seconds = round(float(value), SECONDS_DECIMALS)
                out.put(w, service, environment, name, dimension or m.NO_DIMENSION, value_seconds, n)

__all__ = [
    "COLUMNS",
    "TASK_KINDS",
    "Window",
    "compute",
    "day_ends",
    "intervention_kind",
    "measure",
    "production_environments",
    "replace",
    "windows_ending",
]
