"""Volume files as users keep them: which formats are read, finding them in folders, reading and checking.

Formats are the ones MONAI's ``LoadImage`` reads: NIfTI (``.nii.gz``, ``.nii``), NRRD (``.nrrd``),
MetaImage (``.mha``, or ``.mhd`` with its data file) and DICOM series (a folder of DICOM files; the
command line takes them, MONAI Label 0.8.5's local datastore lists files only). Every read goes through
``LoadImage`` (nibabel, pynrrd, ITK), so the arrays and the RAS affines checked here are exactly what
the training and inference transforms see.

Ids follow MONAI Label's datastore: a file's id is its name without the extension
(``target_000.nrrd`` -> ``target_000``), a DICOM series folder's id is the folder's name. A label
belongs to the image of the same id, in any of the formats.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

#: File extensions read, longest first where one ends another.
VOLUME_EXTENSIONS: Tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
#: What error messages call the formats that are read.
FORMATS = ", ".join(VOLUME_EXTENSIONS) + " files or DICOM series folders"
#: Extension a prediction is written with when its input has none that fits one file (MetaImage's
#: ``.mhd`` needs a second data file; a DICOM series is a folder).
SINGLE_FILE = {".mhd": ".mha", "": ".nii.gz"}


def split_volume_name(name: str) -> Optional[Tuple[str, str]]:
    """``(id, extension)`` of a file name in a supported format (extension lower-cased), else None."""
    lower = name.lower()
    for ext in VOLUME_EXTENSIONS:
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)], ext
    return None


def is_dicom_series(folder: "str | Path") -> bool:
    """Whether ``folder`` holds a DICOM series (its first file, in name order, is a DICOM file)."""
    from pydicom.misc import is_dicom

    folder = Path(folder)
    if not folder.is_dir():
        return False
    first = next((p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")), None)
    return first is not None and is_dicom(str(first))


def volume_extension(path: "str | Path") -> str:
    """The format's extension of ``path`` (``""`` for a DICOM series folder).

    Raises:
        ValueError: naming ``path``, when it is neither a supported file nor a DICOM series folder.
    """
    path = Path(path)
    if path.is_dir():
        if not is_dicom_series(path):
            raise ValueError(f"{path}: a folder that holds no DICOM series (readable: {FORMATS})")
        return ""
    split = split_volume_name(path.name)
    if split is None:
        raise ValueError(f"{path}: unsupported format '{''.join(path.suffixes) or path.name}' (readable: {FORMATS})")
    return split[1]


def output_extension(path: "str | Path") -> str:
    """Extension to write a prediction on the volume at ``path`` with: its own, or one file of the same kind.

    NRRD in, NRRD out; NIfTI keeps ``.nii`` or ``.nii.gz``; ``.mha`` stays; ``.mhd`` becomes ``.mha``
    (one file instead of two) and a DICOM series folder ``.nii.gz``.
    """
    ext = volume_extension(path)
    return SINGLE_FILE.get(ext, ext)


def find_volumes(folder: "str | Path", skip: Tuple[str, ...] = ("labels",)) -> Dict[str, Path]:
    """``{id: path}`` of the volumes directly in ``folder`` (files and DICOM series sub-folders), sorted by id.

    Sub-folders named in ``skip`` (the datastore's ``labels``) and hidden entries are not looked into.

    Raises:
        ValueError: naming both files, when two volumes have the same id (``a.nrrd`` and ``a.nii.gz``).
    """
    found: Dict[str, Path] = {}
    for entry in sorted(Path(folder).iterdir()):
        if entry.name.startswith(".") or entry.name in skip:
            continue
        if entry.is_dir():
            sid = entry.name if is_dicom_series(entry) else None
        else:
            split = split_volume_name(entry.name)
            sid = split[0] if split else None
        if sid is None:
            continue
        if sid in found:
            raise ValueError(f"{folder}: two volumes with id '{sid}': {found[sid].name} and {entry.name}; keep one")
        found[sid] = entry
    return dict(sorted(found.items()))


@lru_cache(maxsize=1)
def _loader():
    from monai.transforms import LoadImage

    return LoadImage(image_only=True)


def read_volume(path: "str | Path") -> Tuple[np.ndarray, np.ndarray]:
    """Read a volume in any supported format with MONAI's ``LoadImage``.

    Returns:
        (array float32, spatial axes first; a trailing singleton axis is dropped, RAS affine (4, 4) in mm).

    Raises:
        FileNotFoundError: naming ``path`` when it does not exist.
        ValueError: naming ``path`` and its format when the format is not supported or the file cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"volume not found: {path}")
    ext = volume_extension(path)
    try:
        image = _loader()(str(path))
    except Exception as err:  # the readers (nibabel, pynrrd, ITK, pydicom) raise many types for bad files
        kind = f"'{ext}'" if ext else "a DICOM series"
        raise ValueError(f"{path}: cannot read as {kind} ({type(err).__name__}: {err})") from None
    data = np.asarray(image, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    return data, np.asarray(image.affine, dtype=np.float64)


def voxel_spacing(affine: np.ndarray) -> Tuple[float, float, float]:
    """Voxel size in mm along the three array axes of a 4x4 affine."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


def load_volume_pair(image: "str | Path", label: "str | Path | None" = None,
                     label_names: Optional[Mapping[str, int]] = None) -> Tuple[np.ndarray, Optional[np.ndarray], Tuple[float, ...]]:
    """Read and check an image (and label): any supported format, the two may differ.

    Returns:
        (image float32 (X, Y, Z), label uint8 (X, Y, Z) or None, spacing in mm (3,)).

    Raises:
        ValueError: naming the file, when a volume is not 3D, label and image grids differ, the label
            is empty, or it holds values outside ``label_names`` (when given); FileNotFoundError or
            ValueError for missing, unsupported or unreadable files.
    """
    data, affine = read_volume(image)
    if data.ndim != 3:
        raise ValueError(f"{image}: expected a 3D volume, got shape {data.shape}")
    if min(data.shape) < 2:
        raise ValueError(f"{image}: shape {data.shape} is a single 2D slice, not a 3D volume")
    spacing = voxel_spacing(affine)
    if label is None:
        return data, None, spacing
    lab, lab_affine = read_volume(label)
    if lab.shape != data.shape:
        raise ValueError(f"{label}: label shape {lab.shape} differs from image shape {data.shape} ({image})")
    if not np.allclose(lab_affine, affine, atol=1e-3):
        raise ValueError(f"{label}: label affine differs from the image's ({image}): the label is on another grid")
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
