"""Benchmark: sandbox cold start and describe-call latency per service, against stock moto.

Both servers run in the same benchmark run on the same machine, as child processes reached over
loopback HTTP by boto3:

- baseline: stock ``moto.server`` (the pinned moto, no Shipflow extensions);
- sandbox:  ``shipflow sandbox up`` (moto + extensions + control API).

Cold start is the time from spawning the process until its endpoint answers. For each service one
resource is created, then the describe call that pollers use is made N times (default 200); the
median and p90 are reported. Results print as a Markdown table for docs/benchmarks.md.

    .venv/bin/python bench/bench_sandbox.py [--calls 200] [--repeat-start 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "123456789012"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind: str) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    if kind == "baseline":
        cmd = [sys.executable, "-m", "moto.server", "-p", str(port)]
        probe = f"http://127.0.0.1:{port}/moto-api/data.json"
    else:
        cmd = [sys.executable, "-m", "shipflow", "sandbox", "up", "--port", str(port)]
        probe = f"http://127.0.0.1:{port}/_shipflow/health"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    while True:
        try:
            with urllib.request.urlopen(probe, timeout=1):
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} server exited with {proc.returncode}") from None
            time.sleep(0.02)
    return proc, f"http://127.0.0.1:{port}", time.perf_counter() - started


def client(endpoint: str, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )


def prepare(endpoint: str) -> dict[str, Callable[[], Any]]:
    """One resource per service; returns the describe call to time for each."""
    cb, cd = client(endpoint, "codebuild"), client(endpoint, "codedeploy")
    cfn, cw, s3 = client(endpoint, "cloudformation"), client(endpoint, "cloudwatch"), client(endpoint, "s3")
    cb.create_project(
        name="bench",
        source={"type": "S3", "location": "bench/src.zip"},
        artifacts={"type": "NO_ARTIFACTS"},
        environment={"type": "LINUX_CONTAINER", "image": "img", "computeType": "BUILD_GENERAL1_SMALL"},
        serviceRole=f"arn:aws:iam::{ACCOUNT}:role/bench",
    )
    build_id = cb.start_build(projectName="bench")["build"]["id"]
    cd.create_application(applicationName="bench", computePlatform="Server")
    cd.create_deployment_group(
        applicationName="bench", deploymentGroupName="bench", serviceRoleArn=f"arn:aws:iam::{ACCOUNT}:role/bench"
    )
    s3.create_bucket(Bucket="bench")
    s3.put_object(Bucket="bench", Key="app.zip", Body=b"zip")
    deployment_id = cd.create_deployment(
        applicationName="bench",
        deploymentGroupName="bench",
        revision={"revisionType": "S3", "s3Location": {"bucket": "bench", "key": "app.zip", "bundleType": "zip"}},
    )["deploymentId"]
    template = '{"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}'
    cfn.create_stack(StackName="bench", TemplateBody=template)
    cw.put_metric_alarm(
        AlarmName="bench",
        Namespace="Bench",
        MetricName="Errors",
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanThreshold",
    )
    return {
        "codebuild batch_get_builds": lambda: cb.batch_get_builds(ids=[build_id]),
        "codedeploy get_deployment": lambda: cd.get_deployment(deploymentId=deployment_id),
        "cloudformation describe_stacks": lambda: cfn.describe_stacks(StackName="bench"),
        "cloudwatch describe_alarms": lambda: cw.describe_alarms(AlarmNames=["bench"]),
        "s3 head_object": lambda: s3.head_object(Bucket="bench", Key="app.zip"),
    }


def measure(kind: str, calls: int, repeat_start: int) -> dict[str, Any]:
    starts = []
    for _ in range(repeat_start - 1):
        proc, _, seconds = start(kind)
        starts.append(seconds)
        proc.terminate()
        proc.wait()
    proc, endpoint, seconds = start(kind)
    starts.append(seconds)
    try:
        results: dict[str, Any] = {"cold_start_s": statistics.median(starts), "calls": {}}
        for name, call in prepare(endpoint).items():
            call()  # first call pays lazy imports; it is cold-start cost, not call latency
            samples = []
            for _ in range(calls):
                t0 = time.perf_counter()
                call()
                samples.append((time.perf_counter() - t0) * 1000)
            samples.sort()
            results["calls"][name] = {
                "median_ms": statistics.median(samples),
                "p90_ms": samples[int(len(samples) * 0.9) - 1],
                "last_ms": samples[-1],
            }
        return results
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeat-start", type=int, default=3)
    args = parser.parse_args()
    baseline = measure("baseline", args.calls, args.repeat_start)
    sandbox = measure("sandbox", args.calls, args.repeat_start)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"calls per describe: {args.calls}; cold start: median of {args.repeat_start} starts\n")
    print("| measure | stock moto (baseline) | Shipflow sandbox | ratio sandbox/baseline |")
    print("|---|---|---|---|")
    b, s = baseline["cold_start_s"], sandbox["cold_start_s"]
    print(f"| cold start (s) | {b:.2f} | {s:.2f} | {s / b:.2f} |")
    for name in sandbox["calls"]:
        b, s = baseline["calls"][name]["median_ms"], sandbox["calls"][name]["median_ms"]
        bp, sp = baseline["calls"][name]["p90_ms"], sandbox["calls"][name]["p90_ms"]
        print(f"| {name} median (p90) ms | {b:.1f} ({bp:.1f}) | {s:.1f} ({sp:.1f}) | {s / b:.2f} |")


if __name__ == "__main__":
    main()
