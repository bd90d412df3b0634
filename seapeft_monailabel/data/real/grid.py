"""Put a real head and its brain mask on the bench's grid with SimpleITK: RAS, isotropic voxels, cropped to the head.

1. both volumes are reoriented to RAS (``DICOMOrient``, a permutation and flips, no interpolation);
2. both are resampled onto one isotropic grid of ``spacing_mm`` covering the same extent (image:
   linear; mask: linear, then >= 0.5, which keeps the mask's volume through partial voxels);
3. both are cropped to the bounding box of the head (Otsu foreground of the image, together with
   the mask) plus ``margin_mm``, so that every subject's field of view is its head.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def _resample(volume: sitk.Image, spacing_mm: float) -> sitk.Image:
    """``volume`` (float32) linearly resampled to isotropic ``spacing_mm`` over the same physical extent."""
    old = np.asarray(volume.GetSpacing())
    extent = old * np.asarray(volume.GetSize())
    size = [max(1, int(round(e / spacing_mm))) for e in extent]
    direction = np.asarray(volume.GetDirection()).reshape(3, 3)
    corner = np.asarray(volume.GetOrigin()) - direction @ (old / 2)  # outer corner of the first voxel
    origin = corner + direction @ np.full(3, spacing_mm / 2)
    return sitk.Resample(sitk.Cast(volume, sitk.sitkFloat32), size, sitk.Transform(), sitk.sitkLinear,
                         tuple(origin), (spacing_mm,) * 3, volume.GetDirection(), 0.0, sitk.sitkFloat32)


def _head_box(image: sitk.Image, mask: sitk.Image, margin_vox: int) -> tuple[list[int], list[int]]:
    """Index and size of the box around the Otsu head foreground and the mask, grown by ``margin_vox``."""
    head = sitk.OtsuThreshold(image, 0, 1) | mask
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(head)
    box = stats.GetBoundingBox(1)
    start = [max(0, box[i] - margin_vox) for i in range(3)]
    stop = [min(image.GetSize()[i], box[i] + box[i + 3] + margin_vox) for i in range(3)]
    return start, [b - a for a, b in zip(start, stop)]


def bench_grid(image: sitk.Image, mask: sitk.Image, spacing_mm: float = 3.0,
               margin_mm: float = 6.0) -> tuple[sitk.Image, sitk.Image]:
    """``(image float32, mask uint8 0/1)`` in RAS on an isotropic ``spacing_mm`` grid cropped to the head."""
    if spacing_mm <= 0 or margin_mm < 0:
        raise ValueError(f"spacing must be positive and margin non-negative (got {spacing_mm}, {margin_mm})")
    image = _resample(sitk.DICOMOrient(image, "RAS"), spacing_mm)
    mask = sitk.Cast(_resample(sitk.DICOMOrient(mask, "RAS"), spacing_mm) >= 0.5, sitk.sitkUInt8)
    start, size = _head_box(image, mask, int(np.ceil(margin_mm / spacing_mm)))
    return sitk.RegionOfInterest(image, size, start), sitk.RegionOfInterest(mask, size, start)


def to_nifti_arrays(volume: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """``(array (X, Y, Z), 4x4 RAS affine in mm)`` of a SimpleITK volume (whose geometry is LPS)."""
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    direction = np.asarray(volume.GetDirection()).reshape(3, 3)
    affine[:3, :3] = lps_to_ras @ direction @ np.diag(volume.GetSpacing())
    affine[:3, 3] = lps_to_ras @ np.asarray(volume.GetOrigin())
    return sitk.GetArrayFromImage(volume).transpose(2, 1, 0), affine
