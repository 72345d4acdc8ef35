"""Deferrable wait for a CodeDeploy deployment: the triggerer polls ``GetDeployment`` with botocore's waiter."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger

from shipflow.aws.constants.codedeploy import (
    DEFAULT_WAITER_DELAY,
    DEFAULT_WAITER_MAX_ATTEMPTS,
    WAITER_DEPLOYMENT_SUCCESSFUL,
)
from shipflow.aws.hooks.codedeploy import CodeDeployHook


class CodeDeployDeploymentCompleteTrigger(AwsBaseWaiterTrigger):
    """Fires when a CodeDeploy deployment ends: Succeeded (success), Failed or Stopped (error).

    :param deployment_id: the deployment to wait for.
    :param waiter_delay: seconds between describes.
    :param waiter_max_attempts: describes before giving up.
    :param aws_conn_id: the Airflow connection used for AWS credentials.
    :param region_name: AWS region; the connection's if not given.
    """

    aws_hook_class = CodeDeployHook

    def __init__(
        self,
        *,
        deployment_id: str,
        waiter_delay: int = DEFAULT_WAITER_DELAY,
        waiter_max_attempts: int = DEFAULT_WAITER_MAX_ATTEMPTS,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            serialized_fields={"deployment_id": deployment_id},
            waiter_name=WAITER_DEPLOYMENT_SUCCESSFUL,
            waiter_args={"deploymentId": deployment_id},
            failure_message="CodeDeploy deployment failed",
            status_message="CodeDeploy deployment status",
            status_queries=["deploymentInfo.status", "deploymentInfo.deploymentOverview"],
            return_key="deployment_id",
            return_value=deployment_id,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            verify=verify,
            botocore_config=botocore_config,
        )
