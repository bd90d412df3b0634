"""Shared pytest set-up: CPU threads, quiet logs, and small real networks for the PEFT tests."""

from __future__ import annotations

import os

os.environ.setdefault("MONAI_LABEL_TRACKING_ENABLED", "false")

import pytest
import torch
from torch import nn

torch.set_num_threads(min(2, os.cpu_count() or 1))


class ToyNet(nn.Module):
    """A small network with every kind of site a unit family can sit on.

    Input ``(B, 2, 4, 4, 4)``: Conv3d -> InstanceNorm3d -> ConvTranspose3d (to 8^3) -> channels last
    -> residual ``mlp(norm(x))`` (LayerNorm + Linear-GELU-Linear container) -> Linear -> head Linear.
    Output ``(B, 8, 8, 8, 2)``.
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(2, 4, 3, padding=1, bias=False)
        self.norm = nn.InstanceNorm3d(4)
        self.up = nn.ConvTranspose3d(4, 6, 2, stride=2)
        self.ln = nn.LayerNorm(6)
        self.mlp = nn.Sequential(nn.Linear(6, 12), nn.GELU(), nn.Linear(12, 6))
        self.lin = nn.Linear(6, 6)
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up(self.norm(self.conv(x))).movedim(1, -1)
        x = x + self.mlp(self.ln(x))
        return self.head(self.lin(x))


@pytest.fixture
def toy_net():
    """Build a seeded :class:`ToyNet` (the same weights every call)."""

    def build(seed: int = 0) -> ToyNet:
        torch.manual_seed(seed)
        return ToyNet().eval()

    return build
