"""What happens at the end of an environment, decided from the states of its tasks.

Pure: the ``decide_outcome`` task gathers the environment's task states and a few XCom facts and
asks ``decide``; tests drive it with tables. The rules:

- every step that should have run succeeded -> promote to the next environment;
- otherwise roll back what this run changed in this environment: the deployment if one was started
  (its id was recorded), the stack if the change set's execution began; nothing changed -> no
  rollback; either way ``fail_release`` then ends the run failed with the reason;
- the reason names the first step that did not succeed (a failed gate, a rejection, a failed deploy,
  an alarm during bake, a failed metric gate).
"""

from __future__ import annotations

from dataclasses import dataclass, field

SUCCESS = "success"
FAILED_STATES = frozenset({"failed", "upstream_failed"})

# Task ids inside an environment's TaskGroup, in the order a release runs them.
STEPS = (
    "check_deployment_window",
    "check_alarms",
    "check_stack_stable",
    "check_artifact_present",
    "check_release_inputs",
    "plan_stack",
    "approve_stack_change",
    "apply_stack",
    "approve_release",
    "deploy",
    "watch_bake",
    "check_service_metrics",
)
WHAT_FAILED = {
    "check_deployment_window": "the deployment window gate failed",
    "check_alarms": "an alarm was in ALARM before the change (pre-check)",
    "check_stack_stable": "the stack was not stable before the change (pre-check)",
    "check_artifact_present": "the artifact is missing (pre-check)",
    "check_release_inputs": "the release inputs failed validation (pre-check)",
    "plan_stack": "the change set could not be created",
    "approve_stack_change": "the stack change was not approved",
    "apply_stack": "the stack update failed",
    "approve_release": "the release was not approved",
    "deploy": "the deployment failed",
    "watch_bake": "an alarm fired during the bake time",
    "check_service_metrics": "the service metrics failed their gate",
}
# Where a release waits (for a window, for approvers) before it changes anything in an environment:
# the points at which a newer release may supersede it (execution_mode: superseded).
SAFE_POINTS = ("check_deployment_window", "approve_stack_change", "approve_release")
APPROVAL_STEPS = ("approve_stack_change", "approve_release")

# An environment's outcome, one word each (the run's result, the CLI's exit code, later metrics).
PROMOTED, ROLLED_BACK, REJECTED, FAILED, SUPERSEDED = "promoted", "rolled_back", "rejected", "failed", "superseded"

PROMOTE = "promote"
ROLLBACK_DEPLOYMENT = "rollback_deployment"
ROLLBACK_STACK = "rollback_stack"
NO_ROLLBACK = "no_rollback"
MANUAL_FALLBACK = "manual_fallback"


@dataclass(frozen=True)
class Outcome:
    next_tasks: list[str]
    reason: str = ""
    failed_step: str | None = None
    rolled_back: list[str] = field(default_factory=list)

    @property
    def promoted(self) -> bool:
        return self.next_tasks == [PROMOTE]


def decide(
    states: dict[str, str | None],
    *,
    expected: list[str],
    deployment_started: bool,
    stack_changed: bool,
    rejected_by: dict[str, str] | None = None,
    automatic: bool = True,
) -> Outcome:
    """Decide from ``states`` (task id -> state) of the environment's ``expected`` steps.

    ``deployment_started``: the deploy task recorded a deployment id (CodeDeploy accepted it).
    ``stack_changed``: the change set's execution began (it failed, or it succeeded with changes).
    ``rejected_by``: approval task id -> who rejected (a rejection skips downstream tasks).
    ``automatic``: the spec's ``rollback.automatic``; without it, what changed is left to a person
    (the manual fallback) instead of the rollback tasks.
    """
    rejected_by = rejected_by or {}
    # The root cause is the first step that failed (or was rejected) itself; only if none did, the
    # first one that could not run because something before it failed.
    failed_step = next((s for s in STEPS if states.get(s) == "failed" or s in rejected_by), None) or next(
        (s for s in STEPS if states.get(s) in FAILED_STATES), None
    )
    if failed_step is None:
        not_done = [s for s in STEPS if s in expected and states.get(s) != SUCCESS]
        if not not_done:
            return Outcome([PROMOTE])
        # Nothing failed, yet something did not run: a skip we did not plan (e.g. cleared by hand).
        failed_step = not_done[0]
        reason = f"{failed_step} did not run (state {states.get(failed_step)})"
    elif failed_step in rejected_by:
        reason = f"{WHAT_FAILED[failed_step]}: rejected by {rejected_by[failed_step]}"
    else:
        reason = WHAT_FAILED[failed_step]

    rollback: list[str] = []
    if "deploy" in expected and deployment_started:
        rollback.append(ROLLBACK_DEPLOYMENT)
    if "apply_stack" in expected and stack_changed:
        rollback.append(ROLLBACK_STACK)
    if rollback and not automatic:
        return Outcome([MANUAL_FALLBACK], reason=reason, failed_step=failed_step)
    return Outcome(rollback or [NO_ROLLBACK], reason=reason, failed_step=failed_step, rolled_back=rollback)


def outcome_name(decision: Outcome, rejected_by: dict[str, str] | None = None) -> str:
    """The one-word outcome of a decided environment (never ``superseded``: that is decided before)."""
    if decision.promoted:
        return PROMOTED
    if decision.failed_step in (rejected_by or {}):
        return ROLLED_BACK if decision.rolled_back else REJECTED
    return ROLLED_BACK if decision.rolled_back else FAILED
