"""Shipflow's audit trail: an append-only, hash-chained store of what every release did and who did it.

Task code has no access to Airflow's metadata DB in Airflow 3, so the evidence lives in a store of
its own, reached through the ``shipflow_audit`` connection (SQLite file by default, PostgreSQL in
the distributed mode).

- ``models``: the SQLAlchemy tables ``audit_event`` and ``audit_chain_head``.
- ``chain``: the canonical form of an event, its hash, and ``verify_chain`` (no database needed).
- ``store``: ``AuditStore(url)``: ``migrate()``, ``append(...)``, ``verify()``, ``replay()``.
- ``spool``: the worker-local file that keeps events while the store is unreachable.
- ``commands``: ``shipflow audit migrate|verify`` (``add_parsers``).

Importing this package is cheap: SQLAlchemy and Alembic are imported by ``models``/``store`` only,
never from DAG files. The event kinds below are the one list of them: ``append`` refuses others.
See docs/audit.md.
"""

from __future__ import annotations

RELEASE_REQUESTED = "release_requested"
AWS_ACTION = "aws_action"
GATE_DECISION = "gate_decision"
APPROVAL = "approval"
ROLLBACK = "rollback"
MANUAL_FALLBACK = "manual_fallback"
MANUAL_INTERVENTION = "manual_intervention"
WINDOW_OVERRIDE = "window_override"
RELEASE_FINISHED = "release_finished"

EVENT_KINDS: frozenset[str] = frozenset(
    {
        RELEASE_REQUESTED,
        AWS_ACTION,
        GATE_DECISION,
        APPROVAL,
        ROLLBACK,
        MANUAL_FALLBACK,
        MANUAL_INTERVENTION,
        WINDOW_OVERRIDE,
        RELEASE_FINISHED,
    }
)

# Who acted when no person did.
SYSTEM_ACTOR = "shipflow"
# The Airflow connection, and the environment variables that take precedence over it.
CONNECTION_ID = "shipflow_audit"
URL_VARIABLE = "SHIPFLOW_AUDIT_URL"
SPOOL_VARIABLE = "SHIPFLOW_AUDIT_SPOOL"


class AuditError(Exception):
    """A misuse of the audit store (unknown event kind, unserialisable payload, store not migrated)."""


def validate_kind(kind: str) -> str:
    """Return ``kind`` if it is one of ``EVENT_KINDS``; else raise ``AuditError`` listing them."""
    if kind not in EVENT_KINDS:
        raise AuditError(f"unknown audit event kind {kind!r}: use one of {', '.join(sorted(EVENT_KINDS))}")
    return kind
