"""The deployment window: calendar logic to the minute (DST days, 24:00, joined windows, freezes) and the gate task."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml
from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk.exceptions import TaskDeferred

from shipflow.gates.window import TASK_ID, DeploymentWindow, DeploymentWindowError, DeploymentWindowGate
from tests.aws.conftest import TaskInstanceInfo, make_context

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE_HOURS = {
    "timezone": "Europe/Berlin",
    "windows": [{"days": ["mon", "tue", "wed", "thu"], "start": "09:00", "end": "16:00"}],
}


def berlin(text: str) -> datetime:
    """``2026-11-23 10:50`` on the Berlin wall clock (2026-11-23 is a Monday)."""
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def calendar(*windows: tuple[list[str], str, str], freezes=(), timezone="Europe/Berlin") -> DeploymentWindow:
    return DeploymentWindow.from_spec(
        {
            "timezone": timezone,
            "windows": [{"days": days, "start": start, "end": end} for days, start, end in windows],
            "freezes": list(freezes),
        }
    )


# -- weekly windows ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("now", "needed", "is_open", "next_opening"),
    [
        ("2026-11-23 10:50", 25, True, "2026-11-23 10:50"),  # inside
        ("2026-11-23 09:00", 0, True, "2026-11-23 09:00"),  # the start is inside
        ("2026-11-23 08:00", 25, False, "2026-11-23 09:00"),  # before, same day
        ("2026-11-23 16:00", 0, False, "2026-11-24 09:00"),  # the end is outside
        ("2026-11-23 15:35", 25, True, "2026-11-23 15:35"),  # ends exactly at closing
        ("2026-11-23 15:36", 25, False, "2026-11-24 09:00"),  # one minute short: the next day
        ("2026-11-26 15:50", 25, False, "2026-11-30 09:00"),  # Thursday late: next Monday
        ("2026-11-27 10:00", 25, False, "2026-11-30 09:00"),  # Friday is not a window day
        ("2026-11-28 12:00", 25, False, "2026-11-30 09:00"),  # weekend
        ("2026-11-23 09:00", 7 * 60, True, "2026-11-23 09:00"),  # exactly the whole window
        ("2026-11-23 10:00", 7 * 60 + 1, False, None),  # longer than any window: never
    ],
)
def test_office_hours(now, needed, is_open, next_opening):
    window = DeploymentWindow.from_spec(OFFICE_HOURS)
    assert window.is_open(berlin(now), minutes(needed)) is is_open
    expected = berlin(next_opening) if next_opening else None
    assert window.next_opening(berlin(now), minutes(needed)) == expected


@pytest.mark.parametrize(
    ("now", "needed", "text"),
    [
        ("2026-11-23 10:50", 25, "open until 16:00 CET, 5h10m left, stage needs 25m"),
        ("2026-11-28 12:00", 25, "closed: outside Mon-Thu 09:00-16:00 Europe/Berlin; next opening Mon 09:00 CET"),
        (
            "2026-11-23 15:50",
            25,
            "closed for this stage: it needs 25m, but the window closes at 16:00 CET (10m left); "
            "next opening Tue 09:00 CET",
        ),
        ("2026-11-23 08:30", 0, "closed: outside Mon-Thu 09:00-16:00 Europe/Berlin; next opening 09:00 CET"),
        (
            "2026-11-23 10:00",
            8 * 60,
            "closed for this stage: it needs 8h, but the window closes at 16:00 CET (6h left); no opening in "
            "the next 370 days is long enough for a stage that needs 8h (windows: Mon-Thu 09:00-16:00 Europe/Berlin)",
        ),
    ],
)
def test_explanations_say_when_and_why(now, needed, text):
    assert DeploymentWindow.from_spec(OFFICE_HOURS).explain(berlin(now), minutes(needed)) == text


def test_opening_far_ahead_names_the_date():
    window = calendar(
        (["mon"], "09:00", "16:00"), freezes=[{"start": "2026-11-30", "end": "2026-12-31", "reason": "q4"}]
    )
    assert window.explain(berlin("2026-11-24 10:00")).endswith("next opening Mon 2027-01-04 09:00 CET")


def test_describe_groups_days_and_hours():
    window = calendar(
        (["fri"], "09:00", "12:00"),
        (["mon", "tue", "wed", "thu"], "09:00", "16:00"),
        (["sat", "Sun"], "10:00", "11:00"),
        timezone="UTC",
    )
    assert window.describe() == "Mon-Thu 09:00-16:00, Fri 09:00-12:00, Sat-Sun 10:00-11:00 UTC"


# -- 24:00 and windows that join ---------------------------------------------------------------------
def test_a_window_may_end_at_midnight():
    window = calendar((["mon"], "20:00", "24:00"))
    assert window.is_open(berlin("2026-11-23 21:00"), minutes(180))
    assert not window.is_open(berlin("2026-11-23 21:00"), minutes(181))
    assert window.explain(berlin("2026-11-23 21:00"), minutes(180)) == (
        "open until Tue 00:00 CET, 3h left, stage needs 3h"
    )


@pytest.mark.parametrize(
    ("windows", "now", "needed", "fits"),
    [
        ([(["mon"], "20:00", "24:00"), (["tue"], "00:00", "06:00")], "2026-11-23 21:00", 9 * 60, True),
        ([(["mon"], "20:00", "24:00"), (["tue"], "00:00", "06:00")], "2026-11-23 21:00", 9 * 60 + 1, False),
        ([(["mon"], "20:00", "24:00")], "2026-11-23 21:00", 9 * 60, False),  # alone it is 3h
        ([(["sun"], "22:00", "24:00"), (["mon"], "00:00", "02:00")], "2026-11-29 23:00", 180, True),  # over the week
        ([(["mon"], "09:00", "12:00"), (["mon"], "11:00", "16:00")], "2026-11-23 10:00", 360, True),  # overlapping
        ([(["mon"], "09:00", "12:00"), (["mon"], "12:01", "16:00")], "2026-11-23 10:00", 180, False),  # a gap
    ],
)
def test_adjacent_windows_are_one_opening(windows, now, needed, fits):
    assert calendar(*windows).is_open(berlin(now), minutes(needed)) is fits


def test_joined_windows_report_the_joined_closing_time_and_next_fit():
    window = calendar((["mon"], "20:00", "24:00"), (["tue"], "00:00", "06:00"))
    now = berlin("2026-11-23 21:00")
    assert window.opening_at(now).end == berlin("2026-11-24 06:00")
    assert window.next_opening(now, minutes(9 * 60 + 1)) == berlin("2026-11-30 20:00")


def test_always_open_does_not_pretend_to_close():
    window = calendar((["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "00:00", "24:00"))
    now = berlin("2026-11-23 21:00")
    assert window.is_open(now, timedelta(days=30))
    assert window.opening_at(now).open_ended
    assert window.explain(now, minutes(25)) == "open, not closing within 370 days; stage needs 25m"


# -- DST (Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET) --------
@pytest.mark.parametrize(
    ("start", "end", "opens", "closes"),
    [
        # Sunday 00:00-06:00 lasts 5h on spring-forward day and 7h on fall-back day.
        ("00:00", "06:00", "2026-03-28 23:00", "2026-03-29 04:00"),
        ("00:00", "06:00", "2026-10-24 22:00", "2026-10-25 05:00"),
        # Office hours keep the wall clock: 09:00 is 07:00 UTC in summer, 08:00 UTC in winter.
        ("09:00", "16:00", "2026-03-29 07:00", "2026-03-29 14:00"),
        ("09:00", "16:00", "2026-10-25 08:00", "2026-10-25 15:00"),
        # 02:30 does not exist on spring-forward day: the window opens at the jump (03:00 CEST).
        ("02:30", "05:00", "2026-03-29 01:00", "2026-03-29 03:00"),
        # 02:30 happens twice on fall-back day: the window opens at the first one (CEST) and lasts 2h30m.
        ("02:30", "04:00", "2026-10-25 00:30", "2026-10-25 03:00"),
    ],
)
def test_dst_days(start, end, opens, closes):
    window = calendar((["sun"], start, end))
    opening, closing = utc(opens), utc(closes)
    length = closing - opening
    assert not window.is_open(opening - timedelta(seconds=1))
    assert window.next_opening(opening - timedelta(hours=12)) == opening
    assert window.is_open(opening, length)
    assert not window.is_open(opening, length + timedelta(seconds=1))
    assert window.opening_at(opening).end == closing


def test_a_stage_that_fits_only_the_long_fall_back_night_waits_for_it():
    window = calendar((["sun"], "00:00", "06:00"))
    assert window.next_opening(utc("2026-10-01 00:00"), minutes(6 * 60 + 30)) == utc("2026-10-24 22:00")
    assert window.next_opening(utc("2026-03-28 12:00"), minutes(6 * 60)) == utc("2026-04-04 22:00")


def test_a_window_inside_the_skipped_hour_does_not_open_that_day():
    window = calendar((["sun"], "02:00", "02:30"))
    assert window.next_opening(utc("2026-03-28 12:00")) == utc("2026-04-05 00:00")


def test_explanations_use_the_offset_in_force_then():
    window = calendar((["sun"], "09:00", "16:00"))
    assert window.explain(utc("2026-03-28 20:00")).endswith("next opening Sun 09:00 CEST")


# -- freezes ---------------------------------------------------------------------------------------
FREEZES = [
    {"start": "2026-12-24", "end": "2026-12-26", "reason": "holidays"},
    {"start": "2026-11-26T14:00:00+01:00", "end": "2026-11-26T15:00:00+01:00", "reason": "db maintenance"},
]
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@pytest.mark.parametrize(
    ("now", "needed", "is_open", "next_opening"),
    [
        ("2026-12-23 16:00", 30, True, "2026-12-23 16:00"),  # the day before
        ("2026-12-24 09:00", 0, False, "2026-12-27 09:00"),  # first day, frozen from midnight
        ("2026-12-26 16:59", 0, False, "2026-12-27 09:00"),  # last day, inclusive
        ("2026-12-27 09:00", 0, True, "2026-12-27 09:00"),  # after
        ("2026-11-26 13:30", 20, True, "2026-11-26 13:30"),  # done before the freeze starts
        ("2026-11-26 13:30", 45, False, "2026-11-26 15:00"),  # a freeze starts within the stage
        ("2026-11-26 14:30", 0, False, "2026-11-26 15:00"),  # inside a timed freeze
        ("2026-11-26 15:00", 0, True, "2026-11-26 15:00"),  # its end is exclusive
    ],
)
def test_freezes(now, needed, is_open, next_opening):
    window = calendar((EVERY_DAY, "09:00", "17:00"), freezes=FREEZES)
    assert window.is_open(berlin(now), minutes(needed)) is is_open
    assert window.next_opening(berlin(now), minutes(needed)) == berlin(next_opening)


@pytest.mark.parametrize(
    ("now", "needed", "text"),
    [
        ("2026-12-25 10:00", 0, "frozen: holidays (2026-12-24 to 2026-12-26 inclusive); next opening Sun 09:00 CET"),
        (
            "2026-11-26 14:30",
            0,
            "frozen: db maintenance (2026-11-26 14:00 CET to 2026-11-26 15:00 CET); next opening 15:00 CET",
        ),
        (
            "2026-11-26 13:30",
            45,
            "closed for this stage: it needs 45m, but the window closes at 14:00 CET when freeze "
            "'db maintenance' starts (30m left); next opening 15:00 CET",
        ),
    ],
)
def test_freeze_explanations(now, needed, text):
    window = calendar((EVERY_DAY, "09:00", "17:00"), freezes=FREEZES)
    assert window.explain(berlin(now), minutes(needed)) == text


def test_a_freeze_cuts_a_joined_opening_short():
    window = calendar((EVERY_DAY, "18:00", "24:00"), (EVERY_DAY, "00:00", "06:00"), freezes=FREEZES)
    now = berlin("2026-12-23 22:00")
    assert window.opening_at(now).end == berlin("2026-12-24 00:00")
    assert window.explain(now, minutes(60)) == (
        "open until Thu 00:00 CET (then frozen: holidays), 2h left, stage needs 1h"
    )


def test_without_windows_only_freezes_close():
    window = DeploymentWindow.from_spec(
        # As the spec model dumps it (model_dump(mode="json")): naive datetimes are on the window's clock.
        {
            "timezone": "Europe/Berlin",
            "windows": [],
            "freezes": [{"start": "2026-11-26T14:00:00", "end": "2026-11-26T15:00:00", "reason": "town hall"}],
        }
    )
    assert window.is_open(berlin("2026-11-28 03:00"), timedelta(days=3))
    assert not window.is_open(berlin("2026-11-26 13:30"), minutes(31))
    assert window.next_opening(berlin("2026-11-26 13:30"), minutes(31)) == berlin("2026-11-26 15:00")
    assert window.explain(berlin("2026-11-26 14:10")) == (
        "frozen: town hall (2026-11-26 14:00 CET to 2026-11-26 15:00 CET); next opening 15:00 CET"
    )
    assert window.describe() == "any time Europe/Berlin"


def test_times_as_the_spec_model_dumps_them():
    spec = {"timezone": "UTC", "windows": [{"days": ["mon"], "start": "09:00:00", "end": "16:00:00"}]}
    window = DeploymentWindow.from_spec(spec)
    assert window.describe() == "Mon 09:00-16:00 UTC"
    assert window.next_opening(utc("2026-11-23 08:00")) == utc("2026-11-23 09:00")


def test_frozen_for_longer_than_the_search_never_opens():
    window = calendar((EVERY_DAY, "09:00", "17:00"), freezes=[{"start": "2026-01-01", "end": "2028-12-31"}])
    assert window.next_opening(berlin("2026-11-23 10:00")) is None
    assert window.explain(berlin("2026-11-23 10:00")).startswith(
        "frozen: freeze (2026-01-01 to 2028-12-31 inclusive); no opening in the next 370 days"
    )


def test_a_yaml_spec_reads_as_written():
    spec = yaml.safe_load(
        """
        timezone: Europe/Berlin
        windows:
          - {days: [mon, tue, wed, thu], start: "09:00", end: "16:00"}
        freezes:
          - {start: 2026-12-21, end: 2027-01-03, reason: holidays}
          - {start: 2026-11-24T12:00:00+01:00, end: 2026-11-24T13:00:00+01:00, reason: town hall}
        """
    )
    window = DeploymentWindow.from_spec(spec)
    assert window.next_opening(berlin("2026-12-21 10:00")) == berlin("2027-01-04 09:00")
    assert window.next_opening(berlin("2026-11-24 12:30")) == berlin("2026-11-24 13:00")


# -- mistakes in the spec ----------------------------------------------------------------------------
def spec_with(**changes):
    window = {"days": ["mon"], "start": "09:00", "end": "16:00"}
    spec = {"timezone": "Europe/Berlin", "windows": [window]}
    for key, value in changes.items():
        if key in ("timezone", "freezes", "extra"):
            spec[key] = value
        else:
            window[key] = value
    return spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (spec_with(timezone="Europe/Berln"), "x.yaml: deployment_window.timezone: unknown timezone 'Europe/Berln'"),
        (spec_with(timezone=None), "deployment_window.timezone: required, got None; use an IANA name"),
        (spec_with(days=["tues"]), "deployment_window.windows[0].days: unknown day 'tues'; use mon, tue"),
        (spec_with(end=960), "deployment_window.windows[0].end: got the number 960; quote the time in YAML"),
        (spec_with(end="25:00"), "windows[0].end: '25:00' is not a time of day; write HH:MM from 00:00 to 24:00"),
        (spec_with(start="24:00"), "windows[0].start: '24:00' is not a time of day; write HH:MM from 00:00 to 23:59"),
        (spec_with(start="22:00", end="06:00"), "a window past midnight is two windows"),
        (spec_with(extra=1), "deployment_window: unknown field(s) extra; expected timezone, windows, freezes"),
        (
            spec_with(freezes=[{"start": "2026-12-32", "end": "2026-12-33"}]),
            "deployment_window.freezes[0].start: '2026-12-32' is not a date or datetime; write a date (2026-12-24",
        ),
        (
            spec_with(freezes=[{"start": "2026-12-24", "end": "2026-12-20"}]),
            "deployment_window.freezes[0]: end 2026-12-20 is before start 2026-12-24",
        ),
        ({"timezone": "UTC", "windows": "mon"}, "deployment_window.windows: expected a list of {days, start, end}"),
        ({"timezone": "UTC", "windows": []}, "deployment_window: give windows and/or freezes"),
    ],
)
def test_spec_mistakes_name_the_field_and_the_fix(spec, message):
    with pytest.raises(DeploymentWindowError) as error:
        DeploymentWindow.from_spec(spec, where="x.yaml: deployment_window")
    assert message in str(error.value)


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        DeploymentWindow.from_spec(OFFICE_HOURS).is_open(datetime(2026, 11, 23, 10))


# -- the gate task ---------------------------------------------------------------------------------
class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def gate(clock: Clock, window=None, **kwargs) -> DeploymentWindowGate:
    return DeploymentWindowGate(task_id=TASK_ID, window=window or OFFICE_HOURS, now=clock, **kwargs)


def context():
    return make_context(TaskInstanceInfo(task_id=TASK_ID), None)


def test_in_the_window_the_gate_returns_its_evidence():
    clock = Clock(berlin("2026-11-23 10:50"))
    evidence = gate(clock, needed_seconds=1500).execute(context())
    assert json.loads(json.dumps(evidence)) == {
        "open": True,
        "checked_at": "2026-11-23T09:50:00+00:00",
        "closes_at": "2026-11-23T15:00:00+00:00",
        "needed_s": 1500,
        "waited_s": 0.0,
        "window": "Mon-Thu 09:00-16:00 Europe/Berlin",
        "text": "open until 16:00 CET, 5h10m left, stage needs 25m",
        "override": None,
    }


def deferral(op: DeploymentWindowGate, call) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as deferred:
        call()
    json.dumps(deferred.value.kwargs)  # passes through the metadata DB
    assert deferred.value.method_name == "execute_complete"
    assert isinstance(deferred.value.trigger, DateTimeTrigger)
    return deferred.value


def test_outside_the_window_the_gate_defers_until_the_next_opening_then_passes():
    clock = Clock(berlin("2026-11-28 12:00"))
    op = gate(clock, needed_seconds=1500)
    deferred = deferral(op, lambda: op.execute(context()))
    assert deferred.trigger.moment == utc("2026-11-30 08:00")

    clock.now = utc("2026-11-30 08:00:02")  # the triggerer fired; the worker resumes two seconds later
    evidence = op.execute_complete(context(), event=deferred.trigger.moment, **deferred.kwargs)
    assert evidence["open"] is True
    assert evidence["waited_s"] == (utc("2026-11-30 08:00:02") - berlin("2026-11-28 12:00")).total_seconds()
    assert evidence["text"] == "open until 16:00 CET, 6h59m left, stage needs 25m"


def test_a_resume_that_no_longer_fits_waits_again_and_keeps_the_first_deferral_time():
    clock = Clock(berlin("2026-11-28 12:00"))
    op = gate(clock, needed_seconds=1500)
    first = deferral(op, lambda: op.execute(context()))

    clock.now = berlin("2026-11-30 08:59:58")  # a worker clock behind the triggerer's
    early = deferral(op, lambda: op.execute_complete(context(), event=None, **first.kwargs))
    assert early.trigger.moment == utc("2026-11-30 08:00")
    assert early.kwargs == first.kwargs

    clock.now = berlin("2026-11-30 15:40")  # woke too late for a 25-minute stage
    late = deferral(op, lambda: op.execute_complete(context(), event=None, **first.kwargs))
    assert late.trigger.moment == utc("2026-12-01 08:00")
    assert late.kwargs == first.kwargs


def test_a_window_that_never_fits_fails_with_the_explanation():
    op = gate(Clock(berlin("2026-11-28 12:00")), needed_seconds=8 * 3600)
    with pytest.raises(AirflowFailException, match="no opening in the next 370 days is long enough.*needs 8h"):
        op.execute(context())


def test_a_non_deferrable_gate_fails_fast_outside_the_window():
    op = gate(Clock(berlin("2026-11-28 12:00")), needed_seconds=1500, deferrable=False)
    with pytest.raises(AirflowFailException) as error:
        op.execute(context())
    assert "closed: outside Mon-Thu 09:00-16:00 Europe/Berlin; next opening Mon 09:00 CET" in str(error.value)
    assert "deferrable=False" in str(error.value)


def test_a_bad_window_fails_when_the_dag_is_parsed():
    with pytest.raises(DeploymentWindowError, match=r"check_deployment_window: window\.windows\[0\]\.days"):
        gate(Clock(berlin("2026-11-23 10:00")), window=spec_with(days=["someday"]))
    with pytest.raises(ValueError, match="needed_seconds must be a number of seconds >= 0, got -1"):
        gate(Clock(berlin("2026-11-23 10:00")), needed_seconds=-1)


def test_an_empty_freeze_closes_nothing():
    instant = "2026-11-23T12:00:00+01:00"
    window = calendar((["mon"], "09:00", "16:00"), freezes=[{"start": instant, "end": instant, "reason": "typo"}])
    assert window.is_open(berlin("2026-11-23 10:00"), minutes(6 * 60))
