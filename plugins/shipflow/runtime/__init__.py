"""A real, local Airflow for Shipflow's end-to-end tests and for ``make up``.

- ``local``: ``LocalAirflow`` writes an isolated Airflow environment (home, SQLite DB, users, JWT
  secret) and runs ``db migrate``, then api-server, scheduler, dag-processor and triggerer as child
  processes until every component reports healthy.
- ``rest``: ``AirflowClient``, a small client of the REST API v2 (token login, triggering and
  waiting for runs, task instances, XComs, logs, human-in-the-loop approvals, import errors).

Neither module imports Airflow itself: they drive it from the outside, as a user would.
"""

from __future__ import annotations

# Users of every local stack and their SimpleAuthManager roles (viewer < user < op < admin).
# Approving a human-in-the-loop step or triggering a run needs at least ``user``.
DEFAULT_USERS = {
    "admin": "admin",
    "approver1": "user",
    "approver2": "user",
    "ci": "user",
    "viewer": "viewer",
}
