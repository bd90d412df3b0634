"""Intensity curve: a learned per-channel piecewise-linear map on a module's *input*.

``x <- x + c + sum_j a_j relu(x - t_j)`` for every input channel, with ``k`` fixed knots
``t_j = j / k`` (``j = 0 .. k-1``) spread over ``[0, 1]``, the range the project's transform maps
every image to (its 0.5th..99.5th percentiles). Slopes ``a`` ``(C, k)`` and offset ``c`` ``(C,)`` are
trained and zero at creation, so a fresh unit is the identity. Cost ``C (k + 1)``. Level ``k{knots}``,
a power of two, so the knots of a smaller level are knots of every larger one and a larger level
warm-starts with exactly the curve the smaller one learnt.

It sits on the block that first sees the image. A new site's contrast (MR where the base model saw
CT: another ordering of the tissues) is first a question of which intensity means which tissue. A
curve re-maps it before any filter sees it, like a learnt, non-monotone window; a convolution alone
can only scale intensities linearly. Not mergeable (it is non-linear); serving runs it as it is.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import PeftUnit
from .site import SiteGeometry, channel_view


class IntensityCurveUnit(PeftUnit):
    """Piecewise-linear curve on each input channel; level ``k{knots}``."""

    family = "curve"
    kind = "input"
    level_pattern = r"k(\d+)"
    site_kinds = ("conv", "container")

    def __init__(self, geometry: SiteGeometry, level: str):
        super().__init__(geometry, level)
        if geometry.channel_dim != 1:
            raise ValueError(f"{geometry.path}: an intensity curve needs a volume input (B, C, D, H, W), not tokens")
        knots = self.level_value
        if knots < 1 or knots & (knots - 1):
            raise ValueError(f"{geometry.path}: curve knots must be a power of two (got {level})")
        self.register_buffer("knots", torch.arange(knots, dtype=torch.float32) / knots, persistent=False)
        self.slopes = nn.Parameter(torch.empty(geometry.in_features, knots))
        self.offset = nn.Parameter(torch.empty(geometry.in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.slopes)
        nn.init.zeros_(self.offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: the site's input ``(B, C, D, H, W)``; same shape out."""
        hinge = torch.relu(x.unsqueeze(-1) - self.knots)                 # (B, C, D, H, W, k)
        slopes = self.slopes.view((1, -1) + (1,) * (x.dim() - 2) + (self.slopes.shape[1],))
        return x + channel_view(self.offset, 1, x.dim()) + (hinge * slopes).sum(-1)

    @torch.no_grad()
    def warm_start_from(self, smaller: PeftUnit) -> None:
        """Knot ``j`` of ``k`` knots is knot ``j * K / k`` of ``K``: copy the slopes there (exact)."""
        if smaller.group != self.group:
            raise ValueError(f"cannot warm-start {self.name} from {smaller.name}: different groups")
        if smaller.slopes.shape[1] > self.slopes.shape[1]:
            raise ValueError(f"cannot warm-start {self.name} from the larger level {smaller.name}")
        self.reset_parameters()
        step = self.slopes.shape[1] // smaller.slopes.shape[1]
        self.slopes[:, ::step] = smaller.slopes
        self.offset.copy_(smaller.offset)
