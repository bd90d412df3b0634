"""Running the episode data-parallel under ``torch.distributed`` (launched with ``torchrun``).

Every rank trains on its own patches; gradients are averaged by ``DistributedDataParallel`` over the
parameters that are trainable at the time (it is rebuilt whenever the gates change, since DDP fixes its
parameter set when it is built); audits split the audit patches across ranks and add up the soft-Dice
sums, so every rank measures the same Dice; the decision objects run on rank 0 and their decisions are
broadcast, so every rank holds the same gates; only rank 0 writes. Without ``torch.distributed`` (one
process, no ``WORLD_SIZE`` in the environment) every call here is a no-op and the episode runs as is.

Backend: NCCL when the device is CUDA, Gloo otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (any picklable object)."""
        if not self.active:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks (in place, also returned)."""
        if self.active:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def average_gradients(self, params) -> None:
        """Replace each gradient by its mean over ranks (for one-off backward passes outside DDP)."""
        if not self.active:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat /= self.world_size
            offset = 0
            for g in grads:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Returns a one-process context when ``WORLD_SIZE`` is absent or 1. On CUDA each rank uses the GPU
    ``LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return DistContext(dist.get_rank(), dist.get_world_size())
