"""Progress of the current or last training run, in ``model/seapeft/train_stats.json``.

The training subprocess writes it (atomically, at most once a second while running); the server
reads it for ``/info`` ``train_stats`` and ``/model/info``. The viewers read ``epoch`` /
``total_epochs`` (here: engine steps) for the progress bar and ``best_metric`` (here: the selection
Dice of the last run) for the accuracy bar. A run killed by a stop request cannot write "stopped"
itself, so a "running" file whose process is gone reads as "stopped".
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from seapeft_monailabel.atomic import write_json_atomic

from ..models.published import STATS

WRITE_EVERY_S = 1.0


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_stats(model_dir: str | Path) -> dict:
    """The stats file, with a dead "running" run reported as "stopped"; {} before the first run."""
    try:
        stats = json.loads((Path(model_dir) / STATS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if stats.get("status") == "running" and not _alive(stats.get("pid")):
        stats["status"] = "stopped"
    return stats


class StatsWriter:
    """Accumulates a run's progress and writes it; :meth:`progress` is the engine's progress callback."""

    def __init__(self, model_dir: str | Path, run_id: str, total_steps: int, shots: int):
        self.path = Path(model_dir) / STATS
        self.started = time.time()
        self.search_steps = total_steps
        self.stats = {"run": run_id, "status": "running", "pid": os.getpid(), "stage": "starting",
                      "epoch": 0, "total_epochs": total_steps, "shots": shots, "best_metric": None,
                      "start_ts": int(self.started), "total_time": 0.0}
        self._last = 0.0
        self.write(force=True)

    def write(self, force: bool = False, **changes) -> None:
        self.stats.update(changes, total_time=round(time.time() - self.started, 1))
        if force or time.time() - self._last >= WRITE_EVERY_S:
            write_json_atomic(self.path, self.stats)
            self._last = time.time()

    def progress(self, stage: str, step: int, total: int, info: dict) -> None:
        """``progress(stage, step, total, info)`` from the engine (search steps, then refine steps) and the export."""
        if stage == "search":
            self.search_steps = total
            epoch = step
        elif stage == "refine":
            epoch = self.search_steps + step
        else:  # export stages (convert, calibrate, evaluate...) move no step counter
            self.write(stage=stage)
            return
        loss = info.get("loss")
        self.write(stage=stage, epoch=epoch, total_epochs=max(self.stats["total_epochs"], epoch),
                   loss=round(float(loss), 5) if loss is not None else None)
