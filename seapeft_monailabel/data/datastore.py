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
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import nibabel as nib
import numpy as np

from ..atomic import write_bytes_atomic
from .phantoms import Phantom, generate
from .sites import SITES, get_site

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

    Returns:
        ``[{"image": "<root>/<id>.nii.gz", "label": "<root>/labels/final/<id>.nii.gz"}, ...]``
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"datastore directory not found: {root}")
    return [{"image": str(image_path(root, sid)), "label": str(label_path(root, sid))}
            for sid in list_ids(root) if label_path(root, sid).is_file()]


def list_ids(root: "str | Path") -> List[str]:
    """Ids of all images (``<root>/<id>.nii.gz``) in a local datastore, sorted."""
    return sorted(p.name[: -len(".nii.gz")] for p in Path(root).glob("*.nii.gz"))


def unlabelled_ids(root: "str | Path") -> List[str]:
    """Ids of the images that have no label under ``labels/final``."""
    return [sid for sid in list_ids(root) if not label_path(root, sid).is_file()]


def load_volume_pair(image: "str | Path", label: "str | Path | None" = None,
                     label_names: Optional[Mapping[str, int]] = None) -> Tuple[np.ndarray, Optional[np.ndarray], Tuple[float, ...]]:
    """Read and check an image (and label) NIfTI pair.

    Returns:
        (image float32 (X, Y, Z), label uint8 (X, Y, Z) or None, spacing in mm (3,)).

    Raises:
        ValueError: naming the file, when a volume is not 3D, label and image grids differ, the label
            is empty, or it holds values outside ``label_names`` (when given); FileNotFoundError or
            ValueError for missing or unreadable files.
    """
    img, data = _read(image)
    data = data.astype(np.float32)
    if data.ndim != 3:
        raise ValueError(f"{image}: expected a 3D volume, got shape {data.shape}")
    if min(data.shape) < 2:
        raise ValueError(f"{image}: shape {data.shape} is a single 2D slice, not a 3D volume")
    spacing = tuple(float(v) for v in img.header.get_zooms()[:3])
    if label is None:
        return data, None, spacing
    lab_img, lab = _read(label)
    if lab.shape != data.shape:
        raise ValueError(f"{label}: label shape {lab.shape} differs from image shape {data.shape} ({image})")
    if not np.allclose(lab_img.affine, img.affine, atol=1e-3):
        raise ValueError(f"{label}: label affine differs from the image's ({image})")
    if np.any(lab != np.round(lab)) or lab.min() < 0 or lab.max() > 255:
        raise ValueError(f"{label}: label values must be integers in 0..255")
    lab = lab.astype(np.uint8)
    if not lab.any():
        raise ValueError(f"{label}: label is empty (no foreground voxel)")
    if label_names is not None:
        bad = sorted(set(np.unique(lab).tolist()) - set(int(v) for v in label_names.values()))
        if bad:
            raise ValueError(f"{label}: unknown label values {bad}; expected {dict(label_names)}")
    return data, lab, spacing


def _read(path: "str | Path") -> Tuple[nib.Nifti1Image, np.ndarray]:
    """Load a NIfTI file and its data array (a trailing singleton 4th axis is dropped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"volume not found: {path}")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception as e:  # nibabel and gzip raise several types for corrupt files
        raise ValueError(f"{path}: cannot read as NIfTI ({e})") from e
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    return img, data


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
