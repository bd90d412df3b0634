"""Pointwise LoRA: a low-rank delta on the centre tap of a convolution's kernel only.

A convolution's matrix view ``(rows, cols)`` (see :mod:`.site`) holds ``cols = C * K`` columns:
``C`` channels times ``K`` kernel taps (``K = k^3``). Pointwise LoRA factorises only the channel
mixing, ``B: (rows, r)`` zero and ``A: (r, C)`` kaiming-uniform, and puts ``B @ A`` on the kernel's
centre tap; every other tap is left alone. It is the same as a rank-``r`` 1x1x1 convolution run
beside the layer (with the layer's stride), folded into the kernel, so it merges exactly.

Cost ``r * (rows + C)`` against LoRA's ``r * (rows + C K)``: 27 times fewer parameters on the ``A``
side of a 3x3x3 kernel. On the UNet's 128-channel bottom convolution rank 1 costs 256 parameters
where LoRA of rank 1 costs 3,584, so a budget of a few thousand parameters can reach every level of
the network. Level ``r{rank}``. Odd kernels only (a centre tap must exist); on a 1x1x1 kernel it is
plain LoRA.
"""

from __future__ import annotations

from math import prod

import torch

from .lora import LoRAUnit
from .site import SiteGeometry


class PointwiseLoRAUnit(LoRAUnit):
    """Low-rank channel-mixing delta on the kernel's centre tap; level ``r{rank}``."""

    family = "pwlora"
    site_kinds = ("conv", "conv_transpose")

    def __init__(self, geometry: SiteGeometry, level: str):
        kernel = geometry.weight_shape[2:]
        if any(k % 2 == 0 for k in kernel):
            raise ValueError(f"{geometry.path}: pointwise LoRA needs an odd kernel (got {kernel})")
        self.taps = prod(kernel)
        super().__init__(geometry, level)

    def low_rank_shape(self) -> tuple[int, int, int]:
        """``(rows, channels, rank)``: the factor ``A`` spans channels, not channels x taps."""
        rows, cols = self.geometry.matrix_shape
        channels = cols // self.taps
        rank = self.level_value
        if not 0 < rank <= min(rows, channels):
            raise ValueError(f"{self.geometry.path}: {self.family} rank {rank} must be in 1..{min(rows, channels)}")
        return rows, channels, rank

    def delta_matrix(self) -> torch.Tensor:
        """``(rows, cols)`` delta: ``B @ A`` on the centre tap of every channel, zero elsewhere."""
        mixing = self.lora_B @ self.lora_A                                   # (rows, channels)
        delta = mixing.new_zeros(mixing.shape + (self.taps,))                # (rows, channels, taps)
        delta[..., self.taps // 2] = mixing
        return delta.flatten(1)
