"""What makes a short search train and fill its budget: per-family learning rates, a starting set from the
saliency prior, and audits spent on measurable (trained) units only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seapeft_monailabel.data.datastore import make_datalist
from seapeft_monailabel.models import NetworkSpec, build_network, head_module_names
from seapeft_monailabel.peft import UnitRegistry, manifest_from_dict
from seapeft_monailabel.search import AuditSampler, UnitController, UnitState, preset
from seapeft_monailabel.search.engine import split_support
from seapeft_monailabel.search.episode import SearchEpisode
from seapeft_monailabel.search.events import EventLog
from seapeft_monailabel.search.trainer import UnitTrainer

from search_units import unit

SPEC = NetworkSpec(name="unet", out_channels=3, channels=(8, 16, 32), strides=(2, 2))


def _registry(manifest="unet"):
    torch.manual_seed(0)
    network = build_network(SPEC)
    return UnitRegistry(network, manifest, head_module_names(SPEC, network))


def test_head_and_adapters_train_at_the_scaled_rate_blocks_at_the_base_rate():
    manifest = manifest_from_dict({"name": "mixed", "sites": [
        {"pattern": r"model\.0\.conv\.unit0\.conv", "families": {"lora": ["r2"], "block": ["full"]}}]})
    registry = _registry(manifest)
    trainer = UnitTrainer(registry, lr=1e-3, adapter_lr_scale=10.0)
    rate = {}
    for group in trainer.optimizer.param_groups:
        for p in group["params"]:
            rate[id(p)] = group["scale"]
    lora, block = (registry.unit(f"model.0.conv.unit0.conv:{f}") for f in ("lora:r2", "block:full"))
    assert all(rate[id(p)] == 10.0 for p in lora.trainable_parameters())
    assert all(rate[id(p)] == 1.0 for p in block.trainable_parameters())
    assert all(rate[id(p)] == 10.0 for p in registry.head_parameters())
    registry.enable_only([])
    trainer.step(torch.randn(1, 1, 16, 16, 16), torch.randint(0, 3, (1, 1, 16, 16, 16)))
    assert sorted(g["lr"] for g in trainer.optimizer.param_groups) == pytest.approx([1e-3, 1e-2])
    with pytest.raises(ValueError, match="adapter_lr_scale"):
        UnitTrainer(registry, lr=1e-3, adapter_lr_scale=0.0)


def test_measurable_only_sampler_never_spends_a_slot_on_an_untrained_unit():
    rng = np.random.default_rng(0)
    names = [f"u{i:02d}" for i in range(60)]
    sampler = AuditSampler(names, fraction=0.2, horizon=6, measurable_only=True)
    trained: set[str] = set()
    last: dict[str, int] = {}
    for t in range(300):
        trained |= set(rng.choice(names, size=1))  # units enter the rotation one by one
        on = {n for n in trained if rng.random() < 0.3}
        unc = {n: float(i) for i, n in enumerate(sorted(trained))}  # adversarial: always the same favourites
        selected = sampler.sample(on, unc, trained)
        assert set(selected) <= trained and len(selected) == min(sampler.k, len(trained))
        sampler.record(selected)
        for n in selected:
            last[n] = t
        for n in trained:  # the bound holds from the audit a unit entered
            assert t - last.get(n, t) < 6
        assert all(sampler.debt(n) == 0 for n in names if n not in trained)


def test_controller_initial_guard():
    units = [unit("a", "lora", "r2", 10), unit("b", "lora", "r2", 10)]
    ctl = UnitController(units, budget=20, probe_allowance=10, initial_active=["a:lora:r2"], initial_guard=1)
    assert ctl.state("a:lora:r2") is UnitState.ACTIVE and ctl.guard("a:lora:r2") == 1
    assert ctl.apply(set()) == [] and ctl.votes("a:lora:r2") == 0  # guarded at the first allocation


def test_search_starts_from_the_prior_knapsack_and_fills_the_budget(tmp_path):
    datalist = make_datalist("sample-data")[:3]
    registry = _registry()
    support, audit_item = split_support(datalist, 0)
    config = preset("tiny", budget=600, max_steps=4, refine_steps=1)
    events = EventLog(tmp_path / "events.jsonl")
    episode = SearchEpisode(registry, support, audit_item, config, n_classes=3, shots=len(support), events=events,
                            device="cpu")
    episode.run()
    events.close()
    starts = [e["unit"] for e in events.of("transition") if e["reason"] == "start"]
    prior = events.of("prior")[0]["values"]
    cost = sum(registry.unit(n).cost for n in starts)
    assert starts and cost <= 600 and all(prior[n] > 0 for n in starts)
    # greedy knapsack by prior density: the best level of a group left out either has a lower density
    # than every unit taken or did not fit
    best: dict[tuple[str, str], str] = {}
    for name, value in prior.items():
        group = registry.unit(name).group
        if group not in best or value > prior[best[group]]:
            best[group] = name
    taken = {registry.unit(n).group for n in starts}
    worst = min(prior[n] for n in starts)
    for group, name in best.items():
        if group not in taken and prior[name] > worst:
            assert cost + registry.unit(name).cost > 600
    no_start = SearchEpisode(_registry(), support, audit_item, config.with_(prior_start=False), n_classes=3,
                             shots=len(support), events=EventLog(None), device="cpu")
    assert no_start.controller.active_units() == []


def test_sea_peft_runs_adalora_importance_and_masking(tmp_path):
    # a library of AdaLoRA units only: the prior's knapsack switches them on from the first search step
    manifest = manifest_from_dict({"name": "ada", "sites": [
        {"pattern": r"model\.0\.conv\.unit[01]\.conv|model\.0\.residual", "families": {"adalora": ["r4"]}}]})
    registry = _registry(manifest)
    support, audit_item = split_support(make_datalist("sample-data")[:3], 0)
    config = preset("tiny", budget=1000, max_steps=12, refine_steps=2, adalora_every=2, adalora_target_ratio=0.5)
    events = EventLog(tmp_path / "events.jsonl")
    episode = SearchEpisode(registry, support, audit_item, config, n_classes=3, shots=len(support),
                            events=events, device="cpu")
    assert episode.ranks in episode.trainer.after_backward and len(episode.ranks.units) == 3
    episode.run()
    events.close()
    trained = [u for u in episode.ranks.units if u.name in episode.trained]
    assert trained and all(u.triplet_scores().sum() > 0 for u in trained)  # importance ran in the loop
    # units on for the whole search (12 of the schedule's 14 steps) end their reduction phase at the target
    # budget of 2 triplets each (their cohort's); the pruned singular values are zero once training ends
    moved = [e["unit"] for e in events.of("transition") if e["reason"] != "start"]
    whole = [u for u in trained if u.name not in moved]
    assert whole and sum(u.effective_rank for u in whole) == 2 * len(whole)
    assert all(torch.count_nonzero(u.lora_E) == u.effective_rank for u in trained)
