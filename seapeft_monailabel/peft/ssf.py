"""SSF: a per-channel scale and shift on a module's output, ``y <- gamma * y + beta``.

Sits on LayerNorms (token layout, channels last), on InstanceNorms of the CNN path (volume layout,
channels at dim 1: SwinUNETR's InstanceNorms have no affine, so this is where the CNN path gets a
cheap, real per-channel effect; a scale placed *before* an InstanceNorm would be normalised away),
and on Linear/Conv layers. ``gamma = 1``, ``beta = 0`` at creation. Cost ``2 C``.

It merges into the site: a Linear/Conv weight row-scales and its bias becomes ``gamma b + beta``;
a norm's affine becomes ``(gamma w, gamma b + beta)``, created when the norm had none.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import PeftUnit
from .site import SiteGeometry, channel_view


class SSFUnit(PeftUnit):
    """Scale-shift on the site output; level ``full``."""

    family = "ssf"
    kind = "serial"
    level_pattern = r"full"
    site_kinds = ("linear", "conv", "conv_transpose", "norm")
    mergeable = True
    channel_effects = ("scale", "shift")

    def __init__(self, geometry: SiteGeometry, level: str = "full"):
        super().__init__(geometry, level)
        self.scale = nn.Parameter(torch.empty(geometry.out_features))
        self.shift = nn.Parameter(torch.empty(geometry.out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.ones_(self.scale)
        nn.init.zeros_(self.shift)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """``y``: the site output, ``(B, ..., C)`` or ``(B, C, D, H, W)``; same shape out."""
        dim = self.geometry.channel_dim
        return y * channel_view(self.scale, dim, y.dim()) + channel_view(self.shift, dim, y.dim())

    @torch.no_grad()
    def merge_into(self, module: nn.Module) -> None:
        """Fold scale and shift into ``module`` (the site's own module)."""
        kind = self.geometry.kind
        if kind == "norm":
            weight = module.weight if getattr(module, "weight", None) is not None else torch.ones_like(self.scale)
            bias = module.bias if getattr(module, "bias", None) is not None else torch.zeros_like(self.shift)
            module.weight = nn.Parameter(weight * self.scale, requires_grad=False)
            module.bias = nn.Parameter(bias * self.scale + self.shift, requires_grad=False)
            if hasattr(module, "affine"):
                module.affine = True
            return
        view = (1, -1, 1, 1, 1) if kind == "conv_transpose" else (-1,) + (1,) * (module.weight.dim() - 1)
        module.weight.mul_(self.scale.view(view))
        bias = module.bias if module.bias is not None else torch.zeros_like(self.shift)
        module.bias = nn.Parameter(bias * self.scale + self.shift, requires_grad=False)
