"""Sandbox extension for CloudWatch: alarms that evaluate their metric, and each live service's metrics.

Stock moto stores alarms and datapoints but never evaluates an alarm (a new one says OK), never runs
its actions and has no ``DescribeAlarmHistory``. Here every read of alarms or metrics
(``DescribeAlarms``, ``DescribeAlarmsForMetric``, ``DescribeAlarmHistory``, ``GetMetricData``,
``GetMetricStatistics``, ``ListMetrics``, and :func:`alarm_states`) first brings the account up to date:

1. Synthetic service metrics: for each revision serving traffic (``world.live_revisions()``, set by
   CodeDeploy), one datapoint per ``SLOT_SECONDS`` slot since the last emission (at most an hour back)
   of ``RequestCount``, ``ErrorRate`` and ``LatencyP99`` in namespace ``Shipflow/Service``, with
   dimensions ``Application`` and ``DeploymentGroup``. An ``unhealthy`` fault (service ``codedeploy``,
   target the revision label, its S3 key or ``application/group``) turns them bad while it stands.
2. Alarm evaluation: each metric alarm not evaluated in the last second (or since data arrived) gets
   its statistic over each of the last periods, counted M out of N against the threshold, with
   missing data treated as AWS documents it. A change of state sets ``StateReason`` and
   ``StateReasonData`` in AWS's words, adds a history item, and publishes AWS's alarm notification to
   the SNS topics among the new state's actions when actions are enabled.

Periods slide with the clock (the last period ends now) instead of being aligned to the minute, so
datapoints put with explicit timestamps fall into predictable periods. New alarms start
``INSUFFICIENT_DATA`` as on AWS; ``SetAlarmState`` holds until an evaluation reaches another state.
Alarms on metric math (``Metrics``) are stored but not evaluated (moto has no composite alarms).
``DescribeAlarms`` applies all its filters together and ``ListMetrics`` lists each metric once, as
AWS does (moto applies one filter, and repeats a multi-dimension metric per datapoint).

Public interface used by other extensions (keep it):
    alarm_states(account_id, region, names) -> dict[str, str]   # name -> OK | ALARM | INSUFFICIENT_DATA
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import operator
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moto.cloudwatch import urls as cloudwatch_urls
from moto.cloudwatch.models import (
    Alarm,
    CloudWatchBackend,
    MetricAggregatedDatum,
    MetricDatum,
    MetricDatumBase,
    cloudwatch_backends,
)
from moto.cloudwatch.responses import CloudWatchResponse
from moto.codedeploy.models import codedeploy_backends
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.sns.models import sns_backends

from shipflow.sandbox import world
from shipflow.sandbox.errors import AwsError
from shipflow.sandbox.faults import REGISTRY, Fault

SERVICE_NAMESPACE = "Shipflow/Service"
# One synthetic datapoint per metric per slot; datapoints are backfilled lazily on read.
SLOT_SECONDS = 5
BACKFILL_SECONDS = 3600
# What a revision reports: healthy unless an ``unhealthy`` fault stands for it (params override).
HEALTHY = {"error_rate": 0.5, "latency_ms": 120.0}
UNHEALTHY = {"error_rate": 25.0, "latency_ms": 1500.0}
REQUESTS_PER_SLOT = 100

# An alarm is evaluated again on read once this old, or at once when new data has arrived.
EVALUATION_INTERVAL_SECONDS = 1.0
# AWS reads more periods than EvaluationPeriods (5 for 3 in its documentation's examples), so real
# datapoints just before the last N periods still count when some of those N are missing.
EXTRA_EVALUATION_PERIODS = 2
HISTORY_PAGE_SIZE = 100

COMPARISONS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}
PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d+)?|100)$")


# -- formatting, as AWS writes it ------------------------------------------------------------------
def _utcnow() -> datetime:
    # moto keeps naive UTC datetimes; comparisons with its timestamps need the same kind.
    return datetime.now(UTC).replace(tzinfo=None)


def _naive(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _iso(moment: datetime) -> str:
    """``2026-11-26T12:00:05.123+0000``, the timestamp format of alarm JSON documents."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def _short(moment: datetime) -> str:
    """``26/11/26 12:00:05``, the timestamp format inside a state reason."""
    return moment.strftime("%d/%m/%y %H:%M:%S")


def _num(value: float) -> str:
    return repr(float(value))


def _count(n: int, noun: str = "datapoint") -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _was(n: int) -> str:
    return "was" if n == 1 else "were"


@functools.cache
def _region_names() -> dict[str, str]:
    """Region code -> name (``US East (N. Virginia)``), as alarm notifications name the region."""
    import botocore.session

    endpoints = botocore.session.get_session().get_data("endpoints")
    return {
        code: info.get("description", code)
        for partition in endpoints["partitions"]
        for code, info in partition["regions"].items()
    }


# -- evaluation -------------------------------------------------------------------------------------
@dataclass
class Period:
    start: datetime
    value: float | None  # None: no datapoint in this period
    sample_count: float = 0.0


@dataclass
class Outcome:
    state: str | None  # None: keep the current state (TreatMissingData=ignore)
    reason: str
    reason_data: str


def statistic(data: list[MetricDatumBase], stat: str) -> tuple[float | None, float]:
    """(value of ``stat`` over ``data``, sample count); the value is None when there is nothing."""
    singles = [d.value for d in data if isinstance(d, MetricDatum)]
    sets = [d for d in data if isinstance(d, MetricAggregatedDatum)]
    count = float(len(singles) + sum(s.sample_count for s in sets))
    if not count:
        return None, 0.0
    percentile = PERCENTILE.match(stat)
    if percentile:
        # Statistic sets carry no distribution; percentiles come from single values (nearest rank).
        if not singles:
            return None, count
        ranked = sorted(singles)
        rank = max(math.ceil(float(percentile.group(1)) / 100 * len(ranked)), 1)
        return ranked[rank - 1], count
    total = sum(singles) + sum(s.sum for s in sets)
    values = {
        "Sum": lambda: total,
        "SampleCount": lambda: count,
        "Average": lambda: total / count,
        "Minimum": lambda: min(singles + [s.min for s in sets]),
        "Maximum": lambda: max(singles + [s.max for s in sets]),
    }
    return (values[stat]() if stat in values else None), count


def evaluable(alarm: Alarm) -> bool:
    """Alarms on one metric with a plain threshold; metric math and composite alarms are not evaluated."""
    stat = alarm.extended_statistic or alarm.statistic
    return (
        alarm.rule is None
        and not alarm.metric_data_queries
        and bool(alarm.metric_name and alarm.period and alarm.evaluation_periods)
        and alarm.threshold is not None
        and alarm.comparison_operator in COMPARISONS
        and bool(stat)
        and (stat in ("Sum", "SampleCount", "Average", "Minimum", "Maximum") or bool(PERCENTILE.match(stat)))
    )


def periods(alarm: Alarm, series: Iterable[tuple[float, MetricDatumBase]], now: float) -> list[Period]:
    """The alarm's periods over its evaluation range, newest first; the newest ends ``now``."""
    length = int(alarm.period)
    count = int(alarm.evaluation_periods) + EXTRA_EVALUATION_PERIODS
    earliest = now - count * length
    dimensions = {(d.name, d.value) for d in alarm.dimensions}
    buckets: list[list[MetricDatumBase]] = [[] for _ in range(count)]
    for at, datum in series:
        if not earliest < at <= now:
            continue
        if {(d.name, d.value) for d in datum.dimensions} != dimensions:
            continue
        if alarm.unit and datum.unit != alarm.unit:
            continue
        buckets[int((now - at) // length)].append(datum)
    stat = alarm.extended_statistic or alarm.statistic
    result = []
    for index, bucket in enumerate(buckets):
        value, samples = statistic(bucket, stat)
        result.append(Period(_naive(now - (index + 1) * length), value, samples))
    return result


def evaluate(alarm: Alarm, series: Iterable[tuple[float, MetricDatumBase]], now: float) -> Outcome:
    """The state AWS would give ``alarm`` now, with its reason.

    As AWS documents it: when at least N of the periods in the evaluation range have data, the most
    recent N with data decide; otherwise all of them count and the missing ones are filled according
    to TreatMissingData (breaching, notBreaching), or left unknown (missing; ignore keeps the state).
    ALARM when at least M evaluated datapoints breach; else OK when any real datapoint does not
    breach (or a missing one is treated as not breaching); else INSUFFICIENT_DATA.
    """
    compare, words = COMPARISONS[alarm.comparison_operator]
    threshold = float(alarm.threshold)
    n = int(alarm.evaluation_periods)
    m = int(alarm.datapoints_to_alarm or n)
    treat = alarm.treat_missing_data or "missing"
    everything = periods(alarm, series, now)
    real = [p for p in everything if p.value is not None]
    evaluated = real[:n]
    fills = n - len(evaluated)
    unknown = [p for p in everything if p.value is None][:fills]
    breaching = [p for p in evaluated if compare(p.value, threshold)]
    within = [p for p in evaluated if not compare(p.value, threshold)]
    filled_as = {"breaching": "Breaching", "notBreaching": "NonBreaching"}.get(treat) if fills else None

    if len(breaching) + (fills if filled_as == "Breaching" else 0) >= m:
        state, listed = "ALARM", breaching
    elif within or filled_as == "NonBreaching":
        state, listed = "OK", within
    else:
        state, listed = ("INSUFFICIENT_DATA" if treat != "ignore" else None), []

    reason_data: dict[str, Any] = {
        "version": "1.0",
        "queryDate": _iso(_naive(now)),
        "startDate": _iso(min(p.start for p in evaluated + unknown)),
        "statistic": alarm.extended_statistic or alarm.statistic,
        "period": int(alarm.period),
        "recentDatapoints": [p.value for p in reversed(real)],
        "threshold": threshold,
        "evaluatedDatapoints": [
            {"timestamp": _iso(p.start), "sampleCount": p.sample_count, "value": p.value}
            if p.value is not None
            else {"timestamp": _iso(p.start)}
            for p in sorted(evaluated + unknown, key=lambda p: p.start, reverse=True)
        ],
    }
    if alarm.unit:
        reason_data["unit"] = alarm.unit
    if state is None or state == "INSUFFICIENT_DATA":
        reason = f"Insufficient Data: {_count(fills)} {_was(fills)} unknown."
        return Outcome(state, reason, json.dumps(reason_data))

    # DatapointsToAlarm set explicitly makes an "M out of N" alarm, which AWS words differently.
    m_of_n = alarm.datapoints_to_alarm is not None
    missing = f"{_count(fills, 'missing datapoint')} {_was(fills)} treated as [{filled_as}]" if filled_as else ""
    if not listed:
        received = "no datapoints were" if not evaluated else f"{_count(len(evaluated))} {_was(len(evaluated))}"
        reason = f"Threshold Crossed: {received} received for {_count(n, 'period')} and {missing}."
    else:
        points = ", ".join(f"{_num(p.value)} ({_short(p.start)})" for p in listed)
        counted = f"{len(listed)} out of the last {n} datapoints" if m_of_n else _count(len(listed))
        negation = "not " if state == "OK" else ""
        reason = (
            f"Threshold Crossed: {counted} [{points}] {_was(len(listed))} {negation}{words} "
            f"the threshold ({_num(threshold)})"
        )
        if missing:
            reason += f" and {missing}"
        if m_of_n:
            minimum, transition = (m, "OK -> ALARM") if state == "ALARM" else (n - m + 1, "ALARM -> OK")
            reason += f" (minimum {_count(minimum)} for {transition} transition)"
        reason += "."
    return Outcome(state, reason, json.dumps(reason_data))


# -- notifications ----------------------------------------------------------------------------------
@dataclass
class Notification:
    alarm_name: str
    topic_arn: str
    subject: str
    message: str


def _trigger(alarm: Alarm) -> dict[str, Any]:
    trigger: dict[str, Any] = {}
    if alarm.metric_name:
        trigger.update(
            MetricName=alarm.metric_name,
            Namespace=alarm.namespace,
            StatisticType="ExtendedStatistic" if alarm.extended_statistic else "Statistic",
        )
        if alarm.extended_statistic:
            trigger["ExtendedStatistic"] = alarm.extended_statistic
        else:
            trigger["Statistic"] = (alarm.statistic or "").upper()
        trigger.update(
            Unit=alarm.unit,
            Dimensions=[{"value": d.value, "name": d.name} for d in alarm.dimensions],
            Period=alarm.period,
        )
    else:
        trigger["Metrics"] = [
            {"Id": q.id, "Label": q.label, "Expression": q.expression, "ReturnData": q.return_data}
            for q in alarm.metric_data_queries
        ]
    trigger.update(
        EvaluationPeriods=alarm.evaluation_periods,
        DatapointsToAlarm=alarm.datapoints_to_alarm or alarm.evaluation_periods,
        ComparisonOperator=alarm.comparison_operator,
        Threshold=alarm.threshold,
        TreatMissingData=alarm.treat_missing_data or "missing",
        EvaluateLowSampleCountPercentile=alarm.evaluate_low_sample_count_percentile or "",
    )
    return trigger


def notifications(alarm: Alarm, account_id: str, old_state: str) -> list[Notification]:
    """AWS's alarm notification for the alarm's new state, one per SNS topic among its actions."""
    if not alarm.actions_enabled:
        return []
    actions = {
        "ALARM": alarm.alarm_actions,
        "OK": alarm.ok_actions,
        "INSUFFICIENT_DATA": alarm.insufficient_data_actions,
    }[alarm.state_value]
    topics = [arn for arn in actions or [] if arn.split(":")[2:3] == ["sns"]]
    if not topics:
        return []
    region = _region_names().get(alarm.region_name, alarm.region_name)
    message = json.dumps(
        {
            "AlarmName": alarm.name,
            "AlarmDescription": alarm.description or None,
            "AWSAccountId": account_id,
            "AlarmConfigurationUpdatedTimestamp": _iso(alarm.configuration_updated_timestamp),
            "NewStateValue": alarm.state_value,
            "NewStateReason": alarm.state_reason,
            "StateChangeTime": _iso(alarm.state_updated_timestamp),
            "Region": region,
            "AlarmArn": alarm.alarm_arn,
            "OldStateValue": old_state,
            "OKActions": alarm.ok_actions,
            "AlarmActions": alarm.alarm_actions,
            "InsufficientDataActions": alarm.insufficient_data_actions,
            "Trigger": _trigger(alarm),
        }
    )
    # SNS caps a subject at 100 characters.
    subject = f'{alarm.state_value}: "{alarm.name}" in {region}'[:100]
    return [Notification(alarm.name, arn, subject, message) for arn in topics]


def _publish(notification: Notification) -> str | None:
    """Publish through moto's SNS backend in this process; the error message when it fails."""
    _, _, _, region, account_id, _ = notification.topic_arn.split(":", 5)
    try:
        sns_backends[account_id][region].publish(
            notification.message, arn=notification.topic_arn, subject=notification.subject
        )
    except (ServiceException, KeyError, ValueError) as exc:
        return getattr(exc, "message", None) or str(exc)
    return None


# -- synthetic service metrics ----------------------------------------------------------------------
def _jitter(*key: object) -> float:
    """A deterministic value in [-1, 1) for ``key``: the same slot always reports the same numbers."""
    digest = hashlib.blake2b("|".join(map(str, key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**63 - 1


def _unhealthy_profile(fault: Fault) -> dict[str, float]:
    """UNHEALTHY with the fault's ``error_rate`` / ``latency_ms`` params where they are numbers."""
    profile = dict(UNHEALTHY)
    for name in profile:
        value = fault.params.get(name)
        # A bad param must not break every metrics read; the default applies instead.
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            profile[name] = float(value)
    return profile


def _s3_key(rev: world.LiveRevision) -> str | None:
    """The S3 key of the live revision's bundle, from its deployment, to match faults that name it."""
    deployment = codedeploy_backends[rev.account_id][rev.region].deployments.get(rev.deployment_id)
    revision = getattr(deployment, "revision", None) or {}
    return (revision.get("s3Location") or {}).get("key")


class SandboxCloudWatchBackend(CloudWatchBackend):
    """moto's CloudWatch backend, with alarm evaluation, history and actions, and service metrics."""

    def __init__(self, region_name: str, account_id: str) -> None:
        super().__init__(region_name, account_id)
        # One lock for alarms, datapoints and history: the server is threaded.
        self.lock = threading.RLock()
        self.alarm_history: list[dict[str, Any]] = []
        self._data_version = 0  # bumped by every datapoint written, so alarms re-evaluate at once
        self._evaluated: dict[str, tuple[float, int]] = {}  # alarm -> (when, data version)
        self._next_slot: dict[str, int] = {}  # deployment id -> next slot to emit
        self._unhealthy: dict[str, Fault] = {}  # deployment id -> the fault that made it unhealthy

    @property
    def _url_module(self) -> Any:
        # moto finds a backend's routes from its class's module name; ours lives outside moto.
        return cloudwatch_urls

    # -- reads bring the account up to date ----------------------------------------------------
    def refresh(self) -> None:
        """Emit the due synthetic datapoints, evaluate the due alarms, and run their actions."""
        now = time.time()
        pending: list[Notification] = []
        with self.lock:
            self._emit_service_metrics(now)
            due = [a for a in self.alarms.values() if evaluable(a) and self._due(a.name, now)]
            if due:
                index = self._series_index()
                for alarm in due:
                    outcome = evaluate(alarm, index.get((alarm.namespace, alarm.metric_name), ()), now)
                    self._evaluated[alarm.name] = (now, self._data_version)
                    if outcome.state is not None and outcome.state != alarm.state_value:
                        pending += self._change_state(alarm, outcome.state, outcome.reason, outcome.reason_data)
        self._run(pending)

    def _due(self, name: str, now: float) -> bool:
        last = self._evaluated.get(name)
        return last is None or last[1] != self._data_version or now - last[0] >= EVALUATION_INTERVAL_SECONDS

    def _series_index(self) -> dict[tuple[str, str], list[tuple[float, MetricDatumBase]]]:
        index: dict[tuple[str, str], list[tuple[float, MetricDatumBase]]] = {}
        for datum in self.get_all_metrics():
            index.setdefault((datum.namespace, datum.name), []).append((_epoch(datum.timestamp), datum))
        return index

    # -- state changes -------------------------------------------------------------------------
    def _change_state(self, alarm: Alarm, state: str, reason: str, reason_data: str | None) -> list[Notification]:
        old = {"stateValue": alarm.state_value, "stateReason": alarm.state_reason}
        old_data = alarm.state_reason_data
        alarm.state_value, alarm.state_reason, alarm.state_reason_data = state, reason, reason_data
        alarm.state_updated_timestamp = alarm.state_transitioned_timestamp = _utcnow()
        return self._record_change(alarm, old, old_data)

    def _record_change(self, alarm: Alarm, old: dict[str, Any], old_data: str | None) -> list[Notification]:
        """History item for a state change already applied to ``alarm``; the notifications to send."""
        new: dict[str, Any] = {"stateValue": alarm.state_value, "stateReason": alarm.state_reason}
        for state, data in ((old, old_data), (new, alarm.state_reason_data)):
            try:
                if data and json.loads(data):
                    state["stateReasonData"] = json.loads(data)
            except ValueError:
                pass
        self._history(
            alarm.name,
            "StateUpdate",
            f"Alarm updated from {old['stateValue']} to {alarm.state_value}",
            {"version": "1.0", "oldState": old, "newState": new},
            alarm.state_updated_timestamp,
        )
        return notifications(alarm, self.account_id, old["stateValue"])

    def _run(self, pending: list[Notification]) -> None:
        # Outside the lock: SNS may deliver anywhere (SQS, HTTP), none of which should wait on us.
        for notification in pending:
            error = _publish(notification)
            result = "Succeeded" if error is None else "Failed"
            summary = (
                f"Successfully executed action {notification.topic_arn}"
                if error is None
                else f'Failed to execute action {notification.topic_arn}. Received error: "{error}"'
            )
            now = _utcnow()
            data: dict[str, Any] = {
                "actionState": result,
                "stateUpdateTimestamp": int(_epoch(now) * 1000),
                "notificationResource": notification.topic_arn,
                "publishedMessage": notification.message,
            }
            if error is not None:
                data["error"] = error
            with self.lock:
                self._history(notification.alarm_name, "Action", summary, data, now)

    def _history(self, name: str, item_type: str, summary: str, data: dict[str, Any], at: datetime) -> None:
        self.alarm_history.append(
            {
                "AlarmName": name,
                "AlarmType": "MetricAlarm",  # moto has no PutCompositeAlarm
                "Timestamp": at,
                "HistoryItemType": item_type,
                "HistorySummary": summary,
                "HistoryData": json.dumps(data),
            }
        )

    # -- moto's writes, made to keep history and state like AWS --------------------------------
    def put_metric_alarm(self, name: str, *args: Any, **kwargs: Any) -> Alarm:
        with self.lock:
            previous = self.alarms.get(name)
            alarm = super().put_metric_alarm(name, *args, **kwargs)
            config = _configuration(alarm)
            if previous is None:
                # AWS: a new alarm is INSUFFICIENT_DATA until its first evaluation (moto says OK).
                alarm.state_value = "INSUFFICIENT_DATA"
                alarm.state_transitioned_timestamp = alarm.state_updated_timestamp
                self._history(
                    name,
                    "ConfigurationUpdate",
                    f'Alarm "{name}" created',
                    {"type": "Create", "version": "1.0", "createdAlarm": config},
                    alarm.configuration_updated_timestamp,
                )
            else:
                # AWS: an update overwrites the configuration but leaves the state as it was.
                for attribute in ("state_value", "state_reason", "state_reason_data", "state_updated_timestamp"):
                    setattr(alarm, attribute, getattr(previous, attribute))
                alarm.state_transitioned_timestamp = getattr(
                    previous, "state_transitioned_timestamp", previous.state_updated_timestamp
                )
                self._history(
                    name,
                    "ConfigurationUpdate",
                    f'Alarm "{name}" updated',
                    {
                        "type": "Update",
                        "version": "1.0",
                        "originalAlarm": _configuration(previous),
                        "updatedAlarm": config,
                    },
                    alarm.configuration_updated_timestamp,
                )
            self._evaluated.pop(name, None)
        return alarm

    def delete_alarms(self, alarm_names: list[str]) -> None:
        with self.lock:
            for name in alarm_names:
                alarm = self.alarms.get(name)
                if alarm is not None:
                    self._history(
                        name,
                        "ConfigurationUpdate",
                        f'Alarm "{name}" deleted',
                        {"type": "Delete", "version": "1.0", "deletedAlarm": _configuration(alarm)},
                        _utcnow(),
                    )
                self._evaluated.pop(name, None)
            super().delete_alarms(alarm_names)

    def set_alarm_state(self, alarm_name: str, reason: str, reason_data: str, state_value: str) -> None:
        pending: list[Notification] = []
        with self.lock:
            alarm = self.alarms.get(alarm_name)
            old = {"stateValue": alarm.state_value, "stateReason": alarm.state_reason} if alarm else {}
            old_data = alarm.state_reason_data if alarm else None
            super().set_alarm_state(alarm_name, reason, reason_data, state_value)  # validates and sets
            alarm = self.alarms[alarm_name]
            # The manual state holds until the next evaluation, which waits for new data or a second.
            self._evaluated[alarm_name] = (time.time(), self._data_version)
            if old["stateValue"] != state_value:
                alarm.state_transitioned_timestamp = alarm.state_updated_timestamp
                pending = self._record_change(alarm, old, old_data)
        self._run(pending)

    def put_metric_data(self, namespace: str, metric_data: list[dict[str, Any]]) -> None:
        with self.lock:
            super().put_metric_data(namespace, metric_data)
            self._data_version += 1

    # -- reads ---------------------------------------------------------------------------------
    def describe_alarms(self) -> list[Alarm]:
        self.refresh()
        with self.lock:
            return list(self.alarms.values())

    def find_alarms(
        self,
        names: list[str],
        name_prefix: str | None,
        action_prefix: str | None,
        state_value: str | None,
        types: list[str],
    ) -> list[Alarm]:
        """DescribeAlarms with every filter applied together, sorted by name, as AWS lists them."""
        if types and "MetricAlarm" not in types:
            return []  # moto has no composite alarms to list
        return sorted(
            (
                a
                for a in self.describe_alarms()
                if (not names or a.name in names)
                and (not name_prefix or a.name.startswith(name_prefix))
                and (not action_prefix or any(arn.startswith(action_prefix) for arn in a.alarm_actions or []))
                and (not state_value or a.state_value == state_value)
            ),
            key=lambda a: a.name,
        )

    def get_metric_data(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        self.refresh()
        return super().get_metric_data(*args, **kwargs)

    def get_metric_statistics(self, *args: Any, **kwargs: Any) -> Any:
        self.refresh()
        return super().get_metric_statistics(*args, **kwargs)

    def list_metrics(self, *args: Any, **kwargs: Any) -> Any:
        self.refresh()
        return super().list_metrics(*args, **kwargs)

    def get_filtered_metrics(
        self, metric_name: str, namespace: str, dimensions: list[dict[str, str]]
    ) -> list[MetricDatumBase]:
        """One entry per metric, as ListMetrics answers (moto repeats multi-dimension metrics per datapoint)."""
        seen: set[tuple[str, str, frozenset[tuple[str, str]]]] = set()
        metrics = []
        for datum in self.get_all_metrics():
            key = (datum.namespace, datum.name, frozenset((d.name, d.value) for d in datum.dimensions))
            if key not in seen and datum.filter(namespace, metric_name, dimensions):
                seen.add(key)
                metrics.append(datum)
        return metrics

    def describe_alarm_history(
        self,
        alarm_name: str | None,
        alarm_types: list[str],
        item_type: str | None,
        start: datetime | None,
        end: datetime | None,
        max_records: int | None,
        next_token: str | None,
        scan_by: str,
    ) -> tuple[list[dict[str, Any]], str | None]:
        self.refresh()
        wanted = set(alarm_types or ["MetricAlarm"])  # AWS: only metric alarms unless asked
        with self.lock:
            items = [
                item
                for item in self.alarm_history
                if item["AlarmType"] in wanted
                and (not alarm_name or item["AlarmName"] == alarm_name)
                and (not item_type or item["HistoryItemType"] == item_type)
                and (start is None or _epoch(item["Timestamp"]) >= _epoch(start))
                and (end is None or _epoch(item["Timestamp"]) <= _epoch(end))
            ]
        if scan_by != "TimestampAscending":
            items.reverse()
        offset = 0
        if next_token:
            if not next_token.isdigit() or int(next_token) > len(items):
                raise AwsError("InvalidNextToken", "The service returned an invalid NextToken.")
            offset = int(next_token)
        size = max_records or HISTORY_PAGE_SIZE
        page = items[offset : offset + size]
        more = offset + size < len(items)
        return page, (str(offset + size) if more else None)

    # -- synthetic service metrics -------------------------------------------------------------
    def _emit_service_metrics(self, now: float) -> None:
        """Backfill each live revision's datapoints up to ``now``, one per slot (cheap when none is live)."""
        live = [r for r in world.live_revisions() if (r.account_id, r.region) == (self.account_id, self.region_name)]
        last_slot = int(now // SLOT_SECONDS)
        for rev in live:
            key = (rev.application, rev.deployment_group)
            # Slots are tracked per deployment, so a revision that just went live reports in the
            # current slot at once (beside its predecessor's datapoint), as traffic shifts would.
            first = max(
                self._next_slot.get(rev.deployment_id, 0),
                int(rev.since // SLOT_SECONDS),
                int((now - BACKFILL_SECONDS) // SLOT_SECONDS),
            )
            if first > last_slot:
                continue
            fault = self._unhealthy_fault(rev)
            profile = HEALTHY if fault is None else _unhealthy_profile(fault)
            error_rate, latency = profile["error_rate"], profile["latency_ms"]
            dimensions = [
                {"Name": "Application", "Value": rev.application},
                {"Name": "DeploymentGroup", "Value": rev.deployment_group},
            ]
            for slot in range(first, last_slot + 1):
                at = _naive(max(slot * SLOT_SECONDS, rev.since))
                values = (
                    ("RequestCount", round(REQUESTS_PER_SLOT * (1 + 0.1 * _jitter(*key, slot, "r"))), "Count"),
                    ("ErrorRate", min(100.0, error_rate * (1 + 0.2 * _jitter(*key, slot, "e"))), "Percent"),
                    ("LatencyP99", latency * (1 + 0.1 * _jitter(*key, slot, "l")), "Milliseconds"),
                )
                for name, value, unit in values:
                    self.metric_data.append(MetricDatum(SERVICE_NAMESPACE, name, float(value), dimensions, at, unit))
            self._next_slot[rev.deployment_id] = last_slot + 1
            self._data_version += 1

    def _unhealthy_fault(self, rev: world.LiveRevision) -> Fault | None:
        """The ``unhealthy`` fault standing for this revision's deployment, if any.

        A fault stands until removed: its ``count`` limits how many revisions it makes unhealthy
        (one ``take`` per revision records where it fired), not how many datapoints.
        """
        fault = self._unhealthy.get(rev.deployment_id)
        if fault is not None:
            if any(f["id"] == fault.id for f in REGISTRY.list()):
                return fault
            del self._unhealthy[rev.deployment_id]
        candidates = (rev.revision, _s3_key(rev), f"{rev.application}/{rev.deployment_group}")
        if REGISTRY.peek("unhealthy", "codedeploy", *candidates) is None:
            return None
        fault = REGISTRY.take("unhealthy", "codedeploy", *candidates, on=rev.revision)
        if fault is not None:
            self._unhealthy[rev.deployment_id] = fault
        return fault


def _configuration(alarm: Alarm) -> dict[str, Any]:
    """The alarm's configuration as alarm history documents show it."""
    config: dict[str, Any] = {
        "alarmName": alarm.name,
        "alarmArn": alarm.alarm_arn,
        "alarmDescription": alarm.description,
        "actionsEnabled": alarm.actions_enabled,
        "oKActions": alarm.ok_actions,
        "alarmActions": alarm.alarm_actions,
        "insufficientDataActions": alarm.insufficient_data_actions,
    }
    config.update(
        namespace=alarm.namespace,
        metricName=alarm.metric_name,
        dimensions=[{"name": d.name, "value": d.value} for d in alarm.dimensions],
        statistic=alarm.statistic,
        extendedStatistic=alarm.extended_statistic,
        unit=alarm.unit,
        period=alarm.period,
        evaluationPeriods=alarm.evaluation_periods,
        datapointsToAlarm=alarm.datapoints_to_alarm,
        threshold=alarm.threshold,
        comparisonOperator=alarm.comparison_operator,
        treatMissingData=alarm.treat_missing_data,
    )
    return {k: v for k, v in config.items() if v is not None}


# -- actions added to or replaced on moto's CloudWatchResponse -------------------------------------
def describe_alarms(self: CloudWatchResponse) -> ActionResult:
    alarms = self.cloudwatch_backend.find_alarms(
        names=self._get_param("AlarmNames", []),
        name_prefix=self._get_param("AlarmNamePrefix"),
        action_prefix=self._get_param("ActionPrefix"),
        state_value=self._get_param("StateValue"),
        types=self._get_param("AlarmTypes", []),
    )
    return ActionResult({"MetricAlarms": alarms, "CompositeAlarms": []})


def describe_alarm_history(self: CloudWatchResponse) -> ActionResult:
    items, next_token = self.cloudwatch_backend.describe_alarm_history(
        alarm_name=self._get_param("AlarmName"),
        alarm_types=self._get_param("AlarmTypes", []),
        item_type=self._get_param("HistoryItemType"),
        start=self._get_param("StartDate"),
        end=self._get_param("EndDate"),
        max_records=self._get_int_param("MaxRecords"),
        next_token=self._get_param("NextToken"),
        scan_by=self._get_param("ScanBy") or "TimestampDescending",
    )
    return ActionResult({"AlarmHistoryItems": items, "NextToken": next_token})


ACTIONS = (describe_alarms, describe_alarm_history)


def alarm_states(account_id: str, region: str, names: list[str]) -> dict[str, str]:
    """The current state of each named alarm that exists (evaluated first, like any read)."""
    backend = cloudwatch_backends[account_id][region]
    return {a.name: a.state_value for a in backend.describe_alarms() if a.name in names}


def install() -> None:
    cloudwatch_backends.backend = SandboxCloudWatchBackend
    cloudwatch_backends.clear()
    for action in ACTIONS:
        setattr(CloudWatchResponse, action.__name__, action)


def reset() -> None:
    """Nothing to forget here: alarms, datapoints and history live in the backend, which moto's reset renews."""
