"""The loop on a real tiny UNet, real audit patches and the real trainer, against reference defects 4, 5, 10
and 11: the audit baseline follows the gates, audits leave votes and guards alone, a unit switched on late
gets fresh optimiser moments and the current learning rate, and the refine stage keeps the searched weights."""

from __future__ import annotations

import pytest
import torch

from seapeft_monailabel.data.datastore import make_datalist
from seapeft_monailabel.models import NetworkSpec, build_network, head_module_names
from seapeft_monailabel.peft import UnitRegistry
from seapeft_monailabel.search import UnitController, UnitState, preset
from seapeft_monailabel.search import episode as episode_module
from seapeft_monailabel.search.controller import Transition
from seapeft_monailabel.search.engine import split_support
from seapeft_monailabel.search.episode import Candidate, SearchEpisode
from seapeft_monailabel.search.events import EventLog

SPEC = NetworkSpec(name="unet", out_channels=3, channels=(8, 16, 32), strides=(2, 2))
A = "model.0.conv.unit0.conv:lora:r2"
B = "model.0.residual:lora:r2"
C = "model.1.submodule.0.conv.unit0.adn.N:ssf:full"


@pytest.fixture(scope="module")
def split():
    return split_support(make_datalist("sample-data")[:3], 0)


def _episode(split, **changes):
    torch.manual_seed(0)
    network = build_network(SPEC)
    registry = UnitRegistry(network, "unet", head_module_names(SPEC, network))
    config = preset("tiny", budget=600, **{"audit_fraction": 1.0, **changes})  # audits measure every trained unit
    support, audit_item = split
    return SearchEpisode(registry, support, audit_item, config, n_classes=3, shots=len(support),
                         events=EventLog(None), device="cpu")


@torch.no_grad()
def _perturb(registry, names, scale=0.5):
    gen = torch.Generator().manual_seed(1)
    for name in names:
        for p in registry.unit(name).trainable_parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))


def _probe(episode, name, step):
    """Switch ``name`` on as the loop does: a controller probe applied to the network."""
    made = episode.controller.probe([name])
    assert [t.unit for t in made] == [name]
    episode._apply(made, step)


def _turn_on(episode, name, step):
    """Switch ``name`` on in the network through the loop's transition code, controller aside."""
    episode._apply([Transition(name, UnitState.CANDIDATE, UnitState.PROBATION, "probe")], step,
                   on=sorted(set(episode.registry.enabled_names()) | {name}))


def test_the_audit_baseline_follows_every_gate_change(split):
    """Defect 4: the baseline of each audit is the Dice of the gates as they are then."""
    episode = _episode(split)
    registry, auditor = episode.registry, episode.auditor
    _perturb(registry, [A, B, C])
    episode.trained |= {A, B, C}
    _probe(episode, A, step=0)
    episode._audit(step=100)
    _probe(episode, B, step=0)  # a gate changes between two audits
    episode._audit(step=200)
    first, second = episode.events.of("audit")
    assert first["on"] == [A] and sorted(second["on"]) == sorted([A, B])
    dice = {key: auditor.dice(names) for key, names in
            {"": [], "A": [A], "B": [B], "AB": [A, B], "AC": [A, C], "ABC": [A, B, C]}.items()}
    assert len({round(v, 9) for v in dice.values()}) == len(dice)  # every set measurably different
    assert first["baseline_dice"] == pytest.approx(dice["A"], abs=1e-9)
    assert second["baseline_dice"] == pytest.approx(dice["AB"], abs=1e-9)
    units = second["units"]
    assert units[A]["delta"] == pytest.approx(dice["AB"] - dice["B"], abs=1e-9)
    assert units[B]["delta"] == pytest.approx(dice["AB"] - dice["A"], abs=1e-9)
    assert units[C]["delta"] == pytest.approx(dice["ABC"] - dice["AB"], abs=1e-9)
    assert first["units"][C]["delta"] == pytest.approx(dice["AC"] - dice["A"], abs=1e-9)


def test_audit_toggling_does_not_touch_votes_or_guards(split):
    """Defect 5: the episode's real audit toggles every selected unit's gate in the network and restores it;
    the controller's states, votes and guards, the gates and the weights are as before."""
    episode = _episode(split)
    registry = episode.registry
    episode.controller = episode._controller([A])  # A ACTIVE
    _perturb(registry, [A, B, C])
    episode._apply(episode.controller.probe([B]), step=1)  # B PROBATION
    episode.trained |= {A, B, C}
    episode.controller.apply({B})  # guards count down
    episode.controller.apply({B})  # A unwanted: a vote streak of -1; B wanted: +1
    before = episode.controller.snapshot()
    assert before["units"][A]["votes"] == -1 and before["units"][B]["votes"] == 1
    weights = {k: v.clone() for k, v in registry.network.state_dict().items()}
    evaluations = episode.auditor.evaluations
    episode._audit(step=100)
    audit = episode.events.of("audit")[-1]
    assert set(audit["units"]) == {A, B, C}  # the audit really measured: both on units off, C on
    assert episode.auditor.evaluations - evaluations >= 4
    assert episode.controller.snapshot() == before
    assert registry.enabled_names() == episode.controller.on_units() == sorted([A, B])
    assert all(torch.equal(v, weights[k]) for k, v in registry.network.state_dict().items())
    mutators = {"apply", "probe"}
    public = {m for m in dir(episode.controller) if not m.startswith("_") and callable(getattr(episode.controller, m))}
    assert public - mutators == {
        "state", "votes", "guard", "states", "guards", "on_units", "active_units", "probation_units",
        "trained_units", "active_cost", "probation_cost", "probe_charges", "snapshot",
    }
    assert isinstance(episode.controller, UnitController)


def _batch(seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, 1, 16, 16, 16, generator=gen), torch.randint(0, 3, (1, 1, 16, 16, 16), generator=gen)


def test_a_late_unit_gets_fresh_moments_and_the_current_learning_rate(split):
    """Defect 10: a unit switched on (again) after warm-up starts with fresh AdamW moments and trains at the
    rate of the schedule at that step, like every unit already on."""
    episode = _episode(split, warmup_steps=4)
    trainer, registry = episode.trainer, episode.registry
    _turn_on(episode, A, step=0)
    for seed in range(3):
        trainer.step(*_batch(seed))
    _turn_on(episode, B, step=3)
    for seed in range(3, 6):
        trainer.step(*_batch(seed))
    registry.set_enabled(B, False)  # off with moments in the optimiser: they must not come back with it
    assert all(trainer.optimizer.state[p] for p in registry.unit(B).trainable_parameters())
    trainer.start_decay(10)
    for seed in range(6, 9):
        trainer.step(*_batch(seed))
    _turn_on(episode, B, step=9)
    assert all(p not in trainer.optimizer.state for p in registry.unit(B).trainable_parameters())
    before = [p.detach().clone() for p in registry.unit(B).trainable_parameters()]
    lr = trainer.current_lr() * trainer.lr_scale(registry.unit(B))
    assert trainer.step_count > trainer.warmup_steps and 0 < lr < trainer.base_lr * trainer.adapter_lr_scale
    trainer.step(*_batch(9))
    for p, old in zip(registry.unit(B).trainable_parameters(), before):
        moved = (p.detach() - old).abs()
        big = p.grad.abs() > 1e-4  # Adam's first step from fresh moments moves by the rate itself
        assert big.any() and torch.allclose(moved[big], torch.full_like(moved[big], lr), rtol=1e-3)
    # one schedule for every group: the head's, the block units' and the adapters' rates are the same step's
    assert all(g["lr"] / g["scale"] == pytest.approx(lr / trainer.lr_scale(registry.unit(B)))
               for g in trainer.optimizer.param_groups)


@pytest.mark.parametrize("reinit", [False, True])
def test_refine_starts_from_the_searched_weights(split, reinit, monkeypatch):
    """Defect 11: the refine stage trains the winner from the weights the search gave it (unless
    ``reinit_refine``, the reference's behaviour, which re-initialises them at zero effect)."""
    episode = _episode(split, max_steps=8, reinit_refine=reinit, audit_fraction=0.2)
    seen = {}

    def winner_is_the_active_set():  # whatever the audits say, refine the set the search trained
        units = tuple(episode.controller.on_units())
        seen["searched"] = {n: episode.registry.unit(n).adapter_state() for n in units}
        return [Candidate("searched", units, episode._cost(units), dice=0.6), Candidate("head-only", (), 0, dice=0.5)]

    real_train_steps = episode_module.train_steps

    def spy(trainer, stream, steps, events, stage, *args, **kwargs):
        seen["refined"] = {n: episode.registry.unit(n).adapter_state() for n in seen["searched"]}
        return real_train_steps(trainer, stream, steps, events, stage, *args, **kwargs)

    monkeypatch.setattr(episode, "_select", winner_is_the_active_set)
    monkeypatch.setattr(episode_module, "train_steps", spy)
    outcome = episode.run()
    searched, refined = seen["searched"], seen["refined"]
    lora = [n for n in searched if ":lora:" in n]
    assert lora and sorted(outcome.chosen) == sorted(searched)
    assert all(searched[n]["lora_B"].abs().sum() > 0 for n in lora)  # trained away from zero effect
    same = all(torch.equal(searched[n][k], refined[n][k]) for n in searched for k in searched[n])
    assert same is not reinit
    if reinit:
        assert all(refined[n]["lora_B"].abs().sum() == 0 for n in lora)
