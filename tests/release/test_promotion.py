"""A release request never skips an environment (the run's first task and the CI client agree)."""

from __future__ import annotations

import pytest

from shipflow.release.promotion import promotion_problem
from shipflow.release.tasks import ReleaseRequestError, check_request

ENVS = ["dev", "staging", "production"]
REQUEST = {"version": "1.4.0", "commit": "abcdef1"}


@pytest.mark.parametrize("chosen", [["dev"], ["dev", "staging"], ENVS, ["production", "staging", "dev"]])
def test_a_run_of_environments_from_the_first_is_a_promotion(chosen):
    assert promotion_problem(chosen, ENVS) is None


@pytest.mark.parametrize(
    ("chosen", "skipped", "request_instead"),
    [
        (["production"], ["dev", "staging"], ENVS),
        (["staging"], ["dev"], ["dev", "staging"]),
        (["dev", "production"], ["staging"], ENVS),
    ],
)
def test_skipping_an_environment_names_it_and_the_request_to_send(chosen, skipped, request_instead):
    problem = promotion_problem(chosen, ENVS)
    assert f"skip {skipped}" in problem and f"request {request_instead}" in problem
    assert "(dev -> staging -> production)" in problem


def test_the_release_request_check_refuses_a_skip_and_keeps_spec_order():
    with pytest.raises(ReleaseRequestError, match=r"environments \['production'\] skip \['dev', 'staging'\]"):
        check_request({**REQUEST, "environments": ["production"]}, ENVS)
    assert check_request({**REQUEST, "environments": ["staging", "dev"]}, ENVS)["environments"] == ["dev", "staging"]
    assert check_request(REQUEST, ENVS)["environments"] == ENVS


def test_unknown_environments_are_named_with_the_ones_that_exist():
    with pytest.raises(ReleaseRequestError, match=r"unknown environments \['prod'\]; this service has \['dev'"):
        check_request({**REQUEST, "environments": ["dev", "prod"]}, ENVS)
