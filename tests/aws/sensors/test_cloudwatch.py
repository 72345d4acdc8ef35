"""The pre-check gate against the sandbox over HTTP: quiet alarms pass, ALARM waits, typos fail."""

from __future__ import annotations

import json
import time

import pytest
from airflow.providers.common.compat.sdk import AirflowException
from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferred

from shipflow.aws.exceptions import InvalidTriggerEvent
from shipflow.aws.hooks.cloudwatch import CloudWatchAlarmNotFound
from shipflow.aws.sensors.cloudwatch import CloudWatchAlarmsOkSensor
from shipflow.aws.triggers.cloudwatch import CloudWatchAlarmsOkTrigger
from tests.aws.cloudwatch_helpers import Later, put, put_alarm, put_manual_alarm, set_state
from tests.aws.conftest import roundtrip, run_trigger


@pytest.fixture
def later():
    timers = Later()
    yield timers
    timers.close()


@pytest.fixture
def cw(sandbox):
    return sandbox.boto3("cloudwatch")


def sensor(aws_conn, **kwargs):
    defaults = {"task_id": "alarms_ok", "aws_conn_id": aws_conn, "poke_interval": 0.1, "timeout": 10}
    return CloudWatchAlarmsOkSensor(**{**defaults, **kwargs})


def states(evidence):
    return {a["name"]: a["state"] for a in evidence["alarms"]}


def test_ok_and_insufficient_data_pass_with_evidence(sandbox, aws_conn, cw, task_context):
    put_manual_alarm(cw, "payments-api-latency", "OK")
    put_manual_alarm(cw, "payments-api-errors")  # INSUFFICIENT_DATA, as a new alarm is
    context = task_context(task_id="alarms_ok")
    evidence = sensor(aws_conn, alarm_names=["payments-api-latency", "payments-api-errors"]).execute(context)

    assert states(evidence) == {"payments-api-errors": "INSUFFICIENT_DATA", "payments-api-latency": "OK"}
    latency = next(a for a in evidence["alarms"] if a["name"] == "payments-api-latency")
    assert latency["reason"] == "set to OK by the test" and latency["type"] == "MetricAlarm"
    assert latency["updated_at"].endswith("+00:00") and latency["arn"].endswith(":alarm:payments-api-latency")
    assert evidence["require_ok"] is False and evidence["checked_at"]
    assert [c["operation"] for c in evidence["aws_calls"]] == ["DescribeAlarms"]
    assert evidence["aws_calls"][0]["request_id"]
    assert json.loads(json.dumps(evidence)) == evidence  # stored as is by the audit trail
    assert context["ti"].xcom["cloudwatch_alarms"]["search"] == "payments-api-latency"


def test_waits_while_an_alarm_is_in_alarm_and_passes_once_it_clears(sandbox, aws_conn, cw, task_context, later):
    put_alarm(cw, "payments-api-errors")
    put(cw, 25.0)
    assert cw.describe_alarms()["MetricAlarms"][0]["StateValue"] == "ALARM"
    later(0.6, lambda: put(cw, 0.0, count=200))  # a burst of healthy requests brings the average down

    started = time.monotonic()
    evidence = sensor(aws_conn, alarm_names="payments-api-errors").execute(task_context())
    assert time.monotonic() - started >= 0.5
    [alarm] = evidence["alarms"]
    assert alarm["state"] == "OK" and alarm["reason"].startswith("Threshold Crossed")


def test_require_ok_waits_out_insufficient_data(sandbox, aws_conn, cw, task_context, later):
    put_manual_alarm(cw, "payments-api-errors")
    with pytest.raises(AirflowSensorTimeout):
        sensor(aws_conn, alarm_names=["payments-api-errors"], require_ok=True, timeout=0.4).execute(task_context())

    later(0.4, lambda: set_state(cw, "payments-api-errors", "OK"))
    evidence = sensor(aws_conn, alarm_names=["payments-api-errors"], require_ok=True).execute(task_context())
    assert states(evidence) == {"payments-api-errors": "OK"} and evidence["require_ok"] is True


def test_a_missing_alarm_fails_at_once_naming_it(sandbox, aws_conn, cw, task_context):
    put_manual_alarm(cw, "payments-api-errors", "OK")
    started = time.monotonic()
    with pytest.raises(CloudWatchAlarmNotFound, match="not found: payments-api-erors. Check alarm_names"):
        sensor(aws_conn, alarm_names=["payments-api-errors", "payments-api-erors"]).execute(task_context())
    assert time.monotonic() - started < 5  # no waiting for a typo to fix itself (the timeout is 10 s)

    with pytest.raises(CloudWatchAlarmNotFound, match="alarm_name_prefix='paymnets-'"):
        sensor(aws_conn, alarm_name_prefix="paymnets-").execute(task_context())


def test_prefix_watches_only_matching_alarms(sandbox, aws_conn, cw, task_context):
    put_manual_alarm(cw, "payments-api-errors", "OK")
    put_manual_alarm(cw, "payments-api-latency")
    put_manual_alarm(cw, "orders-api-errors", "ALARM")  # another service's trouble does not block
    put_manual_alarm(cw, "shared-dependency-db", "OK")

    evidence = sensor(aws_conn, alarm_name_prefix="payments-api-", alarm_names=["shared-dependency-db"]).execute(
        task_context()
    )
    assert sorted(states(evidence)) == ["payments-api-errors", "payments-api-latency", "shared-dependency-db"]
    # AWS refuses names and a prefix in one request: the sensor asks once for each.
    assert [c["operation"] for c in evidence["aws_calls"]] == ["DescribeAlarms", "DescribeAlarms"]

    set_state(cw, "payments-api-latency", "ALARM")
    with pytest.raises(AirflowSensorTimeout):
        sensor(aws_conn, alarm_name_prefix="payments-api-", timeout=0.3).execute(task_context())


def test_more_than_a_hundred_names_are_asked_in_chunks(sandbox, aws_conn, cw, task_context):
    names = [put_manual_alarm(cw, f"payments-api-{i:03d}", "OK") for i in range(101)]
    evidence = sensor(aws_conn, alarm_names=names).execute(task_context())
    assert len(evidence["alarms"]) == 101
    assert [c["operation"] for c in evidence["aws_calls"]] == ["DescribeAlarms", "DescribeAlarms"]


def test_throttling_burst_on_describe_alarms_is_survived(sandbox, aws_conn, cw, task_context):
    put_manual_alarm(cw, "payments-api-errors", "OK")
    sandbox.add_fault("throttle", "cloudwatch", target="DescribeAlarms", count=3)
    evidence = sensor(aws_conn, alarm_names=["payments-api-errors"]).execute(task_context())
    assert states(evidence) == {"payments-api-errors": "OK"}
    assert sandbox.faults()[0]["fired"] == 3
    assert evidence["aws_calls"][0]["retries"] == 3


# -- deferrable ---------------------------------------------------------------------------------------
def test_deferrable_passes_without_deferring_when_already_quiet(sandbox, aws_conn, cw, task_context):
    put_manual_alarm(cw, "payments-api-errors", "OK")
    evidence = sensor(aws_conn, alarm_names=["payments-api-errors"], deferrable=True).execute(task_context())
    assert states(evidence) == {"payments-api-errors": "OK"}


def test_deferrable_waits_in_the_trigger_until_the_alarm_clears(sandbox, aws_conn, cw, task_context, later):
    put_manual_alarm(cw, "payments-api-errors", "ALARM")
    put_manual_alarm(cw, "payments-api-latency", "OK")
    op = sensor(aws_conn, alarm_name_prefix="payments-api-", deferrable=True, timeout=120)
    context = task_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, CloudWatchAlarmsOkTrigger)
    assert deferred.value.timeout.total_seconds() == 120  # the sensor's timeout bounds the deferral

    # After the trigger's first poll (it saw ALARM), so that it polls again and sees OK.
    recover = lambda: set_state(cw, "payments-api-errors", "OK", "recovered")  # noqa: E731
    later.after_call(sandbox, "cloudwatch:DescribeAlarms", recover)
    event = run_trigger(roundtrip(trigger))
    assert event["status"] == "success" and event["polls"] >= 2
    evidence = op.execute_complete(context, event=event)
    assert states(evidence) == {"payments-api-errors": "OK", "payments-api-latency": "OK"}
    assert evidence["alarms"][0]["reason"] == "recovered"
    assert [c["operation"] for c in evidence["aws_calls"]] == ["DescribeAlarms"]


def test_deferred_watch_reports_an_alarm_deleted_meanwhile(sandbox, aws_conn, cw, task_context, later):
    put_manual_alarm(cw, "payments-api-errors", "ALARM")
    op = sensor(aws_conn, alarm_names=["payments-api-errors"], deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(task_context())
    later(0.3, lambda: cw.delete_alarms(AlarmNames=["payments-api-errors"]))
    event = run_trigger(deferred.value.trigger)
    assert event["status"] == "error" and event["error"] == "CloudWatchAlarmNotFound"
    with pytest.raises(CloudWatchAlarmNotFound, match="payments-api-errors"):
        op.execute_complete(task_context(), event=event)


WATCHING = {"alarm_names": ["payments-api-errors"], "alarm_name_prefix": None, "require_ok": False}
OK_ALARM = {"name": "payments-api-errors", "state": "OK"}


@pytest.mark.parametrize(
    "event",
    [
        None,
        "success",
        {"status": "success", "alarms": [OK_ALARM]},
        {"status": "done", "watching": WATCHING, "alarms": [OK_ALARM]},
        {"status": "success", "watching": {**WATCHING, "require_ok": True}, "alarms": [OK_ALARM]},
        {"status": "success", "watching": WATCHING, "alarms": "all fine"},
        {"status": "success", "watching": WATCHING, "alarms": []},
        {"status": "success", "watching": WATCHING, "alarms": [{**OK_ALARM, "state": "ALARM"}]},
    ],
)
def test_trigger_events_are_validated_before_use(aws_conn, event, task_context):
    op = sensor(aws_conn, alarm_names=["payments-api-errors"], deferrable=True)
    with pytest.raises(InvalidTriggerEvent):
        op.execute_complete(task_context(), event=event)


def test_trigger_error_fails_the_task(aws_conn, task_context):
    op = sensor(aws_conn, alarm_names=["payments-api-errors"], deferrable=True)
    event = {"status": "error", "watching": WATCHING, "error": "ClientError", "message": "AccessDenied"}
    with pytest.raises(AirflowException, match="AccessDenied") as failure:
        op.execute_complete(task_context(), event=event)
    assert not isinstance(failure.value, CloudWatchAlarmNotFound)  # retryable, unlike a typo


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give alarm_names and/or alarm_name_prefix"),
        ({"alarm_names": ["ok", ""]}, "alarm_names must be non-empty"),
        ({"alarm_name_prefix": " "}, "alarm_name_prefix must be a non-empty string"),
    ],
)
def test_mistakes_fail_when_the_dag_is_parsed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CloudWatchAlarmsOkSensor(task_id="alarms_ok", **kwargs)
