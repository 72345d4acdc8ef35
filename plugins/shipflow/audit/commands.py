"""``shipflow audit migrate|verify|show``: the argparse side of the audit store.

Wired into ``shipflow.cli.build_parser`` by ``add_parsers(commands)``. Exit codes of ``verify``:
0 the chain is intact, 1 it is not (the first altered, inserted or deleted event is named),
2 the URL is malformed, the store unreachable or not migrated: one line on stderr, no traceback.
``show RUN`` prints the run's evidence record (exit 1: no events for that run; 2: as above, or a
run id shared by several services without ``--service``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from shipflow.audit import CONNECTION_ID, URL_VARIABLE, AuditError

EXIT_OK = 0
EXIT_BROKEN = 1
EXIT_USAGE = 2

URL_HELP = (
    f"the audit store's SQLAlchemy URL (default: ${URL_VARIABLE}, else the Airflow connection {CONNECTION_ID!r}, "
    "else sqlite:///<AIRFLOW_HOME or ~/.shipflow>/shipflow_audit.db); postgres:// means postgresql+psycopg://"
)


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Add ``audit`` (with ``migrate`` and ``verify``) to the top-level ``shipflow`` subcommands."""
    audit = commands.add_parser("audit", help="the audit trail: create its store, check its hash chain")
    audit_cmds = audit.add_subparsers(dest="audit_command", required=True)
    migrate = audit_cmds.add_parser("migrate", help="create or upgrade the audit store's tables")
    migrate.add_argument("--url", help=URL_HELP)
    migrate.set_defaults(func=cmd_migrate)
    verify = audit_cmds.add_parser(
        "verify",
        help="check the hash chain: exit 0 intact, 1 names the first altered/inserted/deleted event, 2 no store",
    )
    verify.add_argument("--url", help=URL_HELP)
    verify.set_defaults(func=cmd_verify)
    show = audit_cmds.add_parser(
        "show", help="print one release's evidence record: timeline, approvals, gates, AWS actions, rollback"
    )
    show.add_argument("run_id", metavar="RUN", help="the Airflow run id of the release")
    show.add_argument("--service", help="the service, when the run id names runs of several services")
    show.add_argument("--json", action="store_true", help="print the record as JSON")
    show.add_argument("--url", help=URL_HELP)
    show.set_defaults(func=cmd_show)


def _run(args: argparse.Namespace, action: Callable[..., int]) -> int:
    """Open the store named by ``--url`` (or the defaults), run ``action(store)``; store trouble is exit 2."""
    from sqlalchemy.exc import ArgumentError, DBAPIError

    from shipflow.audit.store import AuditStore, resolve_url

    url = resolve_url(args.url)
    try:
        store = AuditStore(url)
    except ArgumentError:
        print(
            f"shipflow: {url!r} is not a database URL: expected e.g. sqlite:////path/audit.db or "
            "postgresql://user@host:5432/db",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        return action(store)
    except ArgumentError as exc:  # e.g. an unknown dialect, found when the engine is made
        print(f"shipflow: cannot use {store.display_url}: {exc}", file=sys.stderr)
    except ImportError as exc:  # the URL names a driver that is not installed
        print(f"shipflow: cannot use {store.display_url}: driver not installed ({exc})", file=sys.stderr)
    except DBAPIError as exc:
        reason = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
        print(
            f"shipflow: cannot reach the audit store {store.display_url}: {reason[0] if reason else exc}",
            file=sys.stderr,
        )
    except AuditError as exc:
        print(f"shipflow: {exc}", file=sys.stderr)
    finally:
        store.close()
    return EXIT_USAGE


def cmd_migrate(args: argparse.Namespace) -> int:
    def migrate(store) -> int:
        store.migrate()
        print(f"audit store {store.display_url} at revision {store.current_revision()}")
        return EXIT_OK

    return _run(args, migrate)


def cmd_verify(args: argparse.Namespace) -> int:
    def verify(store) -> int:
        result = store.verify()
        if result.ok:
            print(result.message)
            return EXIT_OK
        print(f"chain broken: {result.message}")
        return EXIT_BROKEN

    return _run(args, verify)


def cmd_show(args: argparse.Namespace) -> int:
    import json

    from shipflow.audit.evidence import evidence, render_text

    def show(store) -> int:
        events = store.events(run_id=args.run_id)
        if args.service:
            events = [e for e in events if e.service == args.service]
        services = sorted({e.service or "?" for e in events})
        if not events:
            print(
                f"shipflow: no audit events for run {args.run_id!r} in {store.display_url}: "
                "check the run id (Airflow UI, run details) and the store (--url)",
                file=sys.stderr,
            )
            return EXIT_BROKEN
        if len(services) > 1:
            print(
                f"shipflow: run id {args.run_id!r} names releases of {', '.join(services)}: add --service",
                file=sys.stderr,
            )
            return EXIT_USAGE
        record = evidence(events)
        print(json.dumps(record, indent=2, sort_keys=True, default=str) if args.json else render_text(record))
        return EXIT_OK

    return _run(args, show)
