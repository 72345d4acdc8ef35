"""An approval step followed by one task: exercises the human-in-the-loop REST endpoints.

Used by tests/runtime/test_local.py; only ``approver1`` may answer.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import dag, task


@dag(dag_id="runtime_approval", schedule=None, start_date=datetime(2025, 1, 1), catchup=False, tags=["test"])
def runtime_approval():
    approve = ApprovalOperator(
        task_id="approve",
        subject="Release runtime_approval?",
        assigned_users=[{"id": "approver1", "name": "approver1"}],
    )

    @task
    def release() -> str:
        return "released"

    approve >> release()


runtime_approval()
