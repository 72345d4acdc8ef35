"""AWS errors raised by the sandbox's extensions.

moto serializes a ``ServiceException`` through the service's own protocol (JSON ``__type`` for
CodeBuild/CodeDeploy, XML ``<Error>`` for CloudFormation/CloudWatch/SNS), so boto3 sees exactly the
error code AWS would send. moto derives a class's service from its module name, so this module
must not live under ``moto.`` (it would fail with an IndexError and answer 500).
"""

from __future__ import annotations

from moto.core.exceptions import ServiceException


class AwsError(ServiceException):
    """An AWS error with the given code and message, in the protocol of the calling service."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
