"""CloudWatch in the sandbox: alarms evaluate their metric, keep history, notify SNS; service metrics.

Datapoints carry explicit timestamps a few seconds apart and alarms use 10-second periods, so which
period each datapoint falls in is known: the newest period ends at the moment of the read.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest

NAMESPACE = "Shipflow/Test"
WHEN = r"\(\d\d/\d\d/\d\d \d\d:\d\d:\d\d\)"  # how a state reason dates a datapoint


def put_alarm(cw, name, **overrides):
    params = {
        "AlarmName": name,
        "Namespace": NAMESPACE,
        "MetricName": "Errors",
        "Statistic": "Average",
        "Period": 10,
        "EvaluationPeriods": 1,
        "Threshold": 5.0,
        "ComparisonOperator": "GreaterThanThreshold",
        **overrides,
    }
    cw.put_metric_alarm(**params)


def put(cw, value, ago=0.0, metric="Errors"):
    """One high-resolution datapoint, ``ago`` seconds before now."""
    cw.put_metric_data(
        Namespace=NAMESPACE,
        MetricData=[
            {
                "MetricName": metric,
                "Value": value,
                "Timestamp": datetime.now(UTC) - timedelta(seconds=ago),
                "StorageResolution": 1,
            }
        ],
    )


def alarm(cw, name):
    [found] = cw.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return found


def state_updates(cw, name):
    items = cw.describe_alarm_history(AlarmName=name, HistoryItemType="StateUpdate")["AlarmHistoryItems"]
    return [json.loads(item["HistoryData"]) for item in items]


def test_new_alarm_has_insufficient_data_and_a_creation_record(sandbox):
    cw = sandbox.boto3("cloudwatch")
    put_alarm(cw, "errors-high")
    found = alarm(cw, "errors-high")
    assert found["StateValue"] == "INSUFFICIENT_DATA"
    assert found["StateReason"] == "Unchecked: Initial alarm creation"
    [created] = cw.describe_alarm_history(AlarmName="errors-high")["AlarmHistoryItems"]
    assert created["HistoryItemType"] == "ConfigurationUpdate"
    assert created["HistorySummary"] == 'Alarm "errors-high" created'


def test_breaching_datapoint_raises_the_alarm_and_a_good_one_clears_it(sandbox):
    cw = sandbox.boto3("cloudwatch")
    put_alarm(cw, "errors-high", DatapointsToAlarm=1)
    put(cw, 25.3)
    raised = alarm(cw, "errors-high")
    assert raised["StateValue"] == "ALARM"
    assert re.fullmatch(
        rf"Threshold Crossed: 1 out of the last 1 datapoints \[25\.3 {WHEN}\] was greater than the threshold "
        r"\(5\.0\) \(minimum 1 datapoint for OK -> ALARM transition\)\.",
        raised["StateReason"],
    ), raised["StateReason"]
    data = json.loads(raised["StateReasonData"])
    assert data["recentDatapoints"] == [25.3]
    assert (data["threshold"], data["period"], data["statistic"]) == (5.0, 10, "Average")
    assert data["evaluatedDatapoints"][0]["value"] == 25.3
    assert raised["StateTransitionedTimestamp"] == raised["StateUpdatedTimestamp"]

    put(cw, 1.0)  # same period: the average (13.15) still breaches
    assert alarm(cw, "errors-high")["StateValue"] == "ALARM"
    put(cw, -40.0)
    cleared = alarm(cw, "errors-high")
    assert cleared["StateValue"] == "OK"
    assert re.fullmatch(
        rf"Threshold Crossed: 1 out of the last 1 datapoints \[-4\.5\d* {WHEN}\] was not greater than the "
        r"threshold \(5\.0\) \(minimum 1 datapoint for ALARM -> OK transition\)\.",
        cleared["StateReason"],
    ), cleared["StateReason"]

    newest, first = state_updates(cw, "errors-high")
    assert (first["oldState"]["stateValue"], first["newState"]["stateValue"]) == ("INSUFFICIENT_DATA", "ALARM")
    assert first["newState"]["stateReason"] == raised["StateReason"]
    assert first["newState"]["stateReasonData"]["recentDatapoints"] == [25.3]
    assert (newest["oldState"]["stateValue"], newest["newState"]["stateValue"]) == ("ALARM", "OK")


def test_m_out_of_n_counts_breaching_periods(sandbox):
    cw = sandbox.boto3("cloudwatch")
    put_alarm(cw, "two-of-three", EvaluationPeriods=3, DatapointsToAlarm=2)
    put_alarm(cw, "three-of-three", EvaluationPeriods=3, DatapointsToAlarm=3)
    for value, ago in ((30.0, 25), (1.0, 15), (20.0, 5)):  # one datapoint in each of the last 3 periods
        put(cw, value, ago)

    two = alarm(cw, "two-of-three")
    assert two["StateValue"] == "ALARM"
    assert re.fullmatch(
        rf"Threshold Crossed: 2 out of the last 3 datapoints \[20\.0 {WHEN}, 30\.0 {WHEN}\] were greater than the "
        r"threshold \(5\.0\) \(minimum 2 datapoints for OK -> ALARM transition\)\.",
        two["StateReason"],
    ), two["StateReason"]
    three = alarm(cw, "three-of-three")
    assert three["StateValue"] == "OK"
    assert re.fullmatch(
        rf"Threshold Crossed: 1 out of the last 3 datapoints \[1\.0 {WHEN}\] was not greater than the "
        r"threshold \(5\.0\) \(minimum 1 datapoint for ALARM -> OK transition\)\.",
        three["StateReason"],
    ), three["StateReason"]


@pytest.mark.parametrize(
    ("treat", "state", "reason"),
    [
        ("missing", "INSUFFICIENT_DATA", r"Unchecked: Initial alarm creation"),  # no change, no new reason
        (
            "breaching",
            "ALARM",
            r"Threshold Crossed: no datapoints were received for 3 periods and 3 missing datapoints were "
            r"treated as \[Breaching\]\.",
        ),
        (
            "notBreaching",
            "OK",
            r"Threshold Crossed: no datapoints were received for 3 periods and 3 missing datapoints were "
            r"treated as \[NonBreaching\]\.",
        ),
        ("ignore", "INSUFFICIENT_DATA", r"Unchecked: Initial alarm creation"),
    ],
)
def test_no_data_at_all_follows_treat_missing_data(sandbox, treat, state, reason):
    cw = sandbox.boto3("cloudwatch")
    put_alarm(cw, "quiet", EvaluationPeriods=3, TreatMissingData=treat)
    found = alarm(cw, "quiet")
    assert found["StateValue"] == state
    assert re.fullmatch(reason, found["StateReason"]), found["StateReason"]


@pytest.mark.parametrize(
    ("treat", "start", "state", "reason"),
    [
        ("missing", "OK", "INSUFFICIENT_DATA", r"Insufficient Data: 2 datapoints were unknown\."),
        (
            "breaching",
            "OK",
            "ALARM",
            rf"Threshold Crossed: 1 datapoint \[25\.0 {WHEN}\] was greater than the threshold \(5\.0\) "
            r"and 2 missing datapoints were treated as \[Breaching\]\.",
        ),
        (
            "notBreaching",
            "ALARM",
            "OK",
            r"Threshold Crossed: 1 datapoint was received for 3 periods and 2 missing datapoints were "
            r"treated as \[NonBreaching\]\.",
        ),
        ("ignore", "OK", "OK", r"set by the test"),
    ],
)
def test_partly_missing_data_follows_treat_missing_data(sandbox, treat, start, state, reason):
    # 3 out of 3: a single breaching datapoint decides nothing unless missing data counts as breaching.
    cw = sandbox.boto3("cloudwatch")
    put_alarm(cw, "sparse", EvaluationPeriods=3, TreatMissingData=treat)
    cw.set_alarm_state(AlarmName="sparse", StateValue=start, StateReason="set by the test")
    put(cw, 25.0, ago=5)
    found = alarm(cw, "sparse")
    assert found["StateValue"] == state
    assert re.fullmatch(reason, found["StateReason"]), found["StateReason"]


def test_older_datapoints_stand_in_for_missing_recent_ones(sandbox):
    # As AWS documents it: with enough real datapoints in the evaluation range (N + 2 periods here),
    # the most recent N real ones decide and the missing-data treatment does not apply.
    cw = sandbox.boto3("cloudwatch")
    put_alarm(cw, "gappy", EvaluationPeriods=3, TreatMissingData="notBreaching")
    for value, ago in ((1.0, 45), (30.0, 35), (30.0, 25), (30.0, 5)):  # nothing 10-20 s ago
        put(cw, value, ago)
    found = alarm(cw, "gappy")
    assert found["StateValue"] == "ALARM"
    assert found["StateReason"].startswith("Threshold Crossed: 3 datapoints [30.0")


@pytest.mark.parametrize(
    ("operator", "words", "alarming"),
    [
        ("GreaterThanThreshold", "greater than", {6.0}),
        ("GreaterThanOrEqualToThreshold", "greater than or equal to", {5.0, 6.0}),
        ("LessThanThreshold", "less than", {4.0}),
        ("LessThanOrEqualToThreshold", "less than or equal to", {4.0, 5.0}),
    ],
)
def test_each_comparison_operator(sandbox, operator, words, alarming):
    cw = sandbox.boto3("cloudwatch")
    for value in (4.0, 5.0, 6.0):
        put_alarm(cw, f"at-{value}", MetricName=f"m{value}", ComparisonOperator=operator)
        put(cw, value, metric=f"m{value}")
    for value in (4.0, 5.0, 6.0):
        found = alarm(cw, f"at-{value}")
        if value in alarming:
            assert found["StateValue"] == "ALARM"
            assert f"] was {words} the threshold (5.0)." in found["StateReason"]
        else:
            assert found["StateValue"] == "OK"
            assert f"] was not {words} the threshold (5.0)." in found["StateReason"]


def test_set_alarm_state_holds_until_an_evaluation_disagrees(sandbox):
    cw = sandbox.boto3("cloudwatch")
    put_alarm(cw, "errors-high")
    put(cw, 25.0, ago=15)
    assert alarm(cw, "errors-high")["StateValue"] == "ALARM"

    cw.set_alarm_state(AlarmName="errors-high", StateValue="OK", StateReason="testing the pager")
    assert alarm(cw, "errors-high")["StateReason"] == "testing the pager"
    put(cw, 1.0)  # the evaluation agrees (OK): the manual state and its reason stay
    found = alarm(cw, "errors-high")
    assert (found["StateValue"], found["StateReason"]) == ("OK", "testing the pager")
    put(cw, 30.0)  # now it disagrees: the average of 1 and 30 breaches
    assert alarm(cw, "errors-high")["StateValue"] == "ALARM"

    # Without new data the manual state lasts until the next evaluation, about a second later.
    cw.set_alarm_state(AlarmName="errors-high", StateValue="OK", StateReason="testing again")
    assert alarm(cw, "errors-high")["StateValue"] == "OK"
    time.sleep(1.2)
    assert alarm(cw, "errors-high")["StateValue"] == "ALARM"
    assert [u["newState"]["stateValue"] for u in state_updates(cw, "errors-high")] == [
        "ALARM", "OK", "ALARM", "OK", "ALARM",
    ]  # fmt: skip


@pytest.fixture
def inbox(sandbox):
    """An SNS topic with an SQS queue subscribed; returns (topic ARN, receive function)."""
    sns, sqs = sandbox.boto3("sns"), sandbox.boto3("sqs")
    topic = sns.create_topic(Name="shipflow-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="shipflow-alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    def receive():
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        for message in messages:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return [json.loads(m["Body"]) for m in messages]

    return topic, receive


def test_alarm_actions_notify_sns_once_per_state_change(sandbox, inbox):
    topic, receive = inbox
    cw = sandbox.boto3("cloudwatch")
    put_alarm(cw, "errors-high", AlarmActions=[topic], OKActions=[topic], AlarmDescription="Too many errors")
    assert alarm(cw, "errors-high")["StateValue"] == "INSUFFICIENT_DATA"
    assert receive() == []  # no InsufficientDataActions, and creation is not a change

    put(cw, 25.0)
    reason = alarm(cw, "errors-high")["StateReason"]
    [envelope] = receive()
    assert envelope["Subject"] == 'ALARM: "errors-high" in US East (N. Virginia)'
    notice = json.loads(envelope["Message"])
    assert notice["AlarmName"] == "errors-high"
    assert notice["AlarmDescription"] == "Too many errors"
    assert (notice["OldStateValue"], notice["NewStateValue"]) == ("INSUFFICIENT_DATA", "ALARM")
    assert notice["NewStateReason"] == reason
    assert notice["AlarmArn"].endswith(":alarm:errors-high")
    trigger = notice["Trigger"]
    assert (trigger["MetricName"], trigger["Namespace"], trigger["Statistic"]) == ("Errors", NAMESPACE, "AVERAGE")
    assert (trigger["ComparisonOperator"], trigger["Threshold"], trigger["Period"]) == ("GreaterThanThreshold", 5.0, 10)

    put(cw, 40.0)  # still ALARM: no new notification
    alarm(cw, "errors-high")
    assert receive() == []

    put(cw, -100.0)
    assert alarm(cw, "errors-high")["StateValue"] == "OK"
    [envelope] = receive()
    notice = json.loads(envelope["Message"])
    assert (notice["OldStateValue"], notice["NewStateValue"]) == ("ALARM", "OK")

    cw.set_alarm_state(AlarmName="errors-high", StateValue="ALARM", StateReason="pager drill")
    [envelope] = receive()
    assert json.loads(envelope["Message"])["NewStateReason"] == "pager drill"

    actions = cw.describe_alarm_history(AlarmName="errors-high", HistoryItemType="Action")["AlarmHistoryItems"]
    assert [a["HistorySummary"] for a in actions] == [f"Successfully executed action {topic}"] * 3


def test_disabled_actions_do_not_notify_until_enabled(sandbox, inbox):
    topic, receive = inbox
    cw = sandbox.boto3("cloudwatch")
    put_alarm(cw, "errors-high", AlarmActions=[topic], OKActions=[topic], ActionsEnabled=False)
    put(cw, 25.0)
    assert alarm(cw, "errors-high")["StateValue"] == "ALARM"
    assert receive() == []

    cw.enable_alarm_actions(AlarmNames=["errors-high"])
    put(cw, -100.0)
    assert alarm(cw, "errors-high")["StateValue"] == "OK"
    [envelope] = receive()
    assert json.loads(envelope["Message"])["NewStateValue"] == "OK"


def test_action_to_a_missing_topic_is_recorded_as_failed(sandbox):
    cw = sandbox.boto3("cloudwatch")
    gone = "arn:aws:sns:us-east-1:123456789012:deleted-topic"
    put_alarm(cw, "errors-high", AlarmActions=[gone])
    put(cw, 25.0)
    assert alarm(cw, "errors-high")["StateValue"] == "ALARM"
    [action] = cw.describe_alarm_history(AlarmName="errors-high", HistoryItemType="Action")["AlarmHistoryItems"]
    assert action["HistorySummary"].startswith(f"Failed to execute action {gone}")
    assert json.loads(action["HistoryData"])["actionState"] == "Failed"


def test_alarm_history_filters_orders_and_pages(sandbox):
    cw = sandbox.boto3("cloudwatch")
    put_alarm(cw, "errors-high")
    put(cw, 25.0)
    alarm(cw, "errors-high")
    put(cw, -100.0)
    alarm(cw, "errors-high")

    newest_first = cw.describe_alarm_history(AlarmName="errors-high")["AlarmHistoryItems"]
    assert [i["HistorySummary"] for i in newest_first] == [
        "Alarm updated from ALARM to OK",
        "Alarm updated from INSUFFICIENT_DATA to ALARM",
        'Alarm "errors-high" created',
    ]
    oldest_first = cw.describe_alarm_history(AlarmName="errors-high", ScanBy="TimestampAscending")
    assert oldest_first["AlarmHistoryItems"] == newest_first[::-1]

    page = cw.describe_alarm_history(AlarmName="errors-high", MaxRecords=2)
    assert page["AlarmHistoryItems"] == newest_first[:2]
    rest = cw.describe_alarm_history(AlarmName="errors-high", MaxRecords=2, NextToken=page["NextToken"])
    assert rest["AlarmHistoryItems"] == newest_first[2:]
    assert "NextToken" not in rest

    put_alarm(cw, "errors-high", Threshold=50.0)
    updated = cw.describe_alarm_history(AlarmName="errors-high", HistoryItemType="ConfigurationUpdate")
    assert updated["AlarmHistoryItems"][0]["HistorySummary"] == 'Alarm "errors-high" updated'
    assert alarm(cw, "errors-high")["StateValue"] == "OK"  # an update leaves the state alone


def test_describe_alarms_applies_every_filter_together(sandbox):
    cw = sandbox.boto3("cloudwatch")
    put_alarm(cw, "payments-errors")
    put_alarm(cw, "payments-latency", MetricName="Latency")
    put_alarm(cw, "orders-errors")
    put(cw, 25.0)
    alarming = cw.describe_alarms(AlarmNamePrefix="payments-", StateValue="ALARM")["MetricAlarms"]
    assert [a["AlarmName"] for a in alarming] == ["payments-errors"]
    listed = cw.describe_alarms()["MetricAlarms"]
    assert [a["AlarmName"] for a in listed] == ["orders-errors", "payments-errors", "payments-latency"]


# -- synthetic service metrics ---------------------------------------------------------------------
SERVICE = {"Application": "payments", "DeploymentGroup": "staging"}
DIMENSIONS = [{"Name": k, "Value": v} for k, v in SERVICE.items()]


@pytest.fixture
def live_revision(sandbox):
    """A deployment group whose revision serves traffic (the CodeDeploy extension sets it live)."""
    sandbox.set_lifecycle("immediate", service="codedeploy")
    s3 = sandbox.boto3("s3")
    s3.create_bucket(Bucket="shipflow-artifacts")
    s3.put_object(Bucket="shipflow-artifacts", Key="payments/payments-1.zip", Body=b"bundle")
    cd = sandbox.boto3("codedeploy")
    cd.create_application(applicationName="payments", computePlatform="Server")
    cd.create_deployment_group(
        applicationName="payments",
        deploymentGroupName="staging",
        serviceRoleArn="arn:aws:iam::123456789012:role/codedeploy",
    )
    deployment = cd.create_deployment(
        applicationName="payments",
        deploymentGroupName="staging",
        revision={
            "revisionType": "S3",
            "s3Location": {"bucket": "shipflow-artifacts", "key": "payments/payments-1.zip", "bundleType": "zip"},
        },
    )["deploymentId"]
    assert cd.get_deployment(deploymentId=deployment)["deploymentInfo"]["status"] == "Succeeded"
    return deployment


def service_metric(cw, name, stat="Average"):
    now = datetime.now(UTC)
    result = cw.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {"Namespace": "Shipflow/Service", "MetricName": name, "Dimensions": DIMENSIONS},
                    "Period": 5,
                    "Stat": stat,
                },
            }
        ],
        StartTime=now - timedelta(minutes=2),
        EndTime=now + timedelta(seconds=5),
    )
    return result["MetricDataResults"][0]["Values"]


def test_live_revision_reports_healthy_service_metrics(sandbox, live_revision):
    cw = sandbox.boto3("cloudwatch")
    requests = service_metric(cw, "RequestCount", "SampleCount")
    assert requests and all(count <= 2 for count in requests)  # one datapoint per 5-second slot
    assert all(80 <= v <= 120 for v in service_metric(cw, "RequestCount"))
    assert all(0 <= v < 2 for v in service_metric(cw, "ErrorRate"))
    assert all(90 <= v <= 150 for v in service_metric(cw, "LatencyP99"))
    names = {m["MetricName"] for m in cw.list_metrics(Namespace="Shipflow/Service", Dimensions=DIMENSIONS)["Metrics"]}
    assert names == {"RequestCount", "ErrorRate", "LatencyP99"}

    put_alarm(cw, "payments-errors", Namespace="Shipflow/Service", MetricName="ErrorRate", Dimensions=DIMENSIONS)
    assert alarm(cw, "payments-errors")["StateValue"] == "OK"


@pytest.fixture
def unhealthy_payments(sandbox):
    """An ``unhealthy`` fault standing for payments/staging (latency overridden), before it deploys."""
    return sandbox.add_fault(
        "unhealthy", "codedeploy", target="payments/staging", count=None, params={"latency_ms": 900}
    )


def test_unhealthy_revision_trips_its_error_rate_alarm(sandbox, unhealthy_payments, live_revision):
    cw = sandbox.boto3("cloudwatch")
    assert all(18 <= v <= 32 for v in service_metric(cw, "ErrorRate"))
    assert all(800 <= v <= 1000 for v in service_metric(cw, "LatencyP99"))
    [fault] = sandbox.faults()
    assert fault["fired"] == 1 and fault["fired_on"][0].endswith("payments/payments-1.zip")

    put_alarm(cw, "payments-errors", Namespace="Shipflow/Service", MetricName="ErrorRate", Dimensions=DIMENSIONS)
    found = alarm(cw, "payments-errors")
    assert found["StateValue"] == "ALARM"
    assert "was greater than the threshold (5.0)" in found["StateReason"]
    # A standing condition, counted once per revision however often its metrics are read.
    assert sandbox.faults()[0]["fired"] == 1
