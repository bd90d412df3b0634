"""The library check that every per-channel unit can change the network output (reference defect 2).

A BitFit bias on a convolution whose output goes straight into an InstanceNorm (or a BatchNorm in
training) is subtracted again by the norm's mean: the unit trains, costs parameters and never changes
the output. The same holds for an SSF scale-shift placed before such a norm (its scale up to the
norm's ``eps``). Such units must not be in
a library: the search would spend audits on them, and a fixed baseline would report their cost.

The check is functional, so it needs no knowledge of the network's wiring: one forward pass of an
example input with every unit off (units are at zero effect anyway), and ``g = dL/dy`` at the output
``y`` of every site that carries a per-channel unit, for a fixed random projection ``L = <out, r>``.
A per-channel shift of channel ``c`` moves ``L`` by ``sum_v g[c, v]`` to first order, a scale by
``sum_v g[c, v] y[c, v]`` (``v``: batch and spatial positions or tokens). Where a norm cancels the
effect these sums vanish up to rounding, so the check compares each with the sum of the absolute
terms: ``|sum_v g| / sum_v |g|``. A real effect gives ratios of order ``1 / sqrt(#positions)`` or
more; a cancelled one gives float32 rounding (around 1e-7). A unit is inert when the largest ratio
over its channels stays below ``tolerance`` for every effect it has.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # the registry runs this check on itself when it is built
    from .registry import UnitRegistry

#: ratio below which a per-channel effect counts as cancelled (rounding gives ~1e-7, the weakest real effect measured ~6e-4)
INERT_TOLERANCE = 1e-5


class InertUnitWarning(UserWarning):
    """A library holds units that cannot change the network output (they are left out of it)."""


def example_input(in_channels: int, patch_size: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """A fixed random network input ``(1, in_channels, *patch_size)`` for the check (the cancellation by a
    norm does not depend on the data)."""
    shape = (1, in_channels, *patch_size)
    return torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)


@contextmanager
def _site_outputs(registry: "UnitRegistry", paths: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the output ``y`` of each host in ``paths`` during the forward passes inside the block."""
    outputs: dict[str, torch.Tensor] = {}
    handles = [registry.hosts[path].register_forward_hook(
        lambda _module, _args, out, path=path: outputs.__setitem__(path, out)) for path in paths]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def _channel_ratio(terms: torch.Tensor, channel_dim: int) -> float:
    """Largest over channels of ``|sum_v t| / sum_v |t|`` for ``terms`` shaped like the site output."""
    per_channel = terms.movedim(channel_dim, 0).reshape(terms.shape[channel_dim], -1).double()
    ratio = per_channel.sum(dim=1).abs() / per_channel.abs().sum(dim=1).clamp_min(1e-300)
    return float(ratio.max())


def channel_effect_ratios(registry: "UnitRegistry", example: torch.Tensor) -> dict[str, dict[str, float]]:
    """``{site path: {effect: ratio}}`` for every site carrying a unit with per-channel effects.

    ``example``: a network input, e.g. one patch ``(1, C_in, *patch)`` on the network's device. The
    network runs in training mode (a BatchNorm then uses batch statistics, as during fine-tuning); no
    parameter, gradient or gate changes.
    """
    paths = [p for p, host in registry.hosts.items() if any(u.channel_effects for u in host.units.values())]
    if not paths:
        return {}
    network = registry.network
    was_training = network.training
    network.train()
    try:
        with registry.gates([]), _site_outputs(registry, paths) as outputs, torch.enable_grad():
            # the backbone is frozen: an input that requires grad makes the graph reach every site
            out = network(example.detach().clone().requires_grad_(True))
            projection = torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(out)
            grads = torch.autograd.grad((out * projection).sum(), [outputs[p] for p in paths], allow_unused=True)
    finally:
        network.train(was_training)
    ratios: dict[str, dict[str, float]] = {}
    for path, grad in zip(paths, grads):
        y, dim = outputs[path].detach(), registry.hosts[path].geometry.channel_dim
        g = torch.zeros_like(y) if grad is None else grad
        ratios[path] = {"shift": _channel_ratio(g, dim), "scale": _channel_ratio(g * y, dim)}
    return ratios


def inert_units(registry: "UnitRegistry", example: torch.Tensor, tolerance: float = INERT_TOLERANCE) -> dict[str, str]:
    """``{unit name: reason}`` for every unit whose per-channel effects all vanish (see the module docstring)."""
    ratios = channel_effect_ratios(registry, example)
    inert = {}
    for unit in registry:
        site = ratios.get(unit.site)
        if site is None or not unit.channel_effects:
            continue
        if all(site[effect] < tolerance for effect in unit.channel_effects):
            shown = ", ".join(f"{e} {site[e]:.1e}" for e in unit.channel_effects)
            inert[unit.name] = f"a following normalisation cancels its effect on the output ({shown} < {tolerance:g})"
    return inert
