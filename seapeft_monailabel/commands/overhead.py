"""Measure the audit overhead: one SEA-PEFT search against the same number of LoRA baseline steps.

Example:  seapeft overhead --images sample-data --weights sample-data/base_model/model.pt --preset tiny
Prints both wall times and their ratio, measured one after the other in one run, the search's seconds per
stage (from its events log) and both runs' Dice on the selection patches.
"""

from __future__ import annotations

from ..evaluate.overhead import measure_overhead
from .common import (add_data_arguments, add_model_arguments, add_run_arguments, add_set_argument, config_from_args,
                     datalist_from_args, model_from_args, run_settings)


def add_arguments(parser) -> None:
    add_data_arguments(parser)
    add_model_arguments(parser)
    add_run_arguments(parser, with_out=False, default_preset="tiny")
    add_set_argument(parser)


def run(args) -> int:
    config = config_from_args(args)
    config = config.with_(**run_settings(args.settings, args.preset))
    items = datalist_from_args(args)
    labels = model_from_args(args)[3]

    def make_model():
        network, spec, heads, _ = model_from_args(args)
        return network, spec, heads

    result = measure_overhead(items, make_model, labels, config)
    print(f"SEA-PEFT search: {result.search_seconds:.1f} s; LoRA baseline, same {result.steps} steps: "
          f"{result.lora_seconds:.1f} s; audit overhead ratio {result.ratio:.2f}x")
    print(f"search split: {result.split_line()}")
    print(f"audit: {result.audit_line()}")
    print(f"steps: {result.step_line()}")
    print(f"selection Dice (soft, selection patches): SEA-PEFT {result.selection_dice[0]:.4f}, "
          f"LoRA {result.selection_dice[1]:.4f}")
    return 0
