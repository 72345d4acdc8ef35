"""CodeDeployHook against the sandbox: botocore's waiter agrees with our statuses; batched describes."""

from __future__ import annotations

import pytest

from shipflow.aws.constants import codedeploy as constants
from shipflow.aws.hooks.codedeploy import CodeDeployHook
from shipflow.aws.utils.record import CallRecorder
from tests.aws.codedeploy_helpers import APP, GROUP, create_group, start, upload_bundles


@pytest.fixture
def hook(aws_conn):
    return CodeDeployHook(aws_conn_id=aws_conn)


def test_botocore_waiter_agrees_with_the_constants(hook):
    # No waiters/codedeploy.json: botocore's DeploymentSuccessful is used, so check it has not moved.
    assert hook.waiter_path is None
    waiter = hook.get_waiter(constants.WAITER_DEPLOYMENT_SUCCESSFUL)
    by_state: dict[str, set[str]] = {}
    for acceptor in waiter.config.acceptors:
        assert (acceptor.matcher, acceptor.argument) == ("path", "deploymentInfo.status")
        by_state.setdefault(acceptor.state, set()).add(acceptor.expected)
    assert by_state == {
        "success": {constants.DEPLOYMENT_SUCCEEDED},
        "failure": set(constants.DEPLOYMENT_FAILURE_STATES),
    }
    assert not set(constants.DEPLOYMENT_IN_FLIGHT_STATES) & set().union(*by_state.values())


def test_describes_are_batched_25_ids_at_a_time(sandbox, hook):
    sandbox.set_lifecycle("immediate", service="codedeploy")
    upload_bundles(sandbox, "1.0.0")
    create_group(sandbox)
    for _ in range(30):
        start(sandbox, "1.0.0")
    ids = hook.list_deployment_ids(APP, GROUP, [constants.DEPLOYMENT_SUCCEEDED], limit=100)
    assert len(ids) == 30

    recorder = CallRecorder().attach(hook.conn)
    found = hook.get_deployments(ids)
    assert sorted(d["deploymentId"] for d in found) == sorted(ids)
    assert [c["operation"] for c in recorder.calls] == ["BatchGetDeployments", "BatchGetDeployments"]
    assert hook.list_deployment_ids(APP, GROUP, [constants.DEPLOYMENT_SUCCEEDED], limit=5) == ids[:5]
    assert hook.list_deployment_ids(APP, GROUP, ["Failed"], limit=5) == []
