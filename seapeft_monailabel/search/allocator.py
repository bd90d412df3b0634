"""Budgeted allocator: greedy knapsack over unit values with locks, hysteresis and repair.

Value of an audited unit: ``value = robust + beta_unc * uncertainty`` (Dice gain per parameter, plus an
optimism bonus in the same unit). It is already a density, so the greedy ranks rows by value. Units
never audited have no value and are not eligible (locked units excepted, see below).

Rules of ``allocate`` (all thresholds are in the unit of the value, Dice per parameter):

1. ``tau = hysteresis * median(values of ACTIVE units whose value is > 0)``; ``tau = 0`` if there is none.
   Keep threshold ``tau``, entry threshold ``2 * tau``; the band ``[tau, 2 * tau]`` is the hysteresis.
2. Locked units (ACTIVE with guard > 0: the controller will not move them at this allocation) are
   always included, whatever their value.
3. One row per group (site, family): among the eligible levels, the one with the highest value, where
   a level that is on keeps the group unless another level beats it by more than ``tau`` (ties, and
   noise inside the hysteresis band, go to the level that is on). A group with a locked unit is
   represented by that unit only.
4. Rows in descending value (ties: smaller cost, then name):
   * an ACTIVE unit is kept iff ``value > 0`` and ``value >= tau`` (it is kept even when the budget
     is momentarily over, the repair below decides);
   * any other unit (CANDIDATE or PROBATION) enters iff ``value > 0`` and ``value > 2 * tau`` and
     its cost fits in the budget left.
   Hence (a) an ACTIVE unit whose value falls below ``tau`` (10 % of the median active value by
   default) is dropped, (b) a unit with a non-positive value (useless or harmful, even with its
   optimism bonus) is never kept, (c) entering needs a strictly positive value above ``2 * tau >= tau``.
5. Repair: while the total cost exceeds the budget, drop the non-locked unit of lowest value (ties:
   larger cost, then name). A high-value newcomer can so displace a low-value incumbent.

Precondition: the ACTIVE cost is ``<= budget`` (the controller's invariant), so locked units fit and the
result never exceeds the budget; a violation raises ValueError.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .controller import UnitLike, UnitState


@dataclass(frozen=True)
class Allocation:
    """Result of an allocation: the desired set, its names by descending value, cost and diagnostics."""

    desired: frozenset[str]
    order: tuple[str, ...]
    cost: int
    diagnostics: dict[str, object] = field(default_factory=dict)


class Allocator:
    """Greedy knapsack allocator over a fixed unit library and budget."""

    def __init__(
        self,
        units: Iterable[UnitLike],
        budget: int,
        beta_unc: float = 0.5,
        hysteresis: float = 0.1,
    ) -> None:
        """Args: the unit library, the budget ``B`` in parameters, the uncertainty bonus weight, and the
        hysteresis fraction of the median active value (see module docstring)."""
        self._units = {unit.name: unit for unit in units}
        if budget < 0 or beta_unc < 0 or hysteresis < 0:
            raise ValueError("budget, beta_unc and hysteresis must be >= 0")
        self.budget = budget
        self.beta_unc = beta_unc
        self.hysteresis = hysteresis

    def values(self, robust: Mapping[str, float | None], uncertainty: Mapping[str, float]) -> dict[str, float]:
        """``robust + beta_unc * uncertainty`` for every known unit with a robust score."""
        out: dict[str, float] = {}
        for name, score in robust.items():
            if score is None or name not in self._units:
                continue
            out[name] = float(score) + self.beta_unc * float(uncertainty.get(name, 0.0))
        return out

    def allocate(
        self,
        robust: Mapping[str, float | None],
        uncertainty: Mapping[str, float],
        states: Mapping[str, UnitState],
        guards: Mapping[str, int],
    ) -> Allocation:
        """One allocation decision with locks, hysteresis and repair (module docstring, rules 1-5)."""
        active = [n for n, s in states.items() if s is UnitState.ACTIVE]
        active_cost = sum(self._units[n].cost for n in active)
        if active_cost > self.budget:
            raise ValueError(f"ACTIVE cost {active_cost} exceeds the budget {self.budget}")
        values = self.values(robust, uncertainty)
        positive = [values[n] for n in active if n in values and values[n] > 0]
        tau = self.hysteresis * float(np.median(positive)) if positive else 0.0
        locked = {n for n in active if guards.get(n, 0) > 0}
        on = {n for n, s in states.items() if s.on}

        selected = set(locked)
        total = sum(self._units[n].cost for n in locked)
        dropped: list[str] = []
        for name in self._rows(values, on, locked, tau):
            value, cost = values[name], self._units[name].cost
            if states.get(name, UnitState.CANDIDATE) is UnitState.ACTIVE:
                if value > 0 and value >= tau:
                    selected.add(name)
                    total += cost
                else:
                    dropped.append(name)
            elif value > 0 and value > 2 * tau and total + cost <= self.budget:
                selected.add(name)
                total += cost
        repaired = self._repair(selected, values, locked)
        total = sum(self._units[n].cost for n in selected)
        return Allocation(
            desired=frozenset(selected),
            order=self._order(selected, values),
            cost=total,
            diagnostics={
                "tau": tau,
                "keep_threshold": tau,
                "entry_threshold": 2 * tau,
                "locked": sorted(locked),
                "dropped_by_threshold": sorted(dropped),
                "repaired": repaired,
                "eligible": len(values),
                "cost": total,
                "budget": self.budget,
                "values": {n: values[n] for n in sorted(values)},
            },
        )

    def solve_guard_free(
        self,
        robust: Mapping[str, float | None],
        uncertainty: Mapping[str, float],
        on: Collection[str] = (),
    ) -> Allocation:
        """The same knapsack with no locks and no hysteresis: the best level per group (ties to ``on``),
        then units with ``value > 0`` in descending value while they fit. Used for the final
        "guard-free re-solve" candidate set."""
        values = self.values(robust, uncertainty)
        selected: set[str] = set()
        total = 0
        for name in self._rows(values, set(on), set(), 0.0):
            cost = self._units[name].cost
            if values[name] > 0 and total + cost <= self.budget:
                selected.add(name)
                total += cost
        return Allocation(
            desired=frozenset(selected),
            order=self._order(selected, values),
            cost=total,
            diagnostics={"cost": total, "budget": self.budget, "eligible": len(values)},
        )

    # ----------------------------------------------------------------- internals
    def _rows(self, values: Mapping[str, float], on: set[str], locked: set[str], margin: float) -> list[str]:
        """Best eligible level per group (groups with a locked unit excluded), by descending value; a
        level that is on gets a head start of ``margin``."""
        locked_groups = {self._units[n].group for n in locked}
        best: dict[tuple[str, str], str] = {}

        def score(n: str) -> tuple[float, bool]:
            return (values[n] + (margin if n in on else 0.0), n in on)

        for name in sorted(values):
            group = self._units[name].group
            if group in locked_groups:
                continue
            cur = best.get(group)
            if cur is None or score(name) > score(cur):
                best[group] = name
        return sorted(best.values(), key=lambda n: (-values[n], self._units[n].cost, n))

    def _repair(self, selected: set[str], values: Mapping[str, float], locked: set[str]) -> list[str]:
        """Drop non-locked units by ascending value until the budget holds; return them in order."""
        removed: list[str] = []
        total = sum(self._units[n].cost for n in selected)
        queue = sorted(selected - locked, key=lambda n: (values[n], -self._units[n].cost, n))
        for name in queue:
            if total <= self.budget:
                break
            selected.discard(name)
            total -= self._units[name].cost
            removed.append(name)
        return removed

    def _order(self, selected: set[str], values: Mapping[str, float]) -> tuple[str, ...]:
        """Selected names by descending value (locked units without a value last), then name."""
        return tuple(sorted(selected, key=lambda n: (-values.get(n, -np.inf), n)))
