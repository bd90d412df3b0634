"""AdaptFormer: a bottleneck branch parallel to a module, ``y = f(x) + s * up(relu(down(x)))``, s = 0.1.

On a Swin block's ``mlp`` (whose input is ``norm2(x)``) this is AdaptFormer's parallel MLP adapter.
Not mergeable (it has a nonlinearity). See :mod:`.bottleneck` for init and cost.
"""

from __future__ import annotations

import torch

from .bottleneck import BottleneckUnit
from .site import SiteGeometry


class AdaptFormerUnit(BottleneckUnit):
    """Parallel bottleneck on the module input; level ``b{width}``."""

    family = "adaptformer"
    kind = "parallel"
    scale = 0.1

    def __init__(self, geometry: SiteGeometry, level: str):
        super().__init__(geometry, level, geometry.in_features, geometry.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: the site's input; returns the branch added to the site's output (same shape)."""
        return self.branch(x)
