"""CloudWatch resources the gate tests share: alarms driven by data or by hand, and a live revision.

Alarms use 10-second periods and datapoints carry explicit timestamps, so a breaching datapoint put
"now" decides the alarm's next evaluation (the sandbox re-evaluates at once after new data).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

NAMESPACE = "Shipflow/Test"
SERVICE_NAMESPACE = "Shipflow/Service"
APPLICATION, GROUP = "payments-api", "staging"
SERVICE_DIMENSIONS = [{"Name": "Application", "Value": APPLICATION}, {"Name": "DeploymentGroup", "Value": GROUP}]


def put_alarm(cw: Any, name: str, metric: str = "Errors", **overrides: Any) -> str:
    """An alarm on ``metric`` (Average over 10 s > 5.0); it starts INSUFFICIENT_DATA, as on AWS."""
    params = {
        "AlarmName": name,
        "Namespace": NAMESPACE,
        "MetricName": metric,
        "Statistic": "Average",
        "Period": 10,
        "EvaluationPeriods": 1,
        "Threshold": 5.0,
        "ComparisonOperator": "GreaterThanThreshold",
        **overrides,
    }
    cw.put_metric_alarm(**params)
    return name


def put_manual_alarm(cw: Any, name: str, state: str | None = None) -> str:
    """An alarm whose metric never reports (TreatMissingData=ignore): ``set_state`` holds until changed."""
    put_alarm(cw, name, metric=f"Unreported-{name}", TreatMissingData="ignore")
    if state:
        set_state(cw, name, state)
    return name


def set_state(cw: Any, name: str, state: str, reason: str = "") -> None:
    cw.set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason or f"set to {state} by the test")


def put(cw: Any, value: float, metric: str = "Errors", ago: float = 0.0, count: int = 1) -> None:
    """``count`` samples of ``value`` (one statistic set when more than one), ``ago`` seconds before now."""
    datum: dict[str, Any] = {
        "MetricName": metric,
        "Timestamp": datetime.now(UTC) - timedelta(seconds=ago),
        "StorageResolution": 1,
    }
    if count == 1:
        datum["Value"] = value
    else:
        datum["StatisticValues"] = {"SampleCount": count, "Sum": value * count, "Minimum": value, "Maximum": value}
    cw.put_metric_data(Namespace=NAMESPACE, MetricData=[datum])


def state_of(cw: Any, name: str) -> str:
    return cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"]


class Later:
    """Runs actions on timers while a gate under test waits; joins them all at teardown."""

    def __init__(self) -> None:
        self.timers: list[threading.Timer] = []
        self.errors: list[BaseException] = []

    def __call__(self, delay: float, action: Callable[[], Any]) -> None:
        def run() -> None:
            try:
                action()
            except BaseException as error:  # surfaced by close(), not lost in the thread
                self.errors.append(error)

        timer = threading.Timer(delay, run)
        timer.start()
        self.timers.append(timer)

    def after_call(self, sandbox: Any, call: str, action: Callable[[], Any], timeout: float = 30) -> None:
        """Run ``action`` once the sandbox has received one more ``call`` (e.g. the gate's first poll).

        A fixed delay races the gate's start on a loaded machine: its first poll can come later.
        """
        before = sandbox.calls().get(call, 0)

        def when_polled() -> None:
            deadline = time.monotonic() + timeout
            while sandbox.calls().get(call, 0) <= before:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the sandbox received no {call} within {timeout} s")
                time.sleep(0.02)
            action()

        self(0, when_polled)

    def close(self) -> None:
        for timer in self.timers:
            timer.cancel()
            timer.join()
        if self.errors:
            raise self.errors[0]


def deploy_revision(sandbox: Any, version: str = "1.4.0") -> str:
    """A deployment of payments-api/staging that succeeds at once; its revision then serves traffic."""
    sandbox.set_lifecycle("immediate", service="codedeploy")
    key = f"{APPLICATION}/{APPLICATION}-{version}.zip"
    s3 = sandbox.boto3("s3")
    s3.create_bucket(Bucket="shipflow-artifacts")
    s3.put_object(Bucket="shipflow-artifacts", Key=key, Body=b"bundle")
    cd = sandbox.boto3("codedeploy")
    cd.create_application(applicationName=APPLICATION, computePlatform="Server")
    cd.create_deployment_group(
        applicationName=APPLICATION,
        deploymentGroupName=GROUP,
        serviceRoleArn="arn:aws:iam::123456789012:role/codedeploy",
    )
    deployment = cd.create_deployment(
        applicationName=APPLICATION,
        deploymentGroupName=GROUP,
        revision={
            "revisionType": "S3",
            "s3Location": {"bucket": "shipflow-artifacts", "key": key, "bundleType": "zip"},
        },
    )["deploymentId"]
    assert cd.get_deployment(deploymentId=deployment)["deploymentInfo"]["status"] == "Succeeded"
    return deployment


def put_error_rate_alarm(cw: Any, name: str = "payments-api-staging-error-rate") -> str:
    """The alarm a service's release watches: ErrorRate above 5 % over 10 s."""
    return put_alarm(
        cw, name, metric="ErrorRate", Namespace=SERVICE_NAMESPACE, Dimensions=SERVICE_DIMENSIONS, Unit="Percent"
    )
