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
def test_demo_promotes_approves_and_rolls_back(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    # The demo records to the store `shipflow audit`/`shipflow metrics` read by default: here, the test's own.
    audit_url = f"sqlite:///{tmp_path / 'audit.db'}"
    env["SHIPFLOW_AUDIT_URL"] = audit_url
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
    stamp = re.search(r"run demo-inventory-worker-1\.1\.0-(\d{8}T\d{6}): SUCCESS", out).group(1)
    assert "approver1 approves through the REST API" in out
    # Who approved, and when: read back from Airflow, not echoed from what the demo sent.
    assert re.search(r"approval production\.approve_release: Approve by approver1 at \d\d:\d\d:\d\d UTC", out)
    assert f"release__storefront-web run demo-storefront-web-2.4.0-{stamp}: SUCCESS" in out
    assert f"release__inventory-worker run demo-inventory-worker-1.2.0-{stamp}: FAILED" in out
    assert "-> not promoted: an alarm fired during the bake time; rolled back: ['rollback_deployment']" in out
    assert "Demo OK" in out
    # The rolled-back release's evidence, from the audit store the stack recorded it in.
    assert f"Audit evidence of demo-inventory-worker-1.2.0-{stamp}" in out
    assert "requested by ci via rest" in out and "rolling back rollback_deployment" in out
    assert "rollback verified" in out and re.search(r"audit chain: \d+ events, chain intact", out)
    # Where to look: each run's page in the UI, and how to bring the stack back for it.
    base = re.search(r"Airflow UI (http://127\.0\.0\.1:\d+)", out).group(1)
    for dag_id, run_id in (("release__inventory-worker", f"demo-inventory-worker-1.1.0-{stamp}"),
                           ("release__storefront-web", f"demo-storefront-web-2.4.0-{stamp}"),
                           ("release__inventory-worker", f"demo-inventory-worker-1.2.0-{stamp}")):
        assert f"  {base}/dags/{dag_id}/runs/{run_id}" in out
    # The metrics DAG ran on what the demo did, and `shipflow metrics` shows it afterwards.
    assert re.search(r"Metrics DAG shipflow_metrics run demo-metrics-\d+: SUCCESS", out)
    shown = subprocess.run([sys.executable, "-m", "shipflow", "metrics"], capture_output=True, text=True,
                           timeout=120, cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT / "plugins")})
    assert shown.returncode == 0, shown.stderr
    figures = {(line.split()[3], line.split()[5]): line.split()[6] for line in shown.stdout.splitlines()[1:]}
    for service in ("inventory-worker", "storefront-web"):
        assert float(figures[service, "release_duration_seconds_p50"].rstrip("s").replace(",", "")) > 0
        assert (service, "deployment_frequency") in figures and (service, "manual_fallback_frequency") in figures
    # inventory-worker 1.2.0 failed its bake in staging: a failed try, and a release that did not promote.
    assert figures["inventory-worker", "task_failure_rate"] != "0.0%"
    home = re.search(r"To browse these runs again: shipflow up --home (\S+)", out).group(1)
    assert (Path(home) / "airflow" / "airflow.db").exists()
    shutil.rmtree(home)  # kept by the demo for its user; not by the test suite
