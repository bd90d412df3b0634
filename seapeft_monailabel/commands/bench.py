"""Benchmark SEA-PEFT against fixed baselines (head, full, BitFit, SSF, LoRA, AdaptFormer, SALT, AdaLoRA, decoder,
random sets of equal cost) on held-out target-site volumes at 1, 5 and 10 shots over several folds.

Examples:
  seapeft bench --preset cpu --out .work/bench-cpu          (the shipped UNet base model, 2 CPU cores)
  seapeft bench --preset real --out .work/bench-real        (real heads with brain masks from registry packages,
                                                             leave one subject out; see seapeft real-data)
  seapeft pretrain --network swinunetr --out .work/base_model_swinunetr --steps 4000 --batch 2 --device cuda
  seapeft bench --preset gpu --weights .work/base_model_swinunetr/model.pt --out .work/bench-gpu
  seapeft bench --preset cpu --shots 5 10 --folds 2 --data-seed 7001 --methods --set audit_patches=8 --out .work/dev
                                                             (a development trial: SEA-PEFT only, other volumes)
Each target site of the preset is one regime (cpu and gpu: the MR-like `target` and the CT-like `target_ct`):
--out/<site>/ holds its results.json (every run), results.md (tables, goals) and results.png (Dice by method
and shot), its runs under --out/<site>/runs/; --out/results.md puts the regimes side by side. Re-running
the same command resumes.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ..evaluate.bench import run_bench
from ..evaluate.bench_presets import (
    ALL_METHODS,
    BENCH_PRESETS,
    DEFAULT_WEIGHTS,
    bench_preset,
)
from .common import ProgressBar, add_set_argument, run_settings


def add_arguments(parser) -> None:
    parser.add_argument("--preset", default="cpu", choices=list(BENCH_PRESETS), help="bench preset (default cpu)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS, help=f"base model file (default {DEFAULT_WEIGHTS})")
    parser.add_argument("--methods", nargs="*", choices=ALL_METHODS,
                        help="fixed baselines (default: the preset's; the option alone: SEA-PEFT only)")
    parser.add_argument("--shots", type=int, nargs="+", help="shot counts (default: the preset's)")
    parser.add_argument("--folds", type=int, help="folds per shot count")
    parser.add_argument("--sites", nargs="+", help="target sites, one regime each (default: the preset's)")
    parser.add_argument("--workers", type=int, help="runs at once, one process each")
    parser.add_argument("--threads", type=int, help="torch threads per process")
    parser.add_argument("--steps", type=int, help="search steps of every run (fixed methods: the same, plus refine)")
    parser.add_argument("--budget-fraction", type=float,
                        help="SEA-PEFT's parameter budget as a fraction of the backbone (default 0.005)")
    parser.add_argument("--manifest", help="SEA-PEFT's unit library, also the random sets' (name or YAML file; "
                        "default: the network's)")
    parser.add_argument("--data-seed", type=int,
                        help="generator seed of the bench volumes (another seed than the preset's for development)")
    add_set_argument(parser)
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")


def bench_from_args(args):
    changes = {}
    for arg in ("methods", "shots", "sites"):
        if getattr(args, arg) is not None:
            changes[arg] = tuple(getattr(args, arg))
    for arg in ("folds", "workers", "threads", "data_seed", "manifest"):
        if getattr(args, arg) is not None:
            changes[arg] = getattr(args, arg)
    bench = bench_preset(args.preset, **changes)
    run_changes = {"max_steps": args.steps, "budget_fraction": args.budget_fraction}
    run_changes = {k: v for k, v in run_changes.items() if v is not None}
    run_changes.update(run_settings(args.settings, bench.run_preset))
    return bench.with_(run_changes={**bench.run_changes, **run_changes}) if run_changes else bench


def command_line(args) -> str:
    parts = ["seapeft", "bench", "--preset", args.preset, "--out", str(args.out)]
    if args.weights != DEFAULT_WEIGHTS:
        parts += ["--weights", str(args.weights)]
    for arg in ("methods", "shots", "sites"):
        if getattr(args, arg) is not None:
            parts += [f"--{arg}", *map(str, getattr(args, arg))]
    for arg in ("folds", "workers", "threads", "steps", "budget_fraction", "data_seed", "manifest"):
        if getattr(args, arg) is not None:
            parts += [f"--{arg.replace('_', '-')}", str(getattr(args, arg))]
    for item in args.settings or []:
        parts += ["--set", item]
    if args.device != "auto":
        parts += ["--device", args.device]
    return " ".join(shlex.quote(p) for p in parts)


def run(args) -> int:
    bench = bench_from_args(args)
    bar = ProgressBar()
    try:
        results = run_bench(bench, args.weights, args.out, device=args.device, command=command_line(args), progress=bar)
    finally:
        bar.close()
    print((Path(args.out) / "results.md").read_text())
    for site, regime in results["regimes"].items():
        goals = regime["summary"]["goals"]
        if "gap" in goals:
            print(f"{site}: SEA-PEFT {goals['sea_peft_mean']:.1f} vs {goals['strongest_peft']} "
                  f"{goals['strongest_peft_mean']:.1f} ({goals['gap']:+.1f} points)")
    print(f"outputs in {args.out}")
    return 0
