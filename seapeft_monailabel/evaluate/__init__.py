"""Metrics and sliding-window evaluation of segmentation networks."""

from .metrics import dice_per_class, soft_dice
from .sliding import evaluate_volumes, predict_volume

__all__ = ["dice_per_class", "evaluate_volumes", "predict_volume", "soft_dice"]
