"""AdaLoRA's rank allocation during training: importance after every backward, budgeted masking on a schedule.

A :class:`RankAllocator` is a trainer hook, called after ``backward()`` and before the optimiser step
(as peft's ``update_and_allocate``: the step that follows a masking moves the zeroed singular values
again, so pruned triplets keep training and can come back, see :mod:`.adalora`). It acts on the AdaLoRA
units that are **on** at the time, so it serves a fixed set (the ``adalora`` baseline) and SEA-PEFT's
changing set alike.

Each unit runs AdaLoRA's schedule on its own clock, the steps since it was last switched on (a unit
the search switches on late starts its schedule then, instead of being cut to the final rank at once):

* warm-up, ``age <= warmup``: importance only, every triplet kept;
* reduction, ``warmup < age <= total - final``: every ``every`` steps the triplets of the units of one
  cohort (switched on at the same step, so of the same age; in a fixed baseline, all of them) are
  pooled, as AdaLoRA pools its matrices, and the best ``sum_u b_u(age)`` kept, with ``b_u`` AdaLoRA's
  cubic decay from the unit's rank ``r_u`` to ``max(1, round(target_ratio * r_u))``. Cohorts are not
  pooled with each other: a unit just switched on, whose singular values have barely left zero, would
  lose its triplets to units trained for longer before its importance means anything;
* final, ``age > total - final``: the last mask is frozen, re-applied every step, importance stops.

:meth:`RankAllocator.finish` re-applies every mask at the end of training, so the saved and merged
weights hold exactly the kept triplets.
"""

from __future__ import annotations

from collections.abc import Iterable

from .adalora import AdaLoRAUnit, allocate_ranks, budget_schedule


class RankAllocator:
    """AdaLoRA importance and budgeted masking over ``units`` (see the module docstring).

    Args:
        units: the AdaLoRA units of a registry (those that are off are skipped).
        total_steps: the schedule's length ``T`` in steps of a unit's clock.
        target_ratio: final rank as a fraction of each unit's initial rank.
        every: masking interval in trainer steps during the reduction phase.
        warmup_fraction, final_fraction: ``t_init = warmup_fraction * T``, ``t_final = final_fraction * T``.
        beta1, beta2: smoothing of the sensitivity and of its uncertainty.
    """

    def __init__(self, units: Iterable[AdaLoRAUnit], total_steps: int, target_ratio: float = 0.5, every: int = 10,
                 warmup_fraction: float = 0.1, final_fraction: float = 0.2, beta1: float = 0.85, beta2: float = 0.85):
        if not 0 < target_ratio <= 1 or every < 1 or total_steps < 1:
            raise ValueError("RankAllocator needs 0 < target_ratio <= 1, every >= 1 and total_steps >= 1")
        if warmup_fraction < 0 or final_fraction < 0 or warmup_fraction + final_fraction >= 1:
            raise ValueError("RankAllocator needs warmup_fraction, final_fraction >= 0 with a sum below 1")
        self.units = list(units)
        self.total = total_steps
        self.warmup = int(warmup_fraction * total_steps)
        self.final = int(final_fraction * total_steps)
        self.target_ratio = target_ratio
        self.every = every
        self.betas = (beta1, beta2)
        self._on_since: dict[str, int] = {}
        self._age: dict[str, int] = {}

    def target_rank(self, unit: AdaLoRAUnit) -> int:
        """The rank ``unit`` ends its schedule with."""
        return max(1, round(self.target_ratio * unit.level_value))

    def ages(self) -> dict[str, int]:
        """``{unit name: steps since it was last switched on}`` for the units on at the last call."""
        return dict(self._age)

    def __call__(self, step: int) -> None:
        """Run after the backward pass of trainer step ``step`` (gradients present, before the optimiser step)."""
        on = [u for u in self.units if u.enabled]
        for name in set(self._on_since) - {u.name for u in on}:
            del self._on_since[name]
        self._age = {u.name: step - self._on_since.setdefault(u.name, step) for u in on}
        cohorts: dict[int, list[AdaLoRAUnit]] = {}
        for unit in on:
            age = self._age[unit.name]
            if age > self.total - self.final:
                unit.apply_rank_mask()
                continue
            unit.update_importance(*self.betas)
            if age > self.warmup:
                cohorts.setdefault(age, []).append(unit)
        if step % self.every:
            return
        for age, units in cohorts.items():
            budget = sum(budget_schedule(age, self.total, u.level_value, self.target_rank(u), self.warmup, self.final)
                         for u in units)
            allocate_ranks(units, budget)

    def finish(self) -> None:
        """Zero the pruned singular values of every unit once more (call when training ends)."""
        for unit in self.units:
            unit.apply_rank_mask()
