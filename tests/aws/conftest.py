"""Fixtures for the AWS actions: an Airflow connection to the sandbox and a task context.

Operators run here in the test process, calling the sandbox over HTTP exactly as in a worker. The
task context carries what the operators read from a running task instance (its identity, XCom for
console links, and a task state store); the end-to-end tests in tests/aws/test_e2e_*.py run the same
operators in real Airflow processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import pytest

# Airflow must not write into the developer's ~/airflow: give the test session a home of its own.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="shipflow-tests-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

CONN_ID = "aws_sandbox"


@dataclass
class TaskInstanceInfo:
    """The task instance attributes Shipflow's operators read, plus an XCom dict for links."""

    dag_id: str = "release__payments-api"
    run_id: str = "manual__2026-11-26T12:00:00+00:00"
    task_id: str = "build"
    map_index: int = -1
    try_number: int = 1
    xcom: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


class TaskStateStore:
    """Same get/set contract as Airflow's TaskStateStoreAccessor (values survive across tries)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        if value is None:
            raise ValueError("task state store values must not be None")
        self.values[key] = value


def make_context(ti: TaskInstanceInfo, store: TaskStateStore | None) -> dict[str, Any]:
    context: dict[str, Any] = {"ti": ti, "run_id": ti.run_id}
    if store is not None:
        context["task_state_store"] = store
    return context


@pytest.fixture
def aws_conn(sandbox, monkeypatch):
    """An Airflow AWS connection (env var) to the sandbox, with botocore's standard retry mode."""
    extra = {
        "endpoint_url": sandbox.endpoint,
        "region_name": "us-east-1",
        "config_kwargs": {"retries": {"mode": "standard", "max_attempts": 6}},
    }
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}),
    )
    return CONN_ID


@pytest.fixture
def task_context():
    """Factory: ``task_context(try_number=2, store=store, task_id=...)`` -> context dict."""

    def factory(store: TaskStateStore | None = None, **ti_fields: Any) -> dict[str, Any]:
        return make_context(TaskInstanceInfo(**ti_fields), store)

    return factory


def run_trigger(trigger: Any, timeout: float = 60) -> dict[str, Any]:
    """Run a trigger to its first event in a fresh event loop, as the triggerer would."""

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first_event(), timeout))


def roundtrip(trigger: Any) -> Any:
    """Rebuild a trigger from ``serialize()`` as the triggerer does (classpath + kwargs)."""
    import importlib

    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    json.dumps(kwargs)  # must be JSON-safe to be stored in the metadata DB
    return getattr(importlib.import_module(module), name)(**kwargs)
