"""Load the base model named by ``--conf base_model`` for the task's labels, through the library's loader."""

from __future__ import annotations

from seapeft_monailabel.models import BaseModel, WeightLoadError, load_base_model

from ..configs.conf import AppConf


def load_base(conf: AppConf) -> BaseModel:
    """The base network for ``conf.labels`` with ``conf.base_model`` loaded into it (eval mode, frozen; the
    engine's unit registry decides what trains), its window fitted from ``conf.patch_size`` or the file.

    Raises:
        WeightLoadError: the file is missing, unreadable or does not fit the network (message names it).
    """
    path = conf.base_model
    if not path.exists():
        raise WeightLoadError(f"base model file not found: {path} (set --conf base_model to the weights)")
    base = load_base_model(path, conf.labels, network=None if conf.network == "auto" else conf.network,
                           feature_size=conf.feature_size, patch_size=conf.patch_size)
    base.network.eval()
    for p in base.network.parameters():
        p.requires_grad_(False)
    return base
