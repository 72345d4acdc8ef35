"""SNS in the sandbox: what a topic publishes reaches its SQS subscribers, as AWS delivers it.

Shipflow's alerts (and CloudWatch alarm actions) go to an SNS topic; tests and drills read them from
an SQS queue subscribed to it, in the SNS envelope or raw.
"""

from __future__ import annotations

import json

import botocore.exceptions
import pytest


@pytest.fixture
def topic_and_queue(sandbox):
    """(sns client, sqs client, topic ARN, queue URL, queue ARN), not yet subscribed."""
    sns, sqs = sandbox.boto3("sns"), sandbox.boto3("sqs")
    topic = sns.create_topic(Name="shipflow-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="shipflow-alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return sns, sqs, topic, queue, queue_arn


def receive(sqs, queue):
    return sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get(
        "Messages", []
    )


def test_publish_reaches_an_sqs_subscriber_in_the_sns_envelope(topic_and_queue):
    sns, sqs, topic, queue, queue_arn = topic_and_queue
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "false"})
    message_id = sns.publish(
        TopicArn=topic,
        Subject="payments-api deployed",
        Message=json.dumps({"service": "payments-api", "environment": "staging"}),
        MessageAttributes={"environment": {"DataType": "String", "StringValue": "staging"}},
    )["MessageId"]

    [message] = receive(sqs, queue)
    envelope = json.loads(message["Body"])
    assert envelope["Type"] == "Notification"
    assert envelope["MessageId"] == message_id
    assert envelope["TopicArn"] == topic
    assert envelope["Subject"] == "payments-api deployed"
    assert json.loads(envelope["Message"]) == {"service": "payments-api", "environment": "staging"}
    assert envelope["MessageAttributes"] == {"environment": {"Type": "String", "Value": "staging"}}
    assert {"Timestamp", "SignatureVersion", "Signature", "UnsubscribeURL"} <= set(envelope)


def test_raw_message_delivery_sends_the_message_itself(topic_and_queue):
    sns, sqs, topic, queue, queue_arn = topic_and_queue
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    sns.publish(
        TopicArn=topic,
        Message="payments-api rolled back",
        MessageAttributes={"environment": {"DataType": "String", "StringValue": "staging"}},
    )

    [message] = receive(sqs, queue)
    assert message["Body"] == "payments-api rolled back"
    assert message["MessageAttributes"]["environment"] == {"StringValue": "staging", "DataType": "String"}


def test_every_subscriber_gets_each_message_once(sandbox, topic_and_queue):
    sns, sqs, topic, queue, queue_arn = topic_and_queue
    other = sqs.create_queue(QueueName="audit-inbox")["QueueUrl"]
    other_arn = sqs.get_queue_attributes(QueueUrl=other, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for endpoint in (queue_arn, other_arn):
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=endpoint, Attributes={"RawMessageDelivery": "true"})
    for n in range(3):
        sns.publish(TopicArn=topic, Message=f"event {n}")

    for url in (queue, other):
        bodies = sorted(m["Body"] for m in receive(sqs, url))
        assert bodies == ["event 0", "event 1", "event 2"]


def test_publish_to_a_missing_topic_is_not_found(sandbox):
    sns = sandbox.boto3("sns")
    with pytest.raises(botocore.exceptions.ClientError) as err:
        sns.publish(TopicArn="arn:aws:sns:us-east-1:123456789012:nowhere", Message="lost")
    assert err.value.response["Error"]["Code"] == "NotFound"
