"""The sandbox's control API: JSON over HTTP under ``/_shipflow``, for tests and failure drills.

    GET    /_shipflow/health           -> {"status": "ok", "moto": "5.2.5", "extensions": [...]}
    GET    /_shipflow/faults           -> {"faults": [...]}  (with how often and on what each fired)
    POST   /_shipflow/faults           {"kind", "service", "target"?, "count"?, "params"?} -> fault
    DELETE /_shipflow/faults[/ID]      -> remove one fault, or all
    GET    /_shipflow/calls            -> {"calls": {"codebuild:BatchGetBuilds": 12, ...}} since reset
    GET    /_shipflow/lifecycle        -> {"models": {model: transition}}
    POST   /_shipflow/lifecycle        {"model" | "service", "progression", "times"? | "seconds"?}
    POST   /_shipflow/reset            -> forget every resource, fault and lifecycle setting

``docs/sandbox.md`` documents each with examples; ``shipflow.sandbox.client`` wraps them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from moto.moto_api import state_manager
from werkzeug.wrappers import Request, Response

from shipflow.sandbox import CONTROL_PREFIX, lifecycle
from shipflow.sandbox.faults import CALLS, REGISTRY, FaultError

PROGRESSIONS = ("immediate", "manual", "time")


class ControlError(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str), status=status, mimetype="application/json")


def _body(request: Request) -> dict[str, Any]:
    if not request.data:
        return {}
    try:
        data = json.loads(request.data)
    except json.JSONDecodeError as exc:
        raise ControlError(f"request body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ControlError("request body must be a JSON object")
    return data


def parse_transition(data: dict[str, Any]) -> dict[str, Any]:
    progression = data.get("progression")
    if progression not in PROGRESSIONS:
        raise ControlError(f"progression must be one of {list(PROGRESSIONS)}, got {progression!r}")
    if progression == "manual":
        times = data.get("times", 1)
        if not isinstance(times, int) or times < 1:
            raise ControlError(f"manual progression needs times >= 1 (describes per step), got {times!r}")
        return {"progression": "manual", "times": times}
    if progression == "time":
        seconds = data.get("seconds", 1)
        if not isinstance(seconds, (int, float)) or seconds <= 0:
            raise ControlError(f"time progression needs seconds > 0 (per step), got {seconds!r}")
        return {"progression": "time", "seconds": seconds}
    return {"progression": "immediate"}


def _models_for(data: dict[str, Any]) -> list[str]:
    model, service = data.get("model"), data.get("service")
    if model in (None, "*") and service is None:
        return sorted(lifecycle.MODELS)
    if model not in (None, "*"):
        if model not in lifecycle.MODELS:
            raise ControlError(f"unknown model {model!r}; known: {sorted(lifecycle.MODELS)}")
        return [model]
    models = sorted(m for m in lifecycle.MODELS if m.split("::")[0] == service)
    if not models:
        raise ControlError(f"no lifecycle models for service {service!r}; known: {sorted(lifecycle.MODELS)}")
    return models


class ControlApi:
    def __init__(self, health: Callable[[], dict[str, Any]], reset: Callable[[], None]) -> None:
        self._health = health
        self._reset = reset

    def handle(self, request: Request) -> Response:
        path = request.path[len(CONTROL_PREFIX) :].rstrip("/") or "/"
        try:
            return self._route(request, path)
        except (ControlError, FaultError) as exc:
            return _json({"error": str(exc)}, getattr(exc, "status", 400))

    def _route(self, request: Request, path: str) -> Response:
        method = request.method
        if path == "/health" and method == "GET":
            return _json(self._health())
        if path == "/faults":
            if method == "GET":
                return _json({"faults": REGISTRY.list()})
            if method == "POST":
                data = _body(request)
                unknown = set(data) - {"kind", "service", "target", "count", "params"}
                if unknown:
                    raise ControlError(f"unknown fault fields {sorted(unknown)}")
                fault = REGISTRY.add(
                    kind=data.get("kind", ""),
                    service=data.get("service", ""),
                    target=data.get("target"),
                    count=data.get("count", 1),
                    params=data.get("params"),
                )
                return _json(fault.to_dict(), 201)
            if method == "DELETE":
                REGISTRY.reset()
                return _json({"faults": []})
        if path.startswith("/faults/") and method == "DELETE":
            try:
                fault_id = int(path.rsplit("/", 1)[1])
            except ValueError as exc:
                raise ControlError(f"fault id must be an integer: {path}") from exc
            if not REGISTRY.remove(fault_id):
                raise ControlError(f"no fault with id {fault_id}", 404)
            return _json({"removed": fault_id})
        if path == "/calls" and method == "GET":
            return _json({"calls": CALLS.snapshot()})
        if path == "/lifecycle":
            if method == "GET":
                return _json({"models": {m: state_manager.get_transition(m) for m in sorted(lifecycle.MODELS)}})
            if method == "POST":
                data = _body(request)
                transition = parse_transition(data)
                models = _models_for(data)
                for model in models:
                    state_manager.set_transition(model, transition)
                return _json({"models": {m: transition for m in models}})
        if path == "/reset" and method == "POST":
            self._reset()
            return _json({"status": "reset"})
        raise ControlError(f"no control route {method} {CONTROL_PREFIX}{path}; see docs/sandbox.md", 404)
