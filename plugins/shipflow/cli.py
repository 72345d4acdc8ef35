"""The ``shipflow`` command line.

User mistakes (a bad argument, a sandbox that is not running, a control API refusal) end with one
line on stderr naming what was wrong and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from shipflow.sandbox import DEFAULT_HOST, DEFAULT_PORT


class UsageError(Exception):
    """A mistake of the caller's: printed as one line, exit code 2."""


def _param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _client(args: argparse.Namespace) -> Any:
    from shipflow.sandbox.client import SandboxClient

    return SandboxClient(args.endpoint)


def cmd_sandbox_up(args: argparse.Namespace) -> int:
    from shipflow.sandbox.server import serve

    if args.seed:
        import threading

        from shipflow.sandbox.client import SandboxClient
        from shipflow.sandbox.seed import seed

        def _seed_when_ready() -> None:
            client = SandboxClient(f"http://{args.host}:{args.port}")
            client.wait_ready()
            summary = seed(client)
            print(f"Seeded: {summary}", flush=True)

        threading.Thread(target=_seed_when_ready, daemon=True).start()
    serve(args.host, args.port, ready_file=args.ready_file, access_log=args.access_log)
    return 0


def cmd_sandbox_seed(args: argparse.Namespace) -> int:
    from shipflow.sandbox.seed import seed

    _print(seed(_client(args)))
    return 0


def cmd_sandbox_status(args: argparse.Namespace) -> int:
    client = _client(args)
    _print({"endpoint": client.endpoint, **client.health(), "lifecycle": client.lifecycle()})
    return 0


def cmd_sandbox_reset(args: argparse.Namespace) -> int:
    _client(args).reset()
    print("sandbox reset: no resources, no faults, default lifecycle speeds")
    return 0


def cmd_fault_add(args: argparse.Namespace) -> int:
    count = None if args.always else args.count
    _print(_client(args).add_fault(args.kind, args.service, args.target, count, dict(args.param or [])))
    return 0


def cmd_fault_list(args: argparse.Namespace) -> int:
    faults = _client(args).faults()
    if not faults:
        print("no faults")
    for f in faults:
        count = "always" if f["count"] is None else f"{f['fired']}/{f['count']}"
        print(
            f"#{f['id']} {f['kind']} {f['service']} target={f['target'] or '*'} fired={count}"
            f" params={json.dumps(f['params'])} on={','.join(f['fired_on']) or '-'}"
        )
    return 0


def cmd_fault_clear(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.id is None:
        client.clear_faults()
        print("all faults removed")
    else:
        client.remove_fault(args.id)
        print(f"fault #{args.id} removed")
    return 0


def cmd_lifecycle(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.progression is None:
        _print(client.lifecycle())
    else:
        _print(client.set_lifecycle(args.progression, args.model, args.service, args.times, args.seconds))
    return 0


def cmd_sandbox_demo(args: argparse.Namespace) -> int:
    from shipflow.sandbox.demo import run_demo

    return run_demo(port=args.port)


def cmd_demo(args: argparse.Namespace) -> int:
    from shipflow.demo import run_demo

    return run_demo()


def cmd_validate(args: argparse.Namespace) -> int:
    from shipflow.spec.commands import validate_command

    return validate_command(args.paths)


def cmd_schema(args: argparse.Namespace) -> int:
    from shipflow.spec.commands import schema_command

    return schema_command(args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shipflow", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("demo", help="run example releases end to end (sandbox + local Airflow)").set_defaults(
        func=cmd_demo
    )
    from shipflow.runtime.stack import add_parsers as add_stack_parsers  # up, down, status

    add_stack_parsers(commands)
    from shipflow.client.commands import add_parsers as add_client_parsers  # release, approve, reject

    add_client_parsers(commands)
    from shipflow.audit.commands import add_parsers as add_audit_parsers  # audit migrate, audit verify

    add_audit_parsers(commands)
    from shipflow.metrics.commands import add_parsers as add_metrics_parsers  # metrics

    add_metrics_parsers(commands)
    validate = commands.add_parser("validate", help="check service specs; every problem as file:line: field: message")
    validate.add_argument("paths", nargs="*", help="spec files or folders (default: include/services)")
    validate.set_defaults(func=cmd_validate)
    schema = commands.add_parser("schema", help="the service spec's JSON schema, for editors")
    schema.add_argument("--out", help="write it to this file instead of standard output")
    schema.set_defaults(func=cmd_schema)

    sandbox = commands.add_parser("sandbox", help="the local AWS sandbox (moto, extended)")
    sandbox_cmds = sandbox.add_subparsers(dest="sandbox_command", required=True)

    def with_endpoint(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--endpoint",
            default=None,
            help=f"sandbox URL (default: $SHIPFLOW_SANDBOX_ENDPOINT or http://{DEFAULT_HOST}:{DEFAULT_PORT})",
        )
        return p

    up = sandbox_cmds.add_parser("up", help="serve the sandbox in the foreground")
    up.add_argument("--host", default=DEFAULT_HOST)
    up.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    up.add_argument("--seed", action="store_true", help="create the example services' resources once ready")
    up.add_argument("--ready-file", help="write the endpoint URL to this file once listening")
    up.add_argument("--access-log", action="store_true", help="log every request (noisy with pollers)")
    up.set_defaults(func=cmd_sandbox_up)

    with_endpoint(sandbox_cmds.add_parser("seed", help="create the example services' AWS resources")).set_defaults(
        func=cmd_sandbox_seed
    )
    with_endpoint(sandbox_cmds.add_parser("status", help="health, extensions, lifecycle speeds")).set_defaults(
        func=cmd_sandbox_status
    )
    with_endpoint(sandbox_cmds.add_parser("reset", help="forget all resources and faults")).set_defaults(
        func=cmd_sandbox_reset
    )

    demo = sandbox_cmds.add_parser("demo", help="start a sandbox and show it behaving like AWS")
    demo.add_argument("--port", type=int, default=0, help="port for the demo's own sandbox (0: a free one)")
    demo.set_defaults(func=cmd_sandbox_demo)

    fault = sandbox_cmds.add_parser("fault", help="inject, list and remove faults")
    fault_cmds = fault.add_subparsers(dest="fault_command", required=True)
    add = with_endpoint(fault_cmds.add_parser("add", help="inject a fault"))
    add.add_argument("kind", choices=["fail", "unhealthy", "throttle", "latency"])
    add.add_argument("service")
    add.add_argument("--target", help="project, deployment group, stack, revision or API action")
    add.add_argument("--count", type=int, default=1, help="how many times it fires (default 1)")
    add.add_argument("--always", action="store_true", help="fire until removed")
    add.add_argument("--param", type=_param, action="append", help="KEY=VALUE (JSON values allowed)")
    add.set_defaults(func=cmd_fault_add)
    with_endpoint(fault_cmds.add_parser("list", help="faults and which fired")).set_defaults(func=cmd_fault_list)
    clear = with_endpoint(fault_cmds.add_parser("clear", help="remove one fault (ID) or all"))
    clear.add_argument("id", type=int, nargs="?")
    clear.set_defaults(func=cmd_fault_clear)

    lc = with_endpoint(sandbox_cmds.add_parser("lifecycle", help="show or set how fast resources progress"))
    lc.add_argument("progression", nargs="?", choices=["immediate", "manual", "time"])
    lc.add_argument("--service", help="codebuild, codedeploy or cloudformation (default: all)")
    lc.add_argument("--model", help="one model, e.g. codebuild::build")
    lc.add_argument("--times", type=int, help="manual: describes per step")
    lc.add_argument("--seconds", type=float, help="time: seconds per step")
    lc.set_defaults(func=cmd_lifecycle)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from shipflow.sandbox.client import SandboxError

    try:
        return args.func(args)
    except (UsageError, SandboxError) as exc:
        print(f"shipflow: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `shipflow up | head -3`: the reader left, nothing is wrong here
        sys.stderr.close()
        return 0
    except OSError as exc:
        endpoint = getattr(args, "endpoint", None) or "the sandbox"
        print(f"shipflow: cannot reach {endpoint}: {exc}. Is it running? (shipflow sandbox up)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
