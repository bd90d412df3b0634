"""Publishing an adapted model atomically: run folders plus one pointer file replaced in a single step.

Layout under the app's ``model/seapeft/``::

    runs/<run_id>/        one SEA-PEFT run (config.yaml, adapter_config.json, adapter_model.safetensors, model.pt, events.jsonl, report.png);
                          the engine moves its files in only once all of them are written
    published.json        the pointer: which run is served, its model file's SHA-256, units, cost, Dice
    train_stats.json      progress of the current or last training run (for /info and the viewers)

A run is published by writing the pointer to a temporary file in the same folder, flushing it to disk
and ``os.replace``-ing it over ``published.json``: readers see the old pointer or the new one, never a
mix. A run that is killed, fails, or whose model does not load strictly is never pointed at, so the
served model stays as it was.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from seapeft_monailabel.atomic import write_json_atomic
from seapeft_monailabel.models import file_sha256
from seapeft_monailabel.search import RUN_FILES

POINTER = "published.json"
RUNS = "runs"
STATS = "train_stats.json"
#: Files of a run whose sizes /info reports: the adapter files (the safetensors pair; adapters.pt in runs
#: published before it) and the merged model.
SIZED_FILES = ("adapter_model.safetensors", "adapter_config.json", "adapters.pt", "model.pt")


def read_pointer(model_dir: str | Path) -> dict | None:
    """The published pointer, or None when nothing was published yet (or the pointer is unreadable)."""
    try:
        return json.loads((Path(model_dir) / POINTER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def pointer_stamp(model_dir: str | Path) -> tuple[int, int] | None:
    """(mtime_ns, inode) of the pointer: changes whenever a new pointer replaces it; None if absent."""
    try:
        st = (Path(model_dir) / POINTER).stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_ino


def publish(model_dir: str | Path, run_id: str, record: dict) -> dict:
    """Point the server at ``runs/<run_id>`` (atomically). ``record`` adds units, cost, Dice and so on."""
    model_file = Path(model_dir) / RUNS / run_id / "model.pt"
    pointer = {"run": run_id, "model": f"{RUNS}/{run_id}/model.pt", "sha256": file_sha256(model_file), **record}
    write_json_atomic(Path(model_dir) / POINTER, pointer)
    return pointer


def adapter_summary(pointer: dict, model_dir: str | Path | None = None) -> dict:
    """What /info says about a published run: units, costs, Dice, report; with ``model_dir`` (the pointer's
    folder), the sizes in bytes of the run's :data:`SIZED_FILES`."""
    out = {"run": pointer["run"], "id": f"adapted:{pointer['run']}:{pointer['sha256'][:12]}",
           "sha256": pointer["sha256"], "units": pointer["units"], "unit_costs": pointer["unit_costs"],
           "cost": pointer["cost"], "budget": pointer["budget"],
           "backbone_parameters": pointer["backbone_parameters"], "shots": pointer["shots"],
           "validation_dice": pointer["selection_dice"], "head_only_dice": pointer["head_only_dice"],
           "published_at": pointer["published_at"], "serving": pointer.get("serving"), "report": pointer["report"]}
    if pointer.get("site"):
        out["site"] = pointer["site"]
    if model_dir is not None:
        run_dir = Path(model_dir) / RUNS / pointer["run"]
        out["sizes"] = {name: (run_dir / name).stat().st_size for name in SIZED_FILES if (run_dir / name).is_file()}
    return out


def remove_incomplete_runs(model_dir: str | Path) -> list[str]:
    """Delete run folders left by killed or failed runs (missing any of :data:`RUN_FILES`); never the published one.

    Only called when no training runs (MONAI Label runs one training at a time).
    """
    runs = Path(model_dir) / RUNS
    published = (read_pointer(model_dir) or {}).get("run")
    removed = []
    for run in sorted(runs.iterdir()) if runs.is_dir() else []:
        if run.is_dir() and run.name != published and not all((run / f).is_file() for f in RUN_FILES):
            shutil.rmtree(run, ignore_errors=True)
            removed.append(run.name)
    return removed
