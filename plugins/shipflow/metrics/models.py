"""The computed metrics' table ``release_metric``, on the audit store's metadata (same database, same migrations).

Migration ``0002_release_metric`` creates exactly what is declared here: the table and an index on
``audit_event (kind, time)``, which every metrics query filters on. The audit migrations'
``env.py`` imports this module so that their target metadata holds both.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shipflow.audit.chain import MAX_LABEL
from shipflow.audit.models import AuditEvent, Base


class ReleaseMetric(Base):
    """One metric's value for one service and environment over one window (docs/metrics.md).

    A window is a UTC calendar day (``window="day"``) or the rolling 7 or 30 days (``"7d"``,
    ``"30d"``) that end where ``window_end`` says (a midnight, UTC; the window excludes it).
    ``environment`` is ``"*"`` for every environment together and for release-level metrics;
    ``dimension`` is ``""`` when the metric is not broken down. ``samples`` is how many things the
    value was computed from (releases, tries, calls, ...). A value that cannot be computed (a rate
    with nothing to divide by, a percentile of nothing) is not stored: there is no NULL value.
    """

    __tablename__ = "release_metric"

    window: Mapped[str] = mapped_column(String(8), primary_key=True)
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    service: Mapped[str] = mapped_column(String(MAX_LABEL), primary_key=True)
    environment: Mapped[str] = mapped_column(String(MAX_LABEL), primary_key=True)
    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    dimension: Mapped[str] = mapped_column(String(MAX_LABEL), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    samples: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# The metrics read audit_event by kind and a time range; the audit store itself never needs it.
AUDIT_EVENT_KIND_TIME = Index(None, AuditEvent.kind, AuditEvent.time)
