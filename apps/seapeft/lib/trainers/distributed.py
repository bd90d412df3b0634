"""``--conf multi_gpu true``: the train task's SEA-PEFT run data-parallel on every CUDA device, under ``torchrun``.

As MONAI Label's own ``multi_gpu`` training: when the key is true, the device is ``auto`` or ``cuda``
and more than one CUDA device is present, the train task (already a background subprocess of the
server) launches::

    python -m torch.distributed.run --standalone --nproc_per_node <gpus> \\
        -m seapeft_monailabel.cli search --datalist <labelled images> --weights <base model> \\
        --label-names <task labels> --out <run folder> --preset <p> --steps ... (the request's settings)

The engine runs one process per GPU (NCCL, see ``seapeft_monailabel.search.distributed``); rank 0
writes the run folder, then the train task reads the result from its ``config.yaml``
(``RunResult.from_run_dir``), loads the merged model strictly and publishes as usual. Otherwise (key
false, one GPU, CPU, or a device ``cuda:N``) the run stays in the train task's own process.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..configs.conf import AppConf, ConfError

logger = logging.getLogger(__name__)

#: tqdm bars of the engine's command line are relayed as log lines at most this often.
BAR_INTERVAL_S = 15


def processes(conf: AppConf, device: str) -> int:
    """Processes for a run: the number of CUDA devices with ``multi_gpu`` on ``auto``/``cuda`` and > 1 GPU, else 1."""
    gpus = torch.cuda.device_count()
    if conf.multi_gpu and device in ("auto", "cuda") and gpus > 1:
        return gpus
    return 1


def search_command(nproc: int, conf: AppConf, labels: dict[str, int], preset_name: str, config,
                   datalist: Path, out_dir: Path) -> list[str]:
    """``torchrun`` (as ``python -m torch.distributed.run``) of ``seapeft search`` with the run's settings.

    ``config`` is the run's resolved :class:`~seapeft_monailabel.search.SearchConfig` (preset, ``--conf``
    changes, the request's values, the fitted patch); every value the command line takes is passed.

    Raises:
        ConfError: a setting the command line cannot take (a base-model spacing).
    """
    if config.spacing or config.budget is not None:
        raise ConfError(f"multi_gpu: `seapeft search` takes neither a spacing ({config.spacing}) nor an absolute "
                        f"budget ({config.budget}); set --conf multi_gpu false for this base model or preset")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "seapeft_monailabel.cli", "search", "--datalist", str(datalist),
               "--weights", str(conf.base_model), "--label-names", json.dumps(labels), "--out", str(out_dir),
               "--preset", preset_name, "--budget-fraction", repr(config.budget_fraction),
               "--steps", str(config.max_steps), "--refine-steps", str(config.refine_steps),
               "--seed", str(config.seed), "--patch", *[str(p) for p in config.patch_size],
               "--device", "cuda"]
    if config.time_limit_s:
        command += ["--time-limit", repr(float(config.time_limit_s))]
    if config.bf16:
        command.append("--bf16")
    if conf.network != "auto":
        command += ["--network", conf.network, "--feature-size", str(conf.feature_size)]
    return command


def run_distributed(command: list[str], datalist: list[dict], datalist_path: Path, cwd: Path) -> None:
    """Write ``datalist`` (the labelled images, absolute paths) to ``datalist_path`` and run ``command``."""
    datalist_path.write_text(json.dumps(datalist, indent=1), encoding="utf-8")
    run_command(command, cwd)


def run_command(command: list[str], cwd: Path) -> None:
    """Run ``command``, relaying its output as log lines (progress bars every BAR_INTERVAL_S seconds).

    Raises:
        RuntimeError: it exited with an error; the message has the last lines of its output.
    """
    logger.info("multi_gpu: " + " ".join(command))
    tail: list[str] = []
    last_bar = 0.0
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as process:
        for line in process.stdout:  # text mode: tqdm's carriage returns end lines too
            line = line.rstrip()
            if not line:
                continue
            tail = (tail + [line])[-20:]
            is_bar = "step/s" in line or "s/step" in line or "|" in line
            if not is_bar or time.monotonic() - last_bar >= BAR_INTERVAL_S:
                last_bar = time.monotonic() if is_bar else last_bar
                logger.info(f"[torchrun] {line}")
        code = process.wait()
    if code != 0:
        raise RuntimeError(f"multi_gpu run exited with {code}:\n" + "\n".join(tail))
