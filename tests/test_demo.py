"""``make demo`` (``shipflow demo``): three example releases end to end, unattended."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

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
    # Who approved, and when: read back from Airflow, not echoed from what the demo sent.
    assert re.search(r"approval production\.approve_release: Approve by approver1 at \d\d:\d\d:\d\d UTC", out)
    assert "release__storefront-web run demo-storefront-web-2.4.0: SUCCESS" in out
    assert "release__inventory-worker run demo-inventory-worker-1.2.0: FAILED" in out
    assert "-> not promoted: an alarm fired during the bake time; rolled back: ['rollback_deployment']" in out
    assert "Demo OK" in out
    # The rolled-back release's evidence, from the audit store the stack recorded it in.
    assert "Audit evidence of demo-inventory-worker-1.2.0" in out
    assert "requested by ci via rest" in out and "rolling back rollback_deployment" in out
    assert "rollback verified" in out and re.search(r"audit chain: \d+ events, chain intact", out)
    # Where to look: each run's page in the UI, and how to bring the stack back for it.
    base = re.search(r"Airflow UI (http://127\.0\.0\.1:\d+)", out).group(1)
    for dag_id, run_id in (("release__inventory-worker", "demo-inventory-worker-1.1.0"),
                           ("release__storefront-web", "demo-storefront-web-2.4.0"),
                           ("release__inventory-worker", "demo-inventory-worker-1.2.0")):
        assert f"  {base}/dags/{dag_id}/runs/{run_id}" in out
    home = re.search(r"To browse these runs again: shipflow up --home (\S+)", out).group(1)
    assert (Path(home) / "airflow" / "airflow.db").exists()
    shutil.rmtree(home)  # kept by the demo for its user; not by the test suite
