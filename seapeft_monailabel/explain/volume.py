"""Explain one NIfTI image: the map on the preprocessed grid and back on the image's own grid."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Invertd
from torch import nn

from ..data.transforms import eval_transforms
from .gradcam import explain_image


@dataclass
class Explanation:
    """A map of one image.

    Attributes:
        image: ``(X, Y, Z)`` preprocessed image (RAS, the model's spacing, intensities scaled).
        heat: ``(X, Y, Z)`` map in ``[0, 1]`` on the preprocessed grid.
        native: ``(X, Y, Z)`` map in ``[0, 1]`` on the input file's grid (orientation and spacing undone).
        affine: ``(4, 4)`` affine of ``native`` (the input file's).
    """

    image: np.ndarray
    heat: np.ndarray
    native: np.ndarray
    affine: np.ndarray


def on_image_grid(values: torch.Tensor, image: MetaTensor) -> MetaTensor:
    """``values`` ``(C, X, Y, Z)`` as a MetaTensor carrying ``image``'s affine, meta and applied transforms,
    so MONAI's inverse transforms bring it back to the file's grid as they would the image."""
    return MetaTensor(values, affine=image.affine, meta=dict(image.meta), applied_operations=list(image.applied_operations))


def explain_file(network: nn.Module, image_path: str | Path, class_index: int, layer: str, window: Sequence[int],
                 spacing: Sequence[float] | None = None, device: str | torch.device = "cpu") -> Explanation:
    """Preprocess ``image_path`` as for inference, explain ``class_index`` at ``layer`` and invert the map."""
    chain = eval_transforms(spacing, with_label=False)
    data = chain({"image": str(image_path)})
    image = data["image"]
    heat = explain_image(network, image, class_index, layer, window, device=device)
    data["heat"] = on_image_grid(heat[None], image)
    native = Invertd(keys="heat", transform=chain, orig_keys="image", nearest_interp=False)(data)["heat"]
    return Explanation(image=np.asarray(image[0]), heat=heat.numpy(), native=np.asarray(native[0], dtype=np.float32),
                       affine=np.asarray(native.affine, dtype=np.float64))
