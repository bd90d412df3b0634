"""What a model was trained with: its window (patch size) and resampling, from its run or its model file.

A run folder's ``config.yaml`` (``config.patch_size``, ``config.spacing``) comes first, then its
``adapter_config.json`` (a folder of adapter files merged by ``seapeft adapters merge``); a model file
without either (the base model) records ``patch_size``/``roi_size``, ``spacing`` or its pretraining recipe.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import yaml

from ..models import NetworkSpec
from ..models.factory import spatial_multiple
from ..peft.adapter_files import read_adapter_config

#: Window when neither the run nor the model file records one (valid for UNet and SwinUNETR).
FALLBACK_SIZE = 64


def check_roi(spec: NetworkSpec, roi_size: Sequence[int]) -> tuple[int, int, int]:
    """``roi_size`` as three ints, or ``ValueError`` when ``spec``'s network cannot take windows of that size."""
    roi = tuple(int(v) for v in roi_size)
    multiple = spatial_multiple(spec)
    if len(roi) != 3 or any(v < 1 or v % multiple for v in roi):
        raise ValueError(f"roi_size {roi_size!r}: {spec.name} needs three sizes divisible by {multiple}")
    return roi  # type: ignore[return-value]


def run_settings(folder: str | Path) -> dict:
    """The ``config`` section of ``folder/config.yaml`` (a run's settings), else the ``patch_size`` and
    ``spacing`` of ``folder/adapter_config.json``; empty when there is neither."""
    folder = Path(folder)
    path = folder / "config.yaml"
    if not path.is_file():
        try:
            config = read_adapter_config(folder)
        except ValueError:
            return {}
        return {key: config.get(key) for key in ("patch_size", "spacing")}
    try:
        settings = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("config") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return {}
    return settings if isinstance(settings, dict) else {}


def trained_roi(folder: Path, meta: dict, spec: NetworkSpec) -> tuple[int, int, int]:
    """The run's patch size, else the model file's ``roi_size``/``patch_size`` or pretraining patch size
    (``meta``: the file's entries), else :data:`FALLBACK_SIZE` cubed."""
    recipe = (meta.get("pretraining") or {}).get("recipe") or {}
    for patch in (run_settings(folder).get("patch_size"), meta.get("roi_size"), meta.get("patch_size"),
                  recipe.get("patch_size")):
        if patch:
            try:
                return check_roi(spec, patch)
            except ValueError:
                continue
    size = max(FALLBACK_SIZE, spatial_multiple(spec))
    return (size, size, size)


def trained_spacing(folder: Path, meta: dict) -> tuple[float, float, float] | None:
    """The run's resampling in mm, else the model file's ``spacing``; None: each volume's own spacing."""
    spacing = run_settings(folder).get("spacing") or meta.get("spacing")
    return tuple(float(s) for s in spacing) if spacing else None


def model_entries(model_path: str | Path) -> dict:
    """A seapeft model file's entries besides the weights (``network``, ``labels``, extras), read without
    loading the weights; ``ValueError`` naming the file when it cannot be read."""
    try:
        data = torch.load(model_path, map_location="cpu", weights_only=True, mmap=True)
        NetworkSpec.from_dict(data["network"])
        return {k: v for k, v in data.items() if k != "state_dict"}
    except Exception as err:
        raise ValueError(f"{model_path}: not a readable seapeft model file ({type(err).__name__}: {err})") from None


def default_roi_size(model_path: str | Path) -> tuple[int, int, int]:
    """:func:`trained_roi` of a seapeft model file (``ValueError`` naming it when it cannot be read)."""
    meta = model_entries(model_path)
    return trained_roi(Path(model_path).parent, meta, NetworkSpec.from_dict(meta["network"]))
