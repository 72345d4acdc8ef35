"""CloudFormation statuses, waiter names and defaults shared by the hook, operators, triggers and waiters.

Waiting uses botocore's ``stack_create_complete`` / ``stack_update_complete`` for executions and
undos, and two custom waiters (waiters/cloudformation.json) where botocore's do not fit:

- ``change_set_ready``: botocore's ``change_set_create_complete`` treats every FAILED change set as a
  failure, but AWS reports a change set *without changes* as FAILED; that is a result (nothing to
  deploy), so the custom waiter succeeds on it and fails only on other FAILED change sets.
- ``stack_rolled_back``: botocore's ``stack_rollback_complete`` knows only UPDATE_ROLLBACK_COMPLETE; a
  failed creation rolled back by RollbackStack ends ROLLBACK_COMPLETE (or ROLLBACK_FAILED), which it
  would poll until it gives up.
"""

from __future__ import annotations

from pathlib import Path

# -- stacks ------------------------------------------------------------------------------------------
# What a change set execution (or an undo) ends in when it worked.
STACK_SUCCESS_STATES = ("CREATE_COMPLETE", "UPDATE_COMPLETE")
# Ends of an operation that went wrong: it failed and stopped (DisableRollback), it was rolled back,
# or even the rollback failed.
STACK_FAILED_STATES = ("CREATE_FAILED", "UPDATE_FAILED", "ROLLBACK_FAILED", "UPDATE_ROLLBACK_FAILED", "DELETE_FAILED")
STACK_CREATE_ROLLED_BACK = "ROLLBACK_COMPLETE"  # a failed creation, rolled back: it can only be deleted
STACK_UPDATE_ROLLED_BACK = "UPDATE_ROLLBACK_COMPLETE"
STACK_ROLLED_BACK_STATES = (STACK_CREATE_ROLLED_BACK, STACK_UPDATE_ROLLED_BACK)
STACK_FAILURE_STATES = (*STACK_FAILED_STATES, *STACK_ROLLED_BACK_STATES)
STACK_IN_PROGRESS_STATES = (
    "CREATE_IN_PROGRESS",
    "ROLLBACK_IN_PROGRESS",
    "UPDATE_IN_PROGRESS",
    "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
    "UPDATE_ROLLBACK_IN_PROGRESS",
    "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
    "DELETE_IN_PROGRESS",
)
# A rollback that is already under way: the rollback operator waits for it instead of starting one.
STACK_ROLLING_BACK_STATES = (
    "ROLLBACK_IN_PROGRESS",
    "UPDATE_ROLLBACK_IN_PROGRESS",
    "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
)
# Single statuses the rollback operator decides on (see its docstring for the whole table).
STACK_UPDATE_COMPLETE = "UPDATE_COMPLETE"
STACK_UPDATE_IN_PROGRESS = "UPDATE_IN_PROGRESS"
STACK_UPDATE_ROLLBACK_FAILED = "UPDATE_ROLLBACK_FAILED"
STACK_DELETE_COMPLETE = "DELETE_COMPLETE"
# A failed operation left as it is (DisableRollback / OnFailure DO_NOTHING): RollbackStack finishes it.
STACK_LEFT_FAILED_STATES = ("CREATE_FAILED", "UPDATE_FAILED")
# A stack created by a CREATE change set that has not been executed yet.
STACK_REVIEW_IN_PROGRESS = "REVIEW_IN_PROGRESS"
STACK_RESOURCE_TYPE = "AWS::CloudFormation::Stack"

# -- change sets -------------------------------------------------------------------------------------
CHANGE_SET_CREATE_COMPLETE = "CREATE_COMPLETE"
CHANGE_SET_PENDING_STATES = ("CREATE_PENDING", "CREATE_IN_PROGRESS")
CHANGE_SET_FAILED = "FAILED"
EXECUTION_AVAILABLE = "AVAILABLE"
EXECUTION_OBSOLETE = "OBSOLETE"
EXECUTION_IN_PROGRESS = "EXECUTE_IN_PROGRESS"
# Execution statuses after ExecuteChangeSet was accepted: the change set cannot be executed again.
EXECUTION_STARTED_STATES = (EXECUTION_IN_PROGRESS, "EXECUTE_COMPLETE", "EXECUTE_FAILED")
CHANGE_SET_TYPES = ("CREATE", "UPDATE")
# AWS reports a change set without changes as FAILED with one of these StatusReasons (and UpdateStack
# with nothing to do as a ValidationError with the second); this is the only signal AWS gives, so
# the words live here, once, and in the waiter that must agree with them (a test checks that).
NO_CHANGE_REASONS = (
    "The submitted information didn't contain changes",
    "No updates are to be performed",
)
CAPABILITIES = ("CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND")
IAM_CAPABILITIES = ("CAPABILITY_IAM", "CAPABILITY_NAMED_IAM")
IAM_RESOURCE_PREFIX = "AWS::IAM::"
# A parameters value that keeps the stack's current value of that parameter.
USE_PREVIOUS_VALUE = {"UsePreviousValue": True}

# -- waiters -----------------------------------------------------------------------------------------
WAITER_CHANGE_SET_READY = "change_set_ready"  # custom: an empty change set is a result, not a failure
WAITER_STACK_CREATE_COMPLETE = "stack_create_complete"  # botocore's
WAITER_STACK_UPDATE_COMPLETE = "stack_update_complete"  # botocore's
WAITER_STACK_ROLLED_BACK = "stack_rolled_back"  # custom: also a failed create rolled back by RollbackStack
# The stack operations a trigger waits for, and the waiter of each.
STACK_OPERATION_WAITERS = {
    "create": WAITER_STACK_CREATE_COMPLETE,
    "update": WAITER_STACK_UPDATE_COMPLETE,
    "rollback": WAITER_STACK_ROLLED_BACK,
}
DEFAULT_CHANGE_SET_WAITER_DELAY = 5  # change sets take seconds to a minute or two
DEFAULT_CHANGE_SET_WAITER_MAX_ATTEMPTS = 120
DEFAULT_STACK_WAITER_DELAY = 15
# Two hours at the default delay: a stack with a CloudFront distribution or a database can take over an
# hour, and botocore's own default (120 x 30 s) would give up after one.
DEFAULT_STACK_WAITER_MAX_ATTEMPTS = 480

# -- resumption and records --------------------------------------------------------------------------
# Task state store keys: the change set a create task made, the ClientRequestToken an execute or a
# rollback task sent (written *before* the call, so a retry always knows which events are its own).
STATE_KEY_CHANGE_SET_ID = "cloudformation_change_set_id"
STATE_KEY_EXECUTE_TOKEN = "cloudformation_execute_token"
STATE_KEY_ROLLBACK_TOKEN = "cloudformation_rollback_token"
# A change set's Description ends with a digest of the inputs that made it, so that a retry adopts a
# change set only if it was made from the same template, parameters, tags and capabilities.
INPUTS_DIGEST_FORMAT = "[shipflow inputs {digest}]"
DEFAULT_DESCRIPTION = "Shipflow release"
# How many pages (100 events each) of a stack's events to read when looking for an operation's events.
EVENT_PAGES_LIMIT = 10

# Template files named by a relative path are read from here (the project's include/templates/).
TEMPLATES_DIR = Path(__file__).resolve().parents[4] / "include" / "templates"
