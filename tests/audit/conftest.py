"""Audit store fixtures: a SQLite file per test, and one PostgreSQL database per session.

The PostgreSQL database is made by ``shipflow.runtime.backends`` (the machine's server, trust auth)
and dropped at the end; each test gets it migrated and emptied. No server: the PostgreSQL cases
skip, or fail under SHIPFLOW_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from shipflow.audit.chain import GENESIS_HASH
from shipflow.audit.store import AuditStore
from shipflow.runtime.backends import BackendUnavailable, scratch_postgres_database
from tests.conftest import skip_or_fail

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for the session, as a psycopg 3 SQLAlchemy URL."""
    try:
        scratch = scratch_postgres_database()
        url = scratch.__enter__()
    except BackendUnavailable as exc:
        skip_or_fail(f"the PostgreSQL audit store tests need PostgreSQL: {exc}")
    try:
        yield url.replace("postgresql+psycopg2://", "postgresql+psycopg://", 1)
    finally:
        scratch.__exit__(None, None, None)


@pytest.fixture
def postgres_url(postgres_database: str, tmp_path: Path) -> str:
    """The session's database, at the newest revision, with no events and the head at the start."""
    with AuditStore(postgres_database, spool_path=tmp_path / "reset.spool") as store:
        store.migrate()
        with store.engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_event"))
            conn.execute(text("UPDATE audit_chain_head SET last_seq = 0, last_hash = :h"), {"h": GENESIS_HASH})
    return postgres_database


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file that does not exist yet."""
    return f"sqlite:///{tmp_path / 'audit.db'}"


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest) -> str:
    """Each backend in turn: an empty store (PostgreSQL: migrated; SQLite: no file yet)."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def spool_path(tmp_path: Path) -> Path:
    return tmp_path / "spool" / "audit.spool.jsonl"


@pytest.fixture
def store(store_url: str, spool_path: Path) -> Iterator[AuditStore]:
    """A migrated, empty store on each backend, spooling to the test's own file."""
    with AuditStore(store_url, spool_path=spool_path) as opened:
        opened.migrate()
        yield opened
