"""Deferrable waits for CloudFormation: a change set being created, and a stack operation running."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger

from shipflow.aws.constants.cloudformation import (
    DEFAULT_CHANGE_SET_WAITER_DELAY,
    DEFAULT_CHANGE_SET_WAITER_MAX_ATTEMPTS,
    DEFAULT_STACK_WAITER_DELAY,
    DEFAULT_STACK_WAITER_MAX_ATTEMPTS,
    STACK_OPERATION_WAITERS,
    WAITER_CHANGE_SET_READY,
)
from shipflow.aws.hooks.cloudformation import CloudFormationHook


class CloudFormationChangeSetReadyTrigger(AwsBaseWaiterTrigger):
    """Fires when a change set is created (success), including one without changes, or failed (error).

    :param change_set_id: the change set's ARN.
    :param waiter_delay: seconds between describes.
    :param waiter_max_attempts: describes before giving up.
    :param aws_conn_id: the Airflow connection used for AWS credentials.
    :param region_name: AWS region; the connection's if not given.
    """

    aws_hook_class = CloudFormationHook

    def __init__(
        self,
        *,
        change_set_id: str,
        waiter_delay: int = DEFAULT_CHANGE_SET_WAITER_DELAY,
        waiter_max_attempts: int = DEFAULT_CHANGE_SET_WAITER_MAX_ATTEMPTS,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            serialized_fields={"change_set_id": change_set_id},
            waiter_name=WAITER_CHANGE_SET_READY,
            waiter_args={"ChangeSetName": change_set_id},
            failure_message="CloudFormation change set failed",
            status_message="CloudFormation change set status",
            status_queries=["Status", "StatusReason"],
            return_key="change_set_id",
            return_value=change_set_id,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            verify=verify,
            botocore_config=botocore_config,
        )


class CloudFormationStackOperationTrigger(AwsBaseWaiterTrigger):
    """Fires when a stack operation ends: success, or error when it failed or was rolled back.

    :param stack_id: the stack (its ARN: it stays valid when a stack of the same name replaces it).
    :param operation: what runs on it: ``create`` or ``update`` (a change set execution, an undo), or
        ``rollback`` (RollbackStack, ContinueUpdateRollback, CancelUpdateStack).
    :param waiter_delay: seconds between describes.
    :param waiter_max_attempts: describes before giving up.
    :param aws_conn_id: the Airflow connection used for AWS credentials.
    :param region_name: AWS region; the connection's if not given.
    """

    aws_hook_class = CloudFormationHook

    def __init__(
        self,
        *,
        stack_id: str,
        operation: str,
        waiter_delay: int = DEFAULT_STACK_WAITER_DELAY,
        waiter_max_attempts: int = DEFAULT_STACK_WAITER_MAX_ATTEMPTS,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
    ) -> None:
        if operation not in STACK_OPERATION_WAITERS:
            raise ValueError(f"operation must be one of {sorted(STACK_OPERATION_WAITERS)}, got {operation!r}")
        super().__init__(
            serialized_fields={"stack_id": stack_id, "operation": operation},
            waiter_name=STACK_OPERATION_WAITERS[operation],
            waiter_args={"StackName": stack_id},
            failure_message=f"CloudFormation stack {operation} failed",
            status_message="CloudFormation stack status",
            status_queries=["Stacks[0].StackStatus", "Stacks[0].StackStatusReason"],
            return_key="stack_id",
            return_value=stack_id,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            verify=verify,
            botocore_config=botocore_config,
        )
