"""MONAI transform chains shared by training, evaluation and serving.

Input: datalist items ``{"image": path, "label": path}`` in any format MONAI's ``LoadImage`` reads
(NIfTI, NRRD, MetaImage, DICOM series folders; see :mod:`.volumes`). Preprocessing is identical for
training and evaluation and works for CT-like and MR-like sites alike:

1. load, channel first, reorient to RAS;
2. optionally resample to ``spacing`` mm (bilinear image, nearest label);
3. intensity: map the image's own 0.5th..99.5th percentiles to [0, 1], clipped
   (:data:`INTENSITY_PERCENTILES`); no site-specific window, so one network sees both CT and MR.

Training adds padding to the patch size, ``num_samples`` random crops of ``patch_size`` centred on
foreground with probability ``pos / (pos + neg)``, and light intensity augmentation. Crops are
drawn afresh at every call: with ``monai.data.CacheDataset`` only the deterministic prefix (everything
before the crop) is cached. No flips: the tasks distinguish left from right kidneys.

Output tensors: image float32 (1, X, Y, Z) in [0, 1] (up to augmentation), label float32
(1, X, Y, Z) holding the integer task labels. Patches are (1, *patch_size).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    FgBgToIndicesd,
    LoadImaged,
    Orientationd,
    RandCropByPosNegLabeld,
    RandScaleIntensityd,
    RandShiftIntensityd,
    ScaleIntensityRangePercentilesd,
    Spacingd,
    SpatialPadd,
)

#: Lower and upper intensity percentiles mapped to 0 and 1 (clipped), for every site.
INTENSITY_PERCENTILES: Tuple[float, float] = (0.5, 99.5)


def _check_patch(patch_size: Sequence[int]) -> Tuple[int, int, int]:
    p = tuple(int(v) for v in patch_size)
    if len(p) != 3 or min(p) < 1:
        raise ValueError(f"patch_size must be three positive integers, got {patch_size!r}")
    return p


def deterministic_transforms(spacing: Optional[Sequence[float]] = None, with_label: bool = True) -> List:
    """The preprocessing shared by every chain (list of MONAI transforms, no randomness)."""
    keys = ["image", "label"] if with_label else ["image"]
    chain = [
        LoadImaged(keys=keys, image_only=True),
        EnsureChannelFirstd(keys=keys),
        Orientationd(keys=keys, axcodes="RAS"),
    ]
    if spacing is not None:
        if len(spacing) != 3 or min(spacing) <= 0:
            raise ValueError(f"spacing must be three positive values in mm, got {spacing!r}")
        chain.append(Spacingd(keys=keys, pixdim=tuple(float(s) for s in spacing),
                              mode=("bilinear", "nearest")[: len(keys)]))
    lo, hi = INTENSITY_PERCENTILES
    chain.append(ScaleIntensityRangePercentilesd(keys="image", lower=lo, upper=hi, b_min=0.0, b_max=1.0, clip=True))
    return chain


def train_transforms(patch_size: Sequence[int], spacing: Optional[Sequence[float]] = None, num_samples: int = 2,
                     pos: float = 1.0, neg: float = 1.0, augment: bool = True, seed: Optional[int] = None) -> Compose:
    """Training chain: preprocessing, then ``num_samples`` random patches of ``patch_size`` voxels.

    Args:
        patch_size: (X, Y, Z) patch size in voxels.
        spacing: target voxel size in mm, or None to keep each volume's own spacing.
        num_samples: patches per volume per call (the chain returns a list of that many dicts).
        pos, neg: relative frequency of foreground- and background-centred patches.
        augment: add random intensity scale/shift (probability 0.3 each).
        seed: seeds the chain's random state (None: unseeded; every call still draws new patches).
    """
    patch = _check_patch(patch_size)
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    keys = ["image", "label"]
    chain = deterministic_transforms(spacing, with_label=True) + [
        SpatialPadd(keys=keys, spatial_size=patch),
        # foreground/background voxel indices are deterministic: computed once and cached with the volume
        FgBgToIndicesd(keys="label", fg_postfix="_fg", bg_postfix="_bg"),
        RandCropByPosNegLabeld(keys=keys, label_key="label", spatial_size=patch, pos=pos, neg=neg,
                               num_samples=num_samples, fg_indices_key="label_fg", bg_indices_key="label_bg"),
    ]
    if augment:
        chain += [RandScaleIntensityd(keys="image", factors=0.1, prob=0.3),
                  RandShiftIntensityd(keys="image", offsets=0.05, prob=0.3)]
    chain.append(EnsureTyped(keys=keys, dtype=torch.float32))
    c = Compose(chain)
    if seed is not None:
        c.set_random_state(seed=seed)
    return c


def eval_transforms(spacing: Optional[Sequence[float]] = None, with_label: bool = True) -> Compose:
    """Evaluation/inference chain: the same preprocessing, whole volume, no randomness.

    Use ``with_label=False`` for inference on images without labels.
    """
    keys = ["image", "label"] if with_label else ["image"]
    return Compose(deterministic_transforms(spacing, with_label) + [EnsureTyped(keys=keys, dtype=torch.float32)])
