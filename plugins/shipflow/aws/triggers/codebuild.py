"""Deferrable wait for a CodeBuild build: the triggerer polls ``BatchGetBuilds`` with the custom waiter."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger

from shipflow.aws.constants.codebuild import (
    DEFAULT_WAITER_DELAY,
    DEFAULT_WAITER_MAX_ATTEMPTS,
    WAITER_BUILD_COMPLETE,
)
from shipflow.aws.hooks.codebuild import CodeBuildHook


class CodeBuildBuildCompleteTrigger(AwsBaseWaiterTrigger):
    """Fires when a CodeBuild build reaches a terminal status (success or failure).

    :param build_id: the build to wait for.
    :param waiter_delay: seconds between describes.
    :param waiter_max_attempts: describes before giving up.
    :param aws_conn_id: the Airflow connection used for AWS credentials.
    :param region_name: AWS region; the connection's if not given.
    """

    aws_hook_class = CodeBuildHook

    def __init__(
        self,
        *,
        build_id: str,
        waiter_delay: int = DEFAULT_WAITER_DELAY,
        waiter_max_attempts: int = DEFAULT_WAITER_MAX_ATTEMPTS,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            serialized_fields={"build_id": build_id},
            waiter_name=WAITER_BUILD_COMPLETE,
            waiter_args={"ids": [build_id]},
            failure_message="CodeBuild build failed",
            status_message="CodeBuild build status",
            status_queries=["builds[0].buildStatus", "builds[0].currentPhase"],
            return_key="build_id",
            return_value=build_id,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            verify=verify,
            botocore_config=botocore_config,
        )
