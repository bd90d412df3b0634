"""The train task: SEA-PEFT over the datastore's labelled images, published atomically.

MONAI Label runs it in a background subprocess, one at a time (``POST /train/seapeft``; OHIF's
"Update Model" and Slicer's "Train" call the same), relays its log lines to ``/train`` and ``/logs``,
and kills it on ``DELETE /train``. Each run:

1. takes every image with a ``final`` label (shots = labelled images - 1, one is held out for the
   audits; the engine's rule), and the base model from ``--conf base_model`` for the task's labels;
2. runs :func:`seapeft_monailabel.search.run_search` into a fresh ``runs/<run_id>/`` folder (the engine
   moves its files in only when all are written), reporting progress to ``train_stats.json``;
3. loads the merged model back strictly, converts it for the CPU runtime (``--conf export``, see
   :mod:`lib.trainers.export`), and only then replaces the publish pointer in one
   ``os.replace`` (see :mod:`lib.models.published`). The infer task sees the new pointer on its next
   request. A failure or a kill at any point leaves the pointer, hence the served model, as it was.

With ``--conf sites``, the labelled images are grouped by site (:mod:`lib.trainers.sites`) and each
group is one such run, queued in this task one after the other, published into its own folder
(``sites/<site>/``, :mod:`lib.models.sites`); a failed site's run leaves the other sites' runs
published and fails the task at the end, naming it.
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from pathlib import Path

import torch
from monailabel.interfaces.tasks.train import TrainTask

from seapeft_monailabel.models import fit_patch
from seapeft_monailabel.peft import load_merged_model
from seapeft_monailabel.search import RunResult, preset, run_search

from ..configs.conf import AppConf, ConfError
from ..models.base import load_base
from ..models.published import RUNS, publish, read_pointer, remove_incomplete_runs
from ..models.sites import site_dir
from ..sites.resolve import SiteResolver
from .distributed import processes, run_distributed, search_command
from .export import export_for_serving, precisions_to_export
from .sites import site_groups
from .stats import StatsWriter, read_stats

logger = logging.getLogger(__name__)

#: Request keys a client may send (Slicer's options table shows them), with their parsers.
REQUEST_KEYS = {"preset": str, "steps": int, "refine_steps": int, "budget_fraction": float, "time_limit": float,
                "seed": int, "device": str}
_CONFIG_FIELDS = {"steps": "max_steps", "refine_steps": "refine_steps", "budget_fraction": "budget_fraction",
                  "time_limit": "time_limit_s", "seed": "seed"}


def publish_record(result, config, preset_name: str, labels: dict, run_dir: Path, serving: dict | None,
                   previous: str | None) -> dict:
    """What the publish pointer says about a run (besides run, model and SHA-256): the run's
    :class:`~seapeft_monailabel.search.RunResult` (units, cost, Dice...), the settings and the window."""
    return {"published_at": int(time.time()), **result.to_dict(), "preset": preset_name,
            "patch_size": list(config.patch_size), "spacing": list(config.spacing) if config.spacing else None,
            "labels": labels, "report": str(run_dir / "report.png"), "config": str(run_dir / "config.yaml"),
            "serving": serving, "previous": previous}


class SeaPeftTrain(TrainTask):
    """``TrainTask`` that calls the SEA-PEFT engine; see the module docstring."""

    def __init__(self, conf: AppConf, model_dir: str | Path, sites: SiteResolver, description: str):
        super().__init__(description)
        self.conf = conf
        self.model_dir = Path(model_dir)
        self.sites = sites

    def default_preset(self) -> str:
        if self.conf.preset != "auto":
            return self.conf.preset
        return "gpu" if torch.cuda.is_available() else "cpu"

    def config(self) -> dict:
        """Options shown by the viewers; lists offer choices (first = default); empty = the preset's value."""
        presets = [self.default_preset()] + [p for p in ("cpu", "gpu", "tiny") if p != self.default_preset()]
        changes = self.conf.search_changes
        options = {"preset": presets, "steps": changes.get("max_steps", ""),
                   "refine_steps": changes.get("refine_steps", ""),
                   "budget_fraction": changes.get("budget_fraction", ""),
                   "time_limit": changes.get("time_limit_s", ""), "seed": changes.get("seed", ""),
                   "device": self.conf.device}
        if self.sites.enabled:
            options["site"] = ""  # empty: every site with labelled images, one run each
        return options

    def stats(self) -> dict:
        return read_stats(self.model_dir)

    def _settings(self, request: dict):
        """The SearchConfig for this request: preset, then --conf changes, then the request's values."""
        values = {}
        for key, parse in REQUEST_KEYS.items():
            value = request.get(key)
            if isinstance(value, list):
                value = value[0] if value else None
            if value in (None, ""):
                continue
            try:
                values[key] = parse(value)
            except (TypeError, ValueError):
                raise ConfError(f"train request: {key}={value!r} is not a {parse.__name__}") from None
        name = values.get("preset", self.default_preset())
        changes = dict(self.conf.search_changes)
        changes.update({_CONFIG_FIELDS[k]: v for k, v in values.items() if k in _CONFIG_FIELDS})
        changes["device"] = values.get("device", self.conf.device)
        return preset(name, **changes), name

    def __call__(self, request, datastore):
        datalist = [i for i in datastore.datalist() if i.get("label")]
        config, preset_name = self._settings(request)
        only = request.get("site")
        only = (only[0] if only else None) if isinstance(only, list) else only
        try:
            groups = site_groups(datastore, datalist, self.sites, only or None) if datalist else {None: []}
        except ValueError as err:
            StatsWriter(self.model_dir, "-", 0, 0).write(force=True, status="failed",
                                                         message=f"{type(err).__name__}: {err}")
            logger.error(f"SEA-PEFT training not started: {err}")
            raise
        if not self.sites.enabled:
            return self._run(None, groups[None], config, preset_name)
        logger.info("SEA-PEFT runs queued, one per site: " + ", ".join(
            f"{site or 'shared model (no site)'} ({len(items)} labelled)" for site, items in groups.items()))
        results, failed = {}, {}
        for number, (site, items) in enumerate(groups.items(), 1):
            try:
                results[site or ""] = self._run(site, items, config, preset_name, queue=f"{number}/{len(groups)}")
            except Exception as err:  # noqa: BLE001 - the other sites still train; the task fails at the end
                failed[site or "shared model"] = f"{type(err).__name__}: {err}"
        if failed:
            raise RuntimeError("SEA-PEFT runs failed for " + "; ".join(f"{k}: {v}" for k, v in failed.items())
                               + (f" (published: {', '.join(k or 'shared model' for k in results)})" if results else ""))
        return {"sites": results}

    def _run(self, site: str | None, datalist: list[dict], config, preset_name: str, queue: str | None = None) -> dict:
        """One SEA-PEFT run on ``datalist``, published for ``site`` (None: the shared model); see the module docstring."""
        model_dir = site_dir(self.model_dir, site)
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        removed = remove_incomplete_runs(model_dir)
        if removed:
            logger.info(f"Removed incomplete run folders left by stopped or failed runs: {removed}")
        stats = StatsWriter(self.model_dir, run_id, config.max_steps + config.refine_steps, max(len(datalist) - 1, 1))
        if site or queue:
            stats.write(force=True, site=site, queue=queue)
        whose = f" (site {site})" if site else ""
        try:
            if not datalist:
                raise ValueError("no labelled image: save at least one label (tag final, labels/final) before "
                                 "training")
            base = load_base(self.conf)
            config = config.with_(patch_size=fit_patch(self.conf.patch_size or config.patch_size, base.spec),
                                  spacing=base.spacing)
            logger.info(f"SEA-PEFT run {run_id}{whose}: {len(datalist)} labelled images, preset {preset_name}, "
                        f"patch {config.patch_size}, {config.max_steps}+{config.refine_steps} steps; "
                        f"base model {base.summary}")
            run_dir = model_dir / RUNS / run_id
            nproc = processes(self.conf, config.device)
            if nproc > 1:  # --conf multi_gpu true on a machine with several GPUs: torchrun, see .distributed
                stats.write(force=True, stage=f"search ({nproc} GPUs, torchrun)")
                with tempfile.TemporaryDirectory(prefix="seapeft-datalist-") as tmp:
                    datalist_path = Path(tmp) / "datalist.json"
                    run_distributed(search_command(nproc, self.conf, base.labels, preset_name, config,
                                                   datalist_path, run_dir),
                                    datalist, datalist_path, cwd=Path.cwd())
                result = RunResult.from_run_dir(run_dir)
            else:
                result = run_search(datalist, base.network, spec=base.spec, head_names=base.head_names,
                                    labels=base.labels, config=config, out_dir=run_dir,
                                    progress=self._logged(stats))
            load_merged_model(run_dir / "model.pt")  # strict: a model that does not load is never published
            serving = export_for_serving(run_dir, datalist, config.patch_size, config.spacing,
                                         precisions_to_export(self.conf.export, self.conf.precision),
                                         progress=self._logged(stats))
            record = publish_record(result, config, preset_name, base.labels, run_dir, serving,
                                    previous=(read_pointer(model_dir) or {}).get("run"))
            if site:
                record["site"] = site
            pointer = publish(model_dir, run_id, record)
        except Exception as err:
            stats.write(force=True, status="failed", message=f"{type(err).__name__}: {err}")
            logger.error(f"SEA-PEFT run {run_id}{whose} failed, the served model is unchanged: "
                         f"{type(err).__name__}: {err}")
            raise
        stats.write(force=True, status="done", stage="published", best_metric=result.selection_dice,
                    epoch=result.steps, total_epochs=max(result.steps, stats.stats["total_epochs"]))
        logger.info(f"SEA-PEFT run {run_id}{whose} published: {len(result.units)} units, {result.cost} of "
                    f"{result.budget} parameters, selection Dice {result.selection_dice}, model {pointer['sha256'][:12]}")
        return {"run": run_id, "sha256": pointer["sha256"], "units": len(result.units), "cost": result.cost,
                "budget": result.budget, "selection_dice": result.selection_dice}

    @staticmethod
    def _logged(stats: StatsWriter):
        """The engine's progress callback: stats file, plus a log line every 10 steps (relayed to /train)."""

        def progress(stage: str, step: int, total: int, info: dict) -> None:
            stats.progress(stage, step, total, info)
            if step == 1 or step % 10 == 0 or step == total:
                loss = info.get("loss")
                logger.info(f"progress {stage} {step}/{total}" + (f" loss {loss:.4f}" if loss is not None else ""))

        return progress
