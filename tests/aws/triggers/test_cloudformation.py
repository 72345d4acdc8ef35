"""CloudFormation triggers: what they serialize, which waiter they use, and how they end."""

from __future__ import annotations

import pytest

from shipflow.aws.constants import cloudformation as constants
from shipflow.aws.triggers.cloudformation import (
    CloudFormationChangeSetReadyTrigger,
    CloudFormationStackOperationTrigger,
)
from tests.aws.conftest import roundtrip, run_trigger

STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/payments-api-staging/1"
CHANGE_SET_ID = "arn:aws:cloudformation:us-east-1:123456789012:changeSet/shipflow-0/1"


@pytest.mark.parametrize("operation", sorted(constants.STACK_OPERATION_WAITERS))
def test_stack_operation_trigger_survives_serialization_with_its_waiter(operation):
    trigger = roundtrip(CloudFormationStackOperationTrigger(stack_id=STACK_ID, operation=operation, aws_conn_id="x"))
    assert trigger.waiter_name == constants.STACK_OPERATION_WAITERS[operation]
    assert trigger.waiter_args == {"StackName": STACK_ID} and trigger.return_value == STACK_ID
    assert (trigger.waiter_delay, trigger.attempts) == (
        constants.DEFAULT_STACK_WAITER_DELAY,
        constants.DEFAULT_STACK_WAITER_MAX_ATTEMPTS,
    )


def test_unknown_stack_operation_is_refused():
    with pytest.raises(ValueError, match="operation must be one of"):
        CloudFormationStackOperationTrigger(stack_id=STACK_ID, operation="delete")


def test_change_set_trigger_ends_with_an_error_when_the_change_set_is_gone(sandbox, aws_conn):
    trigger = CloudFormationChangeSetReadyTrigger(change_set_id=CHANGE_SET_ID, waiter_delay=0, aws_conn_id=aws_conn)
    event = run_trigger(roundtrip(trigger), timeout=30)
    assert event["status"] == "error" and event["change_set_id"] == CHANGE_SET_ID
    assert "ChangeSetNotFound" in event["message"]
