"""Names that make AWS calls safe to repeat.

- ``task_key``: the task instance across all its tries (DAG, run, task, map index). Resources an
  operator starts are marked with ``marker(task_key)`` (a build environment variable, a deployment
  description, a change set name) so that a retry can find and adopt what an earlier try started,
  even if that try died before it could note the id anywhere.
- ``client_token``: one per try and action, sent where AWS accepts an idempotency token
  (CodeBuild ``idempotencyToken``, CloudFormation ``ClientRequestToken``). botocore's own retries of
  a call then never start a second build; a new try after a *failed* build starts a fresh one.
"""

from __future__ import annotations

import hashlib
from typing import Any

MARKER_PREFIX = "shipflow"


def task_key(context: Any) -> str:
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    key = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}"
    return key if map_index in (None, -1) else f"{key}/{map_index}"


def try_number(context: Any) -> int:
    return int(getattr(context["ti"], "try_number", 1) or 1)


def _digest(*parts: object, length: int) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:length]


def marker(context: Any) -> str:
    """Stable for every try of one task instance: ``shipflow-<20 hex>``."""
    return f"{MARKER_PREFIX}-{_digest(task_key(context), length=20)}"


def _token(key: str, attempt: int, action: str) -> str:
    return f"{MARKER_PREFIX}-{_digest(key, attempt, action, length=40)}"


def client_token(context: Any, action: str) -> str:
    """Unique per task instance, try and action; valid as a CloudFormation ClientRequestToken."""
    return _token(task_key(context), try_number(context), action)


def client_tokens(context: Any, action: str) -> list[str]:
    """The tokens every try of this task instance so far sent for ``action``, newest first.

    Lets a retry recognise an operation an earlier try started (AWS records the token on it, e.g. in
    CloudFormation stack events) even where no task state store kept it.
    """
    key = task_key(context)
    return [_token(key, attempt, action) for attempt in range(try_number(context), 0, -1)]
