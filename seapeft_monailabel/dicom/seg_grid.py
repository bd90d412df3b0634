"""Put a label read back from DICOM SEG onto its image's voxel grid.

DICOM SEG writers (dcmqi's ``itkimage2segimage``, which MONAI Label uses, and OHIF's export) leave out
empty slices, so a SEG read back (MONAI Label: ``pydicom_seg.MultiClassReader``) covers only the
slices with labels: same spacing and directions as the image, fewer slices, another origin. Training
needs the label on the image's grid. :func:`expand_to_image_grid` pads such a sub-grid with
background; any other mismatch (other spacing, other directions, an offset that is not a whole
number of voxels, voxels outside the image) is an error, never a silent resampling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class SegGridError(ValueError):
    """The label is not a sub-grid of its image; the message names both files and the difference."""


def expand_to_image_grid(label: str | Path, image: str | Path, out: str | Path | None = None,
                         tolerance: float = 1e-3) -> Path:
    """Write ``label`` padded to ``image``'s grid to ``out`` (default: overwrite ``label``); return the path.

    Files are anything SimpleITK reads (NIfTI, NRRD). A label already on the image's grid is left as it is.
    """
    import SimpleITK as sitk

    label, image = Path(label), Path(image)
    out = Path(out) if out else label
    lab, img = sitk.ReadImage(str(label)), sitk.ReadImage(str(image))
    if lab.GetDimension() != img.GetDimension():
        raise SegGridError(f"{label}: {lab.GetDimension()}D label for the {img.GetDimension()}D image {image}")
    if not np.allclose(lab.GetSpacing(), img.GetSpacing(), atol=tolerance) or \
            not np.allclose(lab.GetDirection(), img.GetDirection(), atol=tolerance):
        raise SegGridError(f"{label}: spacing {lab.GetSpacing()} / directions differ from the image {image} "
                           f"(spacing {img.GetSpacing()}); not a sub-grid of it")
    offset = np.array(img.TransformPhysicalPointToContinuousIndex(lab.GetOrigin()))
    start = np.round(offset).astype(int)
    if not np.allclose(offset, start, atol=0.01):
        raise SegGridError(f"{label}: its origin falls between voxels of {image} (index {offset.round(3).tolist()})")
    size = np.array(lab.GetSize())
    if (start < 0).any() or (start + size > np.array(img.GetSize())).any():
        raise SegGridError(f"{label}: voxels {start.tolist()}..{(start + size - 1).tolist()} lie outside {image} "
                           f"(size {list(img.GetSize())})")
    if (start == 0).all() and (size == np.array(img.GetSize())).all():
        if out != label:
            sitk.WriteImage(lab, str(out), True)
        return out
    data = sitk.GetArrayFromImage(lab)  # (z, y, x)
    full = np.zeros(sitk.GetArrayFromImage(img).shape, dtype=data.dtype)
    full[start[2]:start[2] + size[2], start[1]:start[1] + size[1], start[0]:start[0] + size[0]] = data
    padded = sitk.GetImageFromArray(full)
    padded.CopyInformation(img)
    sitk.WriteImage(padded, str(out), True)
    return out
