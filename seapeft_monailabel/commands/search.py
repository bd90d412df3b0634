"""Run SEA-PEFT: search, audit and allocate PEFT units under a budget, then refine the chosen set.

Example:
  seapeft search --images sample-data --weights sample-data/base_model/model.pt --out runs/search --shots 4
Writes config.yaml, adapters.pt, model.pt (merged), events.jsonl and report.png into --out.
"""

from __future__ import annotations

from ..search import run_search
from .common import (ProgressBar, add_data_arguments, add_model_arguments, add_run_arguments, config_from_args,
                     datalist_from_args, model_from_args)


def add_arguments(parser) -> None:
    add_data_arguments(parser)
    add_model_arguments(parser)
    add_run_arguments(parser)
    parser.add_argument("--manifest", help="unit library: a shipped manifest name or a YAML file (default: the network's)")


def run(args) -> int:
    config = config_from_args(args)
    items = datalist_from_args(args)
    network, spec, heads, labels = model_from_args(args)
    bar = ProgressBar()
    try:
        result = run_search(items, network, spec=spec, head_names=heads, labels=labels, config=config,
                            out_dir=args.out, manifest=args.manifest, progress=bar)
    finally:
        bar.close()
    print(f"SEA-PEFT chose {len(result.chosen)} units, {result.cost} of {result.budget} parameters "
          f"({100 * result.cost / result.backbone_parameters:.3f} % of {result.backbone_parameters}); "
          f"audit Dice {result.selection_dice:.4f} (head only {result.head_only_dice:.4f}); "
          f"{result.steps} steps in {result.seconds:.0f} s ({result.stop_reason})")
    for name, cost in result.unit_costs.items():
        print(f"  {name}  {cost}")
    print(f"outputs in {result.out_dir}")
    return 0
