"""After a run, before publishing: convert its merged model for the CPU runtime (OpenVINO FP32, INT8).

``--conf export``: ``auto`` (FP32 on a machine without CUDA, plus INT8 when ``precision`` is ``int8``;
nothing with CUDA) | ``none`` | ``fp32`` | ``int8`` (FP32 and INT8). The converted models go into the
run folder through :func:`seapeft_monailabel.quant.export_serving_models` (its own atomic
``serving.json``), before the publish pointer moves, so a published run is complete when it is first
served. A failed conversion is logged and the run is published without it: PyTorch then serves it.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def precisions_to_export(export: str, precision: str) -> tuple[str, ...]:
    """Which converted models to write for ``--conf export`` / ``precision``; () for none."""
    if export == "auto":
        if torch.cuda.is_available():
            return ()
        return ("fp32", "int8") if precision == "int8" else ("fp32",)
    return {"none": (), "fp32": ("fp32",), "int8": ("fp32", "int8")}[export]


def export_for_serving(run_dir: Path, datalist: list[dict], roi_size, spacing, precisions: tuple[str, ...],
                       progress=None) -> dict | None:
    """Convert ``run_dir/model.pt``; returns a summary for the publish record, or None (nothing or failed)."""
    if not precisions:
        return None
    try:
        quant = importlib.import_module("seapeft_monailabel.quant")
        index = quant.export_serving_models(run_dir / "model.pt", run_dir, datalist, roi_size, precision=precisions,
                                            progress=progress, spacing=spacing)
    except Exception as err:  # noqa: BLE001 - a failed conversion still publishes (PyTorch serves)
        logger.error(f"OpenVINO export of {run_dir / 'model.pt'} failed, PyTorch will serve it: "
                     f"{type(err).__name__}: {err}")
        return None
    summary = {"precisions": list(index["models"]), "roi_size": index["roi_size"], "seconds": index.get("seconds")}
    int8 = index["models"].get("int8")
    if int8:
        summary.update(int8_dice_drop_points=int8.get("dice_drop_points"), int8_p_value=int8.get("p_value"))
    logger.info(f"OpenVINO export of {run_dir.name}: {summary}")
    return summary
