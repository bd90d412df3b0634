"""One optimiser over the head and every unit of the library, trained through the registry's gates.

Units that are off have no gradient, so AdamW leaves them (and their moments) alone. When a unit
turns on, its optimiser state is dropped: a unit coming back starts with fresh moments instead of
stale ones from a different active set (reference defect 10). Every unit follows the same learning
rate schedule whenever it was switched on: a linear warm-up over the first steps of the run, constant
during the search, cosine decay during the refine stage.

Two rates on that schedule: block units (pretrained weights trained in place: full fine-tuning,
decoder tuning) train at ``lr``; the head (whose rows for new labels start untrained) and the units
that add new parameters at zero effect (LoRA, SALT, SSF, BitFit, AdaLoRA, AdaptFormer, Adapter) at
``lr * adapter_lr_scale``, in every method alike. Adam moves every parameter by about the learning rate
per step whatever its gradient, so a unit of a few hundred parameters starting from zero must take
larger steps than a network-wide fine-tune to change the function as much in the same number of
steps; training new layers and LoRA-style units at several times the fine-tuning rate of pretrained
weights is the usual practice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from monai.losses import DiceCELoss

from torch.nn.parallel import DistributedDataParallel

from ..peft import UnitRegistry
from .distributed import DistContext


class UnitTrainer:
    """Trains what the registry says is trainable.

    Args:
        registry: the network's units (gates decide what trains).
        lr: base learning rate (AdamW, weight decay ``weight_decay``) of block units.
        adapter_lr_scale: factor on ``lr`` for the head and every other unit (see the module docstring).
        warmup_steps: steps of linear warm-up from ``lr / 20``.
        orthogonality_weight: weight of the units' regularisers (AdaLoRA's orthogonality penalty).
        device: where the network lives.
        bf16: autocast the forward pass to bfloat16.
        ctx: under ``torch.distributed``, steps go through ``DistributedDataParallel`` over the parameters
            trainable at the time (rebuilt when the gates change: DDP fixes its parameter set when built).
    """

    def __init__(self, registry: UnitRegistry, lr: float, warmup_steps: int = 0, weight_decay: float = 0.0,
                 orthogonality_weight: float = 0.1, device: torch.device | str = "cpu", bf16: bool = False,
                 ctx: DistContext = DistContext(), adapter_lr_scale: float = 1.0):
        if adapter_lr_scale <= 0:
            raise ValueError(f"adapter_lr_scale must be > 0 (got {adapter_lr_scale})")
        self.registry = registry
        self.ctx = ctx
        self._ddp: tuple[tuple[str, ...], DistributedDataParallel] | None = None
        self.device = torch.device(device)
        self.bf16 = bf16
        self.base_lr = lr
        self.warmup_steps = warmup_steps
        self.orthogonality_weight = orthogonality_weight
        self.adapter_lr_scale = adapter_lr_scale
        scales = {id(p): (p, adapter_lr_scale) for p in registry.head_parameters()}
        for unit in registry:
            scale = self.lr_scale(unit)
            scales.update({id(p): (p, scale) for p in unit.trainable_parameters()})
        groups: dict[float, list[torch.Tensor]] = {}
        for p, scale in scales.values():
            groups.setdefault(scale, []).append(p)
        self.optimizer = torch.optim.AdamW([{"params": ps, "scale": scale} for scale, ps in groups.items()],
                                           lr=lr, weight_decay=weight_decay)
        self.loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
        self.step_count = 0
        self._decay: tuple[int, int] | None = None
        self.after_backward: list = []  # callables(step) run while the gradients exist (AdaLoRA's importance)

    def lr_scale(self, unit) -> float:
        """Factor on the base learning rate for ``unit``: 1 for block units, ``adapter_lr_scale`` otherwise."""
        return 1.0 if unit.kind == "block" else self.adapter_lr_scale

    def forget(self, names: Iterable[str]) -> None:
        """Drop the optimiser state of the named units (call when they turn on)."""
        for name in names:
            for p in self.registry.unit(name).trainable_parameters():
                self.optimizer.state.pop(p, None)

    def start_decay(self, steps: int) -> None:
        """From now on, decay the learning rate to zero over ``steps`` steps (cosine)."""
        self._decay = (self.step_count, max(1, steps))

    def current_lr(self) -> float:
        if self._decay is not None:
            start, length = self._decay
            progress = min(1.0, (self.step_count - start) / length)
            return self.base_lr * 0.5 * (1 + math.cos(math.pi * progress))
        if self.step_count < self.warmup_steps:
            return self.base_lr * (0.05 + 0.95 * self.step_count / self.warmup_steps)
        return self.base_lr

    def _model(self) -> torch.nn.Module:
        """The network, or its DDP wrapper over what is trainable now."""
        if not self.ctx.active:
            return self.registry.network
        key = tuple(self.registry.enabled_names())
        if self._ddp is None or self._ddp[0] != key:
            ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
                if self.device.type == "cuda" else None
            self._ddp = (key, DistributedDataParallel(self.registry.network, device_ids=ids))
        return self._ddp[1]

    def step(self, image: torch.Tensor, label: torch.Tensor) -> float:
        """One optimiser step on a batch ``(P, 1, *patch)``; returns the (local) loss."""
        network = self._model()
        network.train()
        lr = self.current_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["scale"]
        image, label = image.to(self.device), label.to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = network(image)
        loss = self.loss_fn(logits.float(), label)
        penalty = self.registry.regularization()
        total = loss if penalty is None else loss + self.orthogonality_weight * penalty
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        for hook in self.after_backward:
            hook(self.step_count)
        self.optimizer.step()
        self.step_count += 1
        return float(loss.detach())
