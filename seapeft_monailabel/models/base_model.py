"""Loading a base model file that knows its own network and label names.

A base model file (``seapeft-merged/1``, what ``seapeft pretrain`` and every SEA-PEFT run write) holds
``{"network": NetworkSpec dict, "labels": {name: index}, "state_dict": ...}``. Loading it for a task
with other labels re-creates the head at the task's class count and copies the rows of the labels
the base model already knows, matched by name ("zero-shot init"); new labels start fresh.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .factory import NetworkSpec, build_network, head_module_names
from .weights import LoadReport, WeightLoadError, load_pretrained


MODEL_FORMAT = "seapeft-merged/1"


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (read in 1 MiB blocks): the identity of a model file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model_file(path: str | Path, state_dict: dict[str, torch.Tensor], spec: NetworkSpec, labels: dict[str, int],
                    unmerged_units: list[dict] | None = None, **extra) -> None:
    """Write a model file: format tag, network spec, label names, units left unmerged, the state dict."""
    torch.save({"format": MODEL_FORMAT, "network": spec.to_dict(), "labels": dict(labels),
                "unmerged_units": list(unmerged_units or []), **extra, "state_dict": state_dict}, path)


@dataclass
class BaseModel:
    """A loaded base model: the network (weights in), its spec, head modules, task labels and the load report."""

    network: nn.Module
    spec: NetworkSpec
    head_names: list[str]
    labels: dict[str, int]
    base_labels: dict[str, int]
    report: LoadReport


def read_model_header(path: str | Path) -> tuple[NetworkSpec, dict[str, int]]:
    """The network spec and label names stored in a base model file."""
    path = Path(path)
    if not path.is_file():
        raise WeightLoadError(f"{path}: base model file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightLoadError(f"{path}: not a readable model file ({type(err).__name__})") from None
    if not isinstance(data, dict) or "network" not in data or "labels" not in data:
        raise WeightLoadError(f"{path}: not a seapeft model file (no 'network' and 'labels'); "
                              "for a plain state dict give --network and --label-names")
    return NetworkSpec.from_dict(data["network"]), {str(k): int(v) for k, v in data["labels"].items()}


def load_base_model(path: str | Path, labels: dict[str, int] | None = None, seed: int = 0) -> BaseModel:
    """Build the file's network for ``labels`` (default: the file's own) and load its weights.

    The network is built under ``seed`` (the global RNG state is left as it was), so the head rows of
    labels the file does not know start from the same values in every run: two runs on the same data
    and settings train the same network.

    Raises:
        WeightLoadError: missing or unreadable file, no spec/labels in it, or weights that do not fit.
        ValueError: ``labels`` not numbered 0..K-1 with background at 0.
    """
    spec, base_labels = read_model_header(path)
    labels = dict(base_labels if labels is None else labels)
    if sorted(labels.values()) != list(range(len(labels))) or labels.get("background", 0) != 0:
        raise ValueError(f"labels must be numbered 0..K-1 with background 0, got {labels}")
    spec = NetworkSpec.from_dict({**spec.to_dict(), "out_channels": len(labels)})
    with torch.random.fork_rng(devices=[]):  # the network is built on the CPU: only the CPU generator
        torch.manual_seed(seed)
        network = build_network(spec)
    heads = head_module_names(spec, network)
    same = labels == base_labels
    label_map = None if same else {i: base_labels[name] for name, i in labels.items() if name in base_labels}
    report = load_pretrained(network, path, head_names=heads, label_map=label_map)
    return BaseModel(network, spec, heads, labels, base_labels, report)
