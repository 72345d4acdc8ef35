"""Triggers of the release DAG's safe points: where a release waits for people or for a window.

Both only wait (the operators decide). In the ``superseded`` execution mode they also watch for a
newer release of the same service: a release DAG runs one run at a time (``max_active_runs=1``), so a
run in state ``queued`` is a newer release waiting behind this one. At a safe point the older run
then gives way: it ends as superseded instead of waiting on.

- :class:`ApprovalTrigger`: Airflow's HITL trigger (response, or the timeout default) plus that watch;
  a superseded request is closed with ``Reject`` and a comment, so it leaves the UI's required actions.
- :class:`ReleaseWaitTrigger`: waits until a moment (the next deployment window opening) plus that watch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.providers.standard.triggers.hitl import HITLTrigger
from airflow.triggers.base import BaseTrigger, TriggerEvent
from asgiref.sync import sync_to_async

SUPERSEDED_COMMENT = "superseded by a newer release of this service"


async def newer_releases(dag_id: str) -> int:
    """How many runs of ``dag_id`` wait behind the running one (state ``queued``)."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    return await sync_to_async(RuntimeTaskInstance.get_dr_count)(dag_id=dag_id, states=["queued"])


class ApprovalTrigger(HITLTrigger):
    """Waits for the approvers' answer (or the timeout), and in ``superseded`` mode for a newer release.

    :param dag_id: the release DAG whose queued runs supersede this one.
    :param watch_newer: the service's ``execution_mode`` is ``superseded``.
    Other parameters: :class:`~airflow.providers.standard.triggers.hitl.HITLTrigger`.
    """

    def __init__(self, *, dag_id: str, watch_newer: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dag_id = dag_id
        self.watch_newer = watch_newer

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {**kwargs, "dag_id": self.dag_id, "watch_newer": self.watch_newer},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.sdk.execution_time.hitl import update_hitl_detail_response

        while True:
            if self.timeout_datetime and self.timeout_datetime < datetime.now(UTC):
                yield await self._handle_timeout()
                return
            event = await self._handle_response()
            if event:
                yield event
                return
            if self.watch_newer and (waiting := await newer_releases(self.dag_id)):
                # Close the request so nobody approves a release that will not go out.
                await sync_to_async(update_hitl_detail_response)(
                    ti_id=self.ti_id, chosen_options=["Reject"], params_input={"comment": SUPERSEDED_COMMENT}
                )
                yield TriggerEvent({"superseded": waiting, "at": datetime.now(UTC).isoformat()})
                return
            await asyncio.sleep(self.poke_interval)


class ReleaseWaitTrigger(BaseTrigger):
    """Fires at ``moment``, or earlier with ``{"superseded": n}`` when ``watch_newer`` sees a newer release.

    :param moment: when to fire (aware datetime, or ISO text).
    :param dag_id: the release DAG whose queued runs supersede this one.
    :param watch_newer: look for newer releases every ``poll_interval`` seconds while waiting.
    """

    def __init__(self, *, moment: datetime | str, dag_id: str, watch_newer: bool = False, poll_interval: float = 30):
        super().__init__()
        self.moment = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
        if self.moment.tzinfo is None:
            raise ValueError(f"ReleaseWaitTrigger: moment must be timezone-aware, got {self.moment!r}")
        self.dag_id = dag_id
        self.watch_newer = watch_newer
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "moment": self.moment.isoformat(),
                "dag_id": self.dag_id,
                "watch_newer": self.watch_newer,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            now = datetime.now(UTC)
            if now >= self.moment:
                yield TriggerEvent({"reached": self.moment.isoformat()})
                return
            if self.watch_newer and (waiting := await newer_releases(self.dag_id)):
                yield TriggerEvent({"superseded": waiting, "at": now.isoformat()})
                return
            remaining = (self.moment - now).total_seconds()
            await asyncio.sleep(min(remaining, self.poll_interval) if self.watch_newer else remaining)
