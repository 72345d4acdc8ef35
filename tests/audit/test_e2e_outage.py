"""End to end: the audit store goes away in the middle of a release, and no event is lost.

A live Airflow records to a PostgreSQL audit store through a TCP proxy. While staging deploys, the
proxy is cut (connections refused and reset, as in a network outage); it comes back while production
runs. Events recorded in between wait in the worker's spool and are stored, in order, by the next
event that reaches the store. Afterwards every step that ran has its event and the chain verifies.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from shipflow.audit.recorder import STAGE_KINDS, environment_and_stage
from shipflow.audit.store import AuditStore
from tests.audit.tcp_proxy import TcpProxy
from tests.conftest import running_airflow, upload

pytestmark = pytest.mark.slow

WORKER = "inventory-worker"


@pytest.fixture
def proxied_store(postgres_url):
    target = make_url(postgres_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    try:
        yield proxy, target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    finally:
        proxy.cut()


def test_events_recorded_while_the_store_is_away_are_stored_in_order_afterwards(
    sandbox_process, seeded, tmp_path_factory, proxied_store, tmp_path
):
    proxy, url = proxied_store
    with running_airflow(sandbox_process, tmp_path_factory, name="outage", env={"SHIPFLOW_AUDIT_URL": url}) as stack:
        spool = Path(stack.airflow.env["SHIPFLOW_AUDIT_SPOOL"])
        upload(seeded, WORKER, "2.0.0")
        ci = stack.client("ci")
        dag_id = f"release__{WORKER}"
        ci.wait_for_dag(dag_id, timeout=90)
        run_id = f"outage-{time.time_ns()}"
        conf = {"version": "2.0.0", "commit": "77c0ffe", "change_reference": "CHG-9"}
        ci.trigger_dag(dag_id, conf=conf, run_id=run_id)

        ci.wait_for_task_state(dag_id, run_id, "staging.deploy", {"running", "deferred", "success"}, timeout=180)
        proxy.cut()
        ci.wait_for_task_state(dag_id, run_id, "staging.check_service_metrics", {"success", "failed"}, timeout=180)
        # A task's state is reported before its listener has run: wait for its event in the spool.
        deadline = time.monotonic() + 30
        while True:
            text = spool.read_text() if spool.exists() else ""
            spooled = [json.loads(line) for line in text.splitlines() if line.strip()]
            if {r["stage"] for r in spooled} >= {"deploy", "watch_bake", "check_service_metrics"}:
                break
            assert time.monotonic() < deadline, f"not spooled while the store was away: {spooled}"
            time.sleep(0.5)
        proxy.restore()

        run = ci.wait_for_dag_run(dag_id, run_id, timeout=300)
        assert run["state"] == "success"
        ran = {
            ti["task_id"]
            for ti in ci.task_instances(dag_id, run_id)
            if ti["state"] in ("success", "failed") and environment_and_stage(ti["task_id"])[1] in STAGE_KINDS
        }
        with AuditStore(url, spool_path=tmp_path / "reader.spool") as store:
            deadline = time.monotonic() + 30
            expected = ran - {"staging.decide_outcome", "production.decide_outcome"}
            while True:  # the last task's listener may still be recording when the run is seen finished
                events = store.events(run_id=run_id)
                finished = any(e.kind == "release_finished" for e in events)
                if (finished and {e.task_id for e in events} >= expected) or time.monotonic() > deadline:
                    break
                time.sleep(1)
            verified = store.verify()
        assert verified.ok, verified.message

    recorded = [e.task_id for e in events if e.task_id]
    # decide_outcome is an event only when it rolls back: this release promoted everywhere.
    assert set(recorded) == expected
    # Per try and state, once. A try can have two events when Airflow itself reported two states for it:
    # apache/airflow #72716, the scheduler fails a try (recorded from the scheduler) that the worker ends.
    tries = [(e.task_id, e.try_number, e.payload.get("state")) for e in events if e.task_id]
    assert len(tries) == len(set(tries)), "an event was stored twice"
    assert events[0].kind == "release_requested" and [e.kind for e in events].count("release_finished") == 1
    # Stored in the order they happened: the spooled ones came in first, still in their order.
    times = [e.time for e in events if e.task_id]
    assert times == sorted(times)
    spooled_ids = [r["event_id"] for r in spooled]
    assert [str(e.event_id) for e in events if str(e.event_id) in set(spooled_ids)] == spooled_ids
    assert spool.read_text() == ""
