"""The DAG factory: the task graph a spec produces, and broken specs isolated as one import error."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="shipflow-tests-airflow-"))

from tests.conftest import ROOT  # noqa: E402

VALID = ROOT / "tests" / "spec" / "valid"
INVALID = ROOT / "tests" / "spec" / "invalid"


def build(directory: Path):
    from shipflow.release.builder import register_release_dags

    namespace: dict = {}
    built = register_release_dags(namespace, directory)
    return namespace, built


def upstream(dag, task_id):
    return sorted(dag.task_dict[task_id].upstream_task_ids)


def test_full_spec_builds_every_stage_in_order():
    namespace, built = build(VALID)
    assert built == ["release__full-svc", "release__minimal-svc"]
    dag = namespace["release__full-svc"]
    assert dag.max_active_runs == 1 and "shipflow" in dag.tags
    assert dag.owner and set(dag.params) == {
        "version", "commit", "change_reference", "environments", "emergency", "emergency_reason"
    }
    envs = [g for g in dag.task_group.children if not g.startswith("check_") and g != "build"]
    assert envs, "one TaskGroup per environment"
    first = envs[0]
    # Gates before the change, in order, then the infrastructure, approval and deployment.
    assert upstream(dag, f"{first}.enter") in (["build"], ["check_release_request"])
    assert upstream(dag, f"{first}.decide_outcome")[0].startswith(f"{first}.")
    assert dag.task_dict[f"{first}.decide_outcome"].trigger_rule == "all_done"
    assert sorted(dag.task_dict[f"{first}.decide_outcome"].downstream_task_ids) >= [
        f"{first}.no_rollback",
        f"{first}.promote",
        f"{first}.rollback_deployment",
    ]
    assert dag.task_dict[f"{first}.fail_release"].trigger_rule == "all_done"
    assert dag.task_dict[f"{first}.manual_fallback"].trigger_rule == "one_failed"
    # Each later environment starts only after the previous one promoted.
    for before, after in zip(envs, envs[1:], strict=False):
        assert upstream(dag, f"{after}.enter") == [f"{before}.promote"]


def test_minimal_spec_has_no_stages_it_did_not_ask_for():
    namespace, _ = build(VALID)
    dag = namespace["release__minimal-svc"]
    ids = {t.split(".")[-1] for t in dag.task_dict}
    assert "plan_stack" not in ids and "approve_release" not in ids and "rollback_stack" not in ids
    assert {"deploy", "decide_outcome", "promote", "rollback_deployment", "fail_release"} <= ids


def test_broken_specs_become_one_import_error_and_the_rest_still_load(tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    services = tmp_path / "services"
    services.mkdir()
    shutil.copy(VALID / "minimal-svc.yaml", services)
    for name in ("window-order.yaml", "unknown-field.yaml"):
        shutil.copy(INVALID / name, services)
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "release.py").write_text(
        "from pathlib import Path\n"
        "from shipflow.release.builder import register_release_dags  # airflow dag\n"
        f"register_release_dags(globals(), Path({str(services)!r}))\n"
    )
    bag = DagBag(dag_folder=str(dags))
    assert "release__minimal-svc" in bag.dags
    assert "shipflow__invalid_service_specs" not in bag.dags
    [error] = bag.import_errors.values()
    assert "window-order.yaml:10: environments[0].deployment_window.windows[0].end:" in error
    assert "unknown-field.yaml:" in error  # every broken spec is named, in the one error


@pytest.mark.parametrize("fixture", ["minimal-svc", "full-svc"])
def test_building_never_imports_heavy_modules(fixture):
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; "
        "from shipflow.release.builder import register_release_dags; "
        f"register_release_dags({{}}, Path({str(VALID)!r})); "
        "heavy = [m for m in ('great_expectations', 'pandas', 'moto') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
# Proposed additions to tests/release/test_builder.py with /tmp/helper-i4-sharding.patch (passed in a patched copy).
from shipflow.release.builder import in_shard, register_release_dags  # noqa: E402


def many_specs(tmp_path, count):
    services = tmp_path / "services"
    services.mkdir()
    text = (VALID / "full-svc.yaml").read_text()
    for i in range(count):
        (services / f"svc-{i:03d}.yaml").write_text(text.replace("full-svc", f"svc-{i:03d}"))
    return services


def test_shards_split_the_services_between_files_without_overlap(tmp_path):
    services = many_specs(tmp_path, 30)
    everything = register_release_dags({}, services)
    parts = [register_release_dags({}, services, shard=i, shards=4) for i in range(4)]
    assert len(everything) == 30 and sorted(sum(parts, [])) == sorted(everything)
    assert all(parts)


def test_a_worker_builds_only_its_service_from_its_shard(tmp_path, monkeypatch):
    services = many_specs(tmp_path, 12)
    shard = next(i for i in range(3) if in_shard("svc-005", i, 3))
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "release__svc-005")
    assert register_release_dags({}, services, shard=shard, shards=3) == ["release__svc-005"]


def test_a_broken_spec_is_reported_by_its_own_shard_only(tmp_path):
    services = many_specs(tmp_path, 6)
    shutil.copy(INVALID / "unknown-field.yaml", services)
    for i in range(3):
        namespace = {}
        register_release_dags(namespace, services, shard=i, shards=3)
        assert ("shipflow__invalid_service_specs" in namespace) == in_shard("unknown-field", i, 3)


@pytest.mark.parametrize(("shard", "shards"), [(2, 2), (-1, 2), (0, 0)])
def test_a_shard_outside_the_shards_is_refused(tmp_path, shard, shards):
    with pytest.raises(ValueError, match="its own shard"):
        register_release_dags({}, many_specs(tmp_path, 1), shard=shard, shards=shards)
