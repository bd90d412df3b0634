"""Finite-state controller: turns allocation decisions and probes into unit state transitions.

States (per unit, keyed by name):

* ``CANDIDATE``: off.
* ``PROBATION``: on (probed, trained); its **probe charge** counts against the probe allowance, not the
  budget: its cost, except for a rank-up probe (a larger level replacing its ACTIVE sibling), which is
  charged only its increment over the level it replaced (the network gains only that many parameters,
  and a larger level would otherwise cost more than the allowance and never be probed).
* ``ACTIVE``: on; its cost counts against the budget ``B``.

Transitions:

* ``CANDIDATE -> PROBATION`` by ``probe()`` (immediate, only while the probe allowance has room), or
  after ``v_active`` (3) consecutive allocation decisions that want the unit (never straight to ACTIVE;
  the allocator already checked that the unit fits under ``B`` with the current set).
* ``PROBATION -> ACTIVE`` after ``v_probation`` (2) consecutive decisions that want it, and only if the
  ACTIVE cost stays ``<= B`` once this allocation's demotions are applied; otherwise the unit stays in
  PROBATION and keeps its votes.
* ``PROBATION -> CANDIDATE`` after ``v_probation`` consecutive decisions that do not want it.
* ``ACTIVE -> CANDIDATE`` after ``v_active`` consecutive decisions that do not want it (demotion).
* Rank change: when a unit turns on while a sibling level of its group (same site and family) is on,
  the sibling goes to CANDIDATE in the same step, so one level per group is on at any time. If the
  sibling is the smaller level, the new unit's transition carries ``warm_start_from = sibling``: the
  loop copies (pads) the sibling's trained weights into it.

Votes are a signed streak per unit: ``+n`` for ``n`` consecutive decisions wanting a change towards
"more on", ``-n`` for ``n`` consecutive decisions wanting "less on"; an agreeing decision resets it to 0.
After every transition the unit gets a guard of ``guard`` (3) allocations: each ``apply()`` decrements
a positive guard by one and skips the unit (no votes are collected) while it was guarded. ``probe()``
skips guarded units. A probe's own guard is ``probe_guard`` (default ``guard``): a shorter one lets the
allocator judge a probe sooner, so the probe allowance frees up for the next units.

Audits never touch this object: it has no method an audit could call that changes votes or guards,
and gate toggling for an audit happens in the network, not here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol


class UnitLike(Protocol):
    """What the search logic needs to know about a unit."""

    name: str
    site: str
    family: str
    level: str
    group: tuple[str, str]
    cost: int
    level_order: int


class UnitState(str, Enum):
    """Controller state of a unit."""

    CANDIDATE = "candidate"
    PROBATION = "probation"
    ACTIVE = "active"

    @property
    def on(self) -> bool:
        """Whether a unit in this state has its gate on."""
        return self is not UnitState.CANDIDATE


@dataclass(frozen=True)
class Transition:
    """One state change of one unit.

    ``reason`` is one of ``start`` (the search's starting set), ``probe``, ``votes``, ``rank_change``
    (forced off because a sibling level turned on). ``first_on`` is True when the unit turns on for
    the first time in the run.
    """

    unit: str
    from_state: UnitState
    to_state: UnitState
    reason: str
    warm_start_from: str | None = None
    first_on: bool = False


class UnitController:
    """Per-unit state machine with consecutive votes, guards, a budget and a probe allowance."""

    def __init__(
        self,
        units: Iterable[UnitLike],
        budget: int,
        probe_allowance: int,
        v_active: int = 3,
        v_probation: int = 2,
        guard: int = 3,
        initial_active: Iterable[str] = (),
        probe_guard: int | None = None,
        initial_guard: int = 0,
    ) -> None:
        """Create the controller with every unit CANDIDATE except ``initial_active``.

        Args:
            units: the unit library (unique names).
            budget: ``B``, the most parameters ACTIVE units may hold together.
            probe_allowance: the most parameters PROBATION units may hold together for ``probe()``.
            v_active: consecutive votes to demote an ACTIVE unit or to admit a CANDIDATE.
            v_probation: consecutive votes to decide a PROBATION unit either way.
            guard: allocations after a transition during which the unit cannot flip.
            probe_guard: the guard after a probe (default ``guard``).
            initial_active: units that start ACTIVE (total cost ``<= B``, one per group).
            initial_guard: the guard of the ``initial_active`` units (allocations before they can flip).
        """
        self._units: dict[str, UnitLike] = {}
        for unit in units:
            if unit.name in self._units:
                raise ValueError(f"duplicate unit name {unit.name!r}")
            if unit.cost < 1:
                raise ValueError(f"unit {unit.name!r} has cost {unit.cost}")
            self._units[unit.name] = unit
        if min(v_active, v_probation) < 1 or min(guard, initial_guard) < 0 or budget < 0 or probe_allowance < 0:
            raise ValueError("votes must be >= 1; guard, budget and allowance must be >= 0")
        self.budget = budget
        self.probe_allowance = probe_allowance
        self.v_active = v_active
        self.v_probation = v_probation
        self.guard_len = guard
        self.probe_guard_len = guard if probe_guard is None else probe_guard
        if self.probe_guard_len < 0:
            raise ValueError("probe_guard must be >= 0")
        self._groups: dict[tuple[str, str], list[str]] = {}
        for name, unit in self._units.items():
            self._groups.setdefault(unit.group, []).append(name)
        self._state = {name: UnitState.CANDIDATE for name in self._units}
        self._votes = {name: 0 for name in self._units}
        self._guard = {name: 0 for name in self._units}
        self._ever_on: set[str] = set()
        self._credit: dict[str, int] = {}  # rank-up probes in PROBATION: the cost of the ACTIVE level replaced
        self.allocations = 0
        for name in initial_active:
            self._require(name)
            if self._group_on(name) is not None:
                raise ValueError(f"initial_active holds two levels of group {self._units[name].group}")
            self._state[name] = UnitState.ACTIVE
            self._guard[name] = initial_guard
            self._ever_on.add(name)
        if self.active_cost() > budget:
            raise ValueError(f"initial_active costs {self.active_cost()} > budget {budget}")

    # ----------------------------------------------------------------- queries
    def state(self, name: str) -> UnitState:
        """Current state of ``name``."""
        self._require(name)
        return self._state[name]

    def votes(self, name: str) -> int:
        """Signed vote streak of ``name`` (``>0`` towards on/active, ``<0`` towards off)."""
        self._require(name)
        return self._votes[name]

    def guard(self, name: str) -> int:
        """Remaining guard (allocations) of ``name``."""
        self._require(name)
        return self._guard[name]

    def states(self) -> dict[str, UnitState]:
        """State of every unit."""
        return dict(self._state)

    def guards(self) -> dict[str, int]:
        """Guard of every unit."""
        return dict(self._guard)

    def on_units(self) -> list[str]:
        """Units whose gate is on (PROBATION or ACTIVE), sorted by name."""
        return sorted(n for n, s in self._state.items() if s.on)

    def active_units(self) -> list[str]:
        """ACTIVE units, sorted by name."""
        return sorted(n for n, s in self._state.items() if s is UnitState.ACTIVE)

    def probation_units(self) -> list[str]:
        """PROBATION units, sorted by name."""
        return sorted(n for n, s in self._state.items() if s is UnitState.PROBATION)

    def trained_units(self) -> list[str]:
        """Units that have been on at least once in this run, sorted by name."""
        return sorted(self._ever_on)

    def active_cost(self) -> int:
        """Total cost of ACTIVE units."""
        return sum(self._units[n].cost for n in self.active_units())

    def probation_cost(self) -> int:
        """Total cost of PROBATION units."""
        return sum(self._units[n].cost for n in self.probation_units())

    def probe_charges(self) -> dict[str, int]:
        """``{PROBATION unit: what it holds of the probe allowance}`` (cost, or a rank-up probe's increment)."""
        return {n: self._units[n].cost - self._credit.get(n, 0) for n in self.probation_units()}

    def snapshot(self) -> dict[str, object]:
        """Loggable state: allocations so far, costs, and state/votes/guard of every non-idle unit."""
        units = {
            name: {"state": self._state[name].value, "votes": self._votes[name], "guard": self._guard[name]}
            for name in sorted(self._units)
            if self._state[name].on or self._votes[name] or self._guard[name]
        }
        return {
            "allocations": self.allocations,
            "active_cost": self.active_cost(),
            "probation_cost": self.probation_cost(),
            "probe_charge": sum(self.probe_charges().values()),
            "budget": self.budget,
            "probe_allowance": self.probe_allowance,
            "units": units,
        }

    # ----------------------------------------------------------------- actions
    def probe(self, names: Iterable[str]) -> list[Transition]:
        """Switch CANDIDATE units on as probes, in the given order, while the allowance has room.

        A unit that is not CANDIDATE raises ValueError. A guarded unit, or one whose charge does not fit
        in the remaining allowance, is skipped (no transition). The charge is the unit's cost, less the
        cost of an ACTIVE sibling level it replaces (never below zero); a PROBATION sibling it replaces
        gives its own charge back. Returns the transitions made.
        """
        out: list[Transition] = []
        for name in names:
            self._require(name)
            if self._state[name] is not UnitState.CANDIDATE:
                raise ValueError(f"probe of {name!r} which is {self._state[name].value}, not candidate")
            if self._guard[name] > 0:
                continue
            sibling = self._group_on(name)
            charges = self.probe_charges()
            freed = charges.get(sibling, 0)
            credit = min(self._units[sibling].cost, self._units[name].cost) \
                if sibling is not None and self._state[sibling] is UnitState.ACTIVE else 0
            if sum(charges.values()) - freed + self._units[name].cost - credit > self.probe_allowance:
                continue
            out.extend(self._turn_on(name, UnitState.PROBATION, "probe", sibling))
            if credit:
                self._credit[name] = credit
        return out

    def apply(self, desired: Iterable[str], priority: Sequence[str] = ()) -> list[Transition]:
        """Apply one allocation decision: ``desired`` is the set of units the allocator wants on.

        Guards are decremented (guarded units skipped), votes updated, demotions applied first, then
        promotions in ``priority`` order (units not listed follow by name). Returns the transitions.
        """
        wanted = set(desired)
        for name in wanted:
            self._require(name)
        groups_wanted = [self._units[n].group for n in wanted]
        if len(set(groups_wanted)) != len(groups_wanted):
            raise ValueError("desired holds two levels of one group")
        self.allocations += 1
        voters: list[str] = []
        for name in sorted(self._units):
            if self._guard[name] > 0:
                self._guard[name] -= 1
                continue
            voters.append(name)
            self._vote(name, name in wanted)

        on_before = {n for n, s in self._state.items() if s.on}
        out: list[Transition] = []
        for name in voters:
            state, votes = self._state[name], self._votes[name]
            if state is UnitState.ACTIVE and votes <= -self.v_active:
                out.append(self._set(name, UnitState.CANDIDATE, "votes"))
            elif state is UnitState.PROBATION and votes <= -self.v_probation:
                out.append(self._set(name, UnitState.CANDIDATE, "votes"))

        rank = {name: i for i, name in enumerate(priority)}
        for name in sorted(voters, key=lambda n: (rank.get(n, len(rank)), n)):
            state, votes = self._state[name], self._votes[name]
            if state is UnitState.CANDIDATE and votes >= self.v_active:
                previous = next((o for o in self._groups[self._units[name].group] if o in on_before), None)
                out.extend(self._turn_on(name, UnitState.PROBATION, "votes", previous))
            elif state is UnitState.PROBATION and votes >= self.v_probation:
                if self.active_cost() + self._units[name].cost <= self.budget:
                    out.append(self._set(name, UnitState.ACTIVE, "votes"))
        return out

    # ----------------------------------------------------------------- internals
    def _require(self, name: str) -> None:
        if name not in self._units:
            raise KeyError(f"unknown unit {name!r}")

    def _group_on(self, name: str) -> str | None:
        """The sibling level of ``name``'s group that is on, if any (never ``name`` itself)."""
        for other in self._groups[self._units[name].group]:
            if other != name and self._state[other].on:
                return other
        return None

    def _vote(self, name: str, want: bool) -> None:
        """Update the signed vote streak of an unguarded unit for one decision."""
        state, votes = self._state[name], self._votes[name]
        if state is UnitState.CANDIDATE:
            self._votes[name] = votes + 1 if want else 0
        elif state is UnitState.ACTIVE:
            self._votes[name] = 0 if want else min(votes, 0) - 1
        elif want:
            self._votes[name] = max(votes, 0) + 1
        else:
            self._votes[name] = min(votes, 0) - 1

    def _set(self, name: str, to: UnitState, reason: str, warm_start_from: str | None = None) -> Transition:
        """Move ``name`` to ``to``; reset its votes, start its guard, record the transition."""
        first_on = to.on and name not in self._ever_on
        transition = Transition(name, self._state[name], to, reason, warm_start_from, first_on)
        self._state[name] = to
        self._credit.pop(name, None)
        self._votes[name] = 0
        self._guard[name] = self.probe_guard_len if reason == "probe" else self.guard_len
        if to.on:
            self._ever_on.add(name)
        return transition

    def _turn_on(self, name: str, to: UnitState, reason: str, previous: str | None) -> list[Transition]:
        """Turn ``name`` on. ``previous`` is the sibling level that was on when this step began: if it
        is still on it goes off (rank change); if it is the smaller level, ``name`` warm-starts from it.
        """
        out: list[Transition] = []
        warm = None
        if previous is not None:
            if self._state[previous].on:
                out.append(self._set(previous, UnitState.CANDIDATE, "rank_change"))
            if self._units[previous].level_order < self._units[name].level_order:
                warm = previous
        out.append(self._set(name, to, reason, warm))
        return out
