"""Sandbox stacks and readings the CloudFormation action tests share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).parent / "templates"
STACK = "payments-api-staging"
V1, V2 = "release-stack-v1.yaml", "release-stack-v2.yaml"
# The stack's creation parameters; ApiKey is NoEcho and must never show up in a result.
SECRET = "s3cr3t-api-key"
CREATE_PARAMETERS = {"ServiceName": "payments-api", "Environment": "staging", "ApiKey": SECRET}
RELEASE_PARAMETER = "/payments-api/staging/release"


def template(name: str) -> str:
    return (TEMPLATES / name).read_text()


def create_stack(sandbox, name: str = STACK, template_name: str = V1, **parameters: str) -> str:
    """A CREATE_COMPLETE stack (stack operations are immediate at the sandbox's default speed)."""
    cfn = sandbox.boto3("cloudformation")
    values = {**CREATE_PARAMETERS, **parameters}
    stack_id = cfn.create_stack(
        StackName=name,
        TemplateBody=template(template_name),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
    )["StackId"]
    assert stack_status(sandbox, name) == "CREATE_COMPLETE"
    return stack_id


def stack(sandbox, name: str = STACK) -> dict[str, Any]:
    return sandbox.boto3("cloudformation").describe_stacks(StackName=name)["Stacks"][0]


def stack_status(sandbox, name: str = STACK) -> str:
    return stack(sandbox, name)["StackStatus"]


def stack_events(sandbox, name: str = STACK) -> list[dict[str, Any]]:
    return sandbox.boto3("cloudformation").describe_stack_events(StackName=name)["StackEvents"]


def operations_started(sandbox, name: str = STACK) -> list[tuple[str, str | None]]:
    """(status, ClientRequestToken) of each operation begun on the stack, oldest first."""
    return [
        (e["ResourceStatus"], e.get("ClientRequestToken"))
        for e in reversed(stack_events(sandbox, name))
        if e["LogicalResourceId"] == name and e.get("ResourceStatusReason") == "User Initiated"
    ]


def release_version(sandbox) -> str:
    return sandbox.boto3("ssm").get_parameter(Name=RELEASE_PARAMETER)["Parameter"]["Value"]


def change_sets(sandbox, name: str = STACK) -> list[dict[str, Any]]:
    return sandbox.boto3("cloudformation").list_change_sets(StackName=name)["Summaries"]
