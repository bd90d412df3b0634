"""TaskConfig ``seapeft``: one served model, its SEA-PEFT trainer, uncertainty strategy and Dice scoring.

Construction is cheap (the training subprocess builds the app again): it parses the conf and creates
the tasks; no weights are read until the first inference or training run.
"""

from __future__ import annotations

from pathlib import Path

from monailabel.interfaces.config import TaskConfig

from ..activelearning.uncertainty import Uncertainty
from ..infers.explanation import SeaPeftExplanation
from ..infers.predictor import PredictorPicker
from ..infers.segmentation import SeaPeftSegmentation
from ..models.published import read_pointer
from ..models.served import ModelStore
from ..scoring.dice import PredictionDice
from ..trainers.seapeft import SeaPeftTrain
from ..trainers.stats import read_stats
from .conf import AppConf


class SeaPeft(TaskConfig):
    """Builds the tasks from ``--conf`` (see :mod:`lib.configs.conf`); models live in ``model/<name>/``."""

    def init(self, name: str, model_dir: str, conf: dict[str, str], planner, **kwargs):
        super().init(name, model_dir, conf, planner, **kwargs)
        self.app_conf = AppConf.from_conf(conf, Path(model_dir).parent)
        self.labels = dict(self.app_conf.labels)
        self.path = Path(model_dir) / name
        self.store = ModelStore(self.app_conf, self.path)
        self.picker = PredictorPicker(self.app_conf.runtime, self.app_conf.precision)

    def infer(self):
        segmentation = SeaPeftSegmentation(
            self.store, self.picker, self.labels, self.app_conf.overlap,
            "Segmentation by the latest published SEA-PEFT adapted model, else the base model")
        explanation = SeaPeftExplanation(
            self.store, self.app_conf.overlap,
            "Grad-CAM of one structure of the served model (params: structure, layer), as saliency bands")
        return {self.name: segmentation, f"{self.name}_explain": explanation}

    def trainer(self):
        return SeaPeftTrain(self.app_conf, self.path,
                            "SEA-PEFT: search and train PEFT units on the labelled images, publish atomically")

    def strategy(self):
        return {"uncertainty": Uncertainty(self.store, self.picker, self.app_conf.overlap)}

    def scoring_method(self):
        return {"dice": PredictionDice(self.store, self.picker, self.app_conf.overlap)}

    def describe(self) -> dict:
        """For /info: the served model, the current adapter configuration and the last run (no model is loaded)."""
        pointer = read_pointer(self.path)
        stats = read_stats(self.path)
        out = {"base_model": str(self.app_conf.base_model), "base_model_exists": self.app_conf.base_model.exists(),
               "labels": self.labels, "runtime": self.app_conf.runtime, "precision": self.app_conf.precision,
               "served": "adapted" if pointer else "base", "last_run": stats or None}
        if pointer:
            out["adapter"] = {
                "run": pointer["run"], "id": f"adapted:{pointer['run']}:{pointer['sha256'][:12]}",
                "sha256": pointer["sha256"], "units": pointer["units"], "unit_costs": pointer["unit_costs"],
                "cost": pointer["cost"], "budget": pointer["budget"],
                "backbone_parameters": pointer["backbone_parameters"], "shots": pointer["shots"],
                "validation_dice": pointer["selection_dice"], "head_only_dice": pointer["head_only_dice"],
                "published_at": pointer["published_at"], "serving": pointer.get("serving"),
                "report": pointer["report"],
                "report_url": f"/seapeft/report.png?model={self.name}"}
        return out
