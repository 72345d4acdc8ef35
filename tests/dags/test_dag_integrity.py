"""Every DAG in dags/ imports without errors and carries what operators of the platform rely on."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="shipflow-tests-airflow-"))

from tests.conftest import ROOT  # noqa: E402


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_one_release_dag_per_example_service(dagbag):
    services = sorted(p.stem for p in (ROOT / "include" / "services").glob("*.yaml"))
    assert len(services) >= 3
    assert sorted(d for d in dagbag.dags if d.startswith("release__")) == [f"release__{s}" for s in services]


def test_every_dag_has_owners_tags_and_a_description(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.owner and dag.owner != "airflow", dag_id
        assert dag.tags, dag_id
        assert dag.doc_md, dag_id


@pytest.mark.parametrize(
    "service, has_stack, has_approval, has_build",
    [
        ("payments-api", True, True, True),
        ("inventory-worker", False, False, True),
        ("storefront-web", True, True, False),
    ],
)
def test_example_service_task_graphs(dagbag, service, has_stack, has_approval, has_build):
    dag = dagbag.dags[f"release__{service}"]
    ids = set(dag.task_dict)
    assert ("build" in ids) is has_build
    assert ("production.plan_stack" in ids) is has_stack
    assert ("production.rollback_stack" in ids) is has_stack
    assert ("production.approve_release" in ids) is has_approval
    # Staging promotes before production starts; production's gates run before its deploy.
    assert dag.task_dict["production.enter"].upstream_task_ids == {"staging.promote"}
    order = [t for t in ("check_alarms", "check_artifact_present", "check_release_inputs", "deploy", "watch_bake",
                         "check_service_metrics") if f"production.{t}" in ids]
    for before, after in zip(order, order[1:], strict=False):
        assert f"production.{before}" in dag.task_dict[f"production.{after}"].get_flat_relative_ids(upstream=True)


def test_the_metrics_dag_is_hourly_and_computes_then_validates_then_publishes(dagbag):
    dag = dagbag.dags["shipflow_metrics"]
    assert dag.max_active_runs == 1
    assert dag.task_dict["validate_metrics"].upstream_task_ids == {"compute_metrics"}
    assert dag.task_dict["publish_metrics"].upstream_task_ids == {"validate_metrics"}
