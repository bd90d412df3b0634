"""The final selection's guard against a unit set whose output is degenerate on whole volumes.

The audit patches each hold foreground, so a set that labels the background far from the structure (the
air around a head called "brain") can still score well on them. Before a candidate wins, it segments the
whole selection volume (sliding window, as the test Dice is measured) and each structure's predicted
volume is compared with the structure's volume in every labelled volume of the run (support and
selection): a candidate whose predicted volume of some structure exceeds ``ratio`` times the largest
labelled one, or falls below the smallest divided by ``ratio``, is implausible and cannot win while a
plausible candidate exists. Candidates are segmented down the selection's ranking until the first
plausible one (those below it cannot win, so they are never segmented). The whole-volume Dice on the selection volume is recorded beside the patch
Dice, so a reader sees how far the patches' verdict can be trusted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from ..data.transforms import eval_transforms
from ..inference.predictor import torch_predictor
from ..metrics import dice_per_class
from ..peft import UnitRegistry


def _voxel_ml(tensor) -> float:
    """Millilitres of one voxel of a MONAI MetaTensor ``(C, X, Y, Z)`` (1 mm^3 without an affine)."""
    affine = getattr(tensor, "affine", None)
    if affine is None:
        return 1e-3
    return float(abs(torch.linalg.det(torch.as_tensor(affine, dtype=torch.float64)[:3, :3]))) * 1e-3


def structure_volumes(label: torch.Tensor, n_classes: int, voxel_ml: float) -> list[float]:
    """Volume in ml of every foreground class ``1..K-1`` of an integer label map ``(X, Y, Z)``."""
    counts = torch.bincount(label.reshape(-1).long(), minlength=n_classes)[1:n_classes]
    return [float(c) * voxel_ml for c in counts]


@dataclass
class WholeVolumeVerdict:
    """A candidate on the whole selection volume: Dice per structure, predicted volumes (ml), plausibility."""

    dice: list[float]
    volumes_ml: list[float]
    plausible: bool
    why: str | None = None


class PlausibilityCheck:
    """Segments the selection volume with a unit set on, and checks each structure's volume.

    Args:
        registry: the network with its units (gates are restored after every check).
        selection: the selection volume ``{"image", "label"}``.
        labelled: every labelled volume of the run (support and selection), for the volume range.
        n_classes: K, background included.
        patch_size: the sliding window (the training patch).
        spacing: the run's resampling (None: native grids).
        ratio: how far outside the labelled range a predicted volume may lie (> 1).
        label_names: the K - 1 structures' names, for the reason (default ``class 1`` ...).
    """

    def __init__(self, registry: UnitRegistry, selection: dict, labelled: Sequence[dict], n_classes: int,
                 patch_size: Sequence[int], spacing: Sequence[float] | None, ratio: float,
                 device: torch.device | str = "cpu", label_names: Sequence[str] | None = None):
        if ratio <= 1:
            raise ValueError(f"the plausibility ratio must be > 1 (got {ratio})")
        self.registry = registry
        self.n_classes = n_classes
        self.ratio = float(ratio)
        self.device = torch.device(device)
        chain = eval_transforms(spacing)
        data = chain(dict(selection))
        self.image = data["image"]
        self.label = data["label"][0].long()
        self.voxel_ml = _voxel_ml(data["image"])
        volumes = [structure_volumes(self.label, n_classes, self.voxel_ml)]
        for item in labelled:
            if item["label"] != selection["label"]:
                other = chain(dict(item))
                volumes.append(structure_volumes(other["label"][0].long(), n_classes, _voxel_ml(other["image"])))
        self.low = [min(v[k] for v in volumes) for k in range(n_classes - 1)]
        self.high = [max(v[k] for v in volumes) for k in range(n_classes - 1)]
        self.patch_size = tuple(patch_size)
        self.label_names = list(label_names or [f"class {k}" for k in range(1, n_classes)])

    @torch.no_grad()
    def __call__(self, names: Iterable[str]) -> WholeVolumeVerdict:
        """The verdict on the unit set ``names``."""
        network = self.registry.network
        was_training = network.training
        network.eval()
        try:
            with self.registry.gates(names):
                predicted = torch_predictor(network, self.patch_size, device=self.device).class_map(self.image)
        finally:
            network.train(was_training)
        dice = dice_per_class(predicted, self.label, self.n_classes)
        volumes = structure_volumes(predicted, self.n_classes, self.voxel_ml)
        for name, got, low, high in zip(self.label_names, volumes, self.low, self.high):
            if got > self.ratio * high or got < low / self.ratio:
                why = (f"{name}: {got:.0f} ml predicted on the selection volume, labelled volumes hold "
                       f"{low:.0f}-{high:.0f} ml")
                return WholeVolumeVerdict(dice, volumes, False, why)
        return WholeVolumeVerdict(dice, volumes, True)
