"""Operators for AWS CloudFormation change sets: plan a stack change, apply it, roll back what went wrong.

A release changes a stack in three steps that a DAG can put a gate or an approval between:

- ``CloudFormationCreateChangeSetOperator`` plans the change and returns a summary an approver can
  read (adds, modifies, removes, replacements, IAM changes) together with the stack's template and
  parameters as they were, so that a later rollback can restore them;
- ``CloudFormationExecuteChangeSetOperator`` applies it and, when it fails, names the resources that
  failed and AWS's reasons, from the events of this execution only (its ClientRequestToken);
- ``CloudFormationRollbackOperator`` rolls back whatever state a failed or unwanted update left.

All three are safe to retry: the change set's name is the task's marker, and the tokens sent with
executions and rollbacks are kept in the task state store *before* the call, so a retry adopts what
an earlier try started instead of doing it twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.amazon.aws.utils.waiter_with_logging import wait
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, conf
from botocore.exceptions import ClientError

from shipflow.aws.constants.cloudformation import (
    CAPABILITIES,
    CHANGE_SET_CREATE_COMPLETE,
    CHANGE_SET_FAILED,
    CHANGE_SET_PENDING_STATES,
    CHANGE_SET_TYPES,
    DEFAULT_CHANGE_SET_WAITER_DELAY,
    DEFAULT_CHANGE_SET_WAITER_MAX_ATTEMPTS,
    DEFAULT_DESCRIPTION,
    DEFAULT_STACK_WAITER_DELAY,
    DEFAULT_STACK_WAITER_MAX_ATTEMPTS,
    EXECUTION_AVAILABLE,
    EXECUTION_IN_PROGRESS,
    EXECUTION_OBSOLETE,
    EXECUTION_STARTED_STATES,
    INPUTS_DIGEST_FORMAT,
    NO_CHANGE_REASONS,
    STACK_CREATE_ROLLED_BACK,
    STACK_DELETE_COMPLETE,
    STACK_FAILED_STATES,
    STACK_FAILURE_STATES,
    STACK_IN_PROGRESS_STATES,
    STACK_LEFT_FAILED_STATES,
    STACK_OPERATION_WAITERS,
    STACK_RESOURCE_TYPE,
    STACK_REVIEW_IN_PROGRESS,
    STACK_ROLLED_BACK_STATES,
    STACK_ROLLING_BACK_STATES,
    STACK_SUCCESS_STATES,
    STACK_UPDATE_COMPLETE,
    STACK_UPDATE_IN_PROGRESS,
    STACK_UPDATE_ROLLBACK_FAILED,
    STACK_UPDATE_ROLLED_BACK,
    STATE_KEY_CHANGE_SET_ID,
    STATE_KEY_EXECUTE_TOKEN,
    STATE_KEY_ROLLBACK_TOKEN,
    TEMPLATES_DIR,
    USE_PREVIOUS_VALUE,
    WAITER_CHANGE_SET_READY,
)
from shipflow.aws.exceptions import AwsActionFailed
from shipflow.aws.hooks.cloudformation import CloudFormationHook
from shipflow.aws.links.cloudformation import CloudFormationChangeSetLink, CloudFormationStackLink
from shipflow.aws.operators.base import ShipflowAwsOperator
from shipflow.aws.triggers.cloudformation import (
    CloudFormationChangeSetReadyTrigger,
    CloudFormationStackOperationTrigger,
)
from shipflow.aws.utils.cloudformation import (
    change_set_summary,
    failed_resources,
    failure_reason,
    inputs_digest,
    is_no_change,
    is_templated,
    outputs_of,
    parameter_list,
    parameter_value,
    rendered_parameters,
    validate_parameters,
)
from shipflow.aws.utils.idempotency import client_token, client_tokens, marker

ACTION_CREATE_CHANGE_SET = "cloudformation.create_change_set"
ACTION_EXECUTE_CHANGE_SET = "cloudformation.execute_change_set"
ACTION_ROLLBACK = "cloudformation.rollback"

def _operation_of(status: str) -> str:
    """What a stack in this status last ran (or runs): its creation, or an update."""
    return "create" if status.startswith(("CREATE", "ROLLBACK", "REVIEW")) else "update"


# --------------------------------------------------------------------------------------------------
# Operators
# --------------------------------------------------------------------------------------------------
class CloudFormationBaseOperator(ShipflowAwsOperator[CloudFormationHook]):
    """What the CloudFormation operators share: waiting on a stack operation and judging its end (internal)."""

    aws_hook_class = CloudFormationHook
    operator_extra_links = (CloudFormationStackLink(),)
    ui_color = "#ff9900"
    action = ""

    def __init__(
        self,
        *,
        wait_for_completion: bool = True,
        waiter_delay: int = DEFAULT_STACK_WAITER_DELAY,
        waiter_max_attempts: int = DEFAULT_STACK_WAITER_MAX_ATTEMPTS,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.wait_for_completion = wait_for_completion
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts
        self.deferrable = deferrable

    def _link_fields(self) -> dict[str, str]:
        return {
            "region_name": self.hook.conn_region_name,
            "aws_domain": CloudFormationStackLink.get_aws_domain(self.hook.conn_partition) or "aws.amazon.com",
        }

    def stack_console_url(self, stack_id: str) -> str:
        return CloudFormationStackLink().format_link(**self._link_fields(), stack_id=quote(stack_id, safe=""))

    def persist_stack_link(self, context: Any, stack_id: str) -> None:
        CloudFormationStackLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            stack_id=quote(stack_id, safe=""),
        )

    def own_tokens(self, context: Any) -> list[str]:
        """Tokens this task instance sent: the one kept in the task state store, and every try's."""
        remembered = self.remembered_id(context)
        computed = client_tokens(context, self.action)
        return [remembered, *computed] if remembered and remembered not in computed else computed

    def send_token(self, context: Any) -> str:
        """This try's token, kept before it is sent: a retry then knows which events are its own."""
        token = client_token(context, self.action)
        self.remember_id(context, token)
        return token

    def wait_for_stack(self, context: Any, record: Any, stack_id: str, operation: str) -> dict[str, Any]:
        """Wait (in the worker or the triggerer) for the stack operation to end, then ``finish``."""
        if not self.wait_for_completion:
            return self.finish(record)
        if self.deferrable:
            self.defer(
                trigger=CloudFormationStackOperationTrigger(
                    stack_id=stack_id,
                    operation=operation,
                    **self.trigger_kwargs(),
                ),
                method_name="execute_complete",
                kwargs={"record": record.as_dict()},
            )
        try:
            wait(
                waiter=self.hook.get_waiter(STACK_OPERATION_WAITERS[operation]),
                waiter_delay=self.waiter_delay,
                waiter_max_attempts=self.waiter_max_attempts,
                args={"StackName": stack_id},
                failure_message=f"CloudFormation stack {operation} failed",
                status_message="CloudFormation stack status",
                status_args=["Stacks[0].StackStatus", "Stacks[0].StackStatusReason"],
            )
        except AirflowException as error:
            self.log.info("Waiter ended: %s", error)
        return self.finish(record)

    def execute_complete(
        self, context: Any, event: dict[str, Any] | None = None, record: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        self.validate_event(event, key="stack_id", expected=(record or {}).get("stack_id", ""))
        return self.finish(self.new_record(self.action, earlier=record))

    def finish(self, record: Any) -> dict[str, Any]:
        raise NotImplementedError

    def operation_events(self, stack_id: str, token: str | None, since: Any = None) -> list[dict[str, Any]]:
        """Events of one operation: those carrying its token, else (no token known) those since ``since``."""
        if token:
            return list(self.hook.stack_events(stack_id, tokens={token}))
        if since is None:
            return []
        since = datetime.fromisoformat(since) if isinstance(since, str) else since
        return [e for e in self.hook.stack_events(stack_id) if e["Timestamp"] >= since]

    def timed_out(self, what: str, stack: dict[str, Any], result: dict[str, Any]) -> AwsActionFailed:
        return AwsActionFailed(
            f"CloudFormation {what} of stack {stack['StackName']} did not finish in time",
            resource_id=stack["StackId"],
            status=stack["StackStatus"],
            reason=f"still {stack['StackStatus']} after {self.waiter_max_attempts} describes",
            console_url=self.stack_console_url(stack["StackId"]),
            result=result,
        )


class CloudFormationCreateChangeSetOperator(CloudFormationBaseOperator):
    """Create a CloudFormation change set for a stack and (by default) wait until it is ready to review.

    The result summarizes the change for a gate and an approver. A change set without changes is a
    success with ``has_changes`` False (AWS reports it FAILED), so the DAG can skip execution. The
    result also records the stack's template and parameters *before* the change (NoEcho parameters
    left out), which ``CloudFormationRollbackOperator`` takes to undo a successful update.

    Safe to re-run: the change set is named after the task (``utils.idempotency.marker``) and its
    description carries a digest of its inputs, so a retry adopts the change set an earlier try made
    from the same inputs (ready, still being created, or empty), and replaces one that failed or was
    made from other inputs.

    .. seealso::
        - :external+boto3:py:meth:`CloudFormation.Client.create_change_set`
        - :external+boto3:py:meth:`CloudFormation.Client.describe_change_set`

    :param stack_name: the stack to change or create. (templated)
    :param template_file: path of the template, relative to ``templates_dir``. (templated)
    :param template_body: the template itself. Not templated: CloudFormation's own ``{{resolve:...}}``
        dynamic references would be taken for Jinja.
    :param template_url: S3 URL of the template. (templated)
    :param parameters: ``{key: value}``; a value of ``{"UsePreviousValue": True}`` keeps the current
        value. (templated)
    :param use_previous_values: on an update, parameters of the stack not in ``parameters`` keep their
        current values (as ``aws cloudformation deploy`` does) instead of reverting to the template's
        defaults. Default True.
    :param tags: ``{key: value}`` stack tags. (templated)
    :param capabilities: e.g. ``["CAPABILITY_NAMED_IAM"]``. (templated)
    :param change_set_type: ``CREATE`` or ``UPDATE``; default: CREATE if the stack does not exist (or
        is REVIEW_IN_PROGRESS), else UPDATE. (templated)
    :param change_set_name: default: the task's marker, the same for every try. (templated)
    :param description: shown in the console; Shipflow appends its inputs digest. (templated)
    :param role_arn: service role CloudFormation uses for the stack. (templated)
    :param templates_dir: where ``template_file`` is looked up (default ``include/templates/``).
    :param wait_for_completion: wait until the change set is ready (default True).
    :param waiter_delay: seconds between describes.
    :param waiter_max_attempts: describes before giving up.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :return: the change set summary (ids, has_changes, counts, replacements, IAM changes, changes,
        text), ``previous_template`` / ``previous_parameters`` / ``previous_noecho_parameters``, and
        the AWS calls made.
    """

    action = ACTION_CREATE_CHANGE_SET
    state_key = STATE_KEY_CHANGE_SET_ID
    template_fields: Sequence[str] = aws_template_fields(
        "stack_name",
        "template_file",
        "template_url",
        "parameters",
        "tags",
        "capabilities",
        "change_set_type",
        "change_set_name",
        "description",
        "role_arn",
    )
    template_fields_renderers = {"parameters": "json", "tags": "json"}
    operator_extra_links = (CloudFormationChangeSetLink(),)

    def __init__(
        self,
        *,
        stack_name: str,
        template_file: str | None = None,
        template_body: str | None = None,
        template_url: str | None = None,
        parameters: dict[str, Any] | None = None,
        use_previous_values: bool = True,
        tags: dict[str, str] | None = None,
        capabilities: list[str] | None = None,
        change_set_type: str | None = None,
        change_set_name: str | None = None,
        description: str | None = None,
        role_arn: str | None = None,
        templates_dir: str | Path | None = None,
        waiter_delay: int = DEFAULT_CHANGE_SET_WAITER_DELAY,
        waiter_max_attempts: int = DEFAULT_CHANGE_SET_WAITER_MAX_ATTEMPTS,
        **kwargs: Any,
    ) -> None:
        super().__init__(waiter_delay=waiter_delay, waiter_max_attempts=waiter_max_attempts, **kwargs)
        given = [
            name
            for name, value in (
                ("template_file", template_file),
                ("template_body", template_body),
                ("template_url", template_url),
            )
            if value
        ]
        if len(given) != 1:
            raise ValueError(
                f"{self.task_id}: give exactly one of template_file, template_body or template_url "
                f"(got {', '.join(given) or 'none'})"
            )
        if change_set_type not in (None, *CHANGE_SET_TYPES) and not is_templated(change_set_type):
            raise ValueError(f"{self.task_id}: change_set_type {change_set_type!r} must be CREATE, UPDATE or None")
        for capability in capabilities or []:
            if capability not in CAPABILITIES and not is_templated(capability):
                raise ValueError(f"{self.task_id}: capability {capability!r} is not one of {', '.join(CAPABILITIES)}")
        validate_parameters(parameters)
        self.stack_name = stack_name
        self.template_file = template_file
        self.template_body = template_body
        self.template_url = template_url
        self.parameters = parameters or {}
        self.use_previous_values = use_previous_values
        self.tags = tags or {}
        self.capabilities = capabilities or []
        self.change_set_type = change_set_type
        self.change_set_name = change_set_name
        self.description = description
        self.role_arn = role_arn
        self.templates_dir = templates_dir

    # -- inputs ----------------------------------------------------------------------------------------
    def read_template(self) -> dict[str, str]:
        """``TemplateBody`` or ``TemplateURL`` for the request."""
        if self.template_url:
            return {"TemplateURL": self.template_url}
        if self.template_body:
            return {"TemplateBody": self.template_body}
        base = Path(self.templates_dir or TEMPLATES_DIR).resolve()
        path = (base / str(self.template_file)).resolve()
        if not path.is_relative_to(base):
            raise AirflowFailException(
                f"{self.task_id}: template_file {self.template_file!r} points outside {base}; name a file under it"
            )
        if not path.is_file():
            raise AirflowFailException(
                f"{self.task_id}: template_file {self.template_file!r} not found (looked for {path}); "
                f"templates live in {base}"
            )
        return {"TemplateBody": path.read_text()}

    def resolve_type(self, stack: dict[str, Any] | None) -> str:
        if self.change_set_type:
            return self.change_set_type
        if stack is None or stack["StackStatus"] == STACK_REVIEW_IN_PROGRESS:
            return "CREATE"
        if stack["StackStatus"] == STACK_CREATE_ROLLED_BACK:
            raise AirflowFailException(
                f"Stack {self.stack_name} is {STACK_CREATE_ROLLED_BACK}: its creation failed and it can only be "
                f"deleted. Delete it (aws cloudformation delete-stack --stack-name {self.stack_name}) and run "
                "this task again to create it afresh."
            )
        return "UPDATE"

    def request_parameters(
        self, stack: dict[str, Any] | None, change_set_type: str, template: dict[str, str]
    ) -> list[dict[str, Any]]:
        validate_parameters(self.parameters)  # as rendered
        listed = parameter_list(self.parameters)
        if change_set_type != "UPDATE" or stack is None or not self.use_previous_values:
            return listed
        kept = sorted({p["ParameterKey"] for p in stack.get("Parameters", [])} - set(self.parameters))
        if kept:
            declared = self.hook.get_parameter_declarations(**template)
            listed += [{"ParameterKey": key, "UsePreviousValue": True} for key in kept if key in declared]
        return sorted(listed, key=lambda p: p["ParameterKey"])

    def previous_state(self, stack: dict[str, Any] | None, change_set: dict[str, Any] | None) -> dict[str, Any]:
        """The stack's template and parameters before the change, NoEcho parameters left out."""
        state: dict[str, Any] = {"previous_template": None, "previous_parameters": {}, "previous_noecho_parameters": []}
        if stack is None or stack["StackStatus"] == STACK_REVIEW_IN_PROGRESS:
            return state
        if change_set is not None and change_set.get("ExecutionStatus") in EXECUTION_STARTED_STATES:
            self.log.warning(
                "Change set %s was executed already: the stack's earlier state is unknown here",
                change_set["ChangeSetId"],
            )
            return state
        declared = self.hook.get_parameter_declarations(StackName=stack["StackId"])
        noecho = sorted(key for key, declaration in declared.items() if declaration.get("NoEcho"))
        state["previous_template"] = self.hook.get_template_body(stack["StackId"])
        state["previous_parameters"] = {
            p["ParameterKey"]: p.get("ParameterValue", "")
            for p in stack.get("Parameters", [])
            if p["ParameterKey"] not in noecho
        }
        state["previous_noecho_parameters"] = noecho
        return state

    # -- finding or creating the change set ----------------------------------------------------------
    def find_earlier(self, context: Any, name: str, stack: dict[str, Any] | None, digest: str) -> dict[str, Any] | None:
        """The change set an earlier try made from the same inputs, if it can be used."""
        if stack is None:
            return None  # no stack, so none of its change sets either
        remembered = self.remembered_id(context)
        change_set = self.hook.describe_change_set(remembered, self.stack_name) if remembered else None
        change_set = change_set or self.hook.describe_change_set(name, self.stack_name)
        if change_set is None:
            return None
        status, execution = change_set.get("Status"), change_set.get("ExecutionStatus")
        same_inputs = INPUTS_DIGEST_FORMAT.format(digest=digest) in (change_set.get("Description") or "")
        if same_inputs and (status == CHANGE_SET_CREATE_COMPLETE or status in CHANGE_SET_PENDING_STATES):
            return change_set
        if same_inputs and is_no_change(change_set):
            return change_set
        if execution == EXECUTION_IN_PROGRESS:
            raise AwsActionFailed(
                f"Change set {name} of an earlier try is being executed and was made from other inputs",
                resource_id=change_set["ChangeSetId"],
                status=execution,
                reason="wait for the execution to end, then run this task again",
            )
        why = "was made from other inputs" if not same_inputs else f"{status}: {change_set.get('StatusReason')}"
        self.log.info("Replacing change set %s of an earlier try: it %s", change_set["ChangeSetId"], why)
        self.hook.delete_change_set(change_set["ChangeSetId"])
        return None

    def create(
        self,
        context: Any,
        name: str,
        change_set_type: str,
        template: dict[str, str],
        parameters: list[dict[str, Any]],
        digest: str,
    ) -> dict[str, Any]:
        tag = INPUTS_DIGEST_FORMAT.format(digest=digest)
        description = f"{(self.description or DEFAULT_DESCRIPTION)[: 1023 - len(tag)]} {tag}"
        kwargs: dict[str, Any] = {
            "StackName": self.stack_name,
            "ChangeSetName": name,
            "ChangeSetType": change_set_type,
            **template,
            "Parameters": parameters,
            "Capabilities": list(self.capabilities),
            "Description": description,
            "ClientToken": client_token(context, "create_change_set"),
        }
        if self.tags:  # an empty list would remove the stack's tags
            kwargs["Tags"] = [{"Key": k, "Value": str(v)} for k, v in sorted(self.tags.items())]
        if self.role_arn:
            kwargs["RoleARN"] = self.role_arn
        created = self.hook.create_change_set(**kwargs)
        self.log.info("Created %s change set %s for stack %s", change_set_type, created["Id"], self.stack_name)
        return {"ChangeSetId": created["Id"], "StackId": created["StackId"], "Status": "CREATE_PENDING"}

    # -- execution ---------------------------------------------------------------------------------------
    def execute(self, context: Any) -> dict[str, Any]:
        record = self.new_record(self.action)
        template = self.read_template()
        stack = self.hook.get_stack(self.stack_name)
        change_set_type = self.resolve_type(stack)
        name = self.change_set_name or marker(context)
        parameters = self.request_parameters(stack, change_set_type, template)
        digest = inputs_digest(
            change_set_type, template, parameters, sorted(self.tags.items()), sorted(self.capabilities), self.role_arn
        )
        change_set = self.find_earlier(context, name, stack, digest)
        adopted = change_set is not None
        record.update(adopted=adopted, change_set_type=change_set_type, **self.previous_state(stack, change_set))
        if change_set is None:
            change_set = self.create(context, name, change_set_type, template, parameters, digest)
        else:
            self.log.info(
                "Adopted change set %s (%s) of an earlier try", change_set["ChangeSetId"], change_set["Status"]
            )
        change_set_id = change_set["ChangeSetId"]
        self.remember_id(context, change_set_id)
        record.update(change_set_id=change_set_id, stack_id=change_set["StackId"], stack_name=self.stack_name)
        record.update(console_url=self.change_set_console_url(change_set["StackId"], change_set_id))
        CloudFormationChangeSetLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            stack_id=quote(change_set["StackId"], safe=""),
            change_set_id=quote(change_set_id, safe=""),
        )
        if change_set["Status"] not in CHANGE_SET_PENDING_STATES or not self.wait_for_completion:
            return self.finish(record, change_set if "Changes" in change_set else None)
        if self.deferrable:
            self.defer(
                trigger=CloudFormationChangeSetReadyTrigger(
                    change_set_id=change_set_id,
                    **self.trigger_kwargs(),
                ),
                method_name="execute_complete",
                kwargs={"record": record.as_dict()},
            )
        try:
            wait(
                waiter=self.hook.get_waiter(WAITER_CHANGE_SET_READY),
                waiter_delay=self.waiter_delay,
                waiter_max_attempts=self.waiter_max_attempts,
                args={"ChangeSetName": change_set_id},
                failure_message="CloudFormation change set failed",
                status_message="CloudFormation change set status",
                status_args=["Status", "StatusReason"],
            )
        except AirflowException as error:
            self.log.info("Waiter ended: %s", error)
        return self.finish(record)

    def execute_complete(
        self, context: Any, event: dict[str, Any] | None = None, record: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        self.validate_event(event, key="change_set_id", expected=(record or {}).get("change_set_id", ""))
        return self.finish(self.new_record(self.action, earlier=record))

    def change_set_console_url(self, stack_id: str, change_set_id: str) -> str:
        return CloudFormationChangeSetLink().format_link(
            **self._link_fields(), stack_id=quote(stack_id, safe=""), change_set_id=quote(change_set_id, safe="")
        )

    def finish(self, record: Any, change_set: dict[str, Any] | None = None) -> dict[str, Any]:
        change_set_id = record.fields["change_set_id"]
        change_set = change_set or self.hook.describe_change_set(change_set_id)
        if change_set is None:
            raise AwsActionFailed(
                f"Change set of stack {self.stack_name} disappeared",
                resource_id=change_set_id,
                status="DELETED",
                reason="deleted while it was being created",
                result=record.as_dict(),
            )
        summary = change_set_summary(change_set, record.fields["change_set_type"])
        result = record.update(**summary).as_dict()
        if summary["status"] == CHANGE_SET_FAILED and not is_no_change(change_set):
            raise AwsActionFailed(
                f"CloudFormation change set for stack {summary['stack_name']} failed",
                resource_id=change_set_id,
                status=summary["status"],
                reason=summary["status_reason"],
                console_url=record.fields.get("console_url", ""),
                result=result,
            )
        if summary["has_changes"] is None and self.wait_for_completion:
            raise AwsActionFailed(
                f"CloudFormation change set for stack {summary['stack_name']} was not ready in time",
                resource_id=change_set_id,
                status=summary["status"],
                reason=f"still {summary['status']} after {self.waiter_max_attempts} describes",
                console_url=record.fields.get("console_url", ""),
                result=result,
            )
        self.log.info("%s", summary["text"])
        return result


class CloudFormationExecuteChangeSetOperator(CloudFormationBaseOperator):
    """Execute a change set and (by default) wait until the stack operation ends.

    On failure it raises ``AwsActionFailed`` naming the resources that failed and AWS's reasons, taken
    from the events of this execution only (its ClientRequestToken), with the final stack status and
    a console link. Given a summary without changes it returns ``skipped=True`` without calling AWS.

    Safe to re-run: a change set executes once. A retry finds the execution an earlier try started
    (the token kept in the task state store, or found in the stack's events) and waits for it, or
    takes its result.

    .. seealso::
        - :external+boto3:py:meth:`CloudFormation.Client.execute_change_set`
        - :external+boto3:py:meth:`CloudFormation.Client.describe_stack_events`

    :param change_set: the ``CloudFormationCreateChangeSetOperator`` result (e.g. ``plan.output``), or
        a change set ARN. (templated)
    :param stack_name: the stack, needed only when ``change_set`` is a change set name. (templated)
    :param disable_rollback: leave a failed update UPDATE_FAILED (for inspection, then
        ``CloudFormationRollbackOperator``) instead of rolling it back.
    :param wait_for_completion: wait until the stack operation ends (default True).
    :param waiter_delay: seconds between describes.
    :param waiter_max_attempts: describes before giving up.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :return: ``skipped``, the stack's final status and outputs, ``adopted``, the token, ``failed_resources``
        (empty on success), a console link, and the AWS calls made.
    """

    action = ACTION_EXECUTE_CHANGE_SET
    state_key = STATE_KEY_EXECUTE_TOKEN
    template_fields: Sequence[str] = aws_template_fields("change_set", "stack_name")
    template_fields_renderers = {"change_set": "json"}

    def __init__(
        self,
        *,
        change_set: str | dict[str, Any],
        stack_name: str | None = None,
        disable_rollback: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(change_set, (str, dict)) and not hasattr(change_set, "resolve"):
            raise ValueError(
                f"{self.task_id}: change_set must be a change set summary (dict) or ARN, got {change_set!r}"
            )
        self.change_set = change_set
        self.stack_name = stack_name
        self.disable_rollback = disable_rollback

    def target(self) -> tuple[str, str | None, dict[str, Any] | None]:
        """(change set id or name, stack name, summary if one was given), from the rendered input."""
        if isinstance(self.change_set, dict):
            change_set_id = self.change_set.get("change_set_id")
            if not change_set_id:
                raise AirflowFailException(
                    f"{self.task_id}: change_set has no change_set_id; pass the create task's result or an ARN"
                )
            return change_set_id, self.change_set.get("stack_name") or self.stack_name, self.change_set
        if not self.change_set:
            raise AirflowFailException(f"{self.task_id}: change_set is empty")
        return str(self.change_set), self.stack_name, None

    def execute(self, context: Any) -> dict[str, Any]:
        record = self.new_record(self.action)
        change_set_id, stack_name, summary = self.target()
        record.update(change_set_id=change_set_id, stack_name=stack_name)
        if summary is not None and summary.get("has_changes") is False:
            self.log.info("Nothing to execute: %s", summary.get("text") or summary.get("status_reason"))
            return record.update(skipped=True, reason=summary.get("status_reason", "")).as_dict()
        change_set = self.hook.describe_change_set(change_set_id, stack_name)
        if change_set is None:
            raise AirflowFailException(
                f"Change set {change_set_id} does not exist (deleted, or its stack was): create a new one"
            )
        if is_no_change(change_set):
            self.log.info("Nothing to execute: %s", change_set.get("StatusReason"))
            return record.update(skipped=True, reason=change_set.get("StatusReason") or "").as_dict()
        stack_id, execution = change_set["StackId"], change_set.get("ExecutionStatus")
        record.update(
            skipped=False,
            change_set_id=change_set["ChangeSetId"],
            stack_name=change_set["StackName"],
            stack_id=stack_id,
            change_set_created=change_set["CreationTime"].isoformat(),
            console_url=self.stack_console_url(stack_id),
        )
        self.persist_stack_link(context, stack_id)
        stack = self.hook.get_stack(stack_id) or {}
        if execution == EXECUTION_AVAILABLE:
            # A CREATE change set's stack waits in REVIEW_IN_PROGRESS until it is executed.
            operation = "create" if stack.get("StackStatus") == STACK_REVIEW_IN_PROGRESS else "update"
            token = self.send_token(context)
            self.hook.execute_change_set(change_set["ChangeSetId"], token, self.disable_rollback)
            self.log.info("Executing change set %s on stack %s (%s)", change_set["ChangeSetName"], stack_id, operation)
            record.update(adopted=False, client_request_token=token, operation=operation)
            return self.wait_for_stack(context, record, stack_id, operation)
        if execution not in EXECUTION_STARTED_STATES:
            raise AwsActionFailed(
                f"Change set {change_set['ChangeSetName']} cannot be executed",
                resource_id=change_set["ChangeSetId"],
                status=f"{change_set.get('Status')}/{execution}",
                reason=self.not_executable_reason(change_set),
            )
        # Executed already: by an earlier try of this task (its token is in the events), or by someone else.
        operation = _operation_of(stack.get("StackStatus", ""))
        own = set(self.own_tokens(context))
        token = next((e["ClientRequestToken"] for e in self.hook.stack_events(stack_id, tokens=own)), None)
        if token is None:
            self.log.warning("Change set %s was executed outside this task; judging the stack as it is", change_set_id)
        else:
            self.log.info("Adopted the execution of change set %s started with token %s", change_set_id, token)
        record.update(adopted=True, client_request_token=token, operation=operation)
        if stack.get("StackStatus") in STACK_IN_PROGRESS_STATES:
            # Wait only if what runs is our execution (or its rollback), not an operation that followed it.
            latest = next(iter(self.hook.stack_events(stack_id, pages=1)), {})
            if token is None or latest.get("ClientRequestToken") == token:
                return self.wait_for_stack(context, record, stack_id, operation)
        return self.finish(record)

    @staticmethod
    def not_executable_reason(change_set: dict[str, Any]) -> str:
        if change_set.get("Status") in CHANGE_SET_PENDING_STATES:
            return "it is still being created: let the create task wait for it (wait_for_completion)"
        if change_set.get("ExecutionStatus") == EXECUTION_OBSOLETE:
            return "it is OBSOLETE: the stack changed after it was made; create a new change set"
        return change_set.get("StatusReason") or f"execution status {change_set.get('ExecutionStatus')}"

    def finish(self, record: Any) -> dict[str, Any]:
        fields = record.fields
        stack = self.hook.get_stack(fields["stack_id"]) or {
            "StackId": fields["stack_id"],
            "StackName": fields["stack_name"],
            "StackStatus": STACK_DELETE_COMPLETE,
        }
        events = self.operation_events(
            fields["stack_id"], fields.get("client_request_token"), fields["change_set_created"]
        )
        own_statuses = [
            e["ResourceStatus"]
            for e in events
            if e.get("ResourceType") == STACK_RESOURCE_TYPE and e.get("PhysicalResourceId") == fields["stack_id"]
        ]
        # The outcome of *this* execution: its newest stack event (another operation may have followed it).
        status = own_statuses[0] if own_statuses and fields.get("client_request_token") else stack["StackStatus"]
        failures = failed_resources(events)
        result = record.update(
            status=status,
            stack_status=stack["StackStatus"],
            stack_status_reason=stack.get("StackStatusReason") or "",
            outputs=outputs_of(stack) if status in STACK_SUCCESS_STATES else {},
            failed_resources=failures,
        ).as_dict()
        if status in STACK_FAILURE_STATES or status == STACK_DELETE_COMPLETE:
            raise AwsActionFailed(
                f"CloudFormation {fields['operation']} of stack {stack['StackName']} ended {status}",
                resource_id=stack["StackId"],
                status=status,
                reason=failure_reason(failures, stack),
                console_url=fields["console_url"],
                result=result,
            )
        if status not in STACK_SUCCESS_STATES and self.wait_for_completion:
            raise self.timed_out(fields["operation"], {**stack, "StackStatus": status}, result)
        return result


class CloudFormationRollbackOperator(CloudFormationBaseOperator):
    """Roll back what a failed or unwanted stack update did, in the way the stack's status calls for.

    ====================================== ==========================================================
    stack status                           action
    ====================================== ==========================================================
    UPDATE_FAILED, CREATE_FAILED           ``RollbackStack``
    UPDATE_ROLLBACK_FAILED                 ``ContinueUpdateRollback`` (``resources_to_skip``)
    UPDATE_IN_PROGRESS                     ``CancelUpdateStack`` (an undo this task started: wait)
    \\*ROLLBACK_IN_PROGRESS                 wait for the rollback under way
    UPDATE_ROLLBACK_COMPLETE,              nothing: already rolled back
    ROLLBACK_COMPLETE
    UPDATE_COMPLETE                        undo: ``UpdateStack`` with ``previous_template`` and
                                           ``previous_parameters`` (from the change set summary)
    ====================================== ==========================================================

    It waits for the end and verifies it (the expected status; for an undo also the template and
    parameters), and raises ``AwsActionFailed`` if the rollback itself failed. Safe to re-run: a
    retry waits for a rollback or undo an earlier try started, and an undo of a stack that already
    matches ``previous_template`` changes nothing.

    .. seealso::
        - :external+boto3:py:meth:`CloudFormation.Client.rollback_stack`
        - :external+boto3:py:meth:`CloudFormation.Client.continue_update_rollback`
        - :external+boto3:py:meth:`CloudFormation.Client.cancel_update_stack`
        - :external+boto3:py:meth:`CloudFormation.Client.update_stack`

    :param stack_name: the stack. (templated)
    :param previous_template: the template to restore after a successful update, e.g.
        ``plan.output["previous_template"]``. (templated)
    :param previous_parameters: the parameters to restore with it, e.g. ``plan.output["previous_parameters"]``;
        parameters not given (NoEcho ones) keep their current values. A Jinja template renders to
        text, so render it as JSON: ``"{{ ti.xcom_pull(...)['previous_parameters'] | tojson }}"``. (templated)
    :param capabilities: for the undo; default: the stack's current capabilities. (templated)
    :param resources_to_skip: for ``ContinueUpdateRollback``: resources to leave as they are. (templated)
    :param wait_for_completion: wait until the rollback ends (default True).
    :param waiter_delay: seconds between describes.
    :param waiter_max_attempts: describes before giving up.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :return: ``rollback_action``, ``initial_status``, ``final_status``, ``verified``, ``failed_resources``,
        ``kept_parameters`` (undo), a console link, and the AWS calls made.
    """

    action = ACTION_ROLLBACK
    state_key = STATE_KEY_ROLLBACK_TOKEN
    template_fields: Sequence[str] = aws_template_fields(
        "stack_name", "previous_template", "previous_parameters", "capabilities", "resources_to_skip"
    )
    template_fields_renderers = {"previous_parameters": "json", "previous_template": "yaml"}

    def __init__(
        self,
        *,
        stack_name: str,
        previous_template: str | None = None,
        previous_parameters: dict[str, Any] | None = None,
        capabilities: list[str] | None = None,
        resources_to_skip: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(previous_parameters, str):  # a template or JSON text is checked as rendered
            validate_parameters(previous_parameters, "previous_parameters")
        self.stack_name = stack_name
        self.previous_template = previous_template
        self.previous_parameters = previous_parameters
        self.capabilities = capabilities
        self.resources_to_skip = resources_to_skip or []

    def execute(self, context: Any) -> dict[str, Any]:
        try:
            self.previous_parameters = rendered_parameters(self.previous_parameters, "previous_parameters")
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
        record = self.new_record(self.action)
        stack = self.hook.get_stack(self.stack_name)
        if stack is None:
            raise AirflowFailException(f"Stack {self.stack_name} does not exist: there is nothing to roll back")
        stack_id, status = stack["StackId"], stack["StackStatus"]
        record.update(
            stack_name=self.stack_name,
            stack_id=stack_id,
            initial_status=status,
            console_url=self.stack_console_url(stack_id),
            kept_parameters=[],
        )
        self.persist_stack_link(context, stack_id)
        rolled_back = STACK_CREATE_ROLLED_BACK if _operation_of(status) == "create" else STACK_UPDATE_ROLLED_BACK

        if status in STACK_LEFT_FAILED_STATES:
            token = self.send_token(context)
            self.hook.rollback_stack(stack_id, token)
            return self.started(context, record, "rollback_stack", token, rolled_back, "rollback")
        if status == STACK_UPDATE_ROLLBACK_FAILED:
            token = self.send_token(context)
            self.hook.continue_update_rollback(stack_id, token, list(self.resources_to_skip))
            return self.started(context, record, "continue_update_rollback", token, rolled_back, "rollback")
        if status == STACK_UPDATE_IN_PROGRESS:
            own = self.own_tokens(context)
            latest = next(iter(self.hook.stack_events(stack_id, pages=1)), {})
            if latest.get("ClientRequestToken") in own:  # our own undo, started by an earlier try
                record.update(kept_parameters=self.kept_parameters(stack))
                return self.started(
                    context,
                    record,
                    "update_stack",
                    latest["ClientRequestToken"],
                    STACK_UPDATE_COMPLETE,
                    "update",
                    adopted=True,
                )
            token = self.send_token(context)
            self.hook.cancel_update_stack(stack_id, token)
            return self.started(context, record, "cancel_update_stack", token, rolled_back, "rollback")
        if status in STACK_ROLLING_BACK_STATES:
            self.log.info("Stack %s is %s: waiting for the rollback under way", self.stack_name, status)
            return self.started(context, record, "none", None, rolled_back, "rollback", adopted=True)
        if status in STACK_ROLLED_BACK_STATES:
            self.log.info("Stack %s is %s: already rolled back", self.stack_name, status)
            record.update(rollback_action="none", already_rolled_back=True, expected_status=status)
            return self.finish(record)
        if status == STACK_UPDATE_COMPLETE and self.previous_template:
            own = self.own_tokens(context)
            latest = next(iter(self.hook.stack_events(stack_id, pages=1)), {})
            if latest.get("ClientRequestToken") in own:  # an earlier try's undo ended before that try did
                self.log.info("Stack %s: the undo an earlier try started has completed", self.stack_name)
                record.update(
                    rollback_action="update_stack",
                    client_request_token=latest["ClientRequestToken"],
                    expected_status=STACK_UPDATE_COMPLETE,
                    operation="update",
                    adopted=True,
                    already_rolled_back=False,
                    kept_parameters=self.kept_parameters(stack),
                )
                return self.finish(record)
            return self.undo(context, record, stack)
        if status == STACK_UPDATE_COMPLETE:
            raise AirflowFailException(
                f"Stack {self.stack_name} is UPDATE_COMPLETE: no failed update to roll back. To undo the update, pass "
                "previous_template and previous_parameters from the change set summary (plan.output[...])."
            )
        if status in STACK_IN_PROGRESS_STATES:  # e.g. an update cleaning up: a retry decides once it settles
            raise AirflowException(f"Stack {self.stack_name} is {status}: retry when the operation has ended")
        raise AirflowFailException(f"Stack {self.stack_name} is {status}: Shipflow does not roll back from this status")

    def kept_parameters(self, stack: dict[str, Any]) -> list[str]:
        """Parameters an undo leaves at their current values: those not in ``previous_parameters``."""
        given = set(self.previous_parameters or {})
        return sorted(p["ParameterKey"] for p in stack.get("Parameters", []) if p["ParameterKey"] not in given)

    def undo(self, context: Any, record: Any, stack: dict[str, Any]) -> dict[str, Any]:
        """Apply the template and parameters of before the update, as an update of their own."""
        stack_id = stack["StackId"]
        declared = self.hook.get_parameter_declarations(TemplateBody=self.previous_template)
        kept = [key for key in self.kept_parameters(stack) if key in declared]
        parameters = parameter_list(self.previous_parameters or {})
        parameters += [{"ParameterKey": key, "UsePreviousValue": True} for key in kept]
        record.update(kept_parameters=kept)
        token = self.send_token(context)
        try:
            self.hook.update_stack(
                StackName=stack_id,
                TemplateBody=self.previous_template,
                Parameters=sorted(parameters, key=lambda p: p["ParameterKey"]),
                Capabilities=list(
                    self.capabilities if self.capabilities is not None else stack.get("Capabilities", [])
                ),
                ClientRequestToken=token,
            )
        except ClientError as error:
            if not any(text in str(error) for text in NO_CHANGE_REASONS):
                raise
            self.log.info("Stack %s already has the previous template and parameters", self.stack_name)
            record.update(rollback_action="none", already_rolled_back=True, expected_status=STACK_UPDATE_COMPLETE)
            return self.finish(record)
        self.log.info("Re-applying the previous template and parameters to stack %s", self.stack_name)
        return self.started(context, record, "update_stack", token, STACK_UPDATE_COMPLETE, "update")

    def started(
        self,
        context: Any,
        record: Any,
        action: str,
        token: str | None,
        expected: str,
        operation: str,
        adopted: bool = False,
    ) -> dict[str, Any]:
        record.update(
            rollback_action=action,
            client_request_token=token,
            expected_status=expected,
            operation=operation,
            adopted=adopted,
            already_rolled_back=False,
        )
        return self.wait_for_stack(context, record, record.fields["stack_id"], operation)

    def verify_undo(self, stack: dict[str, Any]) -> bool:
        """The stack has the previous template and parameters (NoEcho ones cannot be compared)."""
        current = self.hook.get_template_body(stack["StackId"])
        try:
            same_template = json.loads(current) == json.loads(str(self.previous_template))
        except ValueError:
            same_template = current.strip() == str(self.previous_template).strip()
        values = {p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters", [])}
        same_parameters = all(
            values.get(key) == parameter_value(value)
            # Rendered again when a deferred try resumes: a ``| tojson`` string here, not the dict execute() made.
            for key, value in (rendered_parameters(self.previous_parameters, "previous_parameters") or {}).items()
            if value != USE_PREVIOUS_VALUE
        )
        return same_template and same_parameters

    def finish(self, record: Any) -> dict[str, Any]:
        fields = record.fields
        stack = self.hook.get_stack(fields["stack_id"])
        if stack is None:
            raise AwsActionFailed(
                f"Stack {fields['stack_name']} disappeared during the rollback",
                resource_id=fields["stack_id"],
                status=STACK_DELETE_COMPLETE,
                reason="the stack was deleted",
            )
        status, expected = stack["StackStatus"], fields["expected_status"]
        verified = status == expected
        if verified and fields.get("rollback_action") in ("update_stack", "none") and expected == STACK_UPDATE_COMPLETE:
            verified = self.verify_undo(stack)
        token = fields.get("client_request_token")
        failures = failed_resources(self.operation_events(stack["StackId"], token)) if status != expected else []
        result = record.update(final_status=status, verified=verified, failed_resources=failures).as_dict()
        if status in STACK_FAILED_STATES or (status != expected and status in STACK_FAILURE_STATES):
            raise AwsActionFailed(
                f"CloudFormation rollback ({fields['rollback_action']}) of stack {stack['StackName']} ended {status}",
                resource_id=stack["StackId"],
                status=status,
                reason=failure_reason(failures, stack),
                console_url=fields["console_url"],
                result=result,
            )
        if status in STACK_IN_PROGRESS_STATES and self.wait_for_completion:
            raise self.timed_out(f"rollback ({fields['rollback_action']})", stack, result)
        return result
