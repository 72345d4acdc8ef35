"""The order releases are promoted in: pure, shared by the release DAG and the CI client.

A release goes through a service's environments in the spec's order and never skips one: each
environment's gates stand on the one before it having passed, and a skipped environment skips the
ones after it, so a request for production alone would end successful having done nothing.
"""

from __future__ import annotations

from collections.abc import Sequence


def promotion_problem(chosen: Sequence[str], environments: Sequence[str]) -> str | None:
    """Why ``chosen`` is not a run of ``environments`` from the first one on, or ``None``."""
    order = list(environments)
    unknown = [e for e in chosen if e not in order]
    if unknown:
        return f"unknown environments {unknown}; this service has {order}"
    through = order[: 1 + max((order.index(e) for e in chosen), default=-1)]
    skipped = [e for e in through if e not in chosen]
    if skipped:
        return (
            f"environments {list(chosen)!r} skip {skipped}: releases are promoted in order "
            f"({' -> '.join(order)}); to reach {through[-1]}, request {through}"
        )
    return None
