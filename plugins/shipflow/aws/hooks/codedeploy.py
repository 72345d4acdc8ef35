"""A thin hook for AWS CodeDeploy: boto3 calls; waiting uses botocore's ``deployment_successful`` waiter."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from shipflow.aws.constants.codedeploy import BATCH_GET_LIMIT


class CodeDeployHook(AwsBaseHook):
    """Interact with AWS CodeDeploy.

    Additional arguments (such as ``aws_conn_id``) may be specified and are passed down to the
    underlying AwsBaseHook.

    .. seealso::
        - :class:`airflow.providers.amazon.aws.hooks.base_aws.AwsBaseHook`
        - `boto3 CodeDeploy <https://boto3.amazonaws.com/v1/documentation/api/latest/reference/services/codedeploy.html>`__
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "codedeploy"
        super().__init__(*args, **kwargs)

    @cached_property
    def waiter_path(self) -> Path | None:
        # No custom waiter today (botocore's deployment_successful fits); a waiters/codedeploy.json
        # beside the CodeBuild one would be picked up here, never one from the provider's package.
        path = Path(__file__).parents[1] / "waiters" / "codedeploy.json"
        return path if path.exists() else None

    def get_deployment(self, deployment_id: str) -> dict[str, Any]:
        """.. seealso:: - :external+boto3:py:meth:`CodeDeploy.Client.get_deployment`"""
        return self.conn.get_deployment(deploymentId=deployment_id)["deploymentInfo"]

    def get_deployments(self, deployment_ids: list[str]) -> list[dict[str, Any]]:
        """The deployments, in chunks BatchGetDeployments accepts; unknown ids are left out.

        .. seealso:: - :external+boto3:py:meth:`CodeDeploy.Client.batch_get_deployments`
        """
        found: list[dict[str, Any]] = []
        for start in range(0, len(deployment_ids), BATCH_GET_LIMIT):
            chunk = deployment_ids[start : start + BATCH_GET_LIMIT]
            found.extend(self.conn.batch_get_deployments(deploymentIds=chunk)["deploymentsInfo"])
        return found

    def list_deployment_ids(
        self, application_name: str, group_name: str, statuses: tuple[str, ...] | list[str], limit: int
    ) -> list[str]:
        """Up to ``limit`` ids of the group's deployments in ``statuses``, as ListDeployments orders them.

        .. seealso:: - :external+boto3:py:meth:`CodeDeploy.Client.list_deployments`
        """
        ids: list[str] = []
        kwargs: dict[str, Any] = {
            "applicationName": application_name,
            "deploymentGroupName": group_name,
            "includeOnlyStatuses": list(statuses),
        }
        while len(ids) < limit:
            page = self.conn.list_deployments(**kwargs)
            ids.extend(page.get("deployments", []))
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        return ids[:limit]

    def get_deployment_group(self, application_name: str, group_name: str) -> dict[str, Any]:
        """.. seealso:: - :external+boto3:py:meth:`CodeDeploy.Client.get_deployment_group`"""
        response = self.conn.get_deployment_group(applicationName=application_name, deploymentGroupName=group_name)
        return response["deploymentGroupInfo"]

    def create_deployment(self, **kwargs: Any) -> str:
        """.. seealso:: - :external+boto3:py:meth:`CodeDeploy.Client.create_deployment`"""
        return self.conn.create_deployment(**kwargs)["deploymentId"]

    def stop_deployment(self, deployment_id: str, auto_rollback_enabled: bool | None = None) -> dict[str, Any]:
        """.. seealso:: - :external+boto3:py:meth:`CodeDeploy.Client.stop_deployment`"""
        kwargs: dict[str, Any] = {"deploymentId": deployment_id}
        if auto_rollback_enabled is not None:
            kwargs["autoRollbackEnabled"] = auto_rollback_enabled
        return self.conn.stop_deployment(**kwargs)
