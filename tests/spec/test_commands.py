"""``shipflow validate`` and ``shipflow schema`` as functions: what they print and the exit codes."""

from __future__ import annotations

import json
import shutil

import jsonschema
import pytest

from shipflow.spec.commands import schema_command, validate_command
from shipflow.spec.loader import parse_yaml
from tests.spec.conftest import INVALID, VALID


@pytest.fixture
def services(tmp_path):
    shutil.copy(VALID / "full-svc.yaml", tmp_path)
    shutil.copy(VALID / "minimal-svc.yaml", tmp_path)
    return tmp_path


def test_valid_specs_exit_0_with_a_summary(services, capsys):
    assert validate_command([services]) == 0
    assert capsys.readouterr().out == "2 specs valid, 0 invalid\n"


def test_every_problem_is_printed_and_the_exit_code_is_1(services, capsys):
    shutil.copy(INVALID / "several-mistakes.yaml", services)
    shutil.copy(INVALID / "yaml-syntax.yaml", services)
    assert validate_command([str(services)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ", 1)[0].removeprefix(f"{services}/") for line in lines[:-1]] == [
        "several-mistakes.yaml:4",
        "several-mistakes.yaml:10",
        "several-mistakes.yaml:12",
        "yaml-syntax.yaml:8",
    ]
    assert lines[-1] == "2 specs valid, 2 invalid"


def test_files_and_directories_can_be_mixed(services, capsys):
    assert validate_command([services, INVALID / "missing-artifact.yaml"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{INVALID / 'missing-artifact.yaml'}:2: artifact: is required", "2 specs valid, 1 invalid"]


def test_a_path_that_does_not_exist_exits_2_before_validating(services, tmp_path, capsys):
    assert validate_command([services, tmp_path / "nope"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"shipflow validate: {tmp_path / 'nope'}: no such file or directory\n"


def test_one_service_in_two_places_is_invalid(services, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(VALID / "minimal-svc.yaml", other)
    assert validate_command([services, other]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{other / 'minimal-svc.yaml'}:1: service: is also defined in {services / 'minimal-svc.yaml'} "
        '(got "minimal-svc")',
        "2 specs valid, 1 invalid",
    ]


def test_an_empty_directory_says_so(tmp_path, capsys):
    assert validate_command([tmp_path]) == 0
    assert capsys.readouterr().out == f"no service specs (*.yaml) in {tmp_path}\n0 specs valid, 0 invalid\n"


def test_schema_prints_json_with_the_defaults(capsys):
    assert schema_command() == 0
    schema = json.loads(capsys.readouterr().out)
    environment = schema["$defs"]["Environment"]
    assert environment["properties"]["region"]["default"] == "us-east-1"
    assert environment["properties"]["aws_conn_id"]["default"] == "aws_default"
    assert sorted(environment["required"]) == ["deployment", "name"]  # the rest has defaults
    assert schema["$defs"]["PostChecks"]["properties"]["bake_time"]["default"] == "5m"
    assert schema["properties"]["environments"]["minItems"] == 1


@pytest.mark.parametrize("name", ["full-svc.yaml", "minimal-svc.yaml"])
def test_an_editor_using_the_schema_accepts_the_valid_specs(name, capsys):
    schema_command()
    schema = json.loads(capsys.readouterr().out)
    data, _, _ = parse_yaml(VALID / name)
    as_editor_sees_it = json.loads(json.dumps(data, default=str))  # dates are strings to an editor
    jsonschema.Draft202012Validator(schema).validate(as_editor_sees_it)


def test_an_editor_using_the_schema_flags_a_typo(capsys):
    schema_command()
    schema = json.loads(capsys.readouterr().out)
    data, _, _ = parse_yaml(INVALID / "unknown-field.yaml")
    assert not jsonschema.Draft202012Validator(schema).is_valid(json.loads(json.dumps(data, default=str)))


def test_schema_out_writes_a_file(tmp_path, capsys):
    target = tmp_path / "service-spec.schema.json"
    assert schema_command(target) == 0
    assert capsys.readouterr().out == f"wrote the service spec JSON schema to {target}\n"
    assert json.loads(target.read_text())["title"] == "Shipflow service spec"
    assert schema_command(tmp_path / "missing" / "schema.json") == 2
