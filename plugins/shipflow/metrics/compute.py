"""Compute the release metrics of whole days from ``audit_event`` and store them in ``release_metric``.

    from shipflow.metrics.compute import compute
    rows = compute(store.engine, data_interval_start, data_interval_end)

For every UTC day whose end (midnight) falls in ``(start, end]``, the day itself and the rolling 7
and 30 days ending with it are computed: the definitions are in docs/metrics.md. A day is written
once it has ended; an interval holding no midnight (an hourly run during the day) writes nothing.
Recomputing an interval replaces its rows (delete, then insert, in one transaction), so a rerun is
idempotent and a history that changed (events replayed late from a spool) is taken in.

The SQL is set-based (SQLAlchemy Core: group by, case, window functions) and runs on SQLite and
PostgreSQL alike; the few expressions that differ are in ``shipflow.metrics.dialect``. Python only
rolls up per-group counts (an environment's into ``"*"``, a stage's into ``""``) and turns rows of
percentiles into metric rows: it never loops over events.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    Integer,
    String,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    true,
    union_all,
    values,
)
from sqlalchemy import column as sql_column
from sqlalchemy.sql.selectable import CTE, Select

from shipflow import audit
from shipflow import metrics as m
from shipflow.audit.models import AuditEvent
from shipflow.metrics.dialect import Portable
from shipflow.metrics.models import ReleaseMetric
from shipflow.release.outcome import FAILED, PROMOTED, REJECTED, ROLLED_BACK, SUPERSEDED

log = logging.getLogger(__name__)

events = AuditEvent.__table__
metric_table = ReleaseMetric.__table__

# Events that are one try of one task (each carries the try's state and duration).
TASK_KINDS = (audit.AWS_ACTION, audit.GATE_DECISION, audit.APPROVAL, audit.ROLLBACK, audit.MANUAL_FALLBACK)
# decide_outcome's rollback event is a decision record, written only when it rolls back: not a try.
NOT_TRIES = ("decide_outcome",)
# A try counts when it ended one way or the other; a skipped try gave way to a newer release.
SUCCESS, FAILED_STATE = "success", "failed"
ENDED = (SUCCESS, FAILED_STATE)
WINDOW_GATE = "check_deployment_window"
VERIFIED, NOT_VERIFIED = "verified", "not_verified"
# A production release was entered when its environment was decided one of these ways.
ENTERED = (PROMOTED, ROLLED_BACK, FAILED, REJECTED)
CHANGE_FAILED = (ROLLED_BACK, FAILED)
MANUAL_KINDS = (audit.MANUAL_FALLBACK, audit.MANUAL_INTERVENTION, audit.WINDOW_OVERRIDE)
# What makes a release count for manual_fallback_frequency (a window override is a planned path).
FALLBACK_KINDS = (audit.MANUAL_FALLBACK, audit.MANUAL_INTERVENTION)
INTERVENTION_ACTIONS = {
    "mark_task": m.TASK_MARKED,
    "mark_task_group": m.TASK_MARKED,
    "clear_tasks": m.CLEAR,
    "clear_run": m.CLEAR,
}
# Windows read together in one batch of statements (3 per day); bounds how many rows one join makes.
DAYS_PER_BATCH = 7
SECONDS_DECIMALS = 3  # the audit trail records durations in milliseconds


@dataclass(frozen=True)
class Window:
    """``[start, end)`` in UTC: a day (``name="day"``) or the rolling 7 or 30 days ending at ``end``."""

    name: str
    start: datetime
    end: datetime

    @property
    def days(self) -> int:
        return (self.end - self.start).days


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
        rows: list[dict[str, Any]] = []
        for first in range(0, len(ends), DAYS_PER_BATCH):
            rows.extend(measure(conn, windows_ending(ends[first : first + DAYS_PER_BATCH]), environments))
    for row in rows:
        row["computed_at"] = computed_at
    with _writing(bind) as conn:
        replace(conn, ends, rows)
    log.info("metrics: %d rows for the %d day(s) ending %s..%s", len(rows), len(ends), ends[0], ends[-1])
    return len(rows)


def replace(conn: Connection, ends: Sequence[datetime], rows: Sequence[Mapping[str, Any]]) -> None:
    """Delete every row of the windows ending at ``ends``, then insert ``rows`` (call it in one transaction)."""
    conn.execute(delete(metric_table).where(metric_table.c.window_end.in_(list(ends))))
    if rows:
        conn.execute(insert(metric_table), list(rows))


@contextmanager
def _reading(bind: Engine | Connection) -> Iterator[Connection]:
    if isinstance(bind, Connection):
        if bind.in_transaction():
            yield bind
        else:
            with bind.begin():
                yield bind
        return
    with bind.connect() as conn:
        # The audit store's SQLite engine begins writers IMMEDIATE: ask it for a plain BEGIN.
        conn = conn.execution_options(shipflow_read_only=True)
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")  # one snapshot for every query
        with conn.begin():
            yield conn


@contextmanager
def _writing(bind: Engine | Connection) -> Iterator[Connection]:
    if isinstance(bind, Connection):
        if bind.in_transaction():
            yield bind
        else:
            with bind.begin():
                yield bind
        return
    with bind.begin() as conn:
        yield conn


# -- which environment is production ---------------------------------------------------------------
def production_environments(conn: Connection) -> dict[str, str]:
    """Service -> the last environment its releases reach, as the whole audit trail shows it.

    Within a run, environments are entered in the spec's order, so the environment whose first task
    event comes last is the run's last; the run that reached the most environments (the latest of
    those) names the service's production. The whole trail is read, not the computed days only, so
    that an old day computed again gets the same answer as a new one. A service none of whose
    releases ever reached production gets its furthest environment: pass ``production`` to
    ``compute`` (from the specs) to be exact.
    """
    entered = (
        select(
            events.c.service,
            events.c.dag_id,
            events.c.run_id,
            events.c.environment,
            func.min(events.c.time).label("entered"),
        )
        .where(
            events.c.kind.in_(TASK_KINDS),
            events.c.environment.is_not(None),
            events.c.service.is_not(None),
        )
        .group_by(events.c.service, events.c.dag_id, events.c.run_id, events.c.environment)
        .subquery("entered")
    )
    run = (entered.c.dag_id, entered.c.run_id)
    last = (
        select(
            entered.c.service,
            entered.c.environment,
            entered.c.entered,
            func.count().over(partition_by=run).label("reached"),
            func.row_number().over(partition_by=run, order_by=entered.c.entered.desc()).label("position"),
        )
        .subquery("last")
    )
    pick = (
        select(
            last.c.service,
            last.c.environment,
            func.row_number()
            .over(partition_by=last.c.service, order_by=(last.c.reached.desc(), last.c.entered.desc()))
            .label("pick"),
        )
        .where(last.c.position == 1)
        .subquery("pick")
    )
    return dict(conn.execute(select(pick.c.service, pick.c.environment).where(pick.c.pick == 1)).all())


# -- the queries ---------------------------------------------------------------------------------------
class _Queries:
    """The statements for one batch of windows (ids into ``windows``), built for one dialect."""

    def __init__(self, dialect_name: str, windows: Sequence[Window], production: Mapping[str, str]) -> None:
        self.sql = Portable(dialect_name)
        self.window = values(
            sql_column("w", Integer),
            sql_column("w_start", DateTime(timezone=True)),
            sql_column("w_end", DateTime(timezone=True)),
            name="metric_window",
        ).data([(i, w.start, w.end) for i, w in enumerate(windows)]).cte("metric_window")
        self.low = min(w.start for w in windows)
        self.high = max(w.end for w in windows)
        self.production = (
            values(sql_column("service", String), sql_column("environment", String), name="production")
            .data(sorted(production.items()))
            .cte("production")
            if production
            else None
        )
        self.state = events.c.payload["state"].as_string()

    # -- building blocks -----------------------------------------------------------------------------
    def _in_window(self, *columns: Any) -> Select[Any]:
        """``columns`` of the events in each window (an event in several windows comes once per window)."""
        w = self.window
        return (
            select(w.c.w, *columns)
            .select_from(events.join(w, and_(events.c.time >= w.c.w_start, events.c.time < w.c.w_end)))
            .where(events.c.service.is_not(None), events.c.time >= self.low, events.c.time < self.high)
        )

    def tries(self) -> CTE:
        """Every task try that ended (success or failed) in each window, with its duration and wait."""
        return (
            self._in_window(
                events.c.service,
                events.c.environment,
                events.c.kind,
                events.c.stage,
                (self.state == FAILED_STATE).label("failed"),
                self.sql.number(events.c.payload, "duration_seconds").label("duration"),
                case((events.c.kind == audit.APPROVAL, self.sql.number(events.c.payload, "wait_seconds"))).label(
                    "wait"
                ),
            )
            .where(
                events.c.kind.in_(TASK_KINDS),
                func.coalesce(events.c.stage, "").not_in(NOT_TRIES),
                self.state.in_(ENDED),
            )
            .cte("try")
        )

    def releases(self) -> tuple[CTE, CTE]:
        """(``attempt``, ``outcome``): each window's releases, and every environment's outcome in them.

        A release is a run's last ``release_finished`` before the window's end, if that falls in the
        window; a release any environment of which was superseded is not an attempt.
        """
        w = self.window
        finished = (
            self._in_window(
                w.c.w_end,
                events.c.dag_id,
                events.c.run_id,
                events.c.service,
                events.c.time,
                events.c.payload,
                func.row_number()
                .over(
                    partition_by=(w.c.w, events.c.dag_id, events.c.run_id),
                    order_by=(events.c.time.desc(), events.c.seq.desc()),
                )
                .label("latest"),
            )
            .where(events.c.kind == audit.RELEASE_FINISHED)
            .cte("finished")
        )
        released = select(finished).where(finished.c.latest == 1).cte("released")
        items = self.sql.items(released.c.payload, "outcomes", of="object")
        outcome = (
            select(
                released.c.w,
                released.c.dag_id,
                released.c.run_id,
                released.c.service,
                released.c.time,
                items.key.label("environment"),
                items.word("outcome").label("outcome"),
            )
            .select_from(released.join(items.from_, true()))
            .cte("outcome")
        )
        superseded = exists().where(
            outcome.c.w == released.c.w,
            outcome.c.dag_id == released.c.dag_id,
            outcome.c.run_id == released.c.run_id,
            outcome.c.outcome == SUPERSEDED,
        )
        attempt = (
            select(
                released.c.w,
                released.c.w_end,
                released.c.dag_id,
                released.c.run_id,
                released.c.service,
                released.c.time,
                self.sql.number(released.c.payload, "duration_seconds").label("duration"),
            )
            .where(~superseded)
            .cte("attempt")
        )
        return attempt, outcome

    def _production_outcome(self, outcome: CTE) -> Select[Any]:
        p = self.production
        assert p is not None  # noqa: S101 - callers check
        return select(outcome).select_from(
            outcome.join(p, and_(p.c.service == outcome.c.service, p.c.environment == outcome.c.environment))
        )

    # -- statements ----------------------------------------------------------------------------------
    def try_counts(self) -> Select[Any]:
        """(w, service, environment, kind, stage, tries, failed)."""
        t = self.tries()
        return select(
            t.c.w,
            t.c.service,
            t.c.environment,
            t.c.kind,
            t.c.stage,
            func.count(),
            func.sum(case((t.c.failed, 1), else_=0)),
        ).group_by(t.c.w, t.c.service, t.c.environment, t.c.kind, t.c.stage)

    def aws_call_counts(self) -> Select[Any]:
        """(w, service, environment, stage, calls, failed): each entry of an AWS action's ``result.aws_calls``."""
        calls = self.sql.items(events.c.payload, "result", "aws_calls")
        failed = case(
            (calls.text("error").is_not(None), 1),
            (calls.number("http_status") >= 400, 1),
            else_=0,
        )
        query = self._in_window(events.c.service, events.c.environment, events.c.stage, failed.label("failed"))
        query = query.join(calls.from_, true()).where(events.c.kind == audit.AWS_ACTION, calls.is_object)
        c = query.subquery("call")
        return select(
            c.c.w, c.c.service, c.c.environment, c.c.stage, func.count(), func.sum(c.c.failed)
        ).group_by(c.c.w, c.c.service, c.c.environment, c.c.stage)

    def rollback_counts(self) -> Select[Any]:
        """(w, service, environment, phase, rollbacks): the last verify_rollback try of each rollback."""
        phase = events.c.payload["phase"].as_string()
        verify = self._in_window(
            events.c.service,
            events.c.environment,
            phase.label("phase"),
            func.row_number()
            .over(
                partition_by=(self.window.c.w, events.c.dag_id, events.c.run_id, events.c.environment),
                order_by=(events.c.time.desc(), events.c.seq.desc()),
            )
            .label("latest"),
        ).where(events.c.kind == audit.ROLLBACK, phase.in_((VERIFIED, NOT_VERIFIED)))
        v = verify.subquery("verify")
        return (
            select(v.c.w, v.c.service, v.c.environment, v.c.phase, func.count())
            .where(v.c.latest == 1)
            .group_by(v.c.w, v.c.service, v.c.environment, v.c.phase)
        )

    def release_counts(self) -> Select[Any]:
        """(w, service, releases)."""
        attempt, _ = self.releases()
        return select(attempt.c.w, attempt.c.service, func.count()).group_by(attempt.c.w, attempt.c.service)

    def _manual_events(self) -> CTE:
        attempt, _ = self.releases()
        return (
            select(
                attempt.c.w,
                attempt.c.service,
                attempt.c.run_id,
                events.c.kind,
                events.c.payload["action"].as_string().label("action"),
                events.c.payload["state"].as_string().label("state"),
            )
            .select_from(
                attempt.join(
                    events,
                    and_(
                        events.c.dag_id == attempt.c.dag_id,
                        events.c.run_id == attempt.c.run_id,
                        events.c.time < attempt.c.w_end,
                    ),
                )
            )
            .where(events.c.kind.in_(MANUAL_KINDS))
            .cte("manual")
        )

    def intervention_counts(self) -> Select[Any]:
        """(w, service, kind, action, state, interventions) in each window's releases."""
        e = self._manual_events()
        keys = (e.c.w, e.c.service, e.c.kind, e.c.action, e.c.state)
        return select(*keys, func.count()).group_by(*keys)

    def manual_release_counts(self) -> Select[Any]:
        """(w, service, releases with a manual fallback or intervention)."""
        e = self._manual_events()
        return (
            select(e.c.w, e.c.service, func.count(e.c.run_id.distinct()))
            .where(e.c.kind.in_(FALLBACK_KINDS))
            .group_by(e.c.w, e.c.service)
        )

    def production_outcome_counts(self) -> Select[Any]:
        """(w, service, outcome, releases) of each window's releases in their service's production."""
        _, outcome = self.releases()
        o = self._production_outcome(outcome).subquery("production_outcome")
        return select(o.c.w, o.c.service, o.c.outcome, func.count()).group_by(o.c.w, o.c.service, o.c.outcome)

    def distributions(self) -> Select[Any]:
        """(w, service, environment, metric, dimension, p50, p90, max, samples) of every duration."""
        sql, star, blank = self.sql, literal(m.ALL_ENVIRONMENTS, String), literal(m.NO_DIMENSION, String)

        def sample(w: Any, service: Any, environment: Any, metric: str, dimension: Any, value: Any) -> Select[Any]:
            return select(
                w.label("w"),
                service.label("service"),
                environment.label("environment"),
                literal(metric, String).label("metric"),
                dimension.label("dimension"),
                value.label("value"),
            )

        members: list[Select[Any]] = []
        # Releases: duration, and its split into waiting (approvals, the window gate) and active time.
        attempt, outcome = self.releases()
        waits = (
            select(attempt.c.w, attempt.c.dag_id, attempt.c.run_id, func.sum(self._wait()).label("waiting"))
            .select_from(
                attempt.join(
                    events,
                    and_(
                        events.c.dag_id == attempt.c.dag_id,
                        events.c.run_id == attempt.c.run_id,
                        events.c.time <= attempt.c.time,
                    ),
                )
            )
            .where(
                events.c.kind.in_((audit.APPROVAL, audit.GATE_DECISION)),
                self.state.in_(ENDED),
                # This run's last attempt only: a rerun's duration starts again after the clear.
                sql.epoch(events.c.time) >= sql.epoch(attempt.c.time) - attempt.c.duration,
            )
            .group_by(attempt.c.w, attempt.c.dag_id, attempt.c.run_id)
            .subquery("waits")
        )
        waiting = func.coalesce(waits.c.waiting, 0.0)
        waiting = case((waiting > attempt.c.duration, attempt.c.duration), else_=waiting)
        per_release = (
            select(attempt.c.w, attempt.c.service, attempt.c.duration, waiting.label("waiting"))
            .select_from(
                attempt.outerjoin(
                    waits,
                    and_(
                        waits.c.w == attempt.c.w,
                        waits.c.dag_id == attempt.c.dag_id,
                        waits.c.run_id == attempt.c.run_id,
                    ),
                )
            )
            .where(attempt.c.duration.is_not(None))
            .cte("per_release")
        )
        r = per_release.c
        members += [
            sample(r.w, r.service, star, m.RELEASE_DURATION, blank, r.duration),
            sample(r.w, r.service, star, m.RELEASE_WAITING, blank, r.waiting),
            sample(r.w, r.service, star, m.RELEASE_ACTIVE, blank, r.duration - r.waiting),
        ]
        # Task tries: per stage, per task kind, approvals' wait; per environment and for all of them.
        t = self.tries()
        approval = t.c.kind == audit.APPROVAL
        for environment, where in ((t.c.environment, t.c.environment.is_not(None)), (star, true())):
            members += [
                sample(t.c.w, t.c.service, environment, m.STAGE_DURATION, t.c.stage, t.c.duration).where(where),
                sample(t.c.w, t.c.service, environment, m.TASK_DURATION, t.c.kind, t.c.duration).where(where),
                sample(t.c.w, t.c.service, environment, m.APPROVAL_WAIT, blank, t.c.wait).where(where, approval),
                sample(t.c.w, t.c.service, environment, m.APPROVAL_WAIT, t.c.stage, t.c.wait).where(where, approval),
            ]
        if self.production is not None:
            members += [self._lead_times(outcome), self._restores()]
        s = union_all(*members).subquery("sample")
        keys = (s.c.w, s.c.service, s.c.environment, s.c.metric, s.c.dimension)
        ranked = (
            select(
                *keys,
                s.c.value,
                func.row_number().over(partition_by=keys, order_by=s.c.value).label("rank"),
                func.count().over(partition_by=keys).label("n"),
            )
            .where(s.c.value.is_not(None))
            .subquery("ranked")
        )
        ranked_keys = (ranked.c.w, ranked.c.service, ranked.c.environment, ranked.c.metric, ranked.c.dimension)
        # Nearest rank: the value at rank ceil(p * n / 100), in integers on both engines.
        at = {p: (literal(p) * ranked.c.n + 99) // 100 for p in m.PERCENTILES.values()}
        return select(
            *ranked_keys,
            func.max(case((ranked.c.rank == at[50], ranked.c.value))),
            func.max(case((ranked.c.rank == at[90], ranked.c.value))),
            func.max(ranked.c.value),
            func.max(ranked.c.n),
        ).group_by(*ranked_keys)

    def _wait(self) -> Any:
        """What an event adds to its release's waiting: an approval's wait, the window gate's duration."""
        sql = self.sql
        return case(
            (events.c.kind == audit.APPROVAL, sql.number(events.c.payload, "wait_seconds")),
            (events.c.stage == WINDOW_GATE, sql.number(events.c.payload, "duration_seconds")),
        )

    def _lead_times(self, outcome: CTE) -> Select[Any]:
        """Commit (``conf.commit_time``, else the request) to production promotion, per promoted release."""
        sql = self.sql
        promoted = self._production_outcome(outcome).where(outcome.c.outcome == PROMOTED).subquery("promoted")
        requested = events.alias("requested")
        commit_time = requested.c.payload[("conf", "commit_time")].as_string()
        committed = func.coalesce(sql.iso8601_epoch(commit_time), sql.epoch(requested.c.time))
        return select(
            promoted.c.w.label("w"),
            promoted.c.service.label("service"),
            literal(m.ALL_ENVIRONMENTS, String).label("environment"),
            literal(m.LEAD_TIME_FOR_CHANGES, String).label("metric"),
            literal(m.NO_DIMENSION, String).label("dimension"),
            (sql.epoch(promoted.c.time) - committed).label("value"),
        ).select_from(
            promoted.join(
                requested,
                and_(
                    requested.c.kind == audit.RELEASE_REQUESTED,
                    requested.c.dag_id == promoted.c.dag_id,
                    requested.c.run_id == promoted.c.run_id,
                ),
            )
        )

    def _restores(self) -> Select[Any]:
        """From the first production failure after a promotion to the next promotion, per restoring promotion.

        Every ``release_finished`` counts here, not only a run's last: a run that failed in production
        and was cleared and promoted restored production when it was promoted.
        """
        sql, p, w = self.sql, self.production, self.window
        assert p is not None  # noqa: S101 - the caller checks
        items = sql.items(events.c.payload, "outcomes", of="object")
        outcome = items.word("outcome")
        timeline = (
            select(
                events.c.service,
                events.c.time,
                events.c.seq,
                outcome.label("outcome"),
            )
            .select_from(
                events.join(items.from_, true()).join(
                    p, and_(p.c.service == events.c.service, p.c.environment == items.key)
                )
            )
            .where(
                events.c.kind == audit.RELEASE_FINISHED,
                events.c.time < self.high,
                outcome.in_((PROMOTED, *CHANGE_FAILED)),
            )
            .subquery("timeline")
        )
        is_promoted = case((timeline.c.outcome == PROMOTED, 1), else_=0)
        numbered = select(
            timeline,
            # Promotions strictly before this release: the failures after one promotion share it.
            (
                func.sum(is_promoted).over(
                    partition_by=timeline.c.service, order_by=(timeline.c.time, timeline.c.seq)
                )
                - is_promoted
            ).label("since"),
        ).cte("numbered")
        first_failure = (
            select(numbered.c.service, numbered.c.since, func.min(numbered.c.time).label("failed_at"))
            .where(numbered.c.outcome != PROMOTED)
            .group_by(numbered.c.service, numbered.c.since)
            .subquery("first_failure")
        )
        restored = (
            select(
                numbered.c.service,
                numbered.c.time,
                (sql.epoch(numbered.c.time) - sql.epoch(first_failure.c.failed_at)).label("value"),
            )
            .select_from(
                numbered.join(
                    first_failure,
                    and_(first_failure.c.service == numbered.c.service, first_failure.c.since == numbered.c.since),
                )
            )
            .where(numbered.c.outcome == PROMOTED)
            .subquery("restored")
        )
        return select(
            w.c.w.label("w"),
            restored.c.service.label("service"),
            literal(m.ALL_ENVIRONMENTS, String).label("environment"),
            literal(m.TIME_TO_RESTORE, String).label("metric"),
            literal(m.NO_DIMENSION, String).label("dimension"),
            restored.c.value.label("value"),
        ).select_from(
            restored.join(w, and_(restored.c.time >= w.c.w_start, restored.c.time < w.c.w_end))
        )


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

    def as_dicts(self) -> list[dict[str, Any]]:
        return [
            {
                "window": self.windows[w].name,
                "window_end": self.windows[w].end,
                "service": service,
                "environment": environment,
                "metric": metric,
                "dimension": dimension,
                "value": value,
                "samples": samples,
            }
            for (w, service, environment, metric, dimension), (value, samples) in sorted(self.rows.items())
        ]


def _environments(environment: str | None) -> list[str]:
    """An environment's counts also count for ``"*"``; an event of no environment only there."""
    return [environment, m.ALL_ENVIRONMENTS] if environment else [m.ALL_ENVIRONMENTS]


def intervention_kind(kind: str, action: str | None, state: str | None) -> str:
    """The intervention kind (``interventions_per_100_releases``'s dimension) of a manual event."""
    if kind == audit.MANUAL_FALLBACK:
        return m.FALLBACK_STEP
    if kind == audit.WINDOW_OVERRIDE:
        return m.WINDOW_OVERRIDE
    if action == "mark_run":
        return m.RUN_FAILED_BY_HAND if state == FAILED_STATE else m.RUN_MARKED
    return INTERVENTION_ACTIONS.get(action or "", m.OTHER_INTERVENTION)


def measure(conn: Connection, windows: Sequence[Window], production: Mapping[str, str]) -> list[dict[str, Any]]:
    """The metric rows of ``windows`` (without ``computed_at``), read from ``conn``'s audit events."""
    q = _Queries(conn.dialect.name, windows, production)
    out = _Rows(windows)
    star, blank = m.ALL_ENVIRONMENTS, m.NO_DIMENSION

    tries: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
    gates: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
    for w, service, environment, kind, stage, n, failed in conn.execute(q.try_counts()):
        for env in _environments(environment):
            for dimension in (blank, stage or blank):
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
            for dimension in (blank, stage or blank):
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

    # Release-level: releases, manual fallback frequency, interventions per 100 releases, DORA.
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
            out.put(w, service, star, m.DEPLOYMENT_FREQUENCY, blank, promoted / windows[w].days, promoted)
            entered = sum(outcomes.get((w, service, o), 0) for o in ENTERED)
            failed = sum(outcomes.get((w, service, o), 0) for o in CHANGE_FAILED)
            out.rate(w, service, star, m.CHANGE_FAILURE_RATE, blank, failed, entered)

    for w, service, environment, metric, dimension, p50, p90, top, n in conn.execute(q.distributions()):
        for statistic, value in ((m.P50, p50), (m.P90, p90), (m.MAX, top)):
            out.put(
                w,
                service,
                environment,
                m.stored_name(metric, statistic),
                dimension or blank,
                round(float(value), SECONDS_DECIMALS),
                n,
            )
    return out.as_dicts()
