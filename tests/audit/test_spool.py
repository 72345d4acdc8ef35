"""Nothing lost: events spool durably while the store is away and are replayed, in order, once, when it returns."""

from __future__ import annotations

import json
import multiprocessing
import socket
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from shipflow.audit import AWS_ACTION, ROLLBACK
from shipflow.audit.spool import Spool
from shipflow.audit.store import AuditStore


def closed_port_url() -> str:
    """A PostgreSQL URL where nothing listens: connection refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/audit"


def spool_many(path: str, writer: int, count: int) -> None:
    spool = Spool(path)
    for n in range(count):
        spool.add({"writer": writer, "n": n, "padding": "x" * 3000})  # larger than a pipe buffer's atomic write


def test_spool_lines_come_back_in_order_and_clear_keeps_the_file(tmp_path):
    spool = Spool(tmp_path / "new" / "dir" / "audit.jsonl")
    assert not spool.pending()
    for n in range(3):
        spool.add({"n": n})
    assert spool.pending()
    assert [record["n"] for record in spool.records()] == [0, 1, 2]
    with spool.locked() as locked:
        locked.clear()
    assert spool.path.exists() and not spool.pending() and spool.records() == []


def test_a_torn_line_is_skipped_and_does_not_swallow_the_next_event(tmp_path, caplog):
    spool = Spool(tmp_path / "audit.jsonl")
    spool.add({"n": 1})
    with open(spool.path, "ab") as f:
        f.write(b'{"n": 2, "payl')  # a writer died mid-line
    spool.add({"n": 3})
    assert [record["n"] for record in spool.records()] == [1, 3]
    assert "line 2 is not a whole event" in caplog.text
    assert spool.path.with_name("audit.jsonl.rejected").read_bytes() == b'{"n": 2, "payl\n'


def test_processes_sharing_a_spool_never_interleave_lines(tmp_path):
    path = tmp_path / "audit.jsonl"
    context = multiprocessing.get_context("fork")  # plain file work: no need to pay for spawn's imports
    writers = [context.Process(target=spool_many, args=(str(path), w, 50)) for w in range(4)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(60)
    assert [process.exitcode for process in writers] == [0] * 4
    lines = path.read_bytes().splitlines()
    assert len(lines) == 200
    records = [json.loads(line) for line in lines]
    for w in range(4):
        assert [r["n"] for r in records if r["writer"] == w] == list(range(50))


def test_postgres_outage_spools_then_the_next_append_replays_in_order(postgres_url, spool_path):
    with AuditStore(postgres_url, spool_path=spool_path) as store:
        before = store.append(AWS_ACTION, run_id="r1", payload={"step": "build"})
    with AuditStore(closed_port_url(), spool_path=spool_path, connect_timeout=2) as away:
        spooled = [away.append(AWS_ACTION, run_id="r1", payload={"step": step}) for step in ("deploy", "alarm")]
    assert all(a.spooled and a.seq is None for a in spooled)
    assert [r["payload"]["step"] for r in Spool(spool_path).records()] == ["deploy", "alarm"]
    with AuditStore(postgres_url, spool_path=spool_path) as store:
        assert [r.event_id for r in store.events()] == [before.event_id]  # nothing arrived while it was away
        after = store.append(ROLLBACK, run_id="r1", payload={"step": "rollback"})
        rows = store.events(run_id="r1")
        assert [(r.seq, r.payload["step"]) for r in rows] == [
            (1, "build"), (2, "deploy"), (3, "alarm"), (4, "rollback")]
        assert [r.event_id for r in rows] == [before.event_id, *(a.event_id for a in spooled), after.event_id]
        assert after.seq == 4
        assert store.verify().message == "4 events, chain intact"
    assert not Spool(spool_path).pending()


def test_sqlite_store_taken_away_and_brought_back(tmp_path, spool_path):
    home = tmp_path / "store"
    home.mkdir()
    url = f"sqlite:///{home / 'audit.db'}"
    with AuditStore(url, spool_path=spool_path) as store:
        store.migrate()
        store.append(AWS_ACTION, payload={"n": 0})
    home.rename(tmp_path / "store.away")  # the volume is gone
    with AuditStore(url, spool_path=spool_path) as store:
        assert [store.append(AWS_ACTION, payload={"n": n}).spooled for n in (1, 2)] == [True, True]
    (tmp_path / "store.away").rename(home)
    with AuditStore(url, spool_path=spool_path) as store:
        assert store.replay() == 2
        assert [r.payload["n"] for r in store.events()] == [0, 1, 2]
        assert store.verify().ok


def test_a_crash_between_replay_and_spool_removal_adds_nothing_twice(postgres_url, spool_path):
    with AuditStore(closed_port_url(), spool_path=spool_path, connect_timeout=2) as away:
        ids = [away.append(AWS_ACTION, payload={"n": n}).event_id for n in range(3)]
    spooled = spool_path.read_bytes()
    with AuditStore(postgres_url, spool_path=spool_path) as store:
        assert store.replay() == 3
        # The process died after the insert committed and before the spool was emptied: the lines are back.
        spool_path.write_bytes(spooled)
        assert store.replay() == 3
        store.append(AWS_ACTION, payload={"n": 3})
        rows = store.events()
        assert [r.event_id for r in rows][:3] == ids
        assert [r.payload["n"] for r in rows] == [0, 1, 2, 3]
        assert store.verify().message == "4 events, chain intact"
    assert not Spool(spool_path).pending()


def test_replay_while_still_unreachable_keeps_the_spool(spool_path):
    with AuditStore(closed_port_url(), spool_path=spool_path, connect_timeout=2) as away:
        away.append(AWS_ACTION, payload={"n": 0})
        with pytest.raises(OperationalError, match="refused"):
            away.replay()
    assert [r["payload"] for r in Spool(spool_path).records()] == [{"n": 0}]


def test_the_spool_file_is_private(tmp_path):
    spool = Spool(tmp_path / "audit.jsonl")
    spool.add({"n": 0})
    assert Path(spool.path).stat().st_mode & 0o777 == 0o600


def test_a_record_the_store_refuses_is_set_aside_and_does_not_block_the_others(sqlite_url, spool_path, caplog):
    good = {"event_id": "00000000-0000-0000-0000-00000000000a", "time": "2026-05-04T12:00:00+00:00",
            "kind": "aws_action", "actor": "shipflow", "payload": {"n": 1}}
    Spool(spool_path).add({**good, "event_id": "00000000-0000-0000-0000-00000000000b", "kind": "no_such_kind"})
    Spool(spool_path).add(good)
    with AuditStore(sqlite_url, spool_path=spool_path) as store:
        store.migrate()
        assert store.append(AWS_ACTION, payload={"n": 2}).seq == 2
        assert [r.payload["n"] for r in store.events()] == [1, 2]
    rejected = json.loads(spool_path.with_name(spool_path.name + ".rejected").read_text())
    assert rejected["kind"] == "no_such_kind"
    assert "00000000-0000-0000-0000-00000000000b cannot be stored" in caplog.text
