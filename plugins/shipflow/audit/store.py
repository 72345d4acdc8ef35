"""``AuditStore``: migrate, append to and verify the audit store; spool while it is unreachable.

    store = AuditStore(resolve_url())
    store.migrate()
    store.append(AWS_ACTION, run_id=..., service="orders", environment="prod", payload={...})
    store.verify()  # VerifyResult: ok with the count, or the first altered/inserted/deleted event

Appends are serialised so that the chain stays one line with many writers at once: on PostgreSQL a
transaction-scoped advisory lock plus ``SELECT ... FOR UPDATE`` of the head row; on SQLite every
transaction starts with ``BEGIN IMMEDIATE`` (the write lock up front) and waits up to the busy
timeout for it. An append that cannot reach the store (``OperationalError``/``InterfaceError``)
goes to the spool; the next append that reaches it first replays the spool, in order. Inserts are
idempotent on the event id, so a replay interrupted before the spool is cleared adds nothing twice.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, insert, inspect, select, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import InterfaceError, OperationalError

from shipflow.audit import CONNECTION_ID, SPOOL_VARIABLE, SYSTEM_ACTOR, URL_VARIABLE, AuditError
from shipflow.audit.chain import Event, VerifyResult, chain_hash, verify_chain
from shipflow.audit.models import HEAD_ID, AuditChainHead, AuditEvent
from shipflow.audit.spool import LockedSpool, Spool

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# pg_advisory_xact_lock key of the append lock (any constant bigint; "shipflow audit" in ASCII, truncated).
ADVISORY_LOCK_KEY = 0x73686970_61756474
# The store is not there (refused, timed out, file cannot be opened): spool, do not fail the task.
UNREACHABLE = (OperationalError, InterfaceError)
DEFAULT_DB_NAME = "shipflow_audit.db"
DEFAULT_SPOOL_NAME = "shipflow_audit.spool.jsonl"
POSTGRES_DRIVER = "postgresql+psycopg"  # psycopg 3

events_table = AuditEvent.__table__
head_table = AuditChainHead.__table__


def _home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or Path.home() / ".shipflow")


def default_spool_path() -> Path:
    """``$SHIPFLOW_AUDIT_SPOOL``, else ``<AIRFLOW_HOME or ~/.shipflow>/shipflow_audit.spool.jsonl``."""
    return Path(os.environ.get(SPOOL_VARIABLE) or _home() / DEFAULT_SPOOL_NAME)


def connection_url(conn: Any) -> str:
    """The SQLAlchemy URL of an Airflow connection (``sqlite``, ``postgres``, or any SQLAlchemy URI)."""
    conn_type = (conn.conn_type or "").lower()
    if conn_type == "sqlite":
        return f"sqlite:///{conn.host or conn.schema}"
    if conn_type in ("postgres", "postgresql"):
        return URL.create(
            POSTGRES_DRIVER,
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or None,
            port=conn.port or None,
            database=conn.schema or None,
        ).render_as_string(hide_password=False)
    return sqlalchemy_url(conn.get_uri())


def sqlalchemy_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` (libpq style) as ``postgresql+psycopg://``; others unchanged."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgres", "postgresql"):
        return f"{POSTGRES_DRIVER}://{rest}"
    return url


def resolve_url(url: str | None = None) -> str:
    """The store's URL: ``url``, else ``$SHIPFLOW_AUDIT_URL``, else the ``shipflow_audit`` connection, else SQLite.

    The Airflow connection is looked up only when the variable is absent (importing Airflow costs
    seconds); SQLite's default file is ``<AIRFLOW_HOME or ~/.shipflow>/shipflow_audit.db``.
    """
    if url:
        return sqlalchemy_url(url)
    if os.environ.get(URL_VARIABLE):
        return sqlalchemy_url(os.environ[URL_VARIABLE])
    try:
        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:  # a CI machine without Airflow: only the variable or the default apply
        pass
    else:
        try:
            return connection_url(Connection.get(CONNECTION_ID))
        except AirflowNotFoundException:
            pass
    home = _home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / DEFAULT_DB_NAME}"


@dataclass(frozen=True)
class Appended:
    """What became of one ``append``: stored with its seq, or spooled (seq None) until the store returns."""

    event_id: uuid.UUID
    seq: int | None
    spooled: bool = False


def _sqlite_engine(url: URL, busy_timeout: float) -> Engine:
    # pysqlite's legacy transaction control would BEGIN only before DML (and never DEFERRED/IMMEDIATE
    # by choice): take BEGIN away from it and emit our own (SQLAlchemy docs, "Transactions with SQLite
    # and the sqlite3 driver"). IMMEDIATE takes the write lock before the head is read, so two
    # appenders can never both read the same head. Reads ask for a plain BEGIN (shared lock).
    engine = create_engine(url, connect_args={"timeout": busy_timeout})

    @event.listens_for(engine, "connect")
    def _no_driver_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get("shipflow_read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


class AuditStore:
    """The audit store at ``url`` (a SQLAlchemy URL), with its spool at ``spool_path``.

    :param url: e.g. ``sqlite:////var/lib/shipflow/audit.db`` or ``postgresql+psycopg://user@host/db``
        (``postgres://`` is accepted too). ``resolve_url()`` finds the configured one.
    :param spool_path: where events wait while the store is unreachable (default: ``default_spool_path()``).
    :param connect_timeout: seconds to wait for PostgreSQL before spooling.
    :param busy_timeout: seconds a SQLite writer waits for the write lock.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        spool_path: str | os.PathLike[str] | None = None,
        connect_timeout: float = 10,
        busy_timeout: float = 30,
    ) -> None:
        self.url = make_url(sqlalchemy_url(url) if isinstance(url, str) else url)  # ArgumentError if malformed
        self.spool = Spool(spool_path if spool_path is not None else default_spool_path())
        self._connect_timeout = connect_timeout
        self._busy_timeout = busy_timeout
        self._engine: Engine | None = None

    def __repr__(self) -> str:
        return f"AuditStore({self.display_url!r})"

    @property
    def display_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            if self.url.get_backend_name() == "sqlite":
                self._engine = _sqlite_engine(self.url, self._busy_timeout)
            elif self.url.get_backend_name() == "postgresql":
                self._engine = create_engine(
                    self.url, pool_pre_ping=True, connect_args={"connect_timeout": max(1, int(self._connect_timeout))}
                )
            else:
                self._engine = create_engine(self.url, pool_pre_ping=True)
        return self._engine

    @property
    def _postgres(self) -> bool:
        return self.url.get_backend_name() == "postgresql"

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema -----------------------------------------------------------------------------------
    def alembic_config(self, connection: Connection | None = None) -> Any:
        """An Alembic ``Config`` for the package's migrations (no alembic.ini), bound to ``connection``."""
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        return config

    def migrate(self, revision: str = "head") -> None:
        """Bring the store's tables to ``revision`` (default: the newest), in one transaction."""
        from alembic import command

        with self.engine.begin() as conn:
            if self._postgres:  # two processes migrating at once: the second finds the work done
                conn.execute(select(func.pg_advisory_xact_lock(ADVISORY_LOCK_KEY)))
            command.upgrade(self.alembic_config(conn), revision)

    def downgrade(self, revision: str = "base") -> None:
        from alembic import command

        with self.engine.begin() as conn:
            command.downgrade(self.alembic_config(conn), revision)

    def current_revision(self) -> str | None:
        from alembic.migration import MigrationContext

        from shipflow.audit.models import VERSION_TABLE

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()

    # -- writing ----------------------------------------------------------------------------------
    def append(
        self,
        kind: str,
        *,
        actor: str = SYSTEM_ACTOR,
        dag_id: str | None = None,
        run_id: str | None = None,
        service: str | None = None,
        environment: str | None = None,
        stage: str | None = None,
        task_id: str | None = None,
        try_number: int | None = None,
        payload: Mapping[str, Any] | None = None,
        event_id: uuid.UUID | str | None = None,
        time: datetime | None = None,
    ) -> Appended:
        """Append one event (``kind`` one of ``shipflow.audit.EVENT_KINDS``); spool it if the store is away.

        Events waiting in the spool are stored first, in their order. Appending an ``event_id``
        that is already stored returns its seq and adds nothing.
        """
        new = Event.new(
            kind, actor=actor, dag_id=dag_id, run_id=run_id, service=service, environment=environment,
            stage=stage, task_id=task_id, try_number=try_number, payload=payload, event_id=event_id, time=time,
        )
        try:
            if self.spool.pending():
                with self.spool.locked() as spool:
                    self._replay(spool)
            [seq] = self._insert([new])
        except UNREACHABLE as exc:
            self.spool.add(new.to_record())
            reason = str(exc.orig if exc.orig is not None else exc).strip().splitlines()[0]
            log.warning("audit store %s unreachable (%s): event %s spooled to %s",
                        self.display_url, reason, new.event_id, self.spool.path)
            return Appended(new.event_id, None, spooled=True)
        return Appended(new.event_id, seq)

    def replay(self) -> int:
        """Store the spooled events, in order, then empty the spool; returns how many were spooled.

        Raises ``OperationalError`` if the store is still unreachable (the spool is kept).
        """
        with self.spool.locked() as spool:
            return self._replay(spool)

    def _replay(self, spool: LockedSpool) -> int:
        records = spool.records()
        events = []
        for record in records:
            try:
                events.append(Event.from_record(record))
            except (AuditError, KeyError, TypeError, ValueError) as exc:  # never block every later append
                log.error("audit spool %s: record %s cannot be stored (%s): set aside in %s",
                          spool.path, record.get("event_id"), exc, spool.rejected_path)
                spool.set_aside(json.dumps(record, sort_keys=True).encode())
        if events:
            self._insert(events)
            log.info("audit store %s: %d spooled events stored", self.display_url, len(events))
        # Only after the insert committed: a crash before this line replays them again, idempotently.
        spool.clear()
        return len(records)

    def _insert(self, events: Sequence[Event]) -> list[int]:
        """Chain and insert ``events`` in one transaction holding the append lock; returns their seqs."""
        seqs = []
        with self.engine.begin() as conn:
            if self._postgres:
                conn.execute(select(func.pg_advisory_xact_lock(ADVISORY_LOCK_KEY)))
            head = conn.execute(
                select(head_table.c.last_seq, head_table.c.last_hash)
                .where(head_table.c.id == HEAD_ID)
                .with_for_update()
            ).one_or_none()
            if head is None:
                raise AuditError(f"the audit store {self.display_url} has no chain head: run `shipflow audit migrate`")
            seq, prev_hash = head
            for new in events:
                stored = conn.execute(
                    select(events_table.c.seq).where(events_table.c.event_id == new.event_id)
                ).scalar_one_or_none()
                if stored is not None:  # a replay after a crash, or a caller's retry
                    seqs.append(stored)
                    continue
                seq += 1
                digest = chain_hash(new.columns(), seq, prev_hash)
                conn.execute(insert(events_table).values(seq=seq, prev_hash=prev_hash, hash=digest, **new.columns()))
                seqs.append(seq)
                prev_hash = digest
            conn.execute(
                update(head_table).where(head_table.c.id == HEAD_ID).values(last_seq=seq, last_hash=prev_hash)
            )
        return seqs

    # -- reading ----------------------------------------------------------------------------------
    def _read(self) -> Connection:
        conn = self.engine.connect()
        if self._postgres:
            return conn.execution_options(isolation_level="REPEATABLE READ")  # head and rows from one snapshot
        return conn.execution_options(shipflow_read_only=True)

    def _require_tables(self, conn: Connection) -> None:
        if not inspect(conn).has_table(head_table.name):
            raise AuditError(
                f"the audit store {self.display_url} has no audit tables: run `shipflow audit migrate` first"
            )

    def verify(self) -> VerifyResult:
        """Check the whole chain and its head; the result names the first problem, or the count if ok."""
        with self._read() as conn, conn.begin():
            self._require_tables(conn)
            head = conn.execute(
                select(head_table.c.last_seq, head_table.c.last_hash).where(head_table.c.id == HEAD_ID)
            ).one_or_none()
            rows = conn.execute(
                select(events_table).order_by(events_table.c.seq).execution_options(yield_per=1000)
            )
            return verify_chain(rows, tuple(head) if head is not None else None)

    def events(self, *, run_id: str | None = None) -> list[Any]:
        """The stored events (rows with the table's columns) in seq order, optionally one run's."""
        query = select(events_table).order_by(events_table.c.seq)
        if run_id is not None:
            query = query.where(events_table.c.run_id == run_id)
        with self._read() as conn, conn.begin():
            self._require_tables(conn)
            return list(conn.execute(query))
