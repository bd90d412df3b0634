"""Fixed unit sets for the baselines, trained through the same code path as SEA-PEFT.

Each method is a manifest (the units it trains, all switched on) for a network family; ``head`` has
no unit (linear probe: the head alone), ``random`` draws units of the search library at random, one
level per group, up to a target cost (the cost of SEA-PEFT's choice). The head is always trained.
"""

from __future__ import annotations

import numpy as np

from ..peft import Manifest, UnitRegistry, manifest_from_dict

_SWIN_BLOCK = r"swinViT\.layers\d\.0\.blocks\.\d+"
_SWIN_LINEAR = rf"({_SWIN_BLOCK}\.(attn\.(qkv|proj)|mlp\.linear[12])|swinViT\.layers\d\.0\.downsample\.reduction)"
_SWIN_TRANSP = r"decoder\d\.transp_conv\.conv"
_SWIN_CONV3 = r"(encoder\d+\.layer|decoder\d\.conv_block)\.conv[12]\.conv"
_SWIN_NORM = rf"({_SWIN_BLOCK}\.norm[12]|(encoder\d+\.layer|decoder\d\.conv_block)\.norm\d)"

_UNET_CONV = r"model\.[01](\.[a-z0-9]+)*\.conv\.unit\d+\.conv"
_UNET_RESIDUAL = r"model\.[01](\.[a-z0-9]+)*\.residual"

# method -> network -> list of (pattern, {family: [levels]})
METHODS: dict[str, dict[str, list[tuple[str, dict[str, list[str]]]]]] = {
    "head": {"swinunetr": [], "unet": []},
    "full": {"swinunetr": [(r"swinViT|encoder\d+|decoder\d", {"block": ["full"]})],
             "unet": [(r"model\.[01]", {"block": ["full"]})]},
    "decoder": {"swinunetr": [(r"decoder\d", {"block": ["full"]})],
                "unet": [(r"model\.1(\.submodule)*\.2", {"block": ["full"]})]},
    # only biases that reach the output: every other convolution of both networks feeds an InstanceNorm
    "bitfit": {"swinunetr": [(_SWIN_LINEAR, {"bitfit": ["full"]}), (_SWIN_TRANSP, {"bitfit": ["full"]})],
               "unet": [(_UNET_RESIDUAL, {"bitfit": ["full"]})]},
    "ssf": {"swinunetr": [(_SWIN_NORM, {"ssf": ["full"]})],
            "unet": [(r"model\.[01](\.[a-z0-9]+)*\.adn\.N", {"ssf": ["full"]})]},
    "lora": {"swinunetr": [(rf"{_SWIN_BLOCK}\.attn\.qkv", {"lora": ["r8"]})],
             "unet": [(_UNET_CONV, {"lora": ["r4"]})]},
    "adaptformer": {"swinunetr": [(rf"{_SWIN_BLOCK}\.mlp", {"adaptformer": ["b16"]})]},
    "salt": {"swinunetr": [(_SWIN_LINEAR, {"salt": ["r2"]}), (_SWIN_CONV3, {"salt": ["r2"]})],
             "unet": [(_UNET_CONV, {"salt": ["r2"]})]},
    "adalora": {"swinunetr": [(rf"{_SWIN_BLOCK}\.(attn\.(qkv|proj)|mlp\.linear[12])", {"adalora": ["r4"]})],
                "unet": [(_UNET_CONV, {"adalora": ["r4"]})]},
}
FIXED_METHODS = tuple(METHODS) + ("random",)


def method_manifest(method: str, network_name: str) -> Manifest:
    """The manifest of a fixed method for ``network_name`` (``swinunetr`` or ``unet``)."""
    if method not in METHODS:
        raise ValueError(f"unknown method '{method}' (known: {', '.join(FIXED_METHODS)})")
    if network_name not in METHODS[method]:
        raise ValueError(f"method '{method}' does not apply to a {network_name} (it has no such sites)")
    sites = [{"pattern": p, "families": f} for p, f in METHODS[method][network_name]]
    return manifest_from_dict({"name": f"{method}-{network_name}", "sites": sites}, source=f"baseline:{method}")


def random_units(registry: UnitRegistry, target_cost: int, seed: int) -> list[str]:
    """Random units of the search library, at most one level per group, up to ``target_cost`` parameters.

    Groups are visited in random order and a random level that still fits is taken, so the set's cost
    comes as close to the target as the library allows without exceeding it.
    """
    rng = np.random.default_rng(seed)
    groups = list(registry.groups().values())
    chosen, cost = [], 0
    for index in rng.permutation(len(groups)):
        fitting = [n for n in groups[index] if cost + registry.unit(n).cost <= target_cost]
        if fitting:
            name = fitting[rng.integers(len(fitting))]
            chosen.append(name)
            cost += registry.unit(name).cost
    return chosen
