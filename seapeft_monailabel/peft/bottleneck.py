"""Shared bottleneck MLP of the adapter families: ``up(act(down(x)))`` with ``up`` zero-initialised.

``down: in -> b`` (kaiming-uniform weight, zero bias), ``up: b -> out`` (zero weight and bias), so the
branch outputs exactly zero at creation. Works on token layouts ``(B, ..., C)`` and, by moving the
channel axis last, on volumes ``(B, C, D, H, W)``. Cost ``b*in + b + out*b + out``. Level ``b{b}``.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import PeftUnit
from .site import SiteGeometry


class BottleneckUnit(PeftUnit):
    """Base of :class:`AdaptFormerUnit` and :class:`AdapterUnit`; subclasses choose where it acts."""

    level_pattern = r"b(\d+)"
    site_kinds = ("linear", "container", "norm", "conv")
    scale: float = 1.0

    def __init__(self, geometry: SiteGeometry, level: str, in_features: int, out_features: int):
        super().__init__(geometry, level)
        width = self.level_value
        if width < 1:
            raise ValueError(f"{geometry.path}: bottleneck width must be >= 1 (got {level})")
        self.down = nn.Linear(in_features, width)
        self.up = nn.Linear(width, out_features)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.down.weight, a=5 ** 0.5)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """``scale * up(act(down(x)))`` on the channel axis of ``x``; same layout out."""
        if self.geometry.channel_dim == 1:
            x = x.movedim(1, -1)
        out = self.up(torch.relu(self.down(x))) * self.scale
        return out.movedim(-1, 1) if self.geometry.channel_dim == 1 else out
