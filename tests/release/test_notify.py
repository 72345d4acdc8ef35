"""Release alerts through Airflow's notifiers: SNS (read back from an SQS subscriber in the sandbox) and
Slack (a local HTTP server as the incoming webhook), routed by the spec's ``notifications.on``.

Also the alerts the release operators send: the failure, the start of a rollback, the manual fallback's
page, and an approval step's ``approval_pending`` (once per request, not on every resume or retry).
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from shipflow.release import notify as alerts
from shipflow.release.outcome import Outcome
from shipflow.sandbox.client import SANDBOX_CREDENTIALS

TOPIC = "shipflow-test-alerts"
SLACK_TOKEN = "T0SHIP/B0FLOW/webhook-token-4d2e"  # the connection's password: the webhook's secret part


# -- channels --------------------------------------------------------------------------------------
@pytest.fixture
def inbox(sandbox, monkeypatch):
    """An SNS topic with an SQS subscriber in the sandbox, and the Airflow connection ``aws_alerts`` to it.

    Yields (topic ARN, receive): ``receive()`` returns the SNS envelopes delivered so far.
    """
    connection = {
        "conn_type": "aws",
        "login": SANDBOX_CREDENTIALS["aws_access_key_id"],
        "password": SANDBOX_CREDENTIALS["aws_secret_access_key"],
        "extra": {"endpoint_url": sandbox.endpoint, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_ALERTS", json.dumps(connection))
    sns, sqs = sandbox.boto3("sns"), sandbox.boto3("sqs")
    topic = sns.create_topic(Name=TOPIC)["TopicArn"]
    queue = sqs.create_queue(QueueName=f"{TOPIC}-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    def receive() -> list[dict[str, Any]]:
        found = []
        while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            found += [json.loads(m["Body"]) for m in batch]
            sqs.delete_message_batch(
                QueueUrl=queue,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )
        return found

    return topic, receive


class Webhook:
    """A local Slack incoming webhook: records each POST (path, JSON body) and answers ``status``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests.append((self.path, json.loads(body)))
                answer = b"ok" if hook.status == 200 else b"invalid_token"
                self.send_response(hook.status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slack(monkeypatch):
    """A local webhook behind the Airflow connection ``slack_alerts`` (an AIRFLOW_CONN_ variable)."""
    webhook = Webhook()
    connection = {"conn_type": "slackwebhook", "host": webhook.url, "password": SLACK_TOKEN}
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ALERTS", json.dumps(connection))
    yield webhook
    webhook.close()


def routing(topic: str | None = None, slack_conn: str | None = None, on: tuple[str, ...] = alerts.EVENTS) -> dict:
    return {"sns_topic_arn": topic, "slack_connection_id": slack_conn, "on": list(on)}


def rollback_alert(**overrides: Any) -> alerts.Alert:
    facts = {
        "title": "payments-api 1.4.0 rolling back in staging",
        "headline": "rolling back payments-api 1.4.0 in staging: an alarm fired during the bake time",
        "service": "payments-api",
        "version": "1.4.0",
        "environment": "staging",
        "run_id": "1.4.0-77",
        "details": [("Failed step", "watch_bake")],
        "action": "nothing yet: Shipflow is undoing it",
        "url": "http://airflow.example/dags/release__payments-api/runs/1.4.0-77",
        **overrides,
    }
    return alerts.release_alert(alerts.ROLLBACK, **facts)


# -- routing and content ---------------------------------------------------------------------------
def test_a_routed_event_reaches_the_topic_with_its_subject_message_and_attributes(inbox):
    topic, receive = inbox
    sent = alerts.send(routing(topic), rollback_alert(), aws_conn_id="aws_alerts")

    assert sent == [f"sns:{topic}"]
    [envelope] = receive()
    assert envelope["Subject"] == "Shipflow [rollback] payments-api 1.4.0 rolling back in staging"
    assert envelope["Message"] == (
        "rolling back payments-api 1.4.0 in staging: an alarm fired during the bake time\n"
        "\n"
        "Service: payments-api\n"
        "Version: 1.4.0\n"
        "Environment: staging\n"
        "Run: 1.4.0-77\n"
        "Failed step: watch_bake\n"
        "What to do: nothing yet: Shipflow is undoing it\n"
        "Open: http://airflow.example/dags/release__payments-api/runs/1.4.0-77"
    )
    # SNS subscription filter policies can route on these.
    assert envelope["MessageAttributes"] == {
        "event": {"Type": "String", "Value": "rollback"},
        "service": {"Type": "String", "Value": "payments-api"},
        "environment": {"Type": "String", "Value": "staging"},
    }


def test_an_event_the_spec_does_not_list_sends_nothing(inbox, slack):
    topic, receive = inbox
    notifications = routing(topic, "slack_alerts", on=("failure",))

    assert alerts.send(notifications, rollback_alert(), aws_conn_id="aws_alerts") == []
    failure = alerts.release_alert(
        alerts.FAILURE,
        title="t",
        headline="release of payments-api failed",
        service="payments-api",
        environment="staging",
        run_id="r1",
        action="fix it",
    )
    assert alerts.send(notifications, failure, aws_conn_id="aws_alerts") == [f"sns:{topic}", "slack:slack_alerts"]
    assert [e["MessageAttributes"]["event"]["Value"] for e in receive()] == ["failure"]
    assert len(slack.requests) == 1


def test_no_notifications_section_sends_nothing(inbox):
    _, receive = inbox
    assert alerts.send(None, rollback_alert()) == []
    assert alerts.send({}, rollback_alert()) == []
    assert receive() == []


def test_a_long_or_multi_line_subject_is_made_one_that_sns_accepts(inbox):
    topic, receive = inbox
    title = "approval needed: Release payments-api 1.4.0 to production?\n" + "x" * 200 + " – é"
    assert alerts.send(routing(topic), rollback_alert(title=title), aws_conn_id="aws_alerts")
    [envelope] = receive()
    subject = envelope["Subject"]
    assert len(subject) < 100 and "\n" not in subject and subject.isascii() and subject.endswith("...")
    assert subject.startswith("Shipflow [rollback] approval needed: Release payments-api 1.4.0 to production? xxx")


# -- Slack -----------------------------------------------------------------------------------------
def test_slack_gets_the_alert_as_json_through_the_webhook_connection(slack):
    sent = alerts.send(routing(slack_conn="slack_alerts"), rollback_alert(details=[("Comment", "a<b & c>d")]))

    assert sent == ["slack:slack_alerts"]
    [(path, body)] = slack.requests
    assert path == f"/{SLACK_TOKEN}"  # the webhook URL is the connection's host + its password
    assert body == {
        "text": "*Shipflow [rollback] payments-api 1.4.0 rolling back in staging*\n"
        "rolling back payments-api 1.4.0 in staging: an alarm fired during the bake time\n"
        "\n"
        "Service: payments-api\n"
        "Version: 1.4.0\n"
        "Environment: staging\n"
        "Run: 1.4.0-77\n"
        "Comment: a&lt;b &amp; c&gt;d\n"  # Slack markup escaped: shown as written
        "What to do: nothing yet: Shipflow is undoing it\n"
        "Open: http://airflow.example/dags/release__payments-api/runs/1.4.0-77",
        "unfurl_links": False,
        "unfurl_media": False,
    }


def test_both_channels_get_every_routed_event(inbox, slack):
    topic, receive = inbox
    sent = alerts.send(routing(topic, "slack_alerts"), rollback_alert(), aws_conn_id="aws_alerts")
    assert sent == [f"sns:{topic}", "slack:slack_alerts"]
    assert len(receive()) == 1 and len(slack.requests) == 1


# -- secrets ---------------------------------------------------------------------------------------
@pytest.fixture
def secrets(monkeypatch):
    """A token in an environment variable and a password in a connection URI, as a worker would have them."""
    from shipflow.redact import environment_secrets

    monkeypatch.setenv("SHIPFLOW_DEPLOY_TOKEN", "tok-3f9a1c77e2")
    monkeypatch.setenv("AIRFLOW_CONN_RELEASE_DB", "postgres://app:db-pw-8c1e55@db.internal:5432/app")
    environment_secrets.cache_clear()
    yield ("tok-3f9a1c77e2", "db-pw-8c1e55")
    environment_secrets.cache_clear()


def test_secrets_never_reach_a_notification(inbox, slack, secrets):
    topic, receive = inbox
    token, password = secrets
    alert = rollback_alert(
        title=f"payments-api rolling back (token {token})",
        headline=f"rolling back: the deploy hook answered 'bad password {password}'",
        details=[("Comment", f"used {token}")],
    )
    assert alerts.send(routing(topic, "slack_alerts"), alert, aws_conn_id="aws_alerts")

    [envelope] = receive()
    [(_, body)] = slack.requests
    for text in (envelope["Subject"], envelope["Message"], body["text"]):
        assert token not in text and password not in text
    assert envelope["Subject"] == "Shipflow [rollback] payments-api rolling back (token ***)"
    assert envelope["Message"].startswith("rolling back: the deploy hook answered 'bad password ***'")
    assert "Comment: used ***" in body["text"]


# -- best effort -----------------------------------------------------------------------------------
def test_a_failed_publish_is_logged_and_does_not_stop_the_other_channel(inbox, slack, caplog):
    topic, _ = inbox
    missing = topic.replace(TOPIC, "no-such-topic")
    with caplog.at_level(logging.ERROR, logger=alerts.__name__):
        sent = alerts.send(routing(missing, "slack_alerts"), rollback_alert(), aws_conn_id="aws_alerts")
    assert sent == ["slack:slack_alerts"]
    assert f"Could not send the rollback notification to sns:{missing}" in caplog.text
    assert len(slack.requests) == 1


def test_a_webhook_that_refuses_is_logged_and_does_not_raise(inbox, slack, caplog):
    topic, receive = inbox
    slack.status = 403
    with caplog.at_level(logging.ERROR, logger=alerts.__name__):
        sent = alerts.send(routing(topic, "slack_alerts"), rollback_alert(), aws_conn_id="aws_alerts")
    assert sent == [f"sns:{topic}"]
    assert "Could not send the rollback notification to slack:slack_alerts" in caplog.text
    assert len(receive()) == 1


def test_a_missing_connection_does_not_raise(caplog):
    with caplog.at_level(logging.ERROR, logger=alerts.__name__):
        assert alerts.send(routing(slack_conn="no_such_connection"), rollback_alert()) == []
    assert "slack:no_such_connection" in caplog.text


# -- what the release operators send -----------------------------------------------------------------
class FakeTI:
    """What the operators read of their task instance: XComs, task states, ids; records pushes."""

    def __init__(self, task_id: str, xcoms: dict[tuple[str, str | None], Any], states: dict[str, str] | None = None):
        self.dag_id, self.run_id, self.task_id, self.map_index, self.id = (
            "release__payments-api",
            "1.4.0-77",
            task_id,
            -1,
            "0190e4f2-0000-7000-8000-000000000001",
        )
        self.log_url = f"http://airflow.example/dags/{self.dag_id}/runs/{self.run_id}/tasks/{task_id}"
        self.xcoms = {("check_release_request", None): {"version": "1.4.0"}, **xcoms}
        self.states = states or {}
        self.pushed: dict[str, Any] = {}

    def xcom_pull(self, task_ids: str, key: str | None = None) -> Any:
        return self.xcoms.get((task_ids, key))

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value

    def get_task_states(self, **_: Any) -> dict[str, dict[str, str]]:
        return {self.run_id: self.states}


def fail_release(topic: str, on: tuple[str, ...]) -> str:
    """Run fail_release after a verified rollback in staging; returns the run's failure message."""
    from airflow.providers.common.compat.sdk import AirflowFailException

    from shipflow.release.tasks import FailReleaseOperator

    outcome = {
        "outcome": "rolled_back",
        "promoted": False,
        "reason": "the deployment failed",
        "failed_step": "deploy",
        "rolled_back": ["rollback_deployment"],
    }
    ti = FakeTI(
        "staging.fail_release",
        {("staging.decide_outcome", "outcome"): outcome},
        {"staging.verify_rollback": "success", "staging.manual_fallback": "skipped"},
    )
    task = FailReleaseOperator(
        task_id="fail_release",
        environment="staging",
        service="payments-api",
        notifications=routing(topic, on=on),
        aws_conn_id="aws_alerts",
    )
    with pytest.raises(AirflowFailException) as failed:
        task.execute({"ti": ti})
    return str(failed.value)


def test_fail_release_sends_the_failure_alert_with_the_reason(inbox):
    topic, receive = inbox
    reason = fail_release(topic, on=("failure",))

    assert reason == (
        "release of payments-api failed in staging: the deployment failed; rolled back (rollback_deployment) "
        "and verified"
    )
    [envelope] = receive()
    assert envelope["Subject"] == "Shipflow [failure] payments-api 1.4.0 release failed in staging"
    message = envelope["Message"].splitlines()
    assert message[0] == reason
    assert {"Service: payments-api", "Version: 1.4.0", "Environment: staging", "Run: 1.4.0-77"} <= set(message)
    assert "Failed step: deploy" in message
    assert any(line.startswith("What to do: staging serves the last good version again") for line in message)


def test_fail_release_sends_nothing_when_the_spec_does_not_route_failures(inbox):
    topic, receive = inbox
    assert fail_release(topic, on=("rollback", "approval_pending")).startswith("release of payments-api failed")
    assert receive() == []


def test_the_rollback_alert_goes_out_where_the_rollback_starts_with_its_reason(inbox):
    from shipflow.release.tasks import ReleaseOutcomeOperator

    topic, receive = inbox
    task = ReleaseOutcomeOperator(
        task_id="decide_outcome",
        environment="staging",
        expected=["deploy"],
        approvals=[],
        service="payments-api",
        notifications=routing(topic),
        aws_conn_id="aws_alerts",
    )
    decision = Outcome(
        ["rollback_deployment", "rollback_stack"],
        reason="an alarm fired during the bake time",
        failed_step="watch_bake",
        rolled_back=["rollback_deployment", "rollback_stack"],
    )
    task._alert_rollback({"ti": FakeTI("staging.decide_outcome", {})}, decision)

    [envelope] = receive()
    assert envelope["Subject"] == "Shipflow [rollback] payments-api 1.4.0 rolling back in staging"
    message = envelope["Message"].splitlines()
    assert message[0] == "rolling back payments-api 1.4.0 in staging: an alarm fired during the bake time"
    assert "Undoing: the deployment (rollback_deployment), the stack change (rollback_stack)" in message
    assert "Failed step: watch_bake" in message


def test_the_manual_fallback_pages_with_the_runbook_once_the_request_is_open(inbox, monkeypatch):
    import airflow.providers.standard.operators.hitl as hitl
    from airflow.sdk.exceptions import TaskAwaitingInput

    from shipflow.release.tasks import ManualFallbackOperator

    topic, receive = inbox
    opened = []
    monkeypatch.setattr(hitl, "upsert_hitl_detail", lambda **kw: opened.append(kw["subject"]))
    task = ManualFallbackOperator(
        task_id="manual_fallback",
        environment="staging",
        service="payments-api",
        runbook_url="https://runbooks.example.com/payments-api",
        timeout=timedelta(hours=2),
        assigned_users=[{"id": "bob", "name": "bob"}, {"id": "approver2", "name": "approver2"}],
        notifications=routing(topic),
        aws_conn_id="aws_alerts",
    )
    outcome = {"reason": "the deployment failed", "rolled_back": ["rollback_deployment"]}
    ti = FakeTI("staging.manual_fallback", {("staging.decide_outcome", "outcome"): outcome})
    with pytest.raises(TaskAwaitingInput):
        task.execute({"ti": ti, "task_instance": ti, "task": task})

    assert opened == ["Manual fallback: restore payments-api in staging"]
    [envelope] = receive()
    assert envelope["Subject"] == "Shipflow [manual_fallback] ACTION NEEDED: restore payments-api in staging"
    message = envelope["Message"].splitlines()
    assert message[0] == "the automated rollback of payments-api 1.4.0 in staging failed: restore it by hand"
    assert "Runbook: https://runbooks.example.com/payments-api" in message
    assert "Who confirms: bob, approver2" in message
    assert "Why the release stopped: the deployment failed" in message


# -- approval_pending: once per request --------------------------------------------------------------
class StateStore(dict):
    """The task state store: what a retry of the step finds again."""

    def set(self, key: str, value: str) -> None:
        self[key] = value


def test_approval_pending_goes_out_once_per_request_not_on_every_ask_or_retry(inbox, monkeypatch):
    import airflow.sdk.execution_time.hitl as hitl
    from airflow.sdk.exceptions import TaskDeferred

    from shipflow.release.approval import ReleaseApprovalOperator

    topic, receive = inbox
    asked = []
    monkeypatch.setattr(hitl, "upsert_hitl_detail", lambda **kw: asked.append(kw["assigned_users"]))

    def step() -> ReleaseApprovalOperator:
        return ReleaseApprovalOperator(
            task_id="approve_release",
            subject="Release payments-api 1.4.0 to production?",
            approvers=["approver1", "approver2", "admin"],
            required=2,
            response_timeout=timedelta(hours=4),
            notifications=routing(topic),
            service="payments-api",
            environment="production",
            aws_conn_id="aws_alerts",
        )

    store = StateStore()
    ti = FakeTI("production.approve_release", {})
    context = {
        "ti": ti,
        "task_instance": ti,
        "task_state_store": store,
        "dag_run": SimpleNamespace(triggering_user_name="approver1"),
    }
    with pytest.raises(TaskDeferred) as first:
        step().execute(context)
    [envelope] = receive()
    assert (
        envelope["Subject"] == "Shipflow [approval_pending] approval needed: Release payments-api 1.4.0 to production?"
    )
    message = envelope["Message"].splitlines()
    assert message[0] == "Release payments-api 1.4.0 to production? waits for 2 approval(s) from: approver2, admin"
    assert "Triggered by: approver1 (may not approve it)" in message
    assert any(
        line.startswith(
            "What to do: review it, then approve or reject in Airflow (link below) or with "
            "`shipflow approve payments-api --env production --run 1.4.0-77`"
        )
        for line in message
    )

    # One of two approves: the step asks the others again, without a second alert.
    approval = {
        "chosen_options": ["Approve"],
        "params_input": {"comment": "ok"},
        "responded_by_user": {"id": "approver2", "name": "approver2"},
        "responded_at": datetime.now(UTC),
    }
    with pytest.raises(TaskDeferred):
        step().execute_complete(context, approval, **first.value.kwargs)
    # A retry of the step (its worker died) resumes from the task state store: still no second alert.
    with pytest.raises(TaskDeferred):
        step().execute(context)
    assert len(asked) == 3 and receive() == []
