"""The audit store on real SQLite files and a real PostgreSQL: migrations, appends, tampering, many writers."""

from __future__ import annotations

import multiprocessing
import sqlite3
import uuid
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from shipflow.audit import APPROVAL, AWS_ACTION, RELEASE_REQUESTED, AuditError
from shipflow.audit.chain import ALTERED, DELETED, INSERTED, chain_hash, utc
from shipflow.audit.models import VERSION_TABLE, Base
from shipflow.audit.store import AuditStore
from shipflow.metrics.models import ReleaseMetric

WRITERS, APPENDS_EACH = 6, 40


def fill(store: AuditStore, count: int = 5) -> list[uuid.UUID]:
    return [
        store.append(AWS_ACTION, run_id="r1", service="orders", environment="prod", stage="deploy",
                     task_id="deploy_prod", try_number=1, payload={"call": "CreateDeployment", "n": n}).event_id
        for n in range(count)
    ]


def sql(store: AuditStore, statement: str, **params) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def test_migrate_creates_the_models_tables_and_is_repeatable(store_url, spool_path):
    with AuditStore(store_url, spool_path=spool_path) as store:
        store.downgrade("base")  # PostgreSQL's session database was migrated by the fixture: start empty
        assert not {"audit_event", "audit_chain_head", "release_metric"} & set(inspect(store.engine).get_table_names())
        store.migrate()
        store.migrate()
        assert store.current_revision() == "0002"
        tables = set(inspect(store.engine).get_table_names())
        # Its own version table: the store may live in Airflow's database, whose is "alembic_version".
        assert {"audit_event", "audit_chain_head", VERSION_TABLE} <= tables and "alembic_version" not in tables
        # The computed metrics (shipflow.metrics) live beside the events they are computed from.
        assert ReleaseMetric.__tablename__ in tables
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        assert store.verify().message == "0 events, chain intact"


def test_appends_are_numbered_linked_and_read_back_as_written(store):
    when = datetime(2026, 5, 4, 9, 30, 0, 250000, tzinfo=UTC)
    first = store.append(RELEASE_REQUESTED, actor="alice", dag_id="release__orders", run_id="r1",
                         payload={"via": "rest", "version": "1.4.0"}, time=when)
    second = store.append(APPROVAL, actor="bob", run_id="r1", environment="prod", payload={"choice": "approve"})
    assert (first.seq, second.seq, first.spooled) == (1, 2, False)
    rows = store.events(run_id="r1")
    assert [row.seq for row in rows] == [1, 2]
    assert rows[1].prev_hash == rows[0].hash
    assert (rows[0].event_id, rows[0].actor, rows[0].kind, rows[0].payload) == (
        first.event_id, "alice", "release_requested", {"via": "rest", "version": "1.4.0"})
    assert utc(rows[0].time) == when  # SQLite gives it back naive, in UTC
    assert store.verify().message == "2 events, chain intact"


def test_an_unknown_kind_is_refused_and_nothing_is_stored(store):
    with pytest.raises(AuditError, match="unknown audit event kind 'aws_call'"):
        store.append("aws_call")
    assert store.events() == []


def test_appending_an_event_id_again_stores_it_once(store):
    event_id = uuid.uuid4()
    assert store.append(AWS_ACTION, event_id=event_id).seq == 1
    assert store.append(AWS_ACTION, event_id=event_id).seq == 1
    assert [row.event_id for row in store.events()] == [event_id]
    assert store.verify().ok


def test_an_edited_payload_is_named_by_seq_and_event_id(store):
    ids = fill(store)
    sql(store, "UPDATE audit_event SET payload = :p WHERE seq = 3", p='{"call": "CreateDeployment", "n": 7}')
    result = store.verify()
    assert (result.ok, result.problem, result.seq, result.event_id) == (False, ALTERED, 3, ids[2])
    assert f"event seq 3 ({ids[2]}) was altered" in result.message


def test_a_deleted_middle_event_is_a_gap(store):
    fill(store)
    sql(store, "DELETE FROM audit_event WHERE seq = 2")
    result = store.verify()
    assert (result.problem, result.seq) == (DELETED, 2)
    assert result.message.startswith("seq 2 missing before event seq 3")


def test_deleting_the_newest_event_shows_against_the_head(store):
    fill(store)
    sql(store, "DELETE FROM audit_event WHERE seq = 5")
    result = store.verify()
    assert (result.problem, result.seq) == (DELETED, 5)
    assert "the chain head records seq 5 but the newest event is seq 4" in result.message


def test_a_forged_event_is_found_even_when_chained_correctly(store):
    fill(store)
    [last] = [row for row in store.events() if row.seq == 5]
    forged = {"event_id": uuid.uuid4(), "time": datetime.now(UTC), "kind": "approval", "actor": "mallory",
              "dag_id": None, "run_id": "r1", "service": "orders", "environment": "prod", "stage": None,
              "task_id": None, "try_number": None, "payload": {"choice": "approve"}}
    digest = chain_hash(forged, 6, last.hash)
    with store.engine.begin() as conn:
        conn.execute(Base.metadata.tables["audit_event"].insert().values(seq=6, prev_hash=last.hash, hash=digest,
                                                                         **forged))
    result = store.verify()
    assert (result.ok, result.problem, result.seq, result.event_id) == (False, INSERTED, 6, forged["event_id"])


def test_sqlite_transactions_take_the_write_lock_at_begin(sqlite_url, spool_path):
    with AuditStore(sqlite_url, spool_path=spool_path) as store:
        store.migrate()
        path = store.url.database
        with store.engine.connect() as conn, conn.begin():
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                # Nothing executed yet in our transaction, and still the write lock is ours: BEGIN IMMEDIATE.
                with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                    other.execute("BEGIN IMMEDIATE")
            finally:
                other.close()


def append_many(url: str, spool: str, writer: int, count: int, start: multiprocessing.Event) -> None:
    """A writer process: waits for the others, then appends ``count`` events."""
    start.wait(60)
    with AuditStore(url, spool_path=spool) as store:
        for n in range(count):
            appended = store.append(AWS_ACTION, task_id=f"writer_{writer}", payload={"writer": writer, "n": n})
            if appended.spooled:
                raise SystemExit(f"writer {writer}: event {n} was spooled, the store should be reachable")


def test_concurrent_writers_keep_one_linear_chain(store_url, tmp_path):
    with AuditStore(store_url, spool_path=tmp_path / "spool.jsonl") as store:
        store.migrate()
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    writers = [
        context.Process(target=append_many, args=(store_url, str(tmp_path / "spool.jsonl"), w, APPENDS_EACH, start))
        for w in range(WRITERS)
    ]
    for process in writers:
        process.start()
    start.set()
    for process in writers:
        process.join(120)
    assert [process.exitcode for process in writers] == [0] * WRITERS
    with AuditStore(store_url, spool_path=tmp_path / "spool.jsonl") as store:
        rows = store.events()
        assert [row.seq for row in rows] == list(range(1, WRITERS * APPENDS_EACH + 1))
        # Every writer's events all arrived, each once, in the order that writer appended them.
        for w in range(WRITERS):
            assert [row.payload["n"] for row in rows if row.payload["writer"] == w] == list(range(APPENDS_EACH))
        assert store.verify().message == f"{WRITERS * APPENDS_EACH} events, chain intact"
    assert not (tmp_path / "spool.jsonl").exists()
