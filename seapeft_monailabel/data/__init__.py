"""Data: the phantom generator, site definitions, datastore writing, volume reading (any format) and MONAI transforms.

Names are imported lazily on first use, so ``import seapeft_monailabel.data`` is cheap and the
transforms (which pull in MONAI and torch) load only when asked for.
"""

from importlib import import_module

_EXPORTS = {
    "ANATOMY": "sites", "SITES": "sites", "Site": "sites", "get_site": "sites", "label_names": "sites",
    "Phantom": "phantoms", "generate": "phantoms",
    "load_volume_pair": "volumes", "read_volume": "volumes", "find_volumes": "volumes",
    "output_extension": "volumes", "VOLUME_EXTENSIONS": "volumes",
    "make_datalist": "datastore", "unlabelled_ids": "datastore",
    "write_sample_data": "datastore", "write_site": "datastore",
    "train_transforms": "transforms", "eval_transforms": "transforms",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
