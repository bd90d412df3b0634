"""What the app calls: export the served models after training, and load the one to serve.

Layout written by :func:`export_serving_models` into ``out_dir`` (normally the run folder that holds
``model.pt``)::

    serving.json                 index: which IR folder is current, sizes, conv counts, measured Dice drop
    openvino-<version>/fp32.xml  OpenVINO FP32 IR (+ .bin), input (1, C, *roi_size)
    openvino-<version>/int8.xml  OpenVINO INT8 IR (+ .bin), same input

Publishing is atomic: the IR folder is written under a staging name, renamed into place, and only
then is ``serving.json`` replaced (``os.replace``) to point at it; a reader sees the old set or the
new set, never a mix. ``serving.json`` records the SHA-256 of the ``model.pt`` it was made from, so
converted models left behind by an older training run are never served.

:func:`load_serving_model` serves OpenVINO on machines without CUDA and PyTorch with CUDA
(``runtime="auto"``); a missing, stale or damaged converted model falls back to PyTorch FP32 with one
warning line.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from monai.inferers import sliding_window_inference

from ..models import NetworkSpec, file_sha256
from ..models.factory import spatial_multiple
from ..search import load_merged_model
from . import graph
from .convert import compile_model, read_ir, save_ir, to_openvino, torch_weight_bytes
from .noninferiority import MAX_DROP_POINTS, compare, load_volumes, volume_dices
from .ptq import calibration_patches, quantize_ptq
from .qat import quantization_aware_training
from .runtime import (
    OpenVINOPredictor,
    convolution_precisions,
    require_quantized,
    single_torch_thread,
)

logger = logging.getLogger(__name__)

SERVING_FORMAT = "seapeft-serving/1"
INDEX = "serving.json"
PRECISIONS = ("fp32", "int8")
RUNTIMES = ("auto", "torch", "openvino")
#: Keep the first and last convolutions FP32 only if quantizing them costs more than this many Dice points
#: (mean over the check volumes): smaller differences are within the noise of a few volumes, and the
#: full-resolution end convolutions are where INT8 saves the most time.
TIE_POINTS = 0.25

Progress = Callable[[str, int, int, dict], None]


@dataclass
class ServingModel:
    """A model ready for ``sliding_window_inference(image, roi_size, 1, predictor)``.

    Attributes:
        predictor: ``(B, C, *roi_size)`` float tensor -> ``(B, K, *roi_size)`` float32 logits, on the
            input's device.
        roi_size: the sliding-window size (the OpenVINO models accept only this size).
        runtime: ``"openvino"`` or ``"torch"`` (what actually answers).
        precision: ``"fp32"`` or ``"int8"`` (what actually answers).
        labels: ``{name: class index}``, background 0.
        info: ``fallback`` (None, or why the requested model is not served), ``requested``
            (precision, runtime), ``weight_bytes``, ``quantized_convolutions`` (OpenVINO INT8),
            ``dice_drop_points`` and ``p_value`` (INT8 against FP32, measured at export; the one-sided
            Wilcoxon p of a loss, see :mod:`.noninferiority`), ``spacing``,
            and ``export`` (the whole ``serving.json``, when readable).
    """

    predictor: Callable[[torch.Tensor], torch.Tensor]
    roi_size: tuple[int, int, int]
    runtime: str
    precision: str
    labels: dict[str, int]
    info: dict = field(default_factory=dict)

    def sliding_window(self, image: torch.Tensor, overlap: float = 0.25, mode: str = "gaussian") -> torch.Tensor:
        """Logits ``(B, K, D, H, W)`` of ``image`` ``(B, C, D, H, W)`` by MONAI's ``sliding_window_inference``.

        With OpenVINO answering, PyTorch only blends the windows, on one thread
        (:func:`.runtime.single_torch_thread`: its spinning OpenMP threads would compete with OpenVINO's).
        """
        with torch.no_grad(), (single_torch_thread() if self.runtime == "openvino" else nullcontext()):
            return sliding_window_inference(image, self.roi_size, 1, self.predictor, overlap=overlap, mode=mode)


def _check_roi(spec: NetworkSpec, roi_size: Sequence[int]) -> tuple[int, int, int]:
    roi = tuple(int(v) for v in roi_size)
    multiple = spatial_multiple(spec)
    if len(roi) != 3 or any(v < 1 or v % multiple for v in roi):
        raise ValueError(f"roi_size {roi_size!r}: {spec.name} needs three sizes divisible by {multiple}")
    return roi  # type: ignore[return-value]


def _int8_candidates(fp32_model, network, spec, roi, patches, train_items, eval_items, fp32_dice, spacing,
                     qat_steps, threads, progress) -> tuple[object, dict, list[dict]]:
    """Quantize with the ends INT8 and FP32, add QAT if PTQ loses too much; the best model and its record."""
    n_classes = spec.out_channels
    first, last = graph.end_convolutions(fp32_model)
    ends = [graph.module_name(n) for n in first + last]
    tried: list[tuple[object, dict]] = []
    for keep_ends in (False, True):
        model = quantize_ptq(fp32_model, patches, keep_ends_fp32=keep_ends, progress=progress)
        tried.append((model, _record(model, "ptq", keep_ends, fp32_dice, eval_items, roi, n_classes, spacing, threads)))
        if progress:
            progress("evaluate", len(tried), 2, {"stage": "ptq", "ends": tried[-1][1]["ends"],
                                                  "drop": round(tried[-1][1]["dice_drop_points"], 3)})
    full, kept = tried[0][1], tried[1][1]
    best = tried[1] if kept["dice_drop_points"] < full["dice_drop_points"] - TIE_POINTS else tried[0]
    if best[1]["dice_drop_points"] > MAX_DROP_POINTS:
        keep = [n for n in ends if n] if best[1]["ends"] == "fp32" else []
        model = quantization_aware_training(network, spec.in_channels, train_items, roi, patches, keep_fp32=keep,
                                            steps=qat_steps, spacing=spacing, progress=progress)
        record = _record(model, "qat", best[1]["ends"] == "fp32", fp32_dice, eval_items, roi, n_classes, spacing,
                         threads)
        tried.append((model, record))
        if record["dice_drop_points"] < best[1]["dice_drop_points"]:
            best = tried[-1]
    return best[0], best[1], [r for _, r in tried]


def _record(model, stage, keep_ends, fp32_dice, eval_items, roi, n_classes, spacing, threads) -> dict:
    predictor = OpenVINOPredictor(compile_model(model, threads))
    count = require_quantized(predictor.compiled, f"INT8 model ({stage}, ends {'fp32' if keep_ends else 'int8'})")
    with single_torch_thread():
        result = compare(fp32_dice, volume_dices(predictor, eval_items, roi, n_classes, spacing))
    return {"stage": stage, "ends": "fp32" if keep_ends else "int8", "quantized_convolutions": count,
            "convolutions_by_precision": convolution_precisions(predictor.compiled),
            "weight_bytes": graph.weight_bytes(model), "dice_drop_points": result.mean_drop_points,
            "p_value": result.p_value, "p_two_sided": result.p_two_sided, "passed": result.passed,
            "dice": result.candidate}


@torch.no_grad()
def _agreement(network, fp32_model, patch, threads) -> dict:
    """Largest |OpenVINO FP32 - PyTorch| logit on one real patch, and the largest |logit|."""
    reference = network(torch.from_numpy(patch))
    converted = OpenVINOPredictor(compile_model(fp32_model, threads))(torch.from_numpy(patch))
    return {"max_abs_diff": float((converted - reference).abs().max()), "max_abs_logit": float(reference.abs().max())}


def export_serving_models(model_path, out_dir, calibration_datalist, roi_size, precision=("fp32", "int8"),
                          progress: Progress | None = None, *, validation_datalist=None, spacing=None,
                          n_patches: int = 32, qat_steps: int = 60, threads: int | None = None,
                          seed: int = 0) -> dict:
    """Convert ``model_path`` (a merged ``model.pt``) to OpenVINO FP32 and INT8 at ``roi_size``; publish atomically.

    Args:
        model_path: a ``seapeft-merged/1`` model file (a run's ``model.pt`` or the base model).
        out_dir: where ``serving.json`` and the IR folder go (normally the folder of ``model_path``).
        calibration_datalist: labelled volumes ``{"image", "label"}``: calibration patches (and the
            QAT patches when PTQ loses more than 0.5 Dice points).
        roi_size: the sliding-window size, e.g. the training patch size.
        precision: which models to write (``"fp32"`` always comes with ``"int8"``: it is the reference).
        progress: ``progress(stage, step, total, info)``.
        validation_datalist: labelled volumes for the Dice comparison (default: the calibration volumes).
        spacing: resampling of the preprocessing (None: each volume's own, as in training).

    Returns:
        The index written to ``serving.json`` (see :func:`load_serving_model` for how it is used).

    Raises:
        ValueError: unreadable model, bad roi, no labelled volume for INT8.
        QuantizationError: an INT8 model that runs no quantized convolution.
    """
    precision = tuple(dict.fromkeys(("fp32",) + tuple(p.lower() for p in precision)))
    unknown = [p for p in precision if p not in PRECISIONS]
    if unknown:
        raise ValueError(f"unknown precision {unknown}; choose from {PRECISIONS}")
    model_path, out = Path(model_path), Path(out_dir)
    network, meta = load_merged_model(model_path)
    spec = NetworkSpec.from_dict(meta["network"])
    roi = _check_roi(spec, roi_size)
    labels = {str(k): int(v) for k, v in meta["labels"].items()}
    train_items = [dict(i) for i in calibration_datalist or [] if i.get("label")]
    eval_list = [dict(i) for i in (validation_datalist or train_items) if i.get("label")]
    if "int8" in precision and not (train_items and eval_list):
        raise ValueError("INT8 export needs labelled volumes (calibration patches and the Dice check); none given")
    started = time.monotonic()
    if progress:
        progress("convert", 0, 1, {"roi": "x".join(map(str, roi))})
    fp32_model = to_openvino(network, spec.in_channels, roi)
    if progress:
        progress("convert", 1, 1, {})
    index: dict = {
        "format": SERVING_FORMAT, "model": str(model_path.resolve()), "model_sha256": file_sha256(model_path),
        "network": spec.to_dict(), "labels": labels, "roi_size": list(roi),
        "spacing": list(spacing) if spacing is not None else None, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "torch_weight_bytes": torch_weight_bytes(network), "models": {},
    }
    models = {"fp32": fp32_model}
    index["models"]["fp32"] = {"weight_bytes": graph.weight_bytes(fp32_model),
                               "constant_bytes": graph.constant_bytes(fp32_model)}
    if "int8" in precision:
        patches = calibration_patches(train_items, roi, n_patches, spacing, seed)
        eval_items = load_volumes(eval_list, spacing)
        index["fp32_agreement"] = _agreement(network, fp32_model, patches[0], threads)
        fp32_dice = volume_dices(OpenVINOPredictor(compile_model(fp32_model, threads)), eval_items, roi,
                              spec.out_channels, spacing)
        int8_model, chosen, tried = _int8_candidates(fp32_model, network, spec, roi, patches, train_items, eval_items,
                                                     fp32_dice, spacing, qat_steps, threads, progress)
        models["int8"] = int8_model
        index["models"]["int8"] = {**{k: v for k, v in chosen.items() if k != "dice"},
                                   "constant_bytes": graph.constant_bytes(int8_model)}
        index["dice"] = {"volumes": [Path(i["image"]).name for i in eval_list],
                         "held_out": validation_datalist is not None, "fp32": fp32_dice, "int8": chosen["dice"],
                         "tried": [{k: v for k, v in r.items() if k not in ("dice", "convolutions_by_precision")}
                                   for r in tried]}
    index["seconds"] = round(time.monotonic() - started, 1)
    _publish(out, models, index)
    return index


def _publish(out: Path, models: dict, index: dict) -> None:
    """Write the IR folder under a staging name, rename it into place, then replace ``serving.json``."""
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".openvino-staging-", dir=out))
    try:
        for name, model in models.items():
            save_ir(model, staging / f"{name}.xml")
        version = f"openvino-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{staging.name[-6:]}"
        for name in models:
            index["models"][name]["xml"] = f"{version}/{name}.xml"
        os.replace(staging, out / version)
        previous = _current_folder(out)
        tmp = out / f".{INDEX}.tmp"
        tmp.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, out / INDEX)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for old in out.glob("openvino-*"):
        if old.name not in (version, previous):
            shutil.rmtree(old, ignore_errors=True)


def _current_folder(out: Path) -> str | None:
    try:
        index = json.loads((out / INDEX).read_text(encoding="utf-8"))
        return Path(index["models"]["fp32"]["xml"]).parent.name
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ----------------------------------------------------------------------------- loading


def read_index(folder: str | Path) -> dict:
    """The ``serving.json`` of ``folder``; ``ValueError`` naming the file when missing or unreadable."""
    folder = Path(folder)
    path = folder / INDEX
    if not path.is_file():
        raise ValueError(f"{path}: no converted models (run the export after training)")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable ({err})") from None
    if not isinstance(index, dict) or index.get("format") != SERVING_FORMAT:
        raise ValueError(f"{path}: not a serving index (expected format {SERVING_FORMAT})")
    return index


def _model_file(folder: Path, index: dict | None) -> Path:
    local = folder / "model.pt"
    if local.is_file() or index is None:
        return local
    return Path(index.get("model", local))


def _default_roi(folder: Path, meta: dict, spec: NetworkSpec) -> tuple[int, int, int]:
    """The sliding window for PyTorch without an index: the run's patch size (``config.yaml``), the model
    file's ``roi_size``/``patch_size`` or pretraining patch size, else 64^3 (valid for both networks)."""
    config = folder / "config.yaml"
    if config.is_file():
        try:
            patch = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("config", {}).get("patch_size")
            if patch:
                return _check_roi(spec, patch)
        except (OSError, ValueError, yaml.YAMLError, AttributeError):
            pass
    recipe = (meta.get("pretraining") or {}).get("recipe") or {}
    for patch in (meta.get("roi_size"), meta.get("patch_size"), recipe.get("patch_size")):
        if patch:
            return _check_roi(spec, patch)
    size = max(64, spatial_multiple(spec))
    return (size, size, size)


def default_roi_size(model_path) -> tuple[int, int, int]:
    """The sliding window a model was trained with: its run's ``config.yaml`` patch size, the model
    file's ``roi_size``/``patch_size`` or pretraining patch size, else 64^3."""
    model_path = Path(model_path)
    try:
        data = torch.load(model_path, map_location="cpu", weights_only=True)
        spec = NetworkSpec.from_dict(data["network"])
    except Exception as err:
        raise ValueError(f"{model_path}: not a readable seapeft model file ({type(err).__name__})") from None
    return _default_roi(model_path.parent, data, spec)


def _resolve_runtime(runtime: str, precision: str) -> str:
    if runtime != "auto":
        return runtime
    return "openvino" if precision == "int8" or not torch.cuda.is_available() else "torch"


class _TorchPredictor:
    """``(B, C, *roi) -> (B, K, *roi)`` with a PyTorch network on ``device``; output on the input's device."""

    def __init__(self, network: torch.nn.Module, device: torch.device):
        self.network = network.to(device).eval()
        self.device = device

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x.to(self.device, torch.float32)).float().to(x.device)


def load_serving_model(model_dir, precision: str = "fp32", runtime: str = "auto",
                       threads: int | None = None) -> ServingModel:
    """The model to serve from a run folder (or the base model folder) holding ``model.pt``.

    Args:
        model_dir: folder with ``model.pt`` and, after :func:`export_serving_models`, ``serving.json``
            (a path to the ``model.pt`` itself is accepted too).
        precision: ``"fp32"`` or ``"int8"`` (INT8 exists only in OpenVINO).
        runtime: ``"openvino"``, ``"torch"`` or ``"auto"`` (OpenVINO without CUDA or for INT8, else PyTorch).
        threads: OpenVINO CPU threads (None: all cores).

    A missing, stale (converted from another ``model.pt``) or damaged OpenVINO model, or an INT8 model
    that runs no quantized convolution, falls back to PyTorch FP32 with one ``logging.warning`` line.
    Raises ``ValueError`` only for bad arguments or when ``model.pt`` itself cannot be loaded.
    """
    precision, runtime = str(precision).lower(), str(runtime).lower()
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    path = Path(model_dir)
    folder = path.parent if path.is_file() else path
    requested = {"precision": precision, "runtime": runtime}
    chosen = _resolve_runtime(runtime, precision)
    index, reason = None, None
    try:
        index = read_index(folder)
    except ValueError as err:
        reason = str(err)
    model_file = _model_file(folder, index)
    if chosen == "openvino":
        try:
            return _load_openvino(folder, index, reason, model_file, precision, threads, requested)
        except Exception as err:  # every failure of the converted model falls back to PyTorch FP32
            reason = f"{type(err).__name__}: {err}" if not isinstance(err, ValueError) else str(err)
            logger.warning("cannot serve OpenVINO %s from %s (%s); serving PyTorch FP32 instead",
                           precision.upper(), folder, reason)
    else:
        reason = "PyTorch has no INT8 path for 3D convolutions" if precision == "int8" else None
        if reason:
            logger.warning("%s: %s; serving PyTorch FP32 instead (use runtime openvino for INT8)", folder, reason)
    return _load_torch(folder, index, model_file, reason, requested)


def _load_openvino(folder: Path, index: dict | None, reason: str | None, model_file: Path, precision: str,
                   threads: int | None, requested: dict) -> ServingModel:
    if index is None:
        raise ValueError(reason)
    entry = index.get("models", {}).get(precision)
    if not entry:
        raise ValueError(f"{folder / INDEX}: no {precision.upper()} model was exported")
    if model_file.is_file() and file_sha256(model_file) != index.get("model_sha256"):
        raise ValueError(f"{folder / INDEX}: the converted models were made from another {model_file.name} "
                         "(trained since?); export them again")
    xml = folder / entry["xml"]
    compiled = compile_model(read_ir(xml), threads)
    predictor = OpenVINOPredictor(compiled)
    info = {"fallback": None, "requested": requested, "weight_bytes": entry.get("weight_bytes"),
            "dice_drop_points": index.get("models", {}).get("int8", {}).get("dice_drop_points"),
            "p_value": index.get("models", {}).get("int8", {}).get("p_value"),
            "spacing": index.get("spacing"), "export": index}
    if precision == "int8":
        info["quantized_convolutions"] = require_quantized(compiled, str(xml))
    if tuple(index["roi_size"]) != predictor.roi_size:
        raise ValueError(f"{xml}: input {predictor.roi_size} differs from the index's roi {index['roi_size']}")
    return ServingModel(predictor, predictor.roi_size, "openvino", precision,
                        {str(k): int(v) for k, v in index["labels"].items()}, info)


def _load_torch(folder: Path, index: dict | None, model_file: Path, reason: str | None,
                requested: dict) -> ServingModel:
    network, meta = load_merged_model(model_file)
    spec = NetworkSpec.from_dict(meta["network"])
    roi = None
    if index is not None:
        try:
            roi = _check_roi(spec, index["roi_size"])
        except (KeyError, TypeError, ValueError):
            roi = None
    roi = roi or _default_roi(folder, meta, spec)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    int8 = (index or {}).get("models", {}).get("int8", {}) if isinstance(index, dict) else {}
    info = {"fallback": reason, "requested": requested, "weight_bytes": torch_weight_bytes(network),
            "dice_drop_points": int8.get("dice_drop_points"), "p_value": int8.get("p_value"),
            "spacing": (index or {}).get("spacing"), "export": index}
    return ServingModel(_TorchPredictor(network, device), roi, "torch", "fp32",
                        {str(k): int(v) for k, v in meta["labels"].items()}, info)
