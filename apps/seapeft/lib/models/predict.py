"""Whole-volume class probabilities with the served model, for the uncertainty strategy and Dice scoring.

The preprocessing is the library's (``seapeft_monailabel.data.eval_transforms``: RAS, the model's
spacing if it has one, percentile intensity scaling), exactly what training used; the result stays in
that preprocessed grid, which is all a score needs.
"""

from __future__ import annotations

import torch
from monai.inferers import sliding_window_inference

from seapeft_monailabel.data import eval_transforms

from ..infers.predictor import PredictorChoice
from .served import ServedModel


@torch.no_grad()
def predict_probabilities(served: ServedModel, choice: PredictorChoice, image: str, overlap: float,
                          label: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Softmax probabilities ``(K, X, Y, Z)`` of ``image`` and, when given, its label ``(X, Y, Z)`` (int64).

    Windows of the predictor's size (the model's patch size), Gaussian blending, batch 1.
    """
    item = {"image": image} if label is None else {"image": image, "label": label}
    data = eval_transforms(served.spacing, with_label=label is not None)(item)
    logits = sliding_window_inference(data["image"][None].to(served.device), roi_size=choice.roi_size,
                                      sw_batch_size=1, predictor=choice.predictor, overlap=overlap, mode="gaussian")
    probs = torch.softmax(logits[0].float(), dim=0).cpu()
    return probs, (data["label"][0].long() if label is not None else None)
