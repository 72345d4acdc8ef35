"""Shared fixtures: a real sandbox process reached over HTTP by boto3.

One sandbox serves the whole session (a cold start costs seconds); ``sandbox`` resets it before
each test that uses it, so every test starts with no resources, no faults and default speeds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipflow.sandbox.client import SandboxClient

ROOT = Path(__file__).resolve().parent.parent


def require_services() -> bool:
    """CI sets SHIPFLOW_REQUIRE_SERVICES=1: a missing service is then a failure, not a skip."""
    return os.environ.get("SHIPFLOW_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    if require_services():
        pytest.fail(f"{reason} (SHIPFLOW_REQUIRE_SERVICES=1: a missing service fails the run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def sandbox_process() -> Iterator[SandboxClient]:
    """Start ``shipflow sandbox up --port 0`` in a child process and wait until it answers."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "endpoint"
        log = open(Path(tmp) / "sandbox.log", "w+")  # noqa: SIM115 - closed below
        env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "shipflow", "sandbox", "up", "--port", "0", "--ready-file", str(ready)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            while not ready.exists() or not ready.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"sandbox did not start (exit {proc.poll()}):\n{log.read()[-4000:]}")
                time.sleep(0.05)
            client = SandboxClient(ready.read_text())
            client.wait_ready()
            yield client
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


@pytest.fixture
def sandbox(sandbox_process: SandboxClient) -> SandboxClient:
    """A sandbox with no resources, no faults and default lifecycle speeds."""
    sandbox_process.reset()
    return sandbox_process
