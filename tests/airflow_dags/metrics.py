"""The metrics DAG (``shipflow_metrics``), as dags/metrics.py builds it, for the live test stack."""

from __future__ import annotations

from shipflow.metrics.dag import build_metrics_dag

dag = build_metrics_dag()
