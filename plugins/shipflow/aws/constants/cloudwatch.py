"""CloudWatch alarm states, comparisons and defaults shared by the hook, sensor, operator and triggers."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable

ALARM_STATE_OK = "OK"
ALARM_STATE_ALARM = "ALARM"
ALARM_STATE_INSUFFICIENT_DATA = "INSUFFICIENT_DATA"
ALARM_STATES = (ALARM_STATE_OK, ALARM_STATE_ALARM, ALARM_STATE_INSUFFICIENT_DATA)

# DescribeAlarms lists only metric alarms unless asked; a gate must see composite alarms too.
ALARM_TYPES = ("MetricAlarm", "CompositeAlarm")
# DescribeAlarms takes at most 100 names per call.
DESCRIBE_ALARMS_MAX_NAMES = 100

# Pre-check sensor: seconds between pokes (and between the trigger's polls when deferred).
DEFAULT_POKE_INTERVAL = 60
# Bake watch: seconds between polls of the alarms and metrics, and the bake itself.
DEFAULT_BAKE_POLL_INTERVAL = 30
DEFAULT_BAKE_TIME = 600
# A deferred bake fails if the triggerer has not reported this long after the deadline.
BAKE_DEFERRAL_GRACE_SECONDS = 300

# Metric thresholds watched during a bake (GetMetricData).
DEFAULT_METRIC_STATISTIC = "Average"
DEFAULT_METRIC_PERIOD = 60
BASIC_STATISTICS = ("Average", "Sum", "Minimum", "Maximum", "SampleCount")
PERCENTILE_STATISTIC = re.compile(r"^p(\d{1,2}(\.\d+)?|100)$")
# GetMetricData: a period of 1, 5, 10, 30 s (high resolution) or any multiple of 60.
HIGH_RESOLUTION_PERIODS = (1, 5, 10, 30)
# GetMetricData's EndTime is exclusive: query this far past "now" so the newest datapoint counts.
METRIC_QUERY_LOOKAHEAD_SECONDS = 60

# ComparisonOperator names as PutMetricAlarm takes them -> (test, words for messages).
COMPARISON_OPERATORS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanThreshold": (operator.gt, ">"),
    "GreaterThanOrEqualToThreshold": (operator.ge, ">="),
    "LessThanThreshold": (operator.lt, "<"),
    "LessThanOrEqualToThreshold": (operator.le, "<="),
}

#: Task state store key of a bake's breach: a retry reports it again instead of baking anew.
STATE_KEY_BAKE_BREACH = "cloudwatch_bake_breach"
