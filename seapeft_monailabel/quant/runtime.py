"""An OpenVINO-compiled model as the predictor of MONAI's ``sliding_window_inference``.

The compiled model has one fixed input shape ``(1, C, *roi)``; :class:`OpenVINOPredictor` takes a torch
tensor ``(B, C, *roi)`` on any device, runs the B windows one after another and returns torch logits
``(B, K, *roi)`` float32 on the input's device; :func:`seapeft_monailabel.inference.openvino_predictor`
runs it over whole volumes at ``roi_size=predictor.roi_size``.
"""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import openvino as ov
import torch

from .convert import compile_model

#: Runtime layer types of (transposed) convolutions in a compiled CPU model.
RUNTIME_CONV_TYPES = ("Convolution", "Deconvolution")
#: Runtime precisions of a convolution that runs quantized.
INT8_PRECISIONS = ("i8", "u8")


class QuantizationError(RuntimeError):
    """An INT8 model that runs no quantized convolution (it would be FP32 at INT8's name)."""


def convolution_precisions(compiled: ov.CompiledModel) -> dict[str, int]:
    """Count the compiled model's convolutions by the precision they run in, e.g. ``{"i8": 13, "u8": 2}``.

    Read from the runtime model's per-layer ``layerType`` and ``runtimePrecision`` (what the CPU plugin
    actually executes, after its own fusions), not from the IR.
    """
    counts: Counter[str] = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) in RUNTIME_CONV_TYPES:
            counts[info["runtimePrecision"].astype(str)] += 1
    return dict(counts)


def count_quantized_convolutions(compiled: ov.CompiledModel) -> int:
    """Number of convolutions the compiled model runs in INT8 (``i8`` or ``u8``)."""
    return sum(n for precision, n in convolution_precisions(compiled).items() if precision in INT8_PRECISIONS)


def require_quantized(compiled: ov.CompiledModel, source: str) -> int:
    """Raise :class:`QuantizationError` if ``compiled`` runs no INT8 convolution; returns the count."""
    count = count_quantized_convolutions(compiled)
    if count == 0:
        raise QuantizationError(f"{source}: the INT8 model runs no quantized convolution "
                                f"(convolutions by precision: {convolution_precisions(compiled)})")
    return count


class OpenVINOPredictor:
    """Callable ``(B, C, *roi) -> (B, K, *roi)`` over a compiled OpenVINO model of input ``(1, C, *roi)``.

    Args:
        model: an ``openvino.Model`` (compiled here with the FP32 hint) or an already compiled one.
        threads: CPU inference threads (None: OpenVINO's default, all cores).
    """

    def __init__(self, model: ov.Model | ov.CompiledModel, threads: int | None = None):
        self.compiled = model if isinstance(model, ov.CompiledModel) else compile_model(model, threads)
        shape = tuple(self.compiled.input(0).get_shape())
        if len(shape) != 5 or shape[0] != 1:
            raise ValueError(f"expected a model with input (1, C, D, H, W), got {shape}")
        self.in_channels = int(shape[1])
        self.roi_size = tuple(int(v) for v in shape[2:])
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != self.in_channels or tuple(x.shape[2:]) != self.roi_size:
            raise ValueError(f"OpenVINO model takes windows (B, {self.in_channels}, {', '.join(map(str, self.roi_size))}); "
                             f"got {tuple(x.shape)}: call sliding_window_inference with roi_size={self.roi_size}")
        windows = x.detach().to("cpu", torch.float32).numpy()
        outputs = []
        with self._lock:
            for window in windows:
                self._request.infer({0: np.ascontiguousarray(window[None])})
                outputs.append(self._request.get_output_tensor(0).data.copy())
        return torch.from_numpy(np.concatenate(outputs, axis=0)).to(x.device)
