"""A pre-check for CloudFormation: the stack is stable (no operation in flight, not left failed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowFailException

from shipflow.aws.constants.cloudformation import (
    STACK_CREATE_ROLLED_BACK,
    STACK_FAILED_STATES,
    STACK_IN_PROGRESS_STATES,
)
from shipflow.aws.hooks.cloudformation import CloudFormationHook


class CloudFormationStackStableSensor(AwsBaseSensor[CloudFormationHook]):
    """Waits while the stack has an operation in flight; passes once it is in a stable state.

    A stack left failed (``*_FAILED``) or a failed creation (``ROLLBACK_COMPLETE``, which can only be
    deleted) fails the check at once: no release should start on it. A missing stack passes when
    ``allow_missing`` (the release's change set will create it).

    .. seealso:: - :external+boto3:py:meth:`CloudFormation.Client.describe_stacks`

    :param stack_name: the stack. (templated)
    :param allow_missing: a stack that does not exist passes (default True).
    """

    aws_hook_class = CloudFormationHook
    template_fields: Sequence[str] = aws_template_fields("stack_name")

    def __init__(self, *, stack_name: str, allow_missing: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stack_name = stack_name
        self.allow_missing = allow_missing

    def poke(self, context: Any) -> bool | Any:
        stack = self.hook.get_stack(self.stack_name)
        if stack is None:
            if self.allow_missing:
                return True
            raise AirflowFailException(f"stack {self.stack_name} does not exist")
        status = stack["StackStatus"]
        if status in STACK_IN_PROGRESS_STATES:
            self.log.info("Stack %s is %s; waiting", self.stack_name, status)
            return False
        if status in STACK_FAILED_STATES or status == STACK_CREATE_ROLLED_BACK:
            raise AirflowFailException(
                f"stack {self.stack_name} is {status}: recover it (roll back or continue the rollback) before releasing"
            )
        return True
