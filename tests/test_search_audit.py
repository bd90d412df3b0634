"""What an audit computes and on which patches: toggles from the baseline's recorded prefix (the same numbers as
full forwards, less computed), each distinct set once, and windows centred on each structure."""

from __future__ import annotations

import pytest
import torch

from seapeft_monailabel.data.datastore import make_datalist
from seapeft_monailabel.data.volumes import read_volume
from seapeft_monailabel.models import NetworkSpec, build_network, head_module_names
from seapeft_monailabel.peft import UnitRegistry
from seapeft_monailabel.search.audit import Auditor
from seapeft_monailabel.search.patches import audit_patches
from seapeft_monailabel.search.prefix_cache import PrefixCache

SPEC = NetworkSpec(name="unet", out_channels=3, channels=(8, 16, 32), strides=(2, 2))
DECODER_SITE = "model.1.submodule.2.0.conv"  # the inner up-sampling convolution


def _registry() -> UnitRegistry:
    """A tiny UNet whose every unit is perturbed (seeded), so every toggle changes the output."""
    torch.manual_seed(0)
    network = build_network(SPEC).eval()
    registry = UnitRegistry(network, "unet", head_module_names(SPEC, network))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for unit in registry:
            for p in unit.trainable_parameters():
                p.add_(0.2 * torch.randn(p.shape, generator=generator))
    return registry


def _patches(n=3):
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(n, 1, 16, 16, 16, generator=generator)
    labels = torch.randint(0, 3, (n, 1, 16, 16, 16), generator=generator).float()
    return images, labels


@torch.no_grad()
def test_toggled_forward_equals_a_full_forward_at_every_host():
    registry = _registry()
    on = [n for n in registry.units if n.endswith(":lora:r1") or n.endswith(":ssf:full")][::2]
    x = _patches(2)[0]
    cache = PrefixCache(registry.network)
    sites = sorted({u.site for u in registry})
    with registry.gates(on):
        cache.record(x, sites)
    for site in sites:
        here = [n for n in registry.units if registry.unit(n).site == site]
        changed = [n for n in on if n not in here] + ([] if set(here) & set(on) else here[:1])  # this site flipped
        with registry.gates(changed):
            full = registry.network(x)
            reused = cache.toggled(x, site)
        assert torch.equal(full, reused), site
    # a decoder site reuses the whole full-resolution encoder level; the first convolution only the residual
    # branch of its unit (MONAI's ResidualUnit computes it first)
    assert "model.0" in cache.cut(DECODER_SITE)
    assert cache.cut("model.0.conv.unit0.conv") == ["model.0.residual"]


def test_audit_deltas_are_those_of_full_forwards():
    registry = _registry()
    images, labels = _patches()
    auditor = Auditor(registry, images, labels, n_classes=3, batch=2)
    on = {"model.0.conv.unit0.conv:lora:r2", "model.0.residual:bitfit:full", f"{DECODER_SITE}:lora:r1",
          "model.1.submodule.0.conv.unit0.adn.N:ssf:full"}
    selected = sorted(on) + [f"{DECODER_SITE}:lora:r4",  # a sibling level in place of the one that is on
                             "model.0.conv.unit0.conv:salt:r2", "model.1.submodule.1.submodule.conv.unit1.conv:lora:r1"]
    baseline, deltas = auditor.audit(selected, on)
    assert baseline == pytest.approx(auditor.dice(on), abs=1e-12)
    for name in selected:
        if name in on:
            expected = auditor.dice(on) - auditor.dice(on - {name})
        else:
            group = registry.unit(name).group
            rest = {n for n in on if registry.unit(n).group != group}
            expected = auditor.dice(rest | {name}) - auditor.dice(rest)
        assert deltas[name] == pytest.approx(expected, abs=1e-12), name
        assert deltas[name] != 0.0, name
    assert set(registry.enabled_names()) == set()  # the gates are restored


@torch.no_grad()
def test_an_in_place_write_into_a_recorded_output_is_refused():
    registry = _registry()
    x = _patches(1)[0]
    cache = PrefixCache(registry.network)
    cache.record(x, [DECODER_SITE])
    output, _ = cache._outputs["model.0"]
    output.mul_(2)
    with pytest.raises(RuntimeError, match="'model.0' was modified in place"):
        cache.toggled(x, DECODER_SITE)


def test_an_audit_measures_each_distinct_set_once():
    registry = _registry()
    images, labels = _patches()
    auditor = Auditor(registry, images, labels, n_classes=3, batch=2)
    on = {f"{DECODER_SITE}:lora:r1", "model.0.residual:bitfit:full"}
    selected = [f"{DECODER_SITE}:lora:r1", f"{DECODER_SITE}:lora:r2", f"{DECODER_SITE}:lora:r4",  # one group
                "model.0.residual:bitfit:full", "model.0.conv.unit0.conv:salt:r2"]  # its group has no level on
    auditor.audit(selected, on)
    # on; on without the decoder group (shared by its three levels); r2 and r4 in r1's place; on without the
    # BitFit unit; on with the SALT unit (compared with on itself)
    assert auditor.evaluations == 6


def test_centred_windows_hold_each_small_structure_whole():
    item = make_datalist("sample-data")[0]
    label, _ = read_volume(item["label"])
    small = int(label.max())  # the novel structure, a few ml
    images, labels = audit_patches(item, (48, 48, 48), 2, small + 1, seed=0, windows="centred")
    assert images.shape == labels.shape == (2, 1, 48, 48, 48)
    assert int((labels[small - 1] == small).sum()) == int((label == small).sum())  # its window holds all of it
    random_images, random_labels = audit_patches(item, (48, 48, 48), 2, small + 1, seed=0)
    # a random window centred on one of the liver's voxels holds less of the liver than the centred one
    assert int((labels[0] == 1).sum()) >= int((random_labels[0] == 1).sum())
    with pytest.raises(ValueError, match="audit windows must be one of random, centred"):
        audit_patches(item, (48, 48, 48), 2, small + 1, seed=0, windows="best")


@torch.no_grad()
def test_toggled_forward_equals_a_full_forward_on_swinunetr():
    """The paper's backbone: Swin blocks (attention, windows, a module called once per block) and its CNN path."""
    from monai.networks.nets import SwinUNETR

    torch.manual_seed(0)
    network = SwinUNETR(in_channels=1, out_channels=3, feature_size=12, spatial_dims=3).eval()
    registry = UnitRegistry(network, "swinunetr", ["out.conv.conv"])
    generator = torch.Generator().manual_seed(3)
    for unit in registry:
        for p in unit.trainable_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    x = torch.randn(1, 1, 64, 64, 64, generator=generator)
    sites = sorted({u.site for u in registry})[::14]  # a spread of the library's sites, encoder to decoder
    on = [registry.groups()[g][0] for g in sorted(registry.groups())][::3]
    cache = PrefixCache(network)
    with registry.gates(on):
        cache.record(x, sites)
    for site in sites:
        here = [n for n in registry.units if registry.unit(n).site == site]
        changed = [n for n in on if n not in here] + ([] if set(here) & set(on) else here[:1])
        with registry.gates(changed):
            assert torch.equal(registry.network(x), cache.toggled(x, site)), site
    assert any(cache.cut(site) for site in sites)  # something is reused
