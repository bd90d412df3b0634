"""The predictor answering each served model: the library's one choice of runtime and precision.

``--conf runtime``: ``torch`` | ``openvino`` | ``auto``; ``--conf precision``: ``fp32`` | ``int8``; their
meaning, and every fallback to PyTorch FP32 with its reason in the predictor's ``note``, are the
library's (:func:`seapeft_monailabel.quant.load_predictor`), so the server answers through the
path ``seapeft predict`` and ``seapeft quantize``'s benchmark measure. A base model whose head was
re-created for the task's labels exists only in memory, so PyTorch serves it. Predictors (an OpenVINO
compiled model, or PyTorch over the served network) are kept for the ``capacity`` models used last: one
without sites, the shared model and the cached sites' with them (:mod:`lib.models.sites`).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from seapeft_monailabel.inference import Predictor
from seapeft_monailabel.quant import load_predictor

from ..models.served import ServedModel

logger = logging.getLogger(__name__)


class PredictorPicker:
    """Builds (once per served model) the predictor for the configured runtime and precision; keeps the
    ``capacity`` used last (least recently used dropped)."""

    def __init__(self, runtime: str, precision: str, capacity: int = 1):
        self.runtime = runtime
        self.precision = precision
        self.capacity = capacity
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Predictor] = OrderedDict()

    def answering(self) -> dict | None:
        """What answered the last request (``{"model": id, **predictor.describe()}``); None before the first.

        Builds nothing: /info calls it, and loading a model there would stall a viewer's connection.
        """
        with self._lock:
            return next(({"model": model_id, **predictor.describe()}
                         for model_id, predictor in reversed(self._cache.items())), None)

    def __call__(self, served: ServedModel) -> Predictor:
        with self._lock:
            predictor = self._cache.pop(served.model_id, None)
            if predictor is None:
                predictor = load_predictor(served.path if served.from_file else None, self.precision, self.runtime,
                                           device=served.device, network=served.network, labels=served.labels,
                                           roi_size=served.patch_size)
                logger.info(f"{served.model_id} answers with {predictor.describe()}")
            self._cache[served.model_id] = predictor
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
            return predictor
