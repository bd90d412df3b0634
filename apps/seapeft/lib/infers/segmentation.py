"""Segmentation with the served model (latest published adapted model, else the base model).

Pre-transforms are the library's evaluation chain (load, channel first, RAS, the model's spacing if it
has one, percentile intensity scaling); the library's predictor (:mod:`.predictor`) runs MONAI's
sliding-window inference at the model's patch size (the converted model's window with OpenVINO) with
Gaussian blending, at the request's ``sw_overlap`` (default the conf's); the inverse of the
orientation/spacing transforms brings the logits back to the original image's grid, then softmax,
argmax and uint8, written on the input's grid in its format (NRRD in, NRRD out). The response names
the labels and the model that answered (``model``: kind, id, SHA-256; ``runtime``: engine, precision,
window), and carries a ``warning`` naming the labels the base model never learnt when it answers with
a head created fresh for them. With sites (``--conf sites``), the request's ``site`` (named by the app
from the image, :mod:`lib.sites.resolve`) picks the site's adapted model, else the shared one
(:mod:`lib.models.sites`), and the response's ``site`` says which answered.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    CastToTyped,
    EnsureTyped,
    SqueezeDimd,
)
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from seapeft_monailabel.data.transforms import deterministic_transforms
from seapeft_monailabel.data.volumes import output_extension
from seapeft_monailabel.inference import Predictor
from seapeft_monailabel.models import WeightLoadError

from ..datastore.checks import check_image
from ..errors import BAD_INPUT, SERVER_FAULT, http_error
from ..models.served import ServedModel
from ..models.sites import SiteModels
from ..sites.names import SiteNameError, safe_site_name
from .predictor import PredictorPicker

logger = logging.getLogger(__name__)


def untrained_warning(served: ServedModel) -> str:
    """What a response says when a label's head row was created fresh (the base model never saw it)."""
    return (f"the {served.kind} model never learnt {', '.join(served.untrained_labels)}: its head row for each is "
            "freshly created, so those labels are noise until a training run publishes an adapted model")


def site_answer(site: str | None, source: str | None, served: ServedModel) -> dict:
    """The response's ``site``: the request's site, where its name came from, and which model answered."""
    if site is not None and served.site == site:
        answered = f"the adapter of site {site}"
    else:
        shared = "the base model" if served.kind == "base" else "the shared adapted model"
        answered = f"{shared} (site {site} has no published adapter)" if site else f"{shared} (no site)"
    return {"name": site, "source": source, "adapter": site is not None and served.site == site, "served": answered}


class SeaPeftSegmentation(BasicInferTask):
    """``BasicInferTask`` over :class:`SiteModels`; one request sees one model from start to end."""

    def __init__(self, models: SiteModels, picker: PredictorPicker, labels: dict[str, int], overlap: float,
                 description: str):
        super().__init__(path=None, network=None, type=InferType.SEGMENTATION, labels=dict(labels), dimension=3,
                         description=description, config={"sw_overlap": overlap})
        self.models = models
        self.picker = picker
        self._request = threading.local()

    def is_valid(self) -> bool:
        return True

    def info(self) -> dict:
        """The task's info plus what answers, without loading anything (the published pointer, the base path).

        ``runtime``: the configured ``runtime`` and ``precision``, and ``answering``: the engine, precision,
        window and measured INT8 Dice drop of the model that answered the last request (None before one).
        """
        info = super().info()
        pointer = self.models.published()
        base_model = self.models.conf.base_model
        info["served"] = ({"kind": "adapted", "id": f"adapted:{pointer['run']}:{pointer['sha256'][:12]}",
                           "run": pointer["run"], "sha256": pointer["sha256"]} if pointer else
                          {"kind": "base", "path": str(base_model), "exists": base_model.exists()})
        info["runtime"] = {"runtime": self.picker.runtime, "precision": self.picker.precision,
                           "answering": self.picker.answering()}
        return info

    def __call__(self, request, callbacks=None):
        image = request.get("image")
        if isinstance(image, str):
            check_image(image, image)
        try:
            site = safe_site_name(request["site"], "request parameter 'site'") if request.get("site") else None
            served = self.models.current(site)
        except SiteNameError as err:
            raise http_error(BAD_INPUT, str(err)) from None
        except WeightLoadError as err:
            raise http_error(SERVER_FAULT, f"no model to answer with: {err}") from None
        predictor = self.picker(served)
        self._request.served, self._request.predictor = served, predictor
        try:
            result_file, result_json = super().__call__(request, callbacks)
        finally:
            self._request.served = self._request.predictor = None
        result_json["model"] = {k: v for k, v in served.describe().items() if k != "adapter"}
        result_json["runtime"] = predictor.describe()
        if served.untrained_labels:
            result_json["warning"] = untrained_warning(served)
        if self.models.conf.sites != "none":
            result_json["site"] = site_answer(site, request.get("site_source"), served)
        return result_file, result_json

    @property
    def _served(self) -> ServedModel:
        return self._request.served

    @property
    def _predictor(self) -> Predictor:
        return self._request.predictor

    def pre_transforms(self, data=None) -> Sequence[Callable]:
        return deterministic_transforms(self._served.spacing, with_label=False) + [
            EnsureTyped(keys="image", dtype=torch.float32)]

    def run_inferer(self, data, convert_to_batch=True, device="cpu"):
        """Sliding-window logits ``(K, X, Y, Z)`` of the preprocessed image ``(1, X, Y, Z)`` into ``data["pred"]``."""
        overlap = float(data.get("sw_overlap", self._config["sw_overlap"]))
        data[self.output_label_key] = self._predictor.logits(data[self.input_key], overlap)
        return data

    def inverse_transforms(self, data=None):
        return []  # every invertible pre-transform (orientation, spacing): back to the original grid

    def post_transforms(self, data=None) -> Sequence[Callable]:
        return [
            Activationsd(keys="pred", softmax=True),
            AsDiscreted(keys="pred", argmax=True),
            SqueezeDimd(keys="pred", dim=0),
            CastToTyped(keys="pred", dtype=np.uint8),
        ]

    def writer(self, data, extension=None, dtype=None):
        """The label file in the input's format (NRRD in, NRRD out; see ``output_extension``), unless the
        request names one (``result_extension``, e.g. OHIF's ``.nrrd``)."""
        image = data.get("image_path")
        if extension is None and not data.get("result_extension") and isinstance(image, str):
            extension = output_extension(image)
        return super().writer(data, extension, dtype)
