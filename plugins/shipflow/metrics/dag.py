"""The ``shipflow_metrics`` DAG: hourly, catch-up capable, compute -> validate -> publish.

Settings (environment variables of the Airflow components):

- ``SHIPFLOW_METRICS_START``: the first data interval (ISO date, default 2026-01-01). With
  ``SHIPFLOW_METRICS_CATCHUP=true`` the scheduler runs every hour since then (each run only
  recomputes the days it completes, so a catch-up is cheap); otherwise only the newest hour runs and
  older days come with ``airflow backfill create --dag-id shipflow_metrics --from-date ... --to-date ...``.
- ``SHIPFLOW_METRICS_AWS_CONN_ID`` (default ``aws_default``): CloudWatch, and SNS for alerts.
- ``SHIPFLOW_METRICS_SNS_TOPIC_ARN``: where a failed validation is announced (optional).
- ``SHIPFLOW_METRICS_EXPORT_DIR``: where the JSON/CSV files go.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

DAG_ID = "shipflow_metrics"


def build_metrics_dag():
    from airflow.sdk import DAG

    from shipflow.metrics.operators import MetricsComputeOperator, MetricsPublishOperator, MetricsValidateOperator

    aws_conn_id = os.environ.get("SHIPFLOW_METRICS_AWS_CONN_ID", "aws_default")
    start = datetime.fromisoformat(os.environ.get("SHIPFLOW_METRICS_START", "2026-01-01")).replace(tzinfo=UTC)
    with DAG(
        dag_id=DAG_ID,
        description="Release metrics from the audit trail: execution time, error rates, manual fallbacks, DORA",
        schedule="@hourly",
        start_date=start,
        catchup=os.environ.get("SHIPFLOW_METRICS_CATCHUP", "false").lower() in ("1", "true", "yes"),
        max_active_runs=1,
        default_args={"owner": "shipflow", "retries": 1, "retry_delay": timedelta(seconds=30)},
        tags=["shipflow", "metrics"],
        doc_md=__doc__,
    ) as dag:
        compute = MetricsComputeOperator(task_id="compute_metrics")
        validate = MetricsValidateOperator(
            task_id="validate_metrics",
            sns_topic_arn=os.environ.get("SHIPFLOW_METRICS_SNS_TOPIC_ARN") or None,
            aws_conn_id=aws_conn_id,
        )
        publish = MetricsPublishOperator(task_id="publish_metrics", aws_conn_id=aws_conn_id)
        compute >> validate >> publish
    return dag
