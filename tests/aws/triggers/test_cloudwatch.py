"""CloudWatch triggers as the triggerer sees them: serialized kwargs, and a bake that survives a restart."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk.exceptions import TaskDeferred

from shipflow.aws.operators.cloudwatch import CloudWatchBakeTimeOperator
from shipflow.aws.triggers.cloudwatch import CloudWatchAlarmsOkTrigger
from tests.aws.cloudwatch_helpers import put_manual_alarm
from tests.aws.conftest import roundtrip, run_trigger


def deferred_bake(aws_conn, context, bake_time):
    op = CloudWatchBakeTimeOperator(
        task_id="bake",
        aws_conn_id=aws_conn,
        alarm_names=["payments-api-errors"],
        bake_time=bake_time,
        poll_interval=0.2,
        deferrable=True,
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    return op, deferred.value.trigger, deferred.value.kwargs["record"]


def test_bake_trigger_serializes_the_absolute_deadline(sandbox, aws_conn, task_context):
    put_manual_alarm(sandbox.boto3("cloudwatch"), "payments-api-errors", "OK")
    _, trigger, record = deferred_bake(aws_conn, task_context(), bake_time=600)
    classpath, kwargs = trigger.serialize()

    assert classpath == "shipflow.aws.triggers.cloudwatch.CloudWatchBakeTrigger"
    assert kwargs["watch"]["deadline"] == record["deadline"]
    deadline = datetime.fromisoformat(kwargs["watch"]["deadline"])
    assert timedelta(seconds=595) < deadline - datetime.now(UTC) <= timedelta(seconds=600)
    assert kwargs["poll_interval"] == 0.2 and kwargs["aws_conn_id"] == aws_conn
    assert kwargs["watch"]["polls"] == 1  # the worker's first poll travels with the watch
    assert roundtrip(trigger).serialize() == (classpath, kwargs)


def test_restarted_bake_trigger_ends_at_the_original_deadline(sandbox, aws_conn, task_context):
    put_manual_alarm(sandbox.boto3("cloudwatch"), "payments-api-errors", "OK")
    op, trigger, record = deferred_bake(aws_conn, task_context(), bake_time=1.5)
    deadline = datetime.fromisoformat(record["deadline"])

    # The triggerer runs the trigger for a while, then dies; another rebuilds it from the database.
    with pytest.raises(TimeoutError):
        run_trigger(roundtrip(trigger), timeout=0.5)
    time.sleep(0.3)  # nobody watches for a moment
    event = run_trigger(roundtrip(trigger))
    ended = datetime.now(UTC)

    watched_until = datetime.fromisoformat(event["evidence"]["watched_until"])
    assert watched_until >= deadline  # not shortened by the restart
    assert ended - deadline < timedelta(seconds=0.5)  # nor lengthened by the time it was down
    assert op.execute_complete(task_context(), event=event, record=record)["outcome"] == "passed"


def test_alarms_ok_trigger_roundtrip():
    trigger = CloudWatchAlarmsOkTrigger(
        alarm_names=["payments-api-errors"],
        alarm_name_prefix="payments-api-",
        require_ok=True,
        poll_interval=15,
        aws_conn_id="aws_prod",
        region_name="eu-west-1",
    )
    classpath, kwargs = trigger.serialize()
    json.dumps(kwargs)
    assert kwargs == {
        "aws_conn_id": "aws_prod",
        "alarm_names": ["payments-api-errors"],
        "alarm_name_prefix": "payments-api-",
        "require_ok": True,
        "poll_interval": 15,
        "region_name": "eu-west-1",
    }
    assert roundtrip(trigger).watching == trigger.watching
