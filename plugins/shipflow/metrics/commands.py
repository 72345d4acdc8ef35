"""``shipflow metrics``: the computed release metrics as a table (or JSON/CSV), from the audit store.

    shipflow metrics                          # the newest 30-day window of every service, headline figures
    shipflow metrics --detail                 # ... per environment, stage, gate and intervention kind too
    shipflow metrics --service payments-api --window day --since 2026-11-01
    shipflow metrics --compute                # compute the days so far first (no metrics DAG needed)
    shipflow metrics --format csv > metrics.csv

Exit codes: 0 rows printed (or none yet, said so), 2 the store is unreachable or a flag is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta

from shipflow.audit.commands import URL_HELP, _run

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def add_parsers(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "metrics", help="release metrics: execution time, error rates, manual fallback frequency, DORA"
    )
    parser.add_argument("--service", help="one service only")
    parser.add_argument("--window", choices=("day", "7d", "30d"), default=None,
                        help="which windows (default: each service's newest 30d window with releases; "
                        "with --since: every day)")
    parser.add_argument("--since", type=_date, help="windows ending on or after this date (YYYY-MM-DD, UTC)")
    parser.add_argument("--metric", help="only metrics whose name contains this")
    parser.add_argument("--detail", action="store_true",
                        help="every environment and breakdown (stage, gate, intervention kind), not the headline only")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    parser.add_argument("--compute", action="store_true",
                        help="compute every day of the audit trail so far first (what the metrics DAG does hourly)")
    parser.add_argument("--url", help=URL_HELP)
    parser.set_defaults(func=cmd_metrics)


def _date(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: use YYYY-MM-DD") from None


def cmd_metrics(args: argparse.Namespace) -> int:
    from shipflow.metrics.publish import COLUMNS, read_rows, render_table

    def show(store) -> int:
        store.migrate()
        if args.compute:
            from sqlalchemy import func, select

            from shipflow.audit.models import AuditEvent
            from shipflow.metrics.compute import compute
            from shipflow.metrics.operators import next_midnight, production_from_specs

            with store.engine.connect() as conn:
                first = conn.execute(select(func.min(AuditEvent.__table__.c.time))).scalar()
            if first is not None:
                now = datetime.now(UTC)
                compute(store.engine, next_midnight(first) - timedelta(days=1), next_midnight(now),
                        production=production_from_specs())
        window = args.window or ("day" if args.since else "30d")
        rows = read_rows(store.engine, service=args.service, window=window, since=args.since)
        if not args.since and rows:  # per service, the newest window that saw releases
            newest: dict[str, datetime] = {}
            for r in rows:
                if r["metric"] == "releases" and r["window_end"] > newest.get(r["service"], EPOCH):
                    newest[r["service"]] = r["window_end"]
            rows = [r for r in rows if r["window_end"] == newest.get(r["service"])]
        if args.metric:
            rows = [r for r in rows if args.metric in r["metric"]]
        if not args.detail:
            rows = [r for r in rows if r["environment"] == "*" and not r["dimension"]]
        if args.format == "json":
            print(json.dumps([{**r, "window_end": r["window_end"].isoformat()} for r in rows], indent=1))
        elif args.format == "csv":
            import csv

            writer = csv.DictWriter(sys.stdout, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows({**r, "window_end": r["window_end"].isoformat()} for r in rows)
        else:
            print(render_table(rows))
        return 0

    return _run(args, show)
