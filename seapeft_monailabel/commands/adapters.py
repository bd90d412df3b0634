"""List, inspect, merge and export adapter folders (adapter_config.json + adapter_model.safetensors).

  seapeft adapters list apps/seapeft/model/seapeft          every adapter folder below, site and publish state
  seapeft adapters show RUN                                 units, labels, base SHA-256, tensors and sizes
  seapeft adapters merge RUN --base BASE --out model.pt     the base with the adapters merged: a seapeft model file
  seapeft adapters export RUN --bundle OUT [--base BASE]    the merged model as a MONAI bundle (configs/metadata.json,
                                                            configs/inference.json, models/model.pt)

RUN is a run folder (a SEA-PEFT run, or a site's run under the app's model/seapeft/sites/<site>/runs/).
Merging reads the adapters with safetensors and the base with ``torch.load(weights_only=True)``, and
refuses a base whose weights' SHA-256 is not the one the adapters were trained on. ``export`` merges the
same way when ``--base`` is given, else takes the run's merged ``model.pt``; the bundle runs with MONAI
alone: ``python -m monai.bundle run --config_file OUT/configs/inference.json --bundle_root OUT
--dataset_dir IMAGES --output_dir LABELS``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from safetensors import safe_open

from ..inference.trained import check_roi, trained_roi, trained_spacing
from ..models import NetworkSpec
from ..models.bundle import write_monai_bundle
from ..peft import (ADAPTER_CONFIG, ADAPTER_WEIGHTS, apply_adapter_files, load_merged_model, read_adapter_config,
                    save_merged_model)
from ..peft.adapter_files import adapter_files_size, load_base_for_adapters

_PUBLISHED = "published.json"


def add_arguments(parser) -> None:
    verbs = parser.add_subparsers(dest="adapters_command", required=True, metavar="ACTION")
    listing = verbs.add_parser("list", help="every adapter folder under the given folders")
    listing.add_argument("roots", nargs="*", default=["."], help="folders to search (default: the current one)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(_action=_list)
    show = verbs.add_parser("show", help="one adapter folder: units, labels, base, tensors, sizes")
    show.add_argument("folder", help="a folder holding adapter_config.json and adapter_model.safetensors")
    show.add_argument("--json", action="store_true", help="print the config and the tensors as JSON")
    show.set_defaults(_action=_show)
    merge = verbs.add_parser("merge", help="merge the adapters into their base: a seapeft model file")
    merge.add_argument("folder", help="the adapter folder")
    merge.add_argument("--base", required=True, help="the base model they were trained on (model file, state dict "
                       "or MONAI bundle)")
    merge.add_argument("--out", required=True, help="the model file to write (model.pt)")
    merge.set_defaults(_action=_merge)
    export = verbs.add_parser("export", help="the merged model as a MONAI bundle")
    export.add_argument("folder", help="a run folder (its model.pt), or an adapter folder with --base")
    export.add_argument("--bundle", required=True, help="the bundle folder to write (new or empty)")
    export.add_argument("--base", help="merge the adapters onto this base instead of reading the run's model.pt")
    export.set_defaults(_action=_export)


def run(args) -> int:
    return args._action(args)


def _site_and_state(folder: Path) -> tuple[str | None, bool]:
    """The app's site of a run folder (``.../sites/<site>/runs/<run>``) and whether its pointer serves it."""
    runs = folder.parent
    site = runs.parent.name if runs.name == "runs" and runs.parent.parent.name == "sites" else None
    try:
        pointer = json.loads((runs.parent / _PUBLISHED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pointer = {}
    return site, runs.name == "runs" and isinstance(pointer, dict) and pointer.get("run") == folder.name


def _summary(folder: Path) -> dict:
    config = read_adapter_config(folder)
    site, published = _site_and_state(folder)
    return {"folder": str(folder), "site": site, "published": published, "method": config.get("method"),
            "units": len(config["units"]), "cost": config.get("cost"), "selection_dice": config.get("selection_dice"),
            "bytes": adapter_files_size(folder), "base_model_sha256": config["base_model_sha256"]}


def _list(args) -> int:
    rows, problems = [], []
    for root in map(Path, args.roots):
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: folder not found")
        for config in sorted(root.rglob(ADAPTER_CONFIG)):
            try:
                rows.append(_summary(config.parent))
            except ValueError as err:
                problems.append(str(err))
    if args.json:
        print(json.dumps({"adapters": rows, "unreadable": problems}, indent=2))
        return 0
    if not rows:
        print(f"no adapter folders under {', '.join(args.roots)}")
    else:
        print(f"{'folder':60s} {'site':12s} {'method':10s} {'units':>5s} {'params':>8s} {'Dice':>6s} {'KB':>7s}  base")
        for r in rows:
            dice = f"{r['selection_dice']:.3f}" if isinstance(r["selection_dice"], (int, float)) else "-"
            print(f"{r['folder'] + (' *' if r['published'] else ''):60s} {r['site'] or '-':12s} "
                  f"{str(r['method'] or '-'):10s} {r['units']:5d} {r['cost'] or 0:8d} {dice:>6s} "
                  f"{r['bytes'] / 1024:7.1f}  {r['base_model_sha256'][:12]}")
        if any(r["published"] for r in rows):
            print("* published: the app serves it")
    for problem in problems:
        print(f"unreadable: {problem}")
    return 0


def _tensors(folder: Path) -> dict[str, list[int]]:
    with safe_open(str(folder / ADAPTER_WEIGHTS), framework="pt") as handle:
        return {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}


def _show(args) -> int:
    folder = Path(args.folder)
    config = read_adapter_config(folder)
    tensors = _tensors(folder)
    if args.json:
        print(json.dumps({"config": config, "tensors": tensors, "bytes": adapter_files_size(folder)}, indent=2))
        return 0
    spec = NetworkSpec.from_dict(config["network"])
    print(f"{folder}: {config.get('method') or config['peft_type']} adapters, {len(config['units'])} units, "
          f"{config['cost']} parameters (+{config['head_parameters']} head), {adapter_files_size(folder)} bytes")
    print(f"  base model:  {spec.name}, weights SHA-256 {config['base_model_sha256']}")
    print(f"  labels:      {', '.join(f'{i} {n}' for n, i in sorted(config['labels'].items(), key=lambda kv: kv[1]))}")
    for key in ("budget", "selection_dice", "patch_size", "spacing"):
        if config.get(key) is not None:
            print(f"  {key + ':':13s}{config[key]}")
    print(f"  {'unit':56s} {'family':10s} {'level':10s} {'params':>7s} merge")
    for unit in config["units"]:
        print(f"  {unit['name']:56s} {unit['family']:10s} {str(unit['level']):10s} {unit['cost']:7d} "
              f"{'yes' if unit['mergeable'] else 'no'}")
    print(f"  {len(tensors)} tensors, {sum(math.prod(s) for s in tensors.values())} values in {ADAPTER_WEIGHTS}")
    return 0


def _applied(folder: Path, base: str) -> tuple:
    """The registry of the base at ``base`` with the units of ``folder`` applied and on, its spec, labels, config."""
    config = read_adapter_config(folder)
    registry = apply_adapter_files(folder, load_base_for_adapters(folder, base).network)
    labels = {str(k): int(v) for k, v in config["labels"].items()}
    return registry, NetworkSpec.from_dict(config["network"]), labels, config


def _merge(args) -> int:
    folder, out = Path(args.folder), Path(args.out)
    registry, spec, labels, config = _applied(folder, args.base)
    extras = {key: config[key] for key in ("patch_size", "spacing") if config.get(key)}
    unmerged = save_merged_model(out, registry, [u["name"] for u in config["units"]], spec, labels, **extras)
    print(f"wrote {out} ({out.stat().st_size} bytes): {args.base} with the {len(config['units'])} units of {folder}"
          + (f"; {len(unmerged)} units kept unmerged ({', '.join(unmerged)})" if unmerged else ", all merged"))
    return 0


def _export(args) -> int:
    folder, bundle = Path(args.folder), Path(args.bundle)
    if args.base:
        registry, spec, labels, config = _applied(folder, args.base)
        roi = check_roi(spec, config["patch_size"]) if config.get("patch_size") else trained_roi(folder, {}, spec)
        spacing = config.get("spacing")
        network, unmerged = registry.merged_network()
        source = {"adapters": str(folder), "base": str(args.base), "base_model_sha256": config["base_model_sha256"]}
    else:
        model = folder / "model.pt" if folder.is_dir() else folder
        network, meta = load_merged_model(model)
        spec = NetworkSpec.from_dict(meta["network"])
        labels = {str(k): int(v) for k, v in meta["labels"].items()}
        roi, spacing = trained_roi(model.parent, meta, spec), trained_spacing(model.parent, meta)
        unmerged = [f"{u['site']}:{u['family']}" for u in meta["unmerged_units"]]
        source = {"model": str(model)}
        if (model.parent / ADAPTER_CONFIG).is_file():
            source["base_model_sha256"] = read_adapter_config(model.parent)["base_model_sha256"]
    if unmerged:
        raise ValueError(f"{folder}: units {', '.join(unmerged)} cannot be merged into the weights, and a MONAI "
                         "bundle holds a plain MONAI network; serve this run with the app or seapeft predict instead")
    written = write_monai_bundle(bundle, network, spec, labels, roi, spacing,
                                 description=f"{spec.name} adapted with SEA-PEFT ({folder.name})", provenance=source)
    sizes = ", ".join(f"{name} {size} bytes" for name, size in written["files"].items())
    print(f"wrote the MONAI bundle {bundle} ({sizes}); its network answers as the model "
          f"(largest logit difference {written['max_logit_difference']:.2g})")
    print(f"run it: python -m monai.bundle run --config_file {bundle}/configs/inference.json --bundle_root {bundle} "
          "--dataset_dir IMAGES --output_dir LABELS")
    return 0

