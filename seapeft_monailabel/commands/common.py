"""Arguments and loading shared by the training verbs (search, finetune)."""

from __future__ import annotations

import json
import random
from dataclasses import fields
from pathlib import Path

import yaml
from tqdm import tqdm

from ..data.datastore import DATASET_JSON
from ..data.volumes import FORMATS, find_volumes
from ..models import load_base_model
from ..search import SearchConfig, preset


def add_data_arguments(parser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--images", help="folder of images: NIfTI, NRRD, MetaImage files or DICOM series folders "
                      "(a MONAI Label datastore: labels in <images>/labels/final)")
    data.add_argument("--labels", help="folder of labels named as the images, any of those formats "
                      "(default <images>/labels/final)")
    data.add_argument("--datalist", help='JSON list of {"image": ..., "label": ...} (instead of --images)')
    data.add_argument("--shots", type=int, help="use k labelled volumes for training plus one for the audits (default: all)")


def add_model_arguments(parser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument("--weights", required=True, help="base model file (seapeft model.pt, a state dict, or a MONAI bundle)")
    model.add_argument("--network", choices=["swinunetr", "unet"], help="network, when --weights is a plain state dict")
    model.add_argument("--feature-size", type=int, default=12, help="SwinUNETR feature size for plain state dicts")
    model.add_argument("--label-names", help='JSON {"background": 0, "liver": 1, ...} of the task (default: the '
                       "labels of the --images folder's dataset.json, else the weights file's)")


def add_run_arguments(parser, with_out: bool = True, default_preset: str = "cpu") -> None:
    run = parser.add_argument_group("run")
    if with_out:
        run.add_argument("--out", required=True,
                         help="output folder (config.yaml, adapter files, model.pt, events.jsonl, report.png)")
    run.add_argument("--preset", default=default_preset, choices=["cpu", "gpu", "tiny"],
                     help=f"settings preset (default {default_preset})")
    run.add_argument("--budget-fraction", type=float, help="parameter budget as a fraction of the backbone (default 0.005)")
    run.add_argument("--steps", type=int, help="search steps (fixed methods: the same steps, then the refine steps)")
    run.add_argument("--refine-steps", type=int, help="refine steps")
    run.add_argument("--patch", type=int, nargs="+", help="patch size (one value or three)")
    run.add_argument("--seed", type=int, help="seed (data split, patches, initialisation)")
    run.add_argument("--device", help="cpu, cuda, cuda:1 or auto (default)")
    run.add_argument("--bf16", action="store_true", help="bfloat16 autocast (GPU)")
    run.add_argument("--time-limit", type=float, help="stop the search after this many seconds")


def datalist_from_args(args) -> list[dict]:
    """Labelled volumes from ``--datalist`` or ``--images``/``--labels``, optionally ``--shots + 1`` of them."""
    if args.datalist:
        path = Path(args.datalist)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: datalist not found")
        try:
            items = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(items, list) or not all(isinstance(i, dict) and "image" in i for i in items):
            raise ValueError(f'{path}: expected a JSON list of {{"image": ..., "label": ...}}')
        base = path.parent
        items = [{k: str(base / v) if not Path(v).is_absolute() else v for k, v in i.items()} for i in items]
    elif args.images:
        items = _scan_folder(Path(args.images), Path(args.labels) if args.labels else None)
    else:
        raise ValueError("give --images (a datastore folder) or --datalist")
    items = [i for i in items if i.get("label")]
    if args.shots is not None:
        if args.shots < 1 or args.shots + 1 > len(items):
            raise ValueError(f"--shots {args.shots} needs {args.shots + 1} labelled volumes; there are {len(items)}")
        items = random.Random(args.seed or 0).sample(items, args.shots + 1)
    return items


def _scan_folder(root: Path, labels: Path | None) -> list[dict]:
    """Image/label pairs of a folder: images of any supported format, labels of the same id in ``labels``."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found")
    labels = labels or root / "labels" / "final"
    images = find_volumes(root)
    if not images:
        others = sorted(p.name for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
        held = f"; it holds {len(others)} other files ({_some(others)})" if others else ""
        raise ValueError(f"{root}: no images ({FORMATS}){held}")
    found = find_volumes(labels, skip=()) if labels.is_dir() else {}
    items = [{"image": str(path), "label": str(found[sid])} for sid, path in images.items() if sid in found]
    if not items:
        where = str(labels) if labels.is_dir() else f"{labels} (no such folder)"
        raise ValueError(f"{root}: {len(images)} images ({_some(list(images))}) but none has a label in {where}; "
                         f"looked for the image ids as {FORMATS}; --labels names another folder")
    return items


def _some(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def config_from_args(args):
    """The preset, with the command line's changes."""
    changes = {}
    for arg, key in (("budget_fraction", "budget_fraction"), ("steps", "max_steps"), ("refine_steps", "refine_steps"),
                     ("seed", "seed"), ("device", "device"), ("time_limit", "time_limit_s")):
        if getattr(args, arg) is not None:
            changes[key] = getattr(args, arg)
    if args.patch:
        if len(args.patch) not in (1, 3):
            raise ValueError("--patch takes one value or three")
        changes["patch_size"] = tuple(args.patch * 3 if len(args.patch) == 1 else args.patch)
    if args.bf16:
        changes["bf16"] = True
    return preset(args.preset, **changes)


def task_labels(args) -> dict[str, int] | None:
    """The task's labels: ``--label-names``, else the ``labels`` of ``<--images>/dataset.json``, else None."""
    if args.label_names:
        try:
            labels = json.loads(args.label_names)
        except json.JSONDecodeError as err:
            raise ValueError(f"--label-names {args.label_names!r}: not valid JSON ({err})") from None
        if not isinstance(labels, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in labels.values()):
            raise ValueError(f'--label-names {args.label_names!r}: expected a JSON object of label name -> index, '
                             'like {"background": 0, "liver": 1}')
        return labels
    described = Path(args.images) / DATASET_JSON if getattr(args, "images", None) else None
    if described is not None and described.is_file():
        try:
            labels = json.loads(described.read_text()).get("labels")
        except json.JSONDecodeError as err:
            raise ValueError(f"{described}: not valid JSON ({err})") from None
        return {str(k): int(v) for k, v in labels.items()} if labels else None
    return None


def model_from_args(args):
    """(network, spec, head names, labels) from ``--weights`` and friends, through the loader the app uses."""
    labels = task_labels(args)
    if args.network and labels is None:
        raise ValueError("--label-names is required with --network (a plain state dict has no label names)")
    base = load_base_model(args.weights, labels, network=args.network, feature_size=args.feature_size)
    return base.network, base.spec, base.head_names, base.labels


def steps_summary(result, config) -> str:
    """What a run's steps were: ``"240 + 41 refine steps (of 80: the refine stage stopped early)"``."""
    refine = f"{result.refine_steps} refine steps"
    if result.refine_steps < config.refine_steps:
        refine += f" (of {config.refine_steps}: the refine stage stopped early, its loss no longer falling)"
    return f"{result.search_steps} + {refine}"


class ProgressBar:
    """A tqdm bar per stage (labels differ: ``search``/the method, then ``refine``), driven by the engine's
    progress callback."""

    def __init__(self):
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, step: int, total: int, info: dict) -> None:
        bar = self.bars.get(stage)
        if bar is None:
            for other in self.bars.values():
                other.close()
            bar = self.bars[stage] = tqdm(total=total, desc=stage, unit="step", dynamic_ncols=True)
        bar.update(step - bar.n)
        bar.set_postfix({k: (round(v, 4) if isinstance(v, float) else v) for k, v in info.items()}, refresh=False)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def add_set_argument(parser) -> None:
    parser.add_argument("--set", dest="settings", action="append", metavar="KEY=VALUE",
                        help="change one run setting, a SearchConfig field (for example audit_patches=8, "
                        "prior_start=false); repeatable")


#: how a --set error names the type a run setting takes
_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string", tuple: "a list"}


def run_settings(items: list[str] | None, run_preset: str) -> dict:
    """``["key=value", ...]`` as run-setting changes, values read as YAML scalars and checked against the
    type of the preset's setting; ValueError names a malformed item, an unknown key or a wrong type."""
    defaults = preset(run_preset).to_dict()
    known = {f.name for f in fields(SearchConfig)} - {"extra"}
    changes = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        if key not in known:
            raise ValueError(f"--set {item!r}: unknown run setting '{key}' (known: {', '.join(sorted(known))})")
        value = yaml.safe_load(text)
        default = defaults[key]
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        expected = (int, float) if isinstance(default, float) else type(default)
        if default is not None and (not isinstance(value, expected) or isinstance(value, bool) != isinstance(default, bool)):
            raise ValueError(f"--set {item!r}: '{key}' takes {_KINDS.get(type(default), type(default).__name__)} "
                             f"like {default!r}")
        changes[key] = value
    return changes
