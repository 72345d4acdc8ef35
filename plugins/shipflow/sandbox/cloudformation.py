"""Sandbox extension for CloudFormation: stack operations that take time, fail and roll back.

Stock moto finishes every stack operation inside the API call and can neither fail nor roll back.
Here each operation (CreateStack, UpdateStack, ExecuteChangeSet, DeleteStack, RollbackStack,
CancelUpdateStack, ContinueUpdateRollback) is a ``Lifecycle`` of steps under the model
``cloudformation::stack``. It starts in its ``*_IN_PROGRESS`` status and each step records the stack
and resource events AWS would, at the speed set for the model: immediate by default, ``manual``
counting DescribeStacks / DescribeStackEvents calls, or ``time``.

moto still does the resource work, so an SNS topic really exists once its stack is created: creates
and updates apply when the operation starts, deletions when it reaches its end, and a rolled-back
update applies the previous template and parameters again.

A ``fail`` fault (service ``cloudformation``, target: the stack name, or none for any stack) is
consumed when an operation starts that creates, updates or deletes the resource it names:

- ``resource``: logical id of the resource that fails (default: the first one the operation touches);
- ``reason``: its ResourceStatusReason (default: an AccessDenied handler message, as AWS words it);
- ``rollback_fails``: the rollback fails too (ROLLBACK_FAILED / UPDATE_ROLLBACK_FAILED).

Change sets default to ChangeSetType UPDATE as in AWS, list their changes with Replacement, Scope
and Details worked out from the two templates, and end FAILED when nothing would change.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore import xform_name
from moto.cloudformation import responses as cfn_responses
from moto.cloudformation.exceptions import AlreadyExistsException, ValidationError
from moto.cloudformation.models import CloudFormationBackend, Event, Stack, cloudformation_backends
from moto.cloudformation.parsing import ResourceMap, resource_name_property_from_type
from moto.cloudformation.utils import generate_changeset_id, generate_stack_id, get_stack_from_s3_url
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import get_service_model, utcnow
from moto.utilities.utils import get_partition

from shipflow.sandbox.errors import AwsError
from shipflow.sandbox.faults import REGISTRY
from shipflow.sandbox.lifecycle import Lifecycle, register_model

log = logging.getLogger(__name__)

MODEL = "cloudformation::stack"
STACK_TYPE = "AWS::CloudFormation::Stack"
USER_INITIATED = "User Initiated"
DEFAULT_FAILURE_REASON = 'Resource handler returned message: "Access Denied" (HandlerErrorCode: AccessDenied)'
NO_CHANGES = "The submitted information didn't contain changes. Submit different information to create a change set."
UPDATABLE = frozenset("CREATE_COMPLETE UPDATE_COMPLETE UPDATE_ROLLBACK_COMPLETE CREATE_FAILED UPDATE_FAILED".split())
# Outside these a stack shows no Outputs (AWS publishes them once created). That also keeps moto
# from creating again, while it resolves an output, a resource the stack has deleted.
SHOWS_OUTPUTS = frozenset(
    "CREATE_COMPLETE UPDATE_IN_PROGRESS UPDATE_COMPLETE_CLEANUP_IN_PROGRESS UPDATE_COMPLETE UPDATE_FAILED "
    "UPDATE_ROLLBACK_IN_PROGRESS UPDATE_ROLLBACK_FAILED UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS "
    "UPDATE_ROLLBACK_COMPLETE".split()
)
# Properties whose change replaces the resource (AWS: "Update requires: Replacement"), besides the
# type's name property (TopicName, QueueName, RoleName...), which moto knows.
REPLACING_PROPERTIES = {
    "AWS::SNS::Topic": {"FifoTopic"},
    "AWS::SNS::Subscription": {"Endpoint", "Protocol", "TopicArn"},
    "AWS::SQS::Queue": {"FifoQueue"},
    "AWS::IAM::Role": {"Path"},
    "AWS::Lambda::Function": {"PackageType"},
    "AWS::DynamoDB::Table": {"KeySchema"},
    "AWS::EC2::Instance": {"ImageId", "AvailabilityZone", "SubnetId", "KeyName"},
    "AWS::EC2::SecurityGroup": {"GroupDescription", "VpcId"},
}
STACK_NAME = re.compile(r"[a-zA-Z][-a-zA-Z0-9]*|arn:[-a-zA-Z0-9:/._+]*")
CHANGE_SET_NAME = re.compile(r"[a-zA-Z][-a-zA-Z0-9]*")

# Every CloudFormation action runs under this lock: moto's models are not thread-safe, and a read
# may move a stack along its steps (and so change resources of other services).
_LOCK = threading.RLock()


# --------------------------------------------------------------------------------------------
# Templates: references, dependency order and the changes between two of them
# --------------------------------------------------------------------------------------------
def _parse(template: Any) -> dict[str, Any]:
    """A fresh parse: moto's resource map edits the dicts it is given, so they are never shared."""
    if not template:
        return {}
    if isinstance(template, str):
        return Stack.parse_template(template) or {}
    return json.loads(json.dumps(template))


def _resources(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return template.get("Resources") or {}


def _references(value: Any) -> Iterator[tuple[str, str | None]]:
    """(name, attribute) for each Ref (attribute None), Fn::GetAtt and ${...} of Fn::Sub."""
    if isinstance(value, list):
        for item in value:
            yield from _references(item)
    if not isinstance(value, dict):
        return
    if len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref" and isinstance(arg, str):
            yield arg, None
            return
        if key == "Fn::GetAtt":
            parts = arg.split(".", 1) if isinstance(arg, str) else arg
            if isinstance(parts, list) and len(parts) == 2:
                yield str(parts[0]), str(parts[1])
            return
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1] if len(arg) > 1 else {})
            for name in re.findall(r"\$\{([^!}][^}]*)\}", str(text)):
                if name not in variables:
                    ref, _, attribute = name.partition(".")
                    yield ref, attribute or None
            yield from _references(variables)
            return
    for item in value.values():
        yield from _references(item)


def _dependency_order(resources: dict[str, dict[str, Any]]) -> list[str]:
    """Logical ids, each after what it depends on (DependsOn, Ref, GetAtt), else in template order."""
    order: list[str] = []

    def visit(logical_id: str, path: set[str]) -> None:
        if logical_id in order or logical_id in path:
            return
        path.add(logical_id)
        resource = resources[logical_id]
        depends_on = resource.get("DependsOn") or []
        needs = [depends_on] if isinstance(depends_on, str) else list(depends_on)
        needs += [name for name, _ in _references(resource.get("Properties"))]
        for need in needs:
            if need in resources:
                visit(need, path)
        order.append(logical_id)

    for logical_id in resources:
        visit(logical_id, set())
    return order


def _target(resource_type: str, prop: str) -> dict[str, str]:
    if prop == "Tags":
        return {"Attribute": "Tags", "RequiresRecreation": "Never"}
    replaces = prop in REPLACING_PROPERTIES.get(resource_type, ()) or (
        resource_type.startswith("AWS::") and prop == resource_name_property_from_type(resource_type)
    )
    return {"Attribute": "Properties", "Name": prop, "RequiresRecreation": "Always" if replaces else "Never"}


def _detail(target: dict[str, str], evaluation: str, source: str, entity: str | None = None) -> dict[str, Any]:
    detail = {"Target": target, "Evaluation": evaluation, "ChangeSource": source}
    if entity:
        detail["CausingEntity"] = entity
    return detail


def _static_details(before: dict[str, Any], after: dict[str, Any], changed_parameters: set[str]) -> list[dict]:
    old, new = before.get("Properties") or {}, after.get("Properties") or {}
    details = []
    for prop in [*new, *(p for p in old if p not in new)]:
        target = _target(after.get("Type", ""), prop)
        if old.get(prop) != new.get(prop):
            details.append(_detail(target, "Static", "DirectModification"))
        referenced = {name for name, attribute in _references(new.get(prop)) if attribute is None}
        details += [_detail(target, "Static", "ParameterReference", p) for p in sorted(referenced & changed_parameters)]
    if before.get("Metadata") != after.get("Metadata"):
        details.append(
            _detail({"Attribute": "Metadata", "RequiresRecreation": "Never"}, "Static", "DirectModification")
        )
    return details


def _dynamic_details(resource: dict[str, Any], replaced: set[str], modified: set[str]) -> list[dict]:
    """A replaced resource gets a new Ref value, a modified one may get new attribute values."""
    details = []
    for prop, value in (resource.get("Properties") or {}).items():
        for name, attribute in _references(value):
            if attribute is None and name in replaced:
                details.append(_detail(_target(resource["Type"], prop), "Dynamic", "ResourceReference", name))
            elif attribute is not None and name in modified:
                entity = f"{name}.{attribute}"
                details.append(_detail(_target(resource["Type"], prop), "Dynamic", "ResourceAttribute", entity))
    return details


def _replacement(details: list[dict]) -> str:
    if any(d["Target"]["RequiresRecreation"] == "Always" and d["Evaluation"] == "Static" for d in details):
        return "True"
    return "Conditional" if any(d["Target"]["RequiresRecreation"] != "Never" for d in details) else "False"


def _change(action: str, logical_id: str, resource: dict[str, Any], physical_id: str | None = None) -> dict:
    change = {"Action": action, "LogicalResourceId": logical_id, "ResourceType": resource["Type"]}
    if physical_id:
        change["PhysicalResourceId"] = physical_id
    return {**change, "Scope": [], "Details": []}


def plan_changes(
    old: dict[str, Any], new: dict[str, Any], changed_parameters: set[str], physical_ids: dict[str, str]
) -> list[dict[str, Any]]:
    """The ResourceChange entries (Add / Modify / Remove) a change set lists, as AWS words them."""
    old_resources, new_resources = _resources(old), _resources(new)
    kept = [lid for lid in new_resources if lid in old_resources]
    details: dict[str, list[dict]] = {}
    for lid in kept:
        found = _static_details(old_resources[lid], new_resources[lid], changed_parameters)
        if found:
            details[lid] = found
    grew = True
    while grew:  # a change travels along references until nothing more changes
        grew = False
        replaced = {lid for lid, found in details.items() if _replacement(found) != "False"}
        for lid in kept:
            for detail in _dynamic_details(new_resources[lid], replaced, set(details)):
                if detail not in details.get(lid, []):
                    details.setdefault(lid, []).append(detail)
                    grew = True

    changes = []
    for lid in _dependency_order(new_resources):
        if lid not in old_resources:
            changes.append(_change("Add", lid, new_resources[lid]))
        elif lid in details:
            change = _change("Modify", lid, new_resources[lid], physical_ids.get(lid))
            change["Replacement"] = _replacement(details[lid])
            change["Scope"] = sorted({d["Target"]["Attribute"] for d in details[lid]})
            change["Details"] = details[lid]
            if change["Replacement"] == "True":
                change["PolicyAction"] = "ReplaceAnd" + new_resources[lid].get("UpdateReplacePolicy", "Delete")
            changes.append(change)
    for lid, resource in old_resources.items():
        if lid not in new_resources:
            change = _change("Remove", lid, resource, physical_ids.get(lid))
            changes.append({**change, "PolicyAction": resource.get("DeletionPolicy", "Delete")})
    return changes


# --------------------------------------------------------------------------------------------
# Operations as steps
# --------------------------------------------------------------------------------------------
# A resource an operation touches: logical id, type, and what happens to it (Add / Modify / Remove).
Touch = tuple[str, str, str]
# A resource event a step records: logical id, type, ResourceStatus, ResourceStatusReason.
ResourceEvent = tuple[str, str, str, str | None]
VERBS = {"Add": "CREATE", "Modify": "UPDATE", "Remove": "DELETE"}
CANCELLED = {"Add": "Resource creation cancelled", "Modify": "Resource update cancelled"}


@dataclass(frozen=True)
class Failure:
    """The resource a fault makes fail, and how."""

    resource: str
    reason: str = DEFAULT_FAILURE_REASON
    rollback_fails: bool = False

    def summary(self, touches: Sequence[Touch]) -> str:
        action = next(a for lid, _, a in touches if lid == self.resource)
        return f"The following resource(s) failed to {VERBS[action].lower()}: [{self.resource}]. "


@dataclass
class Step:
    """What a stack shows from this step on, and what is recorded (and done) on entering it."""

    status: str
    reason: str | None = None
    resources: Sequence[ResourceEvent] = ()
    stack_event: bool = True
    effect: Callable[[], None] | None = None


@dataclass
class Snapshot:
    """What an update changes on the stack itself, so that a rollback can put it back."""

    template: Any
    parameters: dict[str, Any]
    tags: dict[str, str]
    role_arn: str | None
    notification_arns: list[str]


@dataclass
class PendingRollback:
    """A running or failed update: what to restore, and the resources it created or updated."""

    snapshot: Snapshot
    touched: list[Touch]


@dataclass
class Operation:
    action: str
    token: str | None = None
    change_set: SandboxChangeSet | None = None
    rollback: PendingRollback | None = None


def _in_progress(touches: Sequence[Touch]) -> list[ResourceEvent]:
    events: list[ResourceEvent] = []
    for lid, resource_type, action in touches:
        events.append((lid, resource_type, f"{VERBS[action]}_IN_PROGRESS", None))
        if action == "Add":
            events.append((lid, resource_type, "CREATE_IN_PROGRESS", "Resource creation Initiated"))
    return events


def _finished(touches: Sequence[Touch], failure: Failure | None = None, cancel: bool = False) -> list[ResourceEvent]:
    """COMPLETE events, but FAILED for the failed resource and, with ``cancel``, those after it
    (AWS cancels what runs in parallel with a failure)."""
    events: list[ResourceEvent] = []
    failed = False
    for lid, resource_type, action in touches:
        if failure is not None and lid == failure.resource:
            failed = True
            events.append((lid, resource_type, f"{VERBS[action]}_FAILED", failure.reason))
        elif failed and cancel:
            events.append((lid, resource_type, f"{VERBS[action]}_FAILED", CANCELLED.get(action)))
        else:
            events.append((lid, resource_type, f"{VERBS[action]}_COMPLETE", None))
    return events


def _removals(touches: Sequence[Touch]) -> list[Touch]:
    return [(lid, resource_type, "Remove") for lid, resource_type, _ in reversed(touches)]


# --------------------------------------------------------------------------------------------
# Stacks and change sets
# --------------------------------------------------------------------------------------------
class SandboxStack(Stack):
    class Meta:
        # Explicit: moto's serializer otherwise guesses StackSummary's attributes from the class name.
        serialization_aliases = {
            **Stack.Meta.serialization_aliases,
            "StackName": "name",
            "StackStatus": "status",
            "StackStatusReason": "status_reason",
            "TemplateDescription": "description",
        }

    def __init__(self, *args: Any, capabilities: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.capabilities = capabilities or []
        self.status_reason: str | None = None
        self.last_updated_time: Any = None
        self.deletion_time: Any = None
        self.change_set_id: str | None = None
        self.drift_information = {"StackDriftStatus": "NOT_CHECKED"}
        self.lifecycle: Lifecycle | None = None
        self.operation: Operation | None = None
        self.pending_rollback: PendingRollback | None = None  # of UPDATE_FAILED, UPDATE_ROLLBACK_FAILED
        self.tokens: dict[str, str] = {}  # ClientRequestToken -> the action it started
        self.physical_ids: dict[str, str] = {}  # remembered for the events of deleted resources

    @property
    def outputs(self) -> list[dict[str, Any]] | None:
        return super().outputs if self.status in SHOWS_OUTPUTS else None

    @property
    def stack_resources(self) -> list[Any]:
        """The resources that exist (moto's map would create a deleted one again when read)."""
        return list(self.live_resources().values())

    def live_resources(self) -> dict[str, Any]:
        parsed = self.resource_map._parsed_resources
        return {lid: parsed[lid] for lid in self.resource_map.resources if parsed.get(lid) is not None}

    def physical_id(self, logical_id: str) -> str:
        physical = getattr(self.resource_map._parsed_resources.get(logical_id), "physical_resource_id", None)
        if physical:
            self.physical_ids[logical_id] = str(physical)
        return self.physical_ids.get(logical_id, "")

    def touches(self, action: str, only_live: bool = True) -> list[Touch]:
        """The template's resources in dependency order (those that exist, with ``only_live``)."""
        resources, live = _resources(self.template_dict), self.live_resources()

        def wanted(logical_id: str) -> bool:
            if only_live:
                return logical_id in live
            condition = resources[logical_id].get("Condition")
            return condition is None or bool(self.resource_map.lazy_condition_map[condition])

        return [(lid, resources[lid].get("Type", ""), action) for lid in _dependency_order(resources) if wanted(lid)]

    def record(self, status: str, reason: str | None = None, resource: tuple[str, str] | None = None) -> None:
        """Add a stack event (``resource`` None) or a resource event, as AWS reports them."""
        if resource is None:
            logical_id, physical_id, resource_type = self.name, self.stack_id, STACK_TYPE
        else:
            (logical_id, resource_type), physical_id = resource, self.physical_id(resource[0])
        event = Event(self.stack_id, self.name, logical_id, physical_id, resource_type, status, reason, None)
        event.client_request_token = self.operation.token if self.operation else None
        event.sendToSns(self.account_id, self.region_name, self.notification_arns)
        self.events.append(event)

    def snapshot(self) -> Snapshot:
        parameters, tags, topics = dict(self.parameters), dict(self.tags), list(self.notification_arns)
        return Snapshot(self.template, parameters, tags, self.role_arn, topics)

    def resolved_parameters(self) -> dict[str, Any]:
        return dict(self.resource_map.resolved_parameters)


@dataclass(eq=False)
class SandboxChangeSet:
    stack: SandboxStack
    name: str
    change_set_type: str
    template: Any
    parameters: dict[str, Any]
    description: str | None = None
    tags: dict[str, str] | None = None
    notification_arns: list[str] = field(default_factory=list)
    role_arn: str | None = None
    capabilities: list[str] = field(default_factory=list)
    on_stack_failure: str | None = None
    token: str | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)
    status: str = "CREATE_COMPLETE"  # AWS passes CREATE_PENDING and CREATE_IN_PROGRESS first
    execution_status: str = "AVAILABLE"
    status_reason: str | None = None
    creation_time: Any = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        self.change_set_id = generate_changeset_id(self.name, self.stack.region_name, self.stack.account_id)

    def summary(self) -> dict[str, Any]:
        return {
            "StackId": self.stack.stack_id,
            "StackName": self.stack.name,
            "ChangeSetId": self.change_set_id,
            "ChangeSetName": self.name,
            "ExecutionStatus": self.execution_status,
            "Status": self.status,
            "StatusReason": self.status_reason,
            "CreationTime": self.creation_time,
            "Description": self.description,
            "IncludeNestedStacks": False,
        }

    def describe(self) -> dict[str, Any]:
        # moto's response transformers wrap each entry of Changes in {"Type": "Resource",
        # "ResourceChange": ...} and turn the Parameters dict into a list.
        return {
            **self.summary(),
            "Parameters": self.parameters,
            "NotificationARNs": self.notification_arns,
            "Capabilities": self.capabilities,
            "Tags": [{"Key": k, "Value": v} for k, v in (self.tags or {}).items()],
            "Changes": self.changes,
            "OnStackFailure": self.on_stack_failure,
        }


# --------------------------------------------------------------------------------------------
# Templates and parameters of an operation
# --------------------------------------------------------------------------------------------
def _tags_of(request: dict[str, Any]) -> dict[str, str] | None:
    tags = request.get("Tags")
    return None if tags is None else {t["Key"]: t["Value"] for t in tags}


def _update_parameters(stack: SandboxStack, incoming: list[dict[str, Any]]) -> dict[str, Any]:
    """The update's input values: given ones and previous ones (UsePreviousValue); the rest default."""
    previous = stack.resolved_parameters()
    values: dict[str, Any] = {}
    for parameter in incoming:
        key = parameter["ParameterKey"]
        if not parameter.get("UsePreviousValue"):
            values[key] = parameter.get("ParameterValue")
        elif parameter.get("ParameterValue"):
            raise ValidationError(
                message=f"Invalid input for parameter key {key}. Cannot specify usePreviousValue as true and non "
                "empty value for a parameter"
            )
        elif key not in previous:
            raise ValidationError(
                message=f"Invalid input for parameter key {key}. Cannot specify usePreviousValue as true for a "
                "parameter key not in the previous template"
            )
        else:
            value = stack.parameters.get(key, previous[key])
            values[key] = ",".join(map(str, value)) if isinstance(value, list) else value
    return values


def _check_parameters(
    backend: CloudFormationBackend, template: dict[str, Any], parameters: dict[str, Any]
) -> dict[str, Any]:
    """Validate parameters against the template as AWS words it; returns the resolved values."""
    declared = template.get("Parameters") or {}
    unknown = [key for key in parameters if key not in declared]
    if unknown:
        raise ValidationError(message=f"Parameters: [{', '.join(unknown)}] do not exist in the template")
    missing = [key for key, spec in declared.items() if parameters.get(key) is None and "Default" not in (spec or {})]
    if missing:
        raise ValidationError(message=f"Parameters: [{', '.join(missing)}] must have values")
    if not template:
        return {}
    resolver = ResourceMap("", "", parameters, {}, backend.region_name, backend.account_id, template, None)
    resolver.load_parameters()
    return dict(resolver.resolved_parameters)


def _changed_parameters(old: dict[str, Any], new: dict[str, Any]) -> set[str]:
    return {key for key in {*old, *new} if old.get(key) != new.get(key)}


def _apply_template(stack: SandboxStack, template: Any, parameters: dict[str, Any]) -> None:
    """Bring moto's resources and the stack's template, parameters and outputs to ``template``."""
    template_dict = _parse(template)
    # moto finds the resources a parameter change touches by comparing input values, and keeps the
    # old inputs when given none: hand it every declared parameter, defaults included.
    declared = template_dict.get("Parameters") or {}
    inputs = {key: parameters.get(key, (spec or {}).get("Default")) for key, spec in declared.items()}
    resource_map = stack.resource_map
    resource_map.update(template_dict, inputs)
    resource_map.input_parameters, resource_map.resolved_parameters = inputs, {}
    resource_map.load_parameters()
    stack.template, stack.template_dict, stack.parameters = template, template_dict, dict(parameters)
    stack.output_map = stack._create_output_map()
    stack.description = template_dict.get("Description")


# --------------------------------------------------------------------------------------------
# The backend
# --------------------------------------------------------------------------------------------
def _progress(stack: Stack, read: bool) -> None:
    """Apply what is due; ``read`` counts one describe for manual progression."""
    lifecycle = getattr(stack, "lifecycle", None)
    if lifecycle is not None and read:
        lifecycle.describe()
    elif lifecycle is not None:
        lifecycle.step  # noqa: B018 - reading the property applies due progress


def _cannot_update(stack: Stack) -> ValidationError:
    return ValidationError(message=f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated.")


def _stack_status_refusal(action: str) -> ValidationError:
    return ValidationError(message=f"{action} cannot be called from current stack status")


class SandboxCloudFormationBackend(CloudFormationBackend):
    @property
    def _url_module(self) -> Any:
        import moto.cloudformation.urls

        return moto.cloudformation.urls

    # -- finding stacks, always with their due progress applied --------------------------------
    def get_stack(self, name_or_stack_id: str) -> Stack:
        stack = super().get_stack(name_or_stack_id)
        _progress(stack, read=False)
        return stack

    def describe_stacks(self, name_or_stack_id: str) -> list[Stack]:
        stacks = super().describe_stacks(name_or_stack_id)
        for stack in stacks:
            _progress(stack, read=True)
        return stacks

    def describe_stack_events(self, stack_name: str) -> list[Event]:
        stack = self.get_stack(stack_name)
        _progress(stack, read=True)
        return stack.events

    def list_stacks(self, status_filter: list[str] | None = None) -> list[Stack]:
        for stack in list(self.stacks.values()):
            _progress(stack, read=False)
        return super().list_stacks(status_filter)

    def _active_stack(self, name_or_id: str) -> SandboxStack | None:
        """The stack of that name or id that is not deleted, or None."""
        for stack in list(self.stacks.values()):
            if name_or_id in (stack.name, stack.stack_id):
                _progress(stack, read=False)
                return stack if stack.stack_id in self.stacks else None
        return None

    def _existing_stack(self, name_or_id: str) -> SandboxStack:
        stack = self._active_stack(name_or_id)
        if stack is None:
            raise ValidationError(message=f"Stack [{name_or_id}] does not exist")
        return stack

    # -- running operations ----------------------------------------------------------------------
    def _begin(self, stack: SandboxStack, operation: Operation, steps: list[Step]) -> None:
        stack.operation = operation
        if operation.token:
            stack.tokens[operation.token] = operation.action
        stack.lifecycle = Lifecycle(MODEL, steps, on_step=lambda _index, step: self._enter(stack, step))
        self._enter(stack, steps[0])

    @staticmethod
    def _enter(stack: SandboxStack, step: Step) -> None:
        stack.status = step.status
        # A rollback or a failure keeps the StackStatusReason that explains it.
        if step.stack_event and (step.reason or not ("ROLLBACK" in step.status or step.status.endswith("FAILED"))):
            stack.status_reason = step.reason
        if step.effect is not None:
            step.effect()
        for logical_id, resource_type, status, reason in step.resources:
            stack.record(status, reason, resource=(logical_id, resource_type))
        if step.stack_event:
            stack.record(step.status, step.reason)

    @staticmethod
    def _repeated(stack: SandboxStack, token: str | None, action: str) -> bool:
        """A retried request (same ClientRequestToken) must not start a second operation."""
        if not token or token not in stack.tokens:
            return False
        if stack.tokens[token] != action:
            raise AwsError("TokenAlreadyExistsException", "A client request token already exists.")
        return True

    @staticmethod
    def _take_failure(stack: SandboxStack, touches: Sequence[Touch]) -> Failure | None:
        """Consume a ``fail`` fault for this stack if the resource it names is being touched."""
        fault = REGISTRY.peek("fail", "cloudformation", stack.name, stack.stack_id)
        if fault is None or not touches:
            return None
        resource = str(fault.params.get("resource") or touches[0][0])
        if resource not in [t[0] for t in touches]:
            return None  # it waits for an operation that touches that resource
        REGISTRY.take("fail", "cloudformation", stack.name, stack.stack_id)
        reason = str(fault.params.get("reason") or DEFAULT_FAILURE_REASON)
        return Failure(resource, reason, bool(fault.params.get("rollback_fails", False)))

    @staticmethod
    def _handler_failure(exc: Exception, resource: str) -> Failure:
        """moto could not do the resource work: the resource fails, as a handler error would."""
        log.warning("moto failed on resource %s", resource, exc_info=exc)
        return Failure(resource, f'Resource handler returned message: "{exc}" (HandlerErrorCode: InternalFailure)')

    def _finish(self, stack: SandboxStack, succeeded: bool) -> None:
        """The operation reached its end: exports follow the outputs, a change set its outcome."""
        for name in [n for n, e in self.exports.items() if e.exporting_stack_id == stack.stack_id]:
            del self.exports[name]
        if stack.status in SHOWS_OUTPUTS and stack.stack_id in self.stacks:
            self.exports.update({export.name: export for export in stack.exports})
        change_set = stack.operation.change_set if stack.operation else None
        if change_set is not None and change_set.execution_status == "EXECUTE_IN_PROGRESS":
            change_set.execution_status = "EXECUTE_COMPLETE" if succeeded else "EXECUTE_FAILED"

    @staticmethod
    def _delete_resources(stack: SandboxStack, logical_ids: Sequence[str]) -> None:
        resource_map = stack.resource_map
        for logical_id in logical_ids:
            resource = resource_map._parsed_resources.get(logical_id)
            if resource is None:
                continue
            stack.physical_id(logical_id)
            try:
                resource_map._delete_resource(resource, resource_map._resource_json_map[logical_id])
            except Exception:  # moto cannot delete it: it stays behind, the stack forgets it
                log.warning("moto could not delete %s of stack %s", logical_id, stack.name, exc_info=True)
            resource_map._parsed_resources.pop(logical_id, None)

    # -- create ----------------------------------------------------------------------------------
    def api_create_stack(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request.get("StackName", "")
        if not STACK_NAME.fullmatch(name):
            raise ValidationError(
                message=f"1 validation error detected: Value '{name}' at 'stackName' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*|arn:[-a-zA-Z0-9:/._+]*"
            )
        template = self._template_of(request)
        if not template:
            raise ValidationError(message="Either Template URL or Template Body must be specified.")
        on_failure = request.get("OnFailure")
        if on_failure and "DisableRollback" in request:
            raise ValidationError(message="You cannot specify both DisableRollback and OnFailure.")
        stack = self.create_stack(
            name,
            template,
            {p["ParameterKey"]: p.get("ParameterValue") for p in request.get("Parameters", [])},
            on_failure=on_failure or ("DO_NOTHING" if request.get("DisableRollback") else "ROLLBACK"),
            token=request.get("ClientRequestToken"),
            notification_arns=request.get("NotificationARNs", []),
            tags=_tags_of(request) or {},
            role_arn=request.get("RoleARN"),
            enable_termination_protection=request.get("EnableTerminationProtection", False),
            timeout_in_mins=request.get("TimeoutInMinutes"),
            stack_policy_body=request.get("StackPolicyBody"),
            capabilities=request.get("Capabilities", []),
        )
        return {"StackId": stack.stack_id}

    def create_stack(  # type: ignore[override]
        self,
        name: str,
        template: str,
        parameters: dict[str, Any],
        *,
        on_failure: str = "ROLLBACK",
        token: str | None = None,
        **options: Any,
    ) -> Stack:
        """CreateStack; moto's nested stacks and stack sets call it with the first three only."""
        existing = self._active_stack(name)
        if existing is not None:
            if self._repeated(existing, token, "CreateStack"):
                return existing
            raise AlreadyExistsException(f"Stack [{name}] already exists")
        _check_parameters(self, _parse(template), parameters)
        stack = SandboxStack(
            stack_id=generate_stack_id(name, self.region_name, self.account_id),
            name=name,
            template=template,
            parameters=parameters,
            account_id=self.account_id,
            region_name=self.region_name,
            cross_stack_resources=self.exports,
            **options,
        )
        self._validate_export_uniqueness(stack)
        self.stacks[stack.stack_id] = stack
        self._start_create(stack, Operation("CreateStack", token), on_failure)
        return stack

    def _start_create(self, stack: SandboxStack, operation: Operation, on_failure: str) -> None:
        stack.disable_rollback = on_failure == "DO_NOTHING"
        touches = stack.touches("Add", only_live=False)
        failure = self._take_failure(stack, touches)
        try:
            stack.resource_map.create(stack.template_dict)
        except ValidationError:
            del self.stacks[stack.stack_id]
            raise
        except Exception as exc:
            if not touches:
                raise
            missing = [t[0] for t in touches if t[0] not in stack.live_resources()] or [touches[0][0]]
            failure = failure or self._handler_failure(exc, missing[0])
        stack.description = stack.template_dict.get("Description")
        steps = [
            Step("CREATE_IN_PROGRESS", USER_INITIATED),
            Step("CREATE_IN_PROGRESS", resources=_in_progress(touches), stack_event=False),
        ]
        if failure is None:
            finish = functools.partial(self._finish, stack, True)
            steps.append(Step("CREATE_COMPLETE", resources=_finished(touches), effect=finish))
        else:
            steps += self._create_failure(stack, touches, failure, on_failure)
        self._begin(stack, operation, steps)

    def _create_failure(self, stack: SandboxStack, touches: list[Touch], failure: Failure, on_failure: str) -> list:
        summary, outcomes = failure.summary(touches), _finished(touches, failure, cancel=True)
        if on_failure == "DO_NOTHING":
            # What failed, or was cancelled, never came to exist; what completed stays.
            ids = [t[0] for t in touches]
            never_created = ids[ids.index(failure.resource) :]

            def keep_completed() -> None:
                self._delete_resources(stack, never_created)
                self._finish(stack, False)

            return [Step("CREATE_FAILED", summary, outcomes, effect=keep_completed)]
        failed = functools.partial(self._finish, stack, False)
        if on_failure == "DELETE":
            delete = Step("DELETE_IN_PROGRESS", summary + "Delete requested by user.", outcomes, effect=failed)
            return [delete, *self._delete_tail(stack, _removals(touches), None, set())]
        rollback = Step("ROLLBACK_IN_PROGRESS", summary + "Rollback requested by user.", outcomes, effect=failed)
        return [rollback, *self._create_rollback_tail(stack, touches, failure if failure.rollback_fails else None)]

    def _create_rollback_tail(self, stack: SandboxStack, touches: list[Touch], failure: Failure | None) -> list:
        removals = _removals(touches)
        deleted = [t[0] for t in removals if failure is None or t[0] != failure.resource]
        if failure is None:
            status, summary = "ROLLBACK_COMPLETE", None
        else:
            summary = f"The following resource(s) failed to delete: [{failure.resource}]. "
            status = "ROLLBACK_FAILED"
        return [
            Step("ROLLBACK_IN_PROGRESS", resources=_in_progress(removals), stack_event=False),
            Step(status, summary, _finished(removals, failure), effect=lambda: self._delete_resources(stack, deleted)),
        ]

    # -- update ----------------------------------------------------------------------------------
    def api_update_stack(self, request: dict[str, Any]) -> dict[str, Any]:
        stack = self._existing_stack(request["StackName"])
        token = request.get("ClientRequestToken")
        if self._repeated(stack, token, "UpdateStack"):
            return {"StackId": stack.stack_id}
        if stack.status not in UPDATABLE:
            raise _cannot_update(stack)
        template = self._template_for_update(stack, request)
        params = _update_parameters(stack, request.get("Parameters", []))
        resolved = _check_parameters(self, _parse(template), params)
        tags, topics = _tags_of(request), request.get("NotificationARNs")
        if (
            _parse(template) == _parse(stack.template)
            and resolved == stack.resolved_parameters()
            and tags in (None, stack.tags)
            and topics in (None, stack.notification_arns)
        ):
            raise ValidationError(message="No updates are to be performed.")
        changes = {"tags": tags, "notification_arns": topics, "role_arn": request.get("RoleARN")}
        operation = Operation("UpdateStack", token)
        self._start_update(
            stack, operation, template, params, disable_rollback=request.get("DisableRollback", False), **changes
        )
        return {"StackId": stack.stack_id}

    def _start_update(
        self,
        stack: SandboxStack,
        operation: Operation,
        template: Any,
        parameters: dict[str, Any],
        *,
        disable_rollback: bool,
        tags: dict[str, str] | None = None,
        role_arn: str | None = None,
        notification_arns: list[str] | None = None,
    ) -> None:
        new_template = _parse(template)
        changed = _changed_parameters(stack.resolved_parameters(), _check_parameters(self, new_template, parameters))
        physical_ids = {lid: stack.physical_id(lid) for lid in stack.live_resources()}
        changes = plan_changes(_parse(stack.template), new_template, changed, physical_ids)
        touched = [(c["LogicalResourceId"], c["ResourceType"], c["Action"]) for c in changes if c["Action"] != "Remove"]
        removed = [(c["LogicalResourceId"], c["ResourceType"], "Remove") for c in changes if c["Action"] == "Remove"]
        rollback = operation.rollback = PendingRollback(stack.snapshot(), touched)
        failure = self._take_failure(stack, touched)
        try:
            _apply_template(stack, template, parameters)
        except Exception as exc:
            if not touched:
                raise
            failure = failure or self._handler_failure(exc, touched[0][0])
        stack.tags = stack.tags if tags is None else tags
        stack.notification_arns = stack.notification_arns if notification_arns is None else notification_arns
        stack.role_arn = role_arn or stack.role_arn
        stack.last_updated_time = utcnow()
        stack.pending_rollback = None

        steps = [
            Step("UPDATE_IN_PROGRESS", USER_INITIATED),
            Step("UPDATE_IN_PROGRESS", resources=_in_progress(touched), stack_event=False),
        ]
        if failure is None:
            cleanup = _in_progress(removed) + _finished(removed)
            steps += [
                Step("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", resources=_finished(touched)),
                Step("UPDATE_COMPLETE", resources=cleanup, effect=lambda: self._finish(stack, True)),
            ]
        elif disable_rollback:
            outcomes = _finished(touched, failure, cancel=True)
            park = functools.partial(self._park, stack)
            steps.append(Step("UPDATE_FAILED", failure.summary(touched), outcomes, effect=park))
        else:
            outcomes = _finished(touched, failure, cancel=True)
            failed = functools.partial(self._finish, stack, False)
            steps.append(Step("UPDATE_ROLLBACK_IN_PROGRESS", failure.summary(touched), outcomes, effect=failed))
            steps += self._update_rollback_tail(stack, rollback, failure if failure.rollback_fails else None)
        self._begin(stack, operation, steps)

    def _park(self, stack: SandboxStack) -> None:
        """The update stopped short: RollbackStack or ContinueUpdateRollback finish it later."""
        stack.pending_rollback = stack.operation.rollback if stack.operation else None
        self._finish(stack, False)

    def _update_rollback_tail(self, stack: SandboxStack, rollback: PendingRollback, failure: Failure | None) -> list:
        reverted = [t for t in rollback.touched if t[2] == "Modify"]
        if failure is not None and failure.resource not in [t[0] for t in reverted]:
            reverted += [(lid, rt, "Modify") for lid, rt, _ in rollback.touched if lid == failure.resource]
        first = Step("UPDATE_ROLLBACK_IN_PROGRESS", resources=_in_progress(reverted), stack_event=False)
        if failure is not None:
            summary = f"The following resource(s) failed to update: [{failure.resource}]. "
            park = functools.partial(self._park, stack)
            return [first, Step("UPDATE_ROLLBACK_FAILED", summary, _finished(reverted, failure), effect=park)]
        added = [t for t in rollback.touched if t[2] == "Add"]

        def restore() -> None:
            snapshot = rollback.snapshot
            try:
                _apply_template(stack, snapshot.template, snapshot.parameters)
            except Exception:
                log.warning("moto could not restore stack %s", stack.name, exc_info=True)
            stack.tags, stack.role_arn = snapshot.tags, snapshot.role_arn
            stack.notification_arns = snapshot.notification_arns
            stack.pending_rollback = None

        return [
            first,
            Step("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", resources=_finished(reverted), effect=restore),
            Step(
                "UPDATE_ROLLBACK_COMPLETE",
                resources=_in_progress(_removals(added)) + _finished(_removals(added)),
                effect=lambda: self._finish(stack, False),
            ),
        ]

    # -- rollbacks -------------------------------------------------------------------------------
    def api_rollback_stack(self, request: dict[str, Any]) -> dict[str, Any]:
        stack, token = self._existing_stack(request["StackName"]), request.get("ClientRequestToken")
        if self._repeated(stack, token, "RollbackStack"):
            return {"StackId": stack.stack_id}
        if stack.status == "CREATE_FAILED":
            tail = self._create_rollback_tail(stack, stack.touches("Add"), None)
            steps = [Step("ROLLBACK_IN_PROGRESS", USER_INITIATED), *tail]
        elif stack.status == "UPDATE_FAILED" and stack.pending_rollback is not None:
            tail = self._update_rollback_tail(stack, stack.pending_rollback, None)
            steps = [Step("UPDATE_ROLLBACK_IN_PROGRESS", USER_INITIATED), *tail]
        else:
            raise _stack_status_refusal("RollbackStack")
        stack.last_updated_time = utcnow()
        self._begin(stack, self._follow_up(stack, "RollbackStack", token), steps)
        return {"StackId": stack.stack_id}

    @staticmethod
    def _follow_up(stack: SandboxStack, action: str, token: str | None) -> Operation:
        """An operation that finishes the one before it (and its change set, if any)."""
        previous = stack.operation or Operation(action)
        return Operation(action, token, change_set=previous.change_set, rollback=previous.rollback)

    def api_cancel_update_stack(self, request: dict[str, Any]) -> None:
        stack, token = self._existing_stack(request["StackName"]), request.get("ClientRequestToken")
        if self._repeated(stack, token, "CancelUpdateStack"):
            return
        running, lifecycle = stack.operation, stack.lifecycle
        if stack.status != "UPDATE_IN_PROGRESS" or running is None or running.rollback is None or lifecycle is None:
            raise _stack_status_refusal("CancelUpdateStack")
        # Resources are underway once the update is past its first step: those are cancelled.
        underway = running.rollback.touched if lifecycle.index >= 1 else []
        cancelled = [(lid, t, f"{VERBS[a]}_FAILED", CANCELLED[a]) for lid, t, a in underway]
        stack.operation = self._follow_up(stack, "CancelUpdateStack", token)
        if token:
            stack.tokens[token] = "CancelUpdateStack"
        failed = functools.partial(self._finish, stack, False)
        lifecycle.jump(
            [
                Step("UPDATE_ROLLBACK_IN_PROGRESS", "Stack update cancelled", cancelled, effect=failed),
                *self._update_rollback_tail(stack, running.rollback, None),
            ]
        )

    def api_continue_update_rollback(self, request: dict[str, Any]) -> None:
        stack, token = self._existing_stack(request["StackName"]), request.get("ClientRequestToken")
        if self._repeated(stack, token, "ContinueUpdateRollback"):
            return
        if stack.status != "UPDATE_ROLLBACK_FAILED" or stack.pending_rollback is None:
            raise _stack_status_refusal("ContinueUpdateRollback")
        tail = self._update_rollback_tail(stack, stack.pending_rollback, None)
        steps = [Step("UPDATE_ROLLBACK_IN_PROGRESS", USER_INITIATED), *tail]
        self._begin(stack, self._follow_up(stack, "ContinueUpdateRollback", token), steps)

    # -- delete ----------------------------------------------------------------------------------
    def api_delete_stack(self, request: dict[str, Any]) -> None:
        stack, token = self._active_stack(request["StackName"]), request.get("ClientRequestToken")
        if stack is None or stack.status == "DELETE_IN_PROGRESS" or self._repeated(stack, token, "DeleteStack"):
            return  # AWS answers success: there is nothing (more) to start
        if stack.status.endswith("_IN_PROGRESS") and stack.status != "REVIEW_IN_PROGRESS":
            raise ValidationError(message=f"Stack [{stack.name}] cannot be deleted while in status {stack.status}")
        resources = _resources(stack.template_dict)
        touches = _removals(stack.touches("Add"))
        kept = set(request.get("RetainResources", [])) | {
            lid for lid, _, _ in touches if resources[lid].get("DeletionPolicy") == "Retain"
        }
        failure = self._take_failure(stack, [t for t in touches if t[0] not in kept])
        steps = [Step("DELETE_IN_PROGRESS", USER_INITIATED), *self._delete_tail(stack, touches, failure, kept)]
        self._begin(stack, Operation("DeleteStack", token), steps)

    def _delete_tail(self, stack: SandboxStack, touches: list[Touch], failure: Failure | None, kept: set[str]) -> list:
        deleting = [t for t in touches if t[0] not in kept]
        skipped = [(lid, t, "DELETE_SKIPPED", None) for lid, t, _ in touches if lid in kept]
        first = Step("DELETE_IN_PROGRESS", resources=_in_progress(deleting), stack_event=False)
        results = _finished(deleting, failure) + skipped
        if failure is None:
            return [first, Step("DELETE_COMPLETE", resources=results, effect=lambda: self._remove(stack, deleting))]
        summary = f"The following resource(s) failed to delete: [{failure.resource}]. "
        others = [t[0] for t in deleting if t[0] != failure.resource]
        return [first, Step("DELETE_FAILED", summary, results, effect=lambda: self._delete_resources(stack, others))]

    def _remove(self, stack: SandboxStack, deleting: list[Touch]) -> None:
        self._delete_resources(stack, [t[0] for t in deleting])
        self.stacks.pop(stack.stack_id, None)
        self.deleted_stacks[stack.stack_id] = stack
        stack.deletion_time = utcnow()
        self._finish(stack, True)
        for change_set_id in [i for i, cs in self.change_sets.items() if cs.stack is stack]:
            del self.change_sets[change_set_id]

    # -- change sets -----------------------------------------------------------------------------
    def api_create_change_set(self, request: dict[str, Any]) -> dict[str, Any]:
        stack_name, name = request["StackName"], request.get("ChangeSetName", "")
        change_set_type = request.get("ChangeSetType", "UPDATE")
        if not CHANGE_SET_NAME.fullmatch(name or "") or len(name) > 128:
            raise ValidationError(
                message=f"1 validation error detected: Value '{name}' at 'changeSetName' failed to satisfy "
                "constraint: Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*"
            )
        stack = self._active_stack(stack_name)
        if change_set_type == "UPDATE" and stack is None:
            raise ValidationError(message=f"Stack [{stack_name}] does not exist")
        if change_set_type == "UPDATE" and stack.status not in UPDATABLE:
            raise _cannot_update(stack)
        if change_set_type == "CREATE" and stack is not None and stack.status != "REVIEW_IN_PROGRESS":
            raise ValidationError(
                message=f"Stack [{stack_name}] already exists and cannot be created again with the changeSet [{name}]."
            )
        if change_set_type not in ("CREATE", "UPDATE"):
            raise ValidationError(message=f"ChangeSetType {change_set_type} is not supported by the sandbox.")
        token = request.get("ClientToken")
        for existing in self.change_sets.values():
            if stack is not None and existing.stack is stack and existing.name == name:
                if token and existing.token == token:  # a retried request
                    return {"Id": existing.change_set_id, "StackId": stack.stack_id}
                raise AlreadyExistsException(f"ChangeSet [{name}] already exists")

        if change_set_type == "UPDATE":
            template = self._template_for_update(stack, request)
            params = _update_parameters(stack, request.get("Parameters", []))
            old_template, old_parameters = _parse(stack.template), stack.resolved_parameters()
        elif not (template := self._template_of(request)):
            raise ValidationError(message="Either Template URL or Template Body must be specified.")
        else:
            params = {p["ParameterKey"]: p.get("ParameterValue") for p in request.get("Parameters", [])}
            old_template, old_parameters = {}, {}
        new_template = _parse(template)
        resolved = _check_parameters(self, new_template, params)

        if stack is None:
            stack = SandboxStack(
                stack_id=generate_stack_id(stack_name, self.region_name, self.account_id),
                name=stack_name,
                template={},
                parameters={},
                account_id=self.account_id,
                region_name=self.region_name,
                notification_arns=request.get("NotificationARNs"),
                tags=_tags_of(request),
                role_arn=request.get("RoleARN"),
            )
            self.stacks[stack.stack_id] = stack
            stack.status, stack.status_reason = "REVIEW_IN_PROGRESS", USER_INITIATED
            stack.record("REVIEW_IN_PROGRESS", USER_INITIATED)

        change_set = SandboxChangeSet(
            stack,
            name,
            change_set_type,
            template,
            params,
            description=request.get("Description"),
            tags=_tags_of(request),
            notification_arns=request.get("NotificationARNs", []),
            role_arn=request.get("RoleARN"),
            capabilities=request.get("Capabilities", []),
            on_stack_failure=request.get("OnStackFailure"),
            token=token,
        )
        physical_ids = {lid: stack.physical_id(lid) for lid in stack.live_resources()}
        changed = _changed_parameters(old_parameters, resolved)
        change_set.changes = plan_changes(old_template, new_template, changed, physical_ids)
        same_tags = change_set.tags in (None, stack.tags)
        if change_set_type == "UPDATE" and new_template == old_template and not changed and same_tags:
            change_set.status, change_set.execution_status = "FAILED", "UNAVAILABLE"
            change_set.status_reason = NO_CHANGES
        self.change_sets[change_set.change_set_id] = change_set
        return {"Id": change_set.change_set_id, "StackId": stack.stack_id}

    def _find_change_set(self, request: dict[str, Any]) -> SandboxChangeSet:
        name_or_id, stack_name = request["ChangeSetName"], request.get("StackName")
        change_set = self.change_sets.get(name_or_id)
        if change_set is None and not name_or_id.startswith("arn:"):
            if not stack_name:
                raise ValidationError(
                    message="StackName must be specified if ChangeSetName is not specified as an ARN."
                )
            stack = self._active_stack(stack_name)
            found = [cs for cs in self.change_sets.values() if cs.stack is stack and cs.name == name_or_id]
            change_set = found[0] if found else None
        if change_set is None:
            raise AwsError("ChangeSetNotFound", f"ChangeSet [{name_or_id}] does not exist")
        _progress(change_set.stack, read=False)
        return change_set

    def api_describe_change_set(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._find_change_set(request).describe()

    def api_execute_change_set(self, request: dict[str, Any]) -> None:
        change_set, token = self._find_change_set(request), request.get("ClientRequestToken")
        stack = change_set.stack
        if self._repeated(stack, token, "ExecuteChangeSet"):
            return
        for kind, value, wanted in (
            ("status", change_set.status, "CREATE_COMPLETE"),
            ("execution status", change_set.execution_status, "AVAILABLE"),
        ):
            if value != wanted:
                raise AwsError(
                    "InvalidChangeSetStatus",
                    f"ChangeSet [{change_set.change_set_id}] cannot be executed in its current {kind} of [{value}]",
                )
        if change_set.change_set_type == "UPDATE" and stack.status not in UPDATABLE:
            raise _cannot_update(stack)
        # AWS deletes the stack's other change sets: they no longer describe a change to it.
        for other in [i for i, cs in self.change_sets.items() if cs.stack is stack and cs is not change_set]:
            del self.change_sets[other]
        change_set.execution_status = "EXECUTE_IN_PROGRESS"
        stack.change_set_id = change_set.change_set_id
        operation = Operation("ExecuteChangeSet", token, change_set=change_set)
        on_failure = "DO_NOTHING" if request.get("DisableRollback") else (change_set.on_stack_failure or "ROLLBACK")
        if change_set.change_set_type == "UPDATE":
            self._start_update(
                stack,
                operation,
                change_set.template,
                change_set.parameters,
                disable_rollback=on_failure == "DO_NOTHING",
                tags=change_set.tags,
                role_arn=change_set.role_arn,
                notification_arns=change_set.notification_arns or None,
            )
            return
        stack.template, stack.parameters = change_set.template, change_set.parameters
        stack._parse_template()
        stack.tags, stack.capabilities = change_set.tags or stack.tags, change_set.capabilities
        stack.resource_map = stack._create_resource_map()
        stack.output_map = stack._create_output_map()
        self._start_create(stack, operation, on_failure)

    def api_delete_change_set(self, request: dict[str, Any]) -> None:
        change_set = self._find_change_set(request)
        if change_set.execution_status == "EXECUTE_IN_PROGRESS":
            raise AwsError(
                "InvalidChangeSetStatus",
                f"ChangeSet [{change_set.change_set_id}] cannot be deleted in its current execution status of "
                f"[{change_set.execution_status}]",
            )
        del self.change_sets[change_set.change_set_id]

    def api_list_change_sets(self, request: dict[str, Any]) -> dict[str, Any]:
        stack = self._existing_stack(request["StackName"])
        return {"Summaries": [cs.summary() for cs in self.change_sets.values() if cs.stack is stack]}

    # -- requests --------------------------------------------------------------------------------
    def _template_of(self, request: dict[str, Any]) -> str | None:
        url = request.get("TemplateURL")
        if url:
            return get_stack_from_s3_url(url, account_id=self.account_id, partition=get_partition(self.region_name))
        return request.get("TemplateBody")

    def _template_for_update(self, stack: SandboxStack, request: dict[str, Any]) -> Any:
        template = self._template_of(request)
        if request.get("UsePreviousTemplate") and template:
            raise ValidationError(message="You cannot specify both usePreviousTemplate and Template Body/Template URL.")
        if request.get("UsePreviousTemplate"):
            return stack.template
        if not template:
            raise ValidationError(message="Either Template URL or Template Body must be specified.")
        return template


# --------------------------------------------------------------------------------------------
# API actions: methods of moto's CloudFormationResponse
# --------------------------------------------------------------------------------------------
API_ACTIONS = (
    "create_stack",
    "update_stack",
    "delete_stack",
    "rollback_stack",
    "cancel_update_stack",
    "continue_update_rollback",
    "create_change_set",
    "describe_change_set",
    "execute_change_set",
    "delete_change_set",
    "list_change_sets",
)


def _api_action(name: str) -> Callable[[Any], ActionResult]:
    """A Response method: the backend's ``api_<name>`` takes the request, parsed by botocore's model,
    and returns the response (None for an empty one)."""

    def action(self: Any) -> ActionResult:
        result = getattr(self.cloudformation_backend, f"api_{name}")(self.params)
        return EmptyResult() if result is None else ActionResult(result)

    action.__name__ = action.__qualname__ = name
    return action


def _locked(action: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Run an action, and serialize its result, under the lock (serializing reads live objects)."""

    @functools.wraps(action)
    def locked(self: Any) -> Any:
        with _LOCK:
            try:
                result = action(self)
            except ServiceException as exc:
                result = ActionResult(exc)
            if not isinstance(result, ActionResult):
                return result
            status, headers, body = self.serialized(result)
            headers["status"] = str(status)
            return body, headers

    return locked


def install() -> None:
    register_model(MODEL, {"progression": "immediate"})
    response_class = cfn_responses.CloudFormationResponse
    for name in API_ACTIONS:
        setattr(response_class, name, _api_action(name))
    for operation in get_service_model("cloudformation").operation_names:
        method = getattr(response_class, xform_name(operation), None)
        if method is not None:
            setattr(response_class, method.__name__, _locked(method))
    cloudformation_backends.backend = SandboxCloudFormationBackend
    cloudformation_backends.clear()


def reset() -> None:
    """Nothing to forget here: stacks, change sets and their operations live in moto's backends."""
