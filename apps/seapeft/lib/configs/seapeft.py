"""TaskConfig ``seapeft``: the served models (shared, and per site with ``--conf sites``), the SEA-PEFT
trainer, uncertainty strategy and Dice scoring (these two with the shared model).

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
from ..models.published import adapter_summary, read_pointer
from ..models.sites import SiteModels, known_sites, site_dir
from ..scoring.dice import PredictionDice
from ..sites.resolve import SiteResolver
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
        self.sites = SiteResolver(self.app_conf.sites, self.app_conf.site_map)
        self.models = SiteModels(self.app_conf, self.path, self.app_conf.site_cache if self.sites.enabled else 0)
        self.store = self.models.shared
        self.picker = PredictorPicker(self.app_conf.runtime, self.app_conf.precision, self.models.capacity + 1)

    def infer(self):
        segmentation = SeaPeftSegmentation(
            self.models, self.picker, self.labels, self.app_conf.overlap,
            "Segmentation by the latest published SEA-PEFT adapted model, else the base model")
        explanation = SeaPeftExplanation(
            self.models, self.app_conf.overlap,
            "Grad-CAM of one structure of the served model (params: structure, layer), as saliency bands")
        return {self.name: segmentation, f"{self.name}_explain": explanation}

    def trainer(self):
        return SeaPeftTrain(self.app_conf, self.path, self.sites,
                            "SEA-PEFT: search and train PEFT units on the labelled images, publish atomically")

    def strategy(self):
        return {"uncertainty": Uncertainty(self.store, self.picker, self.app_conf.overlap)}

    def scoring_method(self):
        return {"dice": PredictionDice(self.store, self.picker, self.app_conf.overlap)}

    def describe(self) -> dict:
        """For /info: the served model, the current adapter configuration, the sites and the last run (no model
        is loaded)."""
        pointer = read_pointer(self.path)
        stats = read_stats(self.path)
        out = {"base_model": str(self.app_conf.base_model), "base_model_exists": self.app_conf.base_model.exists(),
               "labels": self.labels, "runtime": self.app_conf.runtime, "precision": self.app_conf.precision,
               "served": "adapted" if pointer else "base", "last_run": stats or None}
        if pointer:
            out["adapter"] = {**adapter_summary(pointer), "report_url": f"/seapeft/report.png?model={self.name}"}
        if self.sites.enabled:
            out["sites"] = {"rule": self.app_conf.sites, "cache": self.models.capacity, "loaded": self.models.loaded(),
                            "sites": {site: self._describe_site(site) for site in known_sites(self.path)}}
        return out

    def _describe_site(self, site: str) -> dict:
        """A trained site: its published adapter (None before one) with file sizes, and its report's URL."""
        folder = site_dir(self.path, site)
        pointer = read_pointer(folder)
        if pointer is None:
            return {"adapter": None}
        return {"adapter": {**adapter_summary(pointer, folder),
                            "report_url": f"/seapeft/report.png?model={self.name}&site={site}"}}
