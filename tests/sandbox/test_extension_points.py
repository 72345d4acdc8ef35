"""Smoke test of the moto internals the sandbox extends.

The sandbox touches moto's internals (backend classes, Response dispatch, the state manager, the
server's WSGI app). moto is pinned exactly; when someone moves the pin, this test names the
extension point that broke instead of letting behaviour tests fail in puzzling ways.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import pytest

PINNED_MOTO = "5.2.5"


def test_moto_is_the_pinned_version():
    assert version("moto") == PINNED_MOTO, (
        f"moto {version('moto')} is installed but the sandbox was built against {PINNED_MOTO}: "
        "re-check every extension point below and the FIELD-NOTES facts before moving the pin"
    )


@pytest.mark.parametrize(
    "module, backends, response_class",
    [
        ("moto.codebuild", "codebuild_backends", "CodeBuildResponse"),
        ("moto.codedeploy", "codedeploy_backends", "CodeDeployResponse"),
        ("moto.cloudformation", "cloudformation_backends", "CloudFormationResponse"),
        ("moto.cloudwatch", "cloudwatch_backends", "CloudWatchResponse"),
    ],
)
def test_backend_swap_and_action_dispatch_points_exist(module, backends, response_class):
    import importlib

    from moto.core.base_backend import BackendDict, BaseBackend
    from moto.core.responses import BaseResponse

    models = importlib.import_module(f"{module}.models")
    responses = importlib.import_module(f"{module}.responses")
    urls = importlib.import_module(f"{module}.urls")
    backend_dict = getattr(models, backends)
    assert isinstance(backend_dict, BackendDict)
    assert issubclass(backend_dict.backend, BaseBackend), "BackendDict.backend is the class the sandbox swaps"
    assert hasattr(urls, "url_bases") and hasattr(urls, "url_paths"), "moto finds routes via <service>.urls"
    assert isinstance(inspect.getattr_static(BaseBackend, "_url_module"), property)
    assert issubclass(getattr(responses, response_class), BaseResponse)


def test_request_dispatch_and_error_serialization_points_exist():
    from moto.core.exceptions import ServiceException
    from moto.core.responses import ActionResult, BaseResponse

    assert list(inspect.signature(BaseResponse.call_action).parameters) == ["self"]
    assert callable(BaseResponse.serialized) and callable(BaseResponse._get_action)
    assert inspect.signature(ActionResult).parameters, "ActionResult(exception) serializes errors per protocol"
    assert issubclass(ServiceException, Exception)


def test_state_manager_and_server_points_exist():
    from moto.moto_api import state_manager
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

    for name in ("register_default_transition", "set_transition", "unset_transition", "get_transition"):
        assert callable(getattr(state_manager, name)), f"state_manager.{name} is how lifecycle speeds are set"
    assert callable(DomainDispatcherApplication) and callable(create_backend_app)
    assert MotoRequestHandler is not None


def test_sandbox_installs_every_extension_in_process():
    from shipflow.sandbox import server

    modules = server.install_extensions()
    assert [m.__name__ for m in modules] == list(server.EXTENSIONS)
