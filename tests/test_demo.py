"""``make demo`` (``shipflow demo``): three example releases end to end, unattended."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_demo_promotes_approves_and_rolls_back():
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    result = subprocess.run(
        [sys.executable, "-m", "shipflow", "demo"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT / "plugins")},
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-4000:]
    assert "release__inventory-worker run demo-inventory-worker-1.1.0: SUCCESS" in out
    assert "approver1 approves through the REST API" in out
    assert "release__storefront-web run demo-storefront-web-2.4.0: SUCCESS" in out
    assert "release__inventory-worker run demo-inventory-worker-1.2.0: FAILED" in out
    assert "-> not promoted: an alarm fired during the bake time; rolled back: ['rollback_deployment']" in out
    assert "Demo OK" in out
