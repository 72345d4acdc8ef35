"""Where computed metrics go: CloudWatch, JSON/CSV exports, and a table for people.

- ``read_rows(bind, ...)``: rows of ``release_metric`` (as dicts), filtered by service, window, time.
- ``metric_data(rows)``: CloudWatch ``MetricData`` entries, namespace ``Shipflow``, dimensions
  ``Service``, ``Environment`` (``all`` for ``*``), ``Window`` and, when a metric is broken down,
  ``Breakdown``; the window's end is the timestamp. ``publish(rows, hook)`` sends them in batches.
- ``export(rows, directory, stem)``: ``<stem>.json`` and ``<stem>.csv`` for reports.
- ``render_table(rows)``: the text ``shipflow metrics`` prints.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

NAMESPACE = "Shipflow"
COLUMNS = ("window", "window_end", "service", "environment", "metric", "dimension", "value", "samples")
# CloudWatch refuses datapoints older than two weeks: a catch-up of older days exports them only.
CLOUDWATCH_MAX_AGE = timedelta(days=14)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def read_rows(
    bind: Any,
    *,
    service: str | None = None,
    window: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    window_ends: Sequence[datetime] | None = None,
) -> list[dict[str, Any]]:
    """The stored metric rows, oldest window first, as plain dicts with a UTC ``window_end``."""
    from sqlalchemy import select

    from shipflow.metrics.models import ReleaseMetric

    table = ReleaseMetric.__table__
    query = select(*(table.c[c] for c in COLUMNS)).order_by(
        table.c.window_end, table.c.window, table.c.service, table.c.environment, table.c.metric, table.c.dimension
    )
    if service:
        query = query.where(table.c.service == service)
    if window:
        query = query.where(table.c.window == window)
    if since:
        query = query.where(table.c.window_end >= since)
    if until:
        query = query.where(table.c.window_end <= until)
    if window_ends is not None:
        query = query.where(table.c.window_end.in_(list(window_ends)))
    connect = bind.connect() if hasattr(bind, "connect") else None
    conn = connect if connect is not None else bind
    try:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    finally:
        if connect is not None:
            connect.close()
    for row in rows:
        row["window_end"] = _utc(row["window_end"])
    return rows


def metric_kind(metric: str) -> str:
    """``duration`` (seconds), ``ratio`` (in [0, 1]), ``per_release`` (per 100 releases, per day) or ``count``."""
    if "_seconds" in metric:
        return "duration"
    if metric.endswith(("_rate", "_frequency")) and not metric.startswith("deployment_frequency"):
        return "ratio"
    if metric.startswith(("interventions_per_100", "deployment_frequency")):
        return "per_release"
    return "count"


def unit(metric: str) -> str:
    if "_seconds" in metric:
        return "Seconds"
    if metric.endswith(("_rate", "_frequency")):
        return "None"
    return "Count"


def metric_data(rows: Iterable[Mapping[str, Any]], *, now: datetime | None = None) -> list[dict[str, Any]]:
    """CloudWatch datapoints for ``rows``; rows too old for CloudWatch (two weeks) are left out."""
    oldest = (now or datetime.now(UTC)) - CLOUDWATCH_MAX_AGE
    data = []
    for row in rows:
        if row["value"] is None or _utc(row["window_end"]) < oldest:
            continue
        dimensions = [
            {"Name": "Service", "Value": row["service"]},
            {"Name": "Environment", "Value": "all" if row["environment"] == "*" else row["environment"]},
            {"Name": "Window", "Value": row["window"]},
        ]
        if row.get("dimension"):
            dimensions.append({"Name": "Breakdown", "Value": row["dimension"]})
        data.append(
            {
                "MetricName": row["metric"],
                "Dimensions": dimensions,
                # The end is excluded from the window: its last moment is what the value describes.
                "Timestamp": _utc(row["window_end"]) - timedelta(seconds=1),
                "Value": float(row["value"]),
                "Unit": unit(row["metric"]),
            }
        )
    return data


def publish(rows: Sequence[Mapping[str, Any]], hook: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """Send ``rows`` to CloudWatch through ``hook`` (a ``CloudWatchAlarmsHook``); what was sent."""
    data = metric_data(rows, now=now)
    request_ids = hook.put_metric_data(NAMESPACE, data) if data else []
    skipped = len(rows) - len(data)
    if skipped:
        log.info("metrics: %d rows older than %s not sent to CloudWatch (exported only)", skipped, CLOUDWATCH_MAX_AGE)
    return {
        "namespace": NAMESPACE,
        "datapoints": len(data),
        "calls": len(request_ids),
        "request_ids": request_ids,
        "skipped_too_old": skipped,
    }


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    return {c: (row[c].isoformat() if isinstance(row[c], datetime) else row[c]) for c in COLUMNS}


def export(rows: Sequence[Mapping[str, Any]], directory: str | Path, stem: str) -> dict[str, str]:
    """Write ``<stem>.json`` and ``<stem>.csv`` into ``directory`` (made if missing); their paths."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    plain = [_plain(r) for r in rows]
    json_path, csv_path = folder / f"{stem}.json", folder / f"{stem}.csv"
    json_path.write_text(json.dumps(plain, indent=1) + "\n")
    with csv_path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(plain)
    return {"json": str(json_path), "csv": str(csv_path)}


def _number(value: Any, metric: str) -> str:
    if value is None:
        return "-"
    if metric.endswith(("_rate", "_frequency")):
        return f"{value:.1%}"
    if "_seconds" in metric:
        return f"{value:,.1f}s"
    return f"{value:g}"


def render_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per row: window, its end, service, environment, metric (with its breakdown), value, samples."""
    if not rows:
        return "no metrics yet: the metrics DAG writes a day's rows once the day has ended (UTC)"
    lines = []
    header = ("window", "ending", "service", "env", "metric", "value", "samples")
    body = [
        (
            r["window"],
            _utc(r["window_end"]).strftime("%Y-%m-%d %H:%M"),
            r["service"],
            r["environment"],
            r["metric"] + (f"[{r['dimension']}]" if r.get("dimension") else ""),
            _number(r["value"], r["metric"]),
            str(r["samples"]),
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *body, strict=False)]
    for line in (header, *body):
        lines.append(
            "  ".join(
                str(x).ljust(w) if i < 5 else str(x).rjust(w) for i, (x, w) in enumerate(zip(line, widths, strict=True))
            )
        )
    return "\n".join(lines)
