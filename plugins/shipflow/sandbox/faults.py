"""Injected faults: the failure drills of the sandbox.

A fault is data: a kind, the service it applies to, an optional target (a CodeBuild project, a
CodeDeploy deployment group, a stack, a revision, or an API action), how many times it fires
(``count``; ``None`` means until removed) and kind-specific parameters. The service extensions ask
the registry whether a fault applies when they start a build, deployment or stack operation, and
``install()`` wraps moto's request dispatch for the kinds that apply to any call:

- ``throttle``: answer with the service's own throttling error (so botocore's retry modes see it);
- ``latency``: sleep ``params.seconds`` before answering.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from moto.core.responses import ActionResult, BaseResponse

from shipflow.sandbox.errors import AwsError

KINDS = {
    "fail": "fail the next N builds, deployments or stack operations (target: project, group, stack)",
    "unhealthy": "make a CodeDeploy revision unhealthy (target: revision label or S3 key)",
    "throttle": "answer N calls with the service's throttling error (target: action, e.g. BatchGetBuilds)",
    "latency": "delay calls by params.seconds (target: action; count: null = until removed)",
}
SERVICES = ("codebuild", "codedeploy", "cloudformation", "cloudwatch", "sns", "sqs", "s3", "iam", "sts")

# Each service's own throttling error code, as botocore's retry handlers recognise them.
THROTTLING_CODES = {
    "codebuild": "ThrottlingException",
    "codedeploy": "ThrottlingException",
    "cloudformation": "Throttling",
    "cloudwatch": "Throttling",
    "monitoring": "Throttling",
    "sns": "Throttling",
    "sqs": "ThrottlingException",
}


class FaultError(ValueError):
    """A fault definition that cannot be accepted (unknown kind, service, bad count)."""


@dataclass
class Fault:
    id: int
    kind: str
    service: str
    target: str | None = None
    count: int | None = 1
    params: dict[str, Any] = field(default_factory=dict)
    fired: int = 0
    fired_on: list[str] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.fired >= self.count

    def matches(self, kind: str, service: str, candidates: Iterable[str | None]) -> bool:
        if self.exhausted or self.kind != kind or self.service != service:
            return False
        if self.target is None:
            return True
        return any(c is not None and c == self.target for c in candidates)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["exhausted"] = self.exhausted
        return data


class FaultRegistry:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(
        self,
        kind: str,
        service: str,
        target: str | None = None,
        count: int | None = 1,
        params: dict[str, Any] | None = None,
    ) -> Fault:
        if kind not in KINDS:
            raise FaultError(f"unknown fault kind {kind!r}; choose one of {sorted(KINDS)}")
        if service not in SERVICES:
            raise FaultError(f"unknown service {service!r}; choose one of {list(SERVICES)}")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise FaultError(f"count must be a positive integer or null (until removed), got {count!r}")
        params = dict(params or {})
        if kind == "latency":
            seconds = params.get("seconds")
            if not isinstance(seconds, (int, float)) or not 0 < seconds <= 60:
                raise FaultError(f"latency needs params.seconds in (0, 60], got {seconds!r}")
        with self._lock:
            fault = Fault(next(self._ids), kind, service, target, count, params)
            self._faults.append(fault)
            return fault

    def take(self, kind: str, service: str, *candidates: str | None, on: str = "") -> Fault | None:
        """The oldest matching fault, counted as fired once; ``None`` when none applies."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(kind, service, candidates):
                    fault.fired += 1
                    # Bounded: a standing fault (count None) may fire on every call for hours.
                    fault.fired_on = [*fault.fired_on[-99:], on or next((c for c in candidates if c), "*")]
                    return fault
        return None

    def peek(self, kind: str, service: str, *candidates: str | None) -> Fault | None:
        """The oldest matching fault, without counting it (for standing conditions like health)."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(kind, service, candidates):
                    return fault
        return None

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_dict() for f in self._faults]

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()


REGISTRY = FaultRegistry()


class CallCounter:
    """How many calls each ``service:Action`` received since the last reset (for tests and benchmarks)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def count(self, service: str, action: str) -> None:
        key = f"{service}:{action}"
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


CALLS = CallCounter()

_original_call_action = BaseResponse.call_action


def _call_action(self: BaseResponse) -> Any:
    service = getattr(self, "service_name", None) or ""
    action = self._get_action() or ""
    CALLS.count(service, action)
    latency = REGISTRY.take("latency", service, action, on=action)
    if latency is not None:
        time.sleep(float(latency.params["seconds"]))
    if REGISTRY.take("throttle", service, action, on=action) is not None:
        code = THROTTLING_CODES.get(service, "ThrottlingException")
        status, headers, body = self.serialized(ActionResult(AwsError(code, "Rate exceeded")))
        headers["status"] = str(status)
        return status, headers, body
    return _original_call_action(self)


def install() -> None:
    BaseResponse.call_action = _call_action  # type: ignore[method-assign]
