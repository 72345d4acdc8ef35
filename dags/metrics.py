"""Shipflow's metrics DAG (``shipflow_metrics``): hourly release metrics from the audit trail.

Thin on purpose: built by plugins/shipflow/metrics/dag.py; see docs/metrics.md. (Airflow only
parses files that mention "dag" and "airflow": this docstring does.)
"""

from __future__ import annotations

from shipflow.metrics.dag import build_metrics_dag

dag = build_metrics_dag()
