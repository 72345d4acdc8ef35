"""Sandbox extension for CloudWatch (being built).

Public interface used by other extensions (keep it):
    alarm_states(account_id, region, names) -> dict[str, str]   # name -> OK | ALARM | INSUFFICIENT_DATA
"""

from __future__ import annotations


def alarm_states(account_id: str, region: str, names: list[str]) -> dict[str, str]:
    from moto.cloudwatch.models import cloudwatch_backends

    backend = cloudwatch_backends[account_id][region]
    return {a.name: a.state_value for a in backend.alarms.values() if a.name in names}


def install() -> None:
    pass


def reset() -> None:
    pass
