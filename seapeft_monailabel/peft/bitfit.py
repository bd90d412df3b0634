"""BitFit: a trainable delta on the bias of a Linear, Conv3d or ConvTranspose3d.

Where the layer has no bias (every convolution of SwinUNETR's CNN path) the delta acts as a new
bias, and merging creates one. Zero at creation. Cost: ``out_features``. A bias on a layer whose output
goes straight into an InstanceNorm is subtracted again by the norm; :mod:`.effect` keeps such units out
of a library.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import WeightDeltaUnit
from .site import SiteGeometry


class BitFitUnit(WeightDeltaUnit):
    """Bias delta ``(out_features,)``; the only level is ``full``."""

    family = "bitfit"
    level_pattern = r"full"
    channel_effects = ("shift",)

    def __init__(self, geometry: SiteGeometry, level: str = "full"):
        super().__init__(geometry, level)
        self.bias_delta = nn.Parameter(torch.zeros(geometry.out_features))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.bias_delta)

    def delta_bias(self) -> torch.Tensor:
        return self.bias_delta
