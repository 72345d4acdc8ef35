"""``shipflow.telemetry``: audit events reach the wire as metrics through Airflow's own ``Stats``.

Each scenario runs ``observe`` in a fresh Python process configured only by ``AIRFLOW__METRICS__*``
variables, as an Airflow component is, and reads what arrives on a local UDP socket (StatsD) or
HTTP server (OTLP). One process runs every event of a scenario, since importing Airflow costs
~2 s; the events are told apart by their ``service`` tag, which is the case's name.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import logging
import math
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from shipflow.telemetry import metrics_for, observe
from tests.conftest import ROOT, skip_or_fail

SENTINEL = "shipflow-test-sentinel"
RUNNER = """
import json, socket, sys
from shipflow.telemetry import observe
sentinel_port, sentinel, cases = json.load(sys.stdin)
for case in cases:
    observe(
        case["kind"],
        service=case["service"],
        environment=case["environment"],
        stage=case["stage"],
        payload=case["payload"],
    )
if sentinel_port:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(sentinel.encode(), ("127.0.0.1", sentinel_port))
"""


@dataclass(frozen=True)
class Case:
    service: str  # the case's name, and the service tag of its metrics
    kind: str
    payload: Any
    influx: tuple[str, ...]  # exactly the shipflow datagrams expected, InfluxDB style, prefix "airflow"
    environment: str | None = None
    stage: str | None = None


LONG_SERVICE = "long-tags-" + "s" * 30  # 40 characters, the longest service name a spec allows

CASES = [
    # release_requested -> shipflow.release.started, by trigger
    *(
        Case(
            f"trigger-{trigger}",
            "release_requested",
            {"trigger": trigger, "version": "1.4.2"},
            (f"airflow.shipflow.release.started,service=trigger-{trigger},environment=none,trigger={trigger}:1|c",),
        )
        for trigger in ("ui", "rest", "schedule")
    ),
    # release_finished -> succeeded/failed, one rolled_back per rolled-back environment, duration
    Case(
        "finished-success",
        "release_finished",
        {"state": "success", "duration_seconds": 754.5, "outcomes": {"dev": "promoted", "prod": "promoted"}},
        (
            "airflow.shipflow.release.succeeded,service=finished-success,environment=none:1|c",
            "airflow.shipflow.release.duration,service=finished-success,environment=none,state=success:754500.000000|ms",
        ),
    ),
    Case(
        "finished-failed",
        "release_finished",
        {
            "state": "failed",
            "duration_seconds": 61.25,
            "outcomes": {"dev": "promoted", "staging": "rolled_back", "qa": "rolled_back", "prod": "superseded"},
        },
        (
            "airflow.shipflow.release.failed,service=finished-failed,environment=none:1|c",
            "airflow.shipflow.release.rolled_back,service=finished-failed,environment=staging:1|c",
            "airflow.shipflow.release.rolled_back,service=finished-failed,environment=qa:1|c",
            "airflow.shipflow.release.duration,service=finished-failed,environment=none,state=failed:61250.000000|ms",
        ),
    ),
    Case(
        "finished-records",  # outcomes as decide_outcome records rather than bare words
        "release_finished",
        {
            "state": "failed",
            "outcomes": {
                "dev": {"outcome": "promoted", "reason": None},
                "prod": {"outcome": "rolled_back", "reason": "an alarm fired during the bake time"},
            },
        },
        (
            "airflow.shipflow.release.failed,service=finished-records,environment=none:1|c",
            "airflow.shipflow.release.rolled_back,service=finished-records,environment=prod:1|c",
        ),
    ),
    # any task's event -> shipflow.stage.duration
    Case(
        "stage-deploy",
        "aws_action",
        {"state": "success", "duration_seconds": 12.5, "action": "codedeploy:CreateDeployment"},
        (
            "airflow.shipflow.stage.duration,service=stage-deploy,environment=staging,stage=deploy,"
            "state=success:12500.000000|ms",
        ),
        environment="staging",
        stage="deploy",
    ),
    Case(
        "gate-failed",
        "gate_decision",
        {"passed": False, "state": "failed", "duration_seconds": 0.75},
        (
            "airflow.shipflow.stage.duration,service=gate-failed,environment=prod,stage=check_alarms,"
            "state=failed:750.000000|ms",
            "airflow.shipflow.gate.failed,service=gate-failed,environment=prod,gate=check_alarms:1|c",
        ),
        environment="prod",
        stage="check_alarms",
    ),
    Case(
        "gate-passed",
        "gate_decision",
        {"passed": True, "state": "success", "duration_seconds": 2},
        (
            "airflow.shipflow.stage.duration,service=gate-passed,environment=prod,stage=check_alarms,"
            "state=success:2000.000000|ms",
        ),
        environment="prod",
        stage="check_alarms",
    ),
    # approval -> wait timer and one counter per decision
    *(
        Case(
            f"approval-{decision}",
            "approval",
            {"decision": decision, "wait_seconds": 90},
            (
                f"airflow.shipflow.approval.wait,service=approval-{decision},environment=prod,"
                "stage=approve_release:90000.000000|ms",
                f"airflow.shipflow.approval.{decision},service=approval-{decision},environment=prod,"
                "stage=approve_release:1|c",
            ),
            environment="prod",
            stage="approve_release",
        )
        for decision in ("approved", "rejected", "timed_out")
    ),
    Case(
        "manual-fallback",
        "manual_fallback",
        {"reason": "CodeDeploy unavailable"},
        ("airflow.shipflow.manual_fallback,service=manual-fallback,environment=prod,stage=deploy:1|c",),
        environment="prod",
        stage="deploy",
    ),
    Case(
        "manual-intervention",
        "manual_intervention",
        {"action": "mark_success"},
        (
            "airflow.shipflow.manual_intervention,service=manual-intervention,environment=prod,stage=deploy,"
            "action=mark_success:1|c",
        ),
        environment="prod",
        stage="deploy",
    ),
    Case(
        "aws-failed",
        "aws_action",
        {"state": "failed", "duration_seconds": 30.0},
        (
            "airflow.shipflow.stage.duration,service=aws-failed,environment=dev,stage=apply_stack,"
            "state=failed:30000.000000|ms",
            "airflow.shipflow.aws_action.failed,service=aws-failed,environment=dev,stage=apply_stack:1|c",
        ),
        environment="dev",
        stage="apply_stack",
    ),
    Case("no-metrics", "window_override", {"reason": "hotfix"}, (), environment="prod", stage="deploy"),
    # Malformed events: what can be sent is sent, the rest is dropped, nothing raises.
    Case(
        "bad-duration",
        "release_finished",
        {"state": "success", "duration_seconds": "abc", "outcomes": "prod"},
        ("airflow.shipflow.release.succeeded,service=bad-duration,environment=none:1|c",),
    ),
    Case(
        "nan-duration",
        "aws_action",
        {"state": "failed", "duration_seconds": math.nan},
        ("airflow.shipflow.aws_action.failed,service=nan-duration,environment=dev,stage=deploy:1|c",),
        environment="dev",
        stage="deploy",
    ),
    Case(
        "missing-fields",
        "release_requested",
        {},
        ("airflow.shipflow.release.started,service=missing-fields,environment=none,trigger=none:1|c",),
    ),
    Case("empty-finish", "release_finished", {}, ()),
    Case("bad-approval", "approval", {"wait_seconds": -5, "decision": "maybe"}, (), stage="approve_release"),
    Case(
        "not-a-mapping",
        "manual_fallback",
        ["not", "a", "mapping"],
        ("airflow.shipflow.manual_fallback,service=not-a-mapping,environment=none,stage=none:1|c",),
    ),
    Case("unknown-kind", "something_else", {"duration_seconds": "1"}, ()),
    # Tag values that Airflow would refuse in a metric name are made safe and short, so the metric
    # still goes out: the worst case (a 40-character service, four 40-character tags) fits in 250.
    Case(
        LONG_SERVICE,
        "manual_intervention",
        {"action": "clear, then=retry " + "a" * 60},
        (
            f"airflow.shipflow.manual_intervention,service={LONG_SERVICE},environment=EU_West_1_prod,"
            f"stage={'x' * 40},action=clear__then_retry_aaaaaaaaaaaaaaaaaaaaaa:1|c",
        ),
        environment="EU West/1:prod",
        stage="x" * 100,
    ),
]

# The same metrics in the DogStatsD style, for a few cases: tags after "|#", not in the name.
DATADOG = {
    "finished-failed": [
        "airflow.shipflow.release.failed:1|c|#service:finished-failed,environment:none",
        "airflow.shipflow.release.rolled_back:1|c|#service:finished-failed,environment:staging",
        "airflow.shipflow.release.rolled_back:1|c|#service:finished-failed,environment:qa",
        "airflow.shipflow.release.duration:61250.0|ms|#service:finished-failed,environment:none,state:failed",
    ],
    "gate-failed": [
        "airflow.shipflow.stage.duration:750.0|ms|#service:gate-failed,environment:prod,stage:check_alarms,"
        "state:failed",
        "airflow.shipflow.gate.failed:1|c|#service:gate-failed,environment:prod,gate:check_alarms",
    ],
    "approval-timed_out": [
        "airflow.shipflow.approval.wait:90000.0|ms|#service:approval-timed_out,environment:prod,stage:approve_release",
        "airflow.shipflow.approval.timed_out:1|c|#service:approval-timed_out,environment:prod,stage:approve_release",
    ],
}


# -- running observe in a fresh process ---------------------------------------------------------------
def _env(home: Path, **settings: str) -> dict[str, str]:
    """Only what the child needs: nothing from this shell's AIRFLOW__*, OTEL_* or DD_* reaches it."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AIRFLOW_HOME": str(home),
        "PYTHONPATH": str(ROOT / "plugins"),
    }
    env.update(settings)
    return env


def _statsd_env(home: Path, **settings: str) -> dict[str, str]:
    """StatsD on, to 127.0.0.1 (``_statsd_wire`` sets the port), prefix "airflow"; ``settings`` win."""
    statsd = {
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
    }
    return _env(home, **{**statsd, **settings})


def _run_cases(env: dict[str, str], cases: list[Case], sentinel_port: int | None) -> subprocess.CompletedProcess[str]:
    events = [
        {"kind": c.kind, "service": c.service, "environment": c.environment, "stage": c.stage, "payload": c.payload}
        for c in cases
    ]
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps([sentinel_port, SENTINEL, events]),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # observe never raises, and never makes Airflow log a traceback (a refused metric name would).
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    return proc


def _statsd_wire(env: dict[str, str], cases: list[Case]) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """Every datagram the cases produce on a fresh UDP port, in arrival order, split into lines."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        proc = _run_cases({**env, "AIRFLOW__METRICS__STATSD_PORT": str(port)}, cases, sentinel_port=port)
        # The child has exited: all it sent is queued here, the sentinel last.
        sock.settimeout(5)
        lines: list[str] = []
        while (data := sock.recv(65535)) != SENTINEL.encode():
            lines.extend(data.decode().splitlines())  # DogStatsD ends (and may pack) lines with "\n"
    return lines, proc


def _by_service(lines: list[str]) -> dict[str, list[str]]:
    """Shipflow's datagrams grouped by their service tag (Airflow's own metrics are left out)."""
    grouped: dict[str, list[str]] = {}
    for line in lines:
        if ".shipflow." not in line:
            continue
        if "|#" in line:  # DogStatsD: name:value|type|#k:v,...
            tags = dict(tag.split(":", 1) for tag in line.split("|#", 1)[1].split(","))
        else:  # InfluxDB: name,k=v,...:value|type
            tags = dict(tag.split("=", 1) for tag in line.split(":", 1)[0].split(",")[1:])
        grouped.setdefault(tags["service"], []).append(line)
    return grouped


def _require_client(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        skip_or_fail(f"the {module!r} client is not installed: pip install 'apache-airflow{extra}'")


@pytest.fixture(scope="module")
def influx_wire(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    _require_client("statsd", "[statsd]")
    env = _statsd_env(tmp_path_factory.mktemp("influx"), AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED="True")
    lines, _ = _statsd_wire(env, CASES)
    return _by_service(lines)


@pytest.fixture(scope="module")
def datadog_wire(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    _require_client("datadog", "-task-sdk[datadog]")
    env = _statsd_env(tmp_path_factory.mktemp("datadog"), AIRFLOW__METRICS__STATSD_DATADOG_ENABLED="True")
    lines, _ = _statsd_wire(env, [c for c in CASES if c.service in DATADOG])
    return _by_service(lines)


# -- StatsD -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.service)
def test_each_event_sends_exactly_its_metrics_influxdb_style(influx_wire, case):
    assert influx_wire.get(case.service, []) == list(case.influx)


def test_nothing_is_sent_that_no_case_expects(influx_wire):
    assert set(influx_wire) <= {c.service for c in CASES if c.influx}


@pytest.mark.parametrize("service", sorted(DATADOG))
def test_tags_travel_as_dogstatsd_tags_when_datadog_is_enabled(datadog_wire, service):
    assert datadog_wire.get(service, []) == DATADOG[service]


def test_plain_statsd_sends_the_metrics_without_their_tags(tmp_path):
    """Neither tag style enabled: the metrics go out, but every service and environment look the same."""
    _require_client("statsd", "[statsd]")
    cases = [c for c in CASES if c.service == "finished-failed"]
    lines, _ = _statsd_wire(_statsd_env(tmp_path), cases)
    assert [line for line in lines if ".shipflow." in line] == [
        "airflow.shipflow.release.failed:1|c",
        "airflow.shipflow.release.rolled_back:1|c",
        "airflow.shipflow.release.rolled_back:1|c",
        "airflow.shipflow.release.duration:61250.000000|ms",
    ]


def test_with_statsd_off_nothing_is_sent_and_nothing_fails(tmp_path):
    lines, _ = _statsd_wire(_statsd_env(tmp_path, AIRFLOW__METRICS__STATSD_ON="False"), CASES)
    assert lines == []


def test_without_the_statsd_client_airflow_says_so_and_nothing_fails(tmp_path):
    """statsd_on without Airflow's [statsd] extra: Airflow logs why and sends nothing."""
    missing = tmp_path / "missing"
    missing.mkdir()
    # A module that refuses to import stands in for the uninstalled client.
    (missing / "statsd.py").write_text("raise ImportError('No module named statsd')\n")
    env = _statsd_env(tmp_path)
    env["PYTHONPATH"] = f"{missing}{os.pathsep}{env['PYTHONPATH']}"
    lines, proc = _statsd_wire(env, CASES)
    assert lines == []
    assert "Could not configure StatsClient" in proc.stdout + proc.stderr


# -- OpenTelemetry ------------------------------------------------------------------------------------
class _OtlpCollector(BaseHTTPRequestHandler):
    received: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.received.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def otlp_collector() -> Iterator[tuple[str, list[bytes]]]:
    """A local OTLP/HTTP metrics endpoint that keeps every request body."""
    handler = type("Collector", (_OtlpCollector,), {"received": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1/metrics", handler.received
    finally:
        server.shutdown()
        server.server_close()


def test_with_opentelemetry_tags_become_attributes(tmp_path, otlp_collector):
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    endpoint, received = otlp_collector
    env = _env(
        tmp_path,
        AIRFLOW__METRICS__OTEL_ON="True",
        AIRFLOW__METRICS__OTEL_PREFIX="airflow",
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=endpoint,
    )
    cases = [c for c in CASES if c.service in ("finished-failed", "approval-approved")]
    _run_cases(env, cases, sentinel_port=None)  # Airflow flushes OTel metrics when the process exits

    points: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
    for body in received:
        for resource in ExportMetricsServiceRequest.FromString(body).resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if not metric.name.startswith("airflow.shipflow."):
                        continue
                    data = getattr(metric, metric.WhichOneof("data"))
                    for point in data.data_points:
                        tags = tuple((a.key, a.value.string_value) for a in point.attributes)
                        value = point.as_int if metric.WhichOneof("data") == "sum" else (point.count, point.sum)
                        points[metric.name, tags] = value
    assert points == {
        ("airflow.shipflow.release.failed", (("service", "finished-failed"), ("environment", "none"))): 1,
        ("airflow.shipflow.release.rolled_back", (("service", "finished-failed"), ("environment", "staging"))): 1,
        ("airflow.shipflow.release.rolled_back", (("service", "finished-failed"), ("environment", "qa"))): 1,
        (
            "airflow.shipflow.release.duration",
            (("service", "finished-failed"), ("environment", "none"), ("state", "failed")),
        ): (1, 61250.0),
        (
            "airflow.shipflow.approval.wait",
            (("service", "approval-approved"), ("environment", "prod"), ("stage", "approve_release")),
        ): (1, 90000.0),
        (
            "airflow.shipflow.approval.approved",
            (("service", "approval-approved"), ("environment", "prod"), ("stage", "approve_release")),
        ): 1,
    }


# -- in this process ----------------------------------------------------------------------------------
def test_importing_the_module_imports_no_airflow_or_metrics_client():
    code = (
        "import sys, shipflow.telemetry\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'airflow', 'statsd', 'datadog', 'opentelemetry'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_env(Path("/nonexistent")), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


class _BrokenPayload(Mapping[str, Any]):
    """A payload whose every read fails, as a listener bug might produce."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("broken payload")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("broken payload")

    def __len__(self) -> int:
        return 1

    def __contains__(self, key: object) -> bool:
        raise RuntimeError("broken payload")


def test_a_payload_that_fails_on_every_read_is_logged_not_raised(caplog):
    caplog.set_level(logging.WARNING, logger="shipflow.telemetry")
    observe("release_finished", service="payments", environment=None, stage=None, payload=_BrokenPayload())
    assert (
        metrics_for("aws_action", service="payments", environment="dev", stage="deploy", payload=_BrokenPayload()) == []
    )
    assert "broken payload" in caplog.text
