"""A thin hook for AWS CodeBuild: boto3 calls and the custom ``build_complete`` waiter."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook


class CodeBuildHook(AwsBaseHook):
    """Interact with AWS CodeBuild.

    Additional arguments (such as ``aws_conn_id``) may be specified and are passed down to the
    underlying AwsBaseHook.

    .. seealso::
        - :class:`airflow.providers.amazon.aws.hooks.base_aws.AwsBaseHook`
        - `boto3 CodeBuild <https://boto3.amazonaws.com/v1/documentation/api/latest/reference/services/codebuild.html>`__
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "codebuild"
        super().__init__(*args, **kwargs)

    @cached_property
    def waiter_path(self) -> Path:
        # The provider looks for waiter JSON inside its own package; ours lives beside this hook.
        return Path(__file__).parents[1] / "waiters" / "codebuild.json"

    def get_build(self, build_id: str) -> dict[str, Any]:
        """The build, as ``BatchGetBuilds`` describes it.

        .. seealso:: - :external+boto3:py:meth:`CodeBuild.Client.batch_get_builds`
        """
        builds = self.conn.batch_get_builds(ids=[build_id])["builds"]
        if not builds:
            raise KeyError(f"CodeBuild build {build_id} not found")
        return builds[0]

    def get_builds(self, build_ids: list[str]) -> list[dict[str, Any]]:
        return self.conn.batch_get_builds(ids=build_ids)["builds"] if build_ids else []

    def list_build_ids(self, project_name: str, limit: int) -> list[str]:
        """The project's newest build ids, newest first.

        .. seealso:: - :external+boto3:py:meth:`CodeBuild.Client.list_builds_for_project`
        """
        ids: list[str] = []
        kwargs: dict[str, Any] = {"projectName": project_name, "sortOrder": "DESCENDING"}
        while len(ids) < limit:
            page = self.conn.list_builds_for_project(**kwargs)
            ids.extend(page.get("ids", []))
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        return ids[:limit]

    def start_build(self, **kwargs: Any) -> dict[str, Any]:
        """.. seealso:: - :external+boto3:py:meth:`CodeBuild.Client.start_build`"""
        return self.conn.start_build(**kwargs)["build"]

    def stop_build(self, build_id: str) -> dict[str, Any]:
        """.. seealso:: - :external+boto3:py:meth:`CodeBuild.Client.stop_build`"""
        return self.conn.stop_build(id=build_id)["build"]
