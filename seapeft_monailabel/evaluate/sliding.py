"""Whole-volume prediction with MONAI's sliding-window inference, and evaluation over a datalist."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.inferers import sliding_window_inference

from ..data.transforms import eval_transforms
from .metrics import dice_per_class


@torch.no_grad()
def predict_volume(network: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, roi_size: Sequence[int],
                   overlap: float = 0.25, device: str | torch.device = "cpu") -> torch.Tensor:
    """Class map of one volume.

    Args:
        network: maps ``(B, C, *roi_size)`` to logits ``(B, K, *roi_size)``.
        image: ``(C, D, H, W)`` preprocessed image.
        roi_size: the sliding window, the training patch size.
        overlap: window overlap; windows are blended with Gaussian weights.

    Returns:
        ``(D, H, W)`` int64 argmax class map on the CPU.
    """
    logits = sliding_window_inference(image[None].to(device), roi_size=tuple(roi_size), sw_batch_size=1,
                                      predictor=network, overlap=overlap, mode="gaussian")
    return logits[0].argmax(0).cpu()


def evaluate_volumes(network: torch.nn.Module, datalist: Sequence[dict], roi_size: Sequence[int], n_classes: int,
                     spacing: Sequence[float] | None = None, device: str | torch.device = "cpu") -> list[list[float]]:
    """Hard Dice per foreground class for every ``{"image", "label"}`` item (list of ``K - 1`` lists)."""
    chain = eval_transforms(spacing)
    was_training = network.training
    network.eval()
    try:
        results = []
        for item in datalist:
            data = chain(dict(item))
            prediction = predict_volume(network, data["image"], roi_size, device=device)
            results.append(dice_per_class(prediction, data["label"][0].long(), n_classes))
        return results
    finally:
        network.train(was_training)
