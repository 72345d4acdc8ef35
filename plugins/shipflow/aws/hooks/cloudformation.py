"""A thin hook for AWS CloudFormation: the provider's hook plus the change set and stack calls Shipflow makes."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.cloud_formation import CloudFormationHook as ProviderCloudFormationHook
from botocore.exceptions import ClientError

from shipflow.aws.constants.cloudformation import EVENT_PAGES_LIMIT


def _error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


class CloudFormationHook(ProviderCloudFormationHook):
    """Interact with AWS CloudFormation.

    Extends the provider's :class:`~airflow.providers.amazon.aws.hooks.cloud_formation.CloudFormationHook`
    with change sets, stack events and rollbacks; waiters come from ``waiters/cloudformation.json``
    beside this package, else from botocore.

    .. seealso::
        - :class:`airflow.providers.amazon.aws.hooks.base_aws.AwsBaseHook`
        - `boto3 CloudFormation <https://boto3.amazonaws.com/v1/documentation/api/latest/reference/services/cloudformation.html>`__
    """

    @cached_property
    def waiter_path(self) -> Path:
        # The provider looks for waiter JSON inside its own package; ours lives beside this hook.
        return Path(__file__).parents[1] / "waiters" / "cloudformation.json"

    # -- stacks --------------------------------------------------------------------------------------
    def get_stack(self, stack_name: str) -> dict[str, Any] | None:
        """The stack as ``DescribeStacks`` reports it, or None if there is no such stack.

        .. seealso:: - :external+boto3:py:meth:`CloudFormation.Client.describe_stacks`
        """
        try:
            return self.conn.describe_stacks(StackName=stack_name)["Stacks"][0]
        except ClientError as error:
            # AWS answers a missing stack with a plain ValidationError ("Stack with id x does not exist").
            if _error_code(error) == "ValidationError" and "does not exist" in str(error):
                return None
            raise

    def get_template_body(self, stack_name: str) -> str:
        """The stack's current template, as submitted (botocore parses JSON bodies: they are dumped back).

        .. seealso:: - :external+boto3:py:meth:`CloudFormation.Client.get_template`
        """
        body = self.conn.get_template(StackName=stack_name, TemplateStage="Original")["TemplateBody"]
        return body if isinstance(body, str) else json.dumps(body, indent=2)

    def get_parameter_declarations(self, **template: Any) -> dict[str, dict[str, Any]]:
        """Parameters a template declares, by key (``StackName=``, ``TemplateBody=`` or ``TemplateURL=``).

        .. seealso:: - :external+boto3:py:meth:`CloudFormation.Client.get_template_summary`
        """
        summary = self.conn.get_template_summary(**template)
        return {p["ParameterKey"]: p for p in summary.get("Parameters", [])}

    def stack_events(
        self, stack_name: str, tokens: Collection[str] | None = None, pages: int = EVENT_PAGES_LIMIT
    ) -> Iterator[dict[str, Any]]:
        """The stack's events, newest first; with ``tokens``, only those of operations sent with them.

        Events of one operation are contiguous, so reading stops at the first foreign event after
        matching ones.

        .. seealso:: - :external+boto3:py:meth:`CloudFormation.Client.describe_stack_events`
        """
        kwargs: dict[str, Any] = {"StackName": stack_name}
        matched = False
        for _ in range(pages):
            page = self.conn.describe_stack_events(**kwargs)
            for event in page.get("StackEvents", []):
                if tokens is None:
                    yield event
                elif event.get("ClientRequestToken") in tokens:
                    matched = True
                    yield event
                elif matched:
                    return
            if not page.get("NextToken"):
                return
            kwargs["NextToken"] = page["NextToken"]

    def update_stack(self, **kwargs: Any) -> str:
        """.. seealso:: - :external+boto3:py:meth:`CloudFormation.Client.update_stack`"""
        return self.conn.update_stack(**kwargs)["StackId"]

    def rollback_stack(self, stack_name: str, token: str) -> None:
        """.. seealso:: - :external+boto3:py:meth:`CloudFormation.Client.rollback_stack`"""
        self.conn.rollback_stack(StackName=stack_name, ClientRequestToken=token)

    def continue_update_rollback(self, stack_name: str, token: str, resources_to_skip: list[str]) -> None:
        """.. seealso:: - :external+boto3:py:meth:`CloudFormation.Client.continue_update_rollback`"""
        kwargs: dict[str, Any] = {"StackName": stack_name, "ClientRequestToken": token}
        if resources_to_skip:
            kwargs["ResourcesToSkip"] = resources_to_skip
        self.conn.continue_update_rollback(**kwargs)

    def cancel_update_stack(self, stack_name: str, token: str) -> None:
        """.. seealso:: - :external+boto3:py:meth:`CloudFormation.Client.cancel_update_stack`"""
        self.conn.cancel_update_stack(StackName=stack_name, ClientRequestToken=token)

    # -- change sets ---------------------------------------------------------------------------------
    def describe_change_set(self, change_set: str, stack_name: str | None = None) -> dict[str, Any] | None:
        """The change set with all its Changes (every page), or None if it does not exist.

        :param change_set: its ARN, or its name together with ``stack_name``.

        .. seealso:: - :external+boto3:py:meth:`CloudFormation.Client.describe_change_set`
        """
        kwargs: dict[str, Any] = {"ChangeSetName": change_set}
        if stack_name and not change_set.startswith("arn:"):
            kwargs["StackName"] = stack_name
        try:
            described = self.conn.describe_change_set(**kwargs)
            changes = list(described.get("Changes", []))
            while described.get("NextToken"):
                described = self.conn.describe_change_set(**kwargs, NextToken=described["NextToken"])
                changes.extend(described.get("Changes", []))
        except ClientError as error:
            if _error_code(error) == "ChangeSetNotFound":
                return None
            raise
        described.pop("NextToken", None)
        described.pop("ResponseMetadata", None)
        return {**described, "Changes": changes}

    def create_change_set(self, **kwargs: Any) -> dict[str, str]:
        """``{"Id": change set ARN, "StackId": stack ARN}``.

        .. seealso:: - :external+boto3:py:meth:`CloudFormation.Client.create_change_set`
        """
        response = self.conn.create_change_set(**kwargs)
        return {"Id": response["Id"], "StackId": response["StackId"]}

    def delete_change_set(self, change_set_id: str) -> None:
        """.. seealso:: - :external+boto3:py:meth:`CloudFormation.Client.delete_change_set`"""
        self.conn.delete_change_set(ChangeSetName=change_set_id)

    def execute_change_set(self, change_set_id: str, token: str, disable_rollback: bool = False) -> None:
        """.. seealso:: - :external+boto3:py:meth:`CloudFormation.Client.execute_change_set`"""
        kwargs: dict[str, Any] = {"ChangeSetName": change_set_id, "ClientRequestToken": token}
        if disable_rollback:
            kwargs["DisableRollback"] = True
        self.conn.execute_change_set(**kwargs)
