"""Which runtime and precision answer a model, chosen in one place for the app, the CLI and the benchmarks.

``runtime``:

- ``torch``: PyTorch FP32 on ``device``;
- ``openvino``: the OpenVINO model exported beside ``model.pt`` (``serving.json``, written by
  ``seapeft quantize`` or the app's export after training) at ``precision``;
- ``auto``: OpenVINO when the model has been exported and either the model runs on the CPU (OpenVINO's
  FP32 is 2-5x faster than PyTorch there) or INT8 is asked for (INT8 exists only in OpenVINO); PyTorch
  otherwise. A model without an export is served by PyTorch, with no note for FP32.

``precision`` ``int8`` needs OpenVINO. Whatever cannot answer falls back to PyTorch FP32, never to an
error: a missing, stale (converted from another ``model.pt``) or damaged export, an INT8 model running
no quantized convolution, INT8 asked of PyTorch, or a network that exists only in memory. The fallback is
logged once (a warning) and its reason is the predictor's ``note``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from ..devices import resolve_device
from ..models import NetworkSpec
from ..peft.merged_model import load_merged_model
from ..inference.predictor import Predictor, openvino_predictor, torch_predictor
from ..inference.trained import check_roi, model_entries, trained_roi, trained_spacing
from ..inference.window import OVERLAP
from .convert import torch_weight_bytes
from .index import INDEX, int8_check, open_converted, read_index

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")
RUNTIMES = ("auto", "torch", "openvino")


def _checked(precision: str, runtime: str) -> tuple[str, str]:
    precision, runtime = str(precision).lower(), str(runtime).lower()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    return precision, runtime


def _model_file(model: str | Path | None) -> Path | None:
    if model is None:
        return None
    path = Path(model)
    return path / "model.pt" if path.is_dir() else path


def load_predictor(model: str | Path | None, precision: str = "fp32", runtime: str = "auto", *,
                   device: str | torch.device = "auto", network: nn.Module | None = None,
                   labels: dict[str, int] | None = None, roi_size=None, threads: int | None = None,
                   overlap: float = OVERLAP) -> Predictor:
    """The predictor that serves ``model`` at ``precision`` on ``runtime`` (see the module docstring).

    Args:
        model: a seapeft model file (``model.pt``) or its folder; None for a network that exists only in
            memory (``network``, ``labels`` and ``roi_size`` then required; PyTorch serves it).
        precision: ``"fp32"`` or ``"int8"``.
        runtime: ``"auto"``, ``"torch"`` or ``"openvino"``.
        device: PyTorch's device (``"auto"``: CUDA when present); OpenVINO runs on the CPU.
        network: the PyTorch network of ``model``, already loaded (eval mode, on ``device``); None:
            loaded from ``model`` when PyTorch answers.
        labels: ``{name: index}`` of ``network`` (None: the model file's).
        roi_size: PyTorch's window (None: the export's window, else the trained patch size); an OpenVINO
            model's window is its fixed input.
        threads: OpenVINO CPU threads (None: OpenVINO's default, all cores).
        overlap: the window overlap.

    Raises:
        ValueError: bad ``precision``/``runtime``, or ``model`` itself cannot be loaded (naming the file).
    """
    precision, runtime = _checked(precision, runtime)
    device = resolve_device(str(device))
    path = _model_file(model)
    index, missing = None, "the network exists only in memory (its head was re-created), so it has no converted model"
    if path is not None:
        try:
            index, missing = read_index(path.parent), None
        except ValueError as err:
            missing = str(err)
    exported = path is not None and (path.parent / INDEX).is_file()
    if runtime == "openvino" or (runtime == "auto" and exported and (device.type == "cpu" or precision == "int8")):
        try:
            return _openvino(path, index, missing, precision, threads, labels, overlap)
        except Exception as err:  # every failure of the converted model falls back to PyTorch FP32
            reason = str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"
        note = f"OpenVINO {precision.upper()} cannot answer ({reason})"
    elif precision == "int8" and runtime == "torch":
        note = "precision int8 needs runtime openvino (PyTorch has no INT8 path for 3D convolutions)"
    elif precision == "int8":
        note = f"precision int8 needs a converted model ({missing})"
    else:
        note = None
    if note:
        note += "; PyTorch FP32 answers instead"
        logger.warning("%s: %s", path or "in-memory network", note)
    return _torch(path, index, device, network, labels, roi_size, overlap, note)


def _openvino(path: Path | None, index: dict | None, missing: str | None, precision: str, threads: int | None,
              labels: dict[str, int] | None, overlap: float) -> Predictor:
    if path is None or index is None:
        raise ValueError(missing)
    folder = path.parent
    exported_labels = {str(k): int(v) for k, v in index.get("labels", {}).items()}
    if labels is not None and exported_labels != dict(labels):
        raise ValueError(f"{folder / INDEX}: converted for labels {exported_labels}, not {dict(labels)}")
    windows, facts = open_converted(folder, index, path, precision, threads)
    meta = model_entries(path) if path.is_file() else {}
    info = {**facts, **int8_check(index), "spacing": _spacing(path, index, meta), "export": index}
    return openvino_predictor(windows, windows.roi_size, precision, labels=exported_labels, overlap=overlap,
                              info=info)


def _spacing(path: Path, index: dict | None, meta: dict) -> tuple[float, float, float] | None:
    """The resampling the model was trained with (its run, its file), else the export's."""
    exported = (index or {}).get("spacing")
    return trained_spacing(path.parent, meta) or (tuple(float(s) for s in exported) if exported else None)


def _required(path: Path | None) -> Path:
    if path is None:
        raise ValueError("an in-memory predictor needs its network, labels and roi_size")
    return path


def _torch(path: Path | None, index: dict | None, device: torch.device, network: nn.Module | None,
           labels: dict[str, int] | None, roi_size, overlap: float, note: str | None) -> Predictor:
    if network is None:
        network, meta = load_merged_model(_required(path))
        network = network.to(device)
    elif path is not None or labels is None or roi_size is None:
        meta = model_entries(_required(path))
    else:
        meta = {}
    if labels is None:
        labels = {str(k): int(v) for k, v in meta["labels"].items()}
    if roi_size is None:
        roi_size = _torch_roi(path, index, meta)
    spacing = _spacing(path, index, meta) if path is not None else None
    info = {"weight_bytes": torch_weight_bytes(network), **int8_check(index), "spacing": spacing, "export": index}
    return torch_predictor(network, roi_size, labels=labels, device=device, overlap=overlap, note=note, info=info)


def _torch_roi(path: Path, index: dict | None, meta: dict) -> tuple[int, int, int]:
    """The export's window when it fits the network, else the trained patch size."""
    spec = NetworkSpec.from_dict(meta["network"])
    try:
        return check_roi(spec, (index or {})["roi_size"])
    except (KeyError, TypeError, ValueError):
        return trained_roi(path.parent, meta, spec)
