"""The one place that picks the runtime answering each sliding window: PyTorch, or OpenVINO FP32/INT8.

``--conf runtime``: ``torch`` | ``openvino`` | ``auto``; ``--conf precision``: ``fp32`` | ``int8``.
OpenVINO models come from the library's CPU runtime (:func:`seapeft_monailabel.quant.load_serving_model`,
which reads the converted models exported beside a ``model.pt``). ``auto`` uses them when the served
model's folder has converted models (``serving.json``), else PyTorch. An explicit ``openvino`` whose
converted model is missing, stale or damaged falls back to PyTorch FP32 (the library logs why; the
reason is returned in ``note``). A base model whose head was re-created for the task's labels exists
only in memory, so PyTorch serves it.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.served import ServedModel

logger = logging.getLogger(__name__)

QUANT_MODULE = "seapeft_monailabel.quant"
SERVING_INDEX = "serving.json"

Predictor = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class PredictorChoice:
    """A predictor mapping ``(B, 1, *roi_size)`` windows to ``(B, K, *roi_size)`` logits, and what runs it.

    ``int8_dice_drop_points`` / ``int8_p_value``: the INT8 model's mean Dice drop against OpenVINO FP32
    and the one-sided Wilcoxon p of a loss, measured when the converted models were exported (None without them).
    """

    predictor: Predictor
    roi_size: tuple[int, int, int]
    runtime: str
    precision: str
    note: str | None = None
    int8_dice_drop_points: float | None = None
    int8_p_value: float | None = None

    def describe(self) -> dict:
        out = {"runtime": self.runtime, "precision": self.precision, "roi_size": list(self.roi_size)}
        if self.int8_dice_drop_points is not None:
            out["int8_dice_drop_points"] = self.int8_dice_drop_points
            out["int8_p_value"] = self.int8_p_value
        if self.note:
            out["note"] = self.note
        return out


def _quant():
    """The library's CPU runtime module, or None when it is not installed."""
    try:
        return importlib.import_module(QUANT_MODULE)
    except ImportError:
        return None


class PredictorPicker:
    """Builds (once per served model) the predictor for the configured runtime and precision."""

    def __init__(self, runtime: str, precision: str):
        self.runtime = runtime
        self.precision = precision
        self._lock = threading.Lock()
        self._cache: dict[str, PredictorChoice] = {}

    def answering(self) -> dict | None:
        """What answered the last request (``{"model": id, **choice.describe()}``); None before the first.

        Builds nothing: /info calls it, and loading a model there would stall a viewer's connection.
        """
        with self._lock:
            return next(({"model": model_id, **choice.describe()} for model_id, choice in self._cache.items()), None)

    def __call__(self, served: ServedModel) -> PredictorChoice:
        with self._lock:
            choice = self._cache.get(served.model_id)
            if choice is None:
                choice = self._build(served)
                self._cache = {served.model_id: choice}  # keep only the current model's
                logger.info(f"{served.model_id} answers with {choice.describe()}")
            return choice

    def _torch(self, served: ServedModel, note: str | None = None) -> PredictorChoice:
        if note is None and self.precision == "int8":
            note = "precision int8 needs OpenVINO converted models; PyTorch serves fp32"
        return PredictorChoice(served.network, served.patch_size, "torch", "fp32", note)

    def _build(self, served: ServedModel) -> PredictorChoice:
        folder = Path(served.path).parent
        if self.runtime == "torch" or served.device != "cpu" and self.runtime == "auto":
            return self._torch(served)
        if self.runtime == "auto" and not (folder / SERVING_INDEX).is_file():
            return self._torch(served)
        quant = _quant()
        if quant is None or not served.from_file:
            why = (f"{QUANT_MODULE} is not installed" if quant is None
                   else "the base model's head was re-created for the task's labels (no converted model)")
            return self._torch(served, f"runtime {self.runtime} asked for, but {why}; PyTorch fp32 serves")
        try:
            serving = quant.load_serving_model(served.path, precision=self.precision, runtime="openvino")
        except ValueError as err:
            return self._torch(served, f"OpenVINO {self.precision} not served ({err}); PyTorch fp32 serves")
        note = serving.info.get("fallback")
        if serving.runtime == "torch":
            return self._torch(served, f"OpenVINO {self.precision} not served ({note}); PyTorch fp32 serves")
        return PredictorChoice(serving.predictor, tuple(serving.roi_size), serving.runtime, serving.precision, note,
                               serving.info.get("dice_drop_points"), serving.info.get("p_value"))
