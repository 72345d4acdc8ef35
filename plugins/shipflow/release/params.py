"""The release request: the trigger form in the UI and the REST conf, as Airflow Params.

Airflow validates these before a run is created (an invalid value is an HTTP 400 naming the param);
keys it does not know it accepts, so ``check_release_request`` rejects those at the start of the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Param

SEMVER_PATTERN = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
COMMIT_PATTERN = r"^[0-9a-f]{7,40}$"


def release_params(environments: Sequence[str], *, scheduled: bool = False) -> dict[str, Any]:
    """The release request. ``scheduled`` (a release train): version and commit may be left out, and a
    scheduled run resolves them from the newest artifact (see ``check_release_request``)."""
    optional: dict[str, Any] = {"default": None, "type": ["null", "string"]} if scheduled else {"type": "string"}
    return {
        "version": Param(
            **optional,
            pattern=SEMVER_PATTERN,
            title="Version",
            description="The version to release (semantic version, e.g. 1.4.0); its artifact must exist.",
        ),
        "commit": Param(
            **optional,
            pattern=COMMIT_PATTERN,
            title="Commit",
            description="The commit sha the version was built from (7-40 lowercase hex characters).",
        ),
        "change_reference": Param(
            None,
            type=["null", "string"],
            title="Change reference",
            description="The change ticket or pull request this release delivers (e.g. CHG-1234).",
        ),
        "emergency": Param(
            False,
            type="boolean",
            title="Emergency release",
            description="Outside the deployment window or during a freeze, ask the approvers for an override "
            "instead of waiting for the window (recorded, and notified).",
        ),
        "emergency_reason": Param(
            None,
            type=["null", "string"],
            title="Emergency reason",
            description="Why this release cannot wait (required with an emergency release).",
        ),
        "environments": Param(
            list(environments),
            type="array",
            items={"type": "string", "enum": list(environments)},
            uniqueItems=True,
            minItems=1,
            title="Environments",
            description="Which environments to release to, promoted in the spec's order.",
        ),
    }
