"""LoRA: a low-rank delta on the weight of a Linear, Conv3d or ConvTranspose3d.

``dW = B @ A`` in the site's matrix view ``(rows, cols)`` (see :mod:`.site`), with
``A: (r, cols)`` kaiming-uniform and ``B: (rows, r)`` zero, so a fresh unit has no effect.
For a Conv3d this equals the usual conv-LoRA (``A`` a conv with the base kernel to ``r``
channels, ``B`` a 1x1x1 conv back), applied in weight space: one convolution per step.
The scale is 1 for every rank, so a rank change that pads the factors keeps the function.

Cost: ``r * (rows + cols)``; for Linear ``r * (in + out)``, for Conv3d ``r * (C_in*k^3 + C_out)``.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import WeightDeltaUnit
from .site import SiteGeometry


class LoRAUnit(WeightDeltaUnit):
    """Low-rank weight delta; level ``r{rank}``."""

    family = "lora"
    level_pattern = r"r(\d+)"

    def __init__(self, geometry: SiteGeometry, level: str):
        super().__init__(geometry, level)
        rows, cols, rank = self.low_rank_shape()
        self.lora_A = nn.Parameter(torch.empty(rank, cols))
        self.lora_B = nn.Parameter(torch.empty(rows, rank))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.lora_A, a=5 ** 0.5)
        nn.init.zeros_(self.lora_B)

    def delta_matrix(self) -> torch.Tensor:
        """``(rows, cols)`` delta ``B @ A``."""
        return self.lora_B @ self.lora_A
