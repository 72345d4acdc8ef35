"""One release's evidence record, built from its audit events: what ``shipflow audit show RUN`` prints.

    record = evidence(store.events(run_id=...))
    print(render_text(record))        # or json.dumps(record)

The record answers, for one run: who asked for it and how, every step in time order, the approvals
(who, when, choice, comment, wait), the gates with their evidence, each AWS action with its calls and
request ids, the rollbacks (why, what, verified or not), manual fallbacks and interventions, and how
the release ended. It also names the events' seqs, so the record can be checked against the chain
(``shipflow audit verify``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from shipflow.audit import (
    APPROVAL,
    AWS_ACTION,
    GATE_DECISION,
    MANUAL_FALLBACK,
    MANUAL_INTERVENTION,
    RELEASE_FINISHED,
    RELEASE_REQUESTED,
    ROLLBACK,
    WINDOW_OVERRIDE,
)
from shipflow.audit.chain import canonical_time

SECTIONS = {
    APPROVAL: "approvals",
    GATE_DECISION: "gates",
    AWS_ACTION: "aws_actions",
    ROLLBACK: "rollbacks",
    MANUAL_FALLBACK: "manual_fallbacks",
    MANUAL_INTERVENTION: "interventions",
    WINDOW_OVERRIDE: "window_overrides",
}
# The ids an AWS action's result names, in the order they are shown.
RESOURCE_KEYS = ("build_id", "change_set_id", "stack_id", "stack_name", "deployment_id", "rolled_back_to", "status")


def _row(event: Any) -> dict[str, Any]:
    get = event._mapping if hasattr(event, "_mapping") else event
    return {
        "seq": get["seq"],
        "event_id": str(get["event_id"]),
        "time": canonical_time(get["time"]),
        "kind": get["kind"],
        "environment": get["environment"],
        "stage": get["stage"],
        "task_id": get["task_id"],
        "try_number": get["try_number"],
        "actor": get["actor"],
        "payload": get["payload"] or {},
        "dag_id": get["dag_id"],
        "run_id": get["run_id"],
        "service": get["service"],
        "hash": get["hash"],
    }


def aws_calls(payload: dict[str, Any]) -> list[dict[str, Any]]:
    result = payload.get("result") or {}
    return [c for c in (result.get("aws_calls") or []) if isinstance(c, dict)] if isinstance(result, dict) else []


def summary(event: dict[str, Any]) -> str:
    """One line saying what the event says."""
    kind, p = event["kind"], event["payload"]
    if kind == RELEASE_REQUESTED:
        return (
            f"requested via {p.get('trigger')}: version {p.get('version')} commit {p.get('commit')} "
            f"environments {p.get('environments') or 'all'}"
        )
    if kind == RELEASE_FINISHED:
        outcomes = ", ".join(f"{env}={o.get('outcome')}" for env, o in (p.get("outcomes") or {}).items())
        return f"run {p.get('state')} after {p.get('duration_seconds')} s: {outcomes or 'no environment decided'}"
    if kind == AWS_ACTION:
        result = p.get("result") if isinstance(p.get("result"), dict) else {}
        ids = " ".join(f"{k}={result[k]}" for k in RESOURCE_KEYS if result.get(k))
        calls = aws_calls(p)
        requests = ",".join(c.get("request_id", "")[:8] for c in calls if c.get("request_id"))
        text = f"{p.get('state')}: {ids or 'no resource'}; {len(calls)} AWS calls"
        if requests:
            text += f" (request ids {requests})"
        if p.get("error"):
            text += f"; error: {p['error'][:200]}"
        return text
    if kind == GATE_DECISION:
        text = "passed" if p.get("passed") else f"FAILED ({p.get('state')})"
        evidence = p.get("evidence")
        if isinstance(evidence, dict) and evidence:
            text += ": " + json.dumps(evidence, sort_keys=True, default=str)[:200]
        elif p.get("error"):
            text += ": " + p["error"][:200]
        return text
    if kind == APPROVAL:
        approval = p.get("approval") or {}
        comments = "; ".join(
            f"{a.get('user')}: {a.get('comment')}" for a in approval.get("approvals") or [] if a.get("comment")
        )
        text = f"{p.get('decision')} by {event['actor']} after {p.get('wait_seconds')} s"
        if approval.get("reason"):
            text += f" ({approval['reason']})"
        return text + (f"; comments: {comments}" if comments else "")
    if kind == ROLLBACK:
        if p.get("phase") == "started":
            return f"rolling back {', '.join(p.get('rolls_back') or [])}: {p.get('reason')}"
        return "rollback verified" if p.get("verified") else f"rollback NOT verified: {p.get('error', '')[:200]}"
    if kind == MANUAL_FALLBACK:
        return "environment restored by hand" if p.get("restored") else "manual fallback: NOT restored"
    if kind == MANUAL_INTERVENTION:
        what = p.get("new_state") or p.get("state") or ""
        return f"{p.get('action')} {p.get('task') or ''} {what} via {p.get('via')}".replace("  ", " ")
    if kind == WINDOW_OVERRIDE:
        return f"window override: {json.dumps(p.get('override'), default=str)[:200]}"
    return json.dumps(p, default=str)[:200]


def evidence(events: Iterable[Any]) -> dict[str, Any]:
    """The evidence record of one run's events (rows from ``AuditStore.events(run_id=...)``)."""
    rows = [_row(e) for e in events]
    if not rows:
        raise LookupError("no audit events for this run")
    first = rows[0]
    record: dict[str, Any] = {
        "dag_id": first["dag_id"],
        "run_id": first["run_id"],
        "service": next((r["service"] for r in rows if r["service"]), None),
        "requested": None,
        "finished": None,
        "timeline": [],
        **{section: [] for section in SECTIONS.values()},
        "events": {"count": len(rows), "first_seq": rows[0]["seq"], "last_seq": rows[-1]["seq"]},
    }
    for row in rows:
        where = ".".join(filter(None, [row["environment"], row["stage"]]))
        record["timeline"].append(
            {
                "seq": row["seq"],
                "time": row["time"],
                "kind": row["kind"],
                "where": where,
                "actor": row["actor"],
                "summary": summary(row),
            }
        )
        entry = {k: row[k] for k in ("seq", "time", "environment", "stage", "try_number", "actor", "payload")}
        if row["kind"] == RELEASE_REQUESTED:
            record["requested"] = {"by": row["actor"], "time": row["time"], **row["payload"]}
        elif row["kind"] == RELEASE_FINISHED:
            record["finished"] = {"time": row["time"], **row["payload"]}
        elif row["kind"] in SECTIONS:
            record[SECTIONS[row["kind"]]].append(entry)
    return record


def render_text(record: dict[str, Any]) -> str:
    """The record for a person: header, then the timeline, one line per event."""
    requested = record.get("requested") or {}
    finished = record.get("finished") or {}
    lines = [
        f"Release {record['run_id']} of {record.get('service')} ({record.get('dag_id')})",
        f"  requested by {requested.get('by', '?')} via {requested.get('trigger', '?')} "
        f"at {requested.get('time', '?')}: version {requested.get('version')} commit {requested.get('commit')}",
    ]
    if finished:
        outcomes = ", ".join(f"{env}: {o.get('outcome')}" for env, o in (finished.get("outcomes") or {}).items())
        lines.append(f"  finished {finished.get('state')} at {finished.get('time')} ({outcomes})")
    else:
        lines.append("  not finished (or its end not recorded yet)")
    counts = ", ".join(f"{len(record[s])} {s.replace('_', ' ')}" for s in SECTIONS.values())
    lines += [f"  {counts}", f"  events seq {record['events']['first_seq']}..{record['events']['last_seq']}", ""]
    width = max((len(t["where"]) for t in record["timeline"]), default=0)
    for t in record["timeline"]:
        lines.append(f"{t['time'][:19]}Z  {t['kind']:<19} {t['where']:<{width}}  {t['actor']:<10} {t['summary']}")
    return "\n".join(lines)
