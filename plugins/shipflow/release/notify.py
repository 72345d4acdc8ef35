"""Release alerts: one message per event, sent through Airflow notifiers where the service's spec routes it.

The spec's ``notifications`` section names the channels and the events (``on``: failure, rollback,
approval_pending, approval_timeout, manual_fallback, window_override). Each routed event goes to every
channel the section names:

- ``sns_topic_arn``: the Amazon provider's ``SnsNotifier`` publishes it (subject, message, and the
  message attributes ``event``, ``service`` and ``environment`` for SNS subscription filters);
- ``slack_connection_id``: the Slack provider's ``SlackWebhookNotifier`` posts it to the incoming
  webhook of that Airflow connection (the webhook token in the connection's password).

An event the spec does not list, or a spec without notifications, sends nothing. Every subject and
message passes through :func:`shipflow.redact.redact` before it leaves the process. Sending is best
effort: a channel that fails is logged and never fails the release step that notifies, nor stops the
other channel (the step's own outcome is what matters; the alert comes on top of the run's state).

Operators describe an event with :func:`release_alert` (what happened, where, what to do) and send it
with :func:`send`, or hand a :class:`ReleaseAlertNotifier` to a ``HITLOperator``'s ``notifiers``.
The provider modules are imported only when something is sent, never when a DAG is parsed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk import BaseNotifier

from shipflow.spec.model import NOTIFICATION_EVENTS as EVENTS

log = logging.getLogger(__name__)

# The spec's event names (notifications.on), one name each at the call sites.
FAILURE, ROLLBACK, APPROVAL_PENDING, APPROVAL_TIMEOUT, MANUAL_FALLBACK, WINDOW_OVERRIDE = EVENTS
SUBJECT_LIMIT = 99  # SNS: ASCII, no line breaks, "less than 100 characters"
SLACK_TIMEOUT = 10  # seconds per attempt: a slow webhook must not hold a release step for long


@dataclass(frozen=True)
class Alert:
    """One release event in words: a subject, and a message saying what happened, where and what to do."""

    event: str
    subject: str
    message: str
    attributes: Mapping[str, str] = field(default_factory=dict)


def release_alert(
    event: str,
    *,
    title: str,
    headline: str,
    service: str | None,
    environment: str | None,
    run_id: str | None,
    action: str,
    version: str | None = None,
    details: Iterable[tuple[str, Any]] = (),
    url: str | None = None,
) -> Alert:
    """The alert of ``event``: subject ``Shipflow [<event>] <title>``; the message's first line is
    ``headline``, then the facts (service, version, environment, run, ``details``), what to do, and a link."""
    facts = [
        ("Service", service),
        ("Version", version),
        ("Environment", environment),
        ("Run", run_id),
        *details,
        ("What to do", action),
        ("Open", url),
    ]
    lines = [headline, ""] + [f"{label}: {value}" for label, value in facts if value not in (None, "")]
    attributes = {"event": event, "service": service, "environment": environment}
    return Alert(
        event=event,
        subject=f"Shipflow [{event}] {title}",
        message="\n".join(lines),
        attributes={k: v for k, v in attributes.items() if v},
    )


def requested_version(ti: Any) -> str | None:
    """The version this run releases (``check_release_request``'s result), for alerts; None if unknown."""
    try:
        return (ti.xcom_pull(task_ids="check_release_request") or {}).get("version")
    except Exception:  # an alert goes out without the version rather than not at all
        return None


def task_url(ti: Any) -> str | None:
    """The task instance's page in the Airflow UI (from ``[api] base_url``), or None outside a task."""
    try:
        return ti.log_url
    except Exception:  # no task runtime (tests, callbacks): the alert goes out without a link
        return None


def _subject(text: str) -> str:
    """What SNS accepts as a subject: printable ASCII on one line, under 100 characters."""
    one_line = re.sub(r"\s+", " ", text).strip()
    ascii_only = one_line.encode("ascii", "replace").decode("ascii")
    return ascii_only if len(ascii_only) <= SUBJECT_LIMIT else ascii_only[: SUBJECT_LIMIT - 3] + "..."


def _slack_text(subject: str, message: str) -> str:
    # Slack reads &, < and > as markup: escaped, a comment or an AWS message shows as written.
    escaped = [s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for s in (subject, message)]
    return f"*{escaped[0]}*\n{escaped[1]}"


def channels(
    notifications: Mapping[str, Any],
    event: str,
    *,
    subject: str,
    message: str,
    attributes: Mapping[str, str],
    aws_conn_id: str | None,
    region_name: str | None,
) -> list[tuple[str, BaseNotifier]]:
    """The provider notifiers that carry one (already redacted) alert: ``[(channel name, notifier)]``."""
    found: list[tuple[str, BaseNotifier]] = []
    if topic := notifications.get("sns_topic_arn"):
        from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

        found.append(
            (
                f"sns:{topic}",
                SnsNotifier(
                    aws_conn_id=aws_conn_id,
                    # A topic is published to in its own region, whatever the environment's region.
                    region_name=topic.split(":")[3] or region_name,
                    target_arn=topic,
                    subject=_subject(subject),
                    message=message,
                    message_attributes={"event": event, **attributes},
                ),
            )
        )
    if conn_id := notifications.get("slack_connection_id"):
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        found.append(
            (
                f"slack:{conn_id}",
                SlackWebhookNotifier(
                    slack_webhook_conn_id=conn_id,
                    text=_slack_text(subject, message),
                    unfurl_links=False,
                    unfurl_media=False,
                    timeout=SLACK_TIMEOUT,
                ),
            )
        )
    return found


def notify(
    notifications: Mapping[str, Any] | None,
    event: str,
    *,
    subject: str,
    message: str,
    aws_conn_id: str | None = None,
    region_name: str | None = None,
    attributes: Mapping[str, str] | None = None,
    context: Any = None,
) -> list[str]:
    """Send ``event`` to each channel of ``notifications`` (the spec's section, as a dict) if it routes it.

    :param aws_conn_id: the connection that publishes to SNS (the environment's).
    :param region_name: used only when the topic ARN names no region.
    :param attributes: extra SNS message attributes (``service``, ``environment``).
    :param context: the task's context, handed to the notifiers.
    :return: the channels that accepted the alert (``sns:<arn>``, ``slack:<conn id>``); empty when the
        event is not routed or every channel failed.
    """
    if not notifications or event not in (notifications.get("on") or ()):
        return []
    from shipflow.redact import redact

    subject, message = redact(subject), redact(message)
    attributes = {k: redact(v) for k, v in (attributes or {}).items()}
    try:
        found = channels(
            notifications,
            event,
            subject=subject,
            message=message,
            attributes=attributes,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
        )
    except Exception:  # e.g. a provider missing from this installation: the step goes on
        log.exception("Could not prepare the %s notification", event)
        return []
    sent = []
    for name, notifier in found:
        try:
            # .notify(), not notifier(context): calling a notifier renders its fields as Jinja, and an
            # alert quotes people's comments and AWS messages that must go out exactly as written.
            notifier.notify(context or {})
        except Exception:  # an alert never turns a decided step into a failure
            log.exception("Could not send the %s notification to %s", event, name)
            continue
        sent.append(name)
    if sent:
        log.info("Notified %s to %s: %s", event, ", ".join(sent), subject)
    return sent


def send(
    notifications: Mapping[str, Any] | None,
    alert: Alert,
    *,
    aws_conn_id: str | None = None,
    region_name: str | None = None,
    context: Any = None,
) -> list[str]:
    """:func:`notify` for an :class:`Alert`."""
    return notify(
        notifications,
        alert.event,
        subject=alert.subject,
        message=alert.message,
        attributes=alert.attributes,
        aws_conn_id=aws_conn_id,
        region_name=region_name,
        context=context,
    )


class ReleaseAlertNotifier(BaseNotifier):
    """One release alert as an Airflow notifier, for a ``HITLOperator``'s ``notifiers`` (called once the
    request is open, before the task waits) or a callback: routed by the spec, redacted, best effort.

    :param notifications: the spec's ``notifications`` section (dict).
    :param alert: what to send (:func:`release_alert`).
    """

    template_fields = ()  # the alert's text is final: nothing in it is rendered as Jinja

    def __init__(
        self,
        *,
        notifications: Mapping[str, Any] | None,
        alert: Alert,
        aws_conn_id: str | None = None,
        region_name: str | None = None,
    ) -> None:
        super().__init__()
        self.notifications = dict(notifications or {})
        self.alert = alert
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.sent: list[str] = []

    def notify(self, context: Any) -> None:
        self.sent = send(
            self.notifications, self.alert, aws_conn_id=self.aws_conn_id, region_name=self.region_name, context=context
        )
