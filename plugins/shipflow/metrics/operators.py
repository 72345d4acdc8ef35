"""The metrics DAG's steps: compute, validate (great-expectations), publish (CloudWatch + exports).

``shipflow_metrics`` runs hourly (``dags/metrics.py``; built by ``build_metrics_dag``):

- ``compute_metrics`` (``MetricsComputeOperator``): the windows of the last day that ended (again,
  so that events replayed late from a worker's spool are taken in), and the day in progress so far
  (provisional: the row's ``window_end`` is the coming midnight, and the run that crosses it
  replaces it with the final value). Idempotent: a rerun replaces the same windows' rows in one
  transaction.
- ``validate_metrics`` (``MetricsValidateOperator``): the rows just computed against the suite
  ``include/expectations/release_metrics.json``. A failure alerts (SNS, when a topic is configured)
  and fails the task, so nothing is published.
- ``publish_metrics`` (``MetricsPublishOperator``): ``PutMetricData`` to namespace ``Shipflow``
  (batched), and ``<export dir>/metrics-<window end>.json|csv``.

The audit store is the configured one (``shipflow.audit.store.resolve_url``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.sdk import BaseOperator

METRICS_SUITE = "release_metrics.json"
EXPORT_DIR_VARIABLE = "SHIPFLOW_METRICS_EXPORT_DIR"


def next_midnight(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return datetime.combine(moment.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


def production_from_specs(services_dir: Path | None = None) -> dict[str, str]:
    """Each valid spec's production environment: its last one (where a release ends)."""
    from shipflow.release.builder import SERVICES_DIR
    from shipflow.spec.loader import check_spec, load_defaults, spec_files

    directory = services_dir or SERVICES_DIR
    if not directory.is_dir():
        return {}
    defaults = load_defaults()
    found = {}
    for path in spec_files(directory):
        spec, _ = check_spec(path, defaults=defaults)
        if spec is not None and spec.environments:
            found[spec.service] = spec.environments[-1].name
    return found


def _store() -> Any:
    from shipflow.audit.store import AuditStore, resolve_url

    return AuditStore(resolve_url())


def _rows(window_ends: Sequence[str]) -> list[dict[str, Any]]:
    from shipflow.metrics.publish import read_rows

    with _store() as store:
        return read_rows(store.engine, window_ends=[datetime.fromisoformat(e) for e in window_ends])


def validate(rows: Sequence[dict[str, Any]]) -> Any:
    """``rows`` of ``release_metric`` against the suite ``release_metrics.json``: a ``GateResult``."""
    from shipflow.gates.expectations import validate_rows
    from shipflow.metrics import METRIC_NAMES
    from shipflow.metrics.publish import COLUMNS, metric_kind

    plain = [
        {
            **r,
            "window_end": r["window_end"].isoformat() if isinstance(r["window_end"], datetime) else r["window_end"],
            "kind": metric_kind(r["metric"] or ""),
        }
        for r in rows
    ]
    return validate_rows(plain, METRICS_SUITE, {"metric_names": sorted(METRIC_NAMES)}, columns=[*COLUMNS, "kind"])


class MetricsComputeOperator(BaseOperator):
    """``compute_metrics``: fill ``release_metric`` for the data interval, and the day in progress so far.

    :return: ``window_ends`` (ISO, final and provisional), ``rows`` written, ``provisional`` window end.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        from shipflow.metrics.compute import compute, day_ends

        # A run triggered by hand without a logical date has no data interval: the hour before it.
        end = context.get("data_interval_end") or datetime.now(UTC)
        start = context.get("data_interval_start") or end - timedelta(hours=1)
        production = production_from_specs()
        with _store() as store:
            store.migrate()  # the metrics table comes with the audit store's migrations
            # The interval's days, and the last day that ended before it: events a worker replays late
            # from its spool (the store was away) still count in the day they happened.
            final = compute(store.engine, start - timedelta(days=1), end, production=production)
            today = next_midnight(end)
            provisional = 0
            # The day in progress, so far (a catch-up run of a day long over leaves it to the run
            # that crosses its midnight).
            if today > datetime.now(UTC):
                provisional = compute(store.engine, today - timedelta(days=1), today, production=production)
        ends = [e.isoformat() for e in day_ends(start - timedelta(days=1), end)]
        if provisional:
            ends.append(today.isoformat())
        self.log.info(
            "metrics: %d final rows (%s), %d provisional rows for the day ending %s",
            final,
            ends,
            provisional,
            today.isoformat(),
        )
        return {"window_ends": ends, "rows": final + provisional, "provisional": today.isoformat()}


class MetricsValidateOperator(BaseOperator):
    """``validate_metrics``: great-expectations over the rows ``compute_metrics`` wrote; alert and fail if bad.

    :param sns_topic_arn: where a failed validation is announced (optional).
    """

    def __init__(
        self,
        *,
        sns_topic_arn: str | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sns_topic_arn = sns_topic_arn
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def execute(self, context: Any) -> dict[str, Any]:
        computed = context["ti"].xcom_pull(task_ids="compute_metrics") or {}
        rows = _rows(computed.get("window_ends") or [])
        if not rows:
            self.log.info("metrics: no rows to validate (no releases in these windows)")
            return {"rows": 0, "success": True}
        result = validate(rows)
        if not result.success:
            lines = result.failure_lines()
            message = f"metrics for {computed.get('window_ends')} failed validation; nothing published:\n" + "\n".join(
                f"- {line}" for line in lines
            )
            from shipflow.release.notify import notify

            notify(
                {"sns_topic_arn": self.sns_topic_arn, "on": ["failure"]} if self.sns_topic_arn else None,
                "failure",
                subject="Shipflow [failure] metrics failed validation",
                message=message,
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
            )
            raise AirflowFailException(message)
        return {"rows": len(rows), "success": True, "counts": result.counts}


class MetricsPublishOperator(BaseOperator):
    """``publish_metrics``: the validated rows to CloudWatch (namespace ``Shipflow``) and to JSON/CSV files.

    :param export_dir: where the files go (default ``$SHIPFLOW_METRICS_EXPORT_DIR``, else
        ``<AIRFLOW_HOME>/shipflow_metrics``).
    """

    def __init__(
        self,
        *,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        export_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.export_dir = export_dir

    def execute(self, context: Any) -> dict[str, Any]:
        from shipflow.aws.hooks.cloudwatch import CloudWatchAlarmsHook
        from shipflow.metrics.publish import export, publish

        computed = context["ti"].xcom_pull(task_ids="compute_metrics") or {}
        rows = _rows(computed.get("window_ends") or [])
        if not rows:
            return {"datapoints": 0}
        hook = CloudWatchAlarmsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
        sent = publish(rows, hook)
        folder = (
            self.export_dir
            or os.environ.get(EXPORT_DIR_VARIABLE)
            or (Path(os.environ.get("AIRFLOW_HOME") or Path.home() / ".shipflow") / "shipflow_metrics")
        )
        stem = "metrics-" + max(r["window_end"] for r in rows).strftime("%Y%m%dT%H%MZ")
        files = export(rows, folder, stem)
        self.log.info(
            "metrics: %d datapoints to CloudWatch in %d calls; files %s", sent["datapoints"], sent["calls"], files
        )
        return {**sent, "files": files}
