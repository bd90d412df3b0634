"""Sliding-window evaluation of segmentation networks, the benchmark and its report (Dice: :mod:`..metrics`)."""

from .sliding import evaluate_volumes, predict_volume

__all__ = ["evaluate_volumes", "predict_volume"]
