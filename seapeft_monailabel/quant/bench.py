"""Weight bytes, sliding-window latency and Dice of PyTorch FP32, OpenVINO FP32 and OpenVINO INT8, side by side.

Every engine is the predictor the app and ``seapeft predict`` serve
(:func:`seapeft_monailabel.quant.load_predictor`), so the path measured is the path served.
Latency is the wall time of its sliding-window inference over one preprocessed volume
(:meth:`..inference.Predictor.logits`: overlap 0.25, Gaussian blending, one window at a time),
median of ``repeats`` runs after one warm-up;
the three engines take turns within each repeat so that a change in machine load hits all of them.
Dice is per held-out volume; INT8 is compared with OpenVINO FP32 (the model it was quantized from)
by :func:`.noninferiority.compare`.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import openvino as ov
import torch

from ..data.transforms import eval_transforms
from .choose import load_predictor
from ..inference.predictor import Predictor
from .convert import FP32_HINT
from .noninferiority import MAX_DROP_POINTS, compare, load_volumes, volume_dices

#: Goals the INT8 model is held to (ratios measured in one run).
GOALS = {"size_ratio": 3.5, "speedup_vs_openvino_fp32": 1.3, "speedup_vs_torch_fp32": 3.0,
         "max_drop_points": MAX_DROP_POINTS, "min_p_value": 0.05}
ENGINES = (("PyTorch FP32", "fp32", "torch"), ("OpenVINO FP32", "fp32", "openvino"), ("OpenVINO INT8", "int8", "openvino"))


def cpu_description() -> dict:
    """CPU model, usable cores, whether the CPU has VNNI and AMX (from /proc/cpuinfo flags), and the
    1-minute load average (other processes on the machine slow PyTorch's threads most)."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model or platform.machine(), "cores": cores,
            "vnni": sorted(f for f in flags if "vnni" in f), "amx": sorted(f for f in flags if f.startswith("amx")),
            "avx512": "avx512f" in flags,
            "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def _load_all(model_dir, threads: int) -> list[tuple[str, Predictor]]:
    loaded = []
    for name, precision, runtime in ENGINES:
        served = load_predictor(model_dir, precision, runtime, device="cpu", threads=threads)
        if served.note or served.runtime != runtime:
            raise ValueError(f"{model_dir}: {name} cannot be served ({served.note})")
        loaded.append((name, served))
    return loaded


def run_benchmark(model_dir, volume: str | Path, heldout: Sequence[dict], threads: int = 2, repeats: int = 3,
                  spacing=None, held_out: bool = True, progress: Callable[[str, int, int, dict], None] | None = None) -> dict:
    """Measure the three engines on the exported models in ``model_dir`` (see :func:`.serving.export_serving_models`).

    Args:
        volume: the image whose sliding-window inference is timed.
        heldout: labelled volumes ``{"image", "label"}`` for Dice; ``held_out`` says whether they were kept
            out of calibration (reported).
        threads: PyTorch and OpenVINO CPU threads.

    Returns:
        ``{"cpu", "threads", "volume", "roi_size", "engines": {name: {"weight_bytes", "latency_s",
        "latencies_s", "dice"}}, "ratios", "int8_vs_fp32", "goals"}``.
    """
    torch.set_num_threads(threads)
    engines = _load_all(model_dir, threads)
    roi = engines[2][1].roi_size
    n_classes = len(engines[0][1].labels)
    image = eval_transforms(spacing, with_label=False)({"image": str(volume)})["image"]
    times: dict[str, list[float]] = {name: [] for name, _ in engines}
    runs = [(r, name, served) for r in range(repeats + 1) for name, served in engines]
    for done, (r, name, served) in enumerate(runs, 1):
        started = time.perf_counter()
        served.logits(image)
        if r:  # round 0 warms up
            times[name].append(time.perf_counter() - started)
        if progress:
            progress("latency", done, len(runs), {"engine": name})
    cpu = cpu_description()
    dice = {}
    volumes = load_volumes(heldout, spacing)
    for k, (name, served) in enumerate(engines):
        dice[name] = volume_dices(served, volumes, n_classes)
        if progress:
            progress("dice", k + 1, len(engines), {"engine": name})
    weights = {name: served.info["weight_bytes"] for name, served in engines}
    latency = {name: statistics.median(values) for name, values in times.items()}
    int8_vs_fp32 = compare(dice["OpenVINO FP32"], dice["OpenVINO INT8"])
    ratios = {"size_ratio": weights["OpenVINO FP32"] / weights["OpenVINO INT8"],
              "speedup_vs_openvino_fp32": latency["OpenVINO FP32"] / latency["OpenVINO INT8"],
              "speedup_vs_torch_fp32": latency["PyTorch FP32"] / latency["OpenVINO INT8"]}
    int8_info = engines[2][1].info
    return {
        "cpu": cpu, "threads": threads, "volume": str(volume), "image_shape": list(image.shape[1:]),
        "roi_size": list(roi), "heldout": [Path(i["image"]).name for i in heldout], "held_out": held_out,
        "network": int8_info["export"]["network"]["name"],
        "int8_stage": int8_info["export"]["models"]["int8"].get("stage"),
        "int8_ends": int8_info["export"]["models"]["int8"].get("ends"),
        "quantized_convolutions": int8_info.get("quantized_convolutions"),
        "engines": {name: {"weight_bytes": weights[name], "latency_s": latency[name], "best_s": min(times[name]),
                           "latencies_s": times[name],
                           "mean_dice": 100 * statistics.fmean(dice[name]), "dice": dice[name]}
                    for name, _ in engines},
        "ratios": ratios, "int8_vs_fp32": int8_vs_fp32.to_dict(),
        "goals": {"size_ratio": ratios["size_ratio"] >= GOALS["size_ratio"],
                  "speedup_vs_openvino_fp32": ratios["speedup_vs_openvino_fp32"] >= GOALS["speedup_vs_openvino_fp32"],
                  "speedup_vs_torch_fp32": ratios["speedup_vs_torch_fp32"] >= GOALS["speedup_vs_torch_fp32"],
                  "dice": int8_vs_fp32.passed},
    }


#: Parts of a window's time reported by :func:`time_by_part`, in print order.
PARTS = ("attention", "convolutions and linear layers", "normalisations", "other")


def _part(info: ov.ProfilingInfo) -> str:
    """Which part of the network a runtime layer belongs to.

    Fused attention is one ``Subgraph`` per Swin block, named after an op of the block's ``attn``
    module; LayerNorm runs as ``MVN`` or as ``RMS`` with ``ReduceMean``; INT8 convolutions and linear
    layers keep their layer type (``FullyConnectedQuantizedLegacy`` and the like).
    """
    if info.node_type == "Subgraph" and ".attn/" in info.node_name:
        return "attention"
    if info.node_type.startswith(("Convolution", "FullyConnected")):
        return "convolutions and linear layers"
    if info.node_type in ("MVN", "RMS", "ReduceMean"):
        return "normalisations"
    return "other"


def time_by_part(model: ov.Model, threads: int = 2, runs: int = 5, seed: int = 0) -> dict[str, float]:
    """Milliseconds of one window ``(1, C, *roi)`` by part of the network, from OpenVINO's per-layer counters.

    Compiles ``model`` with the FP32 hint and ``PERF_COUNT``, runs a random window once to warm up, then
    ``runs`` times; returns the mean time of each part of :data:`PARTS` (the counters' sum is close to,
    not equal to, the wall time: they leave out the time between layers).
    """
    compiled = ov.Core().compile_model(model, "CPU", {**FP32_HINT, "PERF_COUNT": True,
                                                      "INFERENCE_NUM_THREADS": int(threads)})
    request = compiled.create_infer_request()
    window = np.random.default_rng(seed).random(tuple(compiled.input(0).get_shape()), dtype=np.float32)
    totals = dict.fromkeys(PARTS, 0.0)
    for run in range(runs + 1):
        request.infer({0: window})
        for info in request.profiling_info if run else ():
            totals[_part(info)] += info.real_time.total_seconds() * 1000 / runs
    return totals


def to_markdown(result: dict) -> str:
    """The benchmark as a Markdown block: machine line, side-by-side table, ratios against the goals."""
    cpu = result["cpu"]
    nc = result["int8_vs_fp32"]
    lines = [
        f"CPU: {cpu['model']}, {result['threads']} threads of {cpu['cores']} cores; "
        f"VNNI: {', '.join(cpu['vnni']) or 'no'}; AMX: {', '.join(cpu['amx']) or 'no'}; "
        f"load average {cpu['load_average']} when the timing ended.",
        f"Network {result['network']}, window {'x'.join(map(str, result['roi_size']))}, volume "
        f"{Path(result['volume']).name} ({'x'.join(map(str, result['image_shape']))} voxels); INT8 by "
        f"{result['int8_stage'].upper()}, first/last convolutions {result['int8_ends'].upper()}, "
        f"{result['quantized_convolutions']} convolutions running INT8; Dice on {len(result['heldout'])} "
        f"{'held-out volumes' if result['held_out'] else 'calibration volumes (none held out)'}.",
        "",
        f"| engine | weight bytes | sliding-window latency, median of {len(next(iter(result['engines'].values()))['latencies_s'])} (best) | mean Dice (%) |",
        "|---|---:|---:|---:|",
    ]
    for name, e in result["engines"].items():
        lines.append(f"| {name} | {e['weight_bytes'] / 1e6:.2f} MB | {e['latency_s']:.2f} s ({e['best_s']:.2f} s) | {e['mean_dice']:.2f} |")
    r, g = result["ratios"], result["goals"]
    mark = {True: "met", False: "NOT met"}
    lines += [
        "",
        f"- weights {r['size_ratio']:.2f}x smaller than FP32 (goal >= {GOALS['size_ratio']}x): {mark[g['size_ratio']]}",
        f"- INT8 {r['speedup_vs_openvino_fp32']:.2f}x faster than OpenVINO FP32 (goal >= "
        f"{GOALS['speedup_vs_openvino_fp32']}x): {mark[g['speedup_vs_openvino_fp32']]}",
        f"- INT8 {r['speedup_vs_torch_fp32']:.2f}x faster than PyTorch FP32 (goal >= "
        f"{GOALS['speedup_vs_torch_fp32']}x): {mark[g['speedup_vs_torch_fp32']]}",
        f"- Dice drop INT8 vs OpenVINO FP32 {nc['mean_drop_points']:+.2f} points, Wilcoxon p = {nc['p_value']:.3g} "
        f"for a loss (one-sided; two-sided p = {nc['p_two_sided']:.3g}) (goal <= {GOALS['max_drop_points']} points "
        f"and p > {GOALS['min_p_value']}): {mark[g['dice']]}",
    ]
    return "\n".join(lines) + "\n"
