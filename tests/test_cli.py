"""The ``shipflow`` command as a user runs it: exit codes and one-line errors, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def shipflow(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    return subprocess.run(
        [sys.executable, "-m", "shipflow", *args], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env
    )


def test_validate_reports_each_problem_with_file_line_and_field():
    bad = shipflow("validate", "tests/spec/invalid/window-order.yaml", "tests/spec/valid")
    assert bad.returncode == 1
    assert "tests/spec/invalid/window-order.yaml:10: environments[0].deployment_window.windows[0].end:" in bad.stdout
    assert "Traceback" not in bad.stdout + bad.stderr
    assert shipflow("validate", "tests/spec/valid").returncode == 0
    missing = shipflow("validate", "no/such/dir")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_sandbox_commands_explain_an_unreachable_sandbox():
    result = shipflow("sandbox", "fault", "list", "--endpoint", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert "cannot reach http://127.0.0.1:9" in result.stderr and "shipflow sandbox up" in result.stderr
    assert "Traceback" not in result.stderr
