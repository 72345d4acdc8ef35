"""The post-deploy gate: watch CloudWatch alarms and metrics for a bake time, fail at the first breach."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import conf

from shipflow.aws.constants.cloudwatch import (
    BAKE_DEFERRAL_GRACE_SECONDS,
    DEFAULT_BAKE_POLL_INTERVAL,
    DEFAULT_BAKE_TIME,
    STATE_KEY_BAKE_BREACH,
)
from shipflow.aws.exceptions import AwsActionFailed, InvalidTriggerEvent
from shipflow.aws.hooks.cloudwatch import (
    CloudWatchAlarmsHook,
    MetricThreshold,
    alarm_name_list,
    watched_alarms,
)
from shipflow.aws.links.cloudwatch import CloudWatchAlarmLink, CloudWatchAlarmsLink
from shipflow.aws.operators.base import ShipflowAwsOperator
from shipflow.aws.triggers.cloudwatch import BakeWatch, CloudWatchBakeTrigger, utcnow
from shipflow.aws.utils.idempotency import client_token

ACTION = "cloudwatch.bake"


def _positive_seconds(value: Any, name: str, task_id: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{task_id}: {name} must be a positive number of seconds, got {value!r}")
    return float(value)


class CloudWatchBakeTimeOperator(ShipflowAwsOperator[CloudWatchAlarmsHook]):
    """Watch CloudWatch alarms and metric thresholds for ``bake_time`` seconds after a deployment.

    Fails as soon as a watched alarm is in ALARM or a metric datapoint since the bake started is on
    the wrong side of its threshold, with :class:`~shipflow.aws.exceptions.AwsActionFailed` naming
    the alarm (and its state reason) or the metric (and the value), and when. Passes when the bake
    time ends clean. A named alarm that does not exist, or a prefix that matches none, fails at once.
    Each try bakes afresh from its own start.

    .. seealso::
        - :external+boto3:py:meth:`CloudWatch.Client.describe_alarms`
        - :external+boto3:py:meth:`CloudWatch.Client.get_metric_data`

    :param bake_time: seconds to watch.
    :param alarm_names: alarms that must stay out of ALARM. (templated)
    :param alarm_name_prefix: every alarm whose name starts with this must stay out of ALARM. (templated)
    :param metric_thresholds: metrics to watch, each a dict with ``namespace``, ``metric_name``,
        ``comparison`` (a CloudWatch ComparisonOperator such as ``GreaterThanThreshold``),
        ``threshold`` (a number), and optionally ``dimensions`` (``{name: value}``), ``statistic``
        (default Average), ``period`` (seconds, default 60), ``unit`` and ``name``. Strings are
        templated; the structure is checked when the DAG is parsed. (templated)
    :param poll_interval: seconds between polls (default 30).
    :param deferrable: watch in the triggerer instead of holding a worker slot; the first poll
        still runs in the worker, so a missing alarm or one already in ALARM fails at once.
    :return: the evidence: per alarm the states seen and the last state, reason and update time;
        per metric the datapoints observed with min, max and last; the polls made, the bake's
        start and deadline, and the AWS calls made by the worker.
    """

    aws_hook_class = CloudWatchAlarmsHook
    state_key = STATE_KEY_BAKE_BREACH
    template_fields: Sequence[str] = aws_template_fields("alarm_names", "alarm_name_prefix", "metric_thresholds")
    template_fields_renderers = {"metric_thresholds": "json"}
    operator_extra_links = (CloudWatchAlarmsLink(), CloudWatchAlarmLink())
    ui_color = "#ff9900"

    def __init__(
        self,
        *,
        bake_time: float = DEFAULT_BAKE_TIME,
        alarm_names: str | Sequence[str] | None = None,
        alarm_name_prefix: str | None = None,
        metric_thresholds: Sequence[dict[str, Any]] | None = None,
        poll_interval: float = DEFAULT_BAKE_POLL_INTERVAL,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bake_time = _positive_seconds(bake_time, "bake_time", self.task_id)
        self.poll_interval = _positive_seconds(poll_interval, "poll_interval", self.task_id)
        self.alarm_names = alarm_name_list(alarm_names, alarm_name_prefix, self.task_id)
        self.alarm_name_prefix = alarm_name_prefix
        self.metric_thresholds = list(metric_thresholds or [])
        self.thresholds()  # a mistake in a threshold fails when the DAG is parsed
        if not (self.alarm_names or alarm_name_prefix or self.metric_thresholds):
            raise ValueError(
                f"{self.task_id}: give alarm_names, alarm_name_prefix and/or metric_thresholds; "
                "a bake that watches nothing would always pass"
            )
        self.deferrable = deferrable

    def thresholds(self) -> list[MetricThreshold]:
        return [
            MetricThreshold.from_spec(spec, f"{self.task_id}: metric_thresholds[{i}]")
            for i, spec in enumerate(self.metric_thresholds)
        ]

    # -- watching ----------------------------------------------------------------------------------
    def poll(self, watch: BakeWatch) -> None:
        now = utcnow()
        if watch.watches_alarms:
            alarms = self.hook.describe_alarms(watch.alarm_names, watch.alarm_name_prefix)
            watch.observe_alarms(watched_alarms(alarms, watch.alarm_names, watch.alarm_name_prefix))
        if watch.thresholds:
            watch.observe_metrics(self.hook.get_metric_data(watch.queries(), *watch.metric_window(now)))
        watch.polled(now)

    def execute(self, context: Any) -> dict[str, Any]:
        self.raise_earlier_breach(context)
        record = self.new_record(ACTION)
        started = utcnow()
        watch = BakeWatch(
            watch_id=client_token(context, ACTION),
            started_at=started,
            deadline=started + timedelta(seconds=self.bake_time),
            alarm_names=self.alarm_names,
            alarm_name_prefix=self.alarm_name_prefix,
            thresholds=self.thresholds(),
        )
        record.update(**watch.spec())
        if watch.watches_alarms:
            CloudWatchAlarmsLink.persist(
                context=context,
                operator=self,
                region_name=self.hook.conn_region_name,
                aws_partition=self.hook.conn_partition,
                search=self.alarm_name_prefix or self.alarm_names[0],
            )
        self.log.info("Baking for %g s, until %s", self.bake_time, watch.deadline.isoformat())
        while True:
            self.poll(watch)
            if watch.finished():
                return self.finish(context, watch, record)
            if self.deferrable:
                self.defer(
                    trigger=CloudWatchBakeTrigger(
                        watch=watch.as_dict(),
                        poll_interval=self.poll_interval,
                        aws_conn_id=self.aws_conn_id,
                        region_name=self.region_name,
                        verify=self.verify,
                        botocore_config=self.botocore_config,
                    ),
                    method_name="execute_complete",
                    kwargs={"record": record.as_dict()},
                    timeout=timedelta(seconds=self.bake_time + BAKE_DEFERRAL_GRACE_SECONDS),
                )
            remaining = (watch.deadline - utcnow()).total_seconds()
            time.sleep(max(0.0, min(self.poll_interval, remaining)))

    def execute_complete(
        self, context: Any, event: dict[str, Any] | None = None, record: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        record = record or {}
        event = self.validate_event(event, key="watch_id", expected=record.get("watch_id", ""))
        resumed = self.new_record(ACTION, earlier=record)
        if event["status"] == "error":
            raise AwsActionFailed(
                "The CloudWatch bake watch could not read CloudWatch; the bake is not proven",
                resource_id=record["watch_id"],
                status="ERROR",
                reason=str(event.get("message", "")),
                result=resumed.update(error=event.get("error")).as_dict(),
            )
        watch = self.validated_evidence(event, record)
        return self.finish(context, watch, resumed)

    def validated_evidence(self, event: dict[str, Any], record: dict[str, Any]) -> BakeWatch:
        """The trigger's evidence, rebuilt and checked to be for this watch and complete."""
        try:
            watch = BakeWatch.from_dict(event.get("evidence"))
        except ValueError as error:
            raise InvalidTriggerEvent(f"trigger event has invalid bake evidence: {error}") from None
        expected = {key: record.get(key) for key in BakeWatch.SPEC_KEYS}
        if watch.spec() != expected:
            raise InvalidTriggerEvent(f"trigger evidence is for another watch: {watch.spec()!r}, expected {expected!r}")
        missing = [name for name in watch.alarm_names if name not in watch.alarms]
        if watch.alarm_name_prefix and not any(n.startswith(watch.alarm_name_prefix) for n in watch.alarms):
            missing.append(f"{watch.alarm_name_prefix}*")
        missing += [t.name for i, t in enumerate(watch.thresholds) if f"m{i}" not in watch.metrics]
        if missing:
            raise InvalidTriggerEvent(f"trigger evidence does not cover {missing}")
        if not watch.finished():
            raise InvalidTriggerEvent(
                f"trigger evidence ends at {watch.as_dict()['watched_until']}, before the deadline "
                f"{watch.as_dict()['deadline']}, without a breach"
            )
        return watch

    # -- the decision ------------------------------------------------------------------------------
    def raise_earlier_breach(self, context: Any) -> None:
        """A breach is final: a retry raises the one an earlier try found instead of baking anew.

        Airflow 3.3.2 can retry a try that failed on its own (apache/airflow #72716); a fresh bake
        after the alarm cleared would pass and promote the release the first bake failed.
        """
        kept = self.remembered_id(context)
        if not kept:
            return
        failure = json.loads(kept)
        self.log.info("An earlier try of this bake found a breach: %s", failure["message"])
        raise AwsActionFailed(
            f"{failure['message']} (found by an earlier try of this bake)",
            resource_id=failure["resource_id"],
            status=failure["status"],
            reason=failure["reason"],
            console_url=failure.get("console_url", ""),
            result=failure.get("result"),
        )

    def breached(self, context: Any, failure: AwsActionFailed) -> AwsActionFailed:
        """Keep the breach for a retry (see ``raise_earlier_breach``), then return it to raise."""
        self.remember_id(
            context,
            json.dumps(
                {
                    "message": failure.args[0].split("; status=")[0],
                    "resource_id": failure.resource_id,
                    "status": failure.status,
                    "reason": failure.reason,
                    "console_url": failure.console_url,
                    "result": {k: v for k, v in failure.result.items() if k != "aws_calls"},
                },
                default=str,
            ),
        )
        return failure

    def finish(self, context: Any, watch: BakeWatch, record: Any) -> dict[str, Any]:
        evidence = watch.as_dict()
        breach = evidence["breach"]
        result = record.update(**evidence, outcome="breached" if breach else "passed").as_dict()
        if breach is None:
            self.log.info("Bake passed: %d polls over %g s, no breach", watch.polls, self.bake_time)
            return result
        elapsed = (watch.watched_until - watch.started_at).total_seconds() if watch.watched_until else 0.0
        when = f"{elapsed:.1f} s into the {evidence['bake_time_s']:g} s bake"
        if breach["kind"] == "alarm":
            region, partition = self.hook.conn_region_name, self.hook.conn_partition
            CloudWatchAlarmLink.persist(
                context=context, operator=self, region_name=region, aws_partition=partition, alarm_name=breach["name"]
            )
            link = CloudWatchAlarmLink().format_link(
                region_name=region, aws_domain=CloudWatchAlarmLink.get_aws_domain(partition), alarm_name=breach["name"]
            )
            raise self.breached(
                context,
                AwsActionFailed(
                    f"CloudWatch alarm {breach['name']} is ALARM (since {breach['at']}), {when}",
                    resource_id=breach["name"],
                    status="ALARM",
                    reason=breach["reason"],
                    console_url=link,
                    result=result,
                ),
            )
        raise self.breached(
            context,
            AwsActionFailed(
                f"Metric {breach['name']} crossed its threshold ({breach['condition']}), {when}",
                resource_id=breach["name"],
                status="THRESHOLD_CROSSED",
                reason=f"{breach['value']:g} at {breach['at']}",
                result=result,
            ),
        )
