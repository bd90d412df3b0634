"""Pretrain the base model on the phantom source site (reproducible: data, seed and recipe in the model card).

Example (the shipped default base model):
  seapeft pretrain --network unet --out sample-data/base_model --subjects 24 --steps 1000 --seed 0 --threads 1
Writes model.pt, MODEL_CARD.md, training_log.jsonl and training_curve.png into --out (atomically).
"""

from __future__ import annotations

import shlex

import torch

from ..training import PretrainRecipe, pretrain
from .common import ProgressBar

_DEFAULTS = PretrainRecipe()


def add_arguments(parser) -> None:
    parser.add_argument("--network", choices=["unet", "swinunetr"], default=_DEFAULTS.network,
                        help="backbone (default unet: UNet channels 16,32,64,128, strides 2,2,2, 2 residual units)")
    parser.add_argument("--feature-size", type=int, default=_DEFAULTS.feature_size, help="SwinUNETR feature size (default 12)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--subjects", type=int, default=_DEFAULTS.train_subjects, help="source-site training subjects")
    parser.add_argument("--test-subjects", type=int, default=_DEFAULTS.test_subjects, help="held-out source-site test subjects")
    parser.add_argument("--target-subjects", type=int, default=_DEFAULTS.target_subjects,
                        help="target-site subjects for the before-adaptation Dice")
    parser.add_argument("--data-seed", type=int, default=_DEFAULTS.data_seed, help="seed of the generated subjects")
    parser.add_argument("--steps", type=int, default=_DEFAULTS.steps, help="training steps")
    parser.add_argument("--patch", type=int, nargs="+", help="patch size, one value or three (default 48; 64 for swinunetr)")
    parser.add_argument("--batch", type=int, default=_DEFAULTS.patches_per_step, help="patches per step")
    parser.add_argument("--lr", type=float, default=_DEFAULTS.lr, help="peak learning rate (AdamW)")
    parser.add_argument("--eval-every", type=int, default=_DEFAULTS.eval_every, help="test Dice every N steps (curve)")
    parser.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="seed of initialisation and patches")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a busy 2-core machine)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default: CUDA when present)")


def recipe_from_args(args) -> PretrainRecipe:
    if args.patch:
        if len(args.patch) not in (1, 3):
            raise ValueError("--patch takes one value or three")
        patch = tuple(args.patch * 3 if len(args.patch) == 1 else args.patch)
    else:
        patch = (64, 64, 64) if args.network == "swinunetr" else _DEFAULTS.patch_size
    return PretrainRecipe(network=args.network, feature_size=args.feature_size, train_subjects=args.subjects,
                          test_subjects=args.test_subjects, target_subjects=args.target_subjects,
                          data_seed=args.data_seed, steps=args.steps, patch_size=patch, patches_per_step=args.batch,
                          lr=args.lr, eval_every=args.eval_every, seed=args.seed)


def command_line(recipe: PretrainRecipe, out: str, threads: int | None = None) -> str:
    """The full command that reproduces ``recipe`` (every setting explicit, defaults included)."""
    parts = ["seapeft", "pretrain", "--network", recipe.network]
    if recipe.network == "swinunetr":
        parts += ["--feature-size", str(recipe.feature_size)]
    parts += ["--out", str(out), "--subjects", str(recipe.train_subjects), "--test-subjects", str(recipe.test_subjects),
              "--target-subjects", str(recipe.target_subjects), "--data-seed", str(recipe.data_seed),
              "--steps", str(recipe.steps), "--patch", *map(str, recipe.patch_size), "--batch",
              str(recipe.patches_per_step), "--lr", f"{recipe.lr:g}", "--eval-every", str(recipe.eval_every),
              "--seed", str(recipe.seed)]
    if threads:
        parts += ["--threads", str(threads)]
    return " ".join(shlex.quote(p) for p in parts)


def run(args) -> int:
    recipe = recipe_from_args(args)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    command = command_line(recipe, args.out, args.threads)
    bar = ProgressBar()
    try:
        result = pretrain(recipe, args.out, command, progress=bar, device=args.device)
    finally:
        bar.close()
    dice = ", ".join(f"{k} {100 * v:.1f}" for k, v in result.source_dice.items())
    target = ", ".join(f"{k} {100 * v:.1f}" for k, v in result.target_dice.items())
    print(f"pretrained {result.spec.name} ({result.parameters:,} parameters) in {result.seconds / 60:.1f} min")
    print(f"source-site test Dice: {dice}")
    print(f"target-site Dice before adaptation: {target}")
    print(f"outputs in {result.out_dir}")
    return 0
