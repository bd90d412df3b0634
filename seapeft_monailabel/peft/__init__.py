"""Parameter-efficient units on MONAI networks: families, manifests, injection, gates, costs, merge, merged model
files, adapter files."""

from .adapter_files import (ADAPTER_CONFIG, ADAPTER_FILES, ADAPTER_WEIGHTS, AdapterFileError, apply_adapter_files,
                            base_weights_sha256, load_adapter_files, read_adapter_config, save_adapter_files)
from .adalora import AdaLoRAUnit, allocate_ranks, budget_schedule
from .adapter import AdapterUnit
from .adaptformer import AdaptFormerUnit
from .base import PeftUnit, WeightDeltaUnit
from .bitfit import BitFitUnit
from .block import BlockUnit
from .families import FAMILIES, create_unit, family_class
from .host import UnitHost
from .intensity import IntensityCurveUnit
from .lora import LoRAUnit
from .manifest import Manifest, SiteSpec, load_manifest, manifest_from_dict, shipped_manifests, units_manifest
from .merged_model import load_merged_model, save_merged_model
from .pointwise_lora import PointwiseLoRAUnit
from .registry import UnitRegistry, load_merged_state_dict
from .salt import SALTUnit
from .site import SiteGeometry, describe_site
from .ssf import SSFUnit

__all__ = [
    "ADAPTER_CONFIG", "ADAPTER_FILES", "ADAPTER_WEIGHTS", "AdapterFileError", "apply_adapter_files", "base_weights_sha256",
    "load_adapter_files", "read_adapter_config", "save_adapter_files", "units_manifest",
    "AdaLoRAUnit", "AdapterUnit", "AdaptFormerUnit", "BitFitUnit", "BlockUnit", "FAMILIES", "IntensityCurveUnit", "LoRAUnit", "Manifest",
    "PeftUnit", "PointwiseLoRAUnit", "SALTUnit", "SSFUnit", "SiteGeometry", "SiteSpec", "UnitHost", "UnitRegistry", "WeightDeltaUnit",
    "allocate_ranks", "budget_schedule", "create_unit", "describe_site", "family_class", "load_manifest", "load_merged_model",
    "load_merged_state_dict", "manifest_from_dict", "save_merged_model", "shipped_manifests",
]
