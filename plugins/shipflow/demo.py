"""``make demo``: Shipflow's main job end to end, on embedded defaults, unattended.

Starts its own local stack (``shipflow.runtime.stack.LocalStack``, the same one ``make up`` runs:
the AWS sandbox seeded from the example specs, and a local Airflow 3 on SQLite with the
LocalExecutor over ``dags/``) on free ports and a fresh home, so it needs nothing running and
leaves a ``make up`` stack alone. Then it acts as CI and as an approver through Airflow's REST API:

1. releases ``inventory-worker`` 1.1.0: promoted through staging and production;
2. releases ``storefront-web`` 2.4.0: a production approval, answered by ``approver1`` (CI, which
   triggered the release, may not approve it);
3. releases ``inventory-worker`` 1.2.0, whose revision turns unhealthy during the staging bake: the
   release rolls back to the last good revision and ends failed with the reason.

It prints each release's stages with durations and outcome, who approved what and when, and where
to look in the UI. The stack stops with the demo; its home is kept, so ``shipflow up --home <home>``
brings the runs back in the UI.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STAGE_ORDER = (
    "check_deployment_window",
    "check_alarms",
    "check_stack_stable",
    "check_artifact_present",
    "check_release_inputs",
    "plan_stack",
    "decide_stack_approval",
    "approve_stack_change",
    "apply_stack",
    "approve_release",
    "deploy",
    "watch_bake",
    "check_service_metrics",
    "decide_outcome",
    "rollback_deployment",
    "rollback_stack",
    "verify_rollback",
    "manual_fallback",
    "fail_release",
)


def _say(text: str = "") -> None:
    print(text, flush=True)


def _seconds(ti: dict[str, Any]) -> str:
    duration = ti.get("duration")
    return f"{duration:5.1f}s" if isinstance(duration, (int, float)) else "    - "


def run_url(base_url: str, dag_id: str, run_id: str) -> str:
    """The run's page in Airflow's UI."""
    from urllib.parse import quote

    return f"{base_url}/dags/{quote(dag_id)}/runs/{quote(run_id)}"


def _time(value: str | None) -> str:
    """An API timestamp as HH:MM:SS UTC (the date is the demo's own)."""
    return datetime.fromisoformat(value).strftime("%H:%M:%S UTC") if value else "-"


def _approvals(client: Any, dag_id: str, run_id: str) -> list[str]:
    """Each answered human-in-the-loop step of the run: what, by whom, when, after how long."""
    lines = []
    answered = client.hitl_details(dag_id, run_id, response_received=True)
    for detail in sorted(answered, key=lambda d: d.get("responded_at") or ""):
        asked, answered_at = detail.get("created_at"), detail.get("responded_at")
        waited = ""
        if asked and answered_at:
            waited = f", {(datetime.fromisoformat(answered_at) - datetime.fromisoformat(asked)).total_seconds():.0f}s"
            waited += " after it was asked"
        who = (detail.get("responded_by_user") or {}).get("name") or "?"
        lines.append(
            f"    approval {detail['task_instance']['task_id']}: {', '.join(detail.get('chosen_options') or [])}"
            f" by {who} at {_time(answered_at)}{waited}"
        )
    return lines


def report(client: Any, dag_id: str, run_id: str, base_url: str | None = None) -> str:
    """The run's stages per environment with state and duration, its approvals, and the outcome."""
    run = client.get_dag_run(dag_id, run_id)
    tis = {ti["task_id"]: ti for ti in client.task_instances(dag_id, run_id)}
    lines = [f"  {dag_id} run {run_id}: {run['state'].upper()}"]
    if base_url:
        lines.append(f"    UI: {run_url(base_url, dag_id, run_id)}")
    for task_id in ("check_release_request", "build"):
        if task_id in tis:
            lines.append(f"    {task_id:<32} {tis[task_id]['state'] or '-':<16} {_seconds(tis[task_id])}")
    envs = sorted({t.split(".")[0] for t in tis if "." in t}, key=lambda e: min(
        (tis[t].get("start_date") or "9") for t in tis if t.startswith(f"{e}.")))
    for env in envs:
        lines.append(f"    [{env}]")
        ran = [(stage, tis[f"{env}.{stage}"]) for stage in STAGE_ORDER if f"{env}.{stage}" in tis]
        ran = [(stage, ti) for stage, ti in ran if ti["state"] not in (None, "skipped", "removed")]
        for stage, ti in ran:
            lines.append(f"      {stage:<30} {ti['state']:<16} {_seconds(ti)}")
        if not ran:
            lines.append("      not reached")
        outcome = _outcome(client, dag_id, run_id, env)
        if outcome and not outcome.get("promoted"):
            lines.append(f"      -> not promoted: {outcome.get('reason')}; rolled back: {outcome.get('rolled_back')}")
        elif outcome:
            lines.append("      -> promoted")
    lines += _approvals(client, dag_id, run_id)
    return "\n".join(lines)


def audit_report(url: str, run_id: str, timeout: float = 30) -> str:
    """The run's evidence record from the audit store (``shipflow audit show``) and the chain's check."""
    from shipflow.audit.evidence import evidence, render_text
    from shipflow.audit.store import AuditStore

    with AuditStore(url) as store:
        deadline = time.monotonic() + timeout
        # The scheduler records the run's end as it ends it: a moment after the client may see it.
        while True:
            events = store.events(run_id=run_id)
            if any(e.kind == "release_finished" for e in events) or time.monotonic() > deadline:
                break
            time.sleep(1)
        verified = store.verify()
    if not events:
        return f"  audit: no events recorded for {run_id}"
    body = "\n".join(f"    {line}" for line in render_text(evidence(events)).splitlines())
    return (f"  Audit evidence of {run_id} (shipflow audit show {run_id}; also the run page's Audit evidence tab):\n"
            f"{body}\n  audit chain: {verified.message}")


def metrics_report(client: Any, url: str) -> str:
    """Run the metrics DAG once (as its hourly schedule would) and show the headline figures."""
    from shipflow.audit.store import AuditStore
    from shipflow.metrics.dag import DAG_ID
    from shipflow.metrics.publish import read_rows, render_table

    client.wait_for_dag(DAG_ID, timeout=120)
    run_id = f"demo-metrics-{int(time.time())}"
    client.trigger_dag(DAG_ID, run_id=run_id)
    run = client.wait_for_dag_run(DAG_ID, run_id, timeout=300)
    with AuditStore(url) as store:
        rows = read_rows(store.engine, window="30d")
    newest = max((r["window_end"] for r in rows), default=None)
    headline = [r for r in rows if r["window_end"] == newest and r["environment"] == "*" and not r["dimension"]]
    body = "\n".join(f"    {line}" for line in render_table(headline).splitlines())
    return (f"  Metrics DAG {DAG_ID} run {run_id}: {run['state'].upper()} (computed from the audit trail, "
            f"checked by great-expectations, sent to CloudWatch namespace Shipflow).\n"
            f"  Release metrics, the last 30 days so far (shipflow metrics; --detail for every breakdown):\n{body}")


def _outcome(client: Any, dag_id: str, run_id: str, env: str) -> dict[str, Any] | None:
    try:
        return client.xcom(dag_id, run_id, f"{env}.decide_outcome", key="outcome")
    except Exception:  # not decided (the environment did not run)
        return None


def run_demo() -> int:
    from shipflow.runtime.local import free_port
    from shipflow.runtime.rest import AirflowApiError
    from shipflow.runtime.stack import LocalStack, StackStartError
    from shipflow.sandbox.client import SandboxClient
    from shipflow.sandbox.seed import bundle_key

    started = time.monotonic()
    _say("Shipflow demo: three releases of the example services, end to end")
    _say("(AWS is the local sandbox; Airflow runs locally on SQLite with the LocalExecutor.)\n")
    home = Path(tempfile.mkdtemp(prefix="shipflow-demo-"))
    # Its own stack on free ports: nothing needs to be running, and a `make up` stack is left alone.
    # Release DAGs poll every second (a `make up` stack: 5 s) so that the demo takes minutes.
    from shipflow.audit.store import resolve_url

    # Its audit trail goes to the store `shipflow audit` and `shipflow metrics` read by default.
    stack = LocalStack(home, port=free_port(), sandbox_port=0, poll_seconds="1", audit_url=resolve_url())
    _say(f"[1/4] starting the demo's own stack (home {home}; a `make up` stack is not touched)")
    try:
        stack.start(timeout=300, say=lambda line: _say(f"  {line}"))
        base_url = stack.airflow_url
        _say(f"[2/4] stack ready in {time.monotonic() - started:.0f}s: Airflow UI {base_url} "
             "(users: admin, approver1, approver2, ci, viewer; password = user name)")
        ci, approver = stack.airflow.client("ci"), stack.airflow.client("approver1")
        sandbox = SandboxClient(stack.sandbox_url)

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")

        def release(service: str, version: str) -> tuple[str, str]:
            dag_id = f"release__{service}"
            ci.wait_for_dag(dag_id, timeout=120)
            # Unique per demo: the audit store outlives the demo's Airflow, and a run's evidence is by run id.
            run_id = f"demo-{service}-{version}-{stamp}"
            ci.trigger_dag(dag_id, conf={"version": version, "commit": "4f2a9c1", "change_reference": "CHG-42"},
                           run_id=run_id)
            return dag_id, run_id

        _say("\n[3/4] releases, triggered through the REST API as user ci")
        runs = []
        dag_id, run_id = release("inventory-worker", "1.1.0")
        ci.wait_for_dag_run(dag_id, run_id, timeout=300)
        runs.append((dag_id, run_id))
        _say(report(ci, dag_id, run_id, base_url))

        dag_id, run_id = release("storefront-web", "2.4.0")
        ci.wait_for_hitl(dag_id, run_id, "production.approve_release", timeout=300)
        _say("  storefront-web 2.4.0 waits for its production approval; approver1 approves through the REST API")
        approver.answer_hitl(dag_id, run_id, "production.approve_release", ["Approve"])
        ci.wait_for_dag_run(dag_id, run_id, timeout=300)
        runs.append((dag_id, run_id))
        _say(report(ci, dag_id, run_id, base_url))

        dag_id, run_id = release("inventory-worker", "1.2.0")
        ci.wait_for_task_state(dag_id, run_id, "staging.watch_bake", {"running", "deferred"}, timeout=300)
        sandbox.add_fault("unhealthy", "codedeploy", target=bundle_key("inventory-worker", "1.2.0"), count=None)
        _say("  inventory-worker 1.2.0 is deployed to staging; its revision now turns unhealthy (injected fault)")
        ci.wait_for_dag_run(dag_id, run_id, timeout=300)
        runs.append((dag_id, run_id))
        _say(report(ci, dag_id, run_id, base_url))

        _say(audit_report(stack.airflow.env["SHIPFLOW_AUDIT_URL"], run_id))
        _say(metrics_report(ci, stack.airflow.env["SHIPFLOW_AUDIT_URL"]))

        states = [ci.get_dag_run(d, r)["state"] for d, r in runs]
        _say(f"\n[4/4] outcomes: {', '.join(f'{r}={s}' for (_, r), s in zip(runs, states, strict=True))}")
        _say("Where to look, in Airflow's UI (log in as admin/admin; approver1/approver1 sees the approvals):")
        for dag_id, run_id in runs:
            _say(f"  {run_url(base_url, dag_id, run_id)}")
        _say(f"  From this shell: shipflow audit show {run_id} ; shipflow metrics ; shipflow audit verify")
        _say(f"  The demo's stack stops now. To browse these runs again: shipflow up --home {home}")
        _say(f"  (then the same pages on http://127.0.0.1:8080; stop it with shipflow down --home {home}).")
        _say(f"  Logs: {stack.logs}/ (airflow/<component>.log, task logs under airflow/dag_id=...)")
        ok = states == ["success", "success", "failed"]
        _say(f"Demo {'OK' if ok else 'FAILED'}: one release promoted to production, one approved, one rolled back "
             f"({time.monotonic() - started:.0f}s).")
        return 0 if ok else 1
    except (StackStartError, TimeoutError, AirflowApiError) as exc:
        # A broken environment or a stuck release, not a bug of the caller's: the reason and the logs.
        _say(f"Demo FAILED after {time.monotonic() - started:.0f}s: {exc}")
        _say(f"Logs: {stack.logs}/")
        return 1
    finally:
        stack.stop()
