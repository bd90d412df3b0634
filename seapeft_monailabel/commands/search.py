"""Run SEA-PEFT: search, audit and allocate PEFT units under a budget, then refine the chosen set.

Example:
  seapeft search --images sample-data --weights sample-data/base_model/model.pt --out runs/search --shots 4
Writes config.yaml, adapter_config.json + adapter_model.safetensors, model.pt (merged), events.jsonl and report.png into --out.
"""

from __future__ import annotations

import os
import subprocess
import sys

from ..search import run_search
from .common import (ProgressBar, add_data_arguments, add_model_arguments, add_run_arguments, config_from_args,
                     datalist_from_args, model_from_args, steps_summary)


def add_arguments(parser) -> None:
    add_data_arguments(parser)
    add_model_arguments(parser)
    add_run_arguments(parser)
    parser.add_argument("--manifest", help="unit library: a shipped manifest name or a YAML file (default: the network's)")
    parser.add_argument("--nproc", type=int, default=1,
                        help="processes on this machine (one per GPU; Gloo on CPUs): relaunches itself under torchrun")


def _relaunch(nproc: int) -> int:
    """Run this same command under ``torchrun --standalone --nproc_per_node nproc`` and return its status."""
    argv = sys.argv[1:]
    cleaned, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if not arg.startswith("--nproc="):
            cleaned.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "seapeft_monailabel.cli", *cleaned]
    return subprocess.call(command)


def run(args) -> int:
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _relaunch(args.nproc)
    config = config_from_args(args)
    items = datalist_from_args(args)
    network, spec, heads, labels = model_from_args(args)
    bar = ProgressBar()
    try:
        result = run_search(items, network, spec=spec, head_names=heads, labels=labels, config=config,
                            out_dir=args.out, manifest=args.manifest, progress=bar)
    finally:
        bar.close()
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(f"SEA-PEFT chose {len(result.units)} units, {result.cost} of {result.budget} parameters "
          f"({100 * result.cost / result.backbone_parameters:.3f} % of {result.backbone_parameters}); "
          f"{result.shots}-shot, selection Dice {result.selection_dice:.4f} (head only {result.head_only_dice:.4f}); "
          f"{steps_summary(result, config)} in {result.seconds:.0f} s (search: {result.stop_reason})")
    for name, cost in result.unit_costs.items():
        print(f"  {name}  {cost}")
    print(f"outputs in {result.out_dir}")
    return 0
