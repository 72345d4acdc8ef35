"""A thin hook for CloudWatch alarms and metrics, and the plain-data shapes Shipflow's gates read.

``alarm_summary`` turns an alarm as ``DescribeAlarms`` returns it into JSON-safe evidence;
``MetricThreshold`` is one metric a bake watches (validated when the DAG is parsed) and the
``GetMetricData`` query that reads it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.common.compat.sdk import AirflowFailException

from shipflow.aws.constants.cloudwatch import (
    ALARM_TYPES,
    BASIC_STATISTICS,
    COMPARISON_OPERATORS,
    DEFAULT_METRIC_PERIOD,
    DEFAULT_METRIC_STATISTIC,
    DESCRIBE_ALARMS_MAX_NAMES,
    HIGH_RESOLUTION_PERIODS,
    PERCENTILE_STATISTIC,
)

_ALARM_RESULT_KEYS = {"MetricAlarms": "MetricAlarm", "CompositeAlarms": "CompositeAlarm", "LogAlarms": "LogAlarm"}


class CloudWatchAlarmNotFound(AirflowFailException):
    """A gate names an alarm (or a prefix) that matches nothing: a typo must never pass a gate.

    Not retried: the names come from the DAG, and a retry would find the same nothing.
    """


def iso(moment: datetime | None) -> str | None:
    """UTC ISO 8601 (botocore parses AWS timestamps in the local time zone)."""
    return moment.astimezone(UTC).isoformat() if moment else None


def alarm_summary(alarm: Mapping[str, Any]) -> dict[str, Any]:
    """The evidence a gate keeps about one alarm (JSON-safe)."""
    return {
        "name": alarm["AlarmName"],
        "type": alarm.get("AlarmType", "MetricAlarm"),
        "state": alarm.get("StateValue"),
        "reason": alarm.get("StateReason", ""),
        "updated_at": iso(alarm.get("StateUpdatedTimestamp")),
        "arn": alarm.get("AlarmArn"),
    }


def alarm_name_list(alarm_names: str | Sequence[str] | None, alarm_name_prefix: str | None, task_id: str) -> list[str]:
    """``alarm_names`` as a list (one name may be given as a string), checked when the DAG is parsed."""
    names = [alarm_names] if isinstance(alarm_names, str) else list(alarm_names or [])
    if not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(f"{task_id}: alarm_names must be non-empty alarm names, got {alarm_names!r}")
    if alarm_name_prefix is not None and (not isinstance(alarm_name_prefix, str) or not alarm_name_prefix.strip()):
        raise ValueError(f"{task_id}: alarm_name_prefix must be a non-empty string, got {alarm_name_prefix!r}")
    return names


def watched_alarms(
    alarms: Iterable[Mapping[str, Any]], alarm_names: Sequence[str], alarm_name_prefix: str | None
) -> list[dict[str, Any]]:
    """Summaries of the alarms a gate watches, by name; raise if a named alarm or the prefix finds nothing."""
    summaries = sorted((alarm_summary(a) for a in alarms), key=lambda s: s["name"])
    found = {s["name"] for s in summaries}
    missing = [name for name in alarm_names if name not in found]
    if missing:
        raise CloudWatchAlarmNotFound(
            f"CloudWatch alarm(s) not found: {', '.join(missing)}. Check alarm_names for a typo, or that the "
            "stack creating the alarm has deployed in this account and region."
        )
    if alarm_name_prefix and not any(s["name"].startswith(alarm_name_prefix) for s in summaries):
        raise CloudWatchAlarmNotFound(
            f"No CloudWatch alarm's name starts with alarm_name_prefix={alarm_name_prefix!r}. "
            "Check the prefix for a typo; a gate that watches nothing would always pass."
        )
    return summaries


@dataclass(frozen=True)
class MetricThreshold:
    """One metric a bake watches: a datapoint on the wrong side of ``threshold`` is a breach.

    Built from a dict in the DAG (``from_spec``), so a mistake fails when the DAG is parsed.
    """

    name: str
    namespace: str
    metric_name: str
    comparison: str
    threshold: float
    dimensions: dict[str, str] = field(default_factory=dict)
    statistic: str = DEFAULT_METRIC_STATISTIC
    period: int = DEFAULT_METRIC_PERIOD
    unit: str | None = None

    @classmethod
    def from_spec(cls, spec: Any, where: str) -> MetricThreshold:
        """Validate one entry of ``metric_thresholds``; ``where`` names it in errors."""
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where} must be a dict with namespace, metric_name, comparison, threshold; got {spec!r}")
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(spec) - set(allowed))
        if unknown:
            raise ValueError(f"{where} has unknown key(s) {unknown}; allowed: {', '.join(allowed)}")
        for key in ("namespace", "metric_name", "comparison", "threshold"):
            if spec.get(key) in (None, ""):
                raise ValueError(f"{where} needs {key!r}")
        comparison = spec["comparison"]
        if comparison not in COMPARISON_OPERATORS:
            raise ValueError(
                f"{where}.comparison={comparison!r} is not a CloudWatch ComparisonOperator; "
                f"use one of {', '.join(COMPARISON_OPERATORS)}"
            )
        threshold = spec["threshold"]
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise ValueError(f"{where}.threshold must be a number, got {threshold!r}")
        statistic = spec.get("statistic") or DEFAULT_METRIC_STATISTIC
        if statistic not in BASIC_STATISTICS and not PERCENTILE_STATISTIC.match(statistic):
            raise ValueError(
                f"{where}.statistic={statistic!r}: use {', '.join(BASIC_STATISTICS)} or a percentile (p99)"
            )
        period = spec.get("period", DEFAULT_METRIC_PERIOD)
        if (
            isinstance(period, bool)
            or not isinstance(period, int)
            or period <= 0
            or (period not in HIGH_RESOLUTION_PERIODS and period % 60)
        ):
            raise ValueError(f"{where}.period={period!r}: use 1, 5, 10, 30 or a multiple of 60 seconds")
        dimensions = spec.get("dimensions") or {}
        if not isinstance(dimensions, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in dimensions.items()
        ):
            raise ValueError(f"{where}.dimensions must map dimension names to string values, got {dimensions!r}")
        default_name = " ".join(
            [f"{spec['namespace']}/{spec['metric_name']}", *(f"{k}={v}" for k, v in dimensions.items())]
        )
        return cls(
            name=spec.get("name") or default_name,
            namespace=spec["namespace"],
            metric_name=spec["metric_name"],
            comparison=comparison,
            threshold=float(threshold),
            dimensions=dict(dimensions),
            statistic=statistic,
            period=period,
            unit=spec.get("unit"),
        )

    def breaches(self, value: float) -> bool:
        compare, _ = COMPARISON_OPERATORS[self.comparison]
        return compare(value, self.threshold)

    @property
    def condition(self) -> str:
        """``ErrorRate Average > 5.0``, how a breach message words the threshold."""
        return f"{self.metric_name} {self.statistic} {COMPARISON_OPERATORS[self.comparison][1]} {self.threshold}"

    def query(self, query_id: str) -> dict[str, Any]:
        """This metric as one ``MetricDataQueries`` entry."""
        stat: dict[str, Any] = {
            "Metric": {
                "Namespace": self.namespace,
                "MetricName": self.metric_name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in self.dimensions.items()],
            },
            "Period": self.period,
            "Stat": self.statistic,
        }
        if self.unit:
            stat["Unit"] = self.unit
        return {"Id": query_id, "MetricStat": stat, "ReturnData": True}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CloudWatchAlarmsHook(AwsBaseHook):
    """Read CloudWatch alarms and metric data.

    Additional arguments (such as ``aws_conn_id``) may be specified and are passed down to the
    underlying AwsBaseHook. The ``async_*`` methods take an aiobotocore client from
    ``get_async_conn()``, for triggers.

    .. seealso::
        - :class:`airflow.providers.amazon.aws.hooks.base_aws.AwsBaseHook`
        - `boto3 CloudWatch <https://boto3.amazonaws.com/v1/documentation/api/latest/reference/services/cloudwatch.html>`__
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "cloudwatch"
        super().__init__(*args, **kwargs)

    @staticmethod
    def _describe_requests(alarm_names: Sequence[str], alarm_name_prefix: str | None) -> list[dict[str, Any]]:
        # AWS refuses AlarmNames together with AlarmNamePrefix: one request each, names in chunks of 100.
        requests = [
            {"AlarmNames": list(alarm_names[i : i + DESCRIBE_ALARMS_MAX_NAMES])}
            for i in range(0, len(alarm_names), DESCRIBE_ALARMS_MAX_NAMES)
        ]
        if alarm_name_prefix:
            requests.append({"AlarmNamePrefix": alarm_name_prefix})
        return [{**r, "AlarmTypes": list(ALARM_TYPES)} for r in requests]

    @staticmethod
    def _collect_alarms(pages: Iterable[Mapping[str, Any]], into: dict[str, dict[str, Any]]) -> None:
        for page in pages:
            for key, alarm_type in _ALARM_RESULT_KEYS.items():
                for alarm in page.get(key, []):
                    into[alarm["AlarmName"]] = {**alarm, "AlarmType": alarm_type}

    def describe_alarms(self, alarm_names: Sequence[str] = (), alarm_name_prefix: str | None = None) -> list[dict]:
        """Every alarm (metric, composite, log) with one of ``alarm_names`` or the prefix, all pages.

        .. seealso:: - :external+boto3:py:meth:`CloudWatch.Client.describe_alarms`
        """
        found: dict[str, dict[str, Any]] = {}
        paginator = self.conn.get_paginator("describe_alarms")
        for request in self._describe_requests(alarm_names, alarm_name_prefix):
            self._collect_alarms(paginator.paginate(**request), found)
        return list(found.values())

    async def async_describe_alarms(
        self, client: Any, alarm_names: Sequence[str] = (), alarm_name_prefix: str | None = None
    ) -> list[dict]:
        """:meth:`describe_alarms` with an aiobotocore client."""
        found: dict[str, dict[str, Any]] = {}
        paginator = client.get_paginator("describe_alarms")
        for request in self._describe_requests(alarm_names, alarm_name_prefix):
            self._collect_alarms([page async for page in paginator.paginate(**request)], found)
        return list(found.values())

    @staticmethod
    def _collect_metric_data(pages: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[datetime, float]]]:
        series: dict[str, list[tuple[datetime, float]]] = {}
        for page in pages:
            for result in page.get("MetricDataResults", []):
                points = series.setdefault(result["Id"], [])
                points.extend(zip(result.get("Timestamps", []), result.get("Values", []), strict=False))
        return {query_id: sorted(points) for query_id, points in series.items()}

    def get_metric_data(
        self, queries: list[dict[str, Any]], start_time: datetime, end_time: datetime
    ) -> dict[str, list[tuple[datetime, float]]]:
        """Each query's ``(timestamp, value)`` datapoints, oldest first, all pages.

        .. seealso:: - :external+boto3:py:meth:`CloudWatch.Client.get_metric_data`
        """
        paginator = self.conn.get_paginator("get_metric_data")
        pages = paginator.paginate(MetricDataQueries=queries, StartTime=start_time, EndTime=end_time)
        return self._collect_metric_data(pages)

    def put_metric_data(self, namespace: str, metric_data: Sequence[Mapping[str, Any]], batch: int = 500) -> list[str]:
        """Publish ``metric_data`` in batches of ``batch`` (AWS takes up to 1,000 per call); the request ids.

        .. seealso:: - :external+boto3:py:meth:`CloudWatch.Client.put_metric_data`
        """
        request_ids = []
        for first in range(0, len(metric_data), batch):
            answer = self.conn.put_metric_data(Namespace=namespace, MetricData=list(metric_data[first : first + batch]))
            request_ids.append(answer.get("ResponseMetadata", {}).get("RequestId", ""))
        return request_ids

    async def async_get_metric_data(
        self, client: Any, queries: list[dict[str, Any]], start_time: datetime, end_time: datetime
    ) -> dict[str, list[tuple[datetime, float]]]:
        """:meth:`get_metric_data` with an aiobotocore client."""
        paginator = client.get_paginator("get_metric_data")
        pages = paginator.paginate(MetricDataQueries=queries, StartTime=start_time, EndTime=end_time)
        return self._collect_metric_data([page async for page in pages])
