"""The shared base class of every PEFT unit family.

A unit is one candidate adapter at one site (module), of one family, at one level. Its contract:

* **name** ``{site}:{family}:{level}``; **group** ``(site, family)``: at most one level of a group
  is meant to be on at a time (the allocator's "rank adjustment");
* **cost**: the exact number of parameters it trains, counted from its tensors;
* **gate**: :attr:`enabled` switches it on or off without touching any other unit, siblings on the
  same module included; a unit that is off takes no part in the forward pass and trains nothing;
* **zero effect at creation**: a fresh unit switched on leaves the network output bit-identical;
* **merge**: families whose effect is linear in the module's weights fold into them for serving;
* an **adapter-only state** that saves and loads.

How a unit acts is given by its :attr:`kind`; the :class:`~seapeft_monailabel.peft.host.UnitHost`
wrapping the site module applies it:

* ``weight``: a delta on the module's weight and/or bias (LoRA, AdaLoRA, SALT, BitFit);
  ``y = op(x; W + dW, b + db)``;
* ``parallel``: an extra branch on the module input, ``y = f(x) + u(x)`` (AdaptFormer);
* ``serial``: a map on the module output, ``y = u(f(x))`` (bottleneck Adapter, SSF);
* ``input``: a map on the module input, ``y = f(u(x))`` (intensity curve);
* ``block``: unfreezes the module's own parameters (block tuning).
"""

from __future__ import annotations

import re
from abc import ABCMeta, abstractmethod
from typing import ClassVar

import torch
from torch import nn

from .site import SiteGeometry


class PeftUnit(nn.Module, metaclass=ABCMeta):
    """Base class of all unit families.

    Subclasses set :attr:`family`, :attr:`kind`, :attr:`level_pattern` and :attr:`site_kinds`, build
    their tensors in ``__init__`` and put them at zero effect in :meth:`reset_parameters`.

    Args:
        geometry: the site the unit sits on.
        level: the family's level string, e.g. ``r8`` (rank) or ``b16`` (bottleneck) or ``full``.
    """

    family: ClassVar[str]
    kind: ClassVar[str]
    level_pattern: ClassVar[str]
    site_kinds: ClassVar[tuple[str, ...]]
    mergeable: ClassVar[bool] = False
    #: first-order effects that are per-channel maps of the site output (``shift``: adds a constant per
    #: channel, ``scale``: multiplies each channel by a constant); :mod:`.effect` checks that a following
    #: normalisation does not cancel them. Empty for families whose effect is not per-channel.
    channel_effects: ClassVar[tuple[str, ...]] = ()

    def __init__(self, geometry: SiteGeometry, level: str):
        super().__init__()
        if geometry.kind not in self.site_kinds:
            raise ValueError(
                f"{geometry.path}: family '{self.family}' cannot sit on a {geometry.kind} module "
                f"(it accepts {', '.join(self.site_kinds)})")
        self.geometry = geometry
        self.level = level
        self.level_value = self.parse_level(level)
        self._enabled = False

    # ----------------------------------------------------------------- identity
    @classmethod
    def parse_level(cls, level: str) -> int:
        """The integer inside a level string (``r8`` -> 8; ``full`` -> 0).

        Raises:
            ValueError: the string does not match the family's level pattern.
        """
        match = re.fullmatch(cls.level_pattern, level)
        if match is None:
            raise ValueError(f"family '{cls.family}': level '{level}' does not match '{cls.level_pattern}'")
        return int(match.group(1)) if match.groups() else 0

    @property
    def site(self) -> str:
        """The site instance: the module path the unit sits on."""
        return self.geometry.path

    @property
    def name(self) -> str:
        """``{site}:{family}:{level}``."""
        return f"{self.site}:{self.family}:{self.level}"

    @property
    def group(self) -> tuple[str, str]:
        """``(site, family)``: levels of one group are alternatives to each other."""
        return (self.site, self.family)

    @property
    def level_order(self) -> int:
        """Ordering of levels within a group (larger is bigger)."""
        return self.level_value

    # ----------------------------------------------------------------- parameters and cost
    def trainable_parameters(self) -> list[torch.Tensor]:
        """The tensors this unit trains when it is on."""
        return [p for p in self.parameters(recurse=True)]

    @property
    def cost(self) -> int:
        """Exact number of trained parameters."""
        return sum(p.numel() for p in self.trainable_parameters())

    @abstractmethod
    def reset_parameters(self) -> None:
        """Re-initialise the unit at zero effect."""

    def regularization(self) -> torch.Tensor | None:
        """A penalty the trainer adds to the loss while the unit is on (``None``: none)."""
        return None

    # ----------------------------------------------------------------- gate
    @property
    def enabled(self) -> bool:
        """Whether the unit is on."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        value = bool(value)
        if value != self._enabled:
            self._set_gate(value)
            self._enabled = value

    def freeze_while_off(self) -> "PeftUnit":
        """Apply the gate to the tensors' ``requires_grad`` (call once the unit's tensors exist)."""
        self._set_gate(self._enabled)
        return self

    def _set_gate(self, on: bool) -> None:
        for p in self.trainable_parameters():
            p.requires_grad_(on)

    # ----------------------------------------------------------------- state
    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The unit's own trained state (detached copies), for the adapter files."""
        return {k: v.detach().clone() for k, v in self.state_dict().items()}

    def load_adapter_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load what :meth:`adapter_state` returned (strict)."""
        self.load_state_dict(state, strict=True)

    @torch.no_grad()
    def warm_start_from(self, smaller: "PeftUnit") -> None:
        """Start this (larger) level from the trained weights of a smaller level of the same group.

        The unit is re-initialised at zero effect, then every tensor the two levels share by name
        gets the smaller level's values in its leading slice (low-rank factors are padded). Because
        the padding of each zero-initialised factor stays zero, the larger level starts with exactly
        the function the smaller one had learnt.
        """
        if smaller.group != self.group:
            raise ValueError(f"cannot warm-start {self.name} from {smaller.name}: different groups")
        self.reset_parameters()
        mine = dict(self.named_parameters())
        for key, src in smaller.named_parameters():
            dst = mine.get(key)
            if dst is None:
                continue
            if dst.dim() != src.dim():
                raise ValueError(f"{self.name}.{key}: cannot pad {tuple(src.shape)} into {tuple(dst.shape)}")
            index = tuple(slice(0, min(a, b)) for a, b in zip(dst.shape, src.shape))
            dst[index] = src[index]

    def extra_repr(self) -> str:
        return f"{self.name}, cost={self.cost}, enabled={self.enabled}"


class WeightDeltaUnit(PeftUnit):
    """A unit whose effect is a delta on the site's weight and bias (mergeable).

    Subclasses implement :meth:`delta_matrix` (a ``(rows, cols)`` delta in the site's matrix view,
    see :mod:`~seapeft_monailabel.peft.site`) and/or :meth:`delta_bias` (``(out_features,)``).
    """

    kind = "weight"
    site_kinds = ("linear", "conv", "conv_transpose")
    mergeable = True

    def delta_matrix(self) -> torch.Tensor | None:
        """Weight delta ``(rows, cols)`` or ``None`` when the family leaves the weight alone."""
        return None

    def delta_bias(self) -> torch.Tensor | None:
        """Bias delta ``(out_features,)`` or ``None`` when the family leaves the bias alone."""
        return None

    def low_rank_shape(self) -> tuple[int, int, int]:
        """``(rows, cols, rank)`` of a factorised delta whose rank is the level's number (checked to fit)."""
        rows, cols = self.geometry.matrix_shape
        rank = self.level_value
        if not 0 < rank <= min(rows, cols):
            raise ValueError(f"{self.geometry.path}: {self.family} rank {rank} must be in 1..{min(rows, cols)}")
        return rows, cols, rank

    def delta_weight(self) -> torch.Tensor | None:
        """Weight delta in the weight's own shape, or ``None``."""
        delta = self.delta_matrix()
        return None if delta is None else delta.reshape(self.geometry.weight_shape)

