"""A Python client for a running sandbox: boto3 clients pointed at it, and its control API.

    sandbox = SandboxClient("http://127.0.0.1:4566")
    codebuild = sandbox.boto3("codebuild")
    sandbox.add_fault("fail", "codebuild", target="payments-build", count=1, params={"phase": "BUILD"})
    sandbox.set_lifecycle(service="codedeploy", progression="manual", times=2)
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

from shipflow.sandbox import CONTROL_PREFIX, DEFAULT_HOST, DEFAULT_PORT, DEFAULT_REGION

# Credentials the sandbox accepts; real AWS would reject them, which is the point.
SANDBOX_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class SandboxError(RuntimeError):
    """The control API refused a request; the message is its explanation."""


def default_endpoint() -> str:
    return os.environ.get("SHIPFLOW_SANDBOX_ENDPOINT", f"http://{DEFAULT_HOST}:{DEFAULT_PORT}")


class SandboxClient:
    def __init__(self, endpoint: str | None = None, region: str = DEFAULT_REGION) -> None:
        self.endpoint = (endpoint or default_endpoint()).rstrip("/")
        self.region = region

    # -- boto3 -------------------------------------------------------------------------------
    def boto3(self, service: str, retries: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """A boto3 client for ``service`` at the sandbox (botocore's standard retry mode)."""
        import boto3
        from botocore.config import Config

        config = Config(retries=retries or {"mode": "standard", "max_attempts": 5})
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=kwargs.pop("region_name", self.region),
            config=config,
            **SANDBOX_CREDENTIALS,
            **kwargs,
        )

    # -- control API ---------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 10) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.endpoint}{CONTROL_PREFIX}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", str(exc))
            except (ValueError, AttributeError):
                message = str(exc)
            raise SandboxError(message) from None

    def health(self, timeout: float = 2) -> dict[str, Any]:
        return self._request("GET", "/health", timeout=timeout)

    def wait_ready(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.health()
            except (OSError, SandboxError):
                if time.monotonic() > deadline:
                    raise SandboxError(f"sandbox at {self.endpoint} not ready after {timeout:.0f}s") from None
                time.sleep(0.1)

    def add_fault(
        self,
        kind: str,
        service: str,
        target: str | None = None,
        count: int | None = 1,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body = {"kind": kind, "service": service, "target": target, "count": count, "params": params or {}}
        return self._request("POST", "/faults", body)

    def faults(self) -> list[dict[str, Any]]:
        return self._request("GET", "/faults")["faults"]

    def clear_faults(self) -> None:
        self._request("DELETE", "/faults")

    def remove_fault(self, fault_id: int) -> None:
        self._request("DELETE", f"/faults/{fault_id}")

    def set_lifecycle(
        self,
        progression: str,
        model: str | None = None,
        service: str | None = None,
        times: int | None = None,
        seconds: float | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"progression": progression}
        for key, value in (("model", model), ("service", service), ("times", times), ("seconds", seconds)):
            if value is not None:
                body[key] = value
        return self._request("POST", "/lifecycle", body)["models"]

    def lifecycle(self) -> dict[str, Any]:
        return self._request("GET", "/lifecycle")["models"]

    def calls(self) -> dict[str, int]:
        """Calls per ``service:Action`` the sandbox received since the last reset."""
        return self._request("GET", "/calls")["calls"]

    def reset(self) -> None:
        self._request("POST", "/reset")
