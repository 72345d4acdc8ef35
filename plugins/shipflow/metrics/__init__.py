"""Release metrics computed from the audit trail: execution time, error rates, manual fallbacks, DORA.

``compute(bind, start, end)`` (in ``shipflow.metrics.compute``) reads ``audit_event`` with
set-based SQL and writes one row per (window, window end, service, environment, metric, dimension)
to ``release_metric`` (``shipflow.metrics.models``), in the audit store's own database. The
definitions, with their formulas and edge cases, are written once, in docs/metrics.md; the names
below are the contract that the DAG, the data-quality gate, CloudWatch publishing and the CLI read.

Importing this package is cheap: no SQLAlchemy until ``models`` or ``compute`` is imported.
"""

from __future__ import annotations

from datetime import timedelta

# -- windows: a day (UTC calendar day) and the rolling 7 and 30 days ending with it ---------------
DAY, WEEK, MONTH = "day", "7d", "30d"
WINDOWS: dict[str, timedelta] = {DAY: timedelta(days=1), WEEK: timedelta(days=7), MONTH: timedelta(days=30)}

# The environment of a row that covers every environment of the service (and release-level metrics).
ALL_ENVIRONMENTS = "*"
# The dimension of a row that is not broken down (by stage, gate, task kind or intervention kind).
NO_DIMENSION = ""

# -- statistics of a distribution: stored as "<metric>_<statistic>" --------------------------------
P50, P90, MAX = "p50", "p90", "max"
STATISTICS = (P50, P90, MAX)
PERCENTILES = {P50: 50, P90: 90}

# -- execution time (seconds; each stored as _p50, _p90, _max) --------------------------------------
RELEASE_DURATION = "release_duration_seconds"
RELEASE_ACTIVE = "release_active_seconds"
RELEASE_WAITING = "release_waiting_seconds"
STAGE_DURATION = "stage_duration_seconds"  # dimension: stage
TASK_DURATION = "task_duration_seconds"  # dimension: task kind (the audit event kind)
APPROVAL_WAIT = "approval_wait_seconds"  # dimension: "" or the approval stage
LEAD_TIME_FOR_CHANGES = "lead_time_for_changes_seconds"
TIME_TO_RESTORE = "time_to_restore_seconds"
DISTRIBUTIONS = (
    RELEASE_DURATION,
    RELEASE_ACTIVE,
    RELEASE_WAITING,
    STAGE_DURATION,
    TASK_DURATION,
    APPROVAL_WAIT,
    LEAD_TIME_FOR_CHANGES,
    TIME_TO_RESTORE,
)

# -- counts and rates -------------------------------------------------------------------------------
RELEASES = "releases"
TASK_FAILURE_RATE = "task_failure_rate"  # dimension: "" or stage
AWS_CALL_FAILURE_RATE = "aws_call_failure_rate"  # dimension: "" or stage
GATE_FAILURES = "gate_failures"  # dimension: "" or gate
GATE_FAILURE_RATE = "gate_failure_rate"  # dimension: "" or gate
ROLLBACK_SUCCESS_RATE = "rollback_success_rate"
MANUAL_FALLBACK_FREQUENCY = "manual_fallback_frequency"
INTERVENTIONS_PER_100_RELEASES = "interventions_per_100_releases"  # dimension: "" or intervention kind
DEPLOYMENT_FREQUENCY = "deployment_frequency"
CHANGE_FAILURE_RATE = "change_failure_rate"
SCALARS = (
    RELEASES,
    TASK_FAILURE_RATE,
    AWS_CALL_FAILURE_RATE,
    GATE_FAILURES,
    GATE_FAILURE_RATE,
    ROLLBACK_SUCCESS_RATE,
    MANUAL_FALLBACK_FREQUENCY,
    INTERVENTIONS_PER_100_RELEASES,
    DEPLOYMENT_FREQUENCY,
    CHANGE_FAILURE_RATE,
)

# -- kinds of manual intervention (the dimension of interventions_per_100_releases) -----------------
FALLBACK_STEP = "manual_fallback"
TASK_MARKED = "mark_task"
CLEAR = "clear"
RUN_FAILED_BY_HAND = "run_failed_by_hand"
RUN_MARKED = "mark_run"
WINDOW_OVERRIDE = "window_override"
OTHER_INTERVENTION = "other"
INTERVENTION_KINDS = (FALLBACK_STEP, TASK_MARKED, CLEAR, RUN_FAILED_BY_HAND, RUN_MARKED, WINDOW_OVERRIDE)


def stored_name(metric: str, statistic: str) -> str:
    """The stored name of a distribution's statistic: ``stored_name(RELEASE_DURATION, P90)`` ->
    ``release_duration_seconds_p90``."""
    return f"{metric}_{statistic}"


# Every metric name ``release_metric`` can hold.
METRIC_NAMES: frozenset[str] = frozenset(
    [stored_name(m, s) for m in DISTRIBUTIONS for s in STATISTICS] + list(SCALARS)
)
