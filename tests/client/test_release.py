"""``shipflow release`` / ``approve`` / ``reject`` as CI and approvers use them.

Pure parts first (run ids, exit codes, the trigger note, error lines: no Airflow needed), then the
commands against the session's live Airflow and sandbox, each release with a version of its own
(runs are keyed by version and commit). Few full releases, each showing several things.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shipflow.cli import main
from shipflow.client import release as rel
from shipflow.runtime.rest import AirflowApiError
from shipflow.sandbox.seed import bundle_key
from tests.conftest import ROOT, upload

COMMIT = "4f2a9c1e5b7d90a1b2c3d4e5f60718293a4b5c6d"
WORKER = "inventory-worker"
WEB = "storefront-web"


# -- pure: no Airflow ------------------------------------------------------------------------------
def airflow_run_id_pattern() -> str:
    """The installed Airflow's default ``[scheduler] allowed_run_id_pattern`` (read, not imported: 6 s)."""
    package = Path(importlib.util.find_spec("airflow").origin).parent
    config = yaml.safe_load((package / "config_templates" / "config.yml").read_text())
    return config["scheduler"]["options"]["allowed_run_id_pattern"]["default"]


def test_run_id_is_deterministic_and_valid_for_airflow():
    pattern = airflow_run_id_pattern()
    run_id = rel.run_id_for("1.4.0", COMMIT)
    assert run_id == "release__1.4.0__4f2a9c1e5b7d" == rel.run_id_for("1.4.0", COMMIT)
    assert rel.run_id_for("1.4.0", COMMIT, attempt=2) == "release__1.4.0__4f2a9c1e5b7d__attempt2"
    # Build metadata: '+' becomes '_' (never in semver), so distinct versions keep distinct ids.
    with_build = rel.run_id_for("1.4.0+build.7", COMMIT)
    assert with_build == "release__1.4.0_build.7__4f2a9c1e5b7d"
    assert len({with_build, rel.run_id_for("1.4.0-build.7", COMMIT), run_id}) == 3
    assert rel.run_id_for("1.4.0", "0" * 40) != run_id
    # Whatever the user typed, Airflow accepts the id, so its own conf validation speaks instead.
    for version in ("1.4.0", "2.0.0-rc.1+sha.5114f85", "not a version!", "1." + "9" * 400):
        rid = rel.run_id_for(version, COMMIT, attempt=3)
        assert re.match(pattern, rid) and len(rid) <= 250 and rid.endswith("__attempt3"), rid
    assert rel.run_id_for("1." + "9" * 400, COMMIT) != rel.run_id_for("1." + "9" * 401, COMMIT)
    assert rel.attempt_of(rel.run_id_for("1.4.0", COMMIT, attempt=12)) == 12
    with pytest.raises(ValueError):
        rel.run_id_for("1.4.0", COMMIT, attempt=0)


def result(state, *envs, timed_out=None, failed=()):
    return rel.RunResult("release__x", "r", state, list(envs), list(failed), timed_out)


PROMOTED = rel.EnvironmentOutcome("staging", "promoted", promoted=True)


@pytest.mark.parametrize(
    ("run", "code", "message"),
    [
        (result("success", PROMOTED, rel.EnvironmentOutcome("production", "promoted", promoted=True)), 0,
         "released: promoted in staging, production"),
        (result("failed", rel.EnvironmentOutcome("staging", "rolled_back", "the deployment failed"),
                rel.EnvironmentOutcome("production", "not reached")), 1,
         "not released: staging rolled back: the deployment failed"),
        (result("failed", PROMOTED, rel.EnvironmentOutcome("production", "rejected",
                "the release was not approved: rejected by approver2")), 1,
         "not released: production rejected: the release was not approved: rejected by approver2"),
        (result("success", PROMOTED, rel.EnvironmentOutcome("production", "superseded", "2.5.0 replaced it")), 3,
         "superseded in production: a newer release replaced this one (2.5.0 replaced it)"),
        (result("running", timed_out=30), 1, "still running after 30 s; run: URL (the release goes on in Airflow)"),
        (result("failed", rel.EnvironmentOutcome("staging", "not reached"), failed=["check_release_request"]), 1,
         "not released: the run ended failed; failed: check_release_request; see URL"),
        # A run that "succeeded" without promoting every requested environment is not a release.
        (result("success", PROMOTED, rel.EnvironmentOutcome("production", "not reached")), 1,
         "not released: the run ended success without promoting production (its tasks did not run); see URL"),
    ],
)
def test_exit_code_and_message_of_a_finished_run(run, code, message):
    assert rel.verdict(run, "URL") == (code, message)


def test_environment_outcome_from_decide_outcome_xcom():
    rolled = {"promoted": False, "reason": "an alarm fired during the bake time",
              "rolled_back": ["rollback_deployment"]}
    assert rel.environment_outcome("staging", "skipped", rolled).outcome == "rolled_back"
    assert rel.environment_outcome("staging", "success", {"promoted": True, "reason": ""}).promoted
    named = rel.environment_outcome("production", "skipped", {**rolled, "outcome": "superseded"})
    assert named.outcome == "superseded" and named.reason == rolled["reason"]
    assert rel.environment_outcome("production", None, None).outcome == "not reached"


def test_trigger_note_names_the_ci_job():
    github = {"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "42", "GITHUB_SERVER_URL": "https://github.com",
              "GITHUB_REPOSITORY": "acme/payments"}
    assert rel.trigger_note(github) == (
        "Triggered by GitHub Actions acme/payments run 42: https://github.com/acme/payments/actions/runs/42"
    )
    gitlab = {"GITLAB_CI": "true", "CI_JOB_ID": "7", "CI_JOB_URL": "https://gitlab.example.com/acme/p/-/jobs/7",
              "CI_PROJECT_PATH": "acme/p"}
    assert rel.trigger_note(gitlab) == "Triggered by GitLab CI acme/p job 7: https://gitlab.example.com/acme/p/-/jobs/7"
    assert rel.trigger_note({}) == "Triggered by shipflow release CLI"


def test_connection_errors_are_one_line_naming_the_fix():
    connection = rel.Connection.from_env(None, {"SHIPFLOW_AIRFLOW_URL": "http://airflow:8080/",
                                                "SHIPFLOW_AIRFLOW_USERNAME": "ci", "SHIPFLOW_AIRFLOW_PASSWORD": "x"})
    assert connection.url == "http://airflow:8080" and "x" not in repr(connection)
    assert str(rel.explain(AirflowApiError("POST", "/auth/token", 401, "Invalid credentials"), connection, "log in")) \
        == "wrong credentials for ci at http://airflow:8080: set SHIPFLOW_AIRFLOW_USERNAME/PASSWORD"
    unreachable = str(rel.explain(AirflowApiError("POST", "/auth/token", None, "ConnectionError"), connection, "x"))
    assert unreachable.startswith("cannot reach Airflow at http://airflow:8080")
    assert "SHIPFLOW_AIRFLOW_URL" in unreachable
    with pytest.raises(rel.ClientError, match="set SHIPFLOW_AIRFLOW_USERNAME and SHIPFLOW_AIRFLOW_PASSWORD"):
        rel.Connection.from_env(None, {}).connect()


def test_bad_arguments_exit_2_before_any_call(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["release", WORKER, "--version", "1.0.0", "--commit", COMMIT, "--timeout", "0"])
    assert exit_info.value.code == 2 and "must be more than 0" in capsys.readouterr().err


def test_unreachable_airflow_exits_2(capsys, monkeypatch):
    monkeypatch.setenv("SHIPFLOW_AIRFLOW_USERNAME", "ci")
    monkeypatch.setenv("SHIPFLOW_AIRFLOW_PASSWORD", "ci")
    code = main(["release", WORKER, "--version", "1.0.0", "--commit", COMMIT, "--url", "http://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("shipflow: cannot reach Airflow at http://127.0.0.1:9")
    assert "Traceback" not in err


# -- against a live Airflow ------------------------------------------------------------------------
@pytest.fixture
def as_user(airflow_stack, monkeypatch):
    """Set the CLI's environment for one of the stack's users (password = user name)."""
    for name in ("GITHUB_ACTIONS", "GITHUB_RUN_ID", "GITLAB_CI", "CI_JOB_URL", "SHIPFLOW_AIRFLOW_TOKEN"):
        monkeypatch.delenv(name, raising=False)

    def login(user: str, password: str | None = None) -> None:
        monkeypatch.setenv("SHIPFLOW_AIRFLOW_URL", airflow_stack.base_url)
        monkeypatch.setenv("SHIPFLOW_AIRFLOW_USERNAME", user)
        monkeypatch.setenv("SHIPFLOW_AIRFLOW_PASSWORD", password or user)

    return login


def shipflow(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def runs_with_id(airflow_stack, service: str, run_id: str) -> list[dict]:
    runs = airflow_stack.client("admin").list_dag_runs(rel.dag_id_for(service), run_id_pattern=run_id)
    return [r for r in runs if r["dag_run_id"] == run_id]


@pytest.mark.slow
def test_refusals_exit_2_with_the_reason_and_create_no_run(airflow_stack, as_user, capsys):
    airflow_stack.client("ci").wait_for_dag(rel.dag_id_for(WORKER), timeout=90)
    as_user("ci")
    code, _, err = shipflow(capsys, "release", WORKER, "--version", "1.x", "--commit", COMMIT)
    assert code == 2 and err.startswith(f"shipflow: Airflow refused the release request for {WORKER}: ")
    assert "version" in err and "does not match" in err, err  # Airflow's own param validation message
    assert runs_with_id(airflow_stack, WORKER, rel.run_id_for("1.x", COMMIT)) == []

    # Production alone would skip staging: refused before a run exists (the run would refuse it too).
    code, _, err = shipflow(capsys, "release", WORKER, "--version", "1.0.2", "--commit", COMMIT, "--env", "production")
    assert code == 2 and err.startswith(f"shipflow: release request for {WORKER} refused before triggering: ")
    assert "skip ['staging']" in err and "request ['staging', 'production']" in err, err
    assert runs_with_id(airflow_stack, WORKER, rel.run_id_for("1.0.2", COMMIT)) == []

    code, _, err = shipflow(capsys, "release", "no-such-service", "--version", "1.0.0", "--commit", COMMIT)
    assert code == 2 and "unknown service 'no-such-service'" in err
    assert f"{WORKER}, " in err and WEB in err  # names the services that do exist

    as_user("ci", password="wrong")
    code, _, err = shipflow(capsys, "release", WORKER, "--version", "1.0.0", "--commit", COMMIT, "--json")
    assert code == 2 and err == (
        f"shipflow: wrong credentials for ci at {airflow_stack.base_url}: set SHIPFLOW_AIRFLOW_USERNAME/PASSWORD\n"
    )

    as_user("viewer")
    code, out, err = shipflow(capsys, "release", WORKER, "--version", "1.0.1", "--commit", COMMIT, "--json")
    assert code == 2 and err.startswith(f"shipflow: viewer may not trigger {rel.dag_id_for(WORKER)}")
    assert json.loads(out)["exit_code"] == 2  # --json reports refusals too
    assert runs_with_id(airflow_stack, WORKER, rel.run_id_for("1.0.1", COMMIT)) == []

    as_user("approver1")
    code, _, err = shipflow(capsys, "approve", WORKER, "--env", "production")
    assert code == 2 and err == f"shipflow: nothing waits for approval in production of {WORKER}\n"


@pytest.mark.slow
def test_release_waits_to_success_and_a_resent_trigger_finds_the_same_run(airflow_stack, seeded, as_user, capsys):
    version = "1.6.0"
    upload(seeded, WORKER, version)
    run_id = rel.run_id_for(version, COMMIT)
    url = f"{airflow_stack.base_url}/dags/release__{WORKER}/runs/{run_id}"
    as_user("ci")
    # CI gives up early: exit 1, and the release goes on in Airflow.
    code, out, _ = shipflow(capsys, "release", WORKER, "--version", version, "--commit", COMMIT, "--change", "CHG-7",
                            "--wait", "--timeout", "1")
    assert code == 1 and f"triggered release__{WORKER} run {run_id}" in out
    assert re.search(rf"still (queued|running) after 1 s; run: {re.escape(url)}", out), out

    # The CI job's retry sends the same trigger: it follows the same run instead of starting another.
    code, out, _ = shipflow(capsys, "release", WORKER, "--version", version, "--commit", COMMIT, "--change", "CHG-7",
                            "--wait", "--timeout", "300")
    assert code == 0, out
    assert re.search(rf"^already triggered: {run_id} \((queued|running)\)$", out, re.M), out
    assert f"run: {url}" in out and out.rstrip().endswith("released: promoted in staging, production")
    stages = re.findall(r"^  (\S+)\s+(\w+)\s+\d+\.\ds", out, re.M)
    order = [task for task, _ in stages]
    # Each stage once, in the order the release ran it; the paths not taken (rollback) are not shown.
    assert len(order) == len(set(order))
    expected = ["check_release_request", "build", "staging.deploy", "staging.watch_bake", "staging.promote",
                "production.deploy", "production.watch_bake", "production.promote"]
    assert [t for t in order if t in expected] == expected, out
    assert all(state == "success" for _, state in stages) and "rollback" not in out

    code, out, err = shipflow(capsys, "release", WORKER, "--version", version, "--commit", COMMIT, "--change", "CHG-7",
                              "--json")
    report = json.loads(out)
    assert code == 0 and report["created"] is False and report["state"] == "success" and report["url"] == url
    assert f"already triggered: {run_id} (success); it ended success; " \
           f"to release {version} at {COMMIT[:12]} again, add --attempt 2" in err
    [run] = runs_with_id(airflow_stack, WORKER, run_id)  # exactly one release of this version and commit
    assert run["note"] == "Triggered by shipflow release CLI" and run["conf"]["change_reference"] == "CHG-7"

    # The JSON of a followed run says how each environment ended.
    code, out, _ = shipflow(capsys, "release", WORKER, "--version", version, "--commit", COMMIT, "--change", "CHG-7",
                            "--wait", "--json")
    report = json.loads(out)
    assert code == 0 and report["exit_code"] == 0 and report["run_id"] == run_id
    assert report["outcome"]["staging"]["promoted"] and report["outcome"]["production"]["outcome"] == "promoted"


@pytest.mark.slow
def test_failed_release_exits_1_with_the_reason_and_is_not_retried_silently(airflow_stack, seeded, as_user, capsys):
    version = "1.7.0"
    upload(seeded, WORKER, version)
    # Error rate above the metric gate's maximum but below the alarms' threshold: the gate fails, the
    # deployment is rolled back to the last good (healthy) revision.
    seeded.add_fault("unhealthy", "codedeploy", target=bundle_key(WORKER, version), count=None,
                     params={"error_rate": 3.5, "latency_ms": 150})
    as_user("ci")
    code, out, _ = shipflow(capsys, "release", WORKER, "--version", version, "--commit", COMMIT, "--change", "CHG-8",
                            "--wait", "--timeout", "300")
    assert code == 1, out
    assert re.search(r"^  staging\.check_service_metrics\s+failed", out, re.M)
    assert re.search(r"^  staging\.rollback_deployment\s+success", out, re.M)
    assert out.rstrip().splitlines()[-1] == "not released: staging rolled back: the service metrics failed their gate"

    # Re-running the CI job does not deploy again behind anyone's back: it names the way to do so.
    code, out, _ = shipflow(capsys, "release", WORKER, "--version", version, "--commit", COMMIT, "--change", "CHG-8",
                            "--wait")
    run_id = rel.run_id_for(version, COMMIT)
    assert code == 1 and f"already triggered: {run_id} (failed); it ended failed; " \
        f"to release {version} at {COMMIT[:12]} again, add --attempt 2" in out
    assert len(runs_with_id(airflow_stack, WORKER, run_id)) == 1
    assert runs_with_id(airflow_stack, WORKER, rel.run_id_for(version, COMMIT, attempt=2)) == []


@pytest.mark.slow
def test_chatops_approval_by_an_assigned_approver_releases(airflow_stack, seeded, as_user, capsys):
    version = "2.6.0"
    upload(seeded, WEB, version)
    dag_id, run_id = rel.dag_id_for(WEB), rel.run_id_for(version, COMMIT)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "plugins"),
        "SHIPFLOW_AIRFLOW_URL": airflow_stack.base_url,
        "SHIPFLOW_AIRFLOW_USERNAME": "ci",
        "SHIPFLOW_AIRFLOW_PASSWORD": "ci",
    }
    # CI triggers and waits in its own process while the approvers act.
    ci = subprocess.Popen(
        [sys.executable, "-m", "shipflow", "release", WEB, "--version", version, "--commit", COMMIT,
         "--change", "CHG-9", "--wait", "--timeout", "400"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )
    try:
        airflow_stack.client("ci").wait_for_hitl(dag_id, run_id, "production.approve_release", timeout=300)
        # The user who triggered it is not an approver.
        as_user("ci")
        code, _, err = shipflow(capsys, "approve", WEB, "--env", "production")
        assert code == 2 and err.startswith("shipflow: ci may not approve this (not an assigned approver, or the "
                                            "user who triggered the release: separation of duties)"), err
        as_user("approver1")
        code, out, _ = shipflow(capsys, "approve", WEB, "--env", "production", "--comment", "canary looks fine")
        assert code == 0 and out.startswith(f"approved production.approve_release of {dag_id} run {run_id} as "
                                            "approver1"), out
        as_user("approver2")
        code, _, err = shipflow(capsys, "approve", WEB, "--env", "production")
        assert code == 2 and "nothing waits for approval in production of storefront-web" in err
        out, err = ci.communicate(timeout=400)
    finally:
        if ci.poll() is None:
            ci.kill()
            ci.wait()
    assert ci.returncode == 0, out + err
    assert out.count("waiting for approval: production.approve_release (assigned: approver1, approver2)") == 1, out
    # Who approved, with the comment, in the CI log.
    assert re.search(r"^  production\.approve_release\s+success\s+\S+  approved by approver1 "
                     r"\(approver1: canary looks fine\)$", out, re.M), out
    assert out.index("production.approve_release  ") < out.index("production.deploy ")
    assert out.rstrip().endswith("released: promoted in staging, production")


@pytest.mark.slow
def test_rejection_by_chatops_ends_the_release_not_released(airflow_stack, seeded, as_user, capsys):
    version = "2.7.0"
    upload(seeded, WEB, version)
    dag_id, run_id = rel.dag_id_for(WEB), rel.run_id_for(version, COMMIT)
    as_user("ci")
    release = ("release", WEB, "--version", version, "--commit", COMMIT, "--change", "CHG-10")
    code, out, _ = shipflow(capsys, *release)
    assert code == 0 and f"triggered {dag_id} run {run_id}" in out  # without --wait: triggered is success
    ci = airflow_stack.client("ci")
    try:
        ci.wait_for_hitl(dag_id, run_id, "production.approve_release", timeout=400)
    except TimeoutError as exc:
        pytest.fail(f"{exc}\ntask states: { {t['task_id']: t['state'] for t in ci.task_instances(dag_id, run_id)} }")
    as_user("approver2")
    code, out, _ = shipflow(capsys, "reject", WEB, "--env", "production", "--comment", "no release on sale day")
    assert code == 0 and out.startswith(f"rejected production.approve_release of {dag_id} run {run_id} as approver2")
    as_user("ci")
    # Not released: the stack change applied before the approval is undone, and nothing is deployed.
    code, out, _ = shipflow(capsys, *release, "--wait", "--timeout", "180")
    assert code == 1, out
    assert re.search(r"^  staging\.promote\s+success", out, re.M), out
    assert re.search(r"^  production\.approve_release\s+success\s+\S+  rejected by approver2 "
                     r"\(approver2: no release on sale day\)$", out, re.M), out
    assert "production.deploy" not in out and "production.promote" not in out
    last = out.rstrip().splitlines()[-1]  # the stack change was undone: "rolled back", with the reason
    assert last == "not released: production rolled back: the release was not approved: rejected by approver2", out
    # The stack is put back as the plan found it: re-applied if this run's change set changed it.
    planned, undo = (ci.xcom(dag_id, run_id, f"production.{task}") for task in ("plan_stack", "rollback_stack"))
    assert undo["verified"] is True, undo
    assert undo["rollback_action"] == ("update_stack" if planned["has_changes"] else "none"), undo
    assert ci.task_instance(dag_id, run_id, "production.manual_fallback")["state"] == "skipped"
