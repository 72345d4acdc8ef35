"""The spec models on their own: value types, vocabularies, helpers a DAG builder relies on."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from shipflow.spec.model import (
    PREDEFINED_DEPLOYMENT_CONFIGS,
    Approval,
    Freeze,
    ServiceSpec,
    format_duration,
    parse_duration,
    render,
)
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("written", "seconds"),
    [(0, 0), (90, 90), ("30s", 30), ("15m", 900), ("4h", 14400), ("2d", 172800), ("1h30m", 5400)],
)
def test_durations_read_as_seconds_and_print_back(written, seconds):
    assert parse_duration(written) == seconds
    if isinstance(written, str):
        assert format_duration(seconds) == written


@pytest.mark.parametrize("written", ["4 hours", "", "1.5h", "h", -5, True, 2.5, "30m1h"])
def test_durations_that_are_not_durations_are_refused(written):
    with pytest.raises(ValueError, match="duration|negative"):
        parse_duration(written)


def test_render_substitutes_the_placeholders_of_a_templated_field():
    assert render("svc/svc-{version}-{environment}.zip", version="1.4.0", environment="staging") == (
        "svc/svc-1.4.0-staging.zip"
    )
    assert render("{{literal}}-{commit}", commit="abc123") == "{literal}-abc123"


def test_a_spec_is_frozen(minimal_spec):
    with pytest.raises(ValidationError, match="frozen"):
        minimal_spec.service = "other"
    with pytest.raises(ValidationError, match="frozen"):
        minimal_spec.environments[0].deployment.config = "CodeDeployDefault.AllAtOnce"


def test_the_dag_id_and_environment_lookup(full_spec: ServiceSpec):
    assert full_spec.dag_id == "release__full-svc"
    assert full_spec.environment("production").approval.required == 2
    with pytest.raises(KeyError, match="no environment 'prod'"):
        full_spec.environment("prod")


def test_approvers_split_into_users_and_roles(full_spec: ServiceSpec):
    approval = full_spec.environment("production").approval
    assert approval.users == ("approver1", "approver2")
    assert approval.roles == ("release-managers",)


def test_required_approvals_count_the_members_of_roles():
    # release-managers (include/roles.yaml) is approver1 and approver2: with bob, three people.
    approval = Approval(approvers=("bob", "role:release-managers"), required=3, timeout="1h", on_timeout="reject")
    assert approval.required == 3
    with pytest.raises(ValidationError, match=r"asks for 4 approvals but only 3 people may approve \(bob, approver1"):
        Approval(approvers=("bob", "role:release-managers"), required=4, timeout="1h", on_timeout="reject")
    with pytest.raises(ValidationError, match=r"asks for 3 approvals but only 1 people may approve \(bob\)"):
        Approval(approvers=("bob",), required=3, timeout="1h", on_timeout="reject")


def test_a_person_in_a_role_and_named_counts_once():
    with pytest.raises(ValidationError, match="only 2 people may approve"):
        Approval(approvers=("approver1", "role:release-managers"), required=3, timeout="1h", on_timeout="reject")


def test_a_freeze_of_dates_covers_the_whole_end_day_in_the_window_timezone():
    berlin = ZoneInfo("Europe/Berlin")
    freeze = Freeze(start=date(2026, 12, 20), end=date(2027, 1, 4), reason="holidays")
    assert freeze.interval(berlin) == (datetime(2026, 12, 20, tzinfo=berlin), datetime(2027, 1, 5, tzinfo=berlin))
    timed = Freeze(start="2026-12-20T18:00:00", end="2026-12-21T06:00:00+00:00", reason="migration")
    start, end = timed.interval(berlin)
    assert start == datetime(2026, 12, 20, 18, tzinfo=berlin)  # no offset: the window's timezone
    assert end.utcoffset().total_seconds() == 0  # an explicit offset is kept


def test_predefined_deployment_configs_agree_with_the_sandbox():
    from shipflow.sandbox.codedeploy import PREDEFINED_CONFIGS

    assert PREDEFINED_DEPLOYMENT_CONFIGS == {name: c["computePlatform"] for name, c in PREDEFINED_CONFIGS.items()}


def test_importing_the_spec_package_stays_light():
    # DAG files import shipflow.spec while the dag-processor parses them.
    code = (
        "import sys, shipflow.spec; "
        "print(sorted(m for m in ('airflow', 'boto3', 'botocore', 'great_expectations', 'pandas', 'moto') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT / "plugins"
    ).stdout
    assert out.strip() == "[]"


def test_a_window_may_end_at_midnight_and_the_gate_reads_it():
    from shipflow.gates.window import DeploymentWindow
    from shipflow.spec import model

    window = model.Window(days=["mon"], start="20:00", end="24:00")
    assert (window.start, window.end) == ("20:00", "24:00")
    with pytest.raises(ValidationError, match="00:00-24:00"):
        model.Window(days=["mon"], start="20:00", end="24:30")
    gate = DeploymentWindow.from_spec({"timezone": "UTC", "windows": [window.model_dump(mode="json")]})
    assert "24:00" in gate.describe() or "00:00" in gate.describe()
