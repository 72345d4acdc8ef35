"""The end-of-environment decision: promote, roll back what changed, or fail with the root cause."""

from __future__ import annotations

import pytest

from shipflow.release.outcome import decide

FULL = [
    "check_alarms",
    "check_artifact_present",
    "check_release_inputs",
    "plan_stack",
    "apply_stack",
    "approve_release",
    "deploy",
    "watch_bake",
    "check_service_metrics",
]


def states(**overrides: str) -> dict[str, str]:
    base = {step: "success" for step in FULL}
    base["approve_stack_change"] = "skipped"  # not needed: no risky change
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    "overrides, deployment_started, stack_changed, rejected, next_tasks, reason",
    [
        ({}, True, True, {}, ["promote"], ""),
        (
            {"deploy": "failed", "watch_bake": "upstream_failed", "check_service_metrics": "upstream_failed"},
            True,
            True,
            {},
            ["rollback_deployment", "rollback_stack"],
            "the deployment failed",
        ),
        (
            {"watch_bake": "failed", "check_service_metrics": "upstream_failed"},
            True,
            False,
            {},
            ["rollback_deployment"],
            "an alarm fired during the bake time",
        ),
        ({"check_service_metrics": "failed"}, True, True, {}, ["rollback_deployment", "rollback_stack"],
         "the service metrics failed their gate"),
        (
            {"check_alarms": "failed", **{s: "upstream_failed" for s in FULL[1:]}},
            False,
            False,
            {},
            ["no_rollback"],
            "an alarm was in ALARM before the change (pre-check)",
        ),
        (
            {"apply_stack": "failed", **{s: "upstream_failed" for s in FULL[5:]}},
            False,
            True,
            {},
            ["rollback_stack"],
            "the stack update failed",
        ),
        (
            {"deploy": "skipped", "watch_bake": "skipped", "check_service_metrics": "skipped"},
            False,
            True,
            {"approve_release": "approver1"},
            ["rollback_stack"],
            "the release was not approved: rejected by approver1",
        ),
    ],
)
def test_decide(overrides, deployment_started, stack_changed, rejected, next_tasks, reason):
    outcome = decide(
        states(**overrides),
        expected=FULL,
        deployment_started=deployment_started,
        stack_changed=stack_changed,
        rejected_by=rejected,
    )
    assert outcome.next_tasks == next_tasks
    assert outcome.reason == reason
    assert outcome.promoted is (next_tasks == ["promote"])


def test_an_unplanned_skip_does_not_promote():
    outcome = decide(
        states(check_service_metrics="skipped"), expected=FULL, deployment_started=True, stack_changed=False
    )
    assert outcome.next_tasks == ["rollback_deployment"]
    assert outcome.reason == "check_service_metrics did not run (state skipped)"


def test_a_timed_out_stack_approval_is_the_root_cause_not_the_apply():
    outcome = decide(
        states(approve_stack_change="failed", apply_stack="upstream_failed", deploy="upstream_failed"),
        expected=FULL,
        deployment_started=False,
        stack_changed=False,
    )
    assert outcome.failed_step == "approve_stack_change" and outcome.next_tasks == ["no_rollback"]


def test_without_automatic_rollback_a_person_restores_what_changed():
    failed = states(deploy="failed", watch_bake="upstream_failed", check_service_metrics="upstream_failed")
    outcome = decide(failed, expected=FULL, deployment_started=True, stack_changed=False, automatic=False)
    assert outcome.next_tasks == ["manual_fallback"] and outcome.rolled_back == []
    nothing_changed = decide(failed, expected=FULL, deployment_started=False, stack_changed=False, automatic=False)
    assert nothing_changed.next_tasks == ["no_rollback"]
