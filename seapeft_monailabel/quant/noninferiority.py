"""Is INT8 as good as FP32? Per-volume Dice on held-out volumes, paired Wilcoxon signed-rank test.

A volume's Dice is the mean over the foreground classes of the hard Dice of the argmax prediction
(the served :class:`..inference.Predictor`: sliding-window inference, Gaussian blending, overlap 0.25).
The INT8 model passes when its mean Dice is at most :data:`MAX_DROP_POINTS` below FP32's and the paired
test finds no significant loss: the one-sided Wilcoxon signed-rank test of "INT8 scores lower than FP32"
has p > :data:`ALPHA`. The question is non-inferiority, so an INT8 model that is significantly *better*
passes (a two-sided test would fail it); the two-sided p is reported alongside.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.stats import wilcoxon

from ..data.transforms import eval_transforms
from ..metrics import dice_per_class
from ..inference.predictor import Predictor

#: The largest mean Dice drop, in points (0-100 scale), that INT8 may lose against FP32.
MAX_DROP_POINTS = 0.5
#: Significance level of the paired test.
ALPHA = 0.05


def load_volumes(datalist: Sequence[dict], spacing=None) -> list[dict]:
    """Preprocess every ``{"image", "label"}`` item once: ``{"image": (C, D, H, W), "label": (1, D, H, W)}``."""
    chain = eval_transforms(spacing)
    return [chain(dict(item)) for item in datalist]


def volume_dices(predictor: Predictor, volumes: Sequence[dict], n_classes: int, spacing=None) -> list[float]:
    """Mean foreground Dice of ``predictor``'s class map of every volume, in order (values in [0, 1]).

    ``volumes``: datalist items ``{"image": path, "label": path}`` (preprocessed here with ``spacing``)
    or volumes already preprocessed by :func:`load_volumes`.
    """
    scores = []
    for item in volumes:
        data = item if isinstance(item["image"], torch.Tensor) else load_volumes([item], spacing)[0]
        prediction = predictor.class_map(data["image"])
        scores.append(float(np.mean(dice_per_class(prediction, data["label"][0].long(), n_classes))))
    return scores


@dataclass
class NonInferiority:
    """Paired comparison of per-volume Dice (values in [0, 1]; drops in points, 0-100).

    ``mean_drop_points`` is ``100 * (mean(reference) - mean(candidate))``: positive when the candidate
    is worse. ``p_value`` is the one-sided Wilcoxon signed-rank p of a loss (alternative: the candidate
    scores lower), ``p_two_sided`` the two-sided p of any difference; both 1.0 when every pair is equal.
    """

    reference: list[float]
    candidate: list[float]
    mean_drop_points: float
    p_value: float
    p_two_sided: float
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"mean Dice {100 * np.mean(self.reference):.2f} -> {100 * np.mean(self.candidate):.2f} "
                f"(drop {self.mean_drop_points:+.2f} points, Wilcoxon p = {self.p_value:.3g} for a loss, "
                f"two-sided p = {self.p_two_sided:.3g}, n = {len(self.reference)}): "
                f"{'passed' if self.passed else 'FAILED'}")


def compare(reference: Sequence[float], candidate: Sequence[float], max_drop_points: float = MAX_DROP_POINTS,
            alpha: float = ALPHA) -> NonInferiority:
    """Compare per-volume Dice of ``candidate`` (INT8) against ``reference`` (FP32), paired by volume."""
    ref, cand = np.asarray(reference, float), np.asarray(candidate, float)
    if ref.shape != cand.shape or ref.size == 0:
        raise ValueError(f"need the same non-empty list of volumes for both models, got {ref.size} and {cand.size}")
    drop = 100.0 * float(ref.mean() - cand.mean())
    loss, two_sided = (_wilcoxon_p(ref, cand, alternative) for alternative in ("greater", "two-sided"))
    return NonInferiority([float(v) for v in ref], [float(v) for v in cand], drop, loss, two_sided,
                          passed=drop <= max_drop_points and loss > alpha)


def _wilcoxon_p(reference: np.ndarray, candidate: np.ndarray, alternative: str) -> float:
    """Paired Wilcoxon signed-rank p of ``reference - candidate`` (1.0 when every pair is equal)."""
    if np.all(reference == candidate):
        return 1.0
    p = float(wilcoxon(reference, candidate, zero_method="zsplit", alternative=alternative).pvalue)
    return 1.0 if math.isnan(p) else p
