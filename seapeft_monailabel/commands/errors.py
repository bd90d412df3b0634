"""Where a structure's errors lie: voxels missed and added, and how deep inside the structure the missed ones are.

Each --models glob (several runs of one method, say) is one line of output: its pooled Dice, true and
false positives, and missed voxels with the share of them within --rim-mm of the structure's surface,
summed over every model and every labelled volume of --data (sliding window as in `seapeft bench`).

Example (the development runs of docs/BENCHMARKS.md):
  seapeft errors --data .work/dev-default/data/test --structure liver --rim-mm 7 \
      --models '.work/dev-default/runs/*/*/sea-peft/model.pt' '.work/dev-budget0.5/runs/*/*/full/model.pt'
"""

from __future__ import annotations

import glob

from ..data.datastore import make_datalist
from ..evaluate.errors import structure_errors
from ..models import read_model_header


def add_arguments(parser) -> None:
    parser.add_argument("--models", nargs="+", required=True, help="model.pt globs (quote them); one line per glob")
    parser.add_argument("--data", required=True, help="datastore of labelled test volumes (labels under labels/final)")
    parser.add_argument("--structure", required=True, help="structure name, one of the models' labels (e.g. liver)")
    parser.add_argument("--preset", default="cpu", choices=["cpu", "gpu", "tiny"],
                        help="run preset whose sliding window and spacing to use, as the models were trained (default cpu)")
    parser.add_argument("--rim-mm", type=float, default=7.0, help="depth that counts as the structure's rim (default 7 mm)")


def run(args) -> int:
    groups = {pattern: sorted(glob.glob(pattern)) for pattern in args.models}
    for pattern, paths in groups.items():
        if not paths:
            raise FileNotFoundError(f"{pattern}: no model file matches")
    datalist = make_datalist(args.data)
    if not datalist:
        raise FileNotFoundError(f"{args.data}: no labelled volumes (labels under labels/final)")
    for pattern, paths in groups.items():
        _, labels = read_model_header(paths[0])
        if labels.get(args.structure, 0) == 0:
            foreground = [name for name, index in labels.items() if index]
            raise ValueError(f"{paths[0]}: the model has no label '{args.structure}' (labels: {', '.join(foreground)})")
        errors = structure_errors(paths, datalist, labels[args.structure], args.preset)
        print(f"{pattern} ({len(paths)} models x {len(datalist)} volumes): {args.structure} {errors.summary(args.rim_mm)}")
    return 0
