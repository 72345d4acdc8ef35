"""Errors raised when an AWS release action ends badly.

They carry what an on-call engineer needs first: the AWS reason in AWS's words, the resource id and a
console link; the audit trail stores the same fields.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException


class AwsActionFailed(AirflowFailException):
    """A build, stack operation or deployment reached a failed terminal state.

    Never retried by Airflow: AWS has given its answer, and a release's response to a failed
    deployment is to roll back, not to deploy again. Task retries stay for what they are for, a
    worker that died mid-wait (the retried try then adopts what the first one started).
    """

    def __init__(
        self,
        message: str,
        *,
        resource_id: str,
        status: str,
        reason: str,
        console_url: str = "",
        result: dict[str, Any] | None = None,
    ) -> None:
        parts = [message, f"status={status}", f"resource={resource_id}"]
        if reason:
            parts.append(f"reason: {reason}")
        if console_url:
            parts.append(f"console: {console_url}")
        super().__init__("; ".join(parts))
        self.resource_id = resource_id
        self.status = status
        self.reason = reason
        self.console_url = console_url
        self.result = result or {}


class InvalidTriggerEvent(AirflowException):
    """A trigger event that does not have the shape the operator expects (never trusted blindly)."""
