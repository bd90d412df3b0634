"""Export a trained model for CPU serving: OpenVINO FP32 and INT8 (NNCF, QAT if needed), then benchmark.

Writes serving.json and the OpenVINO models into --out (default: the model's folder, where the app's
infer task looks), then prints weight size, sliding-window latency and Dice of PyTorch FP32, OpenVINO
FP32 and OpenVINO INT8 side by side. Example:
  seapeft generate --site target --count 10 --seed 9101 --unlabelled 0 --out /tmp/heldout
  seapeft quantize --model runs/lora/model.pt --images sample-data --heldout /tmp/heldout --threads 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..inference.trained import default_roi_size
from ..quant.bench import run_benchmark, to_markdown
from ..quant.index import read_index
from ..quant.serving import export_serving_models
from .common import ProgressBar, add_data_arguments, datalist_from_args


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="merged model file (a run's model.pt or the base model)")
    add_data_arguments(parser)
    parser.add_argument("--heldout", help="datastore folder of labelled volumes for the Dice comparison, not used for "
                                          "calibration (default: the calibration volumes)")
    parser.add_argument("--out", help="where serving.json and the OpenVINO models go (default: the model's folder)")
    parser.add_argument("--roi", type=int, nargs="+", help="sliding window, one value or three (default: the training patch)")
    parser.add_argument("--spacing", type=float, nargs=3, help="resample to this spacing in mm (default: as trained, none)")
    parser.add_argument("--precision", nargs="+", default=["fp32", "int8"], choices=["fp32", "int8"])
    parser.add_argument("--patches", type=int, default=32, help="calibration patches (default 32)")
    parser.add_argument("--qat-steps", type=int, default=60, help="QAT steps when PTQ loses > 0.5 Dice points")
    parser.add_argument("--seed", type=int, default=0)
    bench = parser.add_argument_group("benchmark")
    bench.add_argument("--no-bench", action="store_true", help="export only")
    bench.add_argument("--bench-only", action="store_true", help="benchmark the models already exported in --out")
    bench.add_argument("--volume", help="image timed by sliding-window inference (default: the first held-out image)")
    bench.add_argument("--threads", type=int, default=2, help="CPU threads for every engine (default 2)")
    bench.add_argument("--repeats", type=int, default=3, help="timed runs per engine (median reported)")
    bench.add_argument("--markdown", help="also write the side-by-side table to this Markdown file")


def _heldout(args) -> list[dict] | None:
    if not args.heldout:
        return None
    return datalist_from_args(argparse.Namespace(images=args.heldout, labels=None, datalist=None, shots=None, seed=None))


def run(args) -> int:
    model = Path(args.model)
    if not model.is_file():
        raise FileNotFoundError(f"{model}: model file not found")
    items = datalist_from_args(args)
    heldout = _heldout(args)
    if args.roi:
        if len(args.roi) not in (1, 3):
            raise ValueError("--roi takes one value or three")
        roi = tuple(args.roi * 3 if len(args.roi) == 1 else args.roi)
    elif not args.bench_only:
        roi = default_roi_size(model)
    out = Path(args.out) if args.out else model.parent
    bar = ProgressBar()
    try:
        if args.bench_only:
            index = read_index(out)
        else:
            index = export_serving_models(model, out, items, roi, precision=tuple(args.precision), progress=bar,
                                          validation_datalist=heldout, spacing=args.spacing, n_patches=args.patches,
                                          qat_steps=args.qat_steps, threads=args.threads, seed=args.seed)
        result = None
        if not args.no_bench and "int8" in args.precision:
            evaluation = heldout or items
            volume = args.volume or evaluation[0]["image"]
            result = run_benchmark(out, volume, evaluation, threads=args.threads, repeats=args.repeats,
                                   spacing=args.spacing, held_out=heldout is not None, progress=bar)
    finally:
        bar.close()
    print(f"{'found' if args.bench_only else 'exported'} {', '.join(index['models'])} at window "
          f"{'x'.join(map(str, index['roi_size']))} in {out} (export took {index['seconds']:.0f} s)")
    if result is None:
        return 0
    table = to_markdown(result)
    print(table)
    (out / "benchmark.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.markdown:
        Path(args.markdown).write_text(table, encoding="utf-8")
    return 0
