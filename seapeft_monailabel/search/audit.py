"""The audit: on/off toggling of single units on a fixed set of foreground patches.

For a unit that is on, ``delta = Dice(S) - Dice(S without u)``; for a trained unit that is off,
``delta = Dice(S' with u) - Dice(S')`` where ``S'`` is the current set without u's group (so a larger
level is measured in place of the smaller one, not stacked on it). The baseline ``Dice(S)`` is
measured at the start of every audit, on the gates as they are then, and every toggle restores the
gates exactly, so no measurement sees another unit's toggle (reference defects 3 and 4). Dice is the
soft Dice of the foreground classes (:func:`~seapeft_monailabel.metrics.soft_dice`), in eval mode.
Utility sample = ``delta / cost`` (Dice per parameter); the raw delta is kept too.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..metrics import dice_from_sums, soft_dice_sums
from ..peft import UnitRegistry
from .distributed import DistContext


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

    @torch.no_grad()
    def dice(self, names: Iterable[str]) -> float:
        """Soft Dice of the network with exactly ``names`` on (gates restored afterwards)."""
        network = self.registry.network
        was_training = network.training
        network.eval()
        sums = torch.zeros(3, self.n_classes - 1, dtype=torch.float64)
        try:
            with self.registry.gates(names):
                for i in range(0, len(self.images), self.batch):
                    logits = network(self.images[i:i + self.batch].to(self.device)).float().cpu()
                    sums += soft_dice_sums(logits, self.labels[i:i + self.batch])
        finally:
            network.train(was_training)
        self.evaluations += 1
        return dice_from_sums(self.ctx.all_reduce_sum(sums))

    def audit(self, selected: Iterable[str], on: Iterable[str]) -> tuple[float, dict[str, float]]:
        """Baseline Dice of ``on`` and ``{unit: delta}`` for every unit in ``selected``."""
        on_set = set(on)
        baseline = self.dice(on_set)
        deltas = {}
        for name in selected:
            if name in on_set:
                deltas[name] = baseline - self.dice(on_set - {name})
                continue
            group = self.registry.unit(name).group
            rest = {n for n in on_set if self.registry.unit(n).group != group}
            reference = baseline if rest == on_set else self.dice(rest)
            deltas[name] = self.dice(rest | {name}) - reference
        return baseline, deltas
