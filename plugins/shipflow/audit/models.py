"""The audit store's tables: ``audit_event`` (append-only, hash-chained) and ``audit_chain_head`` (one row).

The migrations in ``migrations/versions`` create exactly these; tests compare the two.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, DateTime, Index, Integer, MetaData, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shipflow.audit.chain import MAX_LABEL

# Not Alembic's default "alembic_version": the store may share a database with Airflow's metadata.
VERSION_TABLE = "shipflow_audit_alembic_version"
HEAD_ID = 1

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class AuditEvent(Base):
    """One thing that happened in a release, chained to the event before it by ``prev_hash``."""

    __tablename__ = "audit_event"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(64))
    dag_id: Mapped[str | None] = mapped_column(String(MAX_LABEL))
    run_id: Mapped[str | None] = mapped_column(String(MAX_LABEL))
    service: Mapped[str | None] = mapped_column(String(MAX_LABEL))
    environment: Mapped[str | None] = mapped_column(String(MAX_LABEL))
    stage: Mapped[str | None] = mapped_column(String(MAX_LABEL))
    task_id: Mapped[str | None] = mapped_column(String(MAX_LABEL))
    try_number: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(MAX_LABEL))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    # `shipflow audit show RUN` reads one run's events.
    __table_args__ = (Index(None, "dag_id", "run_id"),)


class AuditChainHead(Base):
    """The newest event's seq and hash, updated with every append: deleting the newest events shows."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (CheckConstraint(f"id = {HEAD_ID}", name="single_row"),)
