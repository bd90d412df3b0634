"""AdaLoRA-style SVD unit (as in AdaLoRA-QAT; docs/DESIGN.md): ``dW = P diag(lambda) Q`` with an importance-driven rank mask.

In the site's matrix view ``(rows, cols)``: ``P: (rows, r)`` and ``Q: (r, cols)`` start N(0, 0.02^2),
``lambda: (r,)`` starts at zero (so a fresh unit has no effect); the buffer ``rank_mask: (r,)`` records
which triplets ``(P[:, i], lambda[i], Q[i, :])`` the last allocation kept. Level ``r{initial rank}``.

Pruning is AdaLoRA's: a pruned triplet's singular value is **set to zero in place**, never multiplied
by the mask in the forward pass. So the triplet keeps its gradient (``dL/dlambda_i = P[:, i]^T G Q[i, :]^T``
with ``G = dL/dW``, non-zero while P and Q are), the optimiser step that follows the masking moves
``lambda_i`` off zero again, and the next allocation judges it on what it then contributes: a pruned
triplet can come back.

Importance (as AdaLoRA): after each backward, for every element ``w`` of P, lambda and Q,
``I = |w * grad|``, smoothed ``Ibar <- b1 Ibar + (1 - b1) I`` and uncertainty
``Ubar <- b2 Ubar + (1 - b2) |I - Ibar|``; element score ``Ibar * Ubar``; triplet score
``s(lambda_i) + mean_j s(Q_ij) + mean_j s(P_ji)``. :func:`allocate_ranks` pools the triplet scores of
many units and keeps the best ``budget`` triplets; :mod:`.adalora_allocator` runs importance and masking
on AdaLoRA's budget schedule during training.

The orthogonality penalty ``||P^T P - I||_F + ||Q Q^T - I||_F`` is returned by
:meth:`regularization`; the trainer adds ``weight * penalty`` to the loss (MONAI networks return a
tensor, so nothing adds it for you).

Cost: ``r * (rows + cols + 1)`` (pruned triplets still train, as in AdaLoRA, and can come back).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .base import WeightDeltaUnit
from .site import SiteGeometry


class AdaLoRAUnit(WeightDeltaUnit):
    """SVD-form adaptive-rank delta; level ``r{initial rank}``."""

    family = "adalora"
    level_pattern = r"r(\d+)"

    def __init__(self, geometry: SiteGeometry, level: str):
        super().__init__(geometry, level)
        rows, cols, rank = self.low_rank_shape()
        self.lora_P = nn.Parameter(torch.empty(rows, rank))
        self.lora_E = nn.Parameter(torch.empty(rank))
        self.lora_Q = nn.Parameter(torch.empty(rank, cols))
        self.register_buffer("rank_mask", torch.ones(rank))
        self._importance: dict[str, torch.Tensor] = {}
        self._uncertainty: dict[str, torch.Tensor] = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.lora_P, std=0.02)
        nn.init.zeros_(self.lora_E)
        nn.init.normal_(self.lora_Q, std=0.02)
        self.rank_mask.fill_(1.0)
        self._importance.clear()
        self._uncertainty.clear()

    def delta_matrix(self) -> torch.Tensor:
        """``(rows, cols)`` delta ``P diag(lambda) Q`` (pruned singular values are zero, see the module docstring)."""
        return (self.lora_P * self.lora_E) @ self.lora_Q

    def regularization(self) -> torch.Tensor:
        """Orthogonality penalty ``||P^T P - I||_F + ||Q Q^T - I||_F`` (a scalar)."""
        eye = torch.eye(self.level_value, device=self.lora_P.device, dtype=self.lora_P.dtype)
        return torch.linalg.norm(self.lora_P.T @ self.lora_P - eye) + torch.linalg.norm(self.lora_Q @ self.lora_Q.T - eye)

    @property
    def effective_rank(self) -> int:
        """Number of triplets the mask keeps."""
        return int(self.rank_mask.sum().item())

    @torch.no_grad()
    def update_importance(self, beta1: float = 0.85, beta2: float = 0.85) -> None:
        """Fold the current gradients into the smoothed sensitivity and its uncertainty (call after backward)."""
        for key, param in (("P", self.lora_P), ("E", self.lora_E), ("Q", self.lora_Q)):
            if param.grad is None:
                continue
            sensitivity = (param * param.grad).abs()
            if key not in self._importance:
                self._importance[key] = torch.zeros_like(sensitivity)
                self._uncertainty[key] = torch.zeros_like(sensitivity)
            ibar = self._importance[key].mul_(beta1).add_(sensitivity, alpha=1 - beta1)
            self._uncertainty[key].mul_(beta2).add_((sensitivity - ibar).abs(), alpha=1 - beta2)

    @torch.no_grad()
    def triplet_scores(self) -> torch.Tensor:
        """Score of each triplet ``(r,)``; zeros before any importance update."""
        if "E" not in self._importance:
            return torch.zeros_like(self.lora_E)
        score = {k: self._importance[k] * self._uncertainty[k] for k in self._importance}
        return score["E"] + score["Q"].mean(dim=1) + score["P"].mean(dim=0)

    @torch.no_grad()
    def set_rank_mask(self, keep: torch.Tensor) -> None:
        """Keep the triplets where ``keep`` (bool ``(r,)``) is true and zero the others' singular values in place."""
        self.rank_mask.copy_(keep.to(self.rank_mask.dtype))
        self.apply_rank_mask()

    @torch.no_grad()
    def apply_rank_mask(self) -> None:
        """Zero the singular values of the pruned triplets again (they train between allocations)."""
        self.lora_E.mul_(self.rank_mask)


def allocate_ranks(units: Iterable[AdaLoRAUnit], budget: int) -> dict[str, int]:
    """Keep the ``budget`` best-scoring triplets pooled over ``units`` (ties: the earlier triplet); returns
    the rank kept per unit."""
    units = list(units)
    if not units:
        return {}
    scores = [u.triplet_scores() for u in units]
    pooled = torch.cat(scores)
    keep = torch.zeros(pooled.numel(), dtype=torch.bool, device=pooled.device)
    order = torch.sort(pooled, descending=True, stable=True).indices
    keep[order[:max(0, budget)]] = True
    for unit, kept in zip(units, keep.split([s.numel() for s in scores])):
        unit.set_rank_mask(kept)
    return {u.name: u.effective_rank for u in units}


def budget_schedule(step: int, total_steps: int, initial: int, target: int, warmup: int = 0, final: int = 0) -> int:
    """AdaLoRA's cubic budget schedule: ``initial`` during warm-up, then cubic decay to ``target``."""
    if step <= warmup:
        return initial
    if step > total_steps - final:
        return target
    progress = (step - warmup) / max(1, total_steps - final - warmup)
    return int(target + (initial - target) * (1 - progress) ** 3)
