"""Release telemetry: Shipflow's audit events as metrics on Airflow's own metrics channel.

``observe`` turns one audit event into counters and timers and sends them through Airflow's
``Stats`` facade (``airflow.sdk.observability.stats``), so they leave by StatsD or OpenTelemetry,
whichever ``[metrics]`` configures, beside Airflow's own metrics and under its prefix. The audit
listener calls it for every event it records. It never raises, imports nothing heavy until the
first call, and costs microseconds per event once Airflow is imported (every Airflow process
already has it: importing ``airflow`` initialises ``Stats`` from ``[metrics]``).

``metrics_for`` is the pure half: the metrics an event maps to, without Airflow. Every metric
carries the same tag keys every time (``service``, ``environment``, plus its own), ``none`` when the
event has no value, because Prometheus' statsd_exporter drops samples whose label names change.
Tag values are reduced to ``[A-Za-z0-9_.-]`` and 40 characters: in the InfluxDB style the tags
become part of the metric name, and Airflow drops a name with other characters or longer than
250 characters. See docs/observability.md.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

from shipflow import audit
from shipflow.release.outcome import ROLLED_BACK

log = logging.getLogger(__name__)

# The metric names (Airflow's statsd_prefix / otel_prefix goes in front of them).
RELEASE_STARTED = "shipflow.release.started"
RELEASE_SUCCEEDED = "shipflow.release.succeeded"
RELEASE_FAILED = "shipflow.release.failed"
RELEASE_ROLLED_BACK = "shipflow.release.rolled_back"
RELEASE_DURATION = "shipflow.release.duration"
STAGE_DURATION = "shipflow.stage.duration"
GATE_FAILED = "shipflow.gate.failed"
APPROVAL_WAIT = "shipflow.approval.wait"
# The decisions of shipflow.release.approval (not imported: it imports Airflow) that have a counter.
APPROVAL_DECISIONS: Mapping[str, str] = {
    decision: f"shipflow.approval.{decision}" for decision in ("approved", "rejected", "timed_out")
}
MANUAL_FALLBACK_COUNT = "shipflow.manual_fallback"
MANUAL_INTERVENTION_COUNT = "shipflow.manual_intervention"
AWS_ACTION_FAILED = "shipflow.aws_action.failed"

COUNTER, TIMER = "counter", "timer"
# The tag value sent when the event has none (a release-level event has no environment).
NO_VALUE = "none"
# Longest tag value sent: with the longest name and four tags an InfluxDB-style name stays < 250.
MAX_TAG_LENGTH = 40
_UNSAFE_TAG_CHARACTERS = re.compile(r"[^A-Za-z0-9_.-]")


class Metric(NamedTuple):
    """One metric to send: a counter (``value`` is the increment) or a timer (``value`` in ms)."""

    type: str
    name: str
    value: float
    tags: dict[str, str]


class _Event(NamedTuple):
    kind: str
    service: str | None
    environment: str | None
    stage: str | None
    payload: Mapping[str, Any]


def observe(
    kind: str,
    *,
    service: str | None,
    environment: str | None,
    stage: str | None,
    payload: Mapping[str, Any],
) -> None:
    """Send the metrics of one audit event through Airflow's ``Stats``; never raises.

    :param kind: the audit event kind (one of ``shipflow.audit.EVENT_KINDS``).
    :param service: the service released, as in the audit event.
    :param environment: the environment the event happened in; None for release-level events.
    :param stage: the step (task id inside the environment) that produced the event, if any.
    :param payload: the event's details; the fields read are listed in docs/observability.md.
        A field that is missing or malformed costs only the metrics that need it.
    """
    try:
        metrics = metrics_for(kind, service=service, environment=environment, stage=stage, payload=payload)
        if not metrics:
            return
        # Imported here: this module is imported where Airflow may not be (the CLI, DAG parsing).
        from airflow.sdk.observability import stats
    except Exception:
        log.warning("Shipflow telemetry: no metrics sent for a %r event", kind, exc_info=True)
        return
    for metric in metrics:
        try:
            if metric.type == COUNTER:
                stats.incr(metric.name, tags=metric.tags)
            else:
                stats.timing(metric.name, metric.value, tags=metric.tags)
        except Exception:
            log.warning("Shipflow telemetry: could not send %s", metric.name, exc_info=True)


def metrics_for(
    kind: str,
    *,
    service: str | None,
    environment: str | None,
    stage: str | None,
    payload: Mapping[str, Any],
) -> list[Metric]:
    """The metrics one audit event maps to, in the order ``observe`` sends them (pure, no Airflow).

    Each rule reads only its own fields, so a malformed field costs only that rule's metrics.
    """
    event = _Event(kind, service, environment, stage, payload if isinstance(payload, Mapping) else {})
    metrics: list[Metric] = []
    for rule in _RULES:
        try:
            metrics.extend(rule(event))
        except Exception:
            log.warning("Shipflow telemetry: %s failed on a %r event", rule.__name__, kind, exc_info=True)
    return metrics


# -- one rule per row of the table in docs/observability.md -----------------------------------------
def _release_requested(event: _Event) -> Iterator[Metric]:
    if event.kind == audit.RELEASE_REQUESTED:
        yield _counter(RELEASE_STARTED, event, trigger=event.payload.get("trigger"))


def _release_finished(event: _Event) -> Iterator[Metric]:
    if event.kind != audit.RELEASE_FINISHED:
        return
    state = event.payload.get("state")
    if state == "success":
        yield _counter(RELEASE_SUCCEEDED, event)
    elif state == "failed":
        yield _counter(RELEASE_FAILED, event)
    outcomes = event.payload.get("outcomes")
    if isinstance(outcomes, Mapping):
        for environment, outcome in outcomes.items():
            # An environment's outcome is its word, or its decide_outcome record holding the word.
            if isinstance(outcome, Mapping):
                outcome = outcome.get("outcome")
            if outcome == ROLLED_BACK:
                yield _counter(RELEASE_ROLLED_BACK, event._replace(environment=environment))
    ms = _milliseconds(event.payload.get("duration_seconds"))
    if ms is not None:
        yield _timer(RELEASE_DURATION, ms, event, state=state)


def _stage_duration(event: _Event) -> Iterator[Metric]:
    # Every event a task produces carries its try's duration; release_finished's is the run's.
    if event.kind == audit.RELEASE_FINISHED or "duration_seconds" not in event.payload:
        return
    ms = _milliseconds(event.payload["duration_seconds"])
    if ms is not None:
        yield _timer(STAGE_DURATION, ms, event, stage=event.stage, state=event.payload.get("state"))


def _gate_failed(event: _Event) -> Iterator[Metric]:
    if event.kind == audit.GATE_DECISION and event.payload.get("passed") is False:
        yield _counter(GATE_FAILED, event, gate=event.stage)


def _approval(event: _Event) -> Iterator[Metric]:
    if event.kind != audit.APPROVAL:
        return
    ms = _milliseconds(event.payload.get("wait_seconds"))
    if ms is not None:
        yield _timer(APPROVAL_WAIT, ms, event, stage=event.stage)
    decision = event.payload.get("decision")
    if isinstance(decision, str) and decision in APPROVAL_DECISIONS:
        yield _counter(APPROVAL_DECISIONS[decision], event, stage=event.stage)


def _manual(event: _Event) -> Iterator[Metric]:
    if event.kind == audit.MANUAL_FALLBACK:
        yield _counter(MANUAL_FALLBACK_COUNT, event, stage=event.stage)
    elif event.kind == audit.MANUAL_INTERVENTION:
        yield _counter(MANUAL_INTERVENTION_COUNT, event, stage=event.stage, action=event.payload.get("action"))


def _aws_action_failed(event: _Event) -> Iterator[Metric]:
    if event.kind == audit.AWS_ACTION and event.payload.get("state") == "failed":
        yield _counter(AWS_ACTION_FAILED, event, stage=event.stage)


_RULES: tuple[Callable[[_Event], Iterator[Metric]], ...] = (
    _release_requested,
    _release_finished,
    _stage_duration,
    _gate_failed,
    _approval,
    _manual,
    _aws_action_failed,
)


# -- helpers -----------------------------------------------------------------------------------------
def _counter(name: str, event: _Event, **extra: Any) -> Metric:
    return Metric(COUNTER, name, 1, _tags(event, extra))


def _timer(name: str, ms: float, event: _Event, **extra: Any) -> Metric:
    return Metric(TIMER, name, ms, _tags(event, extra))


def _tags(event: _Event, extra: Mapping[str, Any]) -> dict[str, str]:
    tags = {"service": _tag_value(event.service), "environment": _tag_value(event.environment)}
    for key, value in extra.items():
        tags[key] = _tag_value(value)
    return tags


def _tag_value(value: Any) -> str:
    if value is None:
        return NO_VALUE
    text = _UNSAFE_TAG_CHARACTERS.sub("_", str(value))[:MAX_TAG_LENGTH]
    return text or NO_VALUE


def _milliseconds(seconds: Any) -> float | None:
    """A duration in seconds as milliseconds; None (and nothing sent) unless a finite number >= 0."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds * 1000.0
