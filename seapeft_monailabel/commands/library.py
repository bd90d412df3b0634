"""Describe a unit library: units, costs per family, and how the budget compares with the library.

Example:  seapeft library --network swinunetr --feature-size 12 24 48
"""

from __future__ import annotations

from collections import Counter

from ..models import NetworkSpec, build_network, head_module_names, read_model_header
from ..peft import UnitRegistry, load_manifest


def add_arguments(parser) -> None:
    parser.add_argument("--weights", help="describe the network of this base model file")
    parser.add_argument("--network", default="swinunetr", choices=["swinunetr", "unet"])
    parser.add_argument("--feature-size", type=int, nargs="+", default=[12], help="SwinUNETR feature sizes")
    parser.add_argument("--manifest", help="manifest name or YAML file (default: the network's)")
    parser.add_argument("--budget-fraction", type=float, default=0.005)
    parser.add_argument("--families", action="store_true", help="also list the cost per family")


def _describe(spec: NetworkSpec, manifest: str | None, fraction: float, families: bool) -> None:
    network = build_network(spec)
    registry = UnitRegistry(network, load_manifest(manifest or spec.name), head_module_names(spec, network))
    budget = int(fraction * registry.backbone_parameters)
    label = f"{spec.name}" + (f" feature_size={spec.feature_size}" if spec.name == "swinunetr" else f" channels={spec.channels}")
    print(f"{label}: backbone {registry.backbone_parameters:,} parameters; manifest '{registry.manifest.name}': "
          f"{len(registry)} units on {len({u.site for u in registry})} sites; library cost {registry.total_cost():,} "
          f"(one level per group at most: {registry.max_concurrent_cost():,}); budget {fraction:.2%} = {budget:,}; "
          f"library / budget = {registry.total_cost() / budget:.1f}")
    if families:
        count, cost = Counter(), Counter()
        for unit in registry:
            count[unit.family] += 1
            cost[unit.family] += unit.cost
        for family in sorted(count):
            print(f"  {family:12s} {count[family]:4d} units  {cost[family]:>10,} parameters")


def run(args) -> int:
    if args.weights:
        spec, _ = read_model_header(args.weights)
        _describe(spec, args.manifest, args.budget_fraction, args.families)
        return 0
    if args.network == "unet":
        _describe(NetworkSpec(name="unet"), args.manifest, args.budget_fraction, args.families)
        return 0
    for size in args.feature_size:
        _describe(NetworkSpec(name="swinunetr", feature_size=size), args.manifest, args.budget_fraction, args.families)
    return 0
