"""Contract of every unit family on a small real network (see seapeft_monailabel.peft.base)."""

from __future__ import annotations

import pytest
import torch

from seapeft_monailabel.peft import UnitRegistry, load_merged_state_dict, manifest_from_dict

# (site, family, level, sibling level of the same group or None); every kind of site is covered.
CASES = [
    ("lin", "lora", "r2", "r4"),
    ("conv", "lora", "r2", "r4"),
    ("up", "lora", "r2", "r4"),
    ("lin", "adalora", "r2", "r3"),
    ("conv", "adalora", "r2", "r3"),
    ("lin", "salt", "r1", "r2"),
    ("conv", "salt", "r1", "r2"),
    ("up", "salt", "r1", "r2"),
    ("conv", "bitfit", "full", None),
    ("lin", "bitfit", "full", None),
    ("ln", "ssf", "full", None),
    ("norm", "ssf", "full", None),
    ("conv", "ssf", "full", None),
    ("mlp", "adaptformer", "b2", "b4"),
    ("mlp", "adapter", "b2", "b4"),
    ("up", "block", "full", None),
    ("conv", "curve", "k2", "k4"),
    ("conv", "pwlora", "r1", "r2"),
]
IDS = [f"{s}-{f}" for s, f, _, _ in CASES]
MERGEABLE = {"lora", "pwlora", "adalora", "salt", "bitfit", "ssf", "block"}


def _manifest():
    sites: dict[str, dict[str, list[str]]] = {}
    for site, family, level, sibling in CASES:
        levels = sites.setdefault(site, {}).setdefault(family, [])
        for lv in (level, sibling):
            if lv is not None and lv not in levels:
                levels.append(lv)
    return manifest_from_dict({"name": "toy", "sites": [{"pattern": s, "families": f} for s, f in sites.items()]})


def _registry(net):
    return UnitRegistry(net, _manifest(), head_names=["head"])


def _x(seed=1):
    return torch.randn(2, 2, 4, 4, 4, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _perturb(registry, names, seed=3):
    gen = torch.Generator().manual_seed(seed)
    for name in names:
        for p in registry.unit(name).trainable_parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))


def _name(site, family, level):
    return f"{site}:{family}:{level}"


def _assert_same(a, b, family):
    if family == "salt":  # the delta goes through an SVD: exact zero, but merged sums may differ in rounding
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    else:
        assert torch.equal(a, b)


@pytest.mark.parametrize("site,family,level,sibling", CASES, ids=IDS)
def test_fresh_unit_has_no_effect(toy_net, site, family, level, sibling):
    net = toy_net()
    registry = _registry(net)
    with torch.no_grad():  # the frozen backbone is the reference (frozen and trainable weights may pick other kernels)
        reference = net(_x())
    registry.enable_only([_name(site, family, level)])
    with torch.no_grad():
        out = net(_x())
    _assert_same(out, reference, family)


@pytest.mark.parametrize("site,family,level,sibling", CASES, ids=IDS)
def test_cost_counts_trainable_tensors(toy_net, site, family, level, sibling):
    registry = _registry(toy_net())
    unit = registry.unit(_name(site, family, level))
    assert unit.cost == sum(p.numel() for p in unit.trainable_parameters()) > 0
    registry.enable_only([unit.name])
    head = sum(p.numel() for p in registry.head_parameters())
    assert sum(p.numel() for p in registry.trainable_parameters()) == head + unit.cost
    trainable = {id(p) for p in registry.network.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in registry.trainable_parameters()}


def test_costs_match_formulas(toy_net):
    registry = _registry(toy_net())
    cost = registry.costs()
    assert cost["lin:lora:r2"] == 2 * (6 + 6)
    assert cost["conv:lora:r4"] == 4 * (4 + 2 * 27)
    assert cost["up:lora:r2"] == 2 * (4 + 6 * 8)  # ConvTranspose3d view: (C_in, C_out * k^3)
    assert cost["lin:adalora:r3"] == 3 * (6 + 6 + 1)
    assert cost["conv:bitfit:full"] == 4
    assert cost["ln:ssf:full"] == 2 * 6
    assert cost["norm:ssf:full"] == 2 * 4
    assert cost["mlp:adaptformer:b4"] == 4 * 6 + 4 + 6 * 4 + 6
    up_block = sum(p.numel() for p in toy_net().up.parameters())
    assert cost["up:block:full"] == up_block
    # SALT on conv: k = min(4, 54) = 4 singular values, top r = 1, residual rank rL = 2
    assert cost["conv:salt:r2"] == 2 * 1 + 2 * 2 * (4 - 1)
    assert cost["conv:pwlora:r2"] == 2 * (4 + 2)  # A spans the 2 input channels, not channels x 27 taps
    assert cost["conv:curve:k4"] == 2 * (4 + 1)  # per input channel: 4 slopes and an offset


@pytest.mark.parametrize("site,family,level,sibling", CASES, ids=IDS)
def test_gradients_reach_only_units_that_are_on(toy_net, site, family, level, sibling):
    registry = _registry(toy_net())
    name = _name(site, family, level)
    _perturb(registry, registry.units)  # every unit has a non-trivial function, so gradients can flow anywhere
    registry.enable_only([name])
    registry.network(_x()).square().mean().backward()
    grads = [p.grad for p in registry.unit(name).trainable_parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    for other, unit in registry.units.items():
        if other == name:
            continue
        assert all(p.grad is None for p in unit.trainable_parameters()), other


@pytest.mark.parametrize("site,family,level,sibling", [c for c in CASES if c[3]], ids=[i for c, i in zip(CASES, IDS) if c[3]])
def test_switching_a_sibling_leaves_the_unit_alone(toy_net, site, family, level, sibling):
    registry = _registry(toy_net())
    name, other = _name(site, family, level), _name(site, family, sibling)
    _perturb(registry, [name, other])
    registry.enable_only([name])
    with torch.no_grad():
        alone = registry.network(_x())
    state = {k: v.clone() for k, v in registry.unit(name).adapter_state().items()}
    registry.enable_only([name, other])
    with torch.no_grad():
        both = registry.network(_x())
    registry.set_enabled(other, False)
    with torch.no_grad():
        after = registry.network(_x())
    assert registry.unit(name).enabled
    assert not torch.equal(both, alone)
    assert torch.equal(after, alone)
    for key, value in registry.unit(name).adapter_state().items():
        assert torch.equal(value, state[key])


def test_switching_any_unit_leaves_every_other_contribution(toy_net):
    registry = _registry(toy_net())
    every = [_name(s, f, lv) for s, f, lv, _ in CASES]
    _perturb(registry, every)
    for name in every:
        rest = [n for n in every if n != name]
        registry.enable_only(rest)
        with torch.no_grad():
            without = registry.network(_x())
        registry.enable_only(every)
        registry.set_enabled(name, False)
        with torch.no_grad():
            toggled = registry.network(_x())
        assert torch.equal(toggled, without), name
        assert sorted(registry.enabled_names()) == sorted(rest)


@pytest.mark.parametrize("site,family,level,sibling", [c for c in CASES if c[1] in MERGEABLE],
                         ids=[i for c, i in zip(CASES, IDS) if c[1] in MERGEABLE])
def test_merged_equals_unmerged(toy_net, site, family, level, sibling):
    registry = _registry(toy_net())
    name = _name(site, family, level)
    _perturb(registry, [name])
    registry.enable_only([name])
    with torch.no_grad():
        unmerged = registry.network(_x())
    merged, remaining = registry.merged_network()
    assert remaining == []
    with torch.no_grad():
        out = merged(_x())
    torch.testing.assert_close(out, unmerged, rtol=1e-5, atol=1e-5)
    plain = toy_net()
    load_merged_state_dict(plain, merged.state_dict())  # a plain network loads the merged weights, strictly
    with torch.no_grad():
        torch.testing.assert_close(plain(_x()), unmerged, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("names,kept", [
    (["lin:lora:r2", "mlp:adaptformer:b2"], "mlp:adaptformer:b2"),
    (["conv:lora:r2", "conv:curve:k2"], "conv:curve:k2"),  # a weight unit merges under an input curve on its site
], ids=["adaptformer", "curve"])
def test_merge_keeps_unmergeable_units(toy_net, names, kept):
    registry = _registry(toy_net())
    _perturb(registry, names)
    registry.enable_only(names)
    with torch.no_grad():
        unmerged = registry.network(_x())
    merged, remaining = registry.merged_network()
    assert remaining == [kept]
    with torch.no_grad():
        torch.testing.assert_close(merged(_x()), unmerged, rtol=1e-5, atol=1e-6)


def test_pointwise_lora_is_a_1x1x1_convolution_beside_the_layer(toy_net):
    net = toy_net()
    registry = _registry(net)
    name = "conv:pwlora:r2"
    _perturb(registry, [name])
    registry.enable_only([name])
    unit = registry.unit(name)
    conv = registry.hosts["conv"].base
    x = _x()
    with torch.no_grad():
        mixing = (unit.lora_B @ unit.lora_A)[..., None, None, None]  # (out, in, 1, 1, 1)
        expected = torch.nn.functional.conv3d(x, conv.weight, padding=1) + torch.nn.functional.conv3d(x, mixing)
        torch.testing.assert_close(registry.hosts["conv"](x), expected, rtol=1e-5, atol=1e-6)


def test_pointwise_lora_needs_an_odd_kernel(toy_net):
    with pytest.raises(ValueError, match="up: pointwise LoRA needs an odd kernel"):
        UnitRegistry(toy_net(), manifest_from_dict({"name": "bad", "sites": [{"pattern": "up", "families": {"pwlora": ["r1"]}}]}),
                     head_names=["head"])


def test_curve_is_piecewise_linear_in_the_intensity(toy_net):
    unit = _registry(toy_net()).unit("conv:curve:k4")  # knots 0, 0.25, 0.5, 0.75
    with torch.no_grad():
        unit.offset.fill_(1.0)
        unit.slopes.zero_()
        unit.slopes[:, 0] = -2.0  # x + 1 - 2x: the contrast inverted on [0, 1]
        unit.slopes[:, 2] = 4.0  # from 0.5 on, slope +3
    x = torch.linspace(0, 1, 9).view(1, 1, 9, 1, 1).expand(1, 2, 9, 1, 1)
    expected = torch.where(x < 0.5, 1 - x, 0.5 + 3 * (x - 0.5))
    torch.testing.assert_close(unit(x), expected)


def test_curve_knots_must_be_a_power_of_two_and_its_input_a_volume(toy_net):
    with pytest.raises(ValueError, match="conv: curve knots must be a power of two"):
        UnitRegistry(toy_net(), manifest_from_dict({"name": "bad", "sites": [{"pattern": "conv", "families": {"curve": ["k3"]}}]}),
                     head_names=["head"])
    with pytest.raises(ValueError, match="mlp: an intensity curve needs a volume input"):
        UnitRegistry(toy_net(), manifest_from_dict({"name": "bad", "sites": [{"pattern": "mlp", "families": {"curve": ["k4"]}}]}),
                     head_names=["head"])


@pytest.mark.parametrize("site,family,level,sibling", CASES, ids=IDS)
def test_adapter_state_round_trips(toy_net, tmp_path, site, family, level, sibling):
    registry = _registry(toy_net())
    name = _name(site, family, level)
    _perturb(registry, [name])
    with torch.no_grad():
        registry.head_parameters()[0].add_(0.5)
    registry.enable_only([name])
    with torch.no_grad():
        expected = registry.network(_x())
    torch.save(registry.adapter_state_dict(), tmp_path / "adapters.pt")
    fresh = _registry(toy_net())
    fresh.load_adapter_state_dict(torch.load(tmp_path / "adapters.pt", weights_only=True))
    assert fresh.enabled_names() == [name]
    with torch.no_grad():
        assert torch.equal(fresh.network(_x()), expected)


@pytest.mark.parametrize("site,family,small,large", [c for c in CASES if c[3]], ids=[i for c, i in zip(CASES, IDS) if c[3]])
def test_rank_change_warm_starts_from_the_smaller_level(toy_net, site, family, small, large):
    registry = _registry(toy_net())
    small_name, large_name = _name(site, family, small), _name(site, family, large)
    _perturb(registry, [small_name, large_name])
    registry.enable_only([small_name])
    with torch.no_grad():
        expected = registry.network(_x())
    registry.unit(large_name).warm_start_from(registry.unit(small_name))
    registry.enable_only([large_name])
    with torch.no_grad():
        torch.testing.assert_close(registry.network(_x()), expected, rtol=1e-5, atol=1e-6)


def test_block_unit_restores_pretrained_values_when_off(toy_net):
    registry = _registry(toy_net())
    with torch.no_grad():
        reference = registry.network(_x())
    name = "up:block:full"
    registry.enable_only([name])
    _perturb(registry, [name])
    with torch.no_grad():
        trained = registry.network(_x())
    registry.set_enabled(name, False)
    with torch.no_grad():
        assert torch.equal(registry.network(_x()), reference)
    registry.set_enabled(name, True)
    with torch.no_grad():
        assert torch.equal(registry.network(_x()), trained)
