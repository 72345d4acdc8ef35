"""Release approvals: who may approve, how many must, and what is kept of their decision.

The policy, in one place (:class:`ApprovalPolicy`), used by the approval steps
(``approve_release``, ``approve_stack_change``) and by the emergency override of the deployment window:

- Approvers are the spec's users and the members of its roles (``role:<name>``, defined in
  ``include/roles.yaml``), resolved when the DAG is parsed.
- Separation of duties: the user who triggered the run (Airflow's ``triggering_user_name``) cannot
  approve it. The request is assigned to the other approvers only, so Airflow itself refuses anyone
  else (HTTP 403, even an admin). When too few approvers remain, the step fails at once with the reason.
- N of M: ``required`` distinct approvers must approve. After each approval the request is asked again
  of those who have not approved yet; one rejection ends it.
- Alerts: when a step starts asking, the spec's ``approval_pending`` notification goes out once
  (not again when it asks the remaining approvers after one approved, nor when a retry resumes).
- Timeout: when nobody decides in time, the request takes its default (``Reject``), the spec's
  ``approval_timeout`` notification goes out, and the step records ``timed_out``.
- Every answer (who, when, choice, comment) is kept in the step's result (XCom), with the people
  who could have answered and the one who triggered the run.
- In the ``superseded`` execution mode, a newer release waiting behind this one closes the request
  (see :mod:`shipflow.release.triggers`); the step skips what follows, recorded as ``superseded``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param

from shipflow.release import notify as alerts
from shipflow.release.triggers import ApprovalTrigger

APPROVE, REJECT = ApprovalOperator.APPROVE, ApprovalOperator.REJECT
COMMENT = "comment"
ROLE_PREFIX = "role:"

# What a decision is called in results, logs and (later) audit events and metrics.
APPROVED, REJECTED, TIMED_OUT, SUPERSEDED, NO_APPROVER = (
    "approved",
    "rejected",
    "timed_out",
    "superseded",
    "no_eligible_approver",
)


def resolve_approvers(principals: Sequence[str], roles: Mapping[str, Sequence[str]]) -> list[str]:
    """The people behind ``principals`` (users, and ``role:x`` via ``roles``), in order, each once."""
    people: list[str] = []
    for principal in principals:
        if principal.startswith(ROLE_PREFIX):
            members = roles.get(principal[len(ROLE_PREFIX) :], ())
        else:
            members = (principal,)
        people += [m for m in members if m not in people]
    return people


def comment_param() -> dict[str, Param]:
    return {COMMENT: Param("", type="string", title="Comment", description="Why (kept with the run)")}


@dataclass
class ApprovalPolicy:
    """N of M approvers, minus the one who triggered the run."""

    approvers: list[str]  # people, already resolved
    required: int = 1
    timeout: timedelta | None = None

    def eligible(self, triggered_by: str | None, approved: Sequence[str] = ()) -> list[str]:
        return [p for p in self.approvers if p != triggered_by and p not in approved]

    def shortfall(self, triggered_by: str | None) -> str | None:
        """Why this run can never be approved, or None."""
        eligible = self.eligible(triggered_by)
        if len(eligible) >= self.required:
            return None
        excluded = (
            f"; {triggered_by} triggered the run and may not approve it" if triggered_by in self.approvers else ""
        )
        return (
            f"needs {self.required} approval(s) but only {len(eligible)} approver(s) may give one "
            f"({', '.join(eligible) or 'nobody'}){excluded}: add approvers to the spec or have someone else trigger"
        )


@dataclass
class ApprovalState:
    """What is carried between the asks of one approval step (JSON-safe: it travels through the deferral)."""

    triggered_by: str | None
    requested_at: str
    timeout_at: str | None
    approvals: list[dict[str, Any]] = field(default_factory=list)
    # Set once decided (kept in the task state store before it is acted on; see _decide).
    decision: str | None = None
    rejected: dict[str, Any] | None = None
    reason: str | None = None
    # The approval_pending alert went out for this request (sent once, whatever resumes or retries).
    pending_alerted: bool = False

    @classmethod
    def start(cls, triggered_by: str | None, timeout: timedelta | None) -> ApprovalState:
        now = datetime.now(UTC)
        return cls(triggered_by, now.isoformat(), (now + timeout).isoformat() if timeout else None)

    def as_kwargs(self) -> dict[str, Any]:
        """What travels through the deferral (the answers so far; no decision yet)."""
        return {
            "triggered_by": self.triggered_by,
            "requested_at": self.requested_at,
            "timeout_at": self.timeout_at,
            "approvals": self.approvals,
            "pending_alerted": self.pending_alerted,
        }

    def saved(self) -> dict[str, Any]:
        return {**self.as_kwargs(), "decision": self.decision, "rejected": self.rejected, "reason": self.reason}


def answer_of(event: Mapping[str, Any]) -> dict[str, Any]:
    """One answer as it is kept: who, when, the choice, the comment."""
    user = event.get("responded_by_user") or {}
    at = event.get("responded_at")
    return {
        "user": user.get("name") or user.get("id"),
        "at": at.isoformat() if isinstance(at, datetime) else at,
        "choice": (event.get("chosen_options") or [None])[0],
        "comment": (event.get("params_input") or {}).get(COMMENT) or None,
    }


class ReleaseApprovalOperator(ApprovalOperator):
    """An approval step of a release (``approve_release``, ``approve_stack_change``) under :class:`ApprovalPolicy`.

    Waits in the triggerer (deferred), not in ``awaiting_input``: the trigger also applies the timeout
    and, in the ``superseded`` mode, watches for a newer release. An answer through the UI or the REST
    API resumes the task at once either way.

    :param approvers: the people who may approve (users and role members, resolved).
    :param required: how many distinct people must approve.
    :param response_timeout: how long to wait before the default, ``Reject``, applies.
    :param supersede: the service's ``execution_mode`` is ``superseded``.
    :param poll_interval: seconds between the trigger's looks (timeout, newer releases).
    :param notifications: the spec's ``notifications`` section (dict), for ``approval_pending`` and
        ``approval_timeout``.
    :param service: the service, for alerts (default: the DAG id).
    :param environment: the environment, for alerts (default: the task's group).
    :return: the decision record: ``decision`` (approved | rejected | timed_out), ``chosen_options``,
        ``responded_by_user``, ``approvals`` and ``rejected_by`` (each ``{user, at, choice, comment}``),
        ``required``, ``eligible``, ``triggered_by``, ``requested_at``, ``timeout_at``.
    """

    def __init__(
        self,
        *,
        approvers: Sequence[str],
        required: int = 1,
        response_timeout: timedelta | None = None,
        supersede: bool = False,
        poll_interval: float = 30,
        notifications: Mapping[str, Any] | None = None,
        service: str | None = None,
        environment: str | None = None,
        aws_conn_id: str | None = None,
        region_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not approvers:
            raise ValueError(f"{kwargs.get('task_id')}: an approval step needs at least one approver")
        if required < 1 or required > len(approvers):
            raise ValueError(
                f"{kwargs.get('task_id')}: required={required} approvals, but {len(approvers)} approver(s): "
                f"{', '.join(approvers)}"
            )
        # The DAG's params arrive here too; a HITL form shows only the task's own (the comment).
        kwargs.pop("params", None)
        super().__init__(
            params=comment_param(),
            defaults=[REJECT],
            response_timeout=response_timeout,
            assigned_users=[{"id": p, "name": p} for p in approvers],
            **kwargs,
        )
        self.policy = ApprovalPolicy(list(approvers), required, response_timeout)
        self.supersede = supersede
        self.poll_interval = poll_interval
        self.notifications = dict(notifications or {})
        self.service = service
        self.environment = environment
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    # -- asking ------------------------------------------------------------------------------------
    def execute(self, context: Any) -> Any:
        triggered_by = context["dag_run"].triggering_user_name
        state = self._saved(context) or ApprovalState.start(triggered_by, self.response_timeout)
        if state.decision is not None:
            # An earlier try was decided but ended before it could act on it (see _save).
            return self._act(context, state)
        if (why := self.policy.shortfall(triggered_by)) is not None:
            self._finish(context, state, NO_APPROVER, reason=why)
            raise AirflowFailException(f"{self.task_id}: cannot be approved: {why}")
        self._ask(context, state)

    def _ask(self, context: Any, state: ApprovalState) -> NoReturn:
        """Ask the approvers who have not approved yet; raises TaskDeferred (resumes in execute_complete)."""
        from airflow.sdk.execution_time.hitl import upsert_hitl_detail

        approved = [a["user"] for a in state.approvals]
        eligible = self.policy.eligible(state.triggered_by, approved)
        self.assigned_users = [{"id": p, "name": p} for p in eligible]
        ti = context["task_instance"]
        self._save(context, state)
        # Upserting again after an approval clears that answer (Airflow keeps one per task instance);
        # the answers so far travel in the deferral's kwargs.
        upsert_hitl_detail(
            ti_id=ti.id,
            options=self.options,
            subject=self.subject,
            body=self._body(state),
            defaults=self.defaults,
            multiple=self.multiple,
            params=self.serialized_params,
            assigned_users=self.assigned_users,
        )
        if not state.pending_alerted:
            # After the request exists, so the link in the alert opens it.
            self._alert(context, self._pending_alert(context, state, eligible))
            state.pending_alerted = True
            self._save(context, state)
        self.log.info(
            "Waiting for %d more approval(s) of %d from: %s (triggered by %s; timeout at %s)",
            self.policy.required - len(approved),
            self.policy.required,
            ", ".join(eligible),
            state.triggered_by or "the schedule",
            state.timeout_at or "never",
        )
        self.defer(
            trigger=ApprovalTrigger(
                ti_id=ti.id,
                options=self.options,
                params=self.serialized_params,
                defaults=self.defaults,
                multiple=self.multiple,
                timeout_datetime=datetime.fromisoformat(state.timeout_at) if state.timeout_at else None,
                poke_interval=self.poll_interval,
                dag_id=ti.dag_id,
                watch_newer=self.supersede,
            ),
            method_name="execute_complete",
            kwargs=state.as_kwargs(),
        )

    # A try can fail under the step (Airflow fails a task resumed right after it parked, see
    # shipflow.runtime.rest.HITL_SETTLE_SECONDS; or its worker dies). The approvals given so far are
    # kept in the task state store, so the retry asks only for the ones still missing.
    STATE_KEY = "shipflow_approval"

    def _save(self, context: Any, state: ApprovalState) -> None:
        if (store := context.get("task_state_store")) is not None:
            store.set(self.STATE_KEY, json.dumps(state.saved()))

    def _saved(self, context: Any) -> ApprovalState | None:
        store = context.get("task_state_store")
        raw = store.get(self.STATE_KEY) if store is not None else None
        if not raw:
            return None
        state = ApprovalState(**json.loads(raw))
        self.log.warning(
            "Resuming the approval after an earlier try ended: %d approval(s) kept (%s), decision: %s",
            len(state.approvals),
            ", ".join(a["user"] for a in state.approvals) or "none",
            state.decision or "none yet",
        )
        return state

    def _body(self, state: ApprovalState) -> str:
        lines = [self.body or ""]
        lines.append(f"\n\nNeeds **{self.policy.required}** approval(s).")
        if state.approvals:
            lines.append(" Approved so far by " + ", ".join(a["user"] for a in state.approvals) + ".")
        if state.triggered_by:
            lines.append(f" Triggered by {state.triggered_by}, who may not approve it.")
        return "".join(lines)

    # -- answers -----------------------------------------------------------------------------------
    def execute_complete(self, context: Any, event: dict[str, Any], **kwargs: Any) -> Any:  # type: ignore[override]
        state = ApprovalState(**kwargs)
        if "superseded" in event:
            return self._decide(context, state, SUPERSEDED, reason=f"{event['superseded']} newer release(s) waiting")
        if "error" in event:
            self.process_trigger_event_error(event)
        answer = answer_of(event)
        if event.get("timedout") or answer["user"] is None:
            answer.update(user=None, comment=f"no decision within {self.response_timeout}")
            return self._decide(context, state, TIMED_OUT, rejected=answer)
        if answer["user"] == state.triggered_by or answer["user"] in [a["user"] for a in state.approvals]:
            # Airflow keeps a request's first assignees when it is asked again, so someone who has
            # approved can answer again; the triggering user cannot (not assigned). Not counted.
            self.log.warning("Ignoring the answer of %s: not an eligible approver of this run", answer["user"])
            return self._ask(context, state)
        if answer["choice"] == APPROVE:
            state.approvals.append(answer)
            if len(state.approvals) < self.policy.required:
                self.log.info("Approved by %s (%d of %d)", answer["user"], len(state.approvals), self.policy.required)
                return self._ask(context, state)
            return self._decide(context, state, APPROVED)
        return self._decide(context, state, REJECTED, rejected=answer)

    def _decide(self, context: Any, state: ApprovalState, decision: str, **details: Any) -> Any:
        """Keep the decision before acting on it: Airflow can fail a try that resumed right after it
        parked (apache/airflow #67287), and the retry must act on the same decision, not ask again."""
        state.decision = decision
        state.rejected = details.get("rejected")
        state.reason = details.get("reason")
        self._save(context, state)
        if decision == TIMED_OUT:
            self._alert(context, self._timeout_alert(context, state))
        return self._act(context, state)

    # -- alerts ------------------------------------------------------------------------------------
    def _where(self, ti: Any) -> tuple[str, str | None]:
        """(service, environment) for alerts: as the builder names them, else the DAG and the task's group."""
        group, _, _ = ti.task_id.rpartition(".")
        return self.service or ti.dag_id, self.environment or group or None

    def _link(self, ti: Any) -> str | None:
        try:
            return self.generate_link_to_ui(task_instance=ti)  # the request's "required actions" page
        except Exception:  # no [api] base_url: the task's page instead
            return alerts.task_url(ti)

    def _alert(self, context: Any, alert: alerts.Alert) -> None:
        alerts.send(
            self.notifications, alert, aws_conn_id=self.aws_conn_id, region_name=self.region_name, context=context
        )

    def _pending_alert(self, context: Any, state: ApprovalState, eligible: Sequence[str]) -> alerts.Alert:
        ti = context["ti"]
        service, environment = self._where(ti)
        needed = self.policy.required - len(state.approvals)
        who = ", ".join(eligible)
        answer = f"shipflow approve {service} --env {environment} --run {ti.run_id}" if environment else None
        return alerts.release_alert(
            alerts.APPROVAL_PENDING,
            title=f"approval needed: {self.subject}",
            headline=f"{self.subject} waits for {needed} approval(s) from: {who}",
            service=service,
            version=alerts.requested_version(ti),
            environment=environment,
            run_id=ti.run_id,
            details=[
                ("Step", ti.task_id),
                ("Triggered by", f"{state.triggered_by} (may not approve it)" if state.triggered_by else None),
                ("Deadline", f"{state.timeout_at} (then: rejected)" if state.timeout_at else None),
            ],
            action=(
                "review it, then approve or reject in Airflow (link below)"
                + (f" or with `{answer}` (`shipflow reject ...` to refuse)" if answer else "")
                + ". Nothing is deployed until it is approved."
            ),
            url=self._link(ti),
        )

    def _timeout_alert(self, context: Any, state: ApprovalState) -> alerts.Alert:
        ti = context["ti"]
        service, environment = self._where(ti)
        asked = ", ".join(self.policy.eligible(state.triggered_by))
        return alerts.release_alert(
            alerts.APPROVAL_TIMEOUT,
            title=f"approval timed out: {self.subject}",
            headline=f"{self.subject}: nobody approved within {self.response_timeout}; the release was rejected "
            "(on_timeout: reject)",
            service=service,
            version=alerts.requested_version(ti),
            environment=environment,
            run_id=ti.run_id,
            details=[
                ("Step", ti.task_id),
                ("Asked", asked),
                ("Approvals given", f"{len(state.approvals)} of {self.policy.required}"),
            ],
            action=(
                f"nothing changed{f' in {environment}' if environment else ''}. To ship this version, trigger "
                "the release again when an approver can answer in time."
            ),
            url=alerts.task_url(ti),
        )

    def _act(self, context: Any, state: ApprovalState) -> Any:
        """Record the decision and let the release go on (approved) or skip what follows (else)."""
        assert state.decision is not None  # noqa: S101 - set by _decide or read back from the store
        record = self._finish(context, state, state.decision, rejected=state.rejected, reason=state.reason)
        if state.decision == APPROVED:
            self.log.info("Approved. Proceeding with downstream tasks...")
            return record
        if state.decision == SUPERSEDED:
            context["ti"].xcom_push(key="superseded", value={"reason": state.reason})
            self.log.info("Superseded by a newer release; the request was closed and nothing follows")
        # Recorded first: skipping what follows ends the task (Airflow 3 raises to skip).
        self.skip(ti=context["ti"], tasks=context["task"].get_direct_relatives(upstream=False))
        return record

    def _finish(
        self,
        context: Any,
        state: ApprovalState,
        decision: str,
        *,
        rejected: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        last = rejected or (state.approvals[-1] if state.approvals else None)
        record = {
            "decision": decision,
            "chosen_options": [APPROVE] if decision == APPROVED else [REJECT],
            "responded_by_user": {"id": last["user"], "name": last["user"]} if last and last.get("user") else None,
            "approvals": state.approvals,
            "rejected_by": rejected,
            "reason": reason,
            "required": self.policy.required,
            "eligible": self.policy.eligible(state.triggered_by),
            **{k: v for k, v in state.as_kwargs().items() if k not in ("approvals", "pending_alerted")},
        }
        context["ti"].xcom_push(key="approval", value=record)
        self.log.info("Approval %s: %s", decision, record)
        return record
