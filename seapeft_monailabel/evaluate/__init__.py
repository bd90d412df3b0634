"""Metrics and sliding-window evaluation of segmentation networks."""

from .metrics import dice_from_sums, dice_per_class, soft_dice, soft_dice_sums
from .sliding import evaluate_volumes, predict_volume

__all__ = ["dice_from_sums", "dice_per_class", "evaluate_volumes", "predict_volume", "soft_dice", "soft_dice_sums"]
