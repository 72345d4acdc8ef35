"""One task that proves a live stack runs tasks: it logs a line and returns what it saw.

Used by tests/runtime/test_local.py. The returned XCom shows the run's conf reached the task and
that the ``aws_sandbox`` connection (given to every process through the environment) resolves.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import BaseHook, dag, get_current_context, task


@dag(dag_id="runtime_smoke", schedule=None, start_date=datetime(2025, 1, 1), catchup=False, tags=["test"])
def runtime_smoke():
    @task
    def echo() -> dict:
        conf = get_current_context()["dag_run"].conf
        endpoint = BaseHook.get_connection("aws_sandbox").extra_dejson["endpoint_url"]
        print(f"runtime_smoke says hello to {conf.get('name')}")
        return {"name": conf.get("name"), "sandbox_endpoint": endpoint}

    echo()


runtime_smoke()
