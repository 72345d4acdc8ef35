"""``shipflow audit migrate|verify``: exit codes and what they say, and where the store's URL comes from."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from shipflow.audit import AWS_ACTION, URL_VARIABLE
from shipflow.audit.commands import add_parsers
from shipflow.audit.store import AuditStore, connection_url, sqlalchemy_url

ROOT = Path(__file__).resolve().parents[2]


def shipflow_audit(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="shipflow")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["audit", *argv])
    return args.func(args)


def test_migrate_then_verify_an_empty_store(sqlite_url, capsys):
    assert shipflow_audit("migrate", "--url", sqlite_url) == 0
    assert capsys.readouterr().out == f"audit store {sqlite_url} at revision 0002\n"
    assert shipflow_audit("verify", "--url", sqlite_url) == 0
    assert capsys.readouterr().out == "0 events, chain intact\n"


def test_verify_exit_0_intact_and_1_naming_the_first_bad_event(store, store_url, capsys):
    ids = [store.append(AWS_ACTION, payload={"n": n}).event_id for n in range(3)]
    assert shipflow_audit("verify", "--url", store_url) == 0
    assert capsys.readouterr().out == "3 events, chain intact\n"
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET actor = 'mallory' WHERE seq = 2"))
    assert shipflow_audit("verify", "--url", store_url) == 1
    assert capsys.readouterr().out == (
        f"chain broken: event seq 2 ({ids[1]}) was altered: its hash does not match its content\n"
    )


def test_verify_reads_the_url_from_the_environment(sqlite_url, spool_path, monkeypatch, capsys):
    with AuditStore(sqlite_url, spool_path=spool_path) as store:
        store.migrate()
        store.append(AWS_ACTION)
    monkeypatch.setenv(URL_VARIABLE, sqlite_url)
    assert shipflow_audit("verify") == 0
    assert capsys.readouterr().out == "1 event, chain intact\n"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "shipflow: 'not a url' is not a database URL: expected e.g. sqlite:////path/audit.db"),
        ("nosuchdb://host/db",
         "shipflow: cannot use nosuchdb://host/db: Can't load plugin: sqlalchemy.dialects:nosuchdb"),
        ("postgresql://postgres@127.0.0.1:1/audit",
         "shipflow: cannot reach the audit store postgresql+psycopg://postgres@127.0.0.1:1/audit: connection failed"),
    ],
)
def test_verify_exit_2_for_a_bad_or_unreachable_url(url, message, capsys):
    assert shipflow_audit("verify", "--url", url) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err


def test_verify_exit_2_for_a_store_never_migrated(sqlite_url, capsys):
    assert shipflow_audit("verify", "--url", sqlite_url) == 2
    assert capsys.readouterr().err == (
        f"shipflow: the audit store {sqlite_url} has no audit tables: run `shipflow audit migrate` first\n"
    )


def test_a_password_in_the_url_is_not_printed(capsys):
    assert shipflow_audit("verify", "--url", "postgresql://audit:s3cret-pw@127.0.0.1:1/audit") == 2
    err = capsys.readouterr().err
    assert "s3cret-pw" not in err and "audit:***@127.0.0.1:1" in err


def test_libpq_urls_use_psycopg_3():
    assert sqlalchemy_url("postgres://u:p@h:5432/d") == "postgresql+psycopg://u:p@h:5432/d"
    assert sqlalchemy_url("postgresql://h/d") == "postgresql+psycopg://h/d"
    assert sqlalchemy_url("postgresql+psycopg2://h/d") == "postgresql+psycopg2://h/d"
    assert sqlalchemy_url("sqlite:////var/audit.db") == "sqlite:////var/audit.db"


def resolve_in_a_fresh_process(tmp_path: Path, **env: str) -> str:
    """``resolve_url()`` where only ``env`` configures Shipflow and Airflow (a home of its own)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "SHIPFLOW_"))}
    clean.update(PYTHONPATH=str(ROOT / "plugins"), AIRFLOW_HOME=str(tmp_path / "airflow"), **env)
    done = subprocess.run(
        [sys.executable, "-c", "from shipflow.audit.store import resolve_url; print(resolve_url())"],
        env=clean, capture_output=True, text=True, timeout=120, check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def test_the_url_comes_from_the_shipflow_audit_connection_else_sqlite_in_airflow_home(tmp_path):
    from_connection = resolve_in_a_fresh_process(
        tmp_path, AIRFLOW_CONN_SHIPFLOW_AUDIT="postgres://audit:p%40ss@db.internal:5433/audit"
    )
    assert from_connection == "postgresql+psycopg://audit:p%40ss@db.internal:5433/audit"
    assert resolve_in_a_fresh_process(tmp_path) == f"sqlite:///{tmp_path / 'airflow' / 'shipflow_audit.db'}"


def test_a_sqlite_airflow_connection_becomes_a_file_url():
    class SqliteConnection:  # what Connection.get returns for AIRFLOW_CONN_..._AUDIT=sqlite:////var/x.db
        conn_type, host, schema = "sqlite", "/var/lib/shipflow/audit.db", None

    assert connection_url(SqliteConnection()) == "sqlite:////var/lib/shipflow/audit.db"


def test_the_cli_never_prints_a_traceback(tmp_path):
    script = (
        "import argparse, sys; from shipflow.audit.commands import add_parsers; "
        "p = argparse.ArgumentParser(prog='shipflow'); add_parsers(p.add_subparsers(dest='c', required=True)); "
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "audit", "verify", "--url", f"sqlite:///{tmp_path}/missing/dir/audit.db"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")}, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("shipflow: cannot reach the audit store sqlite:///")
    assert "unable to open database file" in done.stderr and "Traceback" not in done.stderr


def test_importing_the_package_and_its_commands_loads_no_database_library():
    script = (
        "import sys, shipflow.audit, shipflow.audit.commands; "
        "print(sorted(m for m in ('sqlalchemy', 'alembic', 'airflow') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")},
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
