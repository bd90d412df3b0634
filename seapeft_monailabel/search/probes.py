"""Probe proposer: the search step that picks CANDIDATE units to switch on as probes.

Two kinds of candidate, on two scales that are never compared with each other:

* **unmeasured**: never trained in this run, or trained but never audited. Ranked by the saliency prior
  (first-order predicted loss drop per parameter), descending.
* **measured**: trained and audited. Ranked by optimistic value ``robust + beta_unc * uncertainty``
  (Dice gain per parameter), descending; only units with a positive optimistic value are proposed (a
  unit that does not help even optimistically is left to the audits of trained candidates).

Order of proposal:

1. overdue units: the unmeasured ones (never probed) and the measured ones not probed for at least
   ``revisit_after`` search steps; the two lists are interleaved one for one, starting with the
   unmeasured list (exploration is never starved by exploitation, nor the reverse);
2. the other measured units.

Walking this order, a unit is taken when it is a CANDIDATE, is not guarded, no unit of its group was
already taken in this proposal, its charge fits in the allowance left (``probe_allowance - charges of
PROBATION units - charges taken so far``), and its group has no unit on, with one exception, the
**rank-up probe**: an unmeasured larger level of a group whose on unit is ACTIVE, not guarded, and
measured with a positive optimistic value may be probed; the controller then switches the smaller
level off and the new unit warm-starts from its weights (so the network loses nothing). Without it,
the level first probed in a group would be the only one ever trained there and rank adjustment could
not happen. A probe's charge is its cost, except for a rank-up probe: only its increment over the
ACTIVE level it replaces (what the network gains), so a large level whose full cost exceeds the
allowance can still be reached from a smaller one. :meth:`ProbeProposer.unreachable` names the units
that no probe can reach even so (a warning at the start of a search).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from .controller import UnitLike, UnitState


def _interleave(first: list[str], second: list[str]) -> list[str]:
    """``first[0], second[0], first[1], second[1], ...`` then the rest of the longer list."""
    out: list[str] = []
    for i in range(max(len(first), len(second))):
        out.extend(lst[i] for lst in (first, second) if i < len(lst))
    return out


class ProbeProposer:
    """Chooses probe sets within a probe allowance, overdue units first."""

    def __init__(
        self,
        units: Iterable[UnitLike],
        probe_allowance: int,
        beta_unc: float = 0.5,
        revisit_after: int = 10,
    ) -> None:
        """Args: the unit library, the probe allowance in parameters (e.g. 25 % of the budget), the
        uncertainty bonus weight, and after how many search steps a measured unit is overdue."""
        self._units = {unit.name: unit for unit in units}
        if probe_allowance < 0 or beta_unc < 0 or revisit_after < 1:
            raise ValueError("probe_allowance, beta_unc >= 0 and revisit_after >= 1 required")
        self.probe_allowance = probe_allowance
        self.beta_unc = beta_unc
        self.revisit_after = revisit_after
        self.steps = 0
        self._last_probe: dict[str, int] = {}

    def propose(
        self,
        states: Mapping[str, UnitState],
        guards: Mapping[str, int],
        trained: Collection[str],
        robust: Mapping[str, float | None],
        uncertainty: Mapping[str, float],
        prior: Mapping[str, float],
        charges: Mapping[str, int] | None = None,
    ) -> list[str]:
        """The probe set for this search step, in priority order (see module docstring).

        ``charges``: what each PROBATION unit holds of the allowance (the controller's
        ``probe_charges()``); by default its cost.
        """
        on_by_group = {self._units[n].group: n for n, s in states.items() if s.on}
        room = self.probe_allowance - sum(
            (charges or {}).get(n, self._units[n].cost) for n, s in states.items() if s is UnitState.PROBATION
        )
        values = {
            n: float(score) + self.beta_unc * float(uncertainty.get(n, 0.0))
            for n, score in robust.items()
            if score is not None and n in trained and n in self._units
        }
        unmeasured: list[str] = []
        measured: dict[str, float] = {}
        for name in self._units:
            if states.get(name, UnitState.CANDIDATE) is not UnitState.CANDIDATE:
                continue
            if name not in values:
                unmeasured.append(name)
            elif values[name] > 0:
                measured[name] = values[name]
        unmeasured.sort(key=lambda n: (-prior.get(n, 0.0), self._units[n].cost, n))
        by_value = sorted(measured, key=lambda n: (-measured[n], self._units[n].cost, n))
        stale = [n for n in by_value if self._overdue(n)]
        fresh = [n for n in by_value if not self._overdue(n)]

        taken: list[str] = []
        taken_groups: set[tuple[str, str]] = set()
        rank_up = set(unmeasured)
        for name in _interleave(unmeasured, stale) + fresh:
            unit = self._units[name]
            if guards.get(name, 0) > 0 or unit.group in taken_groups:
                continue
            charge = unit.cost
            sibling = on_by_group.get(unit.group)
            if sibling is not None:
                if not (name in rank_up and self._rank_up_allowed(name, sibling, states, guards, values)):
                    continue
                charge -= self._units[sibling].cost  # a rank-up probe: only the increment (sibling is ACTIVE)
            if charge > room:
                continue
            taken.append(name)
            taken_groups.add(unit.group)
            room -= charge
        return taken

    def unreachable(self) -> list[str]:
        """Units no probe can ever switch on: the cost exceeds the allowance, and so does the increment over
        every smaller level of the group (by name). Only the saliency prior's starting set can train them."""
        groups: dict[tuple[str, str], list[UnitLike]] = {}
        for unit in self._units.values():
            groups.setdefault(unit.group, []).append(unit)
        out = []
        for unit in self._units.values():
            smaller = [s.cost for s in groups[unit.group] if s.level_order < unit.level_order]
            if unit.cost > self.probe_allowance and all(unit.cost - c > self.probe_allowance for c in smaller):
                out.append(unit.name)
        return sorted(out)

    def record(self, probed: Iterable[str]) -> None:
        """Close one search step; ``probed`` are the units actually switched on as probes."""
        self.steps += 1
        for name in probed:
            self._last_probe[name] = self.steps

    def unexplored(self, trained: Collection[str]) -> list[str]:
        """Units never probed nor trained that fit in the allowance (could still be probed), by name."""
        return sorted(
            n for n, u in self._units.items()
            if n not in self._last_probe and n not in trained and u.cost <= self.probe_allowance
        )

    def last_probe(self, name: str) -> int | None:
        """Search step at which ``name`` was last probed, or None."""
        return self._last_probe.get(name)

    def _rank_up_allowed(
        self,
        name: str,
        sibling: str,
        states: Mapping[str, UnitState],
        guards: Mapping[str, int],
        values: Mapping[str, float],
    ) -> bool:
        """``name`` may replace the on ``sibling``: a larger level, and the sibling is an unguarded
        ACTIVE unit with a positive optimistic value."""
        return (
            self._units[name].level_order > self._units[sibling].level_order
            and states[sibling] is UnitState.ACTIVE
            and guards.get(sibling, 0) == 0
            and values.get(sibling, 0.0) > 0
        )

    def _overdue(self, name: str) -> bool:
        """A measured unit is overdue when not probed for ``revisit_after`` search steps."""
        last = self._last_probe.get(name)
        return last is None or self.steps - last >= self.revisit_after
