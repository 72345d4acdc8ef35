"""CodeBuild statuses and defaults shared by the hook, operators, trigger and waiter (waiters/codebuild.json)."""

from __future__ import annotations

BUILD_SUCCEEDED = "SUCCEEDED"
BUILD_IN_PROGRESS = "IN_PROGRESS"
BUILD_FAILURE_STATES = ("FAILED", "FAULT", "TIMED_OUT", "STOPPED")
BUILD_TERMINAL_STATES = (BUILD_SUCCEEDED, *BUILD_FAILURE_STATES)

WAITER_BUILD_COMPLETE = "build_complete"
DEFAULT_WAITER_DELAY = 15  # seconds between describes
DEFAULT_WAITER_MAX_ATTEMPTS = 240  # one hour at the default delay

# Environment variable that marks a build with the task instance that started it (utils.idempotency).
MARKER_ENV_VAR = "SHIPFLOW_TASK_MARKER"
# The task state store key under which an operator keeps the id of the build it started.
STATE_KEY_BUILD_ID = "codebuild_build_id"
# How many of a project's newest builds to search for one this task started.
ADOPT_SEARCH_LIMIT = 50
