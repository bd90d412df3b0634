"""Inject a manifest's units into a network and answer questions about them.

The registry freezes the backbone, keeps the head trainable, wraps every site module in a
:class:`~.host.UnitHost` and creates the manifest's units there, all off. It knows each unit by
name and answers: the units and their costs, which are on, the trainable parameters (exactly those
of the head and of the units that are on), the cost of what is on, the adapter-only state, and a
merged copy of the network for serving.

Load the pretrained base weights into the network *before* building the registry: SALT takes the
SVD of the frozen weights at creation.
"""

from __future__ import annotations

import copy
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .base import PeftUnit
from .effect import InertUnitWarning, inert_units
from .families import create_unit
from .host import UnitHost
from .manifest import Manifest, load_manifest
from .site import describe_site

ADAPTER_FORMAT = "seapeft-adapters/1"


def _parent_and_attr(root: nn.Module, path: str) -> tuple[nn.Module, str]:
    parent_path, _, attr = path.rpartition(".")
    return (root.get_submodule(parent_path) if parent_path else root), attr


def _unwrap_hosts(root: nn.Module) -> None:
    """Replace every host that holds no unit by its base module (innermost first)."""
    hosts = [(p, m) for p, m in root.named_modules() if isinstance(m, UnitHost)]
    for path, host in reversed(hosts):
        if len(host.units) == 0:
            parent, attr = _parent_and_attr(root, path)
            setattr(parent, attr, host.base)


class UnitRegistry:
    """The units of one network.

    Args:
        network: the backbone, with its pretrained weights already loaded.
        manifest: a :class:`Manifest`, a shipped manifest name or a YAML path.
        head_names: module paths of the output head (always trained), e.g. ``["out.conv.conv"]``.
        example: a network input ``(1, C_in, *patch)``; when given, units that cannot change the output
            are found on it and left out (:meth:`drop_inert_units`).
    """

    def __init__(self, network: nn.Module, manifest: Manifest | str, head_names: Iterable[str],
                 example: torch.Tensor | None = None):
        self.network = network
        self.manifest = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
        self.head_names = list(head_names)
        self.backbone_parameters = sum(p.numel() for p in network.parameters())
        for p in network.parameters():
            p.requires_grad_(False)
        self._head = [network.get_submodule(n) for n in self.head_names]
        for p in self.head_parameters():
            p.requires_grad_(True)
        placements = self.manifest.resolve(network)
        head_set = set(self.head_names)
        clash = sorted({path for path, _, _ in placements if path in head_set})
        if clash:
            raise ValueError(f"manifest '{self.manifest.name}' places units on the head ({', '.join(clash)})")
        self.hosts: dict[str, UnitHost] = {}
        slots = {}
        for path in dict.fromkeys(path for path, _, _ in placements):
            module = network.get_submodule(path)
            self.hosts[path] = UnitHost(module, describe_site(path, module)).train(module.training)
            slots[path] = _parent_and_attr(network, path)
        for path, (parent, attr) in slots.items():
            setattr(parent, attr, self.hosts[path])
        self.units: dict[str, PeftUnit] = {}
        for path, family, level in placements:
            host = self.hosts[path]
            unit = create_unit(family, level, host.geometry, host.base)
            unit.to(next(host.base.parameters(), torch.empty(0)).device).train(host.training)
            host.add_unit(unit)
            self.units[unit.name] = unit
        if example is not None:
            self.drop_inert_units(example)

    def drop_inert_units(self, example: torch.Tensor) -> dict[str, str]:
        """Remove (with an :class:`InertUnitWarning`) every unit whose effect a following norm cancels.

        ``example``: a network input ``(1, C_in, *patch)``. Returns ``{unit name: reason}`` of the
        removed units (see :mod:`.effect`).
        """
        inert = inert_units(self, example)
        for name in inert:
            unit = self.units.pop(name)
            del self.hosts[unit.site].units[f"{unit.family}_{unit.level}"]
        if inert:
            warnings.warn(f"manifest '{self.manifest.name}': {len(inert)} units cannot change the output and are "
                          f"left out: " + "; ".join(f"{n}: {r}" for n, r in inert.items()), InertUnitWarning,
                          stacklevel=2)
        return inert

    # ----------------------------------------------------------------- lookup
    def __iter__(self) -> Iterator[PeftUnit]:
        return iter(self.units.values())

    def __len__(self) -> int:
        return len(self.units)

    def unit(self, name: str) -> PeftUnit:
        try:
            return self.units[name]
        except KeyError:
            raise KeyError(f"no unit named '{name}' in manifest '{self.manifest.name}'") from None

    def costs(self) -> dict[str, int]:
        return {n: u.cost for n, u in self.units.items()}

    def groups(self) -> dict[tuple[str, str], list[str]]:
        """``(site, family)`` -> unit names, smallest level first."""
        out: dict[tuple[str, str], list[str]] = defaultdict(list)
        for unit in sorted(self.units.values(), key=lambda u: u.level_order):
            out[unit.group].append(unit.name)
        return dict(out)

    def total_cost(self) -> int:
        """Cost of the whole library (every unit of every level)."""
        return sum(u.cost for u in self.units.values())

    def max_concurrent_cost(self) -> int:
        """Cost of the largest level of every group on at once: the most the library can train."""
        return sum(max(self.units[n].cost for n in names) for names in self.groups().values())

    # ----------------------------------------------------------------- gates
    def enabled_names(self) -> list[str]:
        return [n for n, u in self.units.items() if u.enabled]

    def set_enabled(self, name: str, on: bool) -> None:
        self.unit(name).enabled = on

    def enable_only(self, names: Iterable[str]) -> None:
        """Switch on exactly ``names``; every other unit off."""
        wanted = set(names)
        unknown = wanted - set(self.units)
        if unknown:
            raise KeyError(f"unknown units: {', '.join(sorted(unknown))}")
        for name, unit in self.units.items():
            unit.enabled = name in wanted

    @contextmanager
    def gates(self, names: Iterable[str]) -> Iterator[None]:
        """Temporarily switch on exactly ``names`` (for audits and candidate evaluation); restores after."""
        before = self.enabled_names()
        self.enable_only(names)
        try:
            yield
        finally:
            self.enable_only(before)

    def enabled_cost(self) -> int:
        return sum(u.cost for u in self.units.values() if u.enabled)

    # ----------------------------------------------------------------- parameters
    def head_parameters(self) -> list[nn.Parameter]:
        return [p for m in self._head for p in m.parameters()]

    def trainable_parameters(self) -> list[torch.Tensor]:
        """The head's parameters and those of every unit that is on (nothing else)."""
        params = list(self.head_parameters())
        for unit in self.units.values():
            if unit.enabled:
                params.extend(unit.trainable_parameters())
        return params

    def regularization(self) -> torch.Tensor | None:
        """Sum of the regularisers of the units that are on (``None`` when none has one)."""
        terms = [t for u in self.units.values() if u.enabled for t in [u.regularization()] if t is not None]
        return torch.stack(terms).sum() if terms else None

    # ----------------------------------------------------------------- state
    def adapter_state_dict(self, names: Iterable[str] | None = None) -> dict:
        """Head and unit weights only (kilobytes, not the backbone); ``names`` defaults to the units that are on."""
        names = self.enabled_names() if names is None else list(names)
        head = {f"{h}.{k}": v.detach().clone() for h, m in zip(self.head_names, self._head)
                for k, v in m.state_dict().items()}
        return {
            "format": ADAPTER_FORMAT,
            "manifest": self.manifest.name,
            "head": head,
            "units": {n: self.unit(n).adapter_state() for n in names},
        }

    def load_adapter_state_dict(self, state: dict, enable: bool = True) -> None:
        """Load :meth:`adapter_state_dict` output; with ``enable`` exactly its units are switched on."""
        if state.get("format") != ADAPTER_FORMAT:
            raise ValueError(f"not a SEA-PEFT adapter file (format {state.get('format')!r}, expected {ADAPTER_FORMAT})")
        for key, value in state["head"].items():
            module_path, _, tensor_name = key.rpartition(".")
            if module_path not in self.head_names:
                raise KeyError(f"adapter file has head tensor '{key}' but the head is {self.head_names}")
            target = getattr(self.network.get_submodule(module_path), tensor_name)
            if target.shape != value.shape:
                raise ValueError(f"head tensor '{key}': file has {tuple(value.shape)}, network {tuple(target.shape)}")
            with torch.no_grad():
                target.copy_(value)
        for name, unit_state in state["units"].items():
            self.unit(name).load_adapter_state(unit_state)
        if enable:
            self.enable_only(state["units"])

    def merged_network(self) -> tuple[nn.Module, list[str]]:
        """A frozen copy of the network with every mergeable unit that is on folded into its weights.

        Hosts left without units are unwrapped, so when every unit on is mergeable the copy is a plain
        network whose state dict loads strictly into a freshly built one. Returns the copy and the
        names of the units that could not be merged (they stay in the copy, on).
        """
        merged = copy.deepcopy(self.network)
        for host in [m for m in merged.modules() if isinstance(m, UnitHost)]:
            for key in [k for k, u in host.units.items() if not u.enabled]:
                del host.units[key]
            host.merge_enabled()
        _unwrap_hosts(merged)
        remaining = [u.name for u in merged.modules() if isinstance(u, PeftUnit)]
        for p in merged.parameters():
            p.requires_grad_(False)
        return merged.eval(), remaining


def load_merged_state_dict(network: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a merged network's state dict strictly into a freshly built ``network``.

    Merging BitFit or SSF may give a bias to a layer that had none, or an affine to a norm that had
    none; those tensors are created first, then everything loads with ``strict=True`` (so a renamed or
    missing key is an error, never a silent fall-back to the base weights).
    """
    modules = dict(network.named_modules())
    for key, value in state.items():
        path, _, attr = key.rpartition(".")
        module = modules.get(path)
        if module is not None and attr in ("weight", "bias") and getattr(module, attr, False) is None:
            setattr(module, attr, nn.Parameter(torch.zeros_like(value), requires_grad=False))
            if hasattr(module, "affine"):
                module.affine = True
    network.load_state_dict(state, strict=True)
