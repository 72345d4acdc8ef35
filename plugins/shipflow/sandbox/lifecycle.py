"""Step-by-step progressions (QUEUED -> ... -> SUCCEEDED) whose speed the caller controls.

Each resource that progresses (a build, a deployment, a stack operation) holds a ``Lifecycle`` with
its own list of steps. How fast it moves is a *transition* read from moto's state manager, keyed by
model name (``codebuild::build``, ``codedeploy::deployment``, ``cloudformation::stack``), so it is set
through moto's ``/moto-api/state-manager/set-transition`` or Shipflow's ``/_shipflow/lifecycle``:

- ``{"progression": "immediate"}``: the first read jumps to the last step;
- ``{"progression": "manual", "times": N}``: one step per N describes of that resource;
- ``{"progression": "time", "seconds": S}``: one step per S seconds of wall-clock time.

Unlike moto's ``ManagedState``, time progression advances every step that has elapsed (not one per
read), steps may repeat a status (a canary's several InProgress steps), and callers can jump to a
terminal step (a stop) or replace the remaining steps (a fault decided later).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from moto.moto_api import state_manager

MODELS: dict[str, dict[str, Any]] = {}


def register_model(model_name: str, default: dict[str, Any]) -> None:
    """Declare a model and its default transition (moto's state manager keeps both)."""
    MODELS[model_name] = dict(default)
    state_manager.register_default_transition(model_name, dict(default))


def reset_transitions() -> None:
    for model_name in MODELS:
        state_manager.unset_transition(model_name)


class Lifecycle:
    """A resource's position in its list of steps.

    ``steps`` are opaque values (usually status strings, or dicts when a step carries more than a
    status). ``on_step(index, step)`` runs once for each step entered, in order, so side effects
    (a revision going live, a rollback starting) happen exactly once whatever the read pattern.
    """

    def __init__(
        self,
        model_name: str,
        steps: Sequence[Any],
        on_step: Callable[[int, Any], None] | None = None,
    ) -> None:
        if not steps:
            raise ValueError("a lifecycle needs at least one step")
        self.model_name = model_name
        self.steps: list[Any] = list(steps)
        self.index = 0
        self._on_step = on_step
        self._ticks = 0
        self._since = time.monotonic()
        self._lock = threading.RLock()

    @property
    def transition(self) -> dict[str, Any]:
        return state_manager.get_transition(self.model_name)

    @property
    def done(self) -> bool:
        return self.index >= len(self.steps) - 1

    @property
    def step(self) -> Any:
        """The current step, after applying whatever progress is due (without counting a read)."""
        with self._lock:
            self._progress()
            return self.steps[self.index]

    def describe(self) -> Any:
        """The current step as a describe call sees it: counts one read for manual progression."""
        with self._lock:
            self._ticks += 1
            self._progress()
            return self.steps[self.index]

    def _progress(self) -> None:
        if self.done:
            return
        transition = self.transition
        progression = transition.get("progression", "immediate")
        if progression == "immediate":
            due = len(self.steps) - 1 - self.index
        elif progression == "manual":
            times = max(int(transition.get("times", 1)), 1)
            due, self._ticks = divmod(self._ticks, times)
        elif progression == "time":
            seconds = float(transition.get("seconds", 1))
            elapsed = time.monotonic() - self._since
            due = int(elapsed // seconds) if seconds > 0 else len(self.steps)
            if due:
                self._since += due * seconds if seconds > 0 else elapsed
        else:
            due = 0
        for _ in range(min(due, len(self.steps) - 1 - self.index)):
            self._enter(self.index + 1)

    def _enter(self, index: int) -> None:
        self.index = index
        self._since = time.monotonic()
        if self._on_step is not None:
            self._on_step(index, self.steps[index])

    def jump(self, steps: Sequence[Any]) -> None:
        """Replace everything after the current step with ``steps`` and enter the first of them.

        Used for stops and faults that change a resource's course midway; the rest of ``steps``
        then progresses at the model's speed like any other.
        """
        with self._lock:
            self.steps = self.steps[: self.index + 1] + list(steps)
            self._ticks = 0
            self._enter(self.index + 1)

    def reroute(self, steps: Sequence[Any]) -> None:
        """Replace the steps after the current one, without entering any of them yet."""
        with self._lock:
            self.steps = self.steps[: self.index + 1] + list(steps)
