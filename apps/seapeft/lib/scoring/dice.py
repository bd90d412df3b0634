"""Scoring: Dice of every saved ``final`` label against the served model's prediction (where it fails).

Per image: mean foreground Dice (hard, argmax) in the model's preprocessed grid, stored in the image's
info as ``seapeft_dice`` (model id, label time, mean, per label). An image is rescored only when its
label or the served model changed, so the automatic rescoring MONAI Label runs after start-up,
next-sample and training costs one inference per new label or per newly published model.
"""

from __future__ import annotations

import logging

from monailabel.interfaces.tasks.scoring import ScoringMethod

from seapeft_monailabel.data import load_volume_pair
from seapeft_monailabel.metrics import dice_per_class
from seapeft_monailabel.models import WeightLoadError

from ..infers.predictor import PredictorPicker
from ..models.predict import predict_probabilities
from ..models.served import ModelStore

logger = logging.getLogger(__name__)

INFO_KEY = "seapeft_dice"
FINAL = "final"


class PredictionDice(ScoringMethod):
    """``{image id: mean Dice}`` of the final labels against the served model; see the module docstring."""

    def __init__(self, store: ModelStore, picker: PredictorPicker, overlap: float):
        super().__init__("Dice of each saved final label against the served model's prediction")
        self.store = store
        self.picker = picker
        self.overlap = overlap

    def __call__(self, request, datastore):
        try:
            served = self.store.current()
        except WeightLoadError as err:
            logger.error(f"dice scoring skipped: no model to score with: {err}")
            return {}
        predictor = self.picker(served)
        names = sorted(served.labels, key=served.labels.get)[1:]
        result = {}
        for image_id in datastore.get_labeled_images():
            label_id = datastore.get_label_by_image_id(image_id, FINAL)
            label_ts = datastore.get_label_info(label_id, FINAL).get("ts")
            cached = datastore.get_image_info(image_id).get(INFO_KEY)
            if cached and cached.get("model") == served.model_id and cached.get("label_ts") == label_ts:
                result[image_id] = cached["mean"]
                continue
            image, label = datastore.get_image_uri(image_id), datastore.get_label_uri(label_id, FINAL)
            try:
                load_volume_pair(image, label, label_names=served.labels)
                probs, truth = predict_probabilities(served, predictor, image, self.overlap, label=label)
            except (ValueError, FileNotFoundError, RuntimeError) as err:
                logger.warning(f"dice scoring: image {image_id} skipped: {err}")
                continue
            per_label = dice_per_class(probs.argmax(0), truth, len(served.labels))
            mean = sum(per_label) / len(per_label)
            datastore.update_image_info(image_id, {INFO_KEY: {
                "model": served.model_id, "label_ts": label_ts, "mean": mean,
                "per_label": dict(zip(names, per_label))}})
            logger.info(f"dice scoring: {image_id} mean Dice {mean:.4f} with {served.model_id}")
            result[image_id] = mean
        return result
