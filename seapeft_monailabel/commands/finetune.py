"""Fine-tune a fixed unit set (a baseline) through the same training code as SEA-PEFT.

Methods: head, full, decoder, bitfit, ssf, lora, adaptformer, salt, adalora, random (needs --target-cost).
Example:
  seapeft finetune --method lora --images sample-data --weights sample-data/base_model/model.pt --out runs/lora
"""

from __future__ import annotations

from ..search import FIXED_METHODS, run_fixed
from .common import (ProgressBar, add_data_arguments, add_model_arguments, add_run_arguments, config_from_args,
                     datalist_from_args, model_from_args, steps_summary)


def add_arguments(parser) -> None:
    parser.add_argument("--method", required=True, choices=FIXED_METHODS)
    parser.add_argument("--target-cost", type=int, help="parameter count of the random set (method random)")
    add_data_arguments(parser)
    add_model_arguments(parser)
    add_run_arguments(parser)


def run(args) -> int:
    config = config_from_args(args)
    items = datalist_from_args(args)
    network, spec, heads, labels = model_from_args(args)
    bar = ProgressBar()
    try:
        result = run_fixed(items, network, method=args.method, spec=spec, head_names=heads, labels=labels,
                           config=config, out_dir=args.out, target_cost=args.target_cost, progress=bar)
    finally:
        bar.close()
    print(f"{args.method}: {len(result.units)} units, {result.cost} parameters "
          f"({100 * result.cost / result.backbone_parameters:.3f} % of {result.backbone_parameters}); "
          f"{result.shots}-shot, selection Dice {result.selection_dice:.4f}; "
          f"{steps_summary(result, config)} in {result.seconds:.0f} s; outputs in {result.out_dir}")
    return 0
