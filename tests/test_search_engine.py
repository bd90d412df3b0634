"""The SEA-PEFT episode on a real (tiny) network and real patches: planted problem, prior, determinism, invariants."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from seapeft_monailabel.data.datastore import make_datalist
from seapeft_monailabel.models import NetworkSpec, build_network, head_module_names
from seapeft_monailabel.peft import UnitRegistry
from seapeft_monailabel.search import preset, run_search
from seapeft_monailabel.search.audit import Auditor
from seapeft_monailabel.search.engine import split_support
from seapeft_monailabel.search.episode import SearchEpisode
from seapeft_monailabel.search.events import EventLog, read_events
from seapeft_monailabel.search.patches import PatchStream

LABELS = {"background": 0, "liver": 1, "gallbladder": 2}
SPEC = NetworkSpec(name="unet", out_channels=3, channels=(8, 16, 32), strides=(2, 2))

U1_SMALL = "model.0.conv.unit0.conv:lora:r2"  # 70 parameters, zero-initialised LoRA
U1_LARGE = "model.0.conv.unit0.conv:lora:r4"  # 140: a better density than r2 -> rank change
U2 = "model.0.residual:lora:r2"  # 70
DRIFT = "model.1.submodule.2.0.adn.N:ssf:full"  # 16: the best unit until DRIFT_STEP, harmful after
HARMFUL = "model.1.submodule.0.conv.unit0.adn.N:ssf:full"  # 32
GAIN = {U1_SMALL: 0.02, U1_LARGE: 0.05, U2: 0.015, HARMFUL: -0.03}
DRIFT_STEP = 100
AUDIT_SETS = [[], [U1_SMALL], [U1_SMALL, U2, HARMFUL]]


def audit_registry():
    """A tiny UNet registry whose AUDIT_SETS units are perturbed (seeded), so the sets' Dice differ."""
    network = _network()
    registry = UnitRegistry(network, "unet", head_module_names(SPEC, network))
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name in AUDIT_SETS[-1]:
            for p in registry.unit(name).trainable_parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=generator))
    return registry


def planted_config():
    """The planted problem's settings; its Dice is scripted, so the whole-volume check of the real (untrained)
    network would judge something else: it is off."""
    return preset("tiny", max_steps=240, probe_every=1, audit_every=2, allocate_every=2, budget=240,
                  probe_fraction=0.6, patch_size=(16, 16, 16), refine_steps=2, stop_patience=1000,
                  selection_volume_ratio=0)


@pytest.fixture(scope="module")
def datalist():
    return make_datalist("sample-data")[:3]


def _network(seed=0):
    torch.manual_seed(seed)
    return build_network(SPEC)


class ScriptedAuditor(Auditor):
    """Dice of a unit set = 0.5 + the planted gains of its units + small noise; the rest of the audit is the real code."""

    def __init__(self, registry, clock, seed=0):
        super().__init__(registry, torch.zeros(1), torch.zeros(1), n_classes=3)
        self.clock = clock
        self.seed = seed

    def toggle_dice(self, baseline, toggles):
        gains = dict(GAIN)
        step = self.clock()
        gains[DRIFT] = 0.01 if step < DRIFT_STEP else -0.02
        sets = [baseline, *toggles]
        self.evaluations += len(sets)
        return {s: 0.5 + sum(gains.get(n, 0.0) for n in s) + self.noise(s, step) for s in sets}

    def noise(self, names, step):
        """The measurement noise of one set at one step: the same however often, or in whatever order, sets are
        measured (and on every rank)."""
        key = zlib.crc32("|".join(sorted(names)).encode()) ^ (step * 2654435761 % 2**32) ^ self.seed
        return float(np.random.default_rng(key).normal(0, 1e-4))


def test_planted_problem(datalist, tmp_path):
    config = planted_config()
    registry = UnitRegistry(_network(), "unet", head_module_names(SPEC, _network()))
    support, audit_item = split_support(datalist, 0)
    events = EventLog(tmp_path / "events.jsonl")
    holder = {}
    auditor = ScriptedAuditor(registry, clock=lambda: holder["episode"].trainer.step_count)
    episode = SearchEpisode(registry, support, audit_item, config, n_classes=3, shots=len(support), events=events,
                            device="cpu", auditor=auditor)
    holder["episode"] = episode
    outcome = episode.run()
    events.close()
    log = read_events(tmp_path / "events.jsonl")

    # every unit, zero-initialised ones included, has evidence before it is ever trained
    prior = next(e for e in log if e["event"] == "prior")["values"]
    assert all(v > 0 for v in prior.values())

    allocations = [e for e in log if e["event"] == "allocation"]
    assert allocations and all(a["active_cost"] <= 240 and a["desired_cost"] <= 240 for a in allocations)
    for a in allocations:  # at most one level per group on at any time
        groups = [n.rsplit(":", 1)[0] for n in a["active"] + a["probation"]]
        assert len(groups) == len(set(groups))

    assert set(allocations[-1]["active"]) == {U1_LARGE, U2}
    assert set(outcome.chosen) == {U1_LARGE, U2}
    transitions = [e for e in log if e["event"] == "transition"]
    # the drifting unit was active while useful and demoted once harmful
    became_active = [t["step"] for t in transitions if t["unit"] == DRIFT and t["target"] == "active"]
    demoted = [t["step"] for t in transitions if t["unit"] == DRIFT and t["source"] == "active" and t["target"] == "candidate"]
    assert became_active and became_active[0] < DRIFT_STEP
    assert demoted and demoted[-1] > DRIFT_STEP
    # the harmful unit may be probed, never kept
    assert all(HARMFUL not in a["active"] for a in allocations)
    assert HARMFUL not in outcome.chosen
    coverage = [e for e in log if e["event"] == "coverage"]
    assert coverage[-1]["max_gap"] <= config.debt_horizon


def test_episode_warm_starts_a_rank_change(datalist, tmp_path):
    network = _network()
    registry = UnitRegistry(network, "unet", head_module_names(SPEC, network))
    support, audit_item = split_support(datalist, 0)
    config = preset("tiny", patch_size=(16, 16, 16), budget=1000, probe_fraction=0.5)  # room to probe both levels
    episode = SearchEpisode(registry, support, audit_item, config, n_classes=3,
                            shots=len(support), events=EventLog(None), device="cpu",
                            auditor=ScriptedAuditor(registry, clock=lambda: 0))
    episode._apply(episode.controller.probe([U1_SMALL]), step=1)
    with torch.no_grad():
        registry.unit(U1_SMALL).lora_B.normal_()  # as if trained
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        expected = network(x)
    transitions = episode.controller.probe([U1_LARGE])  # a rank-up probe replaces the smaller level
    assert any(t.unit == U1_LARGE and t.warm_start_from == U1_SMALL for t in transitions)
    episode._apply(transitions, step=2)
    assert registry.enabled_names() == [U1_LARGE]
    with torch.no_grad():
        torch.testing.assert_close(network(x), expected, rtol=1e-5, atol=1e-6)


def _tiny_run(datalist, out, seed=0):
    config = preset("tiny", seed=seed)
    network = _network(seed)
    return run_search(datalist, network, spec=SPEC, head_names=head_module_names(SPEC, network), labels=LABELS,
                      config=config, out_dir=out)


@pytest.fixture(scope="module")
def tiny_run(datalist, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return _tiny_run(datalist, out), out


def test_same_seed_same_result(datalist, tiny_run, tmp_path):
    first, first_dir = tiny_run
    second = _tiny_run(datalist, tmp_path)
    assert first.units == second.units
    assert first.selection_dice == second.selection_dice
    key = "model.0.conv.unit0.conv.weight"
    assert torch.equal(torch.load(first_dir / "model.pt")["state_dict"][key], torch.load(tmp_path / "model.pt")["state_dict"][key])


def test_real_audits_keep_the_invariants(tiny_run):
    """Replays the run's transitions and checks every audit and allocation against them: audits see the gates
    the controller had on, measure trained units only, record utility = delta / cost (Dice per parameter);
    allocations hold one level per group, their recorded cost is the sum of their units', within the budget."""
    result, out = tiny_run
    log = read_events(out / "events.jsonl")
    kinds = {e["event"] for e in log}
    assert {"train", "prior", "audit", "allocation", "coverage", "selection", "done", "timing"} <= kinds
    timing = next(e for e in log if e["event"] == "timing")["seconds"]
    assert timing["train"] > 0 and timing["audit"] > 0 and timing["evaluate"] > 0 and timing["refine"] > 0
    network = _network()
    costs = UnitRegistry(network, "unet", head_module_names(SPEC, network)).costs()
    assert result.budget == preset("tiny").resolve_budget(sum(p.numel() for p in _network().parameters()))
    on: set[str] = set()
    trained: set[str] = set()
    audits = allocations = 0
    for event in log:
        if event["event"] == "transition":
            (on.add if event["target"] != "candidate" else on.discard)(event["unit"])
            trained |= {event["unit"]} if event["target"] != "candidate" else set()
        elif event["event"] == "audit":
            audits += 1
            assert set(event["on"]) == on
            assert set(event["units"]) <= trained and len(event["units"]) == event["measured"] <= event["selected"]
            for name, sample in event["units"].items():
                assert sample["utility"] == pytest.approx(sample["delta"] / costs[name], rel=1e-9, abs=0)
        elif event["event"] == "allocation":
            allocations += 1
            assert set(event["active"]) | set(event["probation"]) == on
            groups = [n.rsplit(":", 1)[0] for n in on]
            assert len(groups) == len(set(groups))
            assert event["active_cost"] == sum(costs[n] for n in event["active"]) <= result.budget
    assert audits >= 2 and allocations >= 2 and trained
    assert result.cost == sum(costs[n] for n in result.units) <= result.budget


def test_patch_stream_draws_fresh_patches_every_epoch(datalist):
    stream = iter(PatchStream(datalist[:2], (16, 16, 16), 1, seed=0))
    sums = [round(float(next(stream)[0].sum()), 3) for _ in range(20)]
    assert len(set(sums)) >= 18  # 10 epochs over 2 volumes: no epoch replays an earlier one
