"""Reading specs: defaults merged, line numbers, the invalid corpus message by message, bad files isolated."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from shipflow.spec import (
    DEFAULTS_FILE,
    InvalidSpecError,
    SpecError,
    check_spec,
    load_defaults,
    load_spec,
    load_specs,
)
from shipflow.spec.loader import merge_defaults
from shipflow.spec.model import ServiceSpec
from tests.spec.conftest import INVALID, VALID

EXPECTED = yaml.safe_load((INVALID / "expected.yaml").read_text())
CORPUS = sorted(p.name for p in INVALID.glob("*.yaml") if p.name != "expected.yaml")

MINIMAL = (VALID / "minimal-svc.yaml").read_text()


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


# -- defaults ----------------------------------------------------------------------------------------------
def test_defaults_fill_what_a_minimal_spec_leaves_out(minimal_spec):
    env = minimal_spec.environments[0]
    assert minimal_spec.execution_mode == "queued"
    assert minimal_spec.artifact.bundle_type == "zip"
    assert (env.aws_conn_id, env.region) == ("aws_default", "us-east-1")
    assert (env.pre_checks.artifact_present, env.pre_checks.release_inputs) == (True, True)
    assert env.post_checks.bake_time == 300
    assert env.post_checks.namespace == "Shipflow/Service"
    assert (env.rollback.automatic, env.rollback.manual_fallback_timeout) == (True, 7200)
    assert env.deployment.compute_platform == "Server"


def test_optional_sections_get_defaults_only_when_the_spec_has_them(minimal_spec, full_spec):
    env = minimal_spec.environments[0]
    assert (env.approval, env.infrastructure, env.deployment_window, minimal_spec.notifications) == (None,) * 4
    production = full_spec.environment("production")
    assert (production.approval.timeout, production.approval.on_timeout) == (86400, "reject")  # timeout written
    assert full_spec.environment("staging").infrastructure.capabilities == ()


def test_an_explicit_value_wins_over_the_default(full_spec):
    staging, production = full_spec.environments
    assert full_spec.execution_mode == "superseded"
    assert staging.aws_conn_id == "aws_sandbox" and production.aws_conn_id == "aws_default"
    assert production.region == "eu-central-1" and staging.region == "us-east-1"
    assert production.rollback.automatic is False and production.rollback.manual_fallback_timeout == 5400
    assert staging.post_checks.metrics[0].statistic == "Average"  # default per metric
    assert staging.post_checks.metrics[1].statistic == "p99"


def test_stack_stable_defaults_to_whether_the_environment_has_infrastructure(minimal_spec, full_spec):
    assert minimal_spec.environments[0].pre_checks.stack_stable is False
    assert full_spec.environment("staging").pre_checks.stack_stable is True


def test_defaults_come_from_the_defaults_file_alone(tmp_path):
    defaults = load_defaults()
    defaults["environments"] = {**defaults["environments"], "region": "eu-west-1", "aws_conn_id": "aws_prod"}
    spec = load_spec(VALID / "minimal-svc.yaml", defaults=defaults)
    assert (spec.environments[0].region, spec.environments[0].aws_conn_id) == ("eu-west-1", "aws_prod")


def test_merging_leaves_the_spec_and_the_defaults_unchanged():
    defaults = load_defaults()
    data = yaml.safe_load(MINIMAL)
    before = (repr(defaults), repr(data))
    merge_defaults(defaults, data, ServiceSpec)
    assert (repr(defaults), repr(data)) == before


def test_a_mistake_in_the_defaults_file_names_that_file(tmp_path):
    text = DEFAULTS_FILE.read_text().replace("  region: us-east-1", "  regoin: us-east-1")
    path = write(tmp_path, "defaults.yaml", text)
    with pytest.raises(InvalidSpecError) as caught:
        load_defaults(path)
    line = text.splitlines().index("  regoin: us-east-1") + 1
    assert [str(e) for e in caught.value.errors] == [
        f"{path}:{line}: environments.regoin: unknown field; did you mean 'region'?"
    ]


# -- the invalid corpus ------------------------------------------------------------------------------------
def test_every_corpus_file_has_expected_messages_and_no_more():
    assert sorted(EXPECTED) == CORPUS


@pytest.mark.parametrize("name", CORPUS)
def test_each_mistake_is_reported_exactly(name, monkeypatch):
    monkeypatch.chdir(INVALID)
    spec, errors = check_spec(name)
    assert spec is None
    assert [str(e) for e in errors] == EXPECTED[name]


def test_load_spec_raises_with_every_problem():
    with pytest.raises(InvalidSpecError) as caught:
        load_spec(INVALID / "several-mistakes.yaml")
    assert [e.field_path for e in caught.value.errors] == [
        "execution_mode",
        "environments[0].region",
        "environments[0].approval.approvers",
    ]
    assert [e.line for e in caught.value.errors] == [4, 10, 12]
    assert str(caught.value).count("\n") == 2


def test_a_spec_error_reads_file_line_path_message_value():
    assert str(SpecError("a.yaml", 3, "environments[1].approval.required", "too many", 3)) == (
        "a.yaml:3: environments[1].approval.required: too many (got 3)"
    )
    assert str(SpecError("a.yaml", 1, "", "is empty")) == "a.yaml:1: is empty"
    assert str(SpecError("a.yaml", 2, "description", "odd", None)) == "a.yaml:2: description: odd (got null)"


# -- YAML --------------------------------------------------------------------------------------------------
def test_a_yaml_syntax_error_is_reported_at_the_parser_line(tmp_path):
    path = write(tmp_path, "minimal-svc.yaml", MINIMAL.replace("owners: [alice]", "owners: [alice"))
    _, errors = check_spec(path)
    assert len(errors) == 1
    assert errors[0].line == 4  # the parser notices the missing ] on the next key
    assert errors[0].message.startswith("invalid YAML: ")


def test_a_missing_field_is_reported_on_its_parent_line(tmp_path):
    text = MINIMAL.replace("      deployment_group: minimal-svc-staging\n", "")
    _, errors = check_spec(write(tmp_path, "minimal-svc.yaml", text))
    assert [str(e).split(": ", 1)[1] for e in errors] == ["environments[0].deployment.deployment_group: is required"]
    assert errors[0].line == text.splitlines().index("    deployment:") + 1


def test_python_tags_are_refused_not_executed(tmp_path):
    marker = tmp_path / "ran"
    text = MINIMAL.replace("owners: [alice]", f"owners: !!python/object/apply:os.system ['touch {marker}']")
    _, errors = check_spec(write(tmp_path, "minimal-svc.yaml", text))
    assert not marker.exists()
    assert errors[0].message.startswith("YAML tags are not allowed (!!python/object/apply:os.system)")


def test_the_key_on_stays_a_name(full_spec):
    # YAML 1.1 reads a plain `on:` key as True; a spec means the field `on`.
    assert full_spec.notifications.on == ("failure", "rollback")


def test_anchors_and_merge_keys_work_and_overrides_are_not_duplicates(tmp_path):
    text = MINIMAL.replace("  - name: staging\n", "  - &staging\n    name: staging\n") + (
        "  - <<: *staging\n    name: production\n    region: eu-west-1\n"
    )
    spec, errors = check_spec(write(tmp_path, "minimal-svc.yaml", text))
    assert errors == []
    assert [(e.name, e.region) for e in spec.environments] == [("staging", "us-east-1"), ("production", "eu-west-1")]


# -- files and directories ---------------------------------------------------------------------------------
def test_one_bad_file_does_not_stop_the_others(tmp_path):
    shutil.copy(VALID / "full-svc.yaml", tmp_path)
    shutil.copy(INVALID / "approval-required.yaml", tmp_path)
    shutil.copy(VALID / "minimal-svc.yaml", tmp_path)
    write(tmp_path, ".#full-svc.yaml", "editor lock file")
    specs, errors = load_specs(tmp_path)
    assert [s.service for s in specs] == ["full-svc", "minimal-svc"]
    assert [(Path(e.file).name, e.field_path) for e in errors] == [
        ("approval-required.yaml", "environments[0].approval.required")
    ]


def test_a_missing_directory_is_an_error_not_an_empty_list(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_specs(tmp_path / "services")


def test_a_yml_file_is_read_and_told_to_rename(tmp_path):
    write(tmp_path, "minimal-svc.yml", MINIMAL)
    specs, errors = load_specs(tmp_path)
    assert specs == []
    assert [e.message for e in errors] == ["spec files end in .yaml: rename it to minimal-svc.yaml"]


def test_a_buildspec_file_must_exist_under_include(tmp_path):
    include = tmp_path / "include"
    shutil.copytree(DEFAULTS_FILE.parent / "templates", include / "templates")
    write(include, "buildspec.yml", "version: 0.2\n")
    text = MINIMAL.replace(
        "artifact:", "build:\n  codebuild_project: b\n  buildspec_override: buildspec.yml\nartifact:"
    )
    assert check_spec(write(tmp_path, "minimal-svc.yaml", text), include_dir=include)[1] == []
    _, errors = check_spec(
        write(tmp_path, "minimal-svc.yaml", text.replace("buildspec.yml", "buildspc.yml")), include_dir=include
    )
    assert [e.message for e in errors] == ["file include/buildspc.yml does not exist; did you mean 'buildspec.yml'?"]


def test_the_complete_spec_in_the_docs_is_valid(tmp_path):
    doc = (DEFAULTS_FILE.parent.parent / "docs" / "service-spec.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    spec = load_spec(write(tmp_path, "payments-api.yaml", example))
    assert spec.dag_id == "release__payments-api"
