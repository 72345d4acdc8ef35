"""What every Shipflow AWS operator shares: the action record, resumption and event validation.

Resumption: an operator that starts something in AWS (a build, a stack operation, a deployment)
remembers its id in Airflow's task state store (AIP-103, Airflow 3.3) *and* marks the resource in
AWS with the task's marker (``utils.idempotency``). A retried try first looks for what an earlier try
started: still running -> wait on it; succeeded -> take its result; failed -> start afresh. The
marker closes the window in which a worker dies after AWS accepted the call but before the id was
stored, and keeps resumption working where no task state store exists (``dag.test``).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar, Generic, TypeVar

from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator

from shipflow.aws.exceptions import InvalidTriggerEvent
from shipflow.aws.utils.record import ActionRecord, CallRecorder

HookT = TypeVar("HookT", bound=AwsGenericHook)


class ShipflowAwsOperator(AwsBaseOperator[HookT], Generic[HookT]):
    """Base for Shipflow's AWS operators (internal)."""

    #: Key in the task state store under which the started resource's id is kept across tries.
    state_key: ClassVar[str] = ""

    @cached_property
    def call_recorder(self) -> CallRecorder:
        """Records every boto3 call this operator's client makes (attached once per client)."""
        return CallRecorder().attach(self.hook.conn)

    def new_record(self, action: str, earlier: dict[str, Any] | None = None) -> ActionRecord:
        """A record of this action; ``earlier`` continues one passed through a deferral."""
        return ActionRecord(action, self.call_recorder, earlier)

    # -- the task state store (absent outside a real task run, e.g. in dag.test) -------------------
    def remembered_id(self, context: Any) -> str | None:
        store = context.get("task_state_store")
        if store is None or not self.state_key:
            return None
        value = store.get(self.state_key)
        return str(value) if value else None

    def remember_id(self, context: Any, value: str) -> None:
        store = context.get("task_state_store")
        if store is not None and self.state_key:
            store.set(self.state_key, value)

    @staticmethod
    def is_retry(context: Any) -> bool:
        return int(getattr(context["ti"], "try_number", 1) or 1) > 1

    # -- deferral ------------------------------------------------------------------------------
    def trigger_kwargs(self) -> dict[str, Any]:
        """What every waiter trigger takes from the operator: waiting pace and the AWS connection."""
        return {
            "waiter_delay": self.waiter_delay,
            "waiter_max_attempts": self.waiter_max_attempts,
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            "verify": self.verify,
            "botocore_config": self.botocore_config,
        }

    @staticmethod
    def validate_event(event: Any, *, key: str, expected: str) -> dict[str, Any]:
        """The trigger's event, checked before use: a dict with a known status for *our* resource."""
        if not isinstance(event, dict):
            raise InvalidTriggerEvent(f"trigger event must be a dict, got {type(event).__name__}: {event!r}")
        if event.get("status") not in ("success", "error"):
            raise InvalidTriggerEvent(f"trigger event has no valid status: {event!r}")
        if event.get(key) != expected:
            raise InvalidTriggerEvent(f"trigger event is for {key}={event.get(key)!r}, expected {expected!r}")
        return event
