"""The deployment window gate: a release stage starts only when it can finish inside an open window.

A service spec's ``deployment_window`` names the weekly hours in which a stage may run and the
freezes in which nothing may (holidays, events). :class:`DeploymentWindow` is that calendar: plain
Python that turns wall-clock windows in an IANA timezone into exact instants, DST days included, so
it can be tested to the minute. :class:`DeploymentWindowGate` is the task
(``check_deployment_window``): it passes when the stage fits now, and otherwise waits in the
triggerer until the next opening that fits.

Rules, in one place:

- A window is open from ``start`` (inclusive) to ``end`` (exclusive), wall-clock times in the
  window's timezone. ``end`` may be ``24:00``; a window that ends where the next one starts (Mon
  20:00-24:00 and Tue 00:00-06:00) is one continuous opening.
- On DST days an opening begins the first time the clock reads ``start`` and ends the first time it
  reads ``end``: a clock that skips forward shortens the opening, one set back lengthens it. A time
  the clock skips (02:30 on spring-forward day) falls on the instant of the jump.
- No ``windows`` means open at any time, except in freezes.
- A freeze closes everything from its ``start`` to its ``end``. Dates are whole days in the window's
  timezone, both inclusive; datetimes are exclusive at the ``end`` and, without an offset, read on
  the window's clock.
- A stage that needs ``needed`` time (deploy plus bake) may start at an instant when it is open and
  stays open, with no freeze beginning, for all of ``needed``.
- The calendar is searched 370 days ahead; a stage that fits no opening in that time never starts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSkipException
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import BaseOperator

TASK_ID = "check_deployment_window"
SEARCH_HORIZON = timedelta(days=370)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60

_SPEC_FIELDS = ("timezone", "windows", "freezes")
_WINDOW_FIELDS = ("days", "start", "end")
_FREEZE_FIELDS = ("start", "end", "reason")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::00)?$")  # HH:MM, or HH:MM:00 as pydantic dumps a time
ANY_TIME = "any time"


class DeploymentWindowError(ValueError):
    """A ``deployment_window`` that cannot be read; the message names the field, the value and the fix."""


def utcnow() -> datetime:
    return datetime.now(UTC)


# -- the calendar ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WeeklyWindow:
    """Open on ``days`` (0 = Monday) from ``start`` to ``end``, in minutes after local midnight (end <= 1440)."""

    days: frozenset[int]
    start: int
    end: int


@dataclass(frozen=True)
class Freeze:
    """Closed from ``start`` to ``end`` (UTC instants, end exclusive) because of ``reason``."""

    start: datetime
    end: datetime
    reason: str
    label: str  # the period as the spec wrote it, for messages


@dataclass(frozen=True)
class Opening:
    """A continuous open period. ``frozen_by`` is the freeze that ends it early, if one does.

    ``open_ended`` means it does not close within the search horizon: ``end`` is then only the
    horizon, not a closing time.
    """

    start: datetime
    end: datetime
    frozen_by: Freeze | None = None
    open_ended: bool = False


@dataclass(frozen=True)
class DeploymentWindow:
    """Weekly windows in an IANA timezone, minus freezes. Build it with :meth:`from_spec`."""

    timezone: str
    windows: tuple[WeeklyWindow, ...]
    freezes: tuple[Freeze, ...] = ()

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    # -- reading the spec --------------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: Any, where: str = "deployment_window") -> DeploymentWindow:
        """Read ``{timezone, windows: [{days, start, end}], freezes: [{start, end, reason}]}``.

        :param where: names the spec in error messages, e.g. ``include/services/x.yaml: deployment_window``.
        :raises DeploymentWindowError: naming the field, the value and how to fix it.
        """
        _check_fields(spec, _SPEC_FIELDS, where)
        name = spec.get("timezone")
        tz = _timezone(name, f"{where}.timezone")
        windows, freezes = spec.get("windows") or [], spec.get("freezes") or []
        if not isinstance(windows, list):
            raise DeploymentWindowError(
                f"{where}.windows: expected a list of {{days, start, end}}, got {windows!r}; "
                "e.g. [{days: [mon, tue, wed, thu], start: '09:00', end: '16:00'}]"
            )
        if not isinstance(freezes, list):
            raise DeploymentWindowError(f"{where}.freezes: expected a list of {{start, end, reason}}, got {freezes!r}")
        if not windows and not freezes:
            raise DeploymentWindowError(
                f"{where}: give windows and/or freezes (no windows means any time), or leave it out"
            )
        parsed_freezes = [_freeze(f, tz, f"{where}.freezes[{i}]") for i, f in enumerate(freezes)]
        return cls(
            timezone=name,
            windows=tuple(_window(w, f"{where}.windows[{i}]") for i, w in enumerate(windows)),
            # An empty freeze (a datetime start equal to its end) closes nothing.
            freezes=tuple(sorted((f for f in parsed_freezes if f.start < f.end), key=lambda f: (f.start, f.end))),
        )

    # -- questions ---------------------------------------------------------------------------------
    def is_open(self, now: datetime, needed: timedelta = timedelta(0)) -> bool:
        """True when a stage needing ``needed`` can start at ``now`` and finish before any closing or freeze."""
        opening = self.opening_at(now, needed)
        return opening is not None and now + needed <= opening.end

    def next_opening(self, now: datetime, needed: timedelta = timedelta(0)) -> datetime | None:
        """The first instant at or after ``now`` at which :meth:`is_open` holds; None within 370 days."""
        _check(now, needed)
        latest = now + SEARCH_HORIZON
        for opening in self._openings(now, needed):
            start = max(opening.start, now)
            if start > latest:
                return None
            if start + needed <= opening.end:
                return start.astimezone(UTC)
        return None

    def opening_at(self, now: datetime, needed: timedelta = timedelta(0)) -> Opening | None:
        """The opening ``now`` is in (whether or not ``needed`` fits), or None when closed."""
        _check(now, needed)
        for opening in self._openings(now, needed):
            return opening if opening.start <= now else None
        return None

    def freeze_at(self, now: datetime) -> Freeze | None:
        return next((f for f in self.freezes if f.start <= now < f.end), None)

    def describe(self) -> str:
        """The weekly windows in words: ``Mon-Thu 09:00-16:00, Fri 09:00-12:00 Europe/Berlin``."""
        if not self.windows:
            return f"{ANY_TIME} {self.timezone}"
        days_by_hours: dict[tuple[int, int], set[int]] = {}
        for w in self.windows:
            days_by_hours.setdefault((w.start, w.end), set()).update(w.days)
        ordered = sorted(days_by_hours.items(), key=lambda item: (min(item[1]), item[0]))
        parts = [f"{_day_ranges(days)} {_clock(start)}-{_clock(end)}" for (start, end), days in ordered]
        return f"{', '.join(parts)} {self.timezone}"

    def explain(self, now: datetime, needed: timedelta = timedelta(0)) -> str:
        """One line for a log, an audit event or a failure: open until when, or closed why and until when."""
        _check(now, needed)
        opening = self.opening_at(now, needed)
        stage = f"stage needs {_duration(needed)}" if needed else "stage needs no time"
        if opening is not None and now + needed <= opening.end:
            if opening.open_ended:
                return f"open, not closing within {SEARCH_HORIZON.days} days; {stage}"
            frozen = f" (then frozen: {opening.frozen_by.reason})" if opening.frozen_by else ""
            return f"open until {self._when(opening.end, now)}{frozen}, {_duration(opening.end - now)} left, {stage}"
        freeze = self.freeze_at(now)
        if freeze is not None:
            why = f"frozen: {freeze.reason} ({freeze.label})"
        elif opening is not None:
            frozen = f" when freeze '{opening.frozen_by.reason}' starts" if opening.frozen_by else ""
            why = (
                f"closed for this stage: it needs {_duration(needed)}, but the window closes at "
                f"{self._when(opening.end, now)}{frozen} ({_duration(opening.end - now)} left)"
            )
        else:
            why = f"closed: outside {self.describe()}"
        upcoming = self.next_opening(now, needed)
        if upcoming is None:
            return (
                f"{why}; no opening in the next {SEARCH_HORIZON.days} days is long enough for a stage "
                f"that needs {_duration(needed)} (windows: {self.describe()})"
            )
        return f"{why}; next opening {self._when(upcoming, now)}"

    # -- the search --------------------------------------------------------------------------------
    def _openings(self, since: datetime, needed: timedelta) -> Iterator[Opening]:
        """Openings that end after ``since``, in order, far enough ahead to fit ``needed`` after the horizon.

        Lazy: asking about now computes only the days up to the current or next opening.
        """
        reach = since + SEARCH_HORIZON + min(needed, SEARCH_HORIZON)
        first_day = since.astimezone(self.tz).date() - timedelta(days=1)  # an opening may have begun yesterday
        last_day = reach.astimezone(self.tz).date() + timedelta(days=1)
        edge = self._instant(last_day + timedelta(days=1), 0)
        current: tuple[datetime, datetime] | None = None
        for start, end in self._spans(first_day, last_day):
            if current is not None and start <= current[1]:  # overlapping or adjacent: one opening
                current = (current[0], max(current[1], end))
                continue
            if current is not None:
                yield from self._cut(current, since, edge)
            current = (start, end)
        if current is not None:
            yield from self._cut(current, since, edge)

    def _spans(self, first_day: date, last_day: date) -> Iterator[tuple[datetime, datetime]]:
        """Each day's windows as UTC spans, ordered by start (a day's spans start before the next day's)."""
        weekly = self.windows or (WeeklyWindow(days=frozenset(range(7)), start=0, end=MINUTES_PER_DAY),)
        day = first_day
        while day <= last_day:
            windows = [w for w in weekly if day.weekday() in w.days]
            spans = sorted((self._instant(day, w.start), self._instant(day, w.end)) for w in windows)
            # A window wholly inside a skipped hour (02:00-02:30 on spring-forward day) never opens.
            yield from ((start, end) for start, end in spans if start < end)
            day += timedelta(days=1)

    def _cut(self, span: tuple[datetime, datetime], since: datetime, edge: datetime) -> Iterator[Opening]:
        """Split a span around the freezes inside it; keep the parts that end after ``since``."""
        start, end = span
        for freeze in self.freezes:
            if freeze.end <= start or freeze.start >= end:
                continue
            if freeze.start > start and freeze.start > since:
                yield Opening(start, freeze.start, frozen_by=freeze)
            start = max(start, freeze.end)
        if start < end and end > since:
            yield Opening(start, end, open_ended=end >= edge)

    def _instant(self, day: date, minutes: int) -> datetime:
        return first_instant(datetime.combine(day, time()) + timedelta(minutes=minutes), self.tz)

    def _when(self, instant: datetime, now: datetime) -> str:
        """``16:00 CET`` today, ``Tue 09:00 CET`` within a week, else with the date."""
        local, today = instant.astimezone(self.tz), now.astimezone(self.tz).date()
        clock = local.strftime("%H:%M %Z")
        if local.date() == today:
            return clock
        if 0 < (local.date() - today).days < 7:
            return f"{local:%a} {clock}"
        return f"{local:%a %Y-%m-%d} {clock}"


def first_instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The first UTC instant at which the clock in ``tz`` reads ``wall`` or later.

    For an ambiguous time (the repeated hour when clocks go back) that is the first occurrence; for a
    time the clock skips (clocks go forward) it is the instant of the jump.
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    # In a gap, fold=1 reads it with the offset after the jump (an instant before it), fold=0 with the
    # offset before (an instant after it); the jump lies between: bisect to the second.
    lo = int(wall.replace(tzinfo=tz, fold=1).timestamp())
    hi = int(first.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


# -- parsing helpers -------------------------------------------------------------------------------
def _check_fields(value: Any, allowed: tuple[str, ...], where: str) -> None:
    if not isinstance(value, Mapping):
        raise DeploymentWindowError(f"{where}: expected a mapping with {', '.join(allowed)}, got {value!r}")
    unknown = sorted(str(key) for key in value if key not in allowed)
    if unknown:
        raise DeploymentWindowError(f"{where}: unknown field(s) {', '.join(unknown)}; expected {', '.join(allowed)}")


def _timezone(name: Any, where: str) -> ZoneInfo:
    hint = "use an IANA name such as Europe/Berlin, America/New_York or UTC"
    if not isinstance(name, str) or not name:
        raise DeploymentWindowError(f"{where}: required, got {name!r}; {hint}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DeploymentWindowError(f"{where}: unknown timezone {name!r}; {hint}") from None


def _window(spec: Any, where: str) -> WeeklyWindow:
    _check_fields(spec, _WINDOW_FIELDS, where)
    days = spec.get("days")
    if not isinstance(days, list) or not days:
        raise DeploymentWindowError(f"{where}.days: expected a list of days such as [mon, tue], got {days!r}")
    numbers = set()
    for day in days:
        if not isinstance(day, str) or day.lower() not in DAYS:
            raise DeploymentWindowError(f"{where}.days: unknown day {day!r}; use {', '.join(DAYS)}")
        numbers.add(DAYS.index(day.lower()))
    start = _minutes(spec.get("start"), f"{where}.start", allow_midnight_end=False)
    end = _minutes(spec.get("end"), f"{where}.end", allow_midnight_end=True)
    if end <= start:
        raise DeploymentWindowError(
            f"{where}: end {_clock(end)} is not after start {_clock(start)}; a window past midnight is two "
            "windows, e.g. mon 22:00-24:00 and tue 00:00-06:00 (they join into one opening)"
        )
    return WeeklyWindow(days=frozenset(numbers), start=start, end=end)


def _minutes(value: Any, where: str, *, allow_midnight_end: bool) -> int:
    if isinstance(value, time) and not value.second and not value.microsecond:
        return value.hour * 60 + value.minute
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 16:00 as the base-60 number 960.
        raise DeploymentWindowError(f"{where}: got the number {value}; quote the time in YAML, e.g. '16:00'")
    limit = "24:00" if allow_midnight_end else "23:59"
    match = _CLOCK.match(value) if isinstance(value, str) else None
    if match is not None:
        hours, minutes = int(match[1]), int(match[2])
        total = hours * 60 + minutes
        if minutes < 60 and (total < MINUTES_PER_DAY or (allow_midnight_end and total == MINUTES_PER_DAY)):
            return total
    raise DeploymentWindowError(f"{where}: {value!r} is not a time of day; write HH:MM from 00:00 to {limit}")


def _freeze(spec: Any, tz: ZoneInfo, where: str) -> Freeze:
    _check_fields(spec, _FREEZE_FIELDS, where)
    reason = spec.get("reason", "freeze")
    if not isinstance(reason, str) or not reason.strip():
        raise DeploymentWindowError(f"{where}.reason: expected text saying why, got {reason!r}")
    first = _freeze_bound(spec.get("start"), tz, f"{where}.start")
    last = _freeze_bound(spec.get("end"), tz, f"{where}.end")
    # A date is a whole day: a freeze starts at its first midnight and ends after its last day.
    start = _freeze_instant(first, tz, end=False)
    end = _freeze_instant(last, tz, end=True)
    if end < start:
        raise DeploymentWindowError(f"{where}: end {spec.get('end')} is before start {spec.get('start')}")

    def show(bound: date | datetime, instant: datetime) -> str:
        return bound.isoformat() if type(bound) is date else instant.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")

    label = f"{show(first, start)} to {show(last, end)}" + (" inclusive" if type(last) is date else "")
    return Freeze(start=start.astimezone(UTC), end=end.astimezone(UTC), reason=reason.strip(), label=label)


def _freeze_bound(value: Any, tz: ZoneInfo, where: str) -> date | datetime:
    hint = "write a date (2026-12-24, a whole day) or a date and time (2026-12-24T18:00:00, on the window's "
    hint += "clock unless it has an offset such as +01:00)"
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
        except ValueError:
            raise DeploymentWindowError(f"{where}: {value!r} is not a date or datetime; {hint}") from None
    if isinstance(value, date):  # a datetime is a date too
        return value
    raise DeploymentWindowError(f"{where}: required, got {value!r}; {hint}")


def _freeze_instant(bound: date | datetime, tz: ZoneInfo, *, end: bool) -> datetime:
    if isinstance(bound, datetime):
        if bound.tzinfo is None or bound.utcoffset() is None:
            return first_instant(bound, tz)  # a wall-clock time in the window's timezone
        return bound
    return first_instant(datetime.combine(bound + timedelta(days=1) if end else bound, time()), tz)


def _check(now: datetime, needed: timedelta) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now.isoformat()}")
    if needed < timedelta(0):
        raise ValueError(f"needed must not be negative, got {needed}")


# -- words -----------------------------------------------------------------------------------------
def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _day_ranges(days: set[int] | frozenset[int]) -> str:
    """{0, 1, 2, 3, 5} -> ``Mon-Thu,Sat``."""
    runs: list[list[int]] = []
    for day in sorted(days):
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    name = [d.capitalize() for d in DAYS]
    return ",".join(name[r[0]] if len(r) == 1 else f"{name[r[0]]}-{name[r[-1]]}" for r in runs)


def _duration(delta: timedelta) -> str:
    """``5h10m``, ``25m``, ``2d3h``, ``40s`` (whole minutes, rounded down, past the first minute)."""
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return "".join(f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (rest // 60, "m")) if n)


# -- the task --------------------------------------------------------------------------------------
class DeploymentWindowGate(BaseOperator):
    """Pass when a stage that needs ``needed_seconds`` fits in the deployment window; otherwise wait for it.

    Inside the window the task returns its evidence at once. Outside it (or when the time left or a
    coming freeze leaves too little room), a deferrable gate hands the wait to the triggerer until the
    next opening that fits, then checks the window again when it resumes (a late wake-up that no
    longer fits waits for the following opening). A window that never fits within 370 days fails at once.

    An *emergency* release (the run's request has ``emergency: true`` and a reason) does not wait: the
    gate asks the override approvers instead (separation of duties applies: the one who triggered the
    run cannot approve). Approved, the stage starts now and the override is recorded in the evidence and
    notified (``window_override``); rejected or timed out, the gate fails.

    In the ``superseded`` execution mode the wait also ends when a newer release of the service waits
    behind this run: the gate then skips (the run gives way; see :mod:`shipflow.release.triggers`).

    A non-deferrable gate does not wait: outside the window it fails at once, without retries,
    with the explanation. Use it where a release must not start late (a run outside the window is
    a mistake, not something to sit out in a worker slot).

    :param window: the spec's ``deployment_window``: ``{timezone, windows: [{days, start, end}],
        freezes: [{start, end, reason}]}``, or a :class:`DeploymentWindow`. Checked when the DAG is parsed.
    :param needed_seconds: the time the guarded stage needs inside the window (deploy plus bake).
    :param deferrable: wait for the next opening in the triggerer (default) instead of failing.
    :param override_approvers: who may approve an emergency override (people); none = no overrides.
    :param override_timeout: how long an override request waits for an answer.
    :param supersede: watch for newer releases while waiting (``execution_mode: superseded``).
    :param poll_interval: seconds between looks for newer releases and override answers.
    :param notifications: the spec's ``notifications`` section, for ``window_override``.
    :param now: the clock, a callable returning an aware datetime (tests pass a fixed one).
    :return: the evidence, JSON-safe: ``open`` (true, or false when an override let the stage start),
        ``checked_at`` and ``closes_at`` (ISO, UTC; ``closes_at`` is None when the window does not close
        within 370 days), ``needed_s``, ``waited_s`` (time spent waiting for the opening), ``window``
        (the windows in words), ``text`` (the explanation) and ``override`` (who approved, when, why).
    """

    ui_color = "#c9e4ca"

    def __init__(
        self,
        *,
        window: Mapping[str, Any] | DeploymentWindow,
        needed_seconds: float = 0,
        deferrable: bool = True,
        override_approvers: Sequence[str] = (),
        override_timeout: timedelta | None = timedelta(hours=1),
        supersede: bool = False,
        poll_interval: float = 30,
        notifications: Mapping[str, Any] | None = None,
        aws_conn_id: str | None = None,
        region_name: str | None = None,
        now: Callable[[], datetime] = utcnow,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(window, DeploymentWindow):
            self.calendar = window
        else:
            self.calendar = DeploymentWindow.from_spec(window, where=f"{self.task_id}: window")
        if (
            isinstance(needed_seconds, bool)
            or not isinstance(needed_seconds, (int, float))
            or not math.isfinite(needed_seconds)
            or needed_seconds < 0
        ):
            raise ValueError(f"{self.task_id}: needed_seconds must be a number of seconds >= 0, got {needed_seconds!r}")
        self.window = window
        self.needed_seconds = needed_seconds
        self.deferrable = deferrable
        self.override_approvers = list(override_approvers)
        self.override_timeout = override_timeout
        self.supersede = supersede
        self.poll_interval = poll_interval
        self.notifications = dict(notifications or {})
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.now = now

    @property
    def needed(self) -> timedelta:
        return timedelta(seconds=self.needed_seconds)

    def execute(self, context: Any) -> dict[str, Any]:
        return self.check(self.now(), deferred_at=None, context=context)

    def execute_complete(self, context: Any, event: Any = None, deferred_at: str | None = None) -> dict[str, Any]:
        if isinstance(event, Mapping) and "superseded" in event:
            context["ti"].xcom_push(key="superseded", value=dict(event))
            raise AirflowSkipException(
                f"Deployment window: superseded while waiting ({event['superseded']} newer release(s) waiting)"
            )
        # The event is only the moment the trigger fired: the window is checked against our own clock.
        at = datetime.fromisoformat(deferred_at) if deferred_at else None
        return self.check(self.now(), deferred_at=at, context=context)

    def check(self, now: datetime, deferred_at: datetime | None, context: Any = None) -> dict[str, Any]:
        text = self.calendar.explain(now, self.needed)
        if self.calendar.is_open(now, self.needed):
            self.log.info("Deployment window: %s", text)
            return self.evidence(now, deferred_at, text)
        request = _request(context)
        if request.get("emergency") and deferred_at is None:
            return self._ask_override(context, text, request)
        if not self.deferrable:
            raise AirflowFailException(f"Deployment window: {text} (deferrable=False: the gate does not wait)")
        upcoming = self.calendar.next_opening(now, self.needed)
        if upcoming is None:
            raise AirflowFailException(f"Deployment window: {text}; change the windows or the stage's time")
        self.log.info("Deployment window: %s; waiting in the triggerer until %s", text, upcoming.isoformat())
        if self.supersede and context is not None:
            from shipflow.release.triggers import ReleaseWaitTrigger

            trigger: Any = ReleaseWaitTrigger(
                moment=upcoming, dag_id=context["ti"].dag_id, watch_newer=True, poll_interval=self.poll_interval
            )
        else:
            trigger = DateTimeTrigger(moment=upcoming)
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            kwargs={"deferred_at": (deferred_at or now).isoformat()},
        )

    # -- emergency override --------------------------------------------------------------------------
    def _ask_override(self, context: Any, text: str, request: Mapping[str, Any]) -> dict[str, Any]:
        from airflow.sdk.definitions.param import ParamsDict
        from airflow.sdk.execution_time.hitl import upsert_hitl_detail

        from shipflow.release.approval import APPROVE, REJECT, ApprovalPolicy, ApprovalState, comment_param
        from shipflow.release.triggers import ApprovalTrigger

        triggered_by = context["dag_run"].triggering_user_name
        policy = ApprovalPolicy(self.override_approvers, 1, self.override_timeout)
        if (why := policy.shortfall(triggered_by)) is not None:
            raise AirflowFailException(f"Deployment window: {text}; an emergency override cannot be approved: {why}")
        state = ApprovalState.start(triggered_by, self.override_timeout)
        eligible = policy.eligible(triggered_by)
        params = ParamsDict(comment_param())
        serialized = {k: params.get_param(k).serialize() for k in params}
        ti = context["task_instance"]
        upsert_hitl_detail(
            ti_id=ti.id,
            options=[APPROVE, REJECT],
            subject=f"Emergency override: start {ti.task_id.split('.')[0]} of {ti.dag_id} outside its window?",
            body=(
                f"**{text}**\n\nEmergency reason given by {triggered_by or 'the trigger'}: "
                f"{request.get('emergency_reason')}\n\nApprove to start this stage now; reject to stop the release."
            ),
            defaults=[REJECT],
            multiple=False,
            params=serialized,
            assigned_users=[{"id": p, "name": p} for p in eligible],
        )
        self.log.info("Deployment window: %s; emergency release: asking %s for an override", text, ", ".join(eligible))
        self.defer(
            trigger=ApprovalTrigger(
                ti_id=ti.id,
                options=[APPROVE, REJECT],
                params=serialized,
                defaults=[REJECT],
                timeout_datetime=datetime.fromisoformat(state.timeout_at) if state.timeout_at else None,
                poke_interval=self.poll_interval,
                dag_id=ti.dag_id,
                watch_newer=self.supersede,
            ),
            method_name="execute_override",
            kwargs={**state.as_kwargs(), "reason": request.get("emergency_reason"), "text": text},
        )

    def execute_override(self, context: Any, event: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        from shipflow.release.approval import APPROVE, answer_of
        from shipflow.release.notify import notify

        if "superseded" in event:
            context["ti"].xcom_push(key="superseded", value=dict(event))
            raise AirflowSkipException("Deployment window: superseded while waiting for the override approval")
        answer = answer_of(event)
        text = kwargs.get("text", "")
        if event.get("error") or event.get("timedout") or answer["user"] is None:
            raise AirflowFailException(
                f"Deployment window: {text}; the emergency override was not approved within {self.override_timeout}"
            )
        if answer["choice"] != APPROVE:
            comment = f" ({answer['comment']})" if answer["comment"] else ""
            raise AirflowFailException(
                f"Deployment window: {text}; the emergency override was rejected by {answer['user']}{comment}"
            )
        now = self.now()
        override = {
            "approved_by": answer["user"],
            "at": answer["at"],
            "comment": answer["comment"],
            "reason": kwargs.get("reason"),
            "triggered_by": kwargs.get("triggered_by"),
            "requested_at": kwargs.get("requested_at"),
        }
        ti = context["ti"]
        notify(
            self.notifications,
            "window_override",
            subject=f"Shipflow: window override for {ti.dag_id} ({ti.task_id.split('.')[0]})",
            message=f"{ti.dag_id} run {ti.run_id}: {ti.task_id.split('.')[0]} starts outside its deployment window "
            f"({text}). Override approved by {answer['user']}; reason: {kwargs.get('reason')}.",
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
        )
        self.log.warning("Deployment window overridden: %s", override)
        evidence = {**self.evidence(now, None, text), "open": False, "override": override}
        return evidence

    def evidence(self, now: datetime, deferred_at: datetime | None, text: str) -> dict[str, Any]:
        opening = self.calendar.opening_at(now, self.needed)
        closes_at = None if opening is None or opening.open_ended else _iso(opening.end)
        return {
            "open": True,
            "checked_at": _iso(now),
            "closes_at": closes_at,
            "needed_s": self.needed_seconds,
            "waited_s": round((now - deferred_at).total_seconds(), 3) if deferred_at else 0.0,
            "window": self.calendar.describe(),
            "text": text,
            "override": None,
        }


def _request(context: Any) -> Mapping[str, Any]:
    """The run's release request (``check_release_request``'s result), or {} outside a release DAG."""
    pull = getattr((context or {}).get("ti"), "xcom_pull", None)
    return (pull(task_ids="check_release_request") or {}) if pull else {}


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="seconds")
