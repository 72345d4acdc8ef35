"""The hash chain: an event's canonical form, its hash, and the check of a whole chain.

Each event's ``hash`` is SHA-256 over the canonical JSON (sorted keys, no whitespace, UTF-8, times
as ISO 8601 in UTC with microseconds) of its content, its ``seq`` and the previous event's hash, so
changing, inserting or removing an event breaks the links after it. ``audit_chain_head`` repeats
the newest seq and hash, so removing the newest events is visible too.

Nothing here touches a database: the store hands ``verify_chain`` its rows in seq order.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from shipflow.audit import SYSTEM_ACTOR, AuditError, validate_kind

# The prev_hash of the first event.
GENESIS_HASH = "0" * 64

# What an event says, in the order the table shows it; seq and prev_hash are added when it is chained.
CONTENT_FIELDS = (
    "event_id",
    "time",
    "kind",
    "dag_id",
    "run_id",
    "service",
    "environment",
    "stage",
    "task_id",
    "try_number",
    "actor",
    "payload",
)

# The longest actor, dag_id, run_id, ... the table holds (String(250), as Airflow's ids).
MAX_LABEL = 250

# verify_chain's findings.
ALTERED = "altered"
INSERTED = "inserted"
DELETED = "deleted"


def utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive time (SQLite gives those back) is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def canonical_time(value: datetime) -> str:
    return utc(value).isoformat(timespec="microseconds")


def normalise_payload(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """The payload as the store will give it back: plain JSON (str keys, no NaN), a copy of the caller's."""
    if payload is None:
        return {}
    if not isinstance(payload, Mapping):
        raise AuditError(f"an audit payload must be a mapping, got {type(payload).__name__}")
    try:
        return json.loads(json.dumps(payload, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise AuditError(f"the audit payload is not plain JSON: {exc}") from None


@dataclass(frozen=True)
class Event:
    """One event's content, before the store gives it a seq and a place in the chain.

    Build it with ``Event.new``, which checks the kind and normalises time and payload, so that
    what is hashed is exactly what the store gives back.
    """

    event_id: uuid.UUID
    time: datetime
    kind: str
    actor: str = SYSTEM_ACTOR
    dag_id: str | None = None
    run_id: str | None = None
    service: str | None = None
    environment: str | None = None
    stage: str | None = None
    task_id: str | None = None
    try_number: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(
        cls,
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
    ) -> Event:
        if not actor:
            raise AuditError("an audit event needs an actor: a user name, or 'shipflow' for automated steps")
        labels = {"actor": actor, "dag_id": dag_id, "run_id": run_id, "service": service,
                  "environment": environment, "stage": stage, "task_id": task_id}
        for name, value in labels.items():
            if value is not None and (not isinstance(value, str) or len(value) > MAX_LABEL):
                raise AuditError(f"audit event {name} must be a string of at most {MAX_LABEL} characters, "
                                 f"got {value!r:.80}")
        if try_number is not None and (isinstance(try_number, bool) or not isinstance(try_number, int)):
            raise AuditError(f"audit event try_number must be an integer, got {try_number!r}")
        return cls(
            event_id=uuid.UUID(str(event_id)) if event_id is not None else uuid.uuid4(),
            time=utc(time) if time is not None else datetime.now(UTC),
            kind=validate_kind(kind),
            actor=actor,
            dag_id=dag_id,
            run_id=run_id,
            service=service,
            environment=environment,
            stage=stage,
            task_id=task_id,
            try_number=try_number,
            payload=normalise_payload(payload),
        )

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict (the spool's line); ``from_record`` reads it back."""
        return {**asdict(self), "event_id": str(self.event_id), "time": canonical_time(self.time)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Event:
        values = {name: record.get(name) for name in CONTENT_FIELDS}
        values["time"] = datetime.fromisoformat(values["time"])
        return cls.new(**values)

    def columns(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in CONTENT_FIELDS}


def content_of(row: Any) -> dict[str, Any]:
    """The hashed content of anything with the event's attributes (an ``Event``, a table row)."""
    return {name: getattr(row, name) for name in CONTENT_FIELDS}


def canonical_json(content: Mapping[str, Any], seq: int, prev_hash: str) -> bytes:
    document = {
        **{name: content[name] for name in CONTENT_FIELDS},
        "event_id": str(content["event_id"]),
        "time": canonical_time(content["time"]),
        "seq": seq,
        "prev_hash": prev_hash,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def chain_hash(content: Mapping[str, Any], seq: int, prev_hash: str) -> str:
    return hashlib.sha256(canonical_json(content, seq, prev_hash)).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    """What ``verify_chain`` found: ok with the count, or the first problem (kind, seq, event id)."""

    ok: bool
    count: int
    problem: str | None = None  # ALTERED, INSERTED or DELETED
    seq: int | None = None
    event_id: uuid.UUID | None = None
    message: str = ""

    def __str__(self) -> str:
        return self.message


def _found(problem: str, count: int, seq: int | None, event_id: Any, message: str) -> VerifyResult:
    event_uuid = uuid.UUID(str(event_id)) if event_id is not None else None
    return VerifyResult(False, count, problem, seq, event_uuid, message)


def verify_chain(rows: Iterable[Any], head: tuple[int, str] | None) -> VerifyResult:
    """Check rows (ascending seq, each with the event's attributes, seq, prev_hash, hash) against ``head``.

    ``head`` is ``(last_seq, last_hash)`` from ``audit_chain_head``, or None if that row is gone.
    Returns the first problem in seq order; a problem after the last row (head ahead of or behind
    the table) comes last.
    """
    if head is None:
        return _found(DELETED, 0, None, None, "the chain head (audit_chain_head) is missing: it was deleted")
    head_seq, head_hash = head
    expected, prev_hash, count, last_id = 1, GENESIS_HASH, 0, None
    for row in rows:
        seq, event_id = row.seq, row.event_id
        named = f"event seq {seq} ({event_id})"
        if seq < expected:
            return _found(INSERTED, count, seq, event_id, f"{named} repeats seq {seq}: an event was inserted")
        if seq > expected:
            missing = f"seq {expected}" if seq == expected + 1 else f"seqs {expected}..{seq - 1}"
            return _found(DELETED, count, expected, None, f"{missing} missing before {named}: deleted")
        if seq > head_seq:
            return _found(
                INSERTED, count, seq, event_id,
                f"{named} is beyond the chain head (seq {head_seq}): it was inserted after the last append",
            )
        if row.prev_hash != prev_hash:
            return _found(
                INSERTED, count, seq, event_id,
                f"{named} does not link to seq {seq - 1}: its prev_hash is not that event's hash "
                f"(inserted, or seq {seq - 1} was rewritten)",
            )
        if chain_hash(content_of(row), seq, row.prev_hash) != row.hash:
            return _found(ALTERED, count, seq, event_id, f"{named} was altered: its hash does not match its content")
        prev_hash, expected, count, last_id = row.hash, expected + 1, count + 1, event_id
    if count < head_seq:
        missing = f"seq {head_seq}" if head_seq == count + 1 else f"seqs {count + 1}..{head_seq}"
        return _found(
            DELETED, count, count + 1, None,
            f"{missing} missing: the chain head records seq {head_seq} but the newest event is seq {count}: deleted",
        )
    if prev_hash != head_hash:
        return _found(
            ALTERED, count, count, last_id,
            f"the newest event (seq {count}, {last_id}) does not match the chain head's hash: it was rewritten",
        )
    return VerifyResult(True, count, message=f"{count} event{'s' if count != 1 else ''}, chain intact")

