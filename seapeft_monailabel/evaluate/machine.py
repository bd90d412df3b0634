"""A description of the machine a measurement ran on, for model cards and benchmark reports."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else what :mod:`platform` says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_info(device: str | torch.device = "cpu") -> dict:
    """CPU model, cores, torch threads and version, and the GPU when ``device`` is a CUDA device."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    info = {"cpu": cpu_model(), "cores": cores, "torch_threads": torch.get_num_threads(),
            "torch": str(torch.__version__), "python": platform.python_version(), "system": platform.system()}
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def describe_machine(info: dict) -> str:
    """One line: ``Intel(R) Xeon(R) ..., 2 cores (torch 2.x, 2 threads)`` plus the GPU if any."""
    threads = info["torch_threads"]
    text = f"{info['cpu']}, {info['cores']} cores (torch {info['torch']}, {threads} thread{'s' * (threads != 1)})"
    return text + (f", GPU {info['gpu']}" if info.get("gpu") else "")
