"""Adapter files in the layout of Hugging Face PEFT: ``adapter_config.json`` + ``adapter_model.safetensors``.

A folder holding both files carries one run's trained units and head (kilobytes) and applies them to
the base model they were trained on, without a merged copy of the network. ``adapter_config.json``::

    {"format": "seapeft-adapter/1", "peft_type": "SEA-PEFT",
     "base_model_sha256": "<hex>",            # base_weights_sha256 of the base the units were trained on
     "network": NetworkSpec dict, "labels": {name: index}, "head_modules": [module path, ...],
     "manifest": "unet", "target_modules": [module path, ...],     # the sites, as PEFT names them
     "units": [{"name", "site", "family", "level", "cost", "mergeable"}, ...], "cost": sum of costs,
     "head_parameters": n, ...extras of the writer (method, budget, selection_dice, patch_size, spacing)}

``adapter_model.safetensors`` holds only tensors: ``head/{module}.{tensor}`` for the head and
``unit/{unit name}/{tensor}`` for each unit (e.g. ``unit/model.0.conv.unit0.conv:lora:r2/lora_A``).
Safetensors files hold no code, so reading one never runs any; the base model is read with
``torch.load(weights_only=True)`` (:func:`~seapeft_monailabel.models.weights.read_checkpoint`).

The base is identified by the SHA-256 of its weights (:func:`base_weights_sha256`: every tensor but the
head's, which the adapter carries), so the same weights in another container (a state dict, a MONAI
bundle) are recognised and any other base is refused.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..atomic import atomic_path, write_json_atomic
from ..models import BaseModel, NetworkSpec, WeightLoadError, head_module_names, load_base_model
from .host import UnitHost
from .manifest import units_manifest
from .registry import ADAPTER_FORMAT, UnitRegistry

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS)
ADAPTER_FILE_FORMAT = "seapeft-adapter/1"
_REQUIRED = ("base_model_sha256", "network", "labels", "head_modules", "manifest", "units")


class AdapterFileError(ValueError):
    """Adapter files that cannot be read or applied; the message names the file and the problem."""


def _fail(path: Path, problem: str) -> AdapterFileError:
    return AdapterFileError(f"{path.name}: {problem} [{path}]")


def base_weights_sha256(network: nn.Module, head_names: Iterable[str]) -> str:
    """Hex SHA-256 of a plain network's weights: every state tensor outside the head modules, in state-dict
    order, hashed as name, dtype, shape and bytes (so the digest depends on the values, not the file)."""
    head = tuple(f"{h}." for h in head_names)
    digest = hashlib.sha256()
    for key, tensor in network.state_dict().items():
        if key.startswith(head):
            continue
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}|{data.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _registry_base_sha256(registry: UnitRegistry) -> str:
    """:func:`base_weights_sha256` of the registry's network with every unit off (the base it was built on)."""
    with registry.gates([]):
        plain, _ = registry.merged_network()
    return base_weights_sha256(plain, registry.head_names)


def save_adapter_files(folder: str | Path, registry: UnitRegistry, names: Iterable[str], spec: NetworkSpec,
                       labels: dict[str, int], **extra) -> dict:
    """Write the head and the units ``names`` of ``registry`` as adapter files into ``folder`` (atomically each).

    ``extra``: plain JSON values added to the config (the engine adds ``method``, ``budget``,
    ``selection_dice``, ``patch_size``, ``spacing``). Returns the config as written.
    """
    folder = Path(folder)
    names = list(names)
    state = registry.adapter_state_dict(names)
    tensors = {f"head/{key}": value for key, value in state["head"].items()}
    for name, unit_state in state["units"].items():
        tensors.update({f"unit/{name}/{key}": value for key, value in unit_state.items()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    units = [registry.unit(n) for n in names]
    config = {
        "format": ADAPTER_FILE_FORMAT, "peft_type": "SEA-PEFT",
        "base_model_sha256": _registry_base_sha256(registry),
        "network": spec.to_dict(), "labels": dict(labels), "head_modules": list(registry.head_names),
        "manifest": registry.manifest.name, "target_modules": sorted({u.site for u in units}),
        "units": [{"name": u.name, "site": u.site, "family": u.family, "level": u.level, "cost": u.cost,
                   "mergeable": u.mergeable} for u in units],
        "cost": sum(u.cost for u in units),
        "head_parameters": sum(p.numel() for p in registry.head_parameters()),
        **extra,
    }
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / ADAPTER_WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "seapeft": ADAPTER_FILE_FORMAT})
    write_json_atomic(folder / ADAPTER_CONFIG, config)
    return config


def read_adapter_config(folder: str | Path) -> dict:
    """The checked ``adapter_config.json`` of an adapter folder.

    Raises:
        AdapterFileError: no such file, not JSON, another format, or a required key missing.
    """
    path = Path(folder) / ADAPTER_CONFIG
    if not path.is_file():
        raise _fail(path, "no such file (not an adapter folder)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _fail(path, f"not valid JSON ({err})") from None
    if not isinstance(config, dict) or config.get("format") != ADAPTER_FILE_FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise _fail(path, f"not a SEA-PEFT adapter config (format {found!r}, expected {ADAPTER_FILE_FORMAT})")
    missing = [k for k in _REQUIRED if k not in config]
    if missing:
        raise _fail(path, f"lacks {', '.join(missing)}")
    try:
        NetworkSpec.from_dict(config["network"])
    except ValueError as err:
        raise _fail(path, f"bad network: {err}") from None
    return config


def _read_state(folder: Path, config: dict) -> dict:
    """The tensors of ``adapter_model.safetensors`` as a registry adapter state dict, checked against the config."""
    path = folder / ADAPTER_WEIGHTS
    if not path.is_file():
        raise _fail(path, "no such file")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise _fail(path, f"not a safetensors file ({err})") from None
    names = [u["name"] for u in config["units"]]
    state = {"format": ADAPTER_FORMAT, "manifest": config["manifest"], "head": {},
             "units": {n: {} for n in names}}
    for key, value in tensors.items():
        kind, _, rest = key.partition("/")
        unit, _, tensor = rest.rpartition("/")
        if kind == "head" and rest:
            state["head"][rest] = value
        elif kind == "unit" and unit in state["units"] and tensor:
            state["units"][unit][tensor] = value
        else:
            raise _fail(path, f"tensor {key!r} belongs to no unit of {ADAPTER_CONFIG} and is not a head tensor")
    empty = [n for n, s in state["units"].items() if not s]
    if empty or not state["head"]:
        raise _fail(path, f"holds no tensors for {', '.join(empty) or 'the head'}")
    return state


def apply_adapter_files(folder: str | Path, network: nn.Module) -> UnitRegistry:
    """Put the units of the adapter folder on ``network`` (a plain base network, changed in place), load
    their tensors and the head's, and switch exactly those units on; returns their registry.

    Raises:
        AdapterFileError: unreadable files, a network that already carries units, a base whose weights'
            SHA-256 differs from the config's ``base_model_sha256``, or tensors that do not fit.
    """
    folder = Path(folder)
    config = read_adapter_config(folder)
    config_path = folder / ADAPTER_CONFIG
    if any(isinstance(m, UnitHost) for m in network.modules()):
        raise _fail(config_path, "the network it is applied to already carries PEFT units; give the plain base")
    state = _read_state(folder, config)
    found = base_weights_sha256(network, config["head_modules"])
    if found != config["base_model_sha256"]:
        raise _fail(config_path, f"made for the base model with weights SHA-256 {config['base_model_sha256'][:16]}..., "
                    f"but the base it is applied to has {found[:16]}...; apply it to the base it was trained on")
    try:
        registry = UnitRegistry(network, units_manifest(config["units"], f"adapters of {folder.name}"),
                                config["head_modules"])
        registry.load_adapter_state_dict(state)
    except (KeyError, ValueError, RuntimeError) as err:
        raise _fail(folder / ADAPTER_WEIGHTS, f"does not fit the base network ({str(err).splitlines()[0]})") from None
    return registry


def load_base_for_adapters(folder: str | Path, base_path: str | Path) -> BaseModel:
    """The base model at ``base_path`` built for the adapter's network and labels (head at initialisation,
    the adapter carries its own): a seapeft model file, or plain weights of the config's network."""
    config = read_adapter_config(folder)
    spec = NetworkSpec.from_dict(config["network"])
    labels = {str(k): int(v) for k, v in config["labels"].items()}
    try:
        base = load_base_model(base_path, labels)
    except WeightLoadError:  # plain weights (a state dict, a MONAI bundle) name no network: the config does
        base = load_base_model(base_path, labels, network=spec)
    if base.spec != spec:
        raise _fail(Path(folder) / ADAPTER_CONFIG, f"made for a network {spec.to_dict()}, but {base_path} holds "
                    f"{base.spec.to_dict()}")
    return base


def load_adapter_files(folder: str | Path, base: str | Path | nn.Module) -> nn.Module:
    """The base network with the adapter folder's units applied (not merged), eval mode, frozen.

    Args:
        folder: a folder holding ``adapter_config.json`` and ``adapter_model.safetensors``.
        base: the base model's file (or MONAI bundle folder), or a plain base network built for the
            adapter's labels (:func:`~seapeft_monailabel.models.load_base_model`'s ``network``), which
            is copied and left as it is.

    Returns:
        A network taking ``(B, C_in, D, H, W)`` and giving ``(B, len(labels), D, H, W)`` logits.

    Raises:
        AdapterFileError: see :func:`apply_adapter_files`; ``WeightLoadError`` for an unreadable base file.
    """
    if isinstance(base, nn.Module):
        network = copy.deepcopy(base)
    else:
        network = load_base_for_adapters(folder, base).network
    apply_adapter_files(folder, network)
    for p in network.parameters():
        p.requires_grad_(False)
    return network.eval()


def adapter_files_size(folder: str | Path) -> int:
    """Bytes of the two adapter files of ``folder``."""
    return sum((Path(folder) / name).stat().st_size for name in ADAPTER_FILES)


def is_adapter_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds both adapter files."""
    return all((Path(folder) / name).is_file() for name in ADAPTER_FILES)
