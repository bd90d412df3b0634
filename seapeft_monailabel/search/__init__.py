"""SEA-PEFT: search, audit, allocate. Pure decision logic, the network-side loop, and the entry points."""

from .allocator import Allocation, Allocator
from .baselines import FIXED_METHODS, method_manifest, random_units
from .config import PRESETS, SearchConfig, preset
from .controller import Transition, UnitController, UnitLike, UnitState
from .engine import run_fixed, run_search, split_support, validate_datalist
from .estimator import UtilityEstimator
from .probes import ProbeProposer
from .report import draw_report
from .result import RUN_FILES, RunResult
from .sampler import AuditSampler
from .stopping import StopRule

__all__ = [
    "Allocation", "Allocator", "AuditSampler", "FIXED_METHODS", "PRESETS", "ProbeProposer", "RUN_FILES", "RunResult",
    "SearchConfig", "StopRule", "Transition", "UnitController", "UnitLike", "UnitState", "UtilityEstimator",
    "draw_report", "method_manifest", "preset", "random_units", "run_fixed",
    "run_search", "split_support", "validate_datalist",
]
