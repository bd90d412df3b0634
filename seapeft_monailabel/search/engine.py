"""The one entry point the app and the command line call: SEA-PEFT search, or a fixed baseline.

``run_search`` and ``run_fixed`` take a datalist of labelled volumes, a network with its pretrained
weights loaded, and a :class:`SearchConfig`; they train, write the run's files into ``out_dir``
(atomically) and return a :class:`~.result.RunResult`.

Under ``torchrun`` the search runs data-parallel on every rank; only rank 0 writes (see :mod:`.distributed`).

Data split, the same for every method (:func:`split_support`): the labelled volumes are shuffled with
the config's seed; with ``k + 1`` volumes, ``k`` form the support set and the last one is held out as
the selection (audit) volume. With one volume, support and selection share it. SEA-PEFT trains on the
support set during the search, decides on the selection volume's patches, then refines on all
``k + 1``; a fixed baseline trains on the support set for the search's steps, has its Dice measured on
the same selection patches, then refines on all ``k + 1`` for the refine steps. Every method records
``shots = k``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from ..atomic import staged_folder
from ..data.datastore import load_volume_pair
from ..devices import resolve_device
from ..models import NetworkSpec, fit_patch
from ..peft import Manifest, UnitRegistry, save_adapter_files, save_merged_model
from ..peft.effect import example_input
from .audit import Auditor
from .baselines import method_manifest, random_units
from .config import SearchConfig
from .distributed import init_distributed
from .episode import Progress, SearchEpisode, rank_allocator, train_steps
from .events import EventLog
from .patches import PatchStream, audit_patches
from .report import draw_report
from .result import CONFIG_FILE, RunResult
from .trainer import UnitTrainer


def validate_datalist(datalist: Sequence[dict], labels: dict[str, int]) -> list[dict]:
    """Check every item once (3D, shapes agree, label not empty, known label values); clear errors name the file."""
    items = [dict(i) for i in datalist if i.get("label")]
    if not items:
        raise ValueError("no labelled volume: label at least one image (labels/final) before training")
    for item in items:
        load_volume_pair(item["image"], item["label"], label_names=labels)
    return items


def split_support(items: Sequence[dict], seed: int) -> tuple[list[dict], dict]:
    """The support/selection split of every method: shuffle with ``seed``; the last volume is the
    selection (audit) volume, the rest the support set (one volume: both are that volume)."""
    order = list(items)
    random.Random(seed).shuffle(order)
    if len(order) == 1:
        return order, order[0]
    return order[:-1], order[-1]


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _write_outputs(staging: Path, registry: UnitRegistry, result: RunResult, spec: NetworkSpec, labels: dict,
                   events: EventLog, config: SearchConfig, details: dict) -> None:
    """Write the run's files into ``staging``; ``config.yaml`` is the result, then ``details`` and the settings."""
    save_adapter_files(staging, registry, result.units, spec, labels, method=result.method, budget=result.budget,
                       selection_dice=result.selection_dice, patch_size=list(config.patch_size),
                       spacing=list(config.spacing) if config.spacing else None)
    unmerged = save_merged_model(staging / "model.pt", registry, result.units, spec, labels)
    events.close()
    draw_report(events.events, staging / "report.png", title=f"{result.method}: {len(result.units)} units, "
                f"{result.cost} / {result.budget} parameters")
    placements = [{"name": n, "family": registry.unit(n).family, "site": registry.unit(n).site,
                   "level": registry.unit(n).level, "cost": registry.unit(n).cost} for n in result.units]
    summary = {**result.to_dict(), "network": spec.to_dict(), "manifest": registry.manifest.name,
               "labels": dict(labels), "budget_fraction": config.budget_fraction, "placements": placements,
               "unmerged_units": unmerged, **details, "config": config.to_dict()}
    (staging / CONFIG_FILE).write_text(yaml.safe_dump(summary, sort_keys=False), encoding="utf-8")


def _result(method: str, registry: UnitRegistry, chosen: list[str], budget: int, shots: int, out_dir: str | Path,
            started: float, **measured) -> RunResult:
    """The :class:`RunResult` of ``chosen`` (costs from ``registry``), timed from ``started``."""
    costs = {n: registry.unit(n).cost for n in chosen}
    return RunResult(method=method, units=list(chosen), cost=sum(costs.values()), budget=budget,
                     backbone_parameters=registry.backbone_parameters, shots=shots,
                     seconds=time.monotonic() - started, out_dir=str(out_dir), unit_costs=costs, **measured)


def run_search(datalist: Sequence[dict], network: nn.Module, *, spec: NetworkSpec, head_names: list[str],
               labels: dict[str, int], config: SearchConfig, out_dir: str | Path,
               manifest: Manifest | str | None = None, progress: Progress | None = None) -> RunResult:
    """SEA-PEFT: search, audit, allocate, select and refine; write the outputs; return the result.

    Launched by ``torchrun`` (``WORLD_SIZE`` > 1) it runs data-parallel (see :mod:`.distributed`); every
    rank returns the same result and only rank 0 writes.
    """
    started = time.monotonic()
    items = validate_datalist(datalist, labels)
    config = config.with_(patch_size=fit_patch(config.patch_size, spec))  # a window the network accepts
    _seed(config.seed)
    device = resolve_device(config.device)
    ctx = init_distributed(device)
    network.to(device)
    registry = UnitRegistry(network, manifest or spec.name, head_names,
                            example=example_input(spec.in_channels, config.patch_size, device))
    support, audit_item = split_support(items, config.seed)
    with staged_folder(out_dir) if ctx.is_main else nullcontext(None) as staging:
        events = EventLog(staging / "events.jsonl" if staging is not None else None)
        try:
            episode = SearchEpisode(registry, support, audit_item, config, n_classes=len(labels), shots=len(support),
                                    events=events, device=device, progress=progress, refine_data=items, ctx=ctx,
                                    label_names=[n for n, i in sorted(labels.items(), key=lambda kv: kv[1]) if i])
            outcome = episode.run()
            result = _result("sea-peft", registry, outcome.chosen, episode.budget, len(support), out_dir, started,
                             selection_dice=outcome.selection_dice, head_only_dice=outcome.head_only_dice,
                             stop_reason=outcome.stop_reason, steps=outcome.search_steps + outcome.refine_steps,
                             search_steps=outcome.search_steps, refine_steps=outcome.refine_steps)
            details = {"processes": ctx.world_size, "audit_volume": audit_item["image"],
                       "support": [i["image"] for i in support],
                       "candidates": [{**c.__dict__, "units": list(c.units)} for c in outcome.candidates]}
            if staging is not None:
                _write_outputs(staging, registry, result, spec, labels, events, config, details)
        finally:
            events.close()
    result.seconds = time.monotonic() - started
    return result


def run_fixed(datalist: Sequence[dict], network: nn.Module, *, method: str, spec: NetworkSpec, head_names: list[str],
              labels: dict[str, int], config: SearchConfig, out_dir: str | Path, target_cost: int | None = None,
              library: Manifest | str | None = None, progress: Progress | None = None) -> RunResult:
    """A fixed unit set (``head``, ``full``, ``bitfit``, ``ssf``, ``lora``, ``adaptformer``, ``salt``, ``adalora``,
    ``decoder``, or ``random`` of ``target_cost`` drawn from ``library``, default the network's search library)
    on the data split SEA-PEFT uses: the support set for the search's steps, the selection Dice on the same
    selection patches, then the refine steps on support and selection volume together."""
    started = time.monotonic()
    items = validate_datalist(datalist, labels)
    config = config.with_(patch_size=fit_patch(config.patch_size, spec))  # a window the network accepts
    support, selection = split_support(items, config.seed)
    _seed(config.seed)
    device = resolve_device(config.device)
    network.to(device)
    example = example_input(spec.in_channels, config.patch_size, device)  # units with no effect are left out
    if method == "random":
        if target_cost is None:
            raise ValueError("method 'random' needs target_cost (the cost of the set it is compared with)")
        registry = UnitRegistry(network, library or spec.name, head_names, example=example)
        chosen = random_units(registry, target_cost, config.seed)
    else:
        registry = UnitRegistry(network, method_manifest(method, spec.name), head_names, example=example)
        chosen = list(registry.units)
    registry.enable_only(chosen)
    budget = config.resolve_budget(registry.backbone_parameters)
    trainer = UnitTrainer(registry, config.lr, config.warmup_steps, config.weight_decay, config.orthogonality_weight,
                          device=device, bf16=config.bf16, adapter_lr_scale=config.adapter_lr_scale)
    ranks = rank_allocator(registry, config)  # AdaLoRA's importance and masking (units that are on only)
    trainer.after_backward.append(ranks)
    # the streams and the selection patches of SEA-PEFT's episode (see SearchEpisode.run)
    search_stream = iter(PatchStream(support, config.patch_size, config.patches_per_step, config.seed, config.spacing))
    refine_stream = iter(PatchStream(items, config.patch_size, config.patches_per_step, config.seed + 1,
                                     config.spacing))
    auditor = Auditor(registry, *audit_patches(selection, config.patch_size, config.audit_patches, len(labels),
                                               config.seed, config.spacing, config.audit_windows), len(labels),
                      device=device)
    with staged_folder(out_dir) as staging:
        events = EventLog(staging / "events.jsonl")
        try:
            # the same schedule as SEA-PEFT: warm-up and constant rate for the search steps, then the
            # refine stage's cosine decay with early stopping
            search_steps = train_steps(trainer, search_stream, config.max_steps, events, method, progress, decay=False)
            selection_dice = auditor.dice(chosen)
            refine_steps = train_steps(trainer, refine_stream, config.refine_steps, events, "refine", progress,
                                       offset=search_steps, patience=config.refine_patience)
            ranks.finish()
            result = _result(method, registry, chosen, budget, len(support), out_dir, started,
                             selection_dice=selection_dice, head_only_dice=None, stop_reason="step_limit",
                             steps=search_steps + refine_steps, search_steps=search_steps, refine_steps=refine_steps)
            details = {"audit_volume": selection["image"], "support": [i["image"] for i in support]}
            _write_outputs(staging, registry, result, spec, labels, events, config, details)
        finally:
            events.close()
    result.seconds = time.monotonic() - started
    return result
