"""Network factory, the model file format, and loading of pretrained weights.

- :mod:`.factory`: :class:`NetworkSpec`, :func:`build_network` (MONAI SwinUNETR / UNet, 3D),
  :func:`head_module_names`, :func:`count_parameters`, :func:`spatial_multiple`.
- :mod:`.patch`: :func:`fit_patch`, the sliding windows a network accepts.
- :mod:`.weights`: :func:`load_pretrained` for state dicts, checkpoint dicts, ``module.`` prefixes,
  MONAI bundles and self-supervised Swin encoder weights, with a :class:`LoadReport`.
- :mod:`.model_file`: the ``seapeft-merged/1`` file: :func:`save_model_file`, :func:`read_model_file`.
- :mod:`.base_model`: :func:`load_base_model`, a base model for a task's labels.
"""

from .factory import NETWORK_NAMES, NetworkSpec, build_network, count_parameters, head_module_names, spatial_multiple
from .weights import LoadReport, WeightLoadError, load_pretrained, read_state_dict
from .model_file import MODEL_FORMAT, file_sha256, read_model_file, read_model_header, save_model_file
from .patch import fit_patch
from .base_model import DEFAULT_PATCH, BaseModel, load_base_model

__all__ = [
    "BaseModel",
    "DEFAULT_PATCH",
    "file_sha256",
    "fit_patch",
    "MODEL_FORMAT",
    "save_model_file",
    "load_base_model",
    "read_model_file",
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
