"""Write generated subjects as a MONAI Label local datastore, build datalists, read volume pairs.

Layout (what ``monailabel.datastore.local.LocalDatastore`` reads)::

    <dir>/<id>.nii.gz                 image, int16, affine = diag(spacing) + origin (RAS, mm)
    <dir>/labels/final/<id>.nii.gz    label, uint8, same grid, values = the site's task labels
    <dir>/dataset.json                recipe (site, seed, indices), label table, labelled/unlabelled ids

Files are byte-reproducible: the gzip stream is written with a zero timestamp, so regenerating with
the same site, count and seed gives identical files (on the same zlib).

Command line (the project CLI's ``seapeft generate`` calls :func:`write_sample_data` the same way)::

    python -m seapeft_monailabel.data.datastore --site target --count 8 --seed 2025 --out sample-data
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import nibabel as nib
import numpy as np

from ..atomic import write_bytes_atomic
from .phantoms import Phantom, generate
from .sites import SITES, get_site
from .volumes import find_volumes, load_volume_pair  # noqa: F401 - load_volume_pair: its historical home

LABEL_DIR = os.path.join("labels", "final")
DATASET_JSON = "dataset.json"
#: Version of the generator recipe; bump when a change alters the generated arrays.
GENERATOR_VERSION = 1


def subject_id(site: str, index: int) -> str:
    """Datastore id of subject ``index`` of ``site``, e.g. ``target_003``."""
    return f"{site}_{index:03d}"


def image_path(root: "str | Path", sid: str) -> Path:
    """Path of the image of subject ``sid`` in the datastore at ``root``."""
    return Path(root) / f"{sid}.nii.gz"


def label_path(root: "str | Path", sid: str) -> Path:
    """Path of the final label of subject ``sid`` in the datastore at ``root``."""
    return Path(root) / LABEL_DIR / f"{sid}.nii.gz"


def save_nifti(path: "str | Path", array: np.ndarray, affine: np.ndarray, dtype) -> None:
    """Write ``array`` (X, Y, Z) as gzipped NIfTI-1 with ``affine`` (4x4, mm), reproducibly.

    The values must be representable in ``dtype`` exactly (no silent rounding or wrapping).
    """
    out = np.asarray(array).astype(dtype)
    if not np.array_equal(out, array):
        raise ValueError(f"{path}: values are not exactly representable as {np.dtype(dtype).name}")
    img = nib.Nifti1Image(out, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    write_bytes_atomic(path, gzip.compress(img.to_bytes(), compresslevel=9, mtime=0))


def write_subject(root: "str | Path", sid: str, ph: Phantom, with_label: bool = True) -> Dict[str, str]:
    """Write one phantom's image (int16) and, if ``with_label``, its task label (uint8).

    Returns:
        ``{"image": path}`` plus ``"label": path`` when a label was written.
    """
    save_nifti(image_path(root, sid), ph.image, ph.affine, np.int16)
    item = {"image": str(image_path(root, sid))}
    if with_label:
        save_nifti(label_path(root, sid), ph.label, ph.affine, np.uint8)
        item["label"] = str(label_path(root, sid))
    return item


def _write_dataset(root: Path, site_name: str, seed: int, indices: Sequence[int], unlabelled: int) -> List[Dict[str, str]]:
    site = get_site(site_name)
    root.mkdir(parents=True, exist_ok=True)
    items, ids_lab, ids_unlab = [], [], []
    n_lab = len(indices) - unlabelled
    for k, i in enumerate(indices):
        sid = subject_id(site.name, i)
        item = write_subject(root, sid, generate(site, seed, i), with_label=k < n_lab)
        (ids_lab if "label" in item else ids_unlab).append(sid)
        if "label" in item:
            items.append(item)
    meta = {
        "generator": "seapeft_monailabel.data.phantoms", "generator_version": GENERATOR_VERSION,
        "site": site.name, "modality": site.modality, "description": site.description,
        "seed": int(seed), "indices": [int(i) for i in indices], "spacing_mm": list(site.spacing),
        "labels": site.label_names, "seen": list(site.seen), "novel": list(site.novel),
        "labelled": ids_lab, "unlabelled": ids_unlab,
    }
    (root / DATASET_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    return items


def write_site(out_dir: "str | Path", site_name: str, n: int, seed: int) -> List[Dict[str, str]]:
    """Write ``n`` labelled subjects (indices 0..n-1) of ``site_name`` as a local datastore.

    Returns:
        The datalist ``[{"image": path, "label": path}, ...]`` in index order.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return _write_dataset(Path(out_dir), site_name, seed, list(range(n)), unlabelled=0)


def write_sample_data(out_dir: "str | Path", site: str = "target", n: int = 8, seed: int = 2025,
                      n_unlabelled: int = 2) -> List[Dict[str, str]]:
    """Write the demo datastore: ``n`` subjects, the last ``n_unlabelled`` of them without labels
    (left for MONAI Label's active learning to pick). Defaults reproduce ``sample-data/``.

    Returns:
        The datalist of the labelled subjects.
    """
    if not 0 <= n_unlabelled < n:
        raise ValueError(f"need 0 <= n_unlabelled < n, got n={n}, n_unlabelled={n_unlabelled}")
    return _write_dataset(Path(out_dir), site, seed, list(range(n)), unlabelled=n_unlabelled)


def make_datalist(root: "str | Path") -> List[Dict[str, str]]:
    """Datalist of the labelled subjects in a local datastore, sorted by id.

    Images and labels may be in any format :mod:`.volumes` reads (NIfTI, NRRD, MetaImage, DICOM series).

    Returns:
        ``[{"image": "<root>/<id>.<ext>", "label": "<root>/labels/final/<id>.<ext>"}, ...]``
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"datastore directory not found: {root}")
    labels = _final_labels(root)
    return [{"image": str(path), "label": str(labels[sid])} for sid, path in find_volumes(root).items()
            if sid in labels]


def list_ids(root: "str | Path") -> List[str]:
    """Ids of all images in a local datastore (any supported format), sorted."""
    return list(find_volumes(root))


def unlabelled_ids(root: "str | Path") -> List[str]:
    """Ids of the images that have no label under ``labels/final``."""
    labels = _final_labels(Path(root))
    return [sid for sid in list_ids(root) if sid not in labels]


def _final_labels(root: Path) -> Dict[str, Path]:
    folder = root / LABEL_DIR
    return find_volumes(folder) if folder.is_dir() else {}


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command line: generate a datastore of phantoms (see module docstring)."""
    p = argparse.ArgumentParser(prog="python -m seapeft_monailabel.data.datastore",
                                description="Write phantom volumes as a MONAI Label local datastore.")
    p.add_argument("--site", default="target", choices=sorted(SITES), help="site to generate (default: target)")
    p.add_argument("--count", type=int, default=8, help="number of subjects (default: 8)")
    p.add_argument("--seed", type=int, default=2025, help="dataset seed (default: 2025)")
    p.add_argument("--unlabelled", type=int, default=2,
                   help="how many of the last subjects to leave without labels (default: 2)")
    p.add_argument("--out", required=True, help="output directory")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    items = write_sample_data(a.out, site=a.site, n=a.count, seed=a.seed, n_unlabelled=a.unlabelled)
    print(f"wrote {a.count} {a.site} subjects ({len(items)} labelled) to {a.out} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
