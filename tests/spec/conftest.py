"""Fixtures of the spec tests: the valid and invalid corpora are data files beside them."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipflow.spec import ServiceSpec, load_spec

HERE = Path(__file__).resolve().parent
VALID = HERE / "valid"
INVALID = HERE / "invalid"


@pytest.fixture
def minimal_spec() -> ServiceSpec:
    return load_spec(VALID / "minimal-svc.yaml")


@pytest.fixture
def full_spec() -> ServiceSpec:
    return load_spec(VALID / "full-svc.yaml")
