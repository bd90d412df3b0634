"""The library check for units a following norm cancels (reference defect 2), on the toy and on the shipped libraries."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.networks.nets import SwinUNETR

from seapeft_monailabel.models import load_base_model
from seapeft_monailabel.peft import UnitRegistry, load_manifest, manifest_from_dict
from seapeft_monailabel.peft.effect import InertUnitWarning, example_input, inert_units
from seapeft_monailabel.search.baselines import method_manifest

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((ROOT / "docs" / "experiments").glob("*.yaml"))
# the BitFit sites of the earlier default SwinUNETR library: every one feeds an InstanceNorm
EARLIER_BITFIT = [r"encoder(1|2|3|4|10)\.layer\.conv[12]\.conv", r"decoder\d\.conv_block\.conv[12]\.conv"]


def _sites(manifest):
    return [{"pattern": s.pattern, "families": {f: list(v) for f, v in s.families.items()}, "optional": s.optional}
            for s in manifest.sites]


def _toy_manifest():
    return manifest_from_dict({"name": "toy", "sites": [
        {"pattern": "conv", "families": {"bitfit": ["full"], "lora": ["r2"]}},
        {"pattern": "norm", "families": {"ssf": ["full"]}},
        {"pattern": "up|lin", "families": {"bitfit": ["full"]}},
        {"pattern": "ln", "families": {"ssf": ["full"]}},
    ]})


def test_a_bias_before_an_instance_norm_is_found_and_left_out(toy_net):
    # ToyNet: conv -> InstanceNorm3d -> up -> ...: only the conv's bias is subtracted again by the norm
    x = example_input(2, (4, 4, 4))
    registry = UnitRegistry(toy_net(), _toy_manifest(), ["head"])
    assert set(inert_units(registry, x)) == {"conv:bitfit:full"}
    with pytest.warns(InertUnitWarning, match=r"conv:bitfit:full: a following normalisation cancels"):
        built = UnitRegistry(toy_net(), _toy_manifest(), ["head"], example=x)
    assert "conv:bitfit:full" not in built.units and "conv:lora:r2" in built.units
    assert "bitfit_full" not in built.hosts["conv"].units and len(built) == len(registry) - 1
    # the check changed nothing: gates, gradients, mode
    assert built.enabled_names() == [] and all(p.grad is None for p in built.network.parameters())
    assert not built.network.training


def test_the_check_measures_the_effect_not_the_module_kind(toy_net):
    # the same conv bias is real under a GroupNorm of one group: it subtracts the mean over all channels,
    # not each channel's own mean
    net = toy_net()
    net.norm = torch.nn.GroupNorm(1, 4)
    registry = UnitRegistry(net, _toy_manifest(), ["head"])
    assert inert_units(registry, example_input(2, (4, 4, 4))) == {}


def test_default_swinunetr_library_and_bitfit_baseline_have_no_inert_unit():
    # one pass over the union of the default library, the BitFit baseline and the earlier library's BitFit
    # units: exactly those 20 are inert (so the check catches them), and neither library holds one
    default, baseline = load_manifest("swinunetr"), method_manifest("bitfit", "swinunetr")
    earlier = manifest_from_dict({"sites": [{"pattern": p, "families": {"bitfit": ["full"]}} for p in EARLIER_BITFIT]})
    torch.manual_seed(0)
    network = SwinUNETR(in_channels=1, out_channels=3, feature_size=12, spatial_dims=3)
    names = {m.name: {":".join(t) for t in m.resolve(network)} for m in (default, baseline, earlier)}
    union = manifest_from_dict({"name": "union", "sites": _sites(default) + _sites(baseline) + _sites(earlier)})
    registry = UnitRegistry(network, union, ["out.conv.conv"])
    inert = set(inert_units(registry, example_input(1, (64, 64, 64))))
    assert len(names[earlier.name]) == 20 and inert == names[earlier.name]
    assert not inert & (names[default.name] | names[baseline.name])
    assert len(names[baseline.name]) == 8 * 4 + 4 + 5  # Swin linears (qkv, proj, mlp, patch merging), transposed convs


@pytest.mark.parametrize("library", ["unet", "bitfit-baseline"] + [str(p) for p in EXPERIMENTS],
                         ids=lambda s: Path(s).stem)
def test_unet_libraries_have_no_inert_unit(library):
    base = load_base_model(ROOT / "sample-data" / "base_model" / "model.pt")
    manifest = method_manifest("bitfit", "unet") if library == "bitfit-baseline" else library
    registry = UnitRegistry(base.network, manifest, base.head_names)
    assert any(u.channel_effects for u in registry)  # every one of these libraries has per-channel units
    assert inert_units(registry, example_input(base.spec.in_channels, (32, 32, 32))) == {}
