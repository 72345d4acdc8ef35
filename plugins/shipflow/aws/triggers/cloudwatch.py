"""Deferrable CloudWatch gates: wait until alarms are quiet (pre-check), watch a bake (post-check).

The triggers only wait and report evidence; the task decides. ``BakeWatch`` is that evidence for a
bake, as plain data: the worker's first poll and the trigger's polls fill the same structure, and
the operator rebuilds it from the trigger's event, validated, before deciding.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from botocore.exceptions import BotoCoreError, ClientError

from shipflow.aws.constants.cloudwatch import (
    ALARM_STATE_ALARM,
    ALARM_STATE_OK,
    ALARM_STATES,
    DEFAULT_BAKE_POLL_INTERVAL,
    DEFAULT_POKE_INTERVAL,
    METRIC_QUERY_LOOKAHEAD_SECONDS,
)
from shipflow.aws.hooks.cloudwatch import (
    CloudWatchAlarmNotFound,
    CloudWatchAlarmsHook,
    MetricThreshold,
    iso,
    watched_alarms,
)
from shipflow.aws.utils.record import CallRecorder

# What a trigger reports when AWS could not be read (after botocore's retries) or an alarm vanished.
WATCH_ERRORS = (ClientError, BotoCoreError, CloudWatchAlarmNotFound)


def utcnow() -> datetime:
    return datetime.now(UTC)


def blocking_alarms(alarms: Sequence[Mapping[str, Any]], require_ok: bool) -> list[Mapping[str, Any]]:
    """The alarms that keep a pre-check closed: in ALARM, or (``require_ok``) anything but OK."""
    return [a for a in alarms if a["state"] == ALARM_STATE_ALARM or (require_ok and a["state"] != ALARM_STATE_OK)]


# -- the evidence of a bake ---------------------------------------------------------------------------
@dataclass
class BakeWatch:
    """What a bake watched and saw: per alarm the states seen, per metric the datapoints' range.

    ``deadline`` is absolute, so whoever continues the watch (the triggerer, or the triggerer after a
    restart) ends it at the same moment. ``breach()`` is computed from the observations alone, so
    the task can decide again from a trigger's report instead of trusting a verdict.
    """

    watch_id: str
    started_at: datetime
    deadline: datetime
    alarm_names: list[str] = field(default_factory=list)
    alarm_name_prefix: str | None = None
    thresholds: list[MetricThreshold] = field(default_factory=list)
    polls: int = 0
    watched_until: datetime | None = None
    alarms: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    SPEC_KEYS = ("watch_id", "bake_started_at", "deadline", "alarm_names", "alarm_name_prefix", "metric_thresholds")

    @property
    def watches_alarms(self) -> bool:
        return bool(self.alarm_names or self.alarm_name_prefix)

    def queries(self) -> list[dict[str, Any]]:
        return [t.query(f"m{i}") for i, t in enumerate(self.thresholds)]

    def metric_window(self, now: datetime) -> tuple[datetime, datetime]:
        """From the bake's start, past ``now`` (GetMetricData's EndTime is exclusive)."""
        return self.started_at, now + timedelta(seconds=METRIC_QUERY_LOOKAHEAD_SECONDS)

    # -- observations ----------------------------------------------------------------------------
    def observe_alarms(self, summaries: list[dict[str, Any]]) -> None:
        for summary in summaries:
            entry = self.alarms.setdefault(summary["name"], {"states_seen": []})
            entry.update(summary, states_seen=entry["states_seen"])
            if summary["state"] not in entry["states_seen"]:
                entry["states_seen"].append(summary["state"])

    def observe_metrics(self, series: Mapping[str, list[tuple[datetime, float]]]) -> None:
        """Each metric's datapoints since the bake started (every poll reads the whole window again)."""
        for index, threshold in enumerate(self.thresholds):
            query_id = f"m{index}"
            points = series.get(query_id, [])
            values = [value for _, value in points]
            first_breach = next(((at, v) for at, v in points if threshold.breaches(v)), None)
            self.metrics[query_id] = {
                "id": query_id,
                "name": threshold.name,
                "condition": threshold.condition,
                "datapoints": len(points),
                "min": min(values) if values else None,
                "max": max(values) if values else None,
                "last": values[-1] if values else None,
                "last_at": iso(points[-1][0]) if points else None,
                "first_breach": {"value": first_breach[1], "at": iso(first_breach[0])} if first_breach else None,
            }

    def polled(self, at: datetime) -> None:
        self.polls += 1
        self.watched_until = at

    # -- conclusions -----------------------------------------------------------------------------
    def breach(self) -> dict[str, Any] | None:
        """The first alarm seen in ALARM, else the first metric past its threshold, else None."""
        for name in sorted(self.alarms):
            entry = self.alarms[name]
            if ALARM_STATE_ALARM in entry["states_seen"]:
                return {
                    "kind": "alarm",
                    "name": name,
                    "state": ALARM_STATE_ALARM,
                    "reason": entry.get("reason", ""),
                    "at": entry.get("updated_at"),
                }
        for index, threshold in enumerate(self.thresholds):
            entry = self.metrics.get(f"m{index}")
            if not entry or entry["datapoints"] == 0:
                continue
            # The extreme on the threshold's side decides: the maximum for "greater than", else the minimum.
            extreme = entry["max"] if threshold.comparison.startswith("Greater") else entry["min"]
            if threshold.breaches(extreme):
                first = entry.get("first_breach") or {}
                return {
                    "kind": "metric",
                    "name": threshold.name,
                    "condition": threshold.condition,
                    "value": first.get("value", extreme),
                    "at": first.get("at"),
                }
        return None

    def finished(self) -> bool:
        """A breach, or a poll at or after the deadline: the watch has nothing left to wait for."""
        return self.breach() is not None or (self.watched_until is not None and self.watched_until >= self.deadline)

    # -- plain data (XCom, trigger kwargs and events) ----------------------------------------------
    def spec(self) -> dict[str, Any]:
        return {
            "watch_id": self.watch_id,
            "bake_started_at": iso(self.started_at),
            "deadline": iso(self.deadline),
            "alarm_names": list(self.alarm_names),
            "alarm_name_prefix": self.alarm_name_prefix,
            "metric_thresholds": [t.as_dict() for t in self.thresholds],
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.spec(),
            "bake_time_s": round((self.deadline - self.started_at).total_seconds(), 3),
            "polls": self.polls,
            "watched_until": iso(self.watched_until),
            "alarms": [self.alarms[name] for name in sorted(self.alarms)],
            "metrics": [self.metrics[key] for key in sorted(self.metrics)],
            "breach": self.breach(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> BakeWatch:
        """Rebuild a watch from ``as_dict()``; ValueError when the data does not have that shape."""
        if not isinstance(data, Mapping):
            raise ValueError(f"bake evidence must be a dict, got {type(data).__name__}")
        try:
            watch = cls(
                watch_id=str(data["watch_id"]),
                started_at=datetime.fromisoformat(data["bake_started_at"]),
                deadline=datetime.fromisoformat(data["deadline"]),
                alarm_names=[str(n) for n in data["alarm_names"]],
                alarm_name_prefix=data["alarm_name_prefix"],
                thresholds=[
                    MetricThreshold.from_spec(t, f"metric_thresholds[{i}]")
                    for i, t in enumerate(data["metric_thresholds"])
                ],
                polls=int(data["polls"]),
                watched_until=datetime.fromisoformat(data["watched_until"]) if data["watched_until"] else None,
            )
            for alarm in data["alarms"]:
                seen = alarm["states_seen"]
                if not isinstance(seen, list) or not set(seen) <= set(ALARM_STATES) or alarm["state"] not in seen:
                    raise ValueError(f"alarm {alarm.get('name')!r} has invalid states_seen {seen!r}")
                watch.alarms[str(alarm["name"])] = dict(alarm)
            for metric in data["metrics"]:
                count = metric["datapoints"]
                extremes = (metric["min"], metric["max"])
                if not isinstance(count, int) or count < 0:
                    raise ValueError(f"metric {metric.get('id')!r} has invalid datapoints {count!r}")
                if count and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in extremes):
                    raise ValueError(f"metric {metric.get('id')!r} has datapoints but no min/max")
                watch.metrics[str(metric["id"])] = dict(metric)
        except (KeyError, TypeError) as error:
            raise ValueError(f"bake evidence is missing or mistypes {error}") from None
        return watch


# -- triggers -----------------------------------------------------------------------------------------
class _CloudWatchTrigger(BaseTrigger):
    """AWS connection parameters, serialized like the provider's triggers, and the hook they build."""

    def __init__(
        self,
        *,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config

    def _serialize(self, **fields: Any) -> tuple[str, dict[str, Any]]:
        aws = {"region_name": self.region_name, "verify": self.verify, "botocore_config": self.botocore_config}
        kwargs = {"aws_conn_id": self.aws_conn_id, **fields, **{k: v for k, v in aws.items() if v is not None}}
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    def hook(self) -> CloudWatchAlarmsHook:
        return CloudWatchAlarmsHook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config
        )


class CloudWatchAlarmsOkTrigger(_CloudWatchTrigger):
    """Fires once none of the watched alarms is in ALARM (or, with ``require_ok``, all are OK).

    The event carries the evidence: every watched alarm's name, state, reason and update time as
    read by the poll that found them quiet, with that poll's AWS calls.

    :param alarm_names: alarms to watch; each must exist.
    :param alarm_name_prefix: watch every alarm whose name starts with this (at least one must).
    :param require_ok: INSUFFICIENT_DATA blocks too.
    :param poll_interval: seconds between ``DescribeAlarms`` polls.
    :param aws_conn_id: the Airflow connection used for AWS credentials.
    :param region_name: AWS region; the connection's if not given.
    """

    def __init__(
        self,
        *,
        alarm_names: list[str] | None = None,
        alarm_name_prefix: str | None = None,
        require_ok: bool = False,
        poll_interval: float = DEFAULT_POKE_INTERVAL,
        **aws: Any,
    ) -> None:
        super().__init__(**aws)
        self.alarm_names = list(alarm_names or [])
        self.alarm_name_prefix = alarm_name_prefix
        self.require_ok = require_ok
        self.poll_interval = poll_interval

    @property
    def watching(self) -> dict[str, Any]:
        """What this trigger watches; the sensor checks that an event is about the same alarms."""
        return {
            "alarm_names": self.alarm_names,
            "alarm_name_prefix": self.alarm_name_prefix,
            "require_ok": self.require_ok,
        }

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return self._serialize(**self.watching, poll_interval=self.poll_interval)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self.hook()
        polls = 0
        try:
            async with await hook.get_async_conn() as client:
                recorder = CallRecorder().attach(client)
                while True:
                    first_call = len(recorder.calls)
                    alarms = await hook.async_describe_alarms(client, self.alarm_names, self.alarm_name_prefix)
                    summaries = watched_alarms(alarms, self.alarm_names, self.alarm_name_prefix)
                    polls += 1
                    blocking = blocking_alarms(summaries, self.require_ok)
                    if not blocking:
                        break
                    self.log.info("Waiting on %s", ", ".join(f"{a['name']} ({a['state']})" for a in blocking))
                    await asyncio.sleep(self.poll_interval)
        except WATCH_ERRORS as error:
            yield TriggerEvent(
                {
                    "status": "error",
                    "watching": self.watching,
                    "error": type(error).__name__,
                    "message": str(error),
                    "polls": polls,
                }
            )
            return
        yield TriggerEvent(
            {
                "status": "success",
                "watching": self.watching,
                "checked_at": iso(utcnow()),
                "alarms": summaries,
                "polls": polls,
                "aws_calls": recorder.calls[first_call:],
            }
        )


class CloudWatchBakeTrigger(_CloudWatchTrigger):
    """Watches alarms and metric thresholds until the bake's deadline or the first breach.

    It does not judge the bake: its event carries the ``BakeWatch`` evidence (status ``success``
    when the watch ran to its end, ``error`` when AWS could not be read), and the operator decides.

    :param watch: the evidence so far (``BakeWatch.as_dict()``), holding the absolute deadline: a
        triggerer restart rebuilds the trigger from it and ends the bake at the same moment.
    :param poll_interval: seconds between polls.
    :param aws_conn_id: the Airflow connection used for AWS credentials.
    :param region_name: AWS region; the connection's if not given.
    """

    def __init__(self, *, watch: dict[str, Any], poll_interval: float = DEFAULT_BAKE_POLL_INTERVAL, **aws: Any):
        super().__init__(**aws)
        self.watch = watch
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return self._serialize(watch=self.watch, poll_interval=self.poll_interval)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        watch = BakeWatch.from_dict(self.watch)
        hook = self.hook()
        try:
            async with await hook.get_async_conn() as client:
                while not watch.finished():
                    remaining = (watch.deadline - utcnow()).total_seconds()
                    await asyncio.sleep(max(0.0, min(self.poll_interval, remaining)))
                    now = utcnow()
                    if watch.watches_alarms:
                        alarms = await hook.async_describe_alarms(client, watch.alarm_names, watch.alarm_name_prefix)
                        watch.observe_alarms(watched_alarms(alarms, watch.alarm_names, watch.alarm_name_prefix))
                    if watch.thresholds:
                        series = await hook.async_get_metric_data(client, watch.queries(), *watch.metric_window(now))
                        watch.observe_metrics(series)
                    watch.polled(now)
        except WATCH_ERRORS as error:
            yield TriggerEvent(
                {
                    "status": "error",
                    "watch_id": watch.watch_id,
                    "error": type(error).__name__,
                    "message": str(error),
                    "evidence": watch.as_dict(),
                }
            )
            return
        yield TriggerEvent({"status": "success", "watch_id": watch.watch_id, "evidence": watch.as_dict()})
