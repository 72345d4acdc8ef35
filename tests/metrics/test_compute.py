"""The release metrics of a fixed history (history.yaml), computed by hand, on SQLite and PostgreSQL.

Days: D1 = 2026-03-02, D2 = 03-03, D3 = 03-04 (UTC); a day's rows have window_end = the next
midnight (END1, END2, END3). "#n" names an event of history.yaml; oN / sN a release (run).
Percentiles are nearest-rank: the value at rank ceil(p/100 * n) of the n sorted samples.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from shipflow import metrics as m
from shipflow.audit.store import AuditStore
from shipflow.metrics import compute as compute_module
from shipflow.metrics.compute import compute, day_ends, production_environments
from shipflow.metrics.models import ReleaseMetric
from tests.metrics.conftest import D1, END3, append, read_metrics

END1, END2 = D1 + timedelta(days=1), D1 + timedelta(days=2)
table = ReleaseMetric.__table__


def get(rows, metric, *, end=END1, window=m.DAY, service="orders", environment="*", dimension=""):
    """(value, samples) of one row, or None when it is not stored."""
    return rows.get((window, end, service, environment, metric, dimension))


def stats(rows, metric, **where):
    """(p50, p90, max, samples) of a distribution."""
    found = [get(rows, m.stored_name(metric, s), **where) for s in m.STATISTICS]
    if None in found:
        return None
    return found[0][0], found[1][0], found[2][0], found[0][1]


def test_production_is_the_last_environment_each_service_reaches(history_store):
    with history_store.engine.connect() as conn:
        # orders: o1 enters staging (#2, 09:01) before production (#4, 09:30). search: s2 enters staging
        # (#51a) before live (#49); "live" is named by no rule, only by the order the trail shows.
        assert production_environments(conn) == {"orders": "production", "search": "live"}


def test_release_duration_and_its_split_into_waiting_and_active_time(computed):
    # D1 orders: o1 2400 s, o2 3000 s. n=2: p50 = rank 1, p90 = rank ceil(1.8) = 2.
    assert stats(computed, m.RELEASE_DURATION) == (2400, 3000, 3000, 2)
    # Waiting: o1 = window gate #2 60 + approval #4 600 = 660; o2 = approval #11 1200 (no window gate).
    assert stats(computed, m.RELEASE_WAITING) == (660, 1200, 1200, 2)
    # Active = duration - waiting: o1 2400 - 660 = 1740; o2 3000 - 1200 = 1800.
    assert stats(computed, m.RELEASE_ACTIVE) == (1740, 1800, 1800, 2)
    # search D1: s1 3900 s, of which 3600 s waiting for an approval that timed out (#46).
    assert stats(computed, m.RELEASE_WAITING, service="search") == (3600, 3600, 3600, 1)
    assert stats(computed, m.RELEASE_ACTIVE, service="search") == (300, 300, 300, 1)
    # 7 days to END3, orders: o1 2400, o2 3000, o3 3600, o5 1200, o6 1800 (its rerun: the last finish,
    # #37), o7 3000; not o4 (superseded), not o8 (running). Sorted 1200 1800 2400 3000 3000 3600:
    # p50 = rank 3 = 2400, p90 = rank ceil(5.4) = 6 = 3600.
    assert stats(computed, m.RELEASE_DURATION, window=m.WEEK, end=END3) == (2400, 3600, 3600, 6)
    # Waiting: o1 660, o2 1200, o3 900 (#20), o5 0, o6 0 (#33 is no wait; its rerun waited for
    # nothing), o7 0 -> 0 0 0 660 900 1200: p50 = rank 3 = 0, p90 = rank 6 = 1200.
    assert stats(computed, m.RELEASE_WAITING, window=m.WEEK, end=END3) == (0, 1200, 1200, 6)
    # Active: 1740 1800 2700 1200 1800 3000 -> 1200 1740 1800 1800 2700 3000: p50 1800, p90 3000.
    assert stats(computed, m.RELEASE_ACTIVE, window=m.WEEK, end=END3) == (1800, 3000, 3000, 6)
    # Release-level metrics have no per-environment rows.
    assert stats(computed, m.RELEASE_DURATION, environment="production") is None


def test_stage_and_task_kind_durations_count_each_try(computed):
    # D1 orders deploy tries: #3 120, #5 300, #9 30 (failed), #10 90 (its retry), #12 100
    # -> 30 90 100 120 300: p50 = rank 3 = 100, p90 = rank ceil(4.5) = 5 = 300.
    assert stats(computed, m.STAGE_DURATION, dimension="deploy") == (100, 300, 300, 5)
    # staging only: #3 120, #9 30, #10 90 -> 30 90 120: p50 = rank 2 = 90, p90 = rank 3 = 120.
    assert stats(computed, m.STAGE_DURATION, environment="staging", dimension="deploy") == (90, 120, 120, 3)
    # Task kind aws_action: the deploys and #15 rollback_deployment 50 -> 30 50 90 100 120 300:
    # p50 = rank 3 = 90, p90 = rank ceil(5.4) = 6 = 300.
    assert stats(computed, m.TASK_DURATION, dimension="aws_action") == (90, 300, 300, 6)
    # decide_outcome's rollback event (#14) is a decision record, not a try.
    assert stats(computed, m.STAGE_DURATION, dimension="decide_outcome") is None
    # rollback tries: #16 20, #17 30 -> p50 20, p90 30.
    assert stats(computed, m.TASK_DURATION, dimension="rollback") == (20, 30, 30, 2)
    # D2: o4's skipped window gate (#25, superseded) is not a try; o3's passed gate (#20) is.
    assert stats(computed, m.STAGE_DURATION, end=END2, dimension="check_deployment_window") == (900, 900, 900, 1)
    # ... but o4's staging deploy (#24) ran: D2 deploys #21 600, #24 60, #30 300, #33 120 -> 60 120 300 600.
    assert stats(computed, m.STAGE_DURATION, end=END2, dimension="deploy") == (120, 600, 600, 4)


def test_approval_wait(computed):
    # D1 orders: #4 600, #11 1200 (both production.approve_release).
    assert stats(computed, m.APPROVAL_WAIT) == (600, 1200, 1200, 2)
    assert stats(computed, m.APPROVAL_WAIT, environment="production", dimension="approve_release") == (
        600, 1200, 1200, 2)
    # search D1: a timed-out approval waited too (#46: 3600 s).
    assert stats(computed, m.APPROVAL_WAIT, service="search", dimension="approve_stack_change") == (
        3600, 3600, 3600, 1)


def test_task_failure_rate_counts_every_try(computed):
    # D1 orders tries (#14 is not one): #2 #3 #4 #5 #8 #9 #10 #11 #12 #13 #15 #16 #17 = 13;
    # failed #9 (deploy try 1), #13 (watch_bake), #16 (verify_rollback try 1) = 3.
    assert get(computed, m.TASK_FAILURE_RATE) == (3 / 13, 13)
    # staging: #2 #3 #8 #9 #10, failed #9 -> 1/5. production: 8 tries, failed #13 #16 -> 2/8.
    assert get(computed, m.TASK_FAILURE_RATE, environment="staging") == (1 / 5, 5)
    assert get(computed, m.TASK_FAILURE_RATE, environment="production") == (2 / 8, 8)
    # By stage: deploy #3 #5 #9 #10 #12, failed #9 -> 1/5; a retried stage counts both tries.
    assert get(computed, m.TASK_FAILURE_RATE, dimension="deploy") == (1 / 5, 5)
    # D2 orders: #20 #21 #24 #28 #30 #33 (not #25, skipped), failed #28 #33 -> 2/6.
    assert get(computed, m.TASK_FAILURE_RATE, end=END2) == (2 / 6, 6)
    # D3 orders: #36 #39 #40 and o8's #43, still running at the end of the day, failed #39 -> 1/4.
    assert get(computed, m.TASK_FAILURE_RATE, end=END3) == (1 / 4, 4)
    # 7 days to END3: 13 + 6 + 4 = 23 tries, 3 + 2 + 1 = 6 failed.
    assert get(computed, m.TASK_FAILURE_RATE, window=m.WEEK, end=END3) == (6 / 23, 23)
    # search D3: #54 #55 #57 #58, failed #55 #57 #58 -> 3/4.
    assert get(computed, m.TASK_FAILURE_RATE, end=END3, service="search", environment="live") == (3 / 4, 4)


def test_aws_call_failure_rate_counts_each_call_in_an_actions_result(computed):
    # D1 orders calls: #3 2 ok; #5 3, one HTTP 429 with no error code (failed by its status);
    # #9 1 HTTP 500 InternalFailure (failed); #10 1; #12 1 (its "not-a-call" entry is not a call); #15 2.
    # 2 + 3 + 1 + 1 + 1 + 2 = 10 calls, 2 failed.
    assert get(computed, m.AWS_CALL_FAILURE_RATE) == (2 / 10, 10)
    # staging #3 #9 #10: 4 calls, 1 failed. production #5 #12 #15: 6 calls, 1 failed.
    assert get(computed, m.AWS_CALL_FAILURE_RATE, environment="staging") == (1 / 4, 4)
    assert get(computed, m.AWS_CALL_FAILURE_RATE, environment="production") == (1 / 6, 6)
    assert get(computed, m.AWS_CALL_FAILURE_RATE, dimension="rollback_deployment") == (0 / 2, 2)
    # D2 orders: #21 #24 #30 ok, #33 HTTP 0 with an error (EndpointConnectionError) -> 1/4.
    assert get(computed, m.AWS_CALL_FAILURE_RATE, end=END2) == (1 / 4, 4)
    # D3 orders: #36 ok, #39 HTTP 400 -> 1/2; #43's result was cut (truncated): no calls to count.
    assert get(computed, m.AWS_CALL_FAILURE_RATE, end=END3) == (1 / 2, 2)


def test_gate_failures_by_gate(computed):
    # D1 orders gates: #2 check_deployment_window passed, #8 check_alarms passed, #13 watch_bake failed.
    assert get(computed, m.GATE_FAILURES) == (1, 3)
    assert get(computed, m.GATE_FAILURE_RATE) == (1 / 3, 3)
    assert get(computed, m.GATE_FAILURES, dimension="watch_bake") == (1, 1)
    assert get(computed, m.GATE_FAILURES, dimension="check_alarms") == (0, 1)
    assert get(computed, m.GATE_FAILURE_RATE, environment="production", dimension="watch_bake") == (1.0, 1)
    assert get(computed, m.GATE_FAILURES, environment="staging") == (0, 2)
    # D2 orders: #20 passed, #28 failed; #25 skipped (superseded) is no decision.
    assert get(computed, m.GATE_FAILURE_RATE, end=END2) == (1 / 2, 2)
    assert get(computed, m.GATE_FAILURE_RATE, end=END2, dimension="check_alarms") == (1.0, 1)


def test_rollback_success_rate_takes_each_rollbacks_last_verification(computed):
    # o2: #16 not verified, then its retry #17 verified -> one rollback, verified.
    assert get(computed, m.ROLLBACK_SUCCESS_RATE) == (1.0, 1)
    assert get(computed, m.ROLLBACK_SUCCESS_RATE, environment="production") == (1.0, 1)
    # s3: #58 not verified.
    assert get(computed, m.ROLLBACK_SUCCESS_RATE, end=END3, service="search", environment="live") == (0.0, 1)
    # No rollback in search's D2: a rate of nothing is not stored.
    assert get(computed, m.ROLLBACK_SUCCESS_RATE, end=END2, service="search") is None


def test_releases_leave_out_superseded_and_running_runs(computed):
    assert get(computed, m.RELEASES) == (2, 2)  # o1, o2
    # D2: o3, o5 (partial: staging only), o6 (failed, #34); o4 was superseded: not a release attempt.
    assert get(computed, m.RELEASES, end=END2) == (3, 3)
    # D3: o6 (its rerun finished, #37), o7; o8 finished after the day ended.
    assert get(computed, m.RELEASES, end=END3) == (2, 2)
    # 7 days to END3: o1 o2 o3 o5 o6 o7 -- o6 once, as it last finished.
    assert get(computed, m.RELEASES, window=m.WEEK, end=END3) == (6, 6)
    # 7 days to END2, as the trail stood then: o1 o2 o3 o5 o6.
    assert get(computed, m.RELEASES, window=m.WEEK, end=END2) == (5, 5)


def test_manual_fallback_frequency_and_interventions_per_100_releases(computed):
    kinds = {kind: 0.0 for kind in m.INTERVENTION_KINDS}
    # D1: nobody stepped in.
    assert get(computed, m.MANUAL_FALLBACK_FREQUENCY) == (0.0, 2)
    assert {k: get(computed, m.INTERVENTIONS_PER_100_RELEASES, dimension=k)[0] for k in kinds} == kinds
    # D2 orders: alice marked a task of o5 (#29): 1 release of 3 -> 1/3; 100 * 1/3 mark_task per 100.
    # bob's clear of o6 (#35) came on D3: not yet.
    assert get(computed, m.MANUAL_FALLBACK_FREQUENCY, end=END2) == (1 / 3, 3)
    assert get(computed, m.INTERVENTIONS_PER_100_RELEASES, end=END2, dimension=m.TASK_MARKED) == (100 / 3, 3)
    assert get(computed, m.INTERVENTIONS_PER_100_RELEASES, end=END2, dimension=m.CLEAR) == (0.0, 3)
    # D2 search: s2's window override (#50) is an intervention, but not a manual fallback.
    assert get(computed, m.MANUAL_FALLBACK_FREQUENCY, end=END2, service="search") == (0.0, 1)
    assert get(computed, m.INTERVENTIONS_PER_100_RELEASES, end=END2, service="search",
               dimension=m.WINDOW_OVERRIDE) == (100.0, 1)
    # D3 orders: o6 was cleared by bob (#35), o7 restored by carol's fallback step (#40): 2 of 2.
    assert get(computed, m.MANUAL_FALLBACK_FREQUENCY, end=END3) == (1.0, 2)
    assert get(computed, m.INTERVENTIONS_PER_100_RELEASES, end=END3, dimension=m.CLEAR) == (50.0, 2)
    assert get(computed, m.INTERVENTIONS_PER_100_RELEASES, end=END3, dimension=m.FALLBACK_STEP) == (50.0, 2)
    assert get(computed, m.INTERVENTIONS_PER_100_RELEASES, end=END3) == (100.0, 2)
    # D3 search: erin failed s3 by hand (#60, a second after its end was recorded).
    assert get(computed, m.INTERVENTIONS_PER_100_RELEASES, end=END3, service="search",
               dimension=m.RUN_FAILED_BY_HAND) == (100.0, 1)
    assert get(computed, m.MANUAL_FALLBACK_FREQUENCY, end=END3, service="search") == (1.0, 1)
    # 7 days to END3, orders: o5, o6, o7 of 6 releases -> 0.5; one each of mark_task, clear, fallback
    # -> 100 / 6 each, 300 / 6 = 50 in all.
    week = {"window": m.WEEK, "end": END3}
    assert get(computed, m.MANUAL_FALLBACK_FREQUENCY, **week) == (0.5, 6)
    for kind in (m.TASK_MARKED, m.CLEAR, m.FALLBACK_STEP):
        assert get(computed, m.INTERVENTIONS_PER_100_RELEASES, dimension=kind, **week) == (100 / 6, 6)
    assert get(computed, m.INTERVENTIONS_PER_100_RELEASES, **week) == (50.0, 6)
    # search: s3 of 3 -> 1/3; the override and the run failed by hand -> 100 / 3 each.
    assert get(computed, m.MANUAL_FALLBACK_FREQUENCY, service="search", **week) == (1 / 3, 3)
    assert get(computed, m.INTERVENTIONS_PER_100_RELEASES, service="search", **week) == (200 / 3, 3)


def test_deployment_frequency_and_change_failure_rate_in_production(computed):
    # D1 orders: o1 promoted, o2 rolled back in production -> 1 deployment a day; 1 failure of 2.
    assert get(computed, m.DEPLOYMENT_FREQUENCY) == (1.0, 1)
    assert get(computed, m.CHANGE_FAILURE_RATE) == (0.5, 2)
    # D1 search: s1 stopped in staging (rejected): no production release, so no failure rate stored.
    assert get(computed, m.DEPLOYMENT_FREQUENCY, service="search") == (0.0, 0)
    assert get(computed, m.CHANGE_FAILURE_RATE, service="search") is None
    # D2 orders: o3 promoted, o6 failed (#34); o4 superseded and o5 partial did not enter production.
    assert get(computed, m.DEPLOYMENT_FREQUENCY, end=END2) == (1.0, 1)
    assert get(computed, m.CHANGE_FAILURE_RATE, end=END2) == (0.5, 2)
    # D3 orders: o6's rerun promoted (#37), o7 failed.
    assert get(computed, m.CHANGE_FAILURE_RATE, end=END3) == (0.5, 2)
    # D3 search: s3 rolled back in live.
    assert get(computed, m.CHANGE_FAILURE_RATE, end=END3, service="search") == (1.0, 1)
    # 7 days to END3, orders: promoted o1 o3 o6 = 3 in 7 days; entered o1 o2 o3 o6 o7, failed o2 o7.
    assert get(computed, m.DEPLOYMENT_FREQUENCY, window=m.WEEK, end=END3) == (3 / 7, 3)
    assert get(computed, m.CHANGE_FAILURE_RATE, window=m.WEEK, end=END3) == (2 / 5, 5)
    # 30 days to END3, search: s2 promoted -> 1/30 a day.
    assert get(computed, m.DEPLOYMENT_FREQUENCY, window=m.MONTH, end=END3, service="search") == (1 / 30, 1)
    # DORA metrics are the service's: no per-environment rows.
    assert get(computed, m.DEPLOYMENT_FREQUENCY, environment="production") is None


def test_lead_time_for_changes_from_the_commit_or_the_request(computed):
    # o1: commit 08:00:00.5Z, promoted 09:40 -> 5999.5 s.
    assert stats(computed, m.LEAD_TIME_FOR_CHANGES) == (5999.5, 5999.5, 5999.5, 1)
    # o3: commit 2026-03-02T20:00+01:00 = D1 19:00Z, promoted D2 09:00 -> 14 h = 50400 s.
    assert stats(computed, m.LEAD_TIME_FOR_CHANGES, end=END2) == (50400, 50400, 50400, 1)
    # s2: its commit_time names Feb 30: the request (D2 09:00) stands in; promoted 10:00 -> 3600 s.
    assert stats(computed, m.LEAD_TIME_FOR_CHANGES, end=END2, service="search") == (3600, 3600, 3600, 1)
    # o6: commit 2026-03-03T20:00 (no offset: UTC), promoted by its rerun D3 08:30 -> 12.5 h = 45000 s.
    assert stats(computed, m.LEAD_TIME_FOR_CHANGES, end=END3) == (45000, 45000, 45000, 1)
    # 7 days to END3: 5999.5 45000 50400 -> p50 = rank 2 = 45000, p90 = rank 3 = 50400.
    assert stats(computed, m.LEAD_TIME_FOR_CHANGES, window=m.WEEK, end=END3) == (45000, 50400, 50400, 3)


def test_time_to_restore_from_the_first_production_failure_to_the_next_promotion(computed):
    # D1: o2 failed at 12:50 and nothing was promoted after it that day: no restore yet.
    assert stats(computed, m.TIME_TO_RESTORE) is None
    # D2: o3 promoted at 09:00 after o2's failure (D1 12:50) -> 20 h 10 min = 72600 s.
    assert stats(computed, m.TIME_TO_RESTORE, end=END2) == (72600, 72600, 72600, 1)
    # D3: o6 failed at D2 23:00 (#34); its own rerun promoted at D3 08:30 (#37) -> 9.5 h = 34200 s.
    # o7's failure (D3 14:50) is not restored yet; search's s3 never is here.
    assert stats(computed, m.TIME_TO_RESTORE, end=END3) == (34200, 34200, 34200, 1)
    assert stats(computed, m.TIME_TO_RESTORE, end=END3, service="search") is None
    # 7 days to END3: 34200 72600 -> p50 = rank 1 = 34200, p90 = rank 2 = 72600.
    assert stats(computed, m.TIME_TO_RESTORE, window=m.WEEK, end=END3) == (34200, 72600, 72600, 2)


def test_no_value_is_null_and_every_name_is_in_the_contract(computed):
    assert computed and all(value is not None for value, _ in computed.values())
    assert {key[4] for key in computed} <= m.METRIC_NAMES
    assert {key[0] for key in computed} == {m.DAY, m.WEEK, m.MONTH}
    assert {key[1] for key in computed} == {END1, END2, END3}


def test_a_rerun_of_an_interval_replaces_its_rows(history_store):
    first = compute(history_store.engine, D1, END3)
    before = read_metrics(history_store)
    second = compute(history_store.engine, D1, END3)
    assert first == second == len(before)
    assert read_metrics(history_store) == before


def test_a_changed_history_is_taken_in_when_its_days_are_computed_again(history_store):
    compute(history_store.engine, D1, END3)
    before = read_metrics(history_store, with_computed_at=True)
    # A release finished on D2 reaches the store late (replayed from a spool): o9, promoted.
    for event in (
        {"at": datetime(2026, 3, 3, 15), "kind": "release_requested", "service": "orders", "run": "o9"},
        {"at": datetime(2026, 3, 3, 16), "kind": "release_finished", "service": "orders", "run": "o9",
         "payload": {"state": "success", "duration_seconds": 3600,
                     "outcomes": {"staging": {"outcome": "promoted"}, "production": {"outcome": "promoted"}}}},
    ):
        append(history_store, event)
    compute(history_store.engine, END1, END2)  # D2 only
    after = read_metrics(history_store, with_computed_at=True)
    # D2: o3 o5 o6 o9 -> 4 releases; promoted o3 o9 of entered o3 o6 o9.
    assert get(after, m.RELEASES, end=END2)[:2] == (4, 4)
    assert get(after, m.CHANGE_FAILURE_RATE, end=END2)[:2] == (1 / 3, 3)
    # D1's and D3's rows were not touched (D3's now lag behind: it is recomputed when asked for).
    assert {k: v for k, v in after.items() if k[1] != END2} == {k: v for k, v in before.items() if k[1] != END2}
    assert get(after, m.RELEASES, window=m.WEEK, end=END3) == get(before, m.RELEASES, window=m.WEEK, end=END3)


def test_computing_day_2_leaves_day_1_untouched(history_store):
    assert compute(history_store.engine, D1, END1) > 0
    day_1 = read_metrics(history_store, with_computed_at=True)
    assert {key[1] for key in day_1} == {END1}
    compute(history_store.engine, END1, END2)
    both = read_metrics(history_store, with_computed_at=True)
    assert {key[1] for key in both} == {END1, END2}
    assert {k: v for k, v in both.items() if k[1] == END1} == day_1


def test_a_failed_write_leaves_the_previous_rows(history_store, monkeypatch):
    compute(history_store.engine, D1, END3)
    before = read_metrics(history_store, with_computed_at=True)
    real_measure = compute_module.measure

    def measure_twice(conn, windows, production):  # every row twice: the insert fails on the primary key
        rows = real_measure(conn, windows, production)
        return rows + list(rows)

    monkeypatch.setattr(compute_module, "measure", measure_twice)
    monkeypatch.setattr(compute_module, "INSERT_CHUNK", 5)  # the duplicates come chunks after the first rows
    with pytest.raises(IntegrityError):
        compute(history_store.engine, D1, END3)
    assert read_metrics(history_store, with_computed_at=True) == before  # the delete was rolled back with it


def test_rows_written_in_many_insert_chunks_are_the_same_rows(history_store, monkeypatch):
    compute(history_store.engine, D1, END3)
    whole = read_metrics(history_store)
    monkeypatch.setattr(compute_module, "INSERT_CHUNK", 3)
    assert compute(history_store.engine, D1, END3) == len(whole)
    assert read_metrics(history_store) == whole


def test_an_hourly_interval_writes_a_day_only_once_it_has_ended(history_store):
    hour = timedelta(hours=1)
    assert compute(history_store.engine, END2 - 14 * hour, END2 - 13 * hour) == 0  # D2 10:00-11:00
    assert read_metrics(history_store) == {}
    assert compute(history_store.engine, END2 - hour, END2) > 0  # D2 23:00-00:00: D2 has ended
    assert {key[1] for key in read_metrics(history_store)} == {END2}


def test_compute_in_the_callers_transaction(history_store):
    with history_store.engine.connect() as conn:
        with conn.begin() as transaction:
            assert compute(conn, D1, END1) > 0
            assert conn.execute(select(table.c.metric)).first() is not None
            transaction.rollback()
    assert read_metrics(history_store) == {}


def test_an_outcome_may_be_the_bare_word(empty_store):
    for event in (
        {"at": datetime(2026, 3, 2, 9), "kind": "release_requested", "service": "orders", "run": "w1"},
        {"at": datetime(2026, 3, 2, 9, 10), "kind": "aws_action", "service": "orders", "run": "w1",
         "task": "production.deploy", "try": 1, "payload": {"state": "success", "duration_seconds": 60}},
        {"at": datetime(2026, 3, 2, 10), "kind": "release_finished", "service": "orders", "run": "w1",
         "payload": {"state": "success", "duration_seconds": 3600, "outcomes": {"production": "promoted"}}},
    ):
        append(empty_store, event)
    compute(empty_store.engine, D1, END1)
    rows = read_metrics(empty_store)
    assert get(rows, m.DEPLOYMENT_FREQUENCY) == (1.0, 1)
    assert stats(rows, m.LEAD_TIME_FOR_CHANGES) == (3600, 3600, 3600, 1)  # no commit_time: from the request


def test_production_given_from_the_specs_wins_over_the_trail(history_store):
    # Were search's production "staging", s2 (promoted there on D2) would be its deployment of D2,
    # and s1 (rejected in staging on D1) a production release entered without failure.
    compute(history_store.engine, D1, END3, production={"search": "staging"})
    rows = read_metrics(history_store)
    assert get(rows, m.CHANGE_FAILURE_RATE, service="search") == (0.0, 1)
    assert get(rows, m.DEPLOYMENT_FREQUENCY, end=END2, service="search") == (1.0, 1)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (datetime(2026, 3, 2, 10), datetime(2026, 3, 2, 11), []),
        (datetime(2026, 3, 2, 23), datetime(2026, 3, 3), [datetime(2026, 3, 3, tzinfo=UTC)]),
        (datetime(2026, 3, 3), datetime(2026, 3, 4), [datetime(2026, 3, 4, tzinfo=UTC)]),  # start excluded
        (datetime(2026, 3, 2, 12), datetime(2026, 3, 4, 12), [datetime(2026, 3, 3, tzinfo=UTC),
                                                              datetime(2026, 3, 4, tzinfo=UTC)]),
        (datetime(2026, 3, 3, 1, tzinfo=UTC), datetime(2026, 3, 3, 1, tzinfo=UTC), []),
    ],
)
def test_day_ends_are_the_utc_midnights_an_interval_completes(start, end, expected):
    assert day_ends(start, end) == expected


def test_day_ends_read_other_time_zones_in_utc():
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")  # UTC+1 in March
    # 00:30 in Berlin on 03-03 is 23:30 UTC on 03-02: the UTC day 03-02 has not ended yet.
    assert day_ends(datetime(2026, 3, 2, 20, tzinfo=berlin), datetime(2026, 3, 3, 0, 30, tzinfo=berlin)) == []


def test_an_interval_that_ends_before_it_starts_is_refused():
    with pytest.raises(ValueError, match=r"metrics interval ends before it starts"):
        day_ends(datetime(2026, 3, 3), datetime(2026, 3, 2))


def test_postgres_reads_without_nested_loops_and_leaves_the_callers_session_alone(postgres_url, tmp_path, monkeypatch):
    """The read transaction's planner settings (a nested loop once grew a PostgreSQL backend until the
    kernel killed it: docs/metrics.md "Cost") hold while the events are read, and only then."""
    seen = []
    real_measure = compute_module.measure

    def measure_and_look(conn, windows, production):
        seen.append({name: conn.exec_driver_sql(f"SHOW {name}").scalar_one() for name in ("enable_nestloop", "jit")})
        return real_measure(conn, windows, production)

    monkeypatch.setattr(compute_module, "measure", measure_and_look)
    with AuditStore(postgres_url, spool_path=tmp_path / "spool.jsonl") as store:
        with store.engine.begin() as conn:
            conn.execute(ReleaseMetric.__table__.delete())
        append(store, {"kind": "release_requested", "service": "x", "run": "r1", "at": D1 + timedelta(hours=1)})
        compute(store.engine, D1, END3)  # an engine: compute's own transactions
        with store.engine.connect() as conn:  # a connection not in a transaction: compute begins one
            before = [conn.exec_driver_sql(f"SHOW {name}").scalar_one() for name in ("enable_nestloop", "jit")]
            conn.rollback()
            compute(conn, D1, END3)
            assert [conn.exec_driver_sql(f"SHOW {name}").scalar_one() for name in ("enable_nestloop", "jit")] == before
    assert before[0] == "on"  # the server's default, which the read transaction turns off
    assert len(seen) == 2 and all(s == {"enable_nestloop": "off", "jit": "off"} for s in seen), seen
