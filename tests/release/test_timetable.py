"""Release trains: the deployment-window timetable schedules one run per opening, and Airflow loads it from the plugin.

The pure tests drive ``next_dagrun_info`` as the scheduler does, over a fixed calendar
(Mon-Thu 09:00-16:00 Europe/Berlin; 2026-11-23 is a Monday) and a fixed clock. The live test
adds a DAG file to the session's Airflow and reads what the UI shows through the REST API.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from airflow.timetables.base import DataInterval, TimeRestriction

from shipflow.gates.window import DAYS, DeploymentWindow, DeploymentWindowError
from shipflow.release.timetable import DeploymentWindowTimetable, release_train_timetable

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE_HOURS = {
    "timezone": "Europe/Berlin",
    "windows": [{"days": ["mon", "tue", "wed", "thu"], "start": "09:00", "end": "16:00"}],
}
JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
NO_CATCHUP = TimeRestriction(earliest=JAN_1, latest=None, catchup=False)


def berlin(text: str) -> datetime:
    """``2026-11-23 10:50`` on the Berlin wall clock."""
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


def train(spec=None, needed_minutes: float = 25, now: str = "2026-11-21 12:00", **spec_fields):
    """A timetable over OFFICE_HOURS (plus ``spec_fields``) whose clock reads ``now`` in Berlin."""
    spec = dict(spec or OFFICE_HOURS, **spec_fields)
    return DeploymentWindowTimetable(spec, needed_minutes * 60, now=lambda: berlin(now))


def departures(timetable, restriction=NO_CATCHUP, count=5):
    """The next ``count`` trains as the scheduler asks for them: each after the last one's interval."""
    found, last = [], None
    for _ in range(count):
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        if info is None:
            break
        found.append(info)
        last = info.data_interval
    return found


def local(info) -> tuple[str, str, str]:
    """(run_after, interval start, interval end) on the Berlin wall clock, for readable expectations."""
    show = lambda instant: instant.astimezone(BERLIN).strftime("%a %Y-%m-%d %H:%M")  # noqa: E731
    return show(info.run_after), show(info.data_interval.start), show(info.data_interval.end)


# -- the first train --------------------------------------------------------------------------------
def test_without_catchup_the_first_train_leaves_at_the_next_opening_after_now():
    # Saturday: the start_date (January) is long past, but no missed opening is run.
    [info] = departures(train(now="2026-11-21 12:00"), count=1)
    assert local(info) == ("Mon 2026-11-23 09:00", "Mon 2026-11-23 09:00", "Mon 2026-11-23 16:00")
    assert info.run_after == datetime(2026, 11, 23, 8, tzinfo=UTC)
    assert info.logical_date == info.data_interval.start


def test_without_catchup_the_current_opening_s_train_is_due_at_once_when_the_stage_still_fits():
    [info] = departures(train(now="2026-11-23 10:50"), count=1)
    # run_after is the opening's start, already past: the scheduler creates the run at once.
    assert local(info) == ("Mon 2026-11-23 09:00", "Mon 2026-11-23 09:00", "Mon 2026-11-23 16:00")
    # Parsed again later in the opening, the DAG keeps the same next run (and run id).
    assert departures(train(now="2026-11-23 11:30"), count=1) == [info]


def test_with_catchup_the_first_train_is_the_first_opening_after_the_start_date():
    restriction = TimeRestriction(earliest=berlin("2026-11-01 00:00"), latest=None, catchup=True)  # a Sunday
    [info] = departures(train(now="2026-11-21 12:00"), restriction, count=1)
    assert local(info) == ("Mon 2026-11-02 09:00", "Mon 2026-11-02 09:00", "Mon 2026-11-02 16:00")


def test_with_catchup_and_no_start_date_the_first_train_is_the_next_opening():
    restriction = TimeRestriction(earliest=None, latest=None, catchup=True)
    [info] = departures(train(now="2026-11-24 17:00"), restriction, count=1)
    assert local(info)[0] == "Wed 2026-11-25 09:00"


def test_a_start_date_in_the_future_holds_the_first_train_back_even_without_catchup():
    restriction = TimeRestriction(earliest=berlin("2026-11-25 12:00"), latest=None, catchup=False)
    [info] = departures(train(now="2026-11-21 12:00"), restriction, count=1)
    assert local(info) == ("Wed 2026-11-25 12:00", "Wed 2026-11-25 09:00", "Wed 2026-11-25 16:00")


# -- consecutive trains -----------------------------------------------------------------------------
def test_one_train_per_opening_on_window_days_only():
    infos = departures(train(now="2026-11-23 10:50"), count=6)
    assert [local(i)[0] for i in infos] == [
        "Mon 2026-11-23 09:00",  # under way: due at once
        "Tue 2026-11-24 09:00",
        "Wed 2026-11-25 09:00",
        "Thu 2026-11-26 09:00",
        "Mon 2026-11-30 09:00",  # Friday to Sunday are no window days
        "Tue 2026-12-01 09:00",
    ]
    assert all(i.data_interval.end - i.data_interval.start == timedelta(hours=7) for i in infos)


def test_the_scheduler_asking_again_mid_opening_does_not_send_a_second_train():
    # The Monday train ran; the DAG is parsed again at 11:30 on Monday: the next is Tuesday's.
    monday = DataInterval(berlin("2026-11-23 09:00"), berlin("2026-11-23 16:00"))
    info = train(now="2026-11-23 11:30").next_dagrun_info(last_automated_data_interval=monday, restriction=NO_CATCHUP)
    assert local(info)[0] == "Tue 2026-11-24 09:00"


def test_with_catchup_every_missed_opening_gets_its_train():
    restriction = TimeRestriction(earliest=berlin("2026-11-02 00:00"), latest=None, catchup=True)
    infos = departures(train(now="2026-11-21 12:00"), restriction, count=5)
    assert [local(i)[0] for i in infos] == [
        "Mon 2026-11-02 09:00",
        "Tue 2026-11-03 09:00",
        "Wed 2026-11-04 09:00",
        "Thu 2026-11-05 09:00",
        "Mon 2026-11-09 09:00",
    ]


def test_a_dst_week_keeps_the_local_hours_and_moves_the_utc_instants():
    # Clocks go back on Sunday 2026-10-25: 09:00 is 07:00 UTC on Thursday and 08:00 UTC on Monday.
    infos = departures(train(now="2026-10-22 08:00"), count=2)
    assert [local(i) for i in infos] == [
        ("Thu 2026-10-22 09:00", "Thu 2026-10-22 09:00", "Thu 2026-10-22 16:00"),
        ("Mon 2026-10-26 09:00", "Mon 2026-10-26 09:00", "Mon 2026-10-26 16:00"),
    ]
    assert [i.run_after for i in infos] == [
        datetime(2026, 10, 22, 7, tzinfo=UTC),
        datetime(2026, 10, 26, 8, tzinfo=UTC),
    ]


# -- what keeps a train from leaving ----------------------------------------------------------------
def test_a_freeze_skips_the_windows_it_covers():
    freezes = [{"start": "2026-11-24", "end": "2026-11-25", "reason": "db migration"}]  # Tue and Wed, whole days
    infos = departures(train(now="2026-11-21 12:00", freezes=freezes), count=3)
    assert [local(i)[0] for i in infos] == ["Mon 2026-11-23 09:00", "Thu 2026-11-26 09:00", "Mon 2026-11-30 09:00"]


def test_an_opening_cut_short_by_a_freeze_gets_no_train_when_the_stage_does_not_fit_before_it():
    # Tuesday is open 09:00-11:00 only, then frozen: a 3-hour stage does not fit, a 1-hour one does.
    freezes = [{"start": "2026-11-24T11:00:00", "end": "2026-11-24T23:00:00", "reason": "load test"}]
    long_stage = departures(train(needed_minutes=180, now="2026-11-23 17:00", freezes=freezes), count=1)
    short_stage = departures(train(needed_minutes=60, now="2026-11-23 17:00", freezes=freezes), count=1)
    assert local(long_stage[0])[0] == "Wed 2026-11-25 09:00"
    assert local(short_stage[0]) == ("Tue 2026-11-24 09:00", "Tue 2026-11-24 09:00", "Tue 2026-11-24 11:00")


def test_a_stage_longer_than_what_is_left_of_the_opening_waits_for_the_next_one():
    [info] = departures(train(needed_minutes=25, now="2026-11-23 15:50"), count=1)  # 10 minutes left
    assert local(info)[0] == "Tue 2026-11-24 09:00"


def test_a_stage_longer_than_any_window_never_gets_a_train():
    assert departures(train(needed_minutes=7 * 60 + 1), count=1) == []


def test_no_train_leaves_after_the_end_date_which_is_inclusive():
    timetable = train(now="2026-11-21 12:00")
    until_tuesday_nine = TimeRestriction(earliest=JAN_1, latest=berlin("2026-11-24 09:00"), catchup=False)
    until_just_before = TimeRestriction(earliest=JAN_1, latest=berlin("2026-11-24 08:59"), catchup=False)
    assert [local(i)[0] for i in departures(timetable, until_tuesday_nine)] == [
        "Mon 2026-11-23 09:00",
        "Tue 2026-11-24 09:00",
    ]
    assert [local(i)[0] for i in departures(timetable, until_just_before)] == ["Mon 2026-11-23 09:00"]


# -- calendars open around the clock ----------------------------------------------------------------
def test_a_calendar_open_around_the_clock_runs_one_train_per_local_day():
    spec = {"timezone": "Europe/Berlin", "freezes": [{"start": "2026-11-25", "end": "2026-11-25", "reason": "audit"}]}
    infos = departures(train(spec, now="2026-11-23 10:50"), count=3)
    assert [local(i) for i in infos] == [
        ("Mon 2026-11-23 00:00", "Mon 2026-11-23 00:00", "Tue 2026-11-24 00:00"),  # under way: due at once
        ("Tue 2026-11-24 00:00", "Tue 2026-11-24 00:00", "Wed 2026-11-25 00:00"),
        ("Thu 2026-11-26 00:00", "Thu 2026-11-26 00:00", "Fri 2026-11-27 00:00"),  # Wednesday is frozen
    ]


def test_joined_windows_across_midnight_are_one_train():
    spec = {
        "timezone": "Europe/Berlin",
        "windows": [
            {"days": ["mon"], "start": "20:00", "end": "24:00"},
            {"days": ["tue"], "start": "00:00", "end": "06:00"},
        ],
    }
    [info] = departures(train(spec, now="2026-11-23 12:00"), count=1)
    assert local(info) == ("Mon 2026-11-23 20:00", "Mon 2026-11-23 20:00", "Tue 2026-11-24 06:00")


# -- manual runs ------------------------------------------------------------------------------------
def test_a_manual_run_inside_an_opening_gets_that_opening_as_its_interval():
    interval = train().infer_manual_data_interval(run_after=berlin("2026-11-23 10:50"))
    assert interval == (berlin("2026-11-23 09:00"), berlin("2026-11-23 16:00"))


def test_a_manual_run_outside_the_windows_gets_its_own_instant():
    interval = train().infer_manual_data_interval(run_after=berlin("2026-11-28 12:00"))
    assert interval == (berlin("2026-11-28 12:00"), berlin("2026-11-28 12:00"))


# -- serialization and the UI text ------------------------------------------------------------------
def test_serialize_then_deserialize_gives_the_same_timetable_through_json():
    # As YAML reads a spec: dates and datetimes as objects, not text.
    freezes = [
        {"start": date(2026, 12, 21), "end": date(2027, 1, 3), "reason": "holidays"},
        {"start": datetime(2026, 11, 26, 14, tzinfo=BERLIN), "end": datetime(2026, 11, 26, 15), "reason": "db"},
    ]
    original = DeploymentWindowTimetable({**OFFICE_HOURS, "freezes": freezes}, 1500)
    stored = json.loads(json.dumps(original.serialize()))
    restored = DeploymentWindowTimetable.deserialize(stored)
    assert restored == original
    assert restored.serialize() == stored
    assert restored.calendar == original.calendar  # freezes read back to the same instants and labels
    assert restored.summary == original.summary
    assert restored.description == original.description
    assert restored != DeploymentWindowTimetable({**OFFICE_HOURS, "freezes": freezes}, 1800)


def test_summary_and_description_say_the_windows_in_words():
    freezes = [{"start": "2026-12-21", "end": "2027-01-03", "reason": "holidays"}]
    timetable = release_train_timetable({**OFFICE_HOURS, "freezes": freezes}, 1500)
    assert timetable.summary == "Mon-Thu 09:00-16:00 Europe/Berlin"
    assert timetable.description == (
        "Release train: one run per opening of Mon-Thu 09:00-16:00 Europe/Berlin, "
        "at the first moment a stage of 25 min fits; 1 freeze."
    )
    assert timetable.periodic and timetable.can_be_scheduled


def test_a_spec_mistake_names_the_field_when_the_dag_is_parsed():
    spec = {"timezone": "Europe/Berlin", "windows": [{"days": ["tues"], "start": "09:00", "end": "16:00"}]}
    with pytest.raises(DeploymentWindowError, match=r"^x\.yaml: release_train\.windows\[0\]\.days: unknown day 'tues'"):
        release_train_timetable(spec, 1500, where="x.yaml: release_train")
    with pytest.raises(DeploymentWindowError, match=r"^release_train: needed_seconds must be a number .* got -1$"):
        release_train_timetable(OFFICE_HOURS, -1)


# -- a live Airflow ---------------------------------------------------------------------------------
DAG_FILE = '''"""A release train whose window opens the day after tomorrow (from tests/release/test_timetable.py)."""

from datetime import UTC, datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

from shipflow.release.timetable import release_train_timetable

with DAG(
    dag_id="timetable_train",
    schedule=release_train_timetable({spec!r}, 1500),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
):
    EmptyOperator(task_id="depart")
'''


@pytest.mark.slow
def test_airflow_loads_the_plugin_timetable_and_shows_the_next_train(airflow_stack):
    ci = airflow_stack.client("viewer")
    # The only window day is the day after tomorrow (Berlin), so the next train is always ahead.
    day = DAYS[(datetime.now(BERLIN) + timedelta(days=2)).weekday()]
    spec = {
        "timezone": "Europe/Berlin",
        "windows": [{"days": [day], "start": "09:00", "end": "16:00"}],
        "freezes": [{"start": "2026-12-21", "end": "2027-01-03", "reason": "holidays"}],
    }
    expected = DeploymentWindow.from_spec(spec).next_opening(datetime.now(UTC), timedelta(seconds=1500))
    path = airflow_stack.add_dag_file("timetable_train.py", DAG_FILE.format(spec=spec))
    try:
        dag = ci.wait_for_dag("timetable_train", timeout=90)
        deadline = time.monotonic() + 30
        while dag["next_dagrun_run_after"] is None and time.monotonic() < deadline:
            time.sleep(0.5)
            dag = ci.get_dag("timetable_train")
        details = ci.get("/api/v2/dags/timetable_train/details")
        errors = [e for e in ci.import_errors() if e["filename"] == "timetable_train.py"]
    finally:
        path.unlink()

    assert errors == []
    summary = f"{day.capitalize()} 09:00-16:00 Europe/Berlin"
    assert dag["timetable_summary"] == details["timetable_summary"] == summary
    assert dag["timetable_description"] == (
        f"Release train: one run per opening of {summary}, at the first moment a stage of 25 min fits; 1 freeze."
    )
    assert dag["timetable_periodic"] is True
    assert datetime.fromisoformat(dag["next_dagrun_run_after"]) == expected
    assert datetime.fromisoformat(dag["next_dagrun_logical_date"]) == expected
    assert datetime.fromisoformat(dag["next_dagrun_data_interval_start"]) == expected
    assert datetime.fromisoformat(dag["next_dagrun_data_interval_end"]) == expected + timedelta(hours=7)
