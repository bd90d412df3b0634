"""A network with its chosen units merged, saved as a model file and rebuilt from one, strictly.

The file is the models package's ``seapeft-merged/1`` (:mod:`seapeft_monailabel.models.model_file`);
units that cannot be merged into the weights are listed in it and re-injected, on, when it is loaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from torch import nn

from ..models import NetworkSpec, build_network, head_module_names
from ..models.model_file import model_file_extras, read_model_file, save_model_file
from .manifest import units_manifest
from .registry import UnitRegistry, load_merged_state_dict


def save_merged_model(path: str | Path, registry: UnitRegistry, names: Iterable[str], spec: NetworkSpec,
                      labels: dict[str, int], **extra) -> list[str]:
    """Merge ``names`` into a copy of the network and save it (``extra``: plain values the file records, such
    as ``patch_size`` and ``spacing``); returns the units left unmerged."""
    with registry.gates(names):
        merged, unmerged = registry.merged_network()
    placements = [registry.unit(n) for n in unmerged]
    save_model_file(path, merged.state_dict(), spec, labels,
                    [{"site": u.site, "family": u.family, "level": u.level} for u in placements], **extra)
    return unmerged


def load_merged_model(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild a network saved by :func:`save_merged_model`, loading every tensor strictly.

    Returns the network (eval mode, frozen) and the file's metadata (``network``, ``labels``,
    ``unmerged_units`` and any extras).

    Raises:
        WeightLoadError: missing, unreadable or not a SEA-PEFT model file (a ``ValueError``).
    """
    data = read_model_file(path)
    spec = NetworkSpec.from_dict(data["network"])
    network = build_network(spec)
    if data["unmerged_units"]:
        registry = UnitRegistry(network, units_manifest(data["unmerged_units"], "unmerged"),
                                head_module_names(spec, network))
        registry.enable_only(list(registry.units))
    load_merged_state_dict(network, data["state_dict"])
    for p in network.parameters():
        p.requires_grad_(False)
    return network.eval(), model_file_extras(data)
