"""``shipflow sandbox demo`` runs unattended and shows what it claims to show."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_builds_fails_alarms_rolls_back_and_recovers():
    result = subprocess.run(
        [sys.executable, "-m", "shipflow", "sandbox", "demo"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")},
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "The local AWS sandbox alone" in out  # labelled for what it is
    assert "=> SUCCEEDED" in out and "FAILED in BUILD" in out
    assert "UPDATE_ROLLBACK_COMPLETE" in out and "ReleaseVersion=1.1.0" in out
    assert "Stopped: ALARM_ACTIVE" in out and "by codeDeployRollback" in out
    assert "on the restored revision: payments-api-staging-errors=OK" in out
    assert 'ALARM: "payments-api-staging-errors"' in out  # the alert reached SQS through SNS
    assert "Demo OK" in out
    assert "HTTP/1.1" not in result.stderr  # no request log noise
