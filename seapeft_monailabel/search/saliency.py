"""The saliency prior: evidence for every unit before it has ever been trained.

All units are switched on at once (each is at zero effect, so the output is the base network's), one
backward pass over a few support batches gives every unit's gradient, and each unit scores the
first-order loss drop one SGD step of size ``lr`` would bring, per parameter:
``prior(u) = lr * ||grad_u||^2 / cost(u)``. Zero-initialised factors make a unit's output zero but not
its gradient (for LoRA, ``dL/dB = dL/dW A^T`` is non-zero), so every unit gets a non-zero prior
(reference defect 6: its untrained units measured exactly zero and could never be chosen). ``lr`` is
the unit's own learning rate (the trainer's rate times its per-family scale, see :mod:`.trainer`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from ..peft import PeftUnit, UnitRegistry
from .distributed import DistContext


def saliency_prior(registry: UnitRegistry, loss_fn, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                   lr: float, device: torch.device | str = "cpu", ctx: DistContext = DistContext(),
                   lr_scale: Callable[[PeftUnit], float] | None = None) -> dict[str, float]:
    """``{unit name: lr * scale(u) * ||grad||^2 / cost}`` from one accumulated backward pass over ``batches``.

    ``batches``: ``(image (P, 1, *patch), label (P, 1, *patch))`` pairs; ``lr_scale(unit)`` (default 1)
    is the unit's factor on ``lr``.

    The gates are restored afterwards and no weight changes. Under ``torch.distributed`` the gradients
    are averaged over ranks first, so every rank gets the same prior.
    """
    network = registry.network
    with registry.gates(list(registry.units)):
        network.zero_grad(set_to_none=True)
        network.train()
        for image, label in batches:
            loss = loss_fn(network(image.to(device)), label.to(device))
            loss.backward()
        ctx.average_gradients([p for u in registry.units.values() for p in u.trainable_parameters()])
        prior = {}
        for name, unit in registry.units.items():
            squared = sum(float(p.grad.pow(2).sum()) for p in unit.trainable_parameters() if p.grad is not None)
            scale = 1.0 if lr_scale is None else lr_scale(unit)
            prior[name] = lr * scale * squared / unit.cost
        network.zero_grad(set_to_none=True)
    return prior
