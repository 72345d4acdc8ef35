"""Console links for CloudFormation stacks and change sets (shown as operator extra links in the Airflow UI).

Stack and change set ids are ARNs: pass them URL-quoted (``urllib.parse.quote(arn, safe="")``).
"""

from __future__ import annotations

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink


class CloudFormationStackLink(BaseAwsLink):
    """The stack's page in the CloudFormation console (its events tab shows each resource's reason)."""

    name = "AWS CloudFormation Stack"
    key = "cloudformation_stack"
    format_str = BASE_AWS_CONSOLE_LINK + "/cloudformation/home?region={region_name}#/stacks/events?stackId={stack_id}"


class CloudFormationChangeSetLink(BaseAwsLink):
    """The change set's page in the CloudFormation console: its changes, as an approver reviews them."""

    name = "AWS CloudFormation Change Set"
    key = "cloudformation_change_set"
    format_str = (
        BASE_AWS_CONSOLE_LINK
        + "/cloudformation/home?region={region_name}#/stacks/changesets/changes"
        + "?stackId={stack_id}&changeSetId={change_set_id}"
    )
