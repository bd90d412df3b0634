"""Patches for the loop: a never-ending stream of fresh random training patches, and the fixed audit set."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from monai.data import CacheDataset, DataLoader, list_data_collate
from monai.transforms import Compose, EnsureTyped, RandCropByLabelClassesd, SpatialPadd

from ..data.transforms import deterministic_transforms, train_transforms
from .config import AUDIT_WINDOWS


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    """A MONAI MetaTensor as a plain tensor (the loop needs no metadata)."""
    return tensor.as_tensor() if hasattr(tensor, "as_tensor") else tensor


class PatchStream:
    """Fresh random patches every step (half of them centred on foreground), never a replay.

    Only the deterministic preprocessing (load, orient, intensity) is cached; the crops and the
    intensity augmentation are drawn anew at every step. Yields ``(image, label)`` batches of
    ``patches_per_step`` patches from one volume: ``(P, 1, *patch)`` float32 and ``(P, 1, *patch)``.
    """

    def __init__(self, datalist: Sequence[dict], patch_size: Sequence[int], patches_per_step: int, seed: int,
                 spacing: Sequence[float] | None = None):
        if not datalist:
            raise ValueError("no labelled volumes to train on")
        chain = train_transforms(patch_size, spacing=spacing, num_samples=patches_per_step, seed=seed)
        # copy_cache=False: the random part only reads the cached volume (crops are new tensors), so the
        # per-step deep copy of the whole volume and its foreground indices is not needed
        self.dataset = CacheDataset(list(datalist), chain, progress=False, num_workers=0, copy_cache=False)
        self.seed = seed

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = 0
        while True:
            # a new generator per epoch: MONAI's DataLoader re-seeds the transforms from the generator and then
            # resets it to its initial seed, so one shared generator would replay the same crops every epoch
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            loader = DataLoader(self.dataset, batch_size=1, shuffle=True, num_workers=0, generator=generator,
                                collate_fn=list_data_collate)
            for batch in loader:
                yield _plain(batch["image"]), _plain(batch["label"])
            epoch += 1


def audit_patches(item: dict, patch_size: Sequence[int], n_patches: int, n_classes: int, seed: int,
                  spacing: Sequence[float] | None = None, windows: str = "random") -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed audit set: ``n_patches`` patches of the held-out volume, each centred on a foreground class.

    Classes take turns as patch centres, so every structure is audited. With ``windows="random"`` each
    patch is centred on a random voxel of its class; with ``"centred"`` the first patch of each class is
    centred on the class's centre of mass (shifted inside the volume), so a structure smaller than the patch
    lies whole in it, and the patches beyond one per class are random as before. Returns images and labels
    ``(n_patches, 1, *patch_size)``.
    """
    if windows not in AUDIT_WINDOWS:
        raise ValueError(f"audit windows must be one of {', '.join(AUDIT_WINDOWS)} (got {windows!r})")
    volume = Compose(deterministic_transforms(spacing) + [
        SpatialPadd(keys=["image", "label"], spatial_size=tuple(patch_size))])(dict(item))
    crops = Compose([
        RandCropByLabelClassesd(keys=["image", "label"], label_key="label", spatial_size=tuple(patch_size),
                                num_classes=n_classes, ratios=[0] + [1] * (n_classes - 1), num_samples=n_patches,
                                warn=False),
        EnsureTyped(keys=["image", "label"], dtype=torch.float32, track_meta=False),
    ])
    crops.set_random_state(seed=seed)
    patches = [(p["image"], p["label"]) for p in crops(volume)]
    if windows == "centred":
        label = _plain(volume["label"])
        present = [c for c in range(1, n_classes) if bool((label == c).any())][:n_patches]
        patches[:len(present)] = [_window(volume, torch.nonzero(label[0] == c).float().mean(0), patch_size)
                                  for c in present]
    images = torch.stack([i for i, _ in patches])
    labels = torch.stack([lab for _, lab in patches])
    if labels.max() < 1:
        raise ValueError(f"{item.get('label')}: the audit volume's label holds no foreground")
    return images, labels


def _window(volume: dict, centre: torch.Tensor, patch_size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``patch_size`` window of ``volume`` (image and label ``(1, *shape)``) around ``centre`` (voxel
    coordinates), shifted to lie inside the volume."""
    shape = volume["label"].shape[1:]
    start = [min(max(int(round(float(c))) - p // 2, 0), n - p) for c, p, n in zip(centre, patch_size, shape)]
    box = (slice(None),) + tuple(slice(s, s + p) for s, p in zip(start, patch_size))
    return _plain(volume["image"])[box].float(), _plain(volume["label"])[box].float()
