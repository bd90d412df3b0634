"""Active learning: the unlabelled image the served model is least sure about ("next sample" in OHIF/Slicer).

Score of an image = mean normalised softmax entropy ``H(p) / log K`` (0 = certain, 1 = uniform) over
the voxels where the model gives foreground at least 10 % (``p_background < 0.9``), i.e. around what
it thinks are organs, so the large sure background does not dilute it. An image where the model sees
no organ at all scores 1.0 (it needs a label most). Scores are stored in the image's info
(``seapeft_uncertainty``: model id, value, time) and reused until another model is served, so only
new images or a newly published model cost an inference.
"""

from __future__ import annotations

import logging
import math
import time

import torch
from monailabel.interfaces.tasks.strategy import Strategy

from seapeft_monailabel.data import load_volume_pair
from seapeft_monailabel.models import WeightLoadError

from ..errors import SERVER_FAULT, http_error
from ..infers.predictor import PredictorPicker
from ..models.predict import predict_probabilities
from ..models.served import ModelStore

logger = logging.getLogger(__name__)

INFO_KEY = "seapeft_uncertainty"
FOREGROUND_FLOOR = 0.1


def uncertainty_score(probs: torch.Tensor) -> float:
    """Mean normalised entropy over the voxels with foreground probability >= 10 %; ``probs`` is ``(K, X, Y, Z)``."""
    n_classes = probs.shape[0]
    entropy = -(probs * probs.clamp_min(1e-8).log()).sum(0) / math.log(n_classes)
    region = probs[0] <= 1.0 - FOREGROUND_FLOOR
    return 1.0 if not bool(region.any()) else float(entropy[region].mean())


class Uncertainty(Strategy):
    """Rank unlabelled images by :func:`uncertainty_score`; return the highest (ties: smallest id)."""

    def __init__(self, store: ModelStore, picker: PredictorPicker, overlap: float):
        super().__init__("Most uncertain unlabelled image under the served model (softmax entropy around organs)")
        self.store = store
        self.picker = picker
        self.overlap = overlap

    def score(self, datastore, image_id: str, model_id: str, served, predictor) -> float | None:
        cached = datastore.get_image_info(image_id).get(INFO_KEY)
        if cached and cached.get("model") == model_id:
            return float(cached["value"])
        path = datastore.get_image_uri(image_id)
        try:
            load_volume_pair(path)
            probs, _ = predict_probabilities(served, predictor, path, self.overlap)
        except (ValueError, FileNotFoundError, RuntimeError) as err:
            logger.warning(f"uncertainty: image {image_id} ({path}) skipped: {err}")
            return None
        value = uncertainty_score(probs)
        datastore.update_image_info(image_id, {INFO_KEY: {"model": model_id, "value": value, "ts": int(time.time())}})
        return value

    def __call__(self, request, datastore):
        candidates = sorted(datastore.get_unlabeled_images())
        if not candidates:
            return None
        try:
            served = self.store.current()
        except WeightLoadError as err:
            raise http_error(SERVER_FAULT, f"uncertainty strategy has no model: {err}") from None
        predictor = self.picker(served)
        scores = {}
        for image_id in candidates:
            value = self.score(datastore, image_id, served.model_id, served, predictor)
            if value is not None:
                scores[image_id] = value
        if not scores:
            return None
        best = max(scores, key=lambda i: (scores[i], -candidates.index(i)))
        logger.info(f"uncertainty: {len(scores)} unlabelled images scored with {served.model_id}; next {best} "
                    f"({scores[best]:.4f})")
        return {"id": best, "uncertainty": scores[best], "model": served.model_id}
