"""The serving index (``serving.json``) beside a ``model.pt``, and opening the converted model it names.

:func:`.serving.export_serving_models` writes the index; :func:`open_converted` is what serving reads:
it checks that the converted models were made from this very ``model.pt`` (SHA-256), compiles the IR
of one precision and, for INT8, that the compiled model really runs quantized convolutions.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..models import file_sha256
from .convert import compile_model, read_ir
from .runtime import OpenVINOPredictor, require_quantized

SERVING_FORMAT = "seapeft-serving/1"
INDEX = "serving.json"


def read_index(folder: str | Path) -> dict:
    """The ``serving.json`` of ``folder``; ``ValueError`` naming the file when missing or unreadable."""
    path = Path(folder) / INDEX
    if not path.is_file():
        raise ValueError(f"{path}: no converted models (run `seapeft quantize` or the export after training)")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable ({err})") from None
    if not isinstance(index, dict) or index.get("format") != SERVING_FORMAT:
        raise ValueError(f"{path}: not a serving index (expected format {SERVING_FORMAT})")
    return index


def int8_check(index: dict | None) -> dict:
    """The INT8 model's Dice check recorded at export: ``{"int8_dice_drop_points", "int8_p_value"}``
    (empty without an index or an INT8 model)."""
    int8 = ((index or {}).get("models") or {}).get("int8") or {}
    if "dice_drop_points" not in int8:
        return {}
    return {"int8_dice_drop_points": int8["dice_drop_points"], "int8_p_value": int8.get("p_value")}


def open_converted(folder: Path, index: dict, model_file: Path, precision: str,
                   threads: int | None = None) -> tuple[OpenVINOPredictor, dict]:
    """The compiled ``precision`` model of ``index`` as windows ``(1, C, *roi) -> (1, K, *roi)``, and its facts.

    Returns:
        ``(windows, info)``; ``info``: ``weight_bytes`` and, for INT8, ``quantized_convolutions``.

    Raises:
        ValueError: no model of that precision, converted from another ``model.pt``, or an IR whose
            input is not the index's window; QuantizationError: an INT8 model running no INT8
            convolution; OpenVINO's own errors for a damaged IR.
    """
    entry = (index.get("models") or {}).get(precision)
    if not entry:
        raise ValueError(f"{folder / INDEX}: no {precision.upper()} model was exported")
    if model_file.is_file() and file_sha256(model_file) != index.get("model_sha256"):
        raise ValueError(f"{folder / INDEX}: the converted models were made from another {model_file.name} "
                         "(trained since?); export them again")
    xml = folder / entry["xml"]
    windows = OpenVINOPredictor(compile_model(read_ir(xml), threads))
    if tuple(index.get("roi_size") or ()) != windows.roi_size:
        raise ValueError(f"{xml}: input {windows.roi_size} differs from the index's window {index.get('roi_size')}")
    info = {"weight_bytes": entry.get("weight_bytes")}
    if precision == "int8":
        info["quantized_convolutions"] = require_quantized(windows.compiled, str(xml))
    return windows, info
