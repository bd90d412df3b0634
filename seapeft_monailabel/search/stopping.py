"""Stop rule of the search: a stable on-set with nothing pending, a step limit, or a time limit."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection


class StopRule:
    """Decides when the search ends.

    * ``converged``: the on-set (PROBATION and ACTIVE units) has not changed for ``patience``
      consecutive allocations and, at the latest one, no probe was pending (the caller reports
      ``probe_pending = bool(controller.probation_units()) or bool(proposer.unexplored(trained))``);
    * ``step_limit``: ``step >= max_steps``;
    * ``time_limit``: more than ``time_limit_s`` seconds since the rule was created (CPU runs).
    """

    def __init__(
        self,
        max_steps: int,
        patience: int = 4,
        time_limit_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Args: the step limit, allocations without change needed to converge, an optional wall-time
        limit in seconds, and the clock (injectable for tests)."""
        if max_steps < 1 or patience < 1:
            raise ValueError("max_steps and patience must be >= 1")
        self.max_steps = max_steps
        self.patience = patience
        self.time_limit_s = time_limit_s
        self._clock = clock
        self._start = clock()
        self._last: frozenset[str] | None = None
        self._stable = 0
        self._pending = True

    @property
    def stable_allocations(self) -> int:
        """Consecutive allocations, up to the latest, with an unchanged on-set."""
        return self._stable

    def observe_allocation(self, on_units: Collection[str], probe_pending: bool) -> None:
        """Record the on-set after an allocation and whether any probe is still pending."""
        current = frozenset(on_units)
        self._stable = self._stable + 1 if current == self._last else 0
        self._last = current
        self._pending = probe_pending

    def check(self, step: int) -> str | None:
        """The reason to stop at ``step`` (``converged``, ``step_limit``, ``time_limit``) or None."""
        if self._stable >= self.patience and not self._pending:
            return "converged"
        if step >= self.max_steps:
            return "step_limit"
        if self.time_limit_s is not None and self._clock() - self._start > self.time_limit_s:
            return "time_limit"
        return None
