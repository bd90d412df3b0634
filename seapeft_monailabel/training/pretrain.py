"""Pretrain a base model on the source site of the phantom generator, reproducibly.

Data recipe: ``train_subjects`` subjects of the source site (indices ``0..N-1`` of ``data_seed``) for
training, ``test_subjects`` more (indices ``N..N+T-1``, never trained on) for the source-site test
Dice, and ``target_subjects`` subjects of the target site (``target_seed``) to show what the base model
does on the new site before any adaptation: it knows the seen structure (liver) but not the novel one
(gallbladder, whose head row starts untrained). Subjects are generated on the fly into a temporary
folder and read through the same MONAI transforms as every other stage.

Training: fresh random patches every step (half centred on foreground, :class:`PatchStream`), MONAI
``DiceCELoss`` on softmax outputs, AdamW with a linear warm-up and a cosine decay to zero. The test
Dice is measured every ``eval_every`` steps for the training curve (no checkpoint is selected on it:
the final weights are saved) and at the end, with MONAI sliding-window inference (Gaussian).

Output (written atomically into ``out_dir``): ``model.pt`` (``seapeft-merged/1``, with the recipe
and results under ``pretraining``), ``training_log.jsonl``, ``training_curve.png``, ``MODEL_CARD.md``.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss

from ..atomic import staged_folder
from ..data.datastore import subject_id, write_subject
from ..data.phantoms import generate
from ..data.sites import get_site
from ..devices import resolve_device
from ..evaluate.machine import machine_info
from ..evaluate.sliding import evaluate_volumes
from ..models import NetworkSpec, build_network, count_parameters, load_base_model, save_model_file, spatial_multiple
from ..models.patch import SWIN_MIN_LARGEST
from ..search.patches import PatchStream
from .model_card import draw_training_curve, write_model_card

Progress = Callable[[str, int, int, dict], None]


@dataclass(frozen=True)
class PretrainRecipe:
    """Everything that determines the base model (with the code version)."""

    network: str = "unet"
    feature_size: int = 12
    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2)
    num_res_units: int = 2
    site: str = "source"
    data_seed: int = 1001
    train_subjects: int = 24
    test_subjects: int = 4
    target_site: str = "target"
    target_seed: int = 1002
    target_subjects: int = 4
    steps: int = 1000
    patch_size: tuple[int, int, int] = (48, 48, 48)
    patches_per_step: int = 4
    lr: float = 2e-3
    warmup_steps: int = 50
    eval_every: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("train_subjects", "test_subjects", "target_subjects", "steps", "patches_per_step", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"PretrainRecipe.{name} must be >= 1 (got {getattr(self, name)})")
        if self.lr <= 0:
            raise ValueError(f"PretrainRecipe.lr must be > 0 (got {self.lr})")
        spec = self.spec(2)
        multiple = spatial_multiple(spec)
        if len(self.patch_size) != 3 or any(p % multiple for p in self.patch_size):
            raise ValueError(f"patch size {tuple(self.patch_size)} must be 3 multiples of {multiple} for a {spec.name}")
        if spec.name == "swinunetr" and max(self.patch_size) < SWIN_MIN_LARGEST:
            raise ValueError(f"SwinUNETR needs a patch of at least {SWIN_MIN_LARGEST} voxels along one axis "
                             "(e.g. 64 64 64)")

    def spec(self, out_channels: int) -> NetworkSpec:
        """The network to train, with ``out_channels`` classes."""
        return NetworkSpec(name=self.network, out_channels=out_channels, feature_size=self.feature_size,
                           channels=tuple(self.channels), strides=tuple(self.strides),
                           num_res_units=self.num_res_units)

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("channels", "strides", "patch_size"):
            data[key] = list(data[key])
        return data


@dataclass
class PretrainResult:
    """What the pretraining measured and wrote."""

    recipe: PretrainRecipe
    spec: NetworkSpec
    labels: dict[str, int]
    parameters: int
    seconds: float
    source_dice: dict[str, float]
    source_dice_volumes: list[list[float]]
    target_labels: dict[str, int]
    target_dice: dict[str, float]
    target_dice_volumes: list[list[float]]
    machine: dict
    out_dir: str
    files: dict[str, str] = field(default_factory=dict)


def write_subjects(root: str | Path, site: str, seed: int, indices: Sequence[int]) -> list[dict]:
    """Generate subjects ``indices`` of ``site`` with ``seed`` and write them as a datastore in ``root``."""
    return [write_subject(root, subject_id(site, i), generate(site, seed, i)) for i in indices]


def mean_dice(volumes: list[list[float]], labels: dict[str, int]) -> dict[str, float]:
    """``{structure: mean Dice over volumes, ..., "mean": mean over structures}`` from per-volume lists."""
    names = [n for n, _ in sorted(labels.items(), key=lambda kv: kv[1]) if n != "background"]
    scores = np.asarray(volumes, dtype=float).mean(axis=0)
    out = {name: float(s) for name, s in zip(names, scores)}
    out["mean"] = float(scores.mean())
    return out


def _lr(recipe: PretrainRecipe, step: int) -> float:
    if step < recipe.warmup_steps:
        return recipe.lr * (0.05 + 0.95 * step / recipe.warmup_steps)
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _train(network: torch.nn.Module, recipe: PretrainRecipe, train_items: list[dict], test_items: list[dict],
           labels: dict[str, int], log: list[dict], progress: Progress | None, started: float,
           device: torch.device) -> None:
    """Train ``network`` in place for ``recipe.steps`` steps, appending train and eval records to ``log``."""
    stream = iter(PatchStream(train_items, recipe.patch_size, recipe.patches_per_step, recipe.seed))
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.AdamW(network.parameters(), lr=recipe.lr, weight_decay=1e-5)
    for step in range(recipe.steps):
        network.train()
        for group in optimizer.param_groups:
            group["lr"] = _lr(recipe, step)
        image, label = next(stream)
        loss = loss_fn(network(image.to(device)), label.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        record = {"event": "train", "step": step + 1, "loss": round(float(loss.detach()), 5),
                  "lr": round(optimizer.param_groups[0]["lr"], 7), "seconds": round(time.monotonic() - started, 2)}
        log.append(record)
        if (step + 1) % recipe.eval_every == 0 and step + 1 < recipe.steps:
            volumes = evaluate_volumes(network, test_items, recipe.patch_size, len(labels), device=device)
            dice = mean_dice(volumes, labels)
            log.append({"event": "eval", "step": step + 1, "dice": dice,
                        "seconds": round(time.monotonic() - started, 2)})
        if progress is not None:
            progress("pretrain", step + 1, recipe.steps, {"loss": record["loss"]})


def pretrain(recipe: PretrainRecipe, out_dir: str | Path, command: str, progress: Progress | None = None,
             device: str = "auto") -> PretrainResult:
    """Train the base model of ``recipe``, evaluate it, and write model, log, curve and card into ``out_dir``.

    ``command`` is the command line that reproduces the run; it goes into the model card. ``device``:
    ``cpu``, ``cuda``, ``cuda:1`` or ``auto`` (CUDA when present).
    """
    started = time.monotonic()
    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)
    labels = dict(get_site(recipe.site).label_names)
    target_labels = dict(get_site(recipe.target_site).label_names)
    spec = recipe.spec(len(labels))
    device = resolve_device(device)
    network = build_network(spec).to(device)
    log: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="seapeft-pretrain-") as tmp:
        tmp = Path(tmp)
        n, t = recipe.train_subjects, recipe.test_subjects
        train_items = write_subjects(tmp / "train", recipe.site, recipe.data_seed, range(n))
        test_items = write_subjects(tmp / "test", recipe.site, recipe.data_seed, range(n, n + t))
        target_items = write_subjects(tmp / "target", recipe.target_site, recipe.target_seed,
                                      range(recipe.target_subjects))
        _train(network, recipe, train_items, test_items, labels, log, progress, started, device)
        source_volumes = evaluate_volumes(network, test_items, recipe.patch_size, len(labels), device=device)
        source_dice = mean_dice(source_volumes, labels)
        log.append({"event": "eval", "step": recipe.steps, "dice": source_dice,
                    "seconds": round(time.monotonic() - started, 2)})
        state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
        save_model_file(tmp / "model.pt", state, spec, labels)
        on_target = load_base_model(tmp / "model.pt", target_labels)
        target_volumes = evaluate_volumes(on_target.network.to(device), target_items, recipe.patch_size,
                                          len(target_labels), device=device)
        target_dice = mean_dice(target_volumes, target_labels)
    seconds = time.monotonic() - started
    result = PretrainResult(recipe, spec, labels, count_parameters(network), seconds, source_dice, source_volumes,
                            target_labels, target_dice, target_volumes, machine_info(device), str(out_dir))
    summary = {"recipe": recipe.to_dict(), "command": command, "seconds": round(seconds, 1),
               "source_test_dice": source_dice, "target_dice": target_dice, "machine": result.machine}
    with staged_folder(out_dir) as staging:
        save_model_file(staging / "model.pt", state, spec, labels, pretraining=summary)
        (staging / "training_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log), encoding="utf-8")
        draw_training_curve(log, staging / "training_curve.png", labels,
                            title=f"{spec.name} pretrained on the {recipe.site} site")
        write_model_card(staging / "MODEL_CARD.md", result, command, staging / "model.pt")
        result.files = {name: name for name in ("model.pt", "training_log.jsonl", "training_curve.png", "MODEL_CARD.md")}
    return result
