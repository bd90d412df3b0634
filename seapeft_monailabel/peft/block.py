"""Block tuning: unfreeze a whole named block (the decoder-only baseline of PEFT-MedSAM; docs/DESIGN.md).

The unit's tensors are the block's own parameters (not those of other units injected inside it).
The gate keeps the block's pretrained values aside: switching the unit off restores them (and keeps
the trained values for when it comes back on), so the gate never changes anything else and a
fresh unit has no effect. Cost: the block's parameter count. Level ``full``.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import PeftUnit
from .site import SiteGeometry

UNIT_CONTAINER = "peft_units"


class BlockUnit(PeftUnit):
    """Trains the block's own parameters; level ``full``."""

    family = "block"
    kind = "block"
    level_pattern = r"full"
    site_kinds = ("linear", "conv", "conv_transpose", "norm", "container")
    mergeable = True

    def __init__(self, geometry: SiteGeometry, level: str, base_module: nn.Module):
        super().__init__(geometry, level)
        self._names = [n for n, _ in base_module.named_parameters() if UNIT_CONTAINER not in n.split(".")]
        self._params = [p for n, p in base_module.named_parameters() if UNIT_CONTAINER not in n.split(".")]
        if not self._params:
            raise ValueError(f"{geometry.path}: block tuning needs a module with parameters")
        for i, p in enumerate(self._params):
            self.register_buffer(f"pretrained_{i}", p.detach().clone(), persistent=False)
            self.register_buffer(f"trained_{i}", p.detach().clone(), persistent=False)

    def trainable_parameters(self) -> list[torch.Tensor]:
        return list(self._params)

    def _pair(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"pretrained_{i}"), getattr(self, f"trained_{i}")

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for i, p in enumerate(self._params):
            pretrained, trained = self._pair(i)
            trained.copy_(pretrained)
            if self.enabled:
                p.copy_(pretrained)

    @torch.no_grad()
    def _set_gate(self, on: bool) -> None:
        for i, p in enumerate(self._params):
            pretrained, trained = self._pair(i)
            if on:
                p.copy_(trained)
            else:
                trained.copy_(p)
                p.copy_(pretrained)
            p.requires_grad_(on)

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The block's trained values, keyed by parameter name inside the block."""
        current = self._params if self.enabled else [self._pair(i)[1] for i in range(len(self._params))]
        return {n: t.detach().clone() for n, t in zip(self._names, current)}

    @torch.no_grad()
    def load_adapter_state(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self._names):
            raise KeyError(f"{self.name}: adapter state keys differ from the block's parameters")
        for i, (n, p) in enumerate(zip(self._names, self._params)):
            self._pair(i)[1].copy_(state[n])
            if self.enabled:
                p.copy_(state[n])

    @torch.no_grad()
    def warm_start_from(self, smaller: PeftUnit) -> None:
        raise ValueError(f"{self.name}: block tuning has a single level; nothing to warm-start from {smaller.name}")
