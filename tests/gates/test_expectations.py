"""The great-expectations gates: the engine with real GX, release inputs, and service metrics in the sandbox."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from shipflow.gates.expectations import (
    GateFailed,
    ReleaseInputsGateOperator,
    ServiceMetricsGateOperator,
    SuiteError,
    load_suite,
    validate_rows,
)
from tests.aws import conftest as aws_fixtures
from tests.aws.cloudwatch_helpers import APPLICATION, GROUP, SERVICE_NAMESPACE, deploy_revision
from tests.conftest import ROOT

# The AWS action tests' fixtures: an Airflow connection to the sandbox, and a task context.
aws_conn = aws_fixtures.aws_conn
task_context = aws_fixtures.task_context

BUCKET = "shipflow-artifacts"
KEY = "payments-api/payments-api-1.4.0.zip"

# A suite for the engine: each kind of expectation the gates use, one of them a warning.
ENGINE_SUITE = {
    "name": "engine_test",
    "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "version"}},
        {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "commit", "regex": "^[0-9a-f]{7,40}$"}},
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "error_rate", "min_value": 0, "max_value": {"$PARAMETER": "max_error_rate"}},
        },
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "environment", "value_set": ["staging", "production"]},
            "severity": "warning",
        },
    ],
}


def good_row(**overrides):
    row = {"version": "1.4.0", "commit": "3f2c1ab", "error_rate": 0.5, "environment": "staging"}
    return {**row, **overrides}


def write_suite(tmp_path, suite, name="suite.json"):
    path = tmp_path / name
    path.write_text(json.dumps(suite))
    return path


# -- the engine -------------------------------------------------------------------------------------
def test_engine_passes_clean_rows_with_resolved_parameters(tmp_path):
    result = validate_rows(
        [good_row(), good_row(error_rate=4.9)], write_suite(tmp_path, ENGINE_SUITE), {"max_error_rate": 5}
    )

    assert result.success and result.rows == 2 and result.gx_version == "1.24.1"
    assert result.counts == {
        "evaluated": 4,
        "passed": 4,
        "failed": 0,
        "failed_critical": 0,
        "failed_warning": 0,
        "failed_info": 0,
    }
    between = result.expectations[2]
    assert between["kwargs"] == {"column": "error_rate", "min_value": 0.0, "max_value": 5.0}  # $PARAMETER resolved
    assert between["observed"] == {"unexpected_count": 0, "element_count": 2}
    assert [e["severity"] for e in result.expectations] == ["critical", "critical", "critical", "warning"]
    json.dumps(result.as_dict())  # XCom and the audit trail need it JSON-safe
    assert result.timings["validate_s"] < 5


def test_engine_failures_are_reported_in_plain_words(tmp_path):
    rows = [
        good_row(version=None, commit="xyz"),
        good_row(commit="HEAD", error_rate=40.0),
        good_row(error_rate=7.5, environment="prod"),
    ]
    result = validate_rows(rows, write_suite(tmp_path, ENGINE_SUITE), {"max_error_rate": 5})

    assert not result.success
    assert result.failure_lines() == [
        "version: missing in 1 of 3 rows",
        "commit: 2 of 3 values do not match ^[0-9a-f]{7,40}$ (e.g. 'xyz', 'HEAD')",
        "error_rate: 2 of 3 values above the maximum 5 (highest 40)",
    ]
    assert result.failure_lines("warning") == [
        "environment: 1 of 3 values are not one of 'staging', 'production' (e.g. 'prod')"
    ]
    assert result.counts["failed_critical"] == 3 and result.counts["failed_warning"] == 1
    error_rate = result.expectations[2]
    assert error_rate["unexpected_examples"] == [40.0, 7.5]
    assert error_rate["observed"]["highest_unexpected"] == 40.0

    failed = GateFailed(result)
    assert str(failed).splitlines() == [
        "Gate engine_test failed: 3 check(s) not met (and 1 warning(s)):",
        "- version: missing in 1 of 3 rows",
        "- commit: 2 of 3 values do not match ^[0-9a-f]{7,40}$ (e.g. 'xyz', 'HEAD')",
        "- error_rate: 2 of 3 values above the maximum 5 (highest 40)",
    ]


def test_engine_only_critical_failures_fail_and_examples_are_capped(tmp_path):
    rows = [good_row(environment="prod")] * 3
    assert validate_rows(rows, write_suite(tmp_path, ENGINE_SUITE), {"max_error_rate": 5}).success

    result = validate_rows(
        [good_row(commit=f"bad-{i}") for i in range(8)], write_suite(tmp_path, ENGINE_SUITE), {"max_error_rate": 5}
    )
    [commit] = result.failures()
    assert commit["unexpected_count"] == 8 and len(commit["unexpected_examples"]) == 5


@pytest.mark.parametrize(
    ("change", "parameters", "expected"),
    [
        (
            {"type": "expect_column_values_to_be_betwen", "kwargs": {"column": "x", "max_value": 1}},
            {},
            "expectations[1]: unknown expectation type 'expect_column_values_to_be_betwen' "
            "(did you mean 'expect_column_values_to_be_between'?)",
        ),
        (
            {"type": "expect_column_values_to_be_between", "kwargs": {"column": "x", "mx_value": 1, "min_value": 0}},
            {},
            "expectations[1] (expect_column_values_to_be_between): unknown kwarg 'mx_value'",
        ),
        (
            {"type": "expect_column_values_to_not_be_null", "kwargs": {}},
            {},
            "expectations[1] (expect_column_values_to_not_be_null): missing kwarg 'column'",
        ),
        (
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}, "severity": "fatal"},
            {},
            "expectations[1] (expect_column_values_to_not_be_null): severity 'fatal' is not one of critical, warning, "
            "info",
        ),
        (
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}, "notes": "?"},
            {},
            "expectations[1] has unknown key(s) ['notes']",
        ),
        (
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "x", "max_value": {"$PARAMETER": "cap"}},
            },
            {},
            "expectations[1] (expect_column_values_to_be_between) needs parameter 'cap'",
        ),
        (
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "x", "max_value": {"$PARAMETER": "cap"}},
            },
            {"cap": 1, "capp": 2},
            "parameter(s) ['capp'] are not used by suite 'strict'; check for a typo",
        ),
    ],
    ids=[
        "unknown-type",
        "unknown-kwarg",
        "missing-kwarg",
        "bad-severity",
        "unknown-key",
        "missing-param",
        "unused-param",
    ],
)
def test_a_wrong_suite_names_the_file_the_expectation_and_the_name(tmp_path, change, parameters, expected):
    suite = {
        "name": "strict",
        "expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}}, change],
    }
    path = write_suite(tmp_path, suite)
    with pytest.raises(SuiteError) as failure:
        validate_rows([{"x": 1}], path, parameters)
    assert str(failure.value).startswith(f"{path}: ")
    assert expected in str(failure.value)


@pytest.mark.parametrize("name", ["release_inputs", "service_metrics"])
def test_the_shipped_suites_pass_the_strict_path(name):
    suite = load_suite(name)
    assert suite.name == name and suite.path.parent.name == "expectations"


# -- release inputs -----------------------------------------------------------------------------------
def release_op(**overrides):
    fields = {
        "task_id": "check_release_inputs",
        "service": "payments-api",
        "environment": "staging",
        "version": "1.4.0",
        "commit": "3f2c1ab9e0d4c7b2a1f08e6d5c4b3a2918f7e6d5",
        "change_reference": "OPS-1234",
        "artifact_bucket": BUCKET,
        "artifact_key": KEY,
        "artifact_size": 2048,
        "artifact_etag": "9b2cf535f27731c974343645a3985328",
        "artifact_last_modified": "2026-11-26T11:58:00Z",
    }
    return ReleaseInputsGateOperator(**{**fields, **overrides})


def test_release_inputs_pass_with_the_inputs_as_evidence(task_context):
    evidence = release_op(change_reference="https://jira.example.com/browse/OPS-1234").execute(task_context())

    assert evidence["success"] and evidence["suite"] == "release_inputs"
    assert evidence["counts"]["failed"] == 0 and evidence["counts"]["evaluated"] == 13
    assert evidence["inputs"]["version"] == "1.4.0" and evidence["inputs"]["artifact_size"] == 2048
    json.dumps(evidence)


def test_release_inputs_fail_listing_every_bad_input(task_context):
    op = release_op(version="v1.4", commit="main", change_reference="fix stuff", artifact_size="0")
    with pytest.raises(GateFailed) as failure:
        op.execute(task_context())

    assert str(failure.value).splitlines() == [
        "Gate release_inputs failed for payments-api v1.4 to staging: 4 check(s) not met:",
        "- version 'v1.4' is not a semantic version: use MAJOR.MINOR.PATCH with optional -prerelease and +build "
        "(e.g. 1.4.0, 2.0.0-rc.1), no leading v",
        "- commit 'main' is not a git commit sha: use 7 to 40 hex digits (git rev-parse HEAD)",
        "- change_reference 'fix stuff' does not match ^(?:[A-Z][A-Z0-9_]*-[0-9]+|https?://\\S+)$: give the change "
        "ticket (e.g. OPS-123) or its URL",
        f"- artifact s3://{BUCKET}/{KEY} is empty (0 bytes): rebuild and upload it",
    ]
    evidence = failure.value.evidence
    assert evidence["inputs"]["artifact_size"] == 0  # the rendered "0" was read as a number
    assert {e["column"] for e in failure.value.result.failures()} == {
        "version",
        "commit",
        "change_reference",
        "artifact_size",
    }


def test_release_inputs_blank_templates_are_missing_inputs(task_context):
    # What "{{ dag_run.conf.get('commit') }}" renders to when the trigger did not pass a commit.
    with pytest.raises(GateFailed, match="- commit is missing: give the git commit sha the artifact was built from"):
        release_op(commit="None").execute(task_context())


def test_release_inputs_change_reference_pattern_is_a_parameter(task_context):
    op = release_op(change_reference="CHG0012345", parameters={"change_reference_pattern": r"^CHG\d{7}$"})
    assert op.execute(task_context())["success"]

    with pytest.raises(SuiteError, match=r"parameter\(s\) \['change_ref_pattern'\] are not used"):
        release_op(parameters={"change_ref_pattern": r"^CHG\d{7}$"}).execute(task_context())


def test_release_inputs_read_the_artifact_from_s3(sandbox, aws_conn, task_context):
    s3 = sandbox.boto3("s3")
    s3.create_bucket(Bucket=BUCKET)
    etag = s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"x" * 1234)["ETag"].strip('"')
    fields = {"artifact_size": None, "artifact_etag": None, "artifact_last_modified": None}

    evidence = release_op(aws_conn_id=aws_conn, **fields).execute(task_context())
    assert evidence["success"]
    assert (evidence["inputs"]["artifact_size"], evidence["inputs"]["artifact_etag"]) == (1234, etag)
    assert evidence["inputs"]["artifact_last_modified"].endswith("Z")

    missing = "payments-api/payments-api-9.9.9.zip"
    with pytest.raises(GateFailed) as failure:
        release_op(aws_conn_id=aws_conn, artifact_key=missing, **fields).execute(task_context())
    assert str(failure.value).splitlines()[1:] == [
        f"- no artifact at s3://{BUCKET}/{missing}: upload the build's artifact there, or fix "
        "artifact_bucket/artifact_key"
    ]
    assert "artifact_etag" in {e["column"] for e in failure.value.result.failures("warning")}


def test_release_inputs_refuse_artifact_metadata_beside_a_connection():
    with pytest.raises(ValueError, match="check_release_inputs: artifact_size given with aws_conn_id='aws_sandbox'"):
        release_op(aws_conn_id="aws_sandbox", artifact_etag=None, artifact_last_modified=None)


# -- service metrics ----------------------------------------------------------------------------------
DIMENSIONS = {"Application": APPLICATION, "DeploymentGroup": GROUP}
CHECKS = [
    {"metric": "ErrorRate", "statistic": "Average", "max": 5},
    {"metric": "LatencyP99", "statistic": "Maximum", "max": 1000},
]


@pytest.fixture
def window():
    """A 10-minute window that ended a minute ago, on whole minutes (so 60 s periods are predictable)."""
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    return end - timedelta(minutes=10), end


def put_metric(cw, metric, value, at):
    dimensions = [{"Name": k, "Value": v} for k, v in DIMENSIONS.items()]
    cw.put_metric_data(
        Namespace=SERVICE_NAMESPACE,
        MetricData=[{"MetricName": metric, "Dimensions": dimensions, "Value": value, "Timestamp": at}],
    )


def metrics_op(aws_conn, window=None, **overrides):
    fields = {
        "task_id": "check_service_metrics",
        "namespace": SERVICE_NAMESPACE,
        "dimensions": DIMENSIONS,
        "checks": CHECKS,
        "aws_conn_id": aws_conn,
    }
    if window:  # as the templates render them
        fields |= {"start": window[0].isoformat(), "end": window[1].isoformat()}
    return ServiceMetricsGateOperator(**{**fields, **overrides})


def seed(cw, window, error_rates, latencies=(120.0, 180.0)):
    start = window[0]
    for minute, value in enumerate(error_rates, start=2):
        put_metric(cw, "ErrorRate", value, start + timedelta(minutes=minute, seconds=10))
    for minute, value in enumerate(latencies, start=2):
        put_metric(cw, "LatencyP99", value, start + timedelta(minutes=minute, seconds=20))


def test_metrics_gate_passes_healthy_metrics_with_a_summary(sandbox, aws_conn, task_context, window):
    cw = sandbox.boto3("cloudwatch")
    seed(cw, window, error_rates=[0.4, 0.6])
    put_metric(cw, "ErrorRate", 90.0, window[1] + timedelta(seconds=5))  # after the window: not read

    evidence = metrics_op(aws_conn, window).execute(task_context())

    assert evidence["success"] and evidence["suite"] == "service_metrics"
    errors, latency = evidence["metrics"]
    assert (errors["metric"], errors["datapoints"], errors["min"], errors["max"], errors["last"]) == (
        "ErrorRate",
        2,
        0.4,
        0.6,
        0.6,
    )
    assert (latency["statistic"], latency["max"], latency["max_allowed"]) == ("Maximum", 180.0, 1000.0)
    assert evidence["window"] == {
        "start": window[0].isoformat().replace("+00:00", "Z"),
        "end": window[1].isoformat().replace("+00:00", "Z"),
        "period_s": 60,
    }
    json.dumps(evidence)


def test_metrics_gate_fails_naming_the_metric_and_its_observed_max(sandbox, aws_conn, task_context, window):
    seed(sandbox.boto3("cloudwatch"), window, error_rates=[0.4, 30.0])

    with pytest.raises(GateFailed) as failure:
        metrics_op(aws_conn, window).execute(task_context())

    assert str(failure.value).splitlines()[1:] == [
        "- ErrorRate Average: 1 of 2 values above the maximum 5 (highest 30)"
    ]
    assert failure.value.evidence["metrics"][0]["max"] == 30.0


def test_metrics_gate_fails_when_a_metric_has_no_datapoints(sandbox, aws_conn, task_context, window):
    seed(sandbox.boto3("cloudwatch"), window, error_rates=[])

    with pytest.raises(GateFailed) as failure:
        metrics_op(aws_conn, window).execute(task_context())

    start, end = (w.isoformat().replace("+00:00", "Z") for w in window)
    assert str(failure.value).splitlines()[1:] == [
        f"- no datapoints for ErrorRate in {start} to {end} ({SERVICE_NAMESPACE}, Application={APPLICATION}, "
        f"DeploymentGroup={GROUP}): check the namespace and dimensions, or that the service reports ErrorRate"
    ]
    assert failure.value.evidence["metrics"][0]["datapoints"] == 0


def test_metrics_gate_on_a_live_revision_passes_then_fails_when_it_turns_unhealthy(sandbox, aws_conn, task_context):
    deploy_revision(sandbox, "1.4.0")  # the sandbox now emits the revision's metrics every 5 s
    checks = [
        {"metric": "ErrorRate", "statistic": "Maximum", "max": 5},
        {"metric": "LatencyP99", "statistic": "Maximum", "max": 1000},
        {"metric": "RequestCount", "statistic": "Sum", "min": 1},
    ]
    healthy = metrics_op(aws_conn, checks=checks, window_seconds=300).execute(task_context())
    assert healthy["success"]
    assert all(m["datapoints"] >= 1 for m in healthy["metrics"])

    # The next revision serves traffic with a 25 % error rate and 1.5 s latency (the sandbox's fault).
    key = f"{APPLICATION}/{APPLICATION}-1.5.0.zip"
    sandbox.add_fault("unhealthy", "codedeploy", target=key, count=None)
    sandbox.boto3("s3").put_object(Bucket=BUCKET, Key=key, Body=b"bundle")
    codedeploy = sandbox.boto3("codedeploy")
    deployment = codedeploy.create_deployment(
        applicationName=APPLICATION,
        deploymentGroupName=GROUP,
        revision={"revisionType": "S3", "s3Location": {"bucket": BUCKET, "key": key, "bundleType": "zip"}},
    )["deploymentId"]
    assert codedeploy.get_deployment(deploymentId=deployment)["deploymentInfo"]["status"] == "Succeeded"
    with pytest.raises(GateFailed) as failure:
        metrics_op(aws_conn, checks=checks, window_seconds=300).execute(task_context())

    lines = str(failure.value).splitlines()[1:]
    assert len(lines) == 2
    assert re.fullmatch(r"- ErrorRate Maximum: 1 of \d+ values above the maximum 5 \(highest 2\d(\.\d+)?\)", lines[0])
    assert re.fullmatch(
        r"- LatencyP99 Maximum: 1 of \d+ values above the maximum 1000 \(highest 1\d{3}(\.\d+)?\)", lines[1]
    )


def test_metrics_gate_reads_a_check_on_its_own_dimensions(sandbox, aws_conn, task_context, window):
    cw = sandbox.boto3("cloudwatch")
    seed(cw, window, error_rates=[0.4])
    cw.put_metric_data(
        Namespace=SERVICE_NAMESPACE,
        MetricData=[
            {
                "MetricName": "QueueDepth",
                "Dimensions": [{"Name": "Queue", "Value": "payments-jobs"}],
                "Value": 12.0,
                "Timestamp": window[0] + timedelta(minutes=3),
            }
        ],
    )
    queue = {"metric": "QueueDepth", "statistic": "Maximum", "max": 100, "dimensions": {"Queue": "payments-jobs"}}

    evidence = metrics_op(aws_conn, window, checks=[*CHECKS, queue]).execute(task_context())

    depth = evidence["metrics"][2]
    assert (depth["dimensions"], depth["datapoints"], depth["max"]) == ({"Queue": "payments-jobs"}, 1, 12.0)

    other = [{**queue, "dimensions": {"Queue": "other"}}]
    with pytest.raises(GateFailed, match=rf"no datapoints for QueueDepth in .* \({SERVICE_NAMESPACE}, Queue=other\)"):
        metrics_op(aws_conn, window, checks=other).execute(task_context())


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"checks": [{"metric": "ErrorRate"}]}, r"checks\[0\] \(ErrorRate\) needs min and/or max"),
        (
            {"checks": [{"metric": "ErrorRate", "max": 5, "threshold": 1}]},
            r"checks\[0\] has unknown key\(s\) \['threshold'\]",
        ),
        ({"checks": [{"metric": "ErrorRate", "statistic": "Mean", "max": 5}]}, r"checks\[0\].statistic='Mean'"),
        ({"checks": [CHECKS[0], CHECKS[0]]}, "checks repeat ErrorRate Average"),
        ({"window_seconds": None}, "give start and end, or window_seconds"),
        ({"period": 45}, "period=45"),
    ],
)
def test_metrics_gate_mistakes_fail_when_the_dag_is_parsed(overrides, expected):
    with pytest.raises(ValueError, match=f"check_service_metrics: .*{expected}"):
        metrics_op("aws_sandbox", **{"window_seconds": 300, **overrides})


def test_importing_the_gates_does_not_import_great_expectations_or_pandas():
    code = (
        "import shipflow.gates.expectations, sys; "
        "assert 'great_expectations' not in sys.modules and 'pandas' not in sys.modules, 'heavy import'"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env, timeout=60)
