"""Builds and serves the sandbox: moto's server app, the service extensions and the control API.

Everything is installed in this process before the first request: backend classes are swapped
(``<service>_backends.backend = Subclass``), missing actions are added to moto's Response classes,
and moto's request dispatch is wrapped for faults. Nothing in moto's package is modified on disk.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from typing import Any

from shipflow.sandbox import CONTROL_PREFIX, DEFAULT_HOST, DEFAULT_PORT

log = logging.getLogger(__name__)

# The extensions, installed in this order. Each module has install() and reset().
EXTENSIONS = (
    "shipflow.sandbox.faults",
    "shipflow.sandbox.cloudwatch",
    "shipflow.sandbox.codebuild",
    "shipflow.sandbox.codedeploy",
    "shipflow.sandbox.cloudformation",
)

_installed: list[Any] = []
_install_lock = threading.Lock()


def install_extensions() -> list[Any]:
    """Install every extension once per process; returns the modules."""
    with _install_lock:
        if not _installed:
            for name in EXTENSIONS:
                module = importlib.import_module(name)
                module.install()
                _installed.append(module)
    return list(_installed)


def reset_all() -> None:
    """Forget all AWS resources (moto's reset), faults, lifecycle speeds and shared state."""
    from moto.moto_api._internal.models import moto_api_backend

    from shipflow.sandbox import faults, lifecycle, world

    moto_api_backend.reset()
    faults.REGISTRY.reset()
    faults.CALLS.reset()
    lifecycle.reset_transitions()
    world.reset()
    for module in _installed:
        reset = getattr(module, "reset", None)
        if reset is not None:
            reset()


def health() -> dict[str, Any]:
    import moto

    return {
        "status": "ok",
        "moto": moto.__version__,
        "extensions": [m.__name__.rsplit(".", 1)[1] for m in _installed],
    }


class SandboxApp:
    """WSGI app: ``/_shipflow/*`` goes to the control API, everything else to moto."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        from shipflow.sandbox.control import ControlApi

        install_extensions()
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.control = ControlApi(health=health, reset=reset_all)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL_PREFIX):
            from werkzeug.wrappers import Request

            return self.control.handle(Request(environ))(environ, start_response)
        if path.rstrip("/") == "/moto-api/reset" and environ.get("REQUEST_METHOD") == "POST":
            # moto's own reset must forget Shipflow's state too, or faults would outlive resources.
            environ["PATH_INFO"] = f"{CONTROL_PREFIX}/reset"
            from werkzeug.wrappers import Request

            return self.control.handle(Request(environ))(environ, start_response)
        return self.moto(environ, start_response)


def make_server(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, access_log: bool = False) -> Any:
    """A threaded WSGI server for the sandbox, not yet serving. ``port=0`` picks a free port.

    Werkzeug logs every request at INFO; pollers make that thousands of lines, so it is off unless asked.
    """
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server as werkzeug_make_server

    logging.getLogger("werkzeug").setLevel(logging.INFO if access_log else logging.WARNING)
    app = SandboxApp()
    return werkzeug_make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)


def serve(
    host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, ready_file: str | None = None, access_log: bool = False
) -> None:
    """Serve until interrupted. Prints the endpoint once it accepts connections."""
    started = time.monotonic()
    server = make_server(host, port, access_log=access_log)
    bound_port = server.server_address[1]
    endpoint = f"http://{host}:{bound_port}"
    if ready_file:
        with open(ready_file, "w") as fh:
            fh.write(endpoint)
    print(
        f"Shipflow sandbox listening on {endpoint} (ready in {time.monotonic() - started:.1f}s); "
        f"control API at {endpoint}{CONTROL_PREFIX}/health",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
