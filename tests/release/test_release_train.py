"""Release trains: a spec's ``release_train`` schedules the release DAG at its window's openings, and a
scheduled run ships the newest artifact in S3 with the commit its upload recorded."""

from __future__ import annotations

import json
import textwrap
from types import SimpleNamespace

import pytest

from shipflow.release.builder import build_release_dag
from shipflow.release.tasks import ReleaseRequestCheckOperator, ReleaseRequestError, newest_artifact
from shipflow.release.timetable import DeploymentWindowTimetable
from shipflow.spec.loader import check_spec, load_spec

SPEC = """\
service: train-svc
owners: [alice]
{train}
artifact:
  bucket: train-artifacts
  key: "train-svc/train-svc-{{version}}.zip"
environments:
  - name: staging
    deployment:
      application: train-svc
      deployment_group: train-svc-staging
    post_checks:
      alarms: [train-svc-staging-errors]
    rollback:
      runbook_url: https://runbooks.example.com/train-svc
  - name: production
{window}
    deployment:
      application: train-svc
      deployment_group: train-svc-production
    post_checks:
      bake_time: 10m
      alarms: [train-svc-production-errors]
    rollback:
      runbook_url: https://runbooks.example.com/train-svc
"""
WINDOW = textwrap.indent(
    'deployment_window:\n  timezone: Europe/Berlin\n  windows:\n    - {days: [tue, thu], start: "10:00", end: "12:00"}',
    "    ",
)


def write(tmp_path, train="release_train: {environment: production}", window=WINDOW):
    path = tmp_path / "train-svc.yaml"
    path.write_text(SPEC.format(train=train, window=window))
    return path


def test_a_release_train_schedules_the_dag_at_the_windows_openings(tmp_path):
    dag = build_release_dag(load_spec(write(tmp_path)))
    assert isinstance(dag.timetable, DeploymentWindowTimetable)
    assert dag.timetable.summary == "Tue,Thu 10:00-12:00 Europe/Berlin"
    # A scheduled run has no conf: version and commit may be left out (the train resolves them).
    assert dag.params.get_param("version").value is None
    assert "Release train: leaves at each opening of production's deployment window" in dag.doc_md


def test_without_a_train_the_dag_is_triggered_only_and_the_version_is_required(tmp_path):
    dag = build_release_dag(load_spec(write(tmp_path, train="")))
    assert type(dag.timetable).__name__ == "NullTimetable"
    with pytest.raises(Exception, match="version"):
        dag.params.validate()


def test_a_train_needs_an_environment_with_windows(tmp_path):
    spec, errors = check_spec(write(tmp_path, train="release_train: {environment: staging}"))
    assert spec is None
    assert [e.message for e in errors] == [
        "environment staging has no deployment_window.windows; a train leaves when a window opens"
    ]
    spec, errors = check_spec(write(tmp_path, train="release_train: {environment: prod}"))
    assert "is not one of this service's environments (staging, production)" in errors[0].message


@pytest.fixture
def artifacts(sandbox):
    s3 = sandbox.boto3("s3")
    s3.create_bucket(Bucket="train-artifacts")
    for version, commit in (("1.2.0", "aaaaaaa"), ("1.10.0", "bbbbbbb"), ("1.10.1-rc.1", "ccccccc"), ("1.9.9", None)):
        metadata = {"commit": commit} if commit else {}
        s3.put_object(Bucket="train-artifacts", Key=f"train-svc/train-svc-{version}.zip", Body=b"x", Metadata=metadata)
    s3.put_object(Bucket="train-artifacts", Key="train-svc/notes.txt", Body=b"not an artifact")
    return s3


def test_the_newest_artifact_is_found_by_semantic_version(artifacts):
    # 1.10.0 is newer than 1.9.9 and 1.2.0 (not by text); 1.10.1-rc.1 is a pre-release of a newer one.
    assert newest_artifact(artifacts, "train-artifacts", "train-svc/train-svc-{version}.zip") == (
        "1.10.1-rc.1",
        "train-svc/train-svc-1.10.1-rc.1.zip",
    )
    artifacts.delete_object(Bucket="train-artifacts", Key="train-svc/train-svc-1.10.1-rc.1.zip")
    assert newest_artifact(artifacts, "train-artifacts", "train-svc/train-svc-{version}.zip")[0] == "1.10.0"
    assert newest_artifact(artifacts, "train-artifacts", "other/{version}.zip") is None


def scheduled_run(check, conf=None):
    run = SimpleNamespace(conf=conf or {}, run_type="scheduled")
    return check.execute({"dag_run": run})


def test_a_scheduled_run_ships_the_newest_artifact_with_its_commit(artifacts, sandbox, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_TRAIN_AWS",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": sandbox.endpoint, "region_name": "us-east-1"},
            }
        ),
    )
    train = {
        "bucket": "train-artifacts",
        "key": "train-svc/train-svc-{version}.zip",
        "aws_conn_id": "train_aws",
        "region_name": "us-east-1",
    }
    check = ReleaseRequestCheckOperator(task_id="check_release_request", environments=["production"], train=train)
    request = scheduled_run(check)
    assert (request["version"], request["commit"]) == ("1.10.1-rc.1", "ccccccc")
    assert request["environments"] == ["production"]
    # A manual run of the same DAG keeps its own request.
    manual = check.execute(
        {"dag_run": SimpleNamespace(conf={"version": "1.2.0", "commit": "aaaaaaa"}, run_type="manual")}
    )
    assert manual["version"] == "1.2.0"
    # An artifact uploaded without its commit stops the train with the fix.
    for key in (
        "train-svc/train-svc-1.10.1-rc.1.zip",
        "train-svc/train-svc-1.10.0.zip",
        "train-svc/train-svc-1.2.0.zip",
    ):
        artifacts.delete_object(Bucket="train-artifacts", Key=key)
    with pytest.raises(ReleaseRequestError, match=r"train-svc-1.9.9.zip has no commit metadata; upload artifacts"):
        scheduled_run(check)
