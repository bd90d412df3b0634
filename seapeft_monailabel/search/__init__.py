"""Decision logic of the SEA-PEFT search loop (pure Python + numpy, no torch)."""

from .allocator import Allocation, Allocator
from .controller import Transition, UnitController, UnitLike, UnitState
from .estimator import UtilityEstimator
from .probes import ProbeProposer
from .sampler import AuditSampler
from .stopping import StopRule

__all__ = [
    "Allocation",
    "Allocator",
    "AuditSampler",
    "ProbeProposer",
    "StopRule",
    "Transition",
    "UnitController",
    "UnitLike",
    "UnitState",
    "UtilityEstimator",
]
