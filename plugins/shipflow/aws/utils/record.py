"""What an AWS action did, as plain data: every call with its AWS request id, and timings.

Operators return this record (XCom) so the audit trail can store each automated action with the
evidence AWS gave for it. It holds ids, statuses and request ids, never request parameters, so
nothing secret (environment overrides, parameters) reaches it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any


def utcnow_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class CallRecorder:
    """Records each boto3 call made through a client: operation, HTTP status, request id, duration.

    It hooks botocore's event system (``before-call`` / ``after-call``), so every call is recorded,
    including botocore's retries of throttled calls, without wrapping any call by hand.
    """

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self._started: dict[str, float] = {}

    def attach(self, client: Any) -> CallRecorder:
        client.meta.events.register("before-call.*.*", self._before)
        client.meta.events.register("after-call.*.*", self._after)
        client.meta.events.register("after-call-error.*.*", self._after_error)
        return self

    def _before(self, model: Any, **_: Any) -> None:
        self._started[model.name] = time.monotonic()

    def _duration_ms(self, model: Any) -> float:
        started = self._started.pop(model.name, None)
        return round((time.monotonic() - started) * 1000, 1) if started else 0.0

    def _after(self, http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        meta = parsed.get("ResponseMetadata", {})
        error = parsed.get("Error", {}).get("Code")
        self.calls.append(
            {
                "operation": model.name,
                "request_id": meta.get("RequestId", ""),
                "http_status": meta.get("HTTPStatusCode", getattr(http_response, "status_code", 0)),
                "error": error or None,
                "retries": meta.get("RetryAttempts", 0),
                "duration_ms": self._duration_ms(model),
                "at": utcnow_iso(),
            }
        )

    def _after_error(self, exception: Exception, model: Any, **_: Any) -> None:
        self.calls.append(
            {
                "operation": model.name,
                "request_id": "",
                "http_status": 0,
                "error": type(exception).__name__,
                "retries": 0,
                "duration_ms": self._duration_ms(model),
                "at": utcnow_iso(),
            }
        )


class ActionRecord:
    """The return value of a Shipflow AWS operator (a JSON-safe dict via ``as_dict``).

    A deferred operator passes ``as_dict()`` through the deferral and continues it with
    ``ActionRecord.resume``, so the record spans both halves of the task.
    """

    def __init__(self, action: str, recorder: CallRecorder, earlier: dict[str, Any] | None = None) -> None:
        earlier = dict(earlier or {})
        self.action = action
        self.recorder = recorder
        self._first_call = len(recorder.calls)
        self._earlier_calls: list[dict[str, Any]] = earlier.pop("aws_calls", [])
        self.started_at = earlier.pop("started_at", utcnow_iso())
        self._earlier_seconds = float(earlier.pop("duration_s", 0.0))
        earlier.pop("ended_at", None)
        earlier.pop("action", None)
        self.fields: dict[str, Any] = earlier
        self._t0 = time.monotonic()

    def update(self, **fields: Any) -> ActionRecord:
        self.fields.update(fields)
        return self

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            **self.fields,
            "started_at": self.started_at,
            "ended_at": utcnow_iso(),
            # Time the task spent, both halves of a deferral; the wait in the triggerer is not counted.
            "duration_s": round(self._earlier_seconds + time.monotonic() - self._t0, 3),
            "aws_calls": self._earlier_calls + self.recorder.calls[self._first_call :],
        }
