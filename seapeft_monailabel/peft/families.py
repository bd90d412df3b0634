"""The table of unit families: name -> class, and how to build a unit on a site."""

from __future__ import annotations

from torch import nn

from .adalora import AdaLoRAUnit
from .adapter import AdapterUnit
from .adaptformer import AdaptFormerUnit
from .base import PeftUnit
from .bitfit import BitFitUnit
from .block import BlockUnit
from .intensity import IntensityCurveUnit
from .lora import LoRAUnit
from .pointwise_lora import PointwiseLoRAUnit
from .salt import SALTUnit
from .site import SiteGeometry
from .ssf import SSFUnit

FAMILIES: dict[str, type[PeftUnit]] = {
    cls.family: cls
    for cls in (LoRAUnit, AdaLoRAUnit, SALTUnit, BitFitUnit, SSFUnit, AdaptFormerUnit, AdapterUnit, BlockUnit,
                IntensityCurveUnit, PointwiseLoRAUnit)
}

_NEEDS_BASE_MODULE = (SALTUnit, BlockUnit)


def family_class(family: str) -> type[PeftUnit]:
    """The class of ``family``; a clear error lists the known families."""
    try:
        return FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown unit family '{family}' (known: {', '.join(sorted(FAMILIES))})") from None


def create_unit(family: str, level: str, geometry: SiteGeometry, base_module: nn.Module) -> PeftUnit:
    """Build one unit of ``family`` at ``level`` on the site described by ``geometry``."""
    cls = family_class(family)
    unit = cls(geometry, level, base_module) if issubclass(cls, _NEEDS_BASE_MODULE) else cls(geometry, level)
    return unit.freeze_while_off()
