"""The wrapper that puts units on a site module and applies those that are on.

``UnitHost`` replaces the site module in its parent and keeps it as ``base``; its units live in
``peft_units`` (a ``ModuleDict`` keyed ``{family}_{level}``). Forward, with only the units that are on:

0. input units in registration order: ``x = u(x)`` (what every later step sees as the input);
1. weight units: ``y = op(x; W + sum dW, b + sum db)`` with ``op`` the base module's own functional
   form (so with all deltas zero the result is bit-identical to ``base(x)``); without any weight unit
   on, ``y = base(x, ...)``;
2. parallel units: ``y = y + u(x)``;
3. serial units in registration order: ``y = u(y)``.

Units that are off are skipped entirely: they cost nothing and receive no gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import PeftUnit, WeightDeltaUnit
from .block import UNIT_CONTAINER
from .site import SiteGeometry


class UnitHost(nn.Module):
    """Wraps the module of one site; see the module docstring for the forward rule."""

    def __init__(self, base: nn.Module, geometry: SiteGeometry):
        super().__init__()
        self.base = base
        self.geometry = geometry
        setattr(self, UNIT_CONTAINER, nn.ModuleDict())

    @property
    def units(self) -> nn.ModuleDict:
        return getattr(self, UNIT_CONTAINER)

    def add_unit(self, unit: PeftUnit) -> None:
        key = f"{unit.family}_{unit.level}"
        if key in self.units:
            raise ValueError(f"{unit.name} is already on this site")
        self.units[key] = unit

    def _weighted_forward(self, x: torch.Tensor, deltas: list[WeightDeltaUnit]) -> torch.Tensor:
        base = self.base
        weight = base.weight
        bias = base.bias
        for unit in deltas:
            dw = unit.delta_weight()
            if dw is not None:
                weight = weight + dw
            db = unit.delta_bias()
            if db is not None:
                bias = db if bias is None else bias + db
        kind = self.geometry.kind
        if kind == "linear":
            return F.linear(x, weight, bias)
        if kind == "conv":
            return base._conv_forward(x, weight, bias)
        return F.conv_transpose3d(x, weight, bias, base.stride, base.padding, base.output_padding, base.groups,
                                  base.dilation)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """``x``: the site module's input; extra arguments (e.g. an attention mask) go to the base module."""
        on = [u for u in self.units.values() if u.enabled]
        for unit in on:
            if unit.kind == "input":
                x = unit(x)
        deltas = [u for u in on if u.kind == "weight"]
        y = self._weighted_forward(x, deltas) if deltas else self.base(x, *args, **kwargs)
        for unit in on:
            if unit.kind == "parallel":
                y = y + unit(x)
        for unit in on:
            if unit.kind == "serial":
                y = unit(y)
        return y

    @torch.no_grad()
    def merge_enabled(self) -> list[str]:
        """Fold every mergeable unit that is on into ``base`` and remove it; returns the merged names.

        Weight deltas fold first; serial units fold in order while they are mergeable and no
        parallel branch (which sees the un-scaled output) is on.
        """
        on = [(k, u) for k, u in self.units.items() if u.enabled]
        merged: list[str] = []
        for key, unit in on:
            if unit.kind == "weight":
                dw, db = unit.delta_weight(), unit.delta_bias()
                if dw is not None:
                    self.base.weight.add_(dw)
                if db is not None:
                    if self.base.bias is None:
                        self.base.bias = nn.Parameter(db.detach().clone(), requires_grad=False)
                    else:
                        self.base.bias.add_(db)
            elif unit.kind != "block":
                continue
            merged.append(key)
        if not any(u.kind == "parallel" for _, u in on):
            for key, unit in on:
                if unit.kind != "serial":
                    continue
                if not unit.mergeable:
                    break
                unit.merge_into(self.base)
                merged.append(key)
        names = [self.units[k].name for k in merged]
        for key in merged:
            del self.units[key]
        return names
