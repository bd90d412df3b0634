"""Explain a segmentation: 3D Grad-CAM of one label, written as NIfTI and a PNG of slices through its maximum.

The NIfTI map (values in [0, 1]) lies on the input image's grid, so any viewer overlays it on the image.

Example:
  seapeft explain --model sample-data/base_model/model.pt --image sample-data/target_006.nii.gz --label liver --out runs/explain
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from ..explain import default_layer, draw_overlay, explain_file, explanation_window
from ..peft import load_merged_model


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="a seapeft model file (base model or a run's model.pt)")
    parser.add_argument("--image", required=True, help="image file (NIfTI, NRRD, MetaImage); the map is NIfTI on its grid")
    parser.add_argument("--label", required=True, help="label name to explain (one of the model's labels)")
    parser.add_argument("--layer", help="module path of the layer (default: the network's half-resolution decoder level)")
    parser.add_argument("--window", type=int, nargs="+", default=[64],
                        help="sliding window (one value or three; widened to 64 and rounded up to a multiple of 32)")
    parser.add_argument("--spacing", type=float, nargs=3, help="resample to this spacing first, as the model was trained")
    parser.add_argument("--out", required=True, help="output folder")


def run(args) -> int:
    if len(args.window) not in (1, 3):
        raise ValueError(f"--window takes one value or three, got {args.window}")
    if not Path(args.image).is_file():
        raise FileNotFoundError(f"{args.image}: image not found")
    network, meta = load_merged_model(args.model)
    labels = meta["labels"]
    if labels.get(args.label, 0) == 0:
        foreground = [name for name, index in labels.items() if index]
        raise ValueError(f"{args.model}: the model has no label '{args.label}' (labels: {', '.join(foreground)})")
    layer = args.layer or default_layer(meta["network"]["name"])
    window = explanation_window(args.window * 3 if len(args.window) == 1 else args.window)
    explanation = explain_file(network, args.image, labels[args.label], layer, window, spacing=args.spacing)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.image).name.split(".")[0]
    nifti, png = out / f"{stem}_{args.label}_gradcam.nii.gz", out / f"{stem}_{args.label}_gradcam.png"
    nib.save(nib.Nifti1Image(explanation.native, explanation.affine), str(nifti))
    draw_overlay(explanation.image, explanation.heat, png, f"Grad-CAM of '{args.label}' at {layer} ({Path(args.image).name})")
    if not np.any(explanation.heat):
        print(f"note: the model assigns no voxel of {args.image} to '{args.label}'; the map is empty")
    print(f"wrote {nifti} and {png}")
    return 0
