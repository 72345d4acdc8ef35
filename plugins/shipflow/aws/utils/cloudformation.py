"""CloudFormation data as a release sees it: parameters, change-set summaries, failures.

Pure functions over what boto3 returns, shared by the CloudFormation operators and kept apart from
them so that the summary an approver reads can be tested and reused without an operator.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from shipflow.aws.constants.cloudformation import (
    CHANGE_SET_CREATE_COMPLETE,
    CHANGE_SET_FAILED,
    IAM_CAPABILITIES,
    IAM_RESOURCE_PREFIX,
    NO_CHANGE_REASONS,
    STACK_RESOURCE_TYPE,
    USE_PREVIOUS_VALUE,
)


def is_templated(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def is_no_change(change_set: dict[str, Any]) -> bool:
    """A change set that failed only because it would change nothing (AWS's way to say "no changes")."""
    reason = change_set.get("StatusReason") or ""
    return change_set.get("Status") == CHANGE_SET_FAILED and any(text in reason for text in NO_CHANGE_REASONS)


def parameter_value(value: Any) -> str:
    """A value as CloudFormation takes it: lists comma-joined, booleans lower-case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(parameter_value(v) for v in value)
    return str(value)


def parameter_list(parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """boto3 ``Parameters`` from ``{key: value}``; a value of ``USE_PREVIOUS_VALUE`` keeps the current one."""
    listed: list[dict[str, Any]] = []
    for key, value in sorted(parameters.items()):
        if value == USE_PREVIOUS_VALUE:
            listed.append({"ParameterKey": key, "UsePreviousValue": True})
        else:
            listed.append({"ParameterKey": key, "ParameterValue": parameter_value(value)})
    return listed


def rendered_parameters(parameters: Any, field: str = "parameters") -> dict[str, Any] | None:
    """Parameters as a template rendered them: a dict, or the JSON object of ``{{ ... | tojson }}``.

    Jinja renders to text: ``{{ ti.xcom_pull(...)['previous_parameters'] }}`` gives a Python repr,
    which is refused here with the fix; ``| tojson`` gives JSON, which is read back.
    """
    if isinstance(parameters, str):
        text = parameters.strip()
        if text in ("", "null", "None"):
            return None
        try:
            parameters = json.loads(text)
        except ValueError:
            raise ValueError(
                f"{field} rendered to {text[:80]!r}, which is not a JSON object: "
                "render it with '| tojson', or pass a dict"
            ) from None
    validate_parameters(parameters, field)
    return parameters


def validate_parameters(parameters: Any, field: str = "parameters") -> None:
    """Parse-time check of a ``{key: value}`` parameters dict (a Jinja string is checked when rendered)."""
    if parameters is None or is_templated(parameters):
        return
    if not isinstance(parameters, dict):
        raise ValueError(f"{field} must be a dict of parameter key to value, got {type(parameters).__name__}")
    for key, value in parameters.items():
        if value == USE_PREVIOUS_VALUE or isinstance(value, (str, int, float, bool)):
            continue
        if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
            continue
        raise ValueError(
            f"{field}[{key!r}] = {value!r}: use a string, number, boolean, list of those, "
            f"or {USE_PREVIOUS_VALUE} to keep the stack's current value"
        )


def inputs_digest(*parts: Any) -> str:
    """A short digest of what a change set was made from (never reversible to parameter values)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _describe_resources(entries: list[dict[str, Any]]) -> str:
    return ", ".join(f"{e['logical_id']} ({e['type']})" for e in entries)


def change_set_summary(change_set: dict[str, Any], change_set_type: str) -> dict[str, Any]:
    """What a gate judges and an approver reads: counts, replacements, IAM changes and each change."""
    status = change_set.get("Status", "")
    changes = []
    for entry in change_set.get("Changes", []):
        change = entry.get("ResourceChange") or {}
        changes.append(
            {
                "action": change.get("Action"),
                "logical_id": change.get("LogicalResourceId"),
                "type": change.get("ResourceType"),
                "replacement": change.get("Replacement"),
                "scope": list(change.get("Scope", [])),
            }
        )
    counts = {"add": 0, "modify": 0, "remove": 0}
    for change in changes:
        action = str(change["action"]).lower()
        counts[action] = counts.get(action, 0) + 1
    replacements = [
        {"logical_id": c["logical_id"], "type": c["type"], "replacement": c["replacement"]}
        for c in changes
        if c["replacement"] in ("True", "Conditional")
    ]
    iam_changes = [
        {"action": c["action"], "logical_id": c["logical_id"], "type": c["type"]}
        for c in changes
        if str(c["type"]).startswith(IAM_RESOURCE_PREFIX)
    ]
    iam_capabilities = [c for c in change_set.get("Capabilities", []) if c in IAM_CAPABILITIES]
    # CREATE_COMPLETE is executable even with no resource change (outputs or tags only).
    has_changes = True if status == CHANGE_SET_CREATE_COMPLETE else False if status == CHANGE_SET_FAILED else None
    summary = {
        "change_set_id": change_set.get("ChangeSetId"),
        "change_set_name": change_set.get("ChangeSetName"),
        "change_set_type": change_set_type,
        "stack_id": change_set.get("StackId"),
        "stack_name": change_set.get("StackName"),
        "status": status,
        "execution_status": change_set.get("ExecutionStatus"),
        "status_reason": change_set.get("StatusReason") or "",
        "has_changes": has_changes,
        "counts": counts,
        "replacements": replacements,
        "has_iam_changes": bool(iam_changes),
        "iam_changes": iam_changes,
        "iam_capabilities": iam_capabilities,
        "changes": changes,
    }
    summary["text"] = summary_text(summary)
    return summary


def summary_text(summary: dict[str, Any]) -> str:
    """One short paragraph for an approver."""
    stack = summary["stack_name"]
    if summary["has_changes"] is False:
        return f"No changes to stack {stack}: {summary['status_reason']}"
    if summary["has_changes"] is None:
        return f"Change set for stack {stack} is {summary['status']}."
    counts = summary["counts"]
    verb = "Create" if summary["change_set_type"] == "CREATE" else "Update"
    parts = [
        f"{verb} stack {stack}: {counts['add']} to add, {counts['modify']} to modify, {counts['remove']} to remove."
    ]
    if not summary["changes"]:
        parts.append("No resource changes (outputs, tags or parameters only).")
    certain = [r for r in summary["replacements"] if r["replacement"] == "True"]
    conditional = [r for r in summary["replacements"] if r["replacement"] == "Conditional"]
    if certain:
        parts.append(f"Replaces {_describe_resources(certain)}.")
    if conditional:
        parts.append(f"May replace {_describe_resources(conditional)}.")
    for action in ("Add", "Modify", "Remove"):
        touched = [c for c in summary["iam_changes"] if c["action"] == action]
        if touched:
            parts.append(f"IAM: {action.lower()}s {_describe_resources(touched)}.")
    if summary["iam_capabilities"]:
        parts.append(f"Acknowledges {', '.join(summary['iam_capabilities'])}.")
    return " ".join(parts)


def failed_resources(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Resources whose events report a failure, oldest first: the first one is usually the cause."""
    failures: list[dict[str, Any]] = []
    for event in reversed(events):
        if not str(event.get("ResourceStatus", "")).endswith("_FAILED"):
            continue
        if event.get("ResourceType") == STACK_RESOURCE_TYPE and event.get("PhysicalResourceId") == event.get("StackId"):
            continue  # the stack's own status, reported separately
        failure = {
            "logical_id": event.get("LogicalResourceId"),
            "type": event.get("ResourceType"),
            "status": event.get("ResourceStatus"),
            "reason": event.get("ResourceStatusReason") or "",
        }
        if failure not in failures:
            failures.append(failure)
    return failures


def failure_reason(failures: list[dict[str, Any]], stack: dict[str, Any]) -> str:
    if not failures:
        return stack.get("StackStatusReason") or ""
    first = failures[0]
    reason = f"{first['logical_id']} ({first['type']}) {first['status']}: {first['reason']}"
    others = [f"{f['logical_id']} {f['status']}" for f in failures[1:]]
    return reason + (f"; then {', '.join(others)}" if others else "")


def outputs_of(stack: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs") or []}
