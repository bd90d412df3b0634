"""Serial bottleneck Adapter (Houlsby): ``y <- y + up(relu(down(y)))`` on a module's output.

On a Swin block's ``attn`` and ``mlp`` it is the classic adapter after attention and after the FFN,
before the residual add. Not mergeable. See :mod:`.bottleneck` for init and cost.
"""

from __future__ import annotations

import torch

from .bottleneck import BottleneckUnit
from .site import SiteGeometry


class AdapterUnit(BottleneckUnit):
    """Serial residual bottleneck on the module output; level ``b{width}``."""

    family = "adapter"
    kind = "serial"

    def __init__(self, geometry: SiteGeometry, level: str):
        super().__init__(geometry, level, geometry.out_features, geometry.out_features)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """``y``: the site's output; same shape out."""
        return y + self.branch(y)
