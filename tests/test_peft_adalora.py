"""AdaLoRA as the paper has it: pruning zeroes singular values in place, pruned triplets keep training and can
come back, the best pooled triplets are kept, and the rank schedule runs on each unit's own clock."""

from __future__ import annotations

import pytest
import torch

from seapeft_monailabel.peft import UnitRegistry, manifest_from_dict
from seapeft_monailabel.peft.adalora import allocate_ranks
from seapeft_monailabel.peft.adalora_allocator import RankAllocator

LIN, CONV = "lin:adalora:r3", "conv:adalora:r3"


def _registry(net):
    manifest = manifest_from_dict({"name": "ada", "sites": [{"pattern": "lin|conv", "families": {"adalora": ["r3"]}}]})
    registry = UnitRegistry(net, manifest, ["head"])
    registry.enable_only([LIN, CONV])
    return registry


def _x(seed):
    return torch.randn(4, 2, 4, 4, 4, generator=torch.Generator().manual_seed(seed))


def _teacher_loss(registry, teacher, seed):
    x = _x(seed)
    with torch.no_grad():
        target = teacher(x)
    return (registry.network(x) - target).square().mean()


@torch.no_grad()
def _orthonormal(unit, seed=0):
    """P, Q with orthonormal columns / rows, so each triplet is an independent direction of dW."""
    gen = torch.Generator().manual_seed(seed)
    unit.lora_P.copy_(torch.linalg.qr(torch.randn(unit.lora_P.shape, generator=gen)).Q)
    unit.lora_Q.copy_(torch.linalg.qr(torch.randn(unit.lora_Q.T.shape, generator=gen)).Q.T)


def test_a_pruned_triplet_keeps_its_gradient_and_comes_back_when_it_matters(toy_net):
    registry = _registry(toy_net())
    unit = registry.unit(LIN)
    registry.enable_only([LIN])
    _orthonormal(unit)
    # the teacher's lin differs from the student's by triplet 0's direction only
    teacher = toy_net()
    with torch.no_grad():
        teacher.lin.weight += 0.5 * torch.outer(unit.lora_P[:, 0], unit.lora_Q[0])
    unit.set_rank_mask(torch.tensor([False, True, True]))  # as if an early allocation had pruned it
    assert unit.lora_E[0] == 0 and unit.effective_rank == 2

    _teacher_loss(registry, teacher, 0).backward()
    assert unit.lora_E.grad[0].abs() > 1e-4  # the pruned singular value still gets a gradient
    registry.network.zero_grad()

    optimizer = torch.optim.AdamW([unit.lora_P, unit.lora_E, unit.lora_Q], lr=1e-2, weight_decay=0.0)
    for step in range(1, 41):
        optimizer.zero_grad()
        _teacher_loss(registry, teacher, step).backward()
        unit.update_importance()
        if step % 5 == 0:  # budget 1: only the most important triplet stays
            allocate_ranks([unit], budget=1)
        optimizer.step()
    unit.apply_rank_mask()
    assert unit.rank_mask.tolist() == [1.0, 0.0, 0.0]  # the pruned triplet came back and is the one kept
    assert unit.lora_E[0].abs() > 0.1 and torch.all(unit.lora_E[1:] == 0)
    scores = unit.triplet_scores()
    assert scores[0] > scores[1:].max()


def test_allocation_keeps_the_best_pooled_triplets_and_zeroes_the_rest(toy_net):
    registry = _registry(toy_net())
    units = [registry.unit(LIN), registry.unit(CONV)]
    with torch.no_grad():
        for unit in units:
            unit.lora_E.normal_(generator=torch.Generator().manual_seed(7))
    for step in range(3):
        loss = registry.network(_x(step)).square().mean() + 0.1 * registry.regularization()
        loss.backward()
        for unit in units:
            unit.update_importance()
        registry.network.zero_grad()
    pooled = torch.cat([u.triplet_scores() for u in units])
    assert len(set(pooled.tolist())) == 6 and pooled.min() > 0  # distinct, real scores
    before = [u.lora_E.detach().clone() for u in units]
    ranks = allocate_ranks(units, budget=4)
    best = set(torch.topk(pooled, 4).indices.tolist())
    kept = torch.cat([u.rank_mask for u in units]).bool()
    assert set(torch.nonzero(kept).flatten().tolist()) == best and sum(ranks.values()) == 4
    for unit, old in zip(units, before):
        keep = unit.rank_mask.bool()
        assert torch.equal(unit.lora_E[keep], old[keep]) and torch.all(unit.lora_E[~keep] == 0)


def _train_steps(registry, allocator, steps, start):
    for step in range(start, start + steps):
        registry.network(_x(step)).square().mean().backward()
        allocator(step)
        registry.network.zero_grad()
        with torch.no_grad():  # a stand-in for the optimiser: pruned singular values move off zero again
            for unit in allocator.units:
                if unit.enabled:
                    unit.lora_E.add_(0.01)


def test_rank_schedule_runs_on_each_units_own_clock(toy_net):
    registry = _registry(toy_net())
    lin, conv = registry.unit(LIN), registry.unit(CONV)
    allocator = RankAllocator([lin, conv], total_steps=20, target_ratio=0.34, every=2)  # r3 -> r1
    assert (allocator.warmup, allocator.final) == (2, 4)
    registry.enable_only([LIN])
    _train_steps(registry, allocator, 20, start=0)
    assert lin.effective_rank == 1 and conv.effective_rank == 3 and conv.triplet_scores().abs().sum() == 0
    registry.enable_only([LIN, CONV])  # conv is switched on late: its schedule starts now, at its warm-up
    _train_steps(registry, allocator, 3, start=20)
    assert allocator.ages() == {LIN: 22, CONV: 2} and conv.effective_rank == 3
    _train_steps(registry, allocator, 20, start=23)
    assert conv.effective_rank == 1 and lin.effective_rank == 1
    allocator.finish()
    assert all(torch.count_nonzero(u.lora_E) == 1 for u in (lin, conv))
    with pytest.raises(ValueError):
        RankAllocator([lin], total_steps=10, target_ratio=0.0)
