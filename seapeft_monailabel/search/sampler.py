r"""Audit sampler with a proved coverage bound: every unit is audited at least once every ``H`` audits.

Sample size ``k = max(floor(fraction * N + 1/2), ceil(N / H))`` (fraction 0.2, horizon H = 6).
``debt(u)`` is the number of audits since ``u`` was last audited (every unit starts at 0, as if audited
just before the first audit). The bound is: ``debt(u) <= H - 1`` whenever a sample is drawn, and a unit
with ``debt = H - 1`` is selected, so no unit goes ``H`` consecutive audits unaudited, from the very first
audit on.

Why forcing only the units with ``debt >= H - 1`` is not enough: if the free slots keep picking the
same ``k`` units, the other ``N - k`` units all reach ``debt = H - 1`` together and more than ``k`` of
them are due at once (the reference's shuffle of that overdue set then made the bound fail outright).
So the sampler forces the *necessary* number of units, earliest deadline first.

Deadline. At a sample, a unit with debt ``d`` must be selected within the next ``H - d`` audits (this
one counts as 1). Let ``n_j`` be the number of units with deadline ``<= j`` (``debt >= H - j``).
Feasibility invariant ``F``: ``n_j <= k * j`` for ``j = 1..H``.

Forcing. ``m = max(0, max_j (n_j - k * (j - 1)))`` units are forced, taken in descending debt
(oldest debt first; ties by name, never shuffled): after this audit only ``k * (j - 1)`` slots remain
before deadline ``j``, so at least ``n_j - k(j-1)`` of those units must be served now. The other
``k - m`` slots are free (on units, trained candidates, by uncertainty).

Proof that ``F`` holds at every sample (induction). Initially all debts are 0, so ``n_j = 0`` for
``j < H`` and ``n_H = N <= k * H`` because ``k >= ceil(N / H)``. Assume ``F`` now. Then
``m <= max_j (k j - k (j - 1)) = k``, so the forced units fit; and ``m >= n_1``, so every unit with
deadline 1 (``debt = H - 1``) is selected. At the next sample an unselected unit's deadline drops by
one and a selected unit's deadline becomes ``H``. For ``j < H``:
``n'_j = n_{j+1} - (selected units with deadline <= j + 1)``. The forced units are the ``m`` earliest
deadlines, so at least ``min(m, n_{j+1})`` of them have deadline ``<= j + 1``: if ``m >= n_{j+1}``
then ``n'_j = 0``, else ``n'_j <= n_{j+1} - m <= n_{j+1} - (n_{j+1} - k j) = k j``. For ``j = H``:
``n'_H = N <= k H``. So ``F`` holds at the next sample. With ``F`` and ``m >= n_1`` no debt ever
reaches ``H`` at a sample: every unit is audited at least once in every ``H`` consecutive audits.

Free slots. Pools: units that are on (PROBATION or ACTIVE) and candidates that have been trained at
least once. The on pool gets ``ceil(on_share * free)`` slots (``on_share`` 0.75), the trained-candidate
pool the rest; a pool too small passes its excess to the other one; a remaining shortfall is filled by
the most indebted other units. Within a pool: never-measured units first (no uncertainty yet), then
descending uncertainty, then descending debt, then name. The sampler is deterministic.

Measurable units only (``measurable_only=True``, what the search uses). A unit that has never been
trained is exactly zero, so auditing it measures nothing; covering it only spends audit slots (in a
short search most slots went to such units). With this option the rotation holds only the units passed
as ``trained``: a unit enters it, with debt 0, when it is first trained, forcing and the shortfall fill
look at these units only, and a sample may hold fewer than ``k`` units while fewer are measurable. The
bound holds for them, from the audit they enter: a unit entering with debt 0 has deadline ``H`` and only
adds one to ``n_H``, which stays ``<= N <= k H``; the induction above is otherwise unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence


class AuditSampler:
    """Chooses the units to audit at each audit, with debt-based coverage (see module docstring)."""

    def __init__(
        self,
        names: Sequence[str],
        fraction: float = 0.2,
        horizon: int = 6,
        on_share: float = 0.75,
        measurable_only: bool = False,
    ) -> None:
        """Args: all unit names, the audit fraction, the debt horizon ``H``, the share of the free
        slots given to units that are on, and whether only trained units are audited (module docstring)."""
        if len(set(names)) != len(names) or not names:
            raise ValueError("names must be non-empty and unique")
        if horizon < 1 or not 0.0 <= fraction <= 1.0 or not 0.0 <= on_share <= 1.0:
            raise ValueError("horizon must be >= 1; fraction and on_share in [0, 1]")
        self.names = sorted(names)
        self.horizon = horizon
        self.fraction = fraction
        self.on_share = on_share
        self.measurable_only = measurable_only
        self._pool: set[str] = set(self.names)
        n = len(self.names)
        self.k = min(n, max(math.floor(fraction * n + 0.5), math.ceil(n / horizon)))
        self._debt = {name: 0 for name in self.names}
        self._count = {name: 0 for name in self.names}
        self._max_gap = {name: 0 for name in self.names}
        self.audits = 0

    def debt(self, name: str) -> int:
        """Audits since ``name`` was last audited."""
        return self._debt[name]

    def forced(self) -> list[str]:
        """The units that must be audited now to keep the coverage bound, oldest debt first."""
        names = [n for n in self.names if n in self._pool]
        order = sorted(names, key=lambda n: (-self._debt[n], n))
        m = 0
        for j in range(1, self.horizon + 1):
            n_j = sum(1 for name in names if self._debt[name] >= self.horizon - j)
            m = max(m, n_j - self.k * (j - 1))
        return order[:m]

    def sample(
        self,
        on_units: Collection[str],
        uncertainty: Mapping[str, float],
        trained: Collection[str] = (),
    ) -> list[str]:
        """Units to audit now: forced units first, then free slots by pool and uncertainty.

        Args:
            on_units: units whose gate is on (PROBATION or ACTIVE).
            uncertainty: current uncertainty of measured units (absent = never measured).
            trained: units that have been trained at least once (off ones form the second pool; with
                ``measurable_only`` they are the only units sampled).
        """
        if self.measurable_only:
            self._pool = set(trained) & set(self._debt)
        chosen = self.forced()
        taken = set(chosen)
        free = self.k - len(chosen)
        on_pool = self._rank([n for n in self.names if n in on_units and n not in taken], uncertainty)
        off_pool = self._rank(
            [n for n in self.names if n in trained and n not in on_units and n not in taken], uncertainty
        )
        n_on = min(len(on_pool), math.ceil(self.on_share * free))
        n_off = min(len(off_pool), free - n_on)
        n_on = min(len(on_pool), free - n_off)
        chosen += on_pool[:n_on] + off_pool[:n_off]
        taken = set(chosen)
        rest = sorted((n for n in self.names if n not in taken and n in self._pool),
                      key=lambda n: (-self._debt[n], n))
        chosen += rest[: self.k - len(chosen)]
        return chosen

    def record(self, selected: Iterable[str]) -> None:
        """Close one audit: selected units get debt 0, every other unit one more."""
        picked = set(selected)
        unknown = picked.difference(self._debt)
        if unknown:
            raise KeyError(f"unknown units {sorted(unknown)}")
        self.audits += 1
        for name in self.names:
            if name in picked:
                self._max_gap[name] = max(self._max_gap[name], self._debt[name] + 1)
                self._debt[name] = 0
                self._count[name] += 1
            elif name in self._pool:
                self._debt[name] += 1

    def max_gap(self, name: str) -> int:
        """Longest run of audits, ending with an audit of ``name``, seen so far (bound: ``<= H``)."""
        return self._max_gap[name]

    def coverage(self) -> dict[str, object]:
        """Loggable coverage state: audits, k, H, worst current debt, worst gap, audit counts."""
        return {
            "audits": self.audits,
            "k": self.k,
            "horizon": self.horizon,
            "max_debt": max(self._debt.values()),
            "max_gap": max(self._max_gap.values()),
            "counts": dict(self._count),
        }

    def _rank(self, pool: list[str], uncertainty: Mapping[str, float]) -> list[str]:
        """Never-measured first, then descending uncertainty, descending debt, name."""
        return sorted(
            pool,
            key=lambda n: (n in uncertainty, -uncertainty.get(n, 0.0), -self._debt[n], n),
        )
