"""Loading a base model for a task: the one loader of the command line, the benchmark and the app.

A SEA-PEFT model file (:mod:`.model_file`) knows its network and label names. Loading it for a task
with other labels re-creates the head at the task's class count and copies the rows of the labels
the base model already knows, matched by name ("zero-shot init"); new labels start fresh. Plain
weights (a state dict, a checkpoint, a MONAI bundle, Swin encoder weights: :mod:`.weights`) need the
network named and the task's labels; their head is taken when its class count fits.

The model also comes with its sliding window: the caller's patch, else the file's ``patch_size``,
else its pretraining recipe's, else 64^3, fitted to the network (:func:`~.patch.fit_patch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .factory import NetworkSpec, build_network, head_module_names
from .model_file import model_file_extras, read_model_file
from .patch import fit_patch
from .weights import LoadReport, WeightLoadError, load_pretrained

#: Window when neither the caller nor the model file gives one (fitted to the network).
DEFAULT_PATCH = (64, 64, 64)


@dataclass
class BaseModel:
    """A loaded base model: the network (weights in), its spec, head modules, task labels and the load report.

    ``base_labels`` are the file's own labels (None for plain weights); ``patch_size`` the fitted window;
    ``spacing`` the resampling the file asks for (None: each volume's own).
    """

    network: nn.Module
    spec: NetworkSpec
    head_names: list[str]
    labels: dict[str, int]
    base_labels: dict[str, int] | None
    report: LoadReport
    patch_size: tuple[int, int, int]
    spacing: tuple[float, float, float] | None = None

    @property
    def summary(self) -> str:
        """One paragraph for a log line: what was loaded from where."""
        return self.report.summary()

    @property
    def untrained_labels(self) -> list[str]:
        """Task labels whose head row starts at initialisation (the base model never learnt them): what the
        network predicts for them is noise until it is trained."""
        if not self.report.head_reinitialised:
            return []
        return [name for name, i in sorted(self.labels.items(), key=lambda kv: kv[1])
                if i not in self.report.copied_classes]

    @property
    def same_as_file(self) -> bool:
        """A SEA-PEFT model file whose own labels are the task's: its network is used unchanged."""
        return self.base_labels == self.labels


def _check_labels(labels: dict[str, int]) -> dict[str, int]:
    labels = {str(k): int(v) for k, v in labels.items()}
    if sorted(labels.values()) != list(range(len(labels))) or labels.get("background", 0) != 0:
        raise ValueError(f"labels must be numbered 0..K-1 with background 0, got {labels}")
    return labels


def load_base_model(path: str | Path, labels: dict[str, int] | None = None, *, network: str | NetworkSpec | None = None,
                    feature_size: int = 12, patch_size: tuple[int, int, int] | None = None,
                    seed: int = 0) -> BaseModel:
    """Build the network for ``labels`` and load the weights at ``path`` into it.

    Args:
        path: a SEA-PEFT model file, or (with ``network``) plain weights.
        labels: the task's ``{name: index}``; default the file's own (required for plain weights).
        network: ``None`` for a SEA-PEFT model file (it names its network), else the network of the plain
            weights (``unet``, ``swinunetr``) with ``feature_size``, or its whole :class:`NetworkSpec`.
        patch_size: the window to use (fitted to the network); default the file's (see the module docstring).
        seed: the network is built under it (the global RNG state is left as it was), so the head rows
            of labels the file does not know start from the same values in every run.

    Raises:
        WeightLoadError: missing or unreadable file, no spec/labels in it, or weights that do not fit.
        ValueError: ``labels`` not numbered 0..K-1 with background at 0, or missing for plain weights.
    """
    path = Path(path)
    if not path.exists():
        raise WeightLoadError(f"{path}: base model file not found")
    if network is None:
        try:
            extras = model_file_extras(read_model_file(path))
        except WeightLoadError as err:
            raise WeightLoadError(f"{err}; for plain weights name the network and give the label names") from None
        base_labels = {str(k): int(v) for k, v in extras["labels"].items()}
        spec = NetworkSpec.from_dict(extras["network"])
    else:
        if labels is None:
            raise ValueError("plain weights have no label names: give the task's labels with the network")
        extras, base_labels = {}, None
        spec = network if isinstance(network, NetworkSpec) else NetworkSpec(name=network, feature_size=feature_size)
    labels = _check_labels(base_labels if labels is None else labels)
    spec = NetworkSpec.from_dict({**spec.to_dict(), "out_channels": len(labels)})
    with torch.random.fork_rng(devices=[]):  # the network is built on the CPU: only the CPU generator
        torch.manual_seed(seed)
        net = build_network(spec)
    heads = head_module_names(spec, net)
    label_map = None
    if base_labels is not None and labels != base_labels:
        label_map = {i: base_labels[name] for name, i in labels.items() if name in base_labels}
    report = load_pretrained(net, path, head_names=heads, label_map=label_map)
    recipe = (extras.get("pretraining") or {}).get("recipe") or {}  # what `seapeft pretrain` records
    patch = patch_size or extras.get("patch_size") or recipe.get("patch_size") or DEFAULT_PATCH
    spacing = extras.get("spacing")
    return BaseModel(net, spec, heads, labels, base_labels, report, fit_patch(tuple(patch), spec),
                     tuple(float(s) for s in spacing) if spacing else None)
