"""Console links for CodeBuild builds (shown as operator extra links in the Airflow UI)."""

from __future__ import annotations

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink


class CodeBuildBuildLink(BaseAwsLink):
    """The build's page in the CodeBuild console."""

    name = "AWS CodeBuild Build"
    key = "codebuild_build"
    format_str = (
        BASE_AWS_CONSOLE_LINK
        + "/codesuite/codebuild/projects/{project_name}/build/{build_id}/?region={region_name}"
    )
