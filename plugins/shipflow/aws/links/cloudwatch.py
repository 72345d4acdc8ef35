"""Console links for CloudWatch alarms (operator extra links, and the link in a failed gate's error)."""

from __future__ import annotations

from urllib.parse import quote

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink


class CloudWatchAlarmLink(BaseAwsLink):
    """One alarm's page in the CloudWatch console."""

    name = "CloudWatch Alarm"
    key = "cloudwatch_alarm"
    format_str = BASE_AWS_CONSOLE_LINK + "/cloudwatch/home?region={region_name}#alarmsV2:alarm/{alarm_name}"

    def format_link(self, **kwargs: str) -> str:
        # Alarm names may hold spaces and slashes; the console expects them escaped in the fragment.
        return super().format_link(**{**kwargs, "alarm_name": quote(kwargs.get("alarm_name", ""), safe="")})


class CloudWatchAlarmsLink(BaseAwsLink):
    """The CloudWatch console's alarm list, searched for the gate's prefix or first alarm name."""

    name = "CloudWatch Alarms"
    key = "cloudwatch_alarms"
    format_str = BASE_AWS_CONSOLE_LINK + "/cloudwatch/home?region={region_name}#alarmsV2:?~(search~'{search})"

    def format_link(self, **kwargs: str) -> str:
        return super().format_link(**{**kwargs, "search": quote(kwargs.get("search", ""), safe="")})
