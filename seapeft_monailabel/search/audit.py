"""The audit: on/off toggling of single units on a fixed set of foreground patches.

For a unit that is on, ``delta = Dice(S) - Dice(S without u)``; for a trained unit that is off,
``delta = Dice(S' with u) - Dice(S')`` where ``S'`` is the current set without u's group (so a larger
level is measured in place of the smaller one, not stacked on it). The baseline ``Dice(S)`` is
measured at the start of every audit, on the gates as they are then, and every toggle restores the
gates exactly, so no measurement sees another unit's toggle (reference defects 3 and 4). Dice is the
soft Dice of the foreground classes (:func:`~seapeft_monailabel.evaluate.soft_dice`), in eval mode.
Utility sample = ``delta / cost`` (Dice per parameter); the raw delta is kept too.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..evaluate import soft_dice
from ..peft import UnitRegistry


class Auditor:
    """Measures Dice of unit sets on the fixed audit patches ``(N, 1, *patch)``."""

    def __init__(self, registry: UnitRegistry, images: torch.Tensor, labels: torch.Tensor,
                 device: torch.device | str = "cpu", batch: int = 2):
        self.registry = registry
        self.images = images
        self.labels = labels
        self.device = torch.device(device)
        self.batch = batch
        self.evaluations = 0

    @torch.no_grad()
    def dice(self, names: Iterable[str]) -> float:
        """Soft Dice of the network with exactly ``names`` on (gates restored afterwards)."""
        network = self.registry.network
        was_training = network.training
        network.eval()
        try:
            with self.registry.gates(names):
                logits = torch.cat([network(self.images[i:i + self.batch].to(self.device)).float().cpu()
                                    for i in range(0, len(self.images), self.batch)])
        finally:
            network.train(was_training)
        self.evaluations += 1
        return soft_dice(logits, self.labels)

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
