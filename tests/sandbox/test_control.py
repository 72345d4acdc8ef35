"""The control API and the fault hooks that apply to every service (throttling, latency)."""

from __future__ import annotations

import time

import botocore.exceptions
import pytest

from shipflow.sandbox.client import SandboxError


def test_health_lists_every_extension(sandbox):
    health = sandbox.health()
    assert health["status"] == "ok"
    assert health["moto"] == "5.2.5"
    assert set(health["extensions"]) >= {"faults", "codebuild", "codedeploy", "cloudformation", "cloudwatch"}


def test_bad_fault_is_refused_with_reason(sandbox):
    with pytest.raises(SandboxError, match="unknown fault kind 'explode'"):
        sandbox.add_fault("explode", "codebuild")
    with pytest.raises(SandboxError, match="unknown service 'lambada'"):
        sandbox.add_fault("fail", "lambada")
    with pytest.raises(SandboxError, match="count must be a positive integer"):
        sandbox.add_fault("fail", "codebuild", count=0)
    assert sandbox.faults() == []


def test_throttle_uses_service_error_and_botocore_retries_it(sandbox):
    sandbox.add_fault("throttle", "codebuild", target="ListProjects", count=2)
    # Standard retry mode: 2 throttles then success, within 3 attempts.
    ok = sandbox.boto3("codebuild", retries={"mode": "standard", "total_max_attempts": 3})
    assert ok.list_projects()["projects"] == []
    [fault] = sandbox.faults()
    assert fault["fired"] == 2 and fault["exhausted"]
    assert fault["fired_on"] == ["ListProjects", "ListProjects"]

    sandbox.add_fault("throttle", "cloudformation", target="DescribeStacks", count=1)
    no_retry = sandbox.boto3("cloudformation", retries={"mode": "standard", "total_max_attempts": 1})
    with pytest.raises(botocore.exceptions.ClientError) as err:
        no_retry.describe_stacks()
    assert err.value.response["Error"]["Code"] == "Throttling"


def test_throttle_targets_only_the_named_action(sandbox):
    sandbox.add_fault("throttle", "codebuild", target="BatchGetBuilds", count=1)
    client = sandbox.boto3("codebuild", retries={"mode": "standard", "total_max_attempts": 1})
    assert client.list_projects()["projects"] == []
    assert sandbox.faults()[0]["fired"] == 0


def test_latency_delays_calls_until_removed(sandbox):
    client = sandbox.boto3("codebuild")
    fault = sandbox.add_fault("latency", "codebuild", count=None, params={"seconds": 1.0})
    started = time.monotonic()
    client.list_projects()
    assert time.monotonic() - started >= 1.0
    sandbox.remove_fault(fault["id"])
    started = time.monotonic()
    client.list_projects()
    assert time.monotonic() - started < 1.0  # a call takes milliseconds; 1 s leaves room for a loaded machine


def test_lifecycle_speed_is_validated_and_kept(sandbox):
    models = sandbox.set_lifecycle("manual", service="codebuild", times=3)
    assert models == {"codebuild::build": {"progression": "manual", "times": 3}}
    assert sandbox.lifecycle()["codebuild::build"] == {"progression": "manual", "times": 3}
    with pytest.raises(SandboxError, match="seconds > 0"):
        sandbox.set_lifecycle("time", service="codebuild", seconds=0)
    with pytest.raises(SandboxError, match="no lifecycle models for service 'nope'"):
        sandbox.set_lifecycle("immediate", service="nope")


def test_reset_forgets_resources_faults_and_speeds(sandbox):
    sandbox.boto3("sns").create_topic(Name="alerts")
    sandbox.add_fault("fail", "codebuild")
    sandbox.set_lifecycle("immediate", service="codebuild")
    sandbox.reset()
    assert sandbox.boto3("sns").list_topics()["Topics"] == []
    assert sandbox.faults() == []
    assert sandbox.lifecycle()["codebuild::build"] != {"progression": "immediate"}


def test_calls_are_counted_per_action_until_reset(sandbox):
    client = sandbox.boto3("codebuild")
    client.list_projects()
    client.list_projects()
    sandbox.boto3("sns").list_topics()
    calls = sandbox.calls()
    assert calls["codebuild:ListProjects"] == 2 and calls["sns:ListTopics"] == 1
    sandbox.reset()
    assert sandbox.calls() == {}
