"""CodeDeploy statuses and defaults shared by the hook, operators and trigger.

The wait uses botocore's own ``deployment_successful`` waiter (GetDeployment: Succeeded -> success,
Failed/Stopped -> failure, anything else -> keep polling), so there is no waiters/codedeploy.json;
tests/aws/hooks/test_codedeploy.py checks that its acceptors still agree with the statuses below.
"""

from __future__ import annotations

DEPLOYMENT_SUCCEEDED = "Succeeded"
# A group takes no new deployment while one of its deployments is in one of these.
DEPLOYMENT_IN_FLIGHT_STATES = ("Created", "Queued", "InProgress", "Baking", "Ready")
DEPLOYMENT_FAILURE_STATES = ("Failed", "Stopped")
DEPLOYMENT_TERMINAL_STATES = (DEPLOYMENT_SUCCEEDED, *DEPLOYMENT_FAILURE_STATES)
# What an earlier try may have left that a retry takes over instead of deploying again.
DEPLOYMENT_ADOPTABLE_STATES = (*DEPLOYMENT_IN_FLIGHT_STATES, DEPLOYMENT_SUCCEEDED)

# ``creator`` of the deployments CodeDeploy starts itself when it rolls a group back automatically.
ROLLBACK_CREATOR = "codeDeployRollback"

WAITER_DEPLOYMENT_SUCCESSFUL = "deployment_successful"  # botocore's
DEFAULT_WAITER_DELAY = 15  # seconds between describes
# Two hours at the default delay: the slowest predefined config (LambdaLinear10PercentEvery10Minutes)
# shifts traffic for ~100 minutes. botocore's own default (120 x 15 s) would give up after 30.
DEFAULT_WAITER_MAX_ATTEMPTS = 480
# Stopping takes seconds to a few minutes (instances finish their current lifecycle event).
DEFAULT_STOP_WAITER_DELAY = 5
DEFAULT_STOP_WAITER_MAX_ATTEMPTS = 120

# Deployments carry no idempotency token: each one this task starts ends its description with the
# task's marker (utils.idempotency.marker), e.g. "Release 1.4.0 [shipflow-0123456789abcdef0123]".
MARKER_FORMAT = "[{marker}]"
# Task state store keys under which the operators keep the id of the deployment they started or adopted.
STATE_KEY_DEPLOYMENT_ID = "codedeploy_deployment_id"
STATE_KEY_ROLLBACK_ID = "codedeploy_rollback_deployment_id"
# XCom key holding the deployment id as soon as it is known, also when the task then fails: a
# downstream rollback task (trigger_rule="one_failed") reads the bad deployment from it.
XCOM_KEY_DEPLOYMENT_ID = "deployment_id"
# How many of a group's newest deployments to search for one this task started, or for a good revision.
ADOPT_SEARCH_LIMIT = 50
# BatchGetDeployments takes at most 25 ids per call.
BATCH_GET_LIMIT = 25

S3_BUNDLE_TYPES = ("zip", "tar", "tgz", "YAML", "JSON")
FILE_EXISTS_BEHAVIORS = ("DISALLOW", "OVERWRITE", "RETAIN")
