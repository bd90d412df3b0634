"""Explanation: a 3D Grad-CAM map of one structure of the served model, as bands the viewers overlay.

The request names the ``structure`` to explain (a label of the served model; default its first foreground
label) and optionally the ``layer`` (a module path; default the network's half-resolution decoder level).
The map (:func:`seapeft_monailabel.explain.explain_image`, PyTorch: it needs gradients) is computed on
the preprocessed image, brought back to the image's grid by the inverse transforms, and returned as a
label volume of saliency bands (1: 20-40 % of the map's maximum ... 4: 80-100 %), which OHIF and 3D Slicer
show as segments over the study. The response names the structure, the layer and whether the map is empty.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.transforms import CastToTyped, Lambdad, SqueezeDimd

from seapeft_monailabel.explain import (
    default_layer,
    explain_image,
    explanation_window,
    on_image_grid,
)

from ..errors import BAD_INPUT, http_error
from ..models.sites import SiteModels
from .predictor import PredictorPicker
from .segmentation import SeaPeftSegmentation

#: lower edges of the saliency bands, as fractions of the map's maximum (band i starts at BAND_EDGES[i - 1])
BAND_EDGES = (0.2, 0.4, 0.6, 0.8)
BANDS = {"background": 0, **{f"saliency {int(100 * lo)}-{int(100 * hi)}%": i + 1
                              for i, (lo, hi) in enumerate(zip(BAND_EDGES, BAND_EDGES[1:] + (1.0,)))}}


class SeaPeftExplanation(SeaPeftSegmentation):
    """Grad-CAM of one structure of the model the segmentation task serves (always PyTorch FP32)."""

    def __init__(self, models: SiteModels, overlap: float, description: str):
        super().__init__(models, PredictorPicker("torch", "fp32", models.capacity + 1), BANDS, overlap, description)
        self._asked = threading.local()

    def info(self) -> dict:
        info = super().info()
        info["explains"] = {"params": {"structure": "a label of the served model (default: its first foreground label)",
                                       "layer": "module path of the network (default: its half-resolution decoder level)"},
                            "bands": list(BAND_EDGES)}
        return info

    def __call__(self, request, callbacks=None):
        self._asked.structure, self._asked.layer = request.get("structure"), request.get("layer")
        result_file, result_json = super().__call__(request, callbacks)
        result_json["explained"] = self._asked.explained
        return result_file, result_json

    def run_inferer(self, data, convert_to_batch=True, device="cpu"):
        """Grad-CAM ``(1, X, Y, Z)`` in ``[0, 1]`` of the preprocessed image ``(1, X, Y, Z)`` into ``data["pred"]``."""
        served = self._served
        foreground = [name for name, index in sorted(served.labels.items(), key=lambda kv: kv[1]) if index]
        structure = self._asked.structure or foreground[0]
        if structure not in foreground:
            raise http_error(BAD_INPUT, f"structure '{structure}' is not a label of the served model "
                                        f"({', '.join(foreground)})")
        layer = self._asked.layer or default_layer(served.network_name)
        image = data[self.input_key]
        overlap = float(data.get("sw_overlap", self._config["sw_overlap"]))
        try:
            heat = explain_image(served.network, image, served.labels[structure], layer,
                                 explanation_window(served.patch_size), overlap=overlap, device=served.device)
        except ValueError as err:
            raise http_error(BAD_INPUT, f"{data.get('image_path', 'image')}: {err}") from None
        self._asked.explained = {"structure": structure, "layer": layer, "empty": not bool(heat.max() > 0)}
        data[self.output_label_key] = on_image_grid(heat[None], image)
        return data

    def post_transforms(self, data=None) -> Sequence[Callable]:
        return [
            Lambdad(keys="pred", func=lambda heat: torch.bucketize(heat, torch.tensor(BAND_EDGES), right=True)),
            SqueezeDimd(keys="pred", dim=0),
            CastToTyped(keys="pred", dtype=np.uint8),
        ]
