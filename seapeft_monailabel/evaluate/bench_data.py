"""The benchmark's volumes: a pool for the support sets and held-out test volumes, generated once per recipe.

Pool: subjects ``0..pool-1`` of the target site with the bench's data seed; test: subjects
``pool..pool+test-1`` of the same seed (other indices, so other anatomy, noise and field of view), never
used for training, audits or any choice. Source: subjects ``0..source_test-1`` of the source site with the
bench's data seed (not pretraining's, so the base model never saw them), labelled with the target task's values
for the structures the base knew and 0 elsewhere, to measure what adaptation forgets. Support sets: fold ``f`` of ``k`` shots draws ``k + 1`` pool
volumes with ``random.Random(data_seed * 1000 + 100 * f + k)``; different folds give different sets.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from dataclasses import replace

import numpy as np

from ..data.datastore import image_path, label_path, subject_id, write_subject
from ..data.phantoms import Phantom, generate
from ..data.sites import ANATOMY, SOURCE, get_site
from ..data.volumes import read_volume, voxel_spacing
from .bench_presets import BenchPreset

RECIPE_FILE = "recipe.json"


def _recipe(preset: BenchPreset) -> dict:
    return {"site": preset.site, "data_seed": preset.data_seed, "pool": preset.pool, "test": preset.test,
            "source_test": preset.source_test}


def source_phantom(target: str, seed: int, index: int) -> Phantom:
    """Source-site subject ``index`` labelled in ``target``'s task: its seen structures by their target values,
    every other voxel 0 (the novel structures were never labelled at the source)."""
    site = get_site(target)
    if not site.seen:
        raise ValueError(f"site {target!r} has no seen structures; the source site cannot measure forgetting on it")
    phantom = generate(SOURCE, seed, index)
    lut = np.zeros(256, dtype=np.uint8)
    for name in site.seen:
        lut[ANATOMY[name]] = site.labels[name]
    return replace(phantom, label=lut[phantom.anatomy])


def _items(root: Path, site: str, indices: range) -> list[dict]:
    ids = [subject_id(site, i) for i in indices]
    return [{"id": sid, "image": str(image_path(root, sid)), "label": str(label_path(root, sid))} for sid in ids]


def prepare_volumes(root: str | Path, preset: BenchPreset) -> tuple[list[dict], list[dict], list[dict]]:
    """Generate (or reuse, when ``root`` holds the same recipe) the pool, test and source volumes of the
    one-site ``preset``.

    Returns ``(pool, test, source)`` datalists of ``{"id", "image", "label"}``.
    """
    root = Path(root)
    recipe = _recipe(preset)
    site, seed = preset.site, preset.data_seed
    pool_range = range(preset.pool)
    test_range = range(preset.pool, preset.pool + preset.test)
    source_range = range(preset.source_test)
    pool, test = _items(root / "pool", site, pool_range), _items(root / "test", site, test_range)
    source = _items(root / "source", SOURCE.name, source_range)
    recipe_path = root / RECIPE_FILE
    complete = all(Path(i[k]).is_file() for i in pool + test + source for k in ("image", "label"))
    if recipe_path.is_file() and json.loads(recipe_path.read_text()) == recipe and complete:
        return pool, test, source
    root.mkdir(parents=True, exist_ok=True)
    recipe_path.unlink(missing_ok=True)
    for folder, indices in (("pool", pool_range), ("test", test_range)):
        for i in indices:
            write_subject(root / folder, subject_id(site, i), generate(site, seed, i))
    for i in source_range:
        write_subject(root / "source", subject_id(SOURCE.name, i), source_phantom(site, seed, i))
    recipe_path.write_text(json.dumps(recipe, indent=2) + "\n")
    return pool, test, source


def support_set(pool: list[dict], shots: int, fold: int, data_seed: int) -> list[dict]:
    """The ``shots + 1`` labelled volumes of fold ``fold`` (drawn from ``pool`` by seed)."""
    if shots + 1 > len(pool):
        raise ValueError(f"{shots} shots need {shots + 1} pool volumes; the pool has {len(pool)}")
    return random.Random(data_seed * 1000 + 100 * fold + shots).sample(pool, shots + 1)


def structure_volumes(test: list[dict], labels: dict[str, int]) -> list[dict]:
    """``{"id", "ml": {structure: volume in ml}}`` of every test item, from its label file (any format read)."""
    sizes = []
    for item in test:
        array, affine = read_volume(item["label"])
        voxel_ml = float(np.prod(voxel_spacing(affine))) / 1000.0
        sizes.append({"id": item["id"], "ml": {name: float((array == value).sum()) * voxel_ml
                                               for name, value in labels.items() if name != "background"}})
    return sizes
