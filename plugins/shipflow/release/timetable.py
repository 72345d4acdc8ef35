"""Release trains: a timetable that schedules a release at each opening of a deployment window.

A release train is a scheduled run of a release DAG that leaves when the deployment window opens,
instead of waiting for CI to trigger it. :class:`DeploymentWindowTimetable` reads the same
``{timezone, windows, freezes}`` spec as the deployment window gate, and the same
:class:`~shipflow.gates.window.DeploymentWindow` calendar answers every question, so the
timetable and the gate cannot disagree about when a stage fits. The Airflow UI shows the windows
as the DAG's schedule and the next train as its next run.

Rules, in one place:

- One train per opening where a stage that needs ``needed_seconds`` fits (the gate's rule): an
  opening that a freeze or the closing time leaves too short gets no train.
- A train's data interval is the opening it runs in, ``[start, end)``; its logical date and its
  ``run_after`` are the opening's start (or the ``start_date``, if that falls inside the opening).
- An opening longer than a day (a calendar open around the clock, minus freezes, or one that
  never closes within the calendar's 370-day horizon) gets one train per local day: the interval
  is that day's part of the opening, from local midnight to local midnight.
- The next train is searched after the end of the last train's interval: a calendar edited
  between two trains never gives them overlapping intervals.
- ``catchup=False`` (the default for release DAGs): no backlog of missed openings. The search
  starts now; if an opening is under way and the stage still fits in what is left of it, that
  opening's train is due at once (its ``run_after`` is the opening's start, already past).
  ``catchup=True`` starts from ``start_date`` and runs every opening since.
- ``end_date`` (``restriction.latest``) is inclusive: a train that would leave after it never runs.
- A manual run (CI, the UI) gets the opening it was triggered in as its data interval, or the
  instant itself outside the windows.

Airflow 3.3 loads a custom timetable only from a plugin: ``plugins/shipflow_plugin.py`` registers
this class. It subclasses the core ``airflow.timetables.base.Timetable``: the Task SDK
(``airflow.sdk``) has no base class for custom timetables (its ``BaseTimetable`` is for Airflow's
built-in ones, which have their own serializers), and the DAG serializer accepts a custom
timetable only when it is a core ``Timetable`` registered by a plugin.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pendulum
from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction, Timetable

from shipflow.gates.window import DeploymentWindow, DeploymentWindowError, first_instant, utcnow

ONE_DAY = timedelta(days=1)
DESCRIPTION_LIMIT = 1000  # the metadata DB's dag.timetable_description column is VARCHAR(1000)


class DeploymentWindowTimetable(Timetable):
    """Schedule a release train at each opening of a deployment window where the stage fits.

    :param window: a ``deployment_window`` spec: ``{timezone, windows: [{days, start, end}],
        freezes: [{start, end, reason}]}``, checked when the DAG is parsed (a mistake is an
        import error naming the field).
    :param needed_seconds: the time the train's guarded stage needs inside the window (deploy
        plus bake), as for :class:`~shipflow.gates.window.DeploymentWindowGate`.
    :param where: names the spec in error messages, e.g. ``include/services/x.yaml: release_train``.
    :param now: the clock, a callable returning an aware datetime (tests pass a fixed one).
    """

    periodic = True
    can_be_scheduled = True
    # No limit of our own: the DAG decides. Release DAGs already queue with max_active_runs=1, and a
    # limit here would also forbid a DAG from letting a manual release overlap a train.
    active_runs_limit = None

    def __init__(
        self,
        window: Mapping[str, Any],
        needed_seconds: float = 0,
        *,
        where: str = "release_train",
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.calendar = DeploymentWindow.from_spec(window, where=where)
        if (
            isinstance(needed_seconds, bool)
            or not isinstance(needed_seconds, (int, float))
            or not math.isfinite(needed_seconds)
            or needed_seconds < 0
        ):
            raise DeploymentWindowError(
                f"{where}: needed_seconds must be a number of seconds >= 0 (deploy plus bake), got {needed_seconds!r}"
            )
        self.window = _json_safe(window)
        self.needed_seconds = needed_seconds
        self.now = now

    @property
    def needed(self) -> timedelta:
        return timedelta(seconds=self.needed_seconds)

    # -- what the UI shows ---------------------------------------------------------------------
    @property
    def summary(self) -> str:
        """The windows in words, the DAG list's schedule column: ``Mon-Thu 09:00-16:00 Europe/Berlin``."""
        return self.calendar.describe()

    @property
    def description(self) -> str:
        """One sentence for the DAG details page."""
        freezes = len(self.calendar.freezes)
        fits = f", at the first moment a stage of {self.needed_seconds / 60:g} min fits" if self.needed_seconds else ""
        text = (
            f"Release train: one run per opening of {self.calendar.describe()}{fits}; "
            f"{freezes} freeze{'' if freezes == 1 else 's'}."
        )
        return text if len(text) <= DESCRIPTION_LIMIT else text[: DESCRIPTION_LIMIT - 1] + "…"

    # -- serialization: the dag-processor writes it, the scheduler and the api-server read it ----
    def serialize(self) -> dict[str, Any]:
        return {"window": self.window, "needed_seconds": self.needed_seconds}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> DeploymentWindowTimetable:
        return cls(data["window"], data["needed_seconds"])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeploymentWindowTimetable):
            return NotImplemented
        return self.serialize() == other.serialize()

    def __hash__(self) -> int:
        return hash(json.dumps(self.serialize(), sort_keys=True))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.summary!r}, needed_seconds={self.needed_seconds!r})"

    # -- scheduling ----------------------------------------------------------------------------
    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        candidates: list[datetime] = []
        if last_automated_data_interval is not None:
            candidates.append(last_automated_data_interval.end)  # one train per opening
        if restriction.earliest is not None:
            candidates.append(restriction.earliest)
        if not restriction.catchup or not candidates:
            candidates.append(self.now())  # no backlog of missed openings
        since = max(candidates)
        departs = self.calendar.next_opening(since, self.needed)
        if departs is None:  # nothing fits within the calendar's horizon; asked again after each parse
            return None
        if restriction.latest is not None and departs > restriction.latest:
            return None
        start, end = self.train_interval(departs)
        if last_automated_data_interval is not None:
            start = max(start, last_automated_data_interval.end)
        # A train found mid-opening (catchup off) is due at once: run_after is the opening's start, in
        # the past, rather than now, so that parsing the DAG again does not move it (nor its run id).
        run_after = max(start, restriction.earliest) if restriction.earliest is not None else start
        return DagRunInfo(run_after=_aware(run_after), data_interval=DataInterval(_aware(start), _aware(end)))

    def infer_manual_data_interval(self, *, run_after: datetime) -> DataInterval:
        if self.calendar.opening_at(run_after) is None:
            return DataInterval.exact(_aware(run_after))
        start, end = self.train_interval(run_after)
        return DataInterval(_aware(start), _aware(end))

    def train_interval(self, instant: datetime) -> tuple[datetime, datetime]:
        """The data interval of a train at ``instant``, which must be inside an opening (UTC)."""
        opening = self.calendar.opening_at(instant)
        if opening is None:
            raise ValueError(f"{instant.isoformat()} is outside {self.calendar.describe()}")
        if not opening.open_ended and opening.end - opening.start <= ONE_DAY:
            return opening.start, opening.end
        # A day-long-plus opening: one train per local day (DST days are 23 or 25 hours long).
        tz = self.calendar.tz
        day = instant.astimezone(tz).date()
        midnight = first_instant(datetime.combine(day, time()), tz)
        next_midnight = first_instant(datetime.combine(day + ONE_DAY, time()), tz)
        end = next_midnight if opening.open_ended else min(next_midnight, opening.end)
        return max(opening.start, midnight), end


def release_train_timetable(
    window_spec: Mapping[str, Any], needed_seconds: float, *, where: str = "release_train"
) -> DeploymentWindowTimetable:
    """The timetable of a service's release train, for the release DAG builder.

    :param window_spec: the ``deployment_window`` spec the trains leave in (JSON-safe or as YAML read it).
    :param needed_seconds: the time the guarded stage needs (deploy plus bake), as the gate is given.
    :param where: names the spec in error messages, e.g. ``include/services/x.yaml: release_train``.
    :raises DeploymentWindowError: naming the field, the value and how to fix it.
    """
    return DeploymentWindowTimetable(window_spec, needed_seconds, where=where)


def _aware(instant: datetime) -> pendulum.DateTime:
    """Airflow's scheduler works with pendulum datetimes in UTC."""
    return pendulum.instance(instant.astimezone(UTC))


def _json_safe(value: Any) -> Any:
    """The spec as JSON (dates, datetimes and times as ISO text), which ``from_spec`` reads back the same."""
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, datetime | date):  # a date stays a whole day, a datetime keeps its offset (or none)
        return value.isoformat()
    if isinstance(value, time):
        return value.strftime("%H:%M")  # from_spec has rejected seconds already
    return value
