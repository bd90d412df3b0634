"""Explain a segmentation: 3D Grad-CAM of one label, written as NIfTI and a PNG of the middle slices.

Example:
  seapeft explain --model runs/search/model.pt --image sample-data/target_006.nii.gz --label liver --out runs/explain
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from ..data.transforms import eval_transforms  # noqa: E402
from ..evaluate.explain import DEFAULT_LAYERS, explain_volume  # noqa: E402
from ..search import load_merged_model  # noqa: E402


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="a seapeft model file (base model or a run's model.pt)")
    parser.add_argument("--image", required=True, help="NIfTI image")
    parser.add_argument("--label", required=True, help="label name to explain (one of the model's labels)")
    parser.add_argument("--layer", help="module path of the layer (default: a decoder level of the network)")
    parser.add_argument("--out", required=True, help="output folder")


def _png(image: np.ndarray, cam: np.ndarray, path: Path, title: str) -> None:
    """Axial, coronal and sagittal middle slices of ``image`` ``(X, Y, Z)`` with the map overlaid."""
    centre = [s // 2 for s in image.shape]
    views = [(image[:, :, centre[2]], cam[:, :, centre[2]], "axial"),
             (image[:, centre[1], :], cam[:, centre[1], :], "coronal"),
             (image[centre[0], :, :], cam[centre[0], :, :], "sagittal")]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.5))
    for ax, (img, heat, name) in zip(axes, views):
        ax.imshow(np.rot90(img), cmap="gray")
        ax.imshow(np.rot90(heat), cmap="jet", alpha=0.4, vmin=0, vmax=1)
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(args) -> int:
    network, meta = load_merged_model(args.model)
    labels = meta["labels"]
    if args.label not in labels or labels[args.label] == 0:
        raise ValueError(f"{args.model}: the model has no label '{args.label}' (labels: {', '.join(labels)})")
    layer = args.layer or DEFAULT_LAYERS[meta["network"]["name"]]
    cam, affine = explain_volume(network, args.image, labels[args.label], layer)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.image).name.split(".")[0]
    nifti = out / f"{stem}_{args.label}_gradcam.nii.gz"
    png = out / f"{stem}_{args.label}_gradcam.png"
    nib.save(nib.Nifti1Image(cam.numpy().astype(np.float32), affine), str(nifti))
    image = np.asarray(eval_transforms(with_label=False)({"image": args.image})["image"][0])
    _png(image, cam.numpy(), png, f"Grad-CAM of '{args.label}' at {layer}")
    print(f"wrote {nifti} and {png}")
    return 0
