"""The pre-check gate: wait until none of a set of CloudWatch alarms is in ALARM."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowException, PokeReturnValue, conf

from shipflow.aws.constants.cloudwatch import DEFAULT_POKE_INTERVAL
from shipflow.aws.exceptions import InvalidTriggerEvent
from shipflow.aws.hooks.cloudwatch import (
    CloudWatchAlarmNotFound,
    CloudWatchAlarmsHook,
    alarm_name_list,
    iso,
    watched_alarms,
)
from shipflow.aws.links.cloudwatch import CloudWatchAlarmsLink
from shipflow.aws.operators.base import ShipflowAwsOperator
from shipflow.aws.triggers.cloudwatch import CloudWatchAlarmsOkTrigger, blocking_alarms, utcnow
from shipflow.aws.utils.record import CallRecorder


class CloudWatchAlarmsOkSensor(AwsBaseSensor[CloudWatchAlarmsHook]):
    """Wait until none of a set of CloudWatch alarms is in ALARM: the pre-check before a release.

    Alarms are chosen by name and/or name prefix (metric, composite and log alarms alike). An alarm
    in INSUFFICIENT_DATA does not block unless ``require_ok`` is set. A named alarm that does not
    exist, or a prefix that matches none, fails the task at once: a typo must not open a gate.

    .. seealso::
        - :external+boto3:py:meth:`CloudWatch.Client.describe_alarms`

    :param alarm_names: alarms that must not be in ALARM. (templated)
    :param alarm_name_prefix: every alarm whose name starts with this must not be in ALARM. (templated)
    :param require_ok: also wait while an alarm is INSUFFICIENT_DATA (default False).
    :param poke_interval: seconds between checks, in the worker or in the triggerer (default 60).
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :return: the evidence (XCom): ``alarms`` (name, type, state, reason, updated_at, arn of every
        watched alarm, as read by the check that passed), ``checked_at``, what was watched, and that
        check's AWS calls with their request ids.
    """

    aws_hook_class = CloudWatchAlarmsHook
    template_fields: Sequence[str] = aws_template_fields("alarm_names", "alarm_name_prefix")
    operator_extra_links = (CloudWatchAlarmsLink(),)
    ui_color = "#ff9900"

    def __init__(
        self,
        *,
        alarm_names: str | Sequence[str] | None = None,
        alarm_name_prefix: str | None = None,
        require_ok: bool = False,
        poke_interval: float = DEFAULT_POKE_INTERVAL,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.alarm_names = alarm_name_list(alarm_names, alarm_name_prefix, self.task_id)
        self.alarm_name_prefix = alarm_name_prefix
        if not self.alarm_names and not alarm_name_prefix:
            raise ValueError(f"{self.task_id}: give alarm_names and/or alarm_name_prefix; a gate needs alarms to watch")
        self.require_ok = require_ok
        self.deferrable = deferrable

    @cached_property
    def call_recorder(self) -> CallRecorder:
        return CallRecorder().attach(self.hook.conn)

    @property
    def watching(self) -> dict[str, Any]:
        return {
            "alarm_names": self.alarm_names,
            "alarm_name_prefix": self.alarm_name_prefix,
            "require_ok": self.require_ok,
        }

    def poke(self, context: Any) -> PokeReturnValue:
        first_call = len(self.call_recorder.calls)
        alarms = self.hook.describe_alarms(self.alarm_names, self.alarm_name_prefix)
        summaries = watched_alarms(alarms, self.alarm_names, self.alarm_name_prefix)
        blocking = blocking_alarms(summaries, self.require_ok)
        if blocking:
            for alarm in blocking:
                self.log.info("Waiting: alarm %s is %s (%s)", alarm["name"], alarm["state"], alarm["reason"])
            return PokeReturnValue(is_done=False)
        self.log.info("None of %d alarm(s) blocks: %s", len(summaries), ", ".join(s["name"] for s in summaries))
        evidence = {
            **self.watching,
            "checked_at": iso(utcnow()),
            "alarms": summaries,
            "aws_calls": self.call_recorder.calls[first_call:],
        }
        return PokeReturnValue(is_done=True, xcom_value=evidence)

    def execute(self, context: Any) -> Any:
        CloudWatchAlarmsLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            search=self.alarm_name_prefix or self.alarm_names[0],
        )
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)  # a missing alarm fails here, in the worker, before any deferral
        if first.is_done:
            return first.xcom_value
        self.defer(
            trigger=CloudWatchAlarmsOkTrigger(
                **self.watching,
                poll_interval=self.poke_interval,
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                verify=self.verify,
                botocore_config=self.botocore_config,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        event = ShipflowAwsOperator.validate_event(event, key="watching", expected=self.watching)
        if event["status"] == "error":
            message = f"Could not check the CloudWatch alarms: {event.get('message')}"
            if event.get("error") == CloudWatchAlarmNotFound.__name__:
                raise CloudWatchAlarmNotFound(message)
            raise AirflowException(message)
        alarms = event.get("alarms")
        if not isinstance(alarms, list) or not all(isinstance(a, dict) and {"name", "state"} <= set(a) for a in alarms):
            raise InvalidTriggerEvent(f"trigger event has no valid alarms: {event!r}")
        try:
            watched_alarms(
                ({"AlarmName": a["name"], "StateValue": a["state"]} for a in alarms),
                self.alarm_names,
                self.alarm_name_prefix,
            )
        except CloudWatchAlarmNotFound as error:
            raise InvalidTriggerEvent(f"trigger event does not cover the watched alarms: {error}") from None
        blocking = blocking_alarms(alarms, self.require_ok)
        if blocking:
            raise InvalidTriggerEvent(f"trigger reported success while {[a['name'] for a in blocking]} still block")
        self.log.info("None of %d alarm(s) blocks: %s", len(alarms), ", ".join(a["name"] for a in alarms))
        return {
            **self.watching,
            "checked_at": event.get("checked_at"),
            "alarms": alarms,
            "aws_calls": event.get("aws_calls", []),
        }
