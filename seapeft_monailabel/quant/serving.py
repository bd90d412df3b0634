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

Serving reads them through :func:`seapeft_monailabel.quant.load_predictor` (:mod:`.index` opens
them); the Dice checks here run through the same predictor and sliding window.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..atomic import staged_folder, write_json_atomic
from ..inference.trained import check_roi
from ..inference.predictor import Predictor, openvino_predictor
from ..models import NetworkSpec, file_sha256
from ..peft.merged_model import load_merged_model
from . import graph
from .convert import compile_model, save_ir, to_openvino, torch_weight_bytes
from .index import INDEX, SERVING_FORMAT
from .noninferiority import MAX_DROP_POINTS, compare, load_volumes, volume_dices
from .ptq import calibration_patches, quantize_ptq
from .qat import quantization_aware_training
from .runtime import OpenVINOPredictor, convolution_precisions, require_quantized

PRECISIONS = ("fp32", "int8")
#: Keep the first and last convolutions FP32 only if quantizing them costs more than this many Dice points
#: (mean over the check volumes): smaller differences are within the noise of a few volumes, and the
#: full-resolution end convolutions are where INT8 saves the most time.
TIE_POINTS = 0.25

Progress = Callable[[str, int, int, dict], None]


def _int8_candidates(fp32_model, network, spec, roi, patches, train_items, eval_items, fp32_dice, spacing,
                     qat_steps, threads, progress) -> tuple[object, dict, list[dict]]:
    """Quantize with the ends INT8 and FP32, add QAT if PTQ loses too much; the best model and its record."""
    n_classes = spec.out_channels
    first, last = graph.end_convolutions(fp32_model)
    ends = [graph.module_name(n) for n in first + last]
    tried: list[tuple[object, dict]] = []
    for keep_ends in (False, True):
        model = quantize_ptq(fp32_model, patches, keep_ends_fp32=keep_ends, progress=progress)
        tried.append((model, _record(model, "ptq", keep_ends, fp32_dice, eval_items, n_classes, threads)))
        if progress:
            progress("evaluate", len(tried), 2, {"stage": "ptq", "ends": tried[-1][1]["ends"],
                                                  "drop": round(tried[-1][1]["dice_drop_points"], 3)})
    full, kept = tried[0][1], tried[1][1]
    best = tried[1] if kept["dice_drop_points"] < full["dice_drop_points"] - TIE_POINTS else tried[0]
    if best[1]["dice_drop_points"] > MAX_DROP_POINTS:
        keep = [n for n in ends if n] if best[1]["ends"] == "fp32" else []
        model = quantization_aware_training(network, spec.in_channels, train_items, roi, patches, keep_fp32=keep,
                                            steps=qat_steps, spacing=spacing, progress=progress)
        record = _record(model, "qat", best[1]["ends"] == "fp32", fp32_dice, eval_items, n_classes, threads)
        tried.append((model, record))
        if record["dice_drop_points"] < best[1]["dice_drop_points"]:
            best = tried[-1]
    return best[0], best[1], [r for _, r in tried]


def _served(model, precision: str, threads: int | None) -> Predictor:
    """``model`` compiled and answering as it will be served (the sliding window of :mod:`..inference`)."""
    windows = OpenVINOPredictor(compile_model(model, threads))
    return openvino_predictor(windows, windows.roi_size, precision)


def _record(model, stage, keep_ends, fp32_dice, eval_items, n_classes, threads) -> dict:
    predictor = _served(model, "int8", threads)
    compiled = predictor.windows.compiled
    count = require_quantized(compiled, f"INT8 model ({stage}, ends {'fp32' if keep_ends else 'int8'})")
    result = compare(fp32_dice, volume_dices(predictor, eval_items, n_classes))
    return {"stage": stage, "ends": "fp32" if keep_ends else "int8", "quantized_convolutions": count,
            "convolutions_by_precision": convolution_precisions(compiled),
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
        The index written to ``serving.json`` (:func:`seapeft_monailabel.quant.load_predictor` reads it).

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
    roi = check_roi(spec, roi_size)
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
        fp32_dice = volume_dices(_served(fp32_model, "fp32", threads), eval_items, spec.out_channels)
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
    with staged_folder(out) as staging:
        version = f"openvino-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{staging.name[-6:]}"
        (staging / version).mkdir()
        for name, model in models.items():
            save_ir(model, staging / version / f"{name}.xml")
            index["models"][name]["xml"] = f"{version}/{name}.xml"
    previous = _current_folder(out)
    write_json_atomic(out / INDEX, index)
    for old in out.glob("openvino-*"):
        if old.name not in (version, previous):
            shutil.rmtree(old, ignore_errors=True)


def _current_folder(out: Path) -> str | None:
    try:
        index = json.loads((out / INDEX).read_text(encoding="utf-8"))
        return Path(index["models"]["fp32"]["xml"]).parent.name
    except (OSError, ValueError, KeyError, TypeError):
        return None
