"""Whole-volume prediction of a PyTorch network through the library's predictor, and evaluation over a datalist."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..data.transforms import eval_transforms
from ..inference.predictor import Predictor, torch_predictor
from ..inference.window import OVERLAP
from ..metrics import dice_per_class


def predict_volume(network: nn.Module, image: torch.Tensor, roi_size: Sequence[int], overlap: float = OVERLAP,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """Class map of one volume by :func:`..inference.torch_predictor` (the served sliding window).

    Args:
        network: maps ``(B, C, *roi_size)`` to logits ``(B, K, *roi_size)``, on ``device``.
        image: ``(C, D, H, W)`` preprocessed image.
        roi_size: the sliding window, the training patch size.
        overlap: window overlap; windows are blended with Gaussian weights.

    Returns:
        ``(D, H, W)`` int64 argmax class map on the CPU.
    """
    return torch_predictor(network, roi_size, device=device, overlap=overlap).class_map(image)


def evaluate_predictor(predictor: Predictor, datalist: Sequence[dict], n_classes: int,
                       spacing: Sequence[float] | None = None, relabel: Sequence[int] | None = None) -> list[list[float]]:
    """Hard Dice per foreground class for every ``{"image", "label"}`` item (list of ``K - 1`` lists), the class
    maps by ``predictor`` (PyTorch or OpenVINO, its window and overlap).

    ``relabel``: for a model of another label map, the label value each of its classes is scored as
    (``relabel[c]`` for class ``c``; 0 for classes the labels do not have).
    """
    chain = eval_transforms(spacing)
    table = None if relabel is None else torch.as_tensor(list(relabel), dtype=torch.long)
    results = []
    for item in datalist:
        data = chain(dict(item))
        prediction = predictor.class_map(data["image"])
        if table is not None:
            prediction = table[prediction]
        results.append(dice_per_class(prediction, data["label"][0].long(), n_classes))
    return results


def evaluate_volumes(network: nn.Module, datalist: Sequence[dict], roi_size: Sequence[int], n_classes: int,
                     spacing: Sequence[float] | None = None, device: str | torch.device = "cpu") -> list[list[float]]:
    """:func:`evaluate_predictor` of a PyTorch ``network`` (in eval mode meanwhile) with window ``roi_size``."""
    was_training = network.training
    network.eval()
    try:
        return evaluate_predictor(torch_predictor(network, roi_size, device=device), datalist, n_classes, spacing)
    finally:
        network.train(was_training)
