"""Metrics fixtures: the audit store fixtures (a SQLite file, the session's PostgreSQL), and the fixed history.

``history.yaml`` holds the events. ``history_store`` is a migrated store on each backend holding
them (written through ``AuditStore.append``, as the listener would) and no computed metrics yet;
``computed`` is the rows ``compute`` stores for D1..D3 of it, computed once per backend
for the tests that only read them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import delete, select, update

from shipflow.audit.chain import GENESIS_HASH
from shipflow.audit.models import AuditChainHead, AuditEvent
from shipflow.audit.recorder import environment_and_stage
from shipflow.audit.store import AuditStore
from shipflow.metrics.compute import compute
from shipflow.metrics.models import ReleaseMetric
from tests.audit.conftest import (  # noqa: F401 - the audit store fixtures, on both backends
    BACKENDS,
    postgres_database,
    postgres_url,
    spool_path,
    sqlite_url,
    store,
    store_url,
)

HISTORY = Path(__file__).resolve().parent / "history.yaml"
# The history's days: D1 = 2026-03-02 .. D3 = 2026-03-04 (UTC); END3 is the end of D3.
D1, END3 = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 5, tzinfo=UTC)


def load_history(path: Path = HISTORY) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text())["events"]


def append(audit_store: AuditStore, event: dict[str, Any]) -> None:
    """Append one event of the history as the audit listener would record it."""
    environment, stage = environment_and_stage(event.get("task"))
    audit_store.append(
        event["kind"],
        actor=event.get("actor", "shipflow"),
        dag_id=f"release__{event['service']}",
        run_id=event["run"],
        service=event["service"],
        environment=environment,
        stage=stage,
        task_id=event.get("task"),
        try_number=event.get("try"),
        payload=event.get("payload") or {},
        time=event["at"].replace(tzinfo=UTC),
    )


def read_metrics(audit_store: AuditStore, *, with_computed_at: bool = False) -> dict[tuple, tuple]:
    """Every stored metric: (window, window_end, service, environment, metric, dimension) -> (value, samples)."""
    table = ReleaseMetric.__table__
    with audit_store.engine.connect() as conn:
        rows = conn.execute(select(table)).all()
    found = {}
    for r in rows:
        end = r.window_end if r.window_end.tzinfo else r.window_end.replace(tzinfo=UTC)  # SQLite gives naive UTC
        value = (r.value, r.samples, r.computed_at) if with_computed_at else (r.value, r.samples)
        found[(r.window, end, r.service, r.environment, r.metric, r.dimension)] = value
    return found


def _empty(audit_store: AuditStore) -> AuditStore:
    """No events, the chain at its start, no computed metrics (PostgreSQL's database is the session's)."""
    with audit_store.engine.begin() as conn:
        conn.execute(delete(ReleaseMetric.__table__))
        conn.execute(delete(AuditEvent.__table__))
        conn.execute(update(AuditChainHead.__table__).values(last_seq=0, last_hash=GENESIS_HASH))
    return audit_store


@pytest.fixture
def empty_store(store: AuditStore) -> Iterator[AuditStore]:  # noqa: F811 - the audit fixture, extended
    """A migrated store with no events and no computed metrics."""
    yield _empty(store)


@pytest.fixture
def history_store(empty_store: AuditStore) -> AuditStore:
    for event in load_history():
        append(empty_store, event)
    return empty_store


@pytest.fixture(scope="module", params=BACKENDS)
def computed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple, tuple]:
    """The metrics of D1..D3 of the history, on each backend: computed once, read by many tests."""
    tmp = tmp_path_factory.mktemp("metrics")
    url = f"sqlite:///{tmp / 'audit.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_database")
    with AuditStore(url, spool_path=tmp / "audit.spool") as audit_store:
        audit_store.migrate()
        _empty(audit_store)
        for event in load_history():
            append(audit_store, event)
        compute(audit_store.engine, D1, END3)
        return read_metrics(audit_store)
