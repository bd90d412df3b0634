"""SALT: singular-value scale and shift plus a low-rank update in the residual subspace (*SALT: Singular
Value Adaptation with Low-Rank Transformation*; docs/DESIGN.md).

The frozen weight, in the site's matrix view ``W = U diag(s) V^T`` (thin SVD, ``k = min(rows, cols)``),
is split at ``r`` = the top 10 % of the spectrum (at least 1). The adapted weight is

``W' = U_r diag(relu(alpha * s_r + beta)) V_r^T + U_res (diag(s_res) + X Y) V_res^T``

with trainable ``alpha, beta: (r,)`` and ``X: (k - r, rL)``, ``Y: (rL, k - r)``. The ReLU acts on the
top-``r`` diagonal only (the reference applied it to the whole matrix, zeroing negative entries of
``XY``). The unit is applied as the delta ``W' - W``:

``dW = U_r diag(relu(alpha*s_r + beta) - s_r) V_r^T + U_res (X Y) V_res^T``

which is exactly zero at creation (``alpha = 1``, ``beta = 0``, ``Y = 0``). Level ``r{rL}``.
Cost: ``2 r + 2 rL (k - r)``. The SVD factors are buffers derived from the base weight on first use, not saved.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import WeightDeltaUnit
from .site import SiteGeometry

TOP_FRACTION = 0.1


class SALTUnit(WeightDeltaUnit):
    """Singular-value scale/shift (top 10 %) plus a residual-subspace LoRA of rank ``rL``."""

    family = "salt"
    level_pattern = r"r(\d+)"

    def __init__(self, geometry: SiteGeometry, level: str, base_module: nn.Module):
        super().__init__(geometry, level)
        k = min(geometry.matrix_shape)
        top = max(1, math.ceil(TOP_FRACTION * k))
        residual_rank = self.level_value
        if top >= k or not 0 < residual_rank <= k - top:
            raise ValueError(f"{geometry.path}: SALT needs 1 <= rL <= k - r = {k - top} (got rL={residual_rank})")
        # a plain reference (object.__setattr__ keeps nn.Module from registering it as this unit's parameter)
        object.__setattr__(self, "_base_weight", base_module.weight)
        for key in ("u", "s", "vh"):
            self.register_buffer(key, None, persistent=False)
        self.top = top
        self.alpha = nn.Parameter(torch.empty(top))
        self.beta = nn.Parameter(torch.empty(top))
        self.x = nn.Parameter(torch.empty(k - top, residual_rank))
        self.y = nn.Parameter(torch.empty(residual_rank, k - top))
        self.reset_parameters()

    @torch.no_grad()
    def _decompose(self) -> None:
        """Thin SVD of the frozen weight, taken on first use (most units of a library are never switched on)."""
        matrix = self._base_weight.detach().reshape(self.geometry.matrix_shape)
        u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
        self.u, self.s, self.vh = (t.to(matrix.dtype) for t in (u, s, vh))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.alpha)
        nn.init.zeros_(self.beta)
        nn.init.kaiming_uniform_(self.x, a=5 ** 0.5)
        nn.init.zeros_(self.y)

    def delta_matrix(self) -> torch.Tensor:
        """``(rows, cols)`` delta ``W' - W``."""
        if self.u is None:
            self._decompose()
        r = self.top
        s_top = self.s[:r]
        top = (self.u[:, :r] * (torch.relu(self.alpha * s_top + self.beta) - s_top)) @ self.vh[:r]
        residual = self.u[:, r:] @ (self.x @ self.y) @ self.vh[r:]
        return top + residual
