"""The hash chain without a database: canonical form, hashes, and what verify_chain reports."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from shipflow.audit import AWS_ACTION, EVENT_KINDS, GATE_DECISION, AuditError
from shipflow.audit.chain import (
    ALTERED,
    DELETED,
    GENESIS_HASH,
    INSERTED,
    Event,
    canonical_json,
    chain_hash,
    verify_chain,
)

T0 = datetime(2026, 5, 4, 12, 0, 0, 123456, tzinfo=UTC)


def chained(events: list[Event]) -> tuple[list[SimpleNamespace], tuple[int, str]]:
    """Rows as the store would hold them, and the head."""
    rows, prev = [], GENESIS_HASH
    for seq, event in enumerate(events, start=1):
        digest = chain_hash(event.columns(), seq, prev)
        rows.append(SimpleNamespace(seq=seq, prev_hash=prev, hash=digest, **event.columns()))
        prev = digest
    return rows, (len(rows), prev)


def five() -> list[Event]:
    return [
        Event.new(AWS_ACTION, run_id="r1", service="orders", payload={"call": "StartBuild", "n": n},
                  time=T0 + timedelta(seconds=n))
        for n in range(5)
    ]


def test_canonical_json_is_sorted_compact_utc_and_covers_seq_and_prev_hash():
    event = Event.new(GATE_DECISION, actor="alice", payload={"b": 1, "a": [1, "é"]}, time=T0,
                      event_id="00000000-0000-0000-0000-000000000001")
    document = canonical_json(event.columns(), 7, "ab" * 32)
    assert document == (
        '{"actor":"alice","dag_id":null,"environment":null,"event_id":"00000000-0000-0000-0000-000000000001",'
        '"kind":"gate_decision","payload":{"a":[1,"é"],"b":1},"prev_hash":"' + "ab" * 32 + '",'
        '"run_id":null,"seq":7,"service":null,"stage":null,"task_id":null,'
        '"time":"2026-05-04T12:00:00.123456+00:00","try_number":null}'
    ).encode()
    # The same instant in another zone, or naive as SQLite returns it, is the same event.
    elsewhere = replace(event, time=T0.astimezone(timezone(timedelta(hours=2))))
    naive = replace(event, time=T0.replace(tzinfo=None))
    assert chain_hash(elsewhere.columns(), 7, "ab" * 32) == chain_hash(event.columns(), 7, "ab" * 32)
    assert chain_hash(naive.columns(), 7, "ab" * 32) == chain_hash(event.columns(), 7, "ab" * 32)
    assert chain_hash(event.columns(), 8, "ab" * 32) != chain_hash(event.columns(), 7, "ab" * 32)
    assert chain_hash(event.columns(), 7, "cd" * 32) != chain_hash(event.columns(), 7, "ab" * 32)


def test_event_new_refuses_unknown_kinds_and_non_json_payloads():
    with pytest.raises(AuditError, match=r"unknown audit event kind 'deploy': use one of approval, aws_action"):
        Event.new("deploy")
    with pytest.raises(AuditError, match="not plain JSON"):
        Event.new(AWS_ACTION, payload={"ids": {1, 2}})
    with pytest.raises(AuditError, match="not plain JSON"):
        Event.new(AWS_ACTION, payload={"duration": float("nan")})
    with pytest.raises(AuditError, match="needs an actor"):
        Event.new(AWS_ACTION, actor="")
    with pytest.raises(AuditError, match="run_id must be a string of at most 250 characters"):
        Event.new(AWS_ACTION, run_id="r" * 251)
    with pytest.raises(AuditError, match="try_number must be an integer, got '1'"):
        Event.new(AWS_ACTION, try_number="1")
    assert {"release_requested", "aws_action", "gate_decision", "approval", "rollback", "manual_fallback",
            "manual_intervention", "window_override", "release_finished"} == EVENT_KINDS


def test_event_keeps_its_own_copy_of_the_payload_and_survives_the_spool_record():
    payload = {"resources": ["b-1"]}
    event = Event.new(AWS_ACTION, payload=payload, try_number=2)
    payload["resources"].append("added later")
    assert event.payload == {"resources": ["b-1"]}
    again = Event.from_record(json.loads(json.dumps(event.to_record())))
    assert again == event
    assert chain_hash(again.columns(), 1, GENESIS_HASH) == chain_hash(event.columns(), 1, GENESIS_HASH)


def test_an_intact_chain_is_ok_with_its_count():
    rows, head = chained(five())
    result = verify_chain(rows, head)
    assert (result.ok, result.count, str(result)) == (True, 5, "5 events, chain intact")
    assert verify_chain([], (0, GENESIS_HASH)).message == "0 events, chain intact"


def test_an_edited_event_is_named_by_seq_and_id():
    rows, head = chained(five())
    rows[2].payload = {"call": "StartBuild", "n": 99}
    result = verify_chain(rows, head)
    assert (result.ok, result.problem, result.seq, result.event_id) == (False, ALTERED, 3, rows[2].event_id)
    assert f"event seq 3 ({rows[2].event_id}) was altered" in result.message


def test_an_edited_and_rehashed_event_breaks_the_next_link():
    rows, head = chained(five())
    rows[1].actor = "mallory"
    rows[1].hash = chain_hash(vars(rows[1]), 2, rows[1].prev_hash)
    result = verify_chain(rows, head)
    assert (result.problem, result.seq) == (INSERTED, 3)
    assert "seq 2 was rewritten" in result.message


def test_removed_events_are_a_gap_or_a_head_ahead_of_the_table():
    rows, head = chained(five())
    result = verify_chain(rows[:1] + rows[3:], head)
    assert (result.problem, result.seq, result.message) == (
        DELETED, 2, f"seqs 2..3 missing before event seq 4 ({rows[3].event_id}): deleted",
    )
    newest_gone = verify_chain(rows[:4], head)
    assert (newest_gone.problem, newest_gone.seq) == (DELETED, 5)
    assert "the chain head records seq 5 but the newest event is seq 4" in newest_gone.message
    assert verify_chain(rows, None).problem == DELETED


def test_an_event_beyond_the_head_is_inserted_even_when_correctly_chained():
    rows, head = chained(five())
    forged = Event.new(AWS_ACTION, payload={"call": "DeleteStack"})
    digest = chain_hash(forged.columns(), 6, rows[-1].hash)
    rows.append(SimpleNamespace(seq=6, prev_hash=rows[-1].hash, hash=digest, **forged.columns()))
    result = verify_chain(rows, head)
    assert (result.problem, result.seq, result.event_id) == (INSERTED, 6, forged.event_id)
    assert "beyond the chain head (seq 5)" in result.message


def test_a_duplicate_seq_is_reported_as_inserted():
    rows, head = chained(five())
    twin = SimpleNamespace(**{**vars(rows[1]), "event_id": uuid.uuid4()})
    result = verify_chain(rows[:2] + [twin] + rows[2:], head)
    assert (result.problem, result.seq, result.event_id) == (INSERTED, 2, twin.event_id)
