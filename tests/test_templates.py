"""The CloudFormation templates of include/templates/: cfn-lint clean, created whole by the sandbox,
updated by a release's change set, and fed every parameter they need by the specs that use them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file
from cfnlint.decode import decode

from shipflow.aws.constants.cloudformation import CAPABILITIES, TEMPLATES_DIR
from shipflow.spec import load_specs

TEMPLATES = sorted(TEMPLATES_DIR.glob("*.yaml"))
# Values for parameters without a default, as a spec would give them.
SAMPLE_PARAMETERS = {"ServiceName": "tmpl-svc", "Environment": "test", "ReleaseVersion": "1.0.0"}
FAST = {"Delay": 0, "MaxAttempts": 50}


def lint_problems(path: Path) -> list[str]:
    """cfn-lint errors and warnings (informational matches are left out), one line each."""
    return [
        f"{path.name}:{m.linenumber}: {m.rule.id} {m.message}"
        for m in lint_file(path)
        if m.rule.severity in ("error", "warning")
    ]


def declared(path: Path) -> tuple[dict[str, Any], list[str]]:
    template, problems = decode(str(path))
    assert not problems, problems
    return template["Parameters"], list(template["Resources"])


def parameters(path: Path, **values: str) -> list[dict[str, str]]:
    params, _ = declared(path)
    required = [name for name, spec in params.items() if "Default" not in spec]
    missing = [name for name in required if name not in {**SAMPLE_PARAMETERS, **values}]
    assert not missing, f"{path.name} needs {missing}: add sample values to SAMPLE_PARAMETERS"
    given = {**SAMPLE_PARAMETERS, **values}
    return [{"ParameterKey": name, "ParameterValue": given[name]} for name in params if name in given]


def test_there_are_templates_to_check():
    assert {p.name for p in TEMPLATES} >= {"service-stack.yaml", "lambda-service.yaml"}


def test_cfn_lint_reports_a_broken_template(tmp_path):
    """The lint below would pass vacuously if cfn-lint stopped reporting."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n    Properties:\n      VisibilityTimout: 30\n")
    assert any("VisibilityTimout" in line for line in lint_problems(broken))


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_template_passes_cfn_lint(path):
    assert lint_problems(path) == []


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_sandbox_creates_every_resource_and_a_release_updates_the_stack(sandbox, path):
    cfn = sandbox.boto3("cloudformation")
    stack = f"tmpl-{path.stem}"
    cfn.create_stack(
        StackName=stack, TemplateBody=path.read_text(), Parameters=parameters(path), Capabilities=list(CAPABILITIES)
    )
    cfn.get_waiter("stack_create_complete").wait(StackName=stack, WaiterConfig=FAST)

    # moto skips resource types it does not model, so a stack can be CREATE_COMPLETE without them.
    _, logical_ids = declared(path)
    resources = {
        r["LogicalResourceId"]: r["ResourceStatus"]
        for r in cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]
    }
    assert resources == dict.fromkeys(logical_ids, "CREATE_COMPLETE")

    # What every release does: a change set with the new ReleaseVersion, executed.
    cfn.create_change_set(
        StackName=stack,
        ChangeSetName="release-1-1-0",
        TemplateBody=path.read_text(),
        Parameters=parameters(path, ReleaseVersion="1.1.0"),
        Capabilities=list(CAPABILITIES),
    )
    cfn.get_waiter("change_set_create_complete").wait(StackName=stack, ChangeSetName="release-1-1-0", WaiterConfig=FAST)
    cfn.execute_change_set(StackName=stack, ChangeSetName="release-1-1-0")
    cfn.get_waiter("stack_update_complete").wait(StackName=stack, WaiterConfig=FAST)
    described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    assert {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}["ReleaseVersion"] == "1.1.0"


def test_specs_give_every_parameter_their_template_needs():
    specs, errors = load_specs()
    assert not errors
    checked = 0
    for spec in specs:
        for env in spec.environments:
            if env.infrastructure is None:
                continue
            params, _ = declared(TEMPLATES_DIR / env.infrastructure.template)
            where = f"{spec.service}.yaml {env.name}"
            assert set(env.infrastructure.parameters) <= set(params), f"{where}: parameters the template lacks"
            required = {name for name, p in params.items() if "Default" not in p}
            assert required <= set(env.infrastructure.parameters), f"{where}: template parameters not given"
            checked += 1
    assert checked >= 4
