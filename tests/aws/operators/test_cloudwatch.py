"""The bake-time gate against the sandbox over HTTP: clean bakes pass with evidence, breaches fail fast."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest
from airflow.sdk.exceptions import TaskDeferred

from shipflow.aws.exceptions import AwsActionFailed, InvalidTriggerEvent
from shipflow.aws.hooks.cloudwatch import CloudWatchAlarmNotFound
from shipflow.aws.operators.cloudwatch import CloudWatchBakeTimeOperator
from shipflow.aws.triggers.cloudwatch import CloudWatchBakeTrigger
from tests.aws.cloudwatch_helpers import (
    NAMESPACE,
    Later,
    deploy_revision,
    put,
    put_alarm,
    put_error_rate_alarm,
    put_manual_alarm,
    set_state,
)
from tests.aws.conftest import TaskStateStore, roundtrip, run_trigger

LATENCY = {
    "name": "payments-api latency",
    "namespace": NAMESPACE,
    "metric_name": "Latency",
    "statistic": "Maximum",
    "period": 1,
    "comparison": "GreaterThanThreshold",
    "threshold": 500,
}


@pytest.fixture
def later():
    timers = Later()
    yield timers
    timers.close()


@pytest.fixture
def cw(sandbox):
    return sandbox.boto3("cloudwatch")


def bake_op(aws_conn, **kwargs):
    defaults = {"task_id": "bake", "aws_conn_id": aws_conn, "bake_time": 1.5, "poll_interval": 0.2}
    return CloudWatchBakeTimeOperator(**{**defaults, **kwargs})


def by_name(entries):
    return {e["name"]: e for e in entries}


def test_clean_bake_passes_with_evidence(sandbox, aws_conn, cw, task_context, later):
    put_manual_alarm(cw, "payments-api-errors", "OK")
    put_manual_alarm(cw, "payments-api-latency")  # INSUFFICIENT_DATA does not fail a bake
    # Over a second apart, so the two datapoints fall in different 1-second periods.
    later(0.4, lambda: put(cw, 180.0, metric="Latency"))
    later(1.5, lambda: put(cw, 120.0, metric="Latency"))

    started = time.monotonic()
    op = bake_op(aws_conn, alarm_name_prefix="payments-api-", metric_thresholds=[LATENCY], bake_time=2)
    result = op.execute(task_context())
    assert 2 <= time.monotonic() - started < 8  # the whole bake, and not much more

    assert result["outcome"] == "passed" and result["breach"] is None
    assert result["bake_time_s"] == 2 and result["polls"] >= 3  # polled through the bake (about 10 on a quiet machine)
    assert datetime.fromisoformat(result["watched_until"]) >= datetime.fromisoformat(result["deadline"])
    alarms = by_name(result["alarms"])
    assert alarms["payments-api-errors"]["states_seen"] == ["OK"]
    assert alarms["payments-api-latency"]["states_seen"] == ["INSUFFICIENT_DATA"]
    [latency] = result["metrics"]
    assert latency["name"] == "payments-api latency" and latency["condition"] == "Latency Maximum > 500.0"
    assert (latency["datapoints"], latency["min"], latency["max"], latency["last"]) == (2, 120.0, 180.0, 120.0)
    assert latency["first_breach"] is None
    operations = {c["operation"] for c in result["aws_calls"]}
    assert operations == {"DescribeAlarms", "GetMetricData"} and all(c["request_id"] for c in result["aws_calls"])
    assert json.loads(json.dumps(result)) == result


def test_states_seen_during_the_bake_are_kept(sandbox, aws_conn, cw, task_context, later):
    put_manual_alarm(cw, "payments-api-errors")
    later.after_call(sandbox, "cloudwatch:DescribeAlarms", lambda: set_state(cw, "payments-api-errors", "OK"))
    result = bake_op(aws_conn, alarm_names=["payments-api-errors"], bake_time=1.0).execute(task_context())
    [alarm] = result["alarms"]
    assert alarm["states_seen"] == ["INSUFFICIENT_DATA", "OK"] and alarm["state"] == "OK"


def test_alarm_going_off_mid_bake_fails_fast_with_its_reason(sandbox, aws_conn, cw, task_context, later):
    put_alarm(cw, "payments-api-errors")
    put(cw, 1.0)
    later.after_call(sandbox, "cloudwatch:DescribeAlarms", lambda: put(cw, 40.0))  # after the first poll saw OK
    context = task_context()

    started = time.monotonic()
    with pytest.raises(AwsActionFailed) as failure:
        bake_op(aws_conn, alarm_names=["payments-api-errors"], bake_time=60).execute(context)
    assert time.monotonic() - started < 10  # not the 60 s bake

    error = failure.value
    assert error.status == "ALARM" and error.resource_id == "payments-api-errors"
    assert error.reason.startswith("Threshold Crossed") and "greater than the threshold (5.0)" in error.reason
    assert "CloudWatch alarm payments-api-errors is ALARM (since 20" in str(error) and "s into the 60 s bake" in str(
        error
    )
    assert error.console_url.endswith("#alarmsV2:alarm/payments-api-errors")
    assert error.result["outcome"] == "breached"
    assert by_name(error.result["alarms"])["payments-api-errors"]["states_seen"] == ["OK", "ALARM"]
    assert context["ti"].xcom["cloudwatch_alarm"]["alarm_name"] == "payments-api-errors"


def test_metric_threshold_breach_fails_fast_with_the_value(sandbox, aws_conn, cw, task_context, later):
    later(0.2, lambda: put(cw, 130.0, metric="Latency"))
    later(0.6, lambda: put(cw, 900.0, metric="Latency"))

    started = time.monotonic()
    with pytest.raises(AwsActionFailed) as failure:
        bake_op(aws_conn, metric_thresholds=[LATENCY], bake_time=60).execute(task_context())
    assert time.monotonic() - started < 10  # not the 60 s bake

    error = failure.value
    assert error.status == "THRESHOLD_CROSSED" and error.resource_id == "payments-api latency"
    assert error.reason.startswith("900 at 20")
    assert "crossed its threshold (Latency Maximum > 500.0)" in str(error)
    [latency] = error.result["metrics"]
    assert latency["max"] == 900.0 and latency["first_breach"]["value"] == 900.0


def test_unhealthy_revision_trips_the_error_rate_alarm(sandbox, aws_conn, cw, task_context):
    sandbox.add_fault("unhealthy", "codedeploy", target="payments-api/staging", count=None)
    deploy_revision(sandbox)
    alarm = put_error_rate_alarm(cw)

    started = time.monotonic()
    with pytest.raises(AwsActionFailed) as failure:
        bake_op(aws_conn, alarm_names=[alarm], bake_time=60).execute(task_context())
    assert time.monotonic() - started < 10  # not the 60 s bake
    assert failure.value.status == "ALARM" and failure.value.resource_id == alarm
    assert "was greater than the threshold (5.0)" in failure.value.reason


def test_healthy_revision_bakes_clean(sandbox, aws_conn, cw, task_context):
    deploy_revision(sandbox)
    alarm = put_error_rate_alarm(cw)
    result = bake_op(aws_conn, alarm_names=[alarm], bake_time=1.0).execute(task_context())
    assert result["outcome"] == "passed" and result["alarms"][0]["state"] == "OK"


def test_missing_alarm_fails_before_the_bake(sandbox, aws_conn, cw, task_context):
    put_manual_alarm(cw, "payments-api-errors", "OK")
    with pytest.raises(CloudWatchAlarmNotFound, match="payments-api-erors"):
        bake_op(aws_conn, alarm_names=["payments-api-errors", "payments-api-erors"], bake_time=60).execute(
            task_context()
        )


def test_throttling_burst_on_describe_alarms_is_survived(sandbox, aws_conn, cw, task_context):
    put_manual_alarm(cw, "payments-api-errors", "OK")
    sandbox.add_fault("throttle", "cloudwatch", target="DescribeAlarms", count=2)
    result = bake_op(aws_conn, alarm_names=["payments-api-errors"], bake_time=0.5).execute(task_context())
    assert result["outcome"] == "passed" and sandbox.faults()[0]["fired"] == 2
    assert sum(c["retries"] for c in result["aws_calls"]) == 2


# -- deferrable ---------------------------------------------------------------------------------------
def defer(op, context):
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    record = deferred.value.kwargs["record"]
    json.dumps(record)  # passes through the metadata DB
    return deferred.value.trigger, record


def test_deferrable_bake_passes_in_the_trigger(sandbox, aws_conn, cw, task_context):
    put_manual_alarm(cw, "payments-api-errors", "OK")
    op = bake_op(aws_conn, alarm_names=["payments-api-errors"], metric_thresholds=[LATENCY], deferrable=True)
    context = task_context()
    trigger, record = defer(op, context)
    assert isinstance(trigger, CloudWatchBakeTrigger)

    event = run_trigger(roundtrip(trigger))
    assert event["status"] == "success" and event["watch_id"] == record["watch_id"]
    result = op.execute_complete(context, event=event, record=record)
    assert result["outcome"] == "passed" and result["polls"] >= 3  # polled through the bake, not once
    assert result["alarms"][0]["states_seen"] == ["OK"] and result["metrics"][0]["datapoints"] == 0
    # The worker polled once before deferring; the trigger did the rest.
    assert [c["operation"] for c in result["aws_calls"]] == ["DescribeAlarms", "GetMetricData"]


def test_deferrable_bake_fails_at_the_first_breach(sandbox, aws_conn, cw, task_context, later):
    put_manual_alarm(cw, "payments-api-errors", "OK")
    op = bake_op(aws_conn, alarm_names=["payments-api-errors"], bake_time=60, deferrable=True)
    context = task_context()
    trigger, record = defer(op, context)
    later(0.4, lambda: set_state(cw, "payments-api-errors", "ALARM", "p99 latency above 2 s"))

    started = time.monotonic()
    event = run_trigger(roundtrip(trigger))
    assert time.monotonic() - started < 10  # not the 60 s bake
    assert event["evidence"]["breach"]["name"] == "payments-api-errors"
    with pytest.raises(AwsActionFailed, match="p99 latency above 2 s") as failure:
        op.execute_complete(context, event=event, record=record)
    assert failure.value.result["alarms"][0]["states_seen"] == ["OK", "ALARM"]


def test_deferred_watch_that_cannot_read_cloudwatch_fails_the_bake(sandbox, aws_conn, cw, task_context, later):
    put_manual_alarm(cw, "payments-api-errors", "OK")
    op = bake_op(aws_conn, alarm_names=["payments-api-errors"], bake_time=60, deferrable=True)
    trigger, record = defer(op, task_context())
    later(0.3, lambda: cw.delete_alarms(AlarmNames=["payments-api-errors"]))
    event = run_trigger(trigger)
    assert event["status"] == "error" and event["error"] == "CloudWatchAlarmNotFound"
    with pytest.raises(AwsActionFailed, match="the bake is not proven") as failure:
        op.execute_complete(task_context(), event=event, record=record)
    assert failure.value.status == "ERROR" and "payments-api-errors" in failure.value.reason


@pytest.fixture
def finished_watch(sandbox, aws_conn, cw, task_context):
    """A real deferral and the trigger's clean event, for tampering with."""
    put_manual_alarm(cw, "payments-api-errors", "OK")
    # The worker polls once before deferring: the bake must outlast that poll on a loaded CI machine,
    # or it ends on the worker (0.3 s did not, once, in CI).
    op = bake_op(aws_conn, alarm_names=["payments-api-errors"], metric_thresholds=[LATENCY], deferrable=True)
    trigger, record = defer(op, task_context())
    return op, record, run_trigger(trigger)


def _tamper(event, **evidence):
    return {**event, "evidence": {**event["evidence"], **evidence}}


TAMPERED = {
    "not a dict": lambda e: None,
    "a string": lambda e: "success",
    "unknown status": lambda e: {**e, "status": "passed"},
    "another watch id": lambda e: {**e, "watch_id": "shipflow-another-try"},
    "no evidence": lambda e: {k: v for k, v in e.items() if k != "evidence"},
    "alarms not a list": lambda e: _tamper(e, alarms="all quiet"),
    "watched alarm absent": lambda e: _tamper(e, alarms=[]),
    "metric absent": lambda e: _tamper(e, metrics=[]),
    "another deadline": lambda e: _tamper(e, deadline="2020-01-01T00:00:00+00:00"),
    "other alarms": lambda e: _tamper(e, alarm_names=["something-else"]),
    "ended early, no breach": lambda e: _tamper(e, watched_until=e["evidence"]["bake_started_at"]),
    "unknown state": lambda e: _tamper(e, alarms=[{**e["evidence"]["alarms"][0], "states_seen": ["FINE"]}]),
}


@pytest.mark.parametrize("tamper", TAMPERED.values(), ids=TAMPERED.keys())
def test_trigger_events_are_validated_before_use(finished_watch, task_context, tamper):
    op, record, event = finished_watch
    assert op.execute_complete(task_context(), event=event, record=record)["outcome"] == "passed"
    with pytest.raises(InvalidTriggerEvent):
        op.execute_complete(task_context(), event=tamper(event), record=record)


def test_the_decision_is_made_from_the_evidence_not_the_triggers_verdict(finished_watch, task_context):
    op, record, event = finished_watch
    [alarm] = event["evidence"]["alarms"]
    seen_alarm = {**alarm, "states_seen": ["OK", "ALARM"], "state": "ALARM", "reason": "paged"}
    with pytest.raises(AwsActionFailed, match="paged"):
        op.execute_complete(task_context(), event=_tamper(event, alarms=[seen_alarm], breach=None), record=record)
    [metric] = event["evidence"]["metrics"]
    high = {**metric, "datapoints": 1, "min": 800.0, "max": 800.0, "last": 800.0}
    with pytest.raises(AwsActionFailed, match="crossed its threshold"):
        op.execute_complete(task_context(), event=_tamper(event, metrics=[high], breach=None), record=record)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "a bake that watches nothing would always pass"),
        ({"alarm_names": ["x"], "bake_time": 0}, "bake_time must be a positive number"),
        ({"alarm_names": ["x"], "poll_interval": "30"}, "poll_interval must be a positive number"),
        ({"metric_thresholds": [{**LATENCY, "comparison": ">"}]}, r"metric_thresholds\[0\].comparison='>'"),
        ({"metric_thresholds": [{**LATENCY, "period": 45}]}, "use 1, 5, 10, 30 or a multiple of 60"),
        ({"metric_thresholds": [{**LATENCY, "threshold": "5%"}]}, "threshold must be a number"),
        ({"metric_thresholds": [{**LATENCY, "statistic": "Median"}]}, "statistic='Median'"),
        ({"metric_thresholds": [{**LATENCY, "dimension": {}}]}, r"unknown key\(s\) \['dimension'\]"),
        ({"metric_thresholds": [{k: v for k, v in LATENCY.items() if k != "namespace"}]}, "needs 'namespace'"),
    ],
)
def test_mistakes_fail_when_the_dag_is_parsed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CloudWatchBakeTimeOperator(task_id="bake", **kwargs)


def test_a_retry_after_a_breach_fails_with_it_even_once_the_alarm_cleared(sandbox, aws_conn, cw, task_context):
    """A breach is final: Airflow 3.3.2 can retry a try that failed on its own (#72716), and a fresh
    bake after the alarm cleared would pass and promote what the first bake failed."""
    put_manual_alarm(cw, "payments-api-errors", "ALARM")
    store = TaskStateStore()
    with pytest.raises(AwsActionFailed) as breach:
        bake_op(aws_conn, alarm_names=["payments-api-errors"], bake_time=60).execute(task_context(store=store))
    set_state(cw, "payments-api-errors", "OK")

    with pytest.raises(AwsActionFailed, match="found by an earlier try of this bake") as again:
        bake_op(aws_conn, alarm_names=["payments-api-errors"], bake_time=60).execute(
            task_context(store=store, try_number=2)
        )
    assert (again.value.resource_id, again.value.status) == (breach.value.resource_id, "ALARM")
    assert again.value.result["outcome"] == "breached"
    # Another task instance bakes anew and passes.
    result = bake_op(aws_conn, alarm_names=["payments-api-errors"], bake_time=0.5).execute(
        task_context(store=TaskStateStore(), run_id="another-run")
    )
    assert result["outcome"] == "passed"
