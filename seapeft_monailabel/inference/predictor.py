"""A model answering whole volumes by sliding windows, and what answers: runtime, precision, window.

A :class:`Predictor` wraps a window function ``(n, C, *roi) -> (n, K, *roi)`` (a PyTorch network or a
compiled OpenVINO model) and its :class:`.window.Window`; :meth:`Predictor.logits`,
:meth:`~Predictor.probabilities` and :meth:`~Predictor.class_map` run the whole volume. With OpenVINO
answering, PyTorch only blends the windows, on one thread (:func:`.window.single_torch_thread`).
:func:`seapeft_monailabel.quant.load_predictor` builds the one to serve from a model file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from .window import OVERLAP, Window, single_torch_thread

Windows = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Predictor:
    """A window function, its sliding window, and what runs it.

    Attributes:
        windows: ``(n, C, *window.roi_size)`` float tensor -> ``(n, K, *window.roi_size)`` float32 logits on
            the input's device.
        window: window size (the model's patch size; a converted model's fixed input) and overlap.
        runtime: ``"torch"`` or ``"openvino"`` (what actually answers).
        precision: ``"fp32"`` or ``"int8"`` (what actually answers).
        labels: ``{name: class index}``, background 0 (empty when the caller did not name them).
        device: where the windows are computed (always the CPU for OpenVINO).
        note: None, or why the runtime or precision asked for does not answer.
        info: ``weight_bytes``; ``quantized_convolutions`` (OpenVINO INT8); ``int8_dice_drop_points`` and
            ``int8_p_value`` (the INT8 model against OpenVINO FP32, measured at export); ``spacing`` (the
            resampling the model was trained with, None: none); ``export`` (the serving index, when read).
    """

    windows: Windows
    window: Window
    runtime: str
    precision: str
    labels: dict[str, int] = field(default_factory=dict)
    device: torch.device = torch.device("cpu")
    note: str | None = None
    info: dict = field(default_factory=dict)

    @property
    def roi_size(self) -> tuple[int, int, int]:
        return self.window.roi_size

    def logits(self, image: torch.Tensor, overlap: float | None = None) -> torch.Tensor:
        """Blended logits ``(K, X, Y, Z)`` float32 on the CPU of a preprocessed image ``(C, X, Y, Z)``.

        ``overlap``: None keeps the predictor's. A MetaTensor image gives a MetaTensor with its metadata
        and applied transforms, so MONAI's inverse transforms can bring the logits to the file's grid.
        """
        window = self.window if overlap is None else replace(self.window, overlap=overlap)
        blending = single_torch_thread() if self.runtime == "openvino" else nullcontext()
        with torch.no_grad(), blending:
            return window.run(self.windows, image[None].to(self.device, torch.float32))[0].float().cpu()

    def probabilities(self, image: torch.Tensor, overlap: float | None = None) -> torch.Tensor:
        """Softmax of :meth:`logits`: ``(K, X, Y, Z)``."""
        return torch.softmax(self.logits(image, overlap), dim=0)

    def class_map(self, image: torch.Tensor, overlap: float | None = None) -> torch.Tensor:
        """Argmax of :meth:`logits`: ``(X, Y, Z)`` int64 class indices."""
        return self.logits(image, overlap).argmax(0)

    def describe(self) -> dict:
        """JSON-ready: ``runtime``, ``precision``, ``roi_size``, the INT8 Dice check if exported, ``note`` if set."""
        out = {"runtime": self.runtime, "precision": self.precision, "roi_size": list(self.roi_size)}
        if self.info.get("int8_dice_drop_points") is not None:
            out["int8_dice_drop_points"] = self.info["int8_dice_drop_points"]
            out["int8_p_value"] = self.info.get("int8_p_value")
        if self.note:
            out["note"] = self.note
        return out


class TorchWindows:
    """``(n, C, *roi) -> (n, K, *roi)`` float32 logits of a PyTorch ``network`` on ``device``.

    The network is used as given (its mode and device are the caller's); windows move to ``device``.
    """

    def __init__(self, network: nn.Module, device: torch.device):
        self.network = network
        self.device = device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x.to(self.device, torch.float32)).float()


def torch_predictor(network: nn.Module, roi_size: Sequence[int], *, labels: dict[str, int] | None = None,
                    device: str | torch.device = "cpu", overlap: float = OVERLAP, note: str | None = None,
                    info: dict | None = None) -> Predictor:
    """A PyTorch FP32 :class:`Predictor` over ``network`` (already on ``device``, in the mode the caller wants)."""
    device = torch.device(device)
    return Predictor(TorchWindows(network, device), Window(tuple(roi_size), overlap), "torch", "fp32",
                     dict(labels or {}), device, note, dict(info or {}))


def openvino_predictor(windows: Windows, roi_size: Sequence[int], precision: str, *,
                       labels: dict[str, int] | None = None, overlap: float = OVERLAP, note: str | None = None,
                       info: dict | None = None) -> Predictor:
    """An OpenVINO :class:`Predictor` over ``windows`` (e.g. :class:`..quant.runtime.OpenVINOPredictor`, whose
    fixed input is ``roi_size``), answering on the CPU."""
    return Predictor(windows, Window(tuple(roi_size), overlap), "openvino", precision, dict(labels or {}),
                     torch.device("cpu"), note, dict(info or {}))
