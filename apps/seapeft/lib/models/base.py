"""Load the base model named by ``--conf base_model`` for the task's labels, strictly, through the library."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from seapeft_monailabel.models import (
    NetworkSpec,
    WeightLoadError,
    build_network,
    head_module_names,
    load_base_model,
    load_pretrained,
)

from ..configs.conf import AppConf
from .patch import fit_patch

#: Window when neither the conf nor the model file gives one (fitted to the network).
DEFAULT_PATCH = (64, 64, 64)


@dataclass
class LoadedBase:
    """The base network (weights in, head re-created for ``labels``) and what serving/training need."""

    network: nn.Module
    spec: NetworkSpec
    head_names: list[str]
    labels: dict[str, int]
    patch_size: tuple[int, int, int]
    spacing: tuple[float, float, float] | None
    summary: str
    same_as_file: bool  # a seapeft file whose own labels are the task's (its network is used unchanged)


def _file_extras(path: Path) -> dict:
    """Metadata a seapeft model file carries besides the weights (``patch_size``, ``spacing``, ``pretraining``)."""
    data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return {k: v for k, v in data.items() if k != "state_dict"} if isinstance(data, dict) else {}


def load_base(conf: AppConf) -> LoadedBase:
    """Build the base network for ``conf.labels`` and load ``conf.base_model`` into it (eval mode, frozen;
    the engine's unit registry decides what trains).

    Raises:
        WeightLoadError: the file is missing, unreadable or does not fit the network (message names it).
    """
    path = conf.base_model
    if not path.exists():
        raise WeightLoadError(f"base model file not found: {path} (set --conf base_model to the weights)")
    if conf.network == "auto":
        base = load_base_model(path, conf.labels)
        network, spec, heads, summary = base.network, base.spec, base.head_names, base.report.summary()
        extras = _file_extras(path)
        same = base.labels == base.base_labels
    else:
        spec = NetworkSpec(name=conf.network, out_channels=len(conf.labels), feature_size=conf.feature_size)
        network = build_network(spec)
        heads = head_module_names(spec, network)
        summary = load_pretrained(network, path, head_names=heads).summary()
        extras, same = {}, False
    recipe = (extras.get("pretraining") or {}).get("recipe") or {}  # what `seapeft pretrain` records
    patch = conf.patch_size or tuple(extras.get("patch_size") or recipe.get("patch_size") or DEFAULT_PATCH)
    spacing = extras.get("spacing")
    network.eval()
    for p in network.parameters():
        p.requires_grad_(False)
    return LoadedBase(network, spec, heads, dict(conf.labels), fit_patch(patch, spec),
                      tuple(float(s) for s in spacing) if spacing else None, summary, same)


__all__ = ["DEFAULT_PATCH", "LoadedBase", "WeightLoadError", "load_base"]
