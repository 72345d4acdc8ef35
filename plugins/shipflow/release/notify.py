"""Release notifications: one message per event, to the service's SNS topic when its spec asks for it.

The spec's ``notifications`` section names the topic and the events (``on``: failure, rollback,
approval_pending, approval_timeout, manual_fallback, window_override). Operators call :func:`notify`
with the event name; an event the spec does not list, or a spec without notifications, sends nothing.
A failed publish is logged and never fails the release step that notifies (the step's own outcome is
what matters; the alert is best effort on top of the run's own state).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

SUBJECT_LIMIT = 100  # SNS rejects longer subjects


def notify(
    notifications: Mapping[str, Any] | None,
    event: str,
    *,
    subject: str,
    message: str,
    aws_conn_id: str | None,
    region_name: str | None,
) -> bool:
    """Publish ``message`` for ``event`` if ``notifications`` (the spec's section, as a dict) routes it.

    Returns whether a message was sent.
    """
    if not notifications or event not in (notifications.get("on") or ()):
        return False
    topic = notifications.get("sns_topic_arn")
    if not topic:
        return False
    from airflow.providers.amazon.aws.hooks.sns import SnsHook

    try:
        SnsHook(aws_conn_id=aws_conn_id, region_name=region_name).publish_to_target(
            target_arn=topic,
            message=message,
            subject=subject[:SUBJECT_LIMIT],
            message_attributes={"event": event},
        )
    except Exception:  # the alert must never turn a decided step into a failure
        log.exception("Could not publish the %s notification to %s", event, topic)
        return False
    log.info("Notified %s: %s", event, subject)
    return True
