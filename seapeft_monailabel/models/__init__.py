"""Network factory and loading of pretrained weights.

- :mod:`.factory`: :class:`NetworkSpec`, :func:`build_network` (MONAI SwinUNETR / UNet, 3D),
  :func:`head_module_names`, :func:`count_parameters`, :func:`spatial_multiple`.
- :mod:`.weights`: :func:`load_pretrained` for state dicts, checkpoint dicts, ``module.`` prefixes,
  MONAI bundles and self-supervised Swin encoder weights, with a :class:`LoadReport`.
"""

from .factory import NETWORK_NAMES, NetworkSpec, build_network, count_parameters, head_module_names, spatial_multiple
from .weights import LoadReport, WeightLoadError, load_pretrained, read_state_dict
from .base_model import MODEL_FORMAT, BaseModel, file_sha256, load_base_model, read_model_header, save_model_file

__all__ = [
    "BaseModel",
    "file_sha256",
    "MODEL_FORMAT",
    "save_model_file",
    "load_base_model",
    "read_model_header",
    "NETWORK_NAMES",
    "LoadReport",
    "NetworkSpec",
    "WeightLoadError",
    "build_network",
    "count_parameters",
    "head_module_names",
    "load_pretrained",
    "read_state_dict",
    "spatial_multiple",
]
