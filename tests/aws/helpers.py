"""Sandbox resources the AWS action tests share."""

from __future__ import annotations

ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/service-role/shipflow-tests"


def create_project(sandbox, name: str = "payments-api-build") -> str:
    sandbox.boto3("codebuild").create_project(
        name=name,
        source={"type": "S3", "location": "shipflow-artifacts/src.zip"},
        artifacts={"type": "S3", "location": "shipflow-artifacts", "path": name, "name": "artifact.zip"},
        environment={
            "type": "LINUX_CONTAINER",
            "image": "aws/codebuild/standard:7.0",
            "computeType": "BUILD_GENERAL1_SMALL",
        },
        serviceRole=ROLE_ARN,
    )
    return name
