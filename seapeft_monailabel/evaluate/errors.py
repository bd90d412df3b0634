"""Where a structure's errors lie: voxels missed and added, and how deep inside the structure the missed ones are.

A Dice gap between two methods says how much, not where. These counts tell an eroded or shifted
boundary (missed voxels within a few mm of the surface) from regions missed inside the structure.
Every model segments every volume with the bench's sliding window; the counts add up over all
model-volume pairs (``seapeft errors``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..data.transforms import eval_transforms
from ..peft import load_merged_model
from ..search import preset
from .sliding import predict_volume


@dataclass
class StructureErrors:
    """Voxel counts of one structure, summed over volumes; ``missed_depths_mm``: depth of each missed voxel."""

    true_positive: int = 0
    false_positive: int = 0
    missed_depths_mm: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def false_negative(self) -> int:
        return int(self.missed_depths_mm.size)

    def add(self, prediction: np.ndarray, label: np.ndarray, value: int, spacing: Sequence[float]) -> None:
        """Count one volume: ``prediction`` and ``label`` ``(D, H, W)`` class maps, ``spacing`` in mm per axis.

        A missed voxel's depth is its distance to the nearest voxel outside the structure (one voxel
        step on the surface), from :func:`scipy.ndimage.distance_transform_edt`.
        """
        truth, predicted = label == value, prediction == value
        depth = ndimage.distance_transform_edt(truth, sampling=spacing)
        self.true_positive += int((truth & predicted).sum())
        self.false_positive += int((predicted & ~truth).sum())
        self.missed_depths_mm = np.concatenate([self.missed_depths_mm, depth[truth & ~predicted]])

    def summary(self, rim_mm: float) -> str:
        missed = self.false_negative
        rim = float((self.missed_depths_mm <= rim_mm).mean()) if missed else 0.0
        dice = 2 * self.true_positive / max(1, 2 * self.true_positive + self.false_positive + missed)
        return (f"Dice {100 * dice:.1f}; true positives {self.true_positive:,}, false positives "
                f"{self.false_positive:,}, missed {missed:,} ({100 * rim:.0f} % of them within {rim_mm:g} mm of "
                f"the surface)")


def structure_errors(model_paths: Sequence[str], datalist: Sequence[dict], value: int, run_preset: str = "cpu",
                     device: str = "cpu") -> StructureErrors:
    """Errors of label ``value`` for every model in ``model_paths`` on every ``{"image", "label"}`` item."""
    config = preset(run_preset)
    chain = eval_transforms(config.spacing)
    volumes = [chain(dict(item)) for item in datalist]
    errors = StructureErrors()
    for path in model_paths:
        network, _ = load_merged_model(path)
        network.to(device).eval()
        for data in volumes:
            prediction = predict_volume(network, data["image"], config.patch_size, device=device)
            spacing = [float(s) for s in data["image"].pixdim[:3]]
            errors.add(prediction.numpy(), data["label"][0].long().numpy(), value, spacing)
    return errors

