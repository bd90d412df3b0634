"""The model file format ``seapeft-merged/1``: what ``seapeft pretrain`` and every SEA-PEFT run write.

One ``torch.save`` dict (tensors and plain values only, so it loads with ``weights_only=True``)::

    {"format": "seapeft-merged/1", "network": NetworkSpec dict, "labels": {name: index},
     "unmerged_units": [{"site", "family", "level"}, ...], ...extras..., "state_dict": {...}}

``unmerged_units`` are the PEFT units that could not be merged into the weights (their tensors are in
the state dict under the units' own names); extras are what the writer adds (``pretraining``,
``patch_size``, ``spacing``). Files are written atomically. Rebuilding a network with its unmerged
units is :func:`seapeft_monailabel.peft.load_merged_model`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..atomic import atomic_path
from .factory import NetworkSpec
from .weights import WeightLoadError, read_checkpoint

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
    """Write a model file atomically: format tag, network spec, label names, units left unmerged, extras, weights."""
    data = {"format": MODEL_FORMAT, "network": spec.to_dict(), "labels": dict(labels),
            "unmerged_units": list(unmerged_units or []), **extra, "state_dict": state_dict}
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def read_model_file(path: str | Path) -> dict:
    """The whole dict of a model file (tensors on the CPU).

    Raises:
        WeightLoadError: missing or unreadable file, or not a ``seapeft-merged/1`` file.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightLoadError(f"{path}: model file not found")
    data = read_checkpoint(path)
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise WeightLoadError(f"{path}: not a SEA-PEFT model file (expected format {MODEL_FORMAT})")
    return data


def model_file_extras(data: dict) -> dict:
    """Everything a model file's dict holds besides the weights (format, network, labels, units, extras)."""
    return {k: v for k, v in data.items() if k != "state_dict"}


def read_model_header(path: str | Path) -> tuple[NetworkSpec, dict[str, int]]:
    """The network spec and label names stored in a model file (raises as :func:`read_model_file`)."""
    data = read_model_file(path)
    return NetworkSpec.from_dict(data["network"]), {str(k): int(v) for k, v in data["labels"].items()}
