"""The audit: on/off toggling of single units on a fixed set of foreground patches.

For a unit that is on, ``delta = Dice(S) - Dice(S without u)``; for a trained unit that is off,
``delta = Dice(S' with u) - Dice(S')`` where ``S'`` is the current set without u's group (so a larger
level is measured in place of the smaller one, not stacked on it). The baseline ``Dice(S)`` is
measured at the start of every audit, on the gates as they are then, and every toggle restores the
gates exactly, so no measurement sees another unit's toggle (reference defects 3 and 4). Dice is the
soft Dice of the foreground classes (:func:`~seapeft_monailabel.metrics.soft_dice`), in eval mode.
Utility sample = ``delta / cost`` (Dice per parameter); the raw delta is kept too.

What an audit computes, and nothing more (the numbers equal one full forward per set):

* each distinct unit set once: an off unit whose group has no level on is compared with ``S`` itself, and
  ``S'`` is shared by the off levels of one group and by the removal of its level that is on;
* every toggled set differs from ``S`` at one site (a unit and its group share a host), so its forward
  recomputes only what follows that host and takes the rest from the baseline forward of the same batch
  (:mod:`.prefix_cache`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..metrics import dice_from_sums, soft_dice_sums
from ..peft import UnitRegistry
from .distributed import DistContext
from .prefix_cache import PrefixCache


class Auditor:
    """Measures Dice of unit sets on the fixed audit patches ``(N, 1, *patch)``.

    Under ``torch.distributed`` each rank evaluates every ``world_size``-th patch and the soft-Dice sums
    are added over ranks, so every rank gets the Dice of the whole audit set (the same number a single
    process computes, up to the order of floating-point additions).
    """

    def __init__(self, registry: UnitRegistry, images: torch.Tensor, labels: torch.Tensor, n_classes: int,
                 device: torch.device | str = "cpu", batch: int = 2, ctx: DistContext = DistContext()):
        self.registry = registry
        self.images = images[ctx.rank::ctx.world_size]
        self.labels = labels[ctx.rank::ctx.world_size]
        self.n_classes = n_classes
        self.device = torch.device(device)
        self.batch = batch
        self.ctx = ctx
        self.evaluations = 0
        self._cache: PrefixCache | None = None

    def dice(self, names: Iterable[str]) -> float:
        """Soft Dice of the network with exactly ``names`` on (gates restored afterwards)."""
        names = frozenset(names)
        return self.toggle_dice(names, {})[names]

    def audit(self, selected: Iterable[str], on: Iterable[str]) -> tuple[float, dict[str, float]]:
        """Baseline Dice of ``on`` and ``{unit: delta}`` for every unit in ``selected``."""
        on_set = frozenset(on)
        plan: dict[str, tuple[frozenset, frozenset]] = {}  # unit -> (with, without): the sets its delta compares
        for name in selected:
            if name in on_set:
                plan[name] = (on_set, on_set - {name})
            else:
                group = self.registry.unit(name).group
                rest = frozenset(n for n in on_set if self.registry.unit(n).group != group)
                plan[name] = (rest | {name}, rest)
        toggles = {s: self.registry.unit(n).site for n, pair in plan.items() for s in pair if s != on_set}
        dice = self.toggle_dice(on_set, toggles)
        return dice[on_set], {n: dice[a] - dice[b] for n, (a, b) in plan.items()}

    def toggle_dice(self, baseline: frozenset, toggles: dict[frozenset, str]) -> dict[frozenset, float]:
        """Soft Dice of the ``baseline`` set and of every toggled set (``{set: the site, i.e. the host, where it differs}``)."""
        sums = self._sums(baseline, toggles)
        self.evaluations += len(sums)
        return {s: dice_from_sums(self.ctx.all_reduce_sum(v)) for s, v in sums.items()}

    @torch.no_grad()
    def _sums(self, baseline: frozenset, toggles: dict[frozenset, str]) -> dict[frozenset, torch.Tensor]:
        """Soft-Dice sums ``(3, K - 1)`` of the baseline set and of every toggled set, batch by batch."""
        network = self.registry.network
        if self._cache is None:
            self._cache = PrefixCache(network)
        was_training = network.training
        network.eval()
        sums = {s: torch.zeros(3, self.n_classes - 1, dtype=torch.float64) for s in [baseline, *toggles]}
        try:
            for i in range(0, len(self.images), self.batch):
                images = self.images[i:i + self.batch].to(self.device)
                labels = self.labels[i:i + self.batch]
                with self.registry.gates(baseline):
                    logits = self._cache.record(images, set(toggles.values())) if toggles else network(images)
                sums[baseline] += soft_dice_sums(logits.float().cpu(), labels)
                for names, site in toggles.items():
                    with self.registry.gates(names):
                        logits = self._cache.toggled(images, site)
                    sums[names] += soft_dice_sums(logits.float().cpu(), labels)
        finally:
            network.train(was_training)
        return sums
