"""Console links for CodeDeploy deployments (shown as operator extra links in the Airflow UI)."""

from __future__ import annotations

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink


class CodeDeployDeploymentLink(BaseAwsLink):
    """The deployment's page in the CodeDeploy console."""

    name = "AWS CodeDeploy Deployment"
    key = "codedeploy_deployment"
    format_str = BASE_AWS_CONSOLE_LINK + "/codesuite/codedeploy/deployments/{deployment_id}?region={region_name}"
