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


def release_params(environments: Sequence[str]) -> dict[str, Any]:
    return {
        "version": Param(
            type="string",
            pattern=SEMVER_PATTERN,
            title="Version",
            description="The version to release (semantic version, e.g. 1.4.0); its artifact must exist.",
        ),
        "commit": Param(
            type="string",
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
