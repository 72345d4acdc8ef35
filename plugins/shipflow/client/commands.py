"""``shipflow release``, ``shipflow approve`` and ``shipflow reject``: the argparse side of the CI client.

Wired into ``shipflow.cli.build_parser`` by ``add_parsers(commands)``. Each command returns its exit
code; a ``ClientError`` (bad input, credentials, permissions, Airflow unreachable) is one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from shipflow.client import release as rel

CONNECTION_HELP = (
    f"Airflow's URL (default: ${rel.URL_VARIABLE} or {rel.DEFAULT_URL}). Credentials come from the "
    f"environment only: ${rel.USERNAME_VARIABLE} and ${rel.PASSWORD_VARIABLE}, or ${rel.TOKEN_VARIABLE}"
)


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
        return value

    return parse


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Add ``release``, ``approve`` and ``reject`` to the top-level ``shipflow`` subcommands."""
    release = commands.add_parser(
        "release",
        help="trigger a service's release in Airflow (what CI calls); --wait follows it to the end",
        description="Trigger release__SERVICE for VERSION at COMMIT. Re-sending the same trigger finds the run "
        "it started (never a second release). Exit codes with --wait: 0 released, 1 not released (failed, "
        "rolled back, rejected, --timeout), 2 bad input/credentials/permissions/unreachable, 3 superseded.",
    )
    release.add_argument("service", help="the service, as in include/services/<service>.yaml")
    release.add_argument("--version", required=True, help="the version to release (semantic version)")
    release.add_argument("--commit", required=True, help="the commit sha it was built from (7-40 hex characters)")
    release.add_argument("--env", action="append", dest="environments", metavar="ENV",
                         help="release to this environment only (repeat for several; default: all, in order)")
    release.add_argument("--change", dest="change_reference", metavar="REF",
                         help="the change ticket or pull request this release delivers")
    release.add_argument("--attempt", type=_positive(int), default=1, metavar="N",
                         help="release the same version and commit again after a finished run (2, 3, ...)")
    release.add_argument("--wait", action="store_true", help="follow the run to its end; the exit code says how")
    release.add_argument("--timeout", type=_positive(float), default=3600, metavar="SECONDS",
                         help="with --wait: stop waiting after this long, exit 1 (default 3600)")
    release.add_argument("--json", action="store_true",
                         help="print one JSON object at the end on stdout (progress goes to stderr)")
    release.add_argument("--url", help=CONNECTION_HELP)
    release.set_defaults(func=cmd_release)

    for name, chosen in (("approve", rel.APPROVE), ("reject", rel.REJECT)):
        answer = commands.add_parser(
            name,
            help=f"{name} the release that waits for approval in an environment, as the logged-in user",
        )
        answer.add_argument("service")
        answer.add_argument("--env", required=True, dest="environment", help="the environment whose approval waits")
        answer.add_argument("--comment", help="why; recorded with the answer if the approval step takes a comment")
        answer.add_argument("--run", dest="run_id", metavar="RUN_ID", help="which run, when several wait")
        answer.add_argument("--url", help=CONNECTION_HELP)
        answer.set_defaults(func=cmd_answer, chosen=chosen)


def cmd_release(args: argparse.Namespace) -> int:
    # With --json, stdout carries only the final object; people read progress on stderr.
    out = sys.stderr if args.json else sys.stdout

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    connection = rel.Connection.from_env(args.url)
    report: dict[str, Any] = {"service": args.service, "version": args.version, "commit": args.commit}
    try:
        client = connection.connect()
        triggered = rel.trigger_release(
            client,
            connection,
            args.service,
            args.version,
            args.commit,
            change_reference=args.change_reference,
            environments=args.environments,
            attempt=args.attempt,
        )
        for line in triggered.messages:
            say(line)
        say(f"run: {triggered.url}")
        report.update(dag_id=triggered.dag_id, run_id=triggered.run_id, created=triggered.created,
                      state=triggered.run["state"], url=triggered.url)
        if not args.wait:
            return _finish(args, report, rel.EXIT_RELEASED, None)
        result = rel.follow(client, connection, triggered.dag_id, triggered.run_id, timeout=args.timeout, say=say)
    except rel.ClientError as exc:
        print(f"shipflow: {exc}", file=sys.stderr)
        return _finish(args, {**report, "error": str(exc)}, rel.EXIT_USAGE, None)
    except KeyboardInterrupt:
        print(f"shipflow: stopped following; the release goes on in Airflow: {report.get('url')}", file=sys.stderr)
        return 130
    code, message = rel.verdict(result, triggered.url)
    say(message)
    report.update(state=result.state, outcome={e.environment: e.as_dict() for e in result.environments})
    return _finish(args, report, code, message)


def _finish(args: argparse.Namespace, report: dict[str, Any], code: int, message: str | None) -> int:
    if args.json:
        print(json.dumps({**report, "exit_code": code, "message": message}, sort_keys=True))
    return code


def cmd_answer(args: argparse.Namespace) -> int:
    connection = rel.Connection.from_env(args.url)
    try:
        client = connection.connect()
        answered = rel.answer_approval(
            client, connection, args.service, args.environment, args.chosen, comment=args.comment, run_id=args.run_id
        )
    except rel.ClientError as exc:
        print(f"shipflow: {exc}", file=sys.stderr)
        return rel.EXIT_USAGE
    for line in answered.messages:
        print(line)
    return 0
