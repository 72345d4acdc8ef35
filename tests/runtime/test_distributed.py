"""Distributed mode, natively: Airflow on PostgreSQL with the CeleryExecutor, Redis and two workers.

The same topology as docker-compose.yaml (which cannot run on this machine: no Docker engine),
built from real processes: a throwaway PostgreSQL database as the metadata DB and Celery result
backend, a Redis DB index of its own as the broker, and two ``airflow celery worker`` processes,
each under its own host name as a worker container would be. A real release with an approval runs
through the REST API, and the tests check where its tasks ran and where its state was kept.
PostgreSQL or Redis missing: skipped, or failed under SHIPFLOW_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from urllib.parse import urlsplit, urlunsplit

import pytest

from shipflow.runtime.backends import (
    BackendUnavailable,
    claim_redis_db,
    release_redis_db,
    scratch_postgres_database,
    scratch_redis_db,
)
from shipflow.runtime.local import LocalAirflow, celery_worker_name, free_port
from tests.conftest import running_airflow, skip_or_fail, upload

WORKERS = {celery_worker_name(1), celery_worker_name(2)}
WEB = "storefront-web"  # ECS blue/green with an infrastructure stage and a production approval


def psycopg2_dsn(database_url: str) -> str:
    """``postgresql+psycopg2://...`` (SQLAlchemy) as a libpq URI."""
    parts = urlsplit(database_url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, ""))


def query(database_url: str, sql: str, *params: object) -> list[tuple]:
    import psycopg2

    with psycopg2.connect(psycopg2_dsn(database_url)) as connection, connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    connection.close()
    return rows


@pytest.fixture(scope="module")
def celery_stack(sandbox_process, tmp_path_factory):
    """The Celery stack for this module; ``.database_url`` is its PostgreSQL database."""
    with ExitStack() as cleanup:
        try:
            database_url = cleanup.enter_context(scratch_postgres_database())
            broker_url = cleanup.enter_context(scratch_redis_db())
        except BackendUnavailable as exc:
            skip_or_fail(f"distributed mode needs PostgreSQL and Redis: {exc}")
        stack = cleanup.enter_context(
            running_airflow(
                sandbox_process, tmp_path_factory, name="celery", timeout=240,
                executor="CeleryExecutor", database_url=database_url, broker_url=broker_url, celery_workers=2,
            )
        )  # fmt: skip
        stack.database_url = database_url
        yield stack


def live_key(sandbox, service: str, env: str) -> str:
    codedeploy = sandbox.boto3("codedeploy")
    group = codedeploy.get_deployment_group(applicationName=service, deploymentGroupName=f"{service}-{env}")
    deployment = group["deploymentGroupInfo"]["lastSuccessfulDeployment"]["deploymentId"]
    return codedeploy.get_deployment(deploymentId=deployment)["deploymentInfo"]["revision"]["s3Location"]["key"]


@pytest.mark.slow
def test_every_component_and_both_workers_are_up(celery_stack):
    airflow = celery_stack.airflow
    assert airflow.is_running and set(airflow.components) >= WORKERS
    health = celery_stack.client("viewer").health()
    assert {name: health[name]["status"] for name in ("metadatabase", "scheduler", "triggerer", "dag_processor")} == {
        "metadatabase": "healthy",
        "scheduler": "healthy",
        "triggerer": "healthy",
        "dag_processor": "healthy",
    }
    assert airflow.celery_ping() == WORKERS  # `celery inspect ping` over the stack's own broker


@pytest.mark.slow
def test_release_with_approval_runs_on_the_celery_workers_and_is_kept_in_postgres(celery_stack, seeded):
    version = "2.5.0"
    key = upload(seeded, WEB, version)
    ci = celery_stack.client("ci")
    dag_id = f"release__{WEB}"
    ci.wait_for_dag(dag_id, timeout=120)
    run_id = f"dist-{version}-{time.time_ns()}"
    conf = {"version": version, "commit": "4f2a9c1", "change_reference": "CHG-77"}
    ci.trigger_dag(dag_id, conf=conf, run_id=run_id)

    # Separation of duties: CI triggered, a different person approves.
    ci.wait_for_hitl(dag_id, run_id, "production.approve_release", timeout=300)
    celery_stack.client("approver1").answer_hitl(dag_id, run_id, "production.approve_release", ["Approve"])
    try:
        run = ci.wait_for_dag_run(dag_id, run_id, timeout=300)
    except TimeoutError as exc:
        pytest.fail(f"{exc}\ntask states: {[(t['task_id'], t['state']) for t in ci.task_instances(dag_id, run_id)]}")
    tasks = ci.task_instances(dag_id, run_id)
    states = {ti["task_id"]: ti["state"] for ti in tasks}
    assert run["state"] == "success", states

    # Promoted through both environments; production serves the new revision.
    for env in ("staging", "production"):
        assert states[f"{env}.deploy"] == "success" and states[f"{env}.promote"] == "success"
        assert ci.xcom(dag_id, run_id, f"{env}.decide_outcome", key="outcome")["promoted"] is True
    assert live_key(seeded, WEB, "production") == key

    # Every task that ran, ran on a Celery worker (its host name), from the default queue, and the
    # work was spread over both workers. (The scheduler marks EmptyOperator tasks done without
    # sending them to any executor: they have no host.)
    done = [ti for ti in tasks if ti["state"] == "success"]
    ran = [ti for ti in done if ti["operator"] != "EmptyOperator"]
    assert len(ran) > 20 and all(not ti["hostname"] for ti in done if ti["operator"] == "EmptyOperator")
    assert {ti["hostname"] for ti in ran} == WORKERS, {ti["task_id"]: ti["hostname"] for ti in ran}
    assert {ti["queue"] for ti in ran} == {"default"}
    # The approval ran on a worker too: it wrote the request there, then waited in awaiting_input
    # holding no slot (Airflow 3.3+), and a worker ran it again with the answer.
    assert next(ti for ti in tasks if ti["task_id"] == "production.approve_release")["hostname"] in WORKERS

    # The metadata DB is this run's PostgreSQL database: the run, its tasks, the approver's answer,
    # and Celery's own results for each task it executed.
    database = celery_stack.database_url
    assert query(database, "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", dag_id, run_id) == [
        ("success",)
    ]
    [(in_postgres,)] = query(
        database, "SELECT count(*) FROM task_instance WHERE dag_id = %s AND run_id = %s AND state = 'success'",
        dag_id, run_id,
    )  # fmt: skip
    assert in_postgres == len(done)
    [(celery_results,)] = query(database, "SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'")
    assert celery_results >= len(ran)

    # Workers write task logs to the shared log folder; the api-server serves them from that file.
    log = ci.task_log(dag_id, run_id, "production.deploy")
    assert f"{celery_stack.airflow.logs_folder}/dag_id={dag_id}/run_id={run_id}/task_id=production.deploy/" in log


# -- the parts, without a stack ---------------------------------------------------------------------
def test_celery_needs_a_server_database_and_a_broker(tmp_path):
    with pytest.raises(ValueError, match="cannot use SQLite: pass database_url=postgresql"):
        LocalAirflow(tmp_path, tmp_path / "dags", free_port(), executor="CeleryExecutor", broker_url="redis://x/1")
    with pytest.raises(ValueError, match="needs broker_url"):
        LocalAirflow(tmp_path, tmp_path / "dags", free_port(), executor="CeleryExecutor", database_url="postgresql://x")
    with pytest.raises(ValueError, match="use one of LocalExecutor, CeleryExecutor"):
        LocalAirflow(tmp_path, tmp_path / "dags", free_port(), executor="KubernetesExecutor")


def test_the_default_stack_is_unchanged_by_celery_support(tmp_path):
    airflow = LocalAirflow(tmp_path, tmp_path / "dags", free_port())
    assert airflow.components == ("api-server", "scheduler", "dag-processor", "triggerer")
    assert airflow.env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert airflow.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path.resolve() / 'airflow.db'}"
    assert not any(key.startswith("AIRFLOW__CELERY__") for key in airflow.env)


def test_each_celery_worker_is_its_own_host(tmp_path):
    database_url = "postgresql+psycopg2://postgres@127.0.0.1:5432/shipflow_dist_0"
    airflow = LocalAirflow(
        tmp_path, tmp_path / "dags", free_port(), executor="CeleryExecutor",
        database_url=database_url, broker_url="redis://127.0.0.1:6379/5", celery_workers=3,
    )  # fmt: skip
    assert airflow.components[4:] == ("shipflow-worker-1", "shipflow-worker-2", "shipflow-worker-3")
    worker_2 = airflow.commands["shipflow-worker-2"]
    assert worker_2[:4] == ("celery", "worker", "--celery-hostname", "shipflow-worker-2@%h")
    assert airflow.env["AIRFLOW__CELERY__RESULT_BACKEND"] == f"db+{database_url}"
    assert airflow.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == database_url
    worker = airflow.component_env("shipflow-worker-3")
    assert worker["SHIPFLOW_WORKER_HOSTNAME"] == "shipflow-worker-3"
    assert worker["AIRFLOW__CORE__HOSTNAME_CALLABLE"] == "shipflow.runtime.local.worker_hostname"
    # Only workers get a host name of their own: the scheduler is this machine.
    assert "AIRFLOW__CORE__HOSTNAME_CALLABLE" not in airflow.component_env("scheduler")


def test_a_scratch_database_is_created_empty_and_dropped():
    try:
        with scratch_postgres_database() as database_url:
            name = urlsplit(database_url).path.lstrip("/")
            assert name.startswith("shipflow_dist_") and database_url.startswith("postgresql+psycopg2://")
            assert query(database_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
            # An open session does not keep it alive (a killed stack may leave one behind).
            import psycopg2

            lingering = psycopg2.connect(psycopg2_dsn(database_url))
    except BackendUnavailable as exc:
        skip_or_fail(str(exc))
    lingering.close()
    listed = query(
        "postgresql://postgres@127.0.0.1:5432/postgres", "SELECT count(*) FROM pg_database WHERE datname = %s", name
    )
    assert listed == [(0,)]


def test_redis_db_indexes_are_claimed_once_and_only_the_claimed_one_is_flushed():
    import redis

    try:
        first = claim_redis_db()
    except BackendUnavailable as exc:
        skip_or_fail(str(exc))
    second = claim_redis_db()
    try:
        assert first != second and not first.endswith("/0") and not second.endswith("/0")
        redis.Redis.from_url(second).set("someone-elses", "data")
        release_redis_db(first)
        assert redis.Redis.from_url(first).dbsize() == 0
        assert redis.Redis.from_url(second).get("someone-elses") == b"data"
    finally:
        release_redis_db(second)
    with pytest.raises(ValueError, match="DB 0 is never claimed"):
        release_redis_db("redis://127.0.0.1:6379/0")


def test_a_missing_server_is_named():
    with pytest.raises(BackendUnavailable, match=r"PostgreSQL at postgresql://postgres@127.0.0.1:1/postgres"):
        with scratch_postgres_database("postgresql://postgres@127.0.0.1:1/postgres"):
            pass
    with pytest.raises(BackendUnavailable, match=r"Redis at redis://127.0.0.1:1 is not reachable"):
        with scratch_redis_db("redis://127.0.0.1:1"):
            pass
