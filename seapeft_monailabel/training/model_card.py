"""The model card and training curve written beside a pretrained base model (all figures measured, none typed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..data.sites import get_site
from ..evaluate.machine import describe_machine
from ..figures import plt, save_figure
from ..models import file_sha256

if TYPE_CHECKING:
    from .pretrain import PretrainResult


def draw_training_curve(log: list[dict], png_path: str | Path, labels: dict[str, int], title: str) -> Path:
    """Training loss (raw and smoothed over 50 steps) and held-out test Dice per structure, against steps."""
    train = [r for r in log if r["event"] == "train"]
    evals = [r for r in log if r["event"] == "eval"]
    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(11, 4))
    steps = np.array([r["step"] for r in train])
    loss = np.array([r["loss"] for r in train])
    ax_loss.plot(steps, loss, color="0.75", lw=0.6, label="loss")
    if len(loss) >= 50:
        smooth = np.convolve(loss, np.ones(50) / 50, mode="valid")
        ax_loss.plot(steps[49:], smooth, color="C0", lw=1.5, label="mean of 50 steps")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("Dice + cross-entropy loss")
    ax_loss.set_title("training loss")
    ax_loss.legend()
    names = [n for n, _ in sorted(labels.items(), key=lambda kv: kv[1]) if n != "background"] + ["mean"]
    eval_steps = [r["step"] for r in evals]
    for i, name in enumerate(names):
        ax_dice.plot(eval_steps, [r["dice"][name] for r in evals], marker="o", ms=3,
                     lw=2.5 if name == "mean" else 1, color="k" if name == "mean" else f"C{i}", label=name)
    ax_dice.set_xlabel("step")
    ax_dice.set_ylabel("Dice (held-out test volumes)")
    ax_dice.set_ylim(0, 1)
    ax_dice.set_title("source-site test Dice")
    ax_dice.legend(fontsize=7, ncol=2)
    return save_figure(fig, title, png_path, dpi=110)


def _dice_table(dice: dict[str, float], note: dict[str, str] | None = None) -> list[str]:
    note = note or {}
    rows = ["| structure | Dice |", "|---|---|"]
    rows += [f"| {name}{note.get(name, '')} | {100 * value:.1f} |" for name, value in dice.items()]
    return rows


def write_model_card(path: str | Path, result: PretrainResult, command: str, model_path: str | Path) -> Path:
    """Write ``MODEL_CARD.md`` for ``result``: command, recipe, machine, time, curve, Dice, checksum."""
    r = result.recipe
    spec = result.spec
    size_mb = Path(model_path).stat().st_size / 1e6
    if spec.name == "unet":
        arch = (f"MONAI `UNet` (3D), channels {list(spec.channels)}, strides {list(spec.strides)}, "
                f"{spec.num_res_units} residual units per block, instance norm, PReLU")
    else:
        arch = f"MONAI `SwinUNETR` (3D), feature size {spec.feature_size}{', v2' if spec.use_v2 else ''}"
    target = get_site(r.target_site)
    notes = {name: " (seen at the source site)" for name in target.seen}
    notes.update({name: " (novel: never labelled at the source site)" for name in target.novel})
    n, t = r.train_subjects, r.test_subjects
    lines = [
        f"# Base model: {spec.name} pretrained on the phantom `{r.site}` site",
        "",
        "Written by `seapeft pretrain`; every figure below was measured by that command.",
        "",
        "## Reproduce",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- Machine: {describe_machine(result.machine)}",
        f"- Wall time: {result.seconds / 60:.1f} min ({result.seconds:.0f} s), including data generation and evaluation",
        f"- File: `model.pt`, {size_mb:.1f} MB, SHA-256 `{file_sha256(model_path)}`",
        "",
        "## Network",
        "",
        f"- {arch}",
        f"- {result.parameters:,} parameters; {len(result.labels)} output classes: "
        + ", ".join(f"{i} {name}" for name, i in sorted(result.labels.items(), key=lambda kv: kv[1])),
        "- Load it with `seapeft_monailabel.models.load_base_model(path, labels)`; for other labels the head is "
        "re-created and the rows of labels it knows (matched by name) are copied.",
        "",
        "## Data recipe",
        "",
        f"- Training: {n} subjects of the `{r.site}` site generated with seed {r.data_seed}, indices 0..{n - 1} "
        f"(`seapeft_monailabel.data.generate(\"{r.site}\", {r.data_seed}, i)`), native spacing.",
        f"- Source test: {t} more subjects of the same seed, indices {n}..{n + t - 1}, never trained on.",
        f"- Target check: {r.target_subjects} subjects of the `{r.target_site}` site, seed {r.target_seed}, "
        f"indices 0..{r.target_subjects - 1}.",
        "- Intensities: each volume's 0.5..99.5 percentiles mapped to [0, 1] (the project's transforms).",
        "",
        "## Training",
        "",
        f"- {r.steps} steps of {r.patches_per_step} random patches of {'x'.join(map(str, r.patch_size))} voxels "
        "(half centred on foreground, fresh crops every step, light intensity augmentation).",
        f"- MONAI `DiceCELoss` (softmax), AdamW lr {r.lr:g} (weight decay 1e-5), {r.warmup_steps} warm-up steps, "
        f"cosine decay to 0; seed {r.seed}. Test Dice every {r.eval_every} steps (for the curve only; the final "
        "weights are saved).",
        "",
        "![training curve](training_curve.png)",
        "",
        "The raw log is `training_log.jsonl` (one JSON line per step and per evaluation).",
        "",
        f"## Source-site test Dice ({t} held-out volumes)",
        "",
        "Sliding-window inference (MONAI, Gaussian blending, overlap 0.25, window = patch size), argmax, "
        "Dice = 2TP / (|P| + |G|) per volume, mean over volumes, x 100.",
        "",
        *_dice_table(result.source_dice),
        "",
        f"## Target-site Dice before any adaptation ({r.target_subjects} `{r.target_site}` volumes)",
        "",
        f"The model loaded for the target labels {result.target_labels}: the liver row of the head is copied "
        "from the base model; the gallbladder row is fresh, so the base model cannot segment it. This is "
        "the starting point that few-shot adaptation (SEA-PEFT) improves on.",
        "",
        *_dice_table(result.target_dice, notes),
        "",
    ]
    path = Path(path)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
