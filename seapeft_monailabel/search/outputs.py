"""What a run writes, written so that a killed run never leaves a half-written file in place.

Files are first written into a staging folder beside the output folder and moved into place with
``os.replace`` (atomic on one file system) only once all of them exist; an interrupted run removes
its staging folder. The merged model file carries everything needed to rebuild the network strictly.

* ``config.yaml``: method, network, labels, budget, chosen units and their costs, Dice, settings;
* ``adapters.pt``: the head and the chosen units only (kilobytes);
* ``model.pt``: the merged full model (``seapeft-merged/1``) for serving;
* ``events.jsonl``: the run's events; ``report.png``: the audit report drawn from it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml
from torch import nn

from ..models import MODEL_FORMAT, NetworkSpec, build_network, head_module_names, save_model_file
from ..peft import UnitRegistry, load_merged_state_dict, manifest_from_dict


@contextmanager
def staged_output(out_dir: str | Path) -> Iterator[Path]:
    """A staging folder whose files move into ``out_dir`` when the block ends without error."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        yield staging
        for item in sorted(staging.iterdir()):
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def save_merged_model(path: str | Path, registry: UnitRegistry, names, spec: NetworkSpec,
                      labels: dict[str, int]) -> list[str]:
    """Merge ``names`` into a copy of the network and save it; returns the units left unmerged."""
    with registry.gates(names):
        merged, unmerged = registry.merged_network()
    placements = [registry.unit(n) for n in unmerged]
    save_model_file(path, merged.state_dict(), spec, labels,
                    [{"site": u.site, "family": u.family, "level": u.level} for u in placements])
    return unmerged


def load_merged_model(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild a network saved by :func:`save_merged_model`, loading every tensor strictly.

    Returns the network (eval mode) and the file's metadata (``network``, ``labels``, ``unmerged_units``).
    """
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable model file ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: not a SEA-PEFT merged model (expected format {MODEL_FORMAT})")
    spec = NetworkSpec.from_dict(data["network"])
    network = build_network(spec)
    if data["unmerged_units"]:
        sites = [{"pattern": re.escape(u["site"]), "families": {u["family"]: [u["level"]]}} for u in data["unmerged_units"]]
        registry = UnitRegistry(network, manifest_from_dict({"name": "unmerged", "sites": sites}),
                                head_module_names(spec, network))
        registry.enable_only(list(registry.units))
    load_merged_state_dict(network, data["state_dict"])
    for p in network.parameters():
        p.requires_grad_(False)
    return network.eval(), {k: v for k, v in data.items() if k != "state_dict"}


def write_yaml(path: str | Path, data: dict) -> None:
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
