"""Support for the format tests (no tests here): volumes written in NIfTI, NRRD and MetaImage with SimpleITK.

SimpleITK is an independent writer (the library reads through MONAI's ``LoadImage``), so a test that
reads these files back checks the reading, not a round trip through the same code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk


def _write(image: sitk.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=not path.name.endswith(".nii"))
    return path


def write_volume(path: Path, array: np.ndarray, spacing=(1.5, 1.25, 3.0), origin=(10.0, -20.0, 5.0)) -> Path:
    """Write ``array`` (X, Y, Z) in the format of ``path``'s extension; identity direction (LPS), ``spacing`` mm."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    return _write(image, Path(path))


def crop_box(label: np.ndarray, size=(64, 56, 40)) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(index, size)`` of a box of ``size`` voxels (clamped to the volume) centred on the foreground of
    ``label`` (X, Y, Z): a small volume that still holds the structures, for fast inference and training."""
    found = np.argwhere(np.asarray(label) > 0)
    centre = (found.min(0) + found.max(0)) // 2
    shape = np.asarray(label.shape)
    size = np.minimum(np.asarray(size), shape)
    index = np.clip(centre - size // 2, 0, shape - size)
    return tuple(int(i) for i in index), tuple(int(n) for n in size)


def convert_volume(source: Path, dest: Path, box: tuple | None = None) -> Path:
    """Write the volume at ``source`` (any format SimpleITK reads) as ``dest``'s format: same voxels and grid,
    or only the ``box`` (``(index, size)`` from :func:`crop_box`) with its place in space kept."""
    image = sitk.ReadImage(str(source))
    if box is not None:
        image = sitk.RegionOfInterest(image, size=box[1], index=box[0])
    copy = sitk.GetImageFromArray(sitk.GetArrayFromImage(image))  # the voxels and the grid, not the header notes
    copy.CopyInformation(image)
    return _write(copy, Path(dest))
