"""The SQL of the release metrics: one ``Statements`` per batch of windows, built for one engine.

Every statement is SQLAlchemy Core (group by, case, window functions, a ``VALUES`` list of the
windows) that SQLite and PostgreSQL both run; the expressions they spell differently come from
``shipflow.metrics.dialect``. Each statement returns per-group rows (counts, or the samples that
are a percentile): ``shipflow.metrics.compute`` turns them into metric rows. The definitions are in
docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    Integer,
    String,
    and_,
    case,
    exists,
    func,
    literal,
    or_,
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
from shipflow.release.outcome import FAILED, PROMOTED, REJECTED, ROLLED_BACK, SUPERSEDED

events = AuditEvent.__table__

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


@dataclass(frozen=True)
class Window:
    """``[start, end)`` in UTC: a day (``name="day"``) or the rolling 7 or 30 days ending at ``end``."""

    name: str
    start: datetime
    end: datetime

    @property
    def days(self) -> int:
        return (self.end - self.start).days


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
def _metric_code(metric: str) -> Any:
    """A distribution's name as a small integer (its index in ``DISTRIBUTIONS``): every sample is sorted
    by it, and an integer sorts faster than a name (about 15% of the whole statement on SQLite)."""
    return literal(m.DISTRIBUTIONS.index(metric), Integer).label("metric")


class Statements:
    """The statements for one batch of windows, built for one dialect.

    Each statement's rows name their window by ``w``, its index in ``windows``.
    """

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
        # Every use of ``kind`` (the filters of the callers too, once SQLite flattens the CTE) through
        # ``by_run``: the events are looked up by their run, not by kind over the whole history.
        kind = self.sql.by_run(events.c.kind)
        return (
            select(
                attempt.c.w,
                attempt.c.service,
                attempt.c.run_id,
                kind.label("kind"),
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
            .where(kind.in_(MANUAL_KINDS))
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
        """(w, service, environment, metric, dimension, is p50, is p90, is max, value, samples): the samples
        of every duration that are one of its statistics. ``metric`` is its index in ``DISTRIBUTIONS``."""
        sql, star, blank = self.sql, literal(m.ALL_ENVIRONMENTS, String), literal(m.NO_DIMENSION, String)

        def sample(w: Any, service: Any, environment: Any, metric: str, dimension: Any, value: Any) -> Select[Any]:
            return select(
                w.label("w"),
                service.label("service"),
                environment.label("environment"),
                _metric_code(metric),
                dimension.label("dimension"),
                value.label("value"),
            )

        members: list[Select[Any]] = []
        # Releases: duration, and its split into waiting (approvals, the window gate) and active time.
        attempt, outcome = self.releases()
        # One outer join from each release to its own events (the (dag_id, run_id) index): a left
        # join keeps the release outer on SQLite, and a release with no waits sums to NULL.
        waited = (
            select(
                attempt.c.w,
                attempt.c.service,
                attempt.c.duration,
                func.coalesce(func.sum(self._wait()), 0.0).label("waited"),
            )
            .select_from(
                attempt.outerjoin(
                    events,
                    and_(
                        events.c.dag_id == attempt.c.dag_id,
                        events.c.run_id == attempt.c.run_id,
                        events.c.time <= attempt.c.time,
                        sql.by_run(events.c.kind).in_((audit.APPROVAL, audit.GATE_DECISION)),
                        self.state.in_(ENDED),
                        # This run's last attempt only: a rerun's duration starts again after the clear.
                        sql.epoch(events.c.time) >= sql.epoch(attempt.c.time) - attempt.c.duration,
                    ),
                )
            )
            .where(attempt.c.duration.is_not(None))
            .group_by(attempt.c.w, attempt.c.dag_id, attempt.c.run_id, attempt.c.service, attempt.c.duration)
            .subquery("waited")
        )
        capped = case((waited.c.waited > waited.c.duration, waited.c.duration), else_=waited.c.waited)
        per_release = select(waited.c.w, waited.c.service, waited.c.duration, capped.label("waiting")).cte(
            "per_release"
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
                # The same order as the rank, framed over the whole partition: one sort for both.
                func.count().over(partition_by=keys, order_by=s.c.value, rows=(None, None)).label("n"),
            )
            .where(s.c.value.is_not(None))
            .subquery("ranked")
        )
        r = ranked.c
        # Nearest rank: the value at rank ceil(p * n / 100), in integers on both engines. Only the
        # ranked rows that are a statistic come back (at most three per group): no second sort.
        at = {statistic: (literal(p) * r.n + 99) // 100 for statistic, p in m.PERCENTILES.items()}
        at[m.MAX] = r.n
        return select(
            r.w,
            r.service,
            r.environment,
            r.metric,
            r.dimension,
            *(case((r.rank == at[statistic], 1), else_=0) for statistic in m.STATISTICS),
            r.value,
            r.n,
        ).where(or_(*(r.rank == at[statistic] for statistic in m.STATISTICS)))

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
            _metric_code(m.LEAD_TIME_FOR_CHANGES),
            literal(m.NO_DIMENSION, String).label("dimension"),
            (sql.epoch(promoted.c.time) - committed).label("value"),
        ).select_from(
            promoted.join(
                requested,
                and_(
                    sql.by_run(requested.c.kind) == audit.RELEASE_REQUESTED,
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
            _metric_code(m.TIME_TO_RESTORE),
            literal(m.NO_DIMENSION, String).label("dimension"),
            restored.c.value.label("value"),
        ).select_from(
            restored.join(w, and_(restored.c.time >= w.c.w_start, restored.c.time < w.c.w_end))
        )
