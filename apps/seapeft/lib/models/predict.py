"""Whole-volume class probabilities with the served model, for the uncertainty strategy and Dice scoring.

The preprocessing is the library's (``seapeft_monailabel.data.eval_transforms``: RAS, the model's
spacing if it has one, percentile intensity scaling), exactly what training used; the predictor is the
one the infer task answers with (:mod:`..infers.predictor`). The result stays in the preprocessed grid,
which is all a score needs.
"""

from __future__ import annotations

import torch

from seapeft_monailabel.data import eval_transforms
from seapeft_monailabel.inference import Predictor

from .served import ServedModel


def predict_probabilities(served: ServedModel, predictor: Predictor, image: str, overlap: float,
                          label: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Softmax probabilities ``(K, X, Y, Z)`` of ``image`` and, when given, its label ``(X, Y, Z)`` (int64)."""
    item = {"image": image} if label is None else {"image": image, "label": label}
    data = eval_transforms(served.spacing, with_label=label is not None)(item)
    probs = predictor.probabilities(data["image"], overlap)
    return probs, (data["label"][0].long() if label is not None else None)
