"""The benchmark: SEA-PEFT against fixed baselines through the same training code, on held-out target volumes.

For every shot count k and fold f, every method trains on the same k + 1 labelled volumes (drawn by
seed from a pool of generated target-site volumes) with the same run settings: SEA-PEFT through
:func:`~seapeft_monailabel.search.run_search`, each fixed baseline through
:func:`~seapeft_monailabel.search.run_fixed` (the same trainer, patches, steps and schedule), and
``random`` as a random unit set of the cost SEA-PEFT chose in that fold. Each run's merged model is
then evaluated on the held-out test volumes per structure, with the served sliding window (Gaussian
blending) and, on a CPU, the served runtime (OpenVINO FP32: the class maps PyTorch gives, faster).
SEA-PEFT's models and the base model also play the pointing game on the test volumes (does the 3D
Grad-CAM maximum of each structure fall inside it; :mod:`seapeft_monailabel.explain`).

Every adapted model and the base model are also scored on held-out source-site volumes for the structures
the base knew (forgetting: what the adapted model costs the site's other scans), and each run records the
bytes a site must store (its adapter files) beside the merged model's.

Each target site is one regime with its own volumes, runs and tables under ``<out>/<site>/``; ``<out>``
holds the regimes side by side (:mod:`.bench_report`). Runs go to ``<out>/<site>/runs/k<k>/f<f>/<method>/``
(the run's own files plus ``record.json``); a run whose ``record.json`` holds the same job is not
repeated, so an interrupted bench resumes where it stopped. Several runs go at once in separate processes
(``workers``), each with ``threads`` torch threads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
import yaml

from ..atomic import write_json_atomic
from ..devices import resolve_device
from ..inference.predictor import Predictor, openvino_predictor, torch_predictor
from ..explain import default_layer, pointing_game
from ..models import fit_patch, load_base_model, read_model_header
from ..peft import ADAPTER_FILES, UnitRegistry, load_merged_model
from ..quant.convert import to_openvino
from ..quant.runtime import OpenVINOPredictor
from ..search import method_manifest, preset, run_fixed, run_search
from .bench_data import structure_volumes, support_set
from .bench_folds import bench_folds
from .bench_presets import BenchPreset
from .bench_report import write_regimes_report, write_report
from .machine import machine_info
from .sliding import evaluate_predictor

SEARCH = "sea-peft"
RECORD = "record.json"
Progress = Callable[[str, int, int, dict], None]


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _labels_order(labels: dict[str, int]) -> list[str]:
    return [n for n, _ in sorted(labels.items(), key=lambda kv: kv[1]) if n != "background"]


def pointing_rates(network: torch.nn.Module, network_name: str, test: list[dict], labels: dict[str, int],
                   config, device) -> dict[str, float]:
    """Pointing-game hit rate per foreground structure over the test volumes (default explanation layer)."""
    game = pointing_game(network, test, labels, default_layer(network_name), config.patch_size,
                         spacing=config.spacing, device=device)
    return {name: outcome["hit_rate"] for name, outcome in game.items()}


def evaluation_predictor(network: torch.nn.Module, in_channels: int, roi_size, device: torch.device) -> Predictor:
    """The predictor the bench measures a trained network with: on a CPU what the server runs there, the network
    converted to OpenVINO FP32 (the same class maps as PyTorch's, several times faster on one thread); else
    PyTorch on ``device``. Both use the served sliding window (``roi_size``, Gaussian blending)."""
    network = network.eval()
    if device.type != "cpu":
        return torch_predictor(network.to(device), roi_size, device=device)
    windows = OpenVINOPredictor(to_openvino(network, in_channels, roi_size), threads=torch.get_num_threads())
    return openvino_predictor(windows, roi_size, "fp32")


def source_scores(predictor: Predictor, source: list[dict], labels: dict[str, int], seen: list[str],
                  config, relabel: list[int] | None = None) -> dict | None:
    """Dice on the held-out source-site volumes for the ``seen`` structures (the only ones labelled there, with
    their values in ``labels``): ``{structure: mean Dice, "mean": ..., "volumes": [[Dice per seen structure],
    ...]}``; None without source volumes. ``relabel``: see :func:`.sliding.evaluate_predictor`."""
    if not source:
        return None
    order = _labels_order(labels)
    volumes = evaluate_predictor(predictor, source, len(labels), spacing=config.spacing, relabel=relabel)
    rows = np.asarray([[row[order.index(s)] for s in seen] for row in volumes], dtype=float)
    return {**{s: float(rows[:, i].mean()) for i, s in enumerate(seen)}, "mean": float(rows.mean()),
            "volumes": rows.tolist()}


def _frozen_network(base, device) -> torch.nn.Module:
    network = base.network.eval().to(device)
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network


def base_scores(weights: str | Path, labels: dict[str, int], test: list[dict], source: list[dict], seen: list[str],
                config, device) -> dict:
    """The base model's pointing game on the test volumes and its source-site Dice.

    The base answers as it served the source, with its own head: the structures it labels play the pointing
    game as its own classes, and on the source volumes its classes of the ``seen`` structures are scored as
    their task values. A structure it never labelled plays with a head row re-created from
    :func:`load_base_model`'s fixed seed (in the task's network, where that row would otherwise cover the
    seen structures too).
    """
    own = load_base_model(weights)
    own_network = _frozen_network(own, device)
    known = {name: own.labels[name] for name in labels if name != "background" and name in own.labels}
    pointing = {}
    if known:
        pointing.update(pointing_rates(own_network, own.spec.name, test, {"background": 0, **known}, config, device))
    unknown = {name: value for name, value in labels.items() if name not in known}
    if len(unknown) > 1:
        task = load_base_model(weights, labels)
        pointing.update(pointing_rates(_frozen_network(task, device), task.spec.name, test, unknown, config, device))
    if not source:
        return {"pointing": pointing, "source_dice": None}
    relabel = [0] * len(own.labels)
    for name in seen:
        relabel[own.labels[name]] = labels[name]
    predictor = evaluation_predictor(own_network, own.spec.in_channels, fit_patch(config.patch_size, own.spec), device)
    return {"pointing": pointing, "source_dice": source_scores(predictor, source, labels, seen, config, relabel)}


def site_bytes(run_dir: str | Path) -> dict[str, int]:
    """What one site stores beside the shared base (its adapter files) and the merged model, in bytes."""
    run_dir = Path(run_dir)
    return {"adapter": sum((run_dir / name).stat().st_size for name in ADAPTER_FILES),
            "model": (run_dir / "model.pt").stat().st_size}


def run_job(job: dict) -> dict:
    """Train one method on one fold's labelled volumes, evaluate it on the test volumes, write and return its record.

    Every method splits the fold's ``k + 1`` volumes the same way (``split_support`` with the fold as seed):
    ``k`` support volumes and one selection volume; the record names both, read back from the run's config.yaml.

    ``job``: ``method``, ``shots``, ``fold``, ``target_cost`` (random only), ``weights``, ``labels``,
    ``run_preset``, ``run_changes``, ``device``, ``manifest`` (SEA-PEFT's library, None: the network's),
    ``volumes`` (the fold's ``k + 1`` labelled volumes), ``test`` and ``source`` datalists, ``seen`` (the
    structures scored on the source volumes), ``pointing`` (play the pointing game), ``out_dir``.
    """
    started = time.monotonic()
    labels = job["labels"]
    base = load_base_model(job["weights"], labels)
    head = sum(p.numel() for name in base.head_names for p in base.network.get_submodule(name).parameters())
    config = preset(job["run_preset"], **job["run_changes"], seed=job["fold"], device=job["device"])
    labelled = [{"image": i["image"], "label": i["label"]} for i in job["volumes"]]
    common = dict(spec=base.spec, head_names=base.head_names, labels=labels, config=config, out_dir=job["out_dir"])
    if job["method"] == SEARCH:
        result = run_search(labelled, base.network, manifest=job["manifest"], **common)
    else:
        result = run_fixed(labelled, base.network, method=job["method"], target_cost=job.get("target_cost"),
                           library=job["manifest"], **common)
    trained_s = time.monotonic() - started
    summary = yaml.safe_load((Path(job["out_dir"]) / "config.yaml").read_text())
    ids = {i["image"]: i["id"] for i in job["volumes"]}
    network, _ = load_merged_model(Path(job["out_dir"]) / "model.pt")
    device = resolve_device(job["device"])
    network.to(device)
    pointing = (pointing_rates(network, base.spec.name, job["test"], labels, config, device)
                if job["pointing"] else None)
    predictor = evaluation_predictor(network, base.spec.in_channels, fit_patch(config.patch_size, base.spec), device)
    volumes = evaluate_predictor(predictor, job["test"], len(labels), spacing=config.spacing)
    scores = np.asarray(volumes, dtype=float)
    dice = {name: float(scores[:, i].mean()) for i, name in enumerate(_labels_order(labels))}
    dice["mean"] = float(scores.mean())
    source = source_scores(predictor, job["source"], labels, job["seen"], config)
    record = {
        **result.to_dict(),  # "seconds" below: training and evaluation
        "job": job_identity(job),
        "volumes": [i["id"] for i in job["volumes"]],
        "support": [ids[image] for image in summary["support"]],
        "selection": ids[summary["audit_volume"]],
        # SEA-PEFT: the chosen set's Dice on the whole selection volume (the patch Dice is selection_dice)
        "selection_volume_dice": (summary.get("candidates") or [{}])[0].get("volume_dice"),
        "test": [i["id"] for i in job["test"]],
        "head_parameters": head,
        "trainable": result.cost + head,
        "percent": 100.0 * result.cost / result.backbone_parameters,
        "dice": dice,
        "dice_volumes": volumes,
        "pointing": pointing,
        "source_dice": source,
        "bytes": site_bytes(job["out_dir"]),
        "train_seconds": round(trained_s, 1),
        "seconds": round(time.monotonic() - started, 1),
        "out_dir": job["out_dir"],
    }
    write_json_atomic(Path(job["out_dir"]) / RECORD, record, indent=1)
    return record


#: what makes two runs the same run: a record is reused only when all of these match
JOB_IDENTITY = ("method", "shots", "fold", "target_cost", "weights", "run_preset", "run_changes", "manifest")


def job_identity(job: dict) -> dict:
    """The fields of ``job`` that decide its result (besides its volumes), as JSON gives them back."""
    return json.loads(json.dumps({k: job[k] for k in JOB_IDENTITY}))


def _finished(job: dict) -> dict | None:
    """The record of a run that already finished with exactly this job and measured what it asks (the pointing
    game, the source volumes), else None."""
    path = Path(job["out_dir"]) / RECORD
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    same = record["job"] == job_identity(job) and record.get("volumes") == [i["id"] for i in job["volumes"]]
    measured = ((record.get("pointing") is not None) == job["pointing"]
                and (record.get("source_dice") is not None) == bool(job["source"]))
    return record if same and measured else None


def applicable_methods(methods, network_name: str) -> tuple[list[str], dict[str, str]]:
    """The methods that apply to ``network_name`` and ``{method: why not}`` for the others."""
    keep, skipped = [], {}
    for method in methods:
        if method == "random":
            keep.append(method)
            continue
        try:
            method_manifest(method, network_name)
            keep.append(method)
        except ValueError as err:
            skipped[method] = str(err)
    return keep, skipped


def library_facts(weights: str | Path, labels: dict[str, int], budget_fraction: float,
                  manifest: str | None = None) -> dict:
    """Size of the unit library against the budget (the budget binds when the library costs more)."""
    base = load_base_model(weights, labels)
    registry = UnitRegistry(base.network, manifest or base.spec.name, base.head_names)
    budget = int(budget_fraction * registry.backbone_parameters)
    return {"manifest": registry.manifest.name, "units": len(registry.units), "library_cost": registry.total_cost(),
            "max_concurrent_cost": registry.max_concurrent_cost(), "budget": budget,
            "backbone_parameters": registry.backbone_parameters}


def _jobs(bench: BenchPreset, methods: list[str], folds, weights: str, labels: dict[str, int], device: str,
          out: Path, source: list[dict] = (), seen: list[str] = ()) -> list[dict]:
    """Every run: fold ``f`` draws its volumes from ``folds[f]``'s pool and tests on its test volumes (and on
    the ``source`` volumes for the ``seen`` structures)."""
    jobs = []
    order = [SEARCH] + sorted((m for m in methods if m != "random"), key=lambda m: m != "full")
    for method in order + (["random"] if "random" in methods else []):
        for shots in bench.shots:
            for fold in range(bench.folds):
                jobs.append({"method": method, "shots": shots, "fold": fold, "target_cost": None,
                             "weights": str(weights), "labels": labels, "run_preset": bench.run_preset,
                             "run_changes": dict(bench.run_changes), "device": device, "manifest": bench.manifest,
                             "volumes": support_set(folds[fold][0], shots, fold, bench.data_seed),
                             "test": folds[fold][1], "source": list(source), "seen": list(seen),
                             "pointing": method == SEARCH and fold < (bench.pointing_folds or bench.folds),
                             "out_dir": str(out / "runs" / f"k{shots}" / f"f{fold}" / method)})
    return jobs


def _execute(jobs: list[dict], workers: int, threads: int, progress: Progress | None) -> list[dict]:
    """Run the jobs (random ones once SEA-PEFT's run of their fold has its cost); return the records."""
    waiting = {(j["shots"], j["fold"]): j for j in jobs if j["method"] == "random"}
    ready = [j for j in jobs if j["method"] != "random"]
    records: list[dict] = []
    total = len(jobs)

    def finish(record: dict) -> None:
        records.append(record)
        key = (record["job"]["shots"], record["job"]["fold"])
        if record["job"]["method"] == SEARCH and key in waiting:
            random_job = waiting.pop(key)
            random_job["target_cost"] = record["cost"]
            ready.append(random_job)
        if progress:
            j = record["job"]
            progress("bench", len(records), total, {"last": f"{j['method']} k{j['shots']} f{j['fold']}",
                                                    "dice": round(record["dice"]["mean"], 3)})

    def take() -> dict | None:
        while ready:
            job = ready.pop(0)
            done = _finished(job)
            if done is None:
                return job
            finish(done)
        return None

    if workers == 1:
        torch.set_num_threads(threads)
        while (job := take()) is not None:
            finish(run_job(job))
        return records
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=(threads,)) as pool:
        running: set[Future] = set()
        try:
            while True:
                while len(running) < workers and (job := take()) is not None:
                    running.add(pool.submit(run_job, job))
                if not running:
                    break
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    finish(future.result())
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return records


def run_regime(bench: BenchPreset, weights: str | Path, out_dir: str | Path, device: str = "auto",
               command: str = "", progress: Progress | None = None) -> dict:
    """Run the one-site ``bench`` and write ``results.json``, ``results.md`` and ``results.png`` into ``out_dir``.

    Returns the results dict (what ``results.json`` holds).
    """
    started = time.monotonic()
    out = Path(out_dir)
    weights = Path(weights)
    spec, _ = read_model_header(weights)
    data = bench_folds(bench, out / "data")
    labels, test, source = data.labels, data.test_items(), list(data.source)
    methods, skipped = applicable_methods(bench.methods, spec.name)
    run_config = preset(bench.run_preset, **bench.run_changes)
    library = library_facts(weights, labels, run_config.budget_fraction, bench.manifest)
    jobs = _jobs(bench, methods, data.folds, str(weights), labels, device, out, source, list(data.seen))
    records = _execute(jobs, bench.workers, bench.threads, progress)
    torch.set_num_threads(bench.workers * bench.threads)
    base = base_scores(weights, labels, test, source, list(data.seen), run_config, resolve_device(device))
    results = {
        "command": command,
        "preset": bench.to_dict(),
        "run_config": run_config.to_dict(),
        "weights": str(weights),
        "network": spec.to_dict(),
        "labels": labels,
        "seen": list(data.seen),
        "novel": list(data.novel),
        "methods": [SEARCH] + methods,
        "skipped_methods": skipped,
        "library": library,
        "machine": {**machine_info(resolve_device(device)), "torch_threads": bench.threads, "workers": bench.workers},
        "seconds": round(time.monotonic() - started, 1),
        "base_pointing": base["pointing"],
        "base_source_dice": base["source_dice"],
        "test_volumes": structure_volumes(test, labels),
        "source_volumes": [i["id"] for i in source],
        "runs": sorted(records, key=lambda r: (r["job"]["shots"], r["job"]["fold"], r["job"]["method"])),
    }
    write_report(results, out)
    return results


def _regime_progress(progress: Progress | None, site: str) -> Progress | None:
    """``progress`` with the regime's site added to the stage name."""
    if progress is None:
        return None
    return lambda stage, done, total, info: progress(f"{stage} {site}", done, total, info)


def run_bench(bench: BenchPreset, weights: str | Path, out_dir: str | Path, device: str = "auto",
              command: str = "", progress: Progress | None = None) -> dict:
    """Run every regime of ``bench`` (one per target site) into ``<out_dir>/<site>/`` and write the regimes side
    by side into ``out_dir`` (``results.json``, ``results.md``).

    Returns ``{"command", "preset", "seconds", "regimes": {site: that regime's results}}``.
    """
    started = time.monotonic()
    out = Path(out_dir)
    regimes = {site: run_regime(bench.regime(site), weights, out / site, device, command,
                                _regime_progress(progress, site)) for site in bench.sites}
    results = {"command": command, "preset": bench.to_dict(), "seconds": round(time.monotonic() - started, 1),
               "regimes": regimes}
    write_regimes_report(results, out)
    return results
