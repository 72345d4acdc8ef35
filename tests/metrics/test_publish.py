"""After computing: the great-expectations gate, CloudWatch (real boto3 calls to the sandbox), the
JSON/CSV exports and ``shipflow metrics``, on the fixed history of tests/metrics/history.yaml."""

from __future__ import annotations

import csv
import json
from datetime import timedelta

import pytest

from shipflow.aws.hooks.cloudwatch import CloudWatchAlarmsHook
from shipflow.cli import main
from shipflow.metrics.compute import compute
from shipflow.metrics.operators import validate
from shipflow.metrics.publish import NAMESPACE, export, metric_data, metric_kind, publish, read_rows
from tests.metrics.conftest import D1, END3


@pytest.fixture
def rows(history_store):
    compute(history_store.engine, D1, END3)
    return read_rows(history_store.engine)


def test_the_computed_history_passes_the_gate(rows):
    result = validate(rows)
    assert result.success, result.failure_lines()
    assert result.counts["evaluated"] >= 16 and result.rows == len(rows)


def test_the_gate_names_what_is_wrong_and_fails(rows):
    bad = [dict(r) for r in rows]
    rate = next(r for r in bad if metric_kind(r["metric"]) == "ratio")
    rate["value"] = 1.25
    duration = next(r for r in bad if metric_kind(r["metric"]) == "duration")
    duration["value"] = -4.0
    count = next(r for r in bad if r["metric"] == "gate_failures")
    count["value"] = count["samples"] + 3
    bad.append(dict(next(r for r in bad if r["metric"] == "releases")))  # a rerun that added, not replaced
    result = validate(bad)
    assert not result.success
    lines = result.failure_lines()
    assert "rates outside [0, 1]: 1.25" in lines
    assert "negative durations -4: an event's time or duration is wrong" in lines
    assert any(line.startswith("counts larger than what they were counted from") for line in lines)
    assert any("same metric twice" in line for line in lines)


def test_metric_kinds_decide_the_bounds():
    assert metric_kind("release_duration_seconds_p90") == "duration"
    assert metric_kind("change_failure_rate") == metric_kind("manual_fallback_frequency") == "ratio"
    assert metric_kind("deployment_frequency") == metric_kind("interventions_per_100_releases") == "per_release"
    assert metric_kind("gate_failures") == metric_kind("releases") == "count"


def test_published_to_cloudwatch_with_service_environment_and_window(rows, sandbox):
    now = max(r["window_end"] for r in rows) + timedelta(hours=1)
    sent = publish(rows, _sandbox_hook(sandbox, batch=40), now=now)
    assert sent["datapoints"] == len(rows) and sent["calls"] == -(-len(rows) // 40)
    assert all(sent["request_ids"])
    cloudwatch = sandbox.boto3("cloudwatch")
    listed = cloudwatch.get_paginator("list_metrics").paginate(Namespace=NAMESPACE).build_full_result()["Metrics"]
    names = {(m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"]))) for m in listed}
    row = next(r for r in rows if r["metric"] == "releases" and r["window"] == "day" and r["environment"] == "*")
    assert (
        "releases",
        (("Environment", "all"), ("Service", row["service"]), ("Window", "day")),
    ) in names
    stats = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE, MetricName="releases", Statistics=["Maximum"], Period=60,
        Dimensions=[{"Name": "Service", "Value": row["service"]}, {"Name": "Environment", "Value": "all"},
                    {"Name": "Window", "Value": "day"}],
        StartTime=row["window_end"] - timedelta(minutes=5), EndTime=row["window_end"],
    )["Datapoints"]
    assert [p["Maximum"] for p in stats] == [row["value"]]


def _sandbox_hook(sandbox, batch: int):
    class Hook(CloudWatchAlarmsHook):  # the real hook, on a client of the sandbox, in small batches
        conn = sandbox.boto3("cloudwatch")

        def put_metric_data(self, namespace, metric_data, batch=batch):
            return super().put_metric_data(namespace, metric_data, batch=batch)

    return Hook(aws_conn_id=None)


def test_rows_older_than_two_weeks_are_exported_only(rows):
    newest = max(r["window_end"] for r in rows)
    assert len(metric_data(rows, now=newest + timedelta(days=1))) == len(rows)
    assert metric_data(rows, now=newest + timedelta(days=15)) == []


def test_exported_as_json_and_csv(rows, tmp_path):
    files = export(rows, tmp_path / "out", "metrics-test")
    as_json = json.loads(open(files["json"]).read())
    with open(files["csv"], newline="") as handle:
        as_csv = list(csv.DictReader(handle))
    assert len(as_json) == len(as_csv) == len(rows)
    assert as_json[0]["window_end"] == rows[0]["window_end"].isoformat()
    assert float(as_csv[0]["value"]) == pytest.approx(rows[0]["value"])


def test_shipflow_metrics_prints_the_headline_of_the_newest_window(history_store, capsys):
    url = history_store.url.render_as_string(hide_password=False)
    assert main(["metrics", "--compute", "--url", url]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["window", "ending", "service", "env", "metric", "value", "samples"]
    assert all(line.split()[0] == "30d" for line in lines[1:])
    for metric in ("release_duration_seconds_p50", "task_failure_rate", "manual_fallback_frequency",
                   "change_failure_rate", "deployment_frequency"):
        assert metric in out
    assert main(["metrics", "--url", url, "--format", "json", "--detail", "--window", "day",
                 "--since", "2000-01-01"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["window"] for r in rows} == {"day"} and any(r["dimension"] for r in rows)


def test_shipflow_metrics_on_an_unreachable_store_is_one_line(capsys):
    assert main(["metrics", "--url", "postgresql://nobody@127.0.0.1:1/none"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("shipflow: cannot reach the audit store") and "Traceback" not in err
